//! Sending: decide whether a send goes to a group, and deliver it.
//!
//! A socket the shim does not track pays nothing: its send goes to the
//! kernel. A datagram to a group's address fails there with EPIPE (the
//! group socket G has receiving shut down), and only then does the shim look
//! the address up; a socket found sending to a group is tracked, and its
//! later sends to that group skip the kernel.

use crate::edge::from_ret;
use crate::fdtable;
use crate::log::debug;
use crate::state::SockState;
use shmcore::addr::UnixAddr;
use shmcore::group::{Group, Wait};
use shmcore::{diag, sys, Errno};
use std::io::IoSlice;
use std::sync::Arc;

/// One send request, whatever entry point it came through.
pub struct SendReq<'a> {
    pub fd: i32,
    pub iov: &'a [IoSlice<'a>],
    pub flags: i32,
    /// Destination as given (sendto/sendmsg), raw.
    pub addr: Option<(*const libc::sockaddr, libc::socklen_t)>,
    /// Ancillary data as given (sendmsg).
    pub control: &'a [u8],
}

fn parse_dest(addr: (*const libc::sockaddr, libc::socklen_t)) -> Option<UnixAddr> {
    let (p, len) = addr;
    if p.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the kernel already accepted this address for this call (it
    // returned EPIPE, not EFAULT), so `len` bytes at `p` are readable; we copy
    // at most sizeof(sockaddr_un).
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_un>());
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut sa as *mut _ as *mut u8, n) };
    UnixAddr::from_sockaddr(&sa, n as libc::socklen_t).ok().filter(|a| *a != UnixAddr::Unnamed)
}

/// The group a tracked socket's send goes to, from its caches.
fn cached_target(st: &SockState, req: &SendReq) -> Option<Arc<Group>> {
    // A SEQPACKET member sends everything to its group (the kernel ignores
    // an address on a connected SEQPACKET socket).
    if let Some(g) = st.seqpacket_group() {
        return Some(g);
    }
    match req.addr.filter(|(p, _)| !p.is_null()) {
        Some(a) => {
            let cache = st.sendto_cache.lock();
            let (caddr, g) = cache.as_ref()?;
            (parse_dest(a).as_ref() == Some(caddr)).then(|| g.clone())
        }
        None => st.connected.lock().clone(),
    }
}

/// After the kernel said EPIPE: is the destination a group? If so, track
/// the socket as a sender to it.
fn discover(req: &SendReq, fail: &mut Option<Errno>) -> Option<(Arc<SockState>, Arc<Group>)> {
    let fd = req.fd;
    let explicit = req.addr.filter(|(p, _)| !p.is_null());
    let dest = match explicit {
        Some(a) => parse_dest(a)?,
        None => {
            let (sa, len) = sys::getpeername(fd).ok()?;
            UnixAddr::from_sockaddr(&sa, len).ok()?
        }
    };
    if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()? != libc::AF_UNIX
        || sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()? != libc::SOCK_DGRAM
    {
        return None;
    }
    let g = match Group::open(&dest) {
        Ok(g) => g,
        Err(Errno::EIO) => {
            // The kernel says a group socket is there, its shared state
            // says otherwise: the state is damaged.
            *fail = Some(Errno::EIO);
            return None;
        }
        // A group this user may not reach (an abstract group is private to
        // its creator): as the kernel refuses a connect without permission.
        Err(Errno::EACCES) => {
            *fail = Some(Errno::EACCES);
            return None;
        }
        // A segment named for this address that does not describe the
        // socket the kernel found (with receiving shut down, as only group
        // sockets have it): damaged, or left by a crash and shadowed.
        Err(Errno::EINVAL) if shmcore::group::segment_exists(&dest, libc::SOCK_DGRAM) => {
            *fail = Some(Errno::EIO);
            return None;
        }
        Err(_) => return None,
    };
    if g.sock_type() != libc::SOCK_DGRAM {
        // The kernel found a datagram socket with receiving shut down; a
        // segment for it saying otherwise is damaged.
        *fail = Some(Errno::EIO);
        return None;
    }
    let st = match fdtable::get(fd) {
        Some(st) => st,
        None => {
            let st = SockState::probe(fd).ok()?;
            fdtable::insert(fd, st.clone());
            st
        }
    };
    // EPIPE may also mean this socket shut down its own sending side.
    if diag::lookup(st.ino).ok().flatten().is_some_and(|i| i.shutdown & 2 != 0) {
        return None;
    }
    debug!("fd {fd}: sends to group {:?}", dest);
    if explicit.is_some() {
        *st.sendto_cache.lock() = Some((dest, g.clone()));
    } else {
        *st.connected.lock() = Some(g.clone());
    }
    Some((st, g))
}

fn forget(st: &SockState, g: &Arc<Group>) {
    let mut c = st.sendto_cache.lock();
    if c.as_ref().is_some_and(|(_, cg)| Arc::ptr_eq(cg, g)) {
        *c = None;
    }
    drop(c);
    let mut c = st.connected.lock();
    if c.as_ref().is_some_and(|cg| Arc::ptr_eq(cg, g)) {
        *c = None;
    }
}

/// Checks ancillary data of a group send. SCM_RIGHTS is not carried yet:
/// EOPNOTSUPP rather than dropping descriptors silently.
fn check_control(control: &[u8]) -> Result<(), Errno> {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut off = 0;
    while off + hdr <= control.len() {
        // SAFETY: `hdr` bytes at `off` are inside the slice; read unaligned.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control.as_ptr().add(off) as *const libc::cmsghdr) };
        let len = c.cmsg_len;
        if len < hdr || off + len > control.len() {
            return Err(Errno::EINVAL);
        }
        if c.cmsg_level != libc::SOL_SOCKET {
            return Err(Errno::EINVAL);
        }
        match c.cmsg_type {
            libc::SCM_RIGHTS => return Err(Errno::EOPNOTSUPP),
            libc::SCM_CREDENTIALS => {
                if len < hdr + std::mem::size_of::<libc::ucred>() {
                    return Err(Errno::EINVAL);
                }
                // SAFETY: the ucred lies inside the cmsg checked above.
                let u: libc::ucred =
                    unsafe { std::ptr::read_unaligned(control.as_ptr().add(off + hdr) as *const libc::ucred) };
                let (pid, uid, gid) = crate::state::creds();
                if uid != 0 && (u.pid != pid || u.uid != uid || u.gid != gid) {
                    return Err(Errno::EPERM);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        off += (len + 7) & !7;
    }
    Ok(())
}

/// Delivers one message to group `g` from tracked socket `st`.
fn group_send(st: &SockState, g: &Group, req: &SendReq) -> Result<usize, Errno> {
    if req.flags & libc::MSG_OOB != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    check_control(req.control)?;
    let len: usize = req.iov.iter().map(|s| s.len()).sum();
    let limit = st.sndbuf.load(std::sync::atomic::Ordering::Relaxed) as i64 - 32;
    if len as i64 > limit {
        return Err(Errno::EMSGSIZE);
    }
    let fd = req.fd;
    let dontwait = req.flags & libc::MSG_DONTWAIT != 0;
    let mut wait = || {
        if dontwait || sys::fcntl_getfl(fd).is_ok_and(|f| f & libc::O_NONBLOCK != 0) {
            return Wait::Never;
        }
        match sys::socket_timeout_ms(fd, libc::SO_SNDTIMEO) {
            Ok(Some(ms)) => Wait::Millis(ms),
            _ => Wait::Forever,
        }
    };
    let mut sender = st.sender();
    if let Some(s) = st.created.lock().as_ref() {
        // G is never a member; its inode still identifies the sender.
        sender.ino = s.group_ino();
    }
    g.send(&sender, req.iov, &mut wait)
}

/// The whole send path for any entry point. `real` performs the call in the
/// kernel. Returns bytes sent.
pub fn send(req: &SendReq, real: &mut dyn FnMut() -> isize) -> Result<usize, Errno> {
    if let Some(st) = fdtable::get(req.fd) {
        if let Some(g) = cached_target(&st, req) {
            match group_send(&st, &g, req) {
                Err(Errno::ECONNREFUSED) => forget(&st, &g), // G closed: ask the kernel again
                r => return r,
            }
        }
    }
    match from_ret(real()) {
        Err(Errno::EPIPE) => {
            let mut fail = None;
            match discover(req, &mut fail) {
                Some((st, g)) => group_send(&st, &g, req),
                None => Err(fail.unwrap_or(Errno::EPIPE)),
            }
        }
        r => r,
    }
}

/// After a successful connect() to a unix address: if the address names a
/// datagram group, track the socket now, so that its POLLOUT reflects the
/// group's room before its first send. Costs one or two stat/open calls on
/// connect() to a unix address; nothing on any other call.
pub fn discover_on_connect(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return;
    }
    // SAFETY: the kernel accepted `len` bytes at `addr` for this connect.
    let family = unsafe { std::ptr::read_unaligned(addr as *const libc::sa_family_t) };
    if family as i32 != libc::AF_UNIX {
        return;
    }
    let Some(dest) = parse_dest((addr, len)) else {
        return;
    };
    // A path names one socket, whatever its type (one segment name); an
    // abstract name may hold a group of each type.
    let exists = |ty| shmcore::group::segment_exists(&dest, ty);
    if !(exists(libc::SOCK_DGRAM) || (dest.is_abstract() && exists(libc::SOCK_SEQPACKET))) {
        return;
    }
    let Ok(ty) = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) else { return };
    let Ok(g) = Group::open_typed(&dest, ty) else { return };
    if g.sock_type() != ty {
        return;
    }
    let st = match fdtable::get(fd) {
        Some(st) => st,
        None => match SockState::probe(fd) {
            Ok(st) => {
                fdtable::insert(fd, st.clone());
                st
            }
            Err(_) => return,
        },
    };
    if g.sock_type() == libc::SOCK_SEQPACKET {
        // A client of a SEQPACKET group: it becomes a member when the server
        // says ACCEPT_GROUP; until then it watches the group for that.
        if let Ok(ep) = st.endpoint_or_init() {
            debug!("fd {fd}: connected to the listener of group {:?}", dest);
            let own = crate::filters::kernel_filter(fd).filter(|p| shmcore::bpf::Program::new(p).is_ok());
            ep.add_candidate(g);
            ep.set_own_filter(own);
        }
        return;
    }
    debug!("fd {fd}: connected to group {:?}", dest);
    *st.connected.lock() = Some(g);
}
