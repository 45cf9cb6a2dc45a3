//! setsockopt/getsockopt at SOL_UNIX: create, join, leave, accept, stats.
//!
//! Errors are checked in the contract's order (SPEC section 2): unknown
//! option, stream socket, optlen, flags, address family, socket type or
//! state, address lookup, the group found, membership.

use crate::fdtable;
use crate::log::debug;
use crate::state::SockState;
use shmcore::addr::UnixAddr;
use shmcore::group::{Group, MREQ_ALL};
use shmcore::{sys, Errno};
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::sync::Arc;

pub const SOL_UNIX: i32 = 280;
pub const UNIX_CREATE_GROUP: i32 = 1;
pub const UNIX_JOIN_GROUP: i32 = 2;
pub const UNIX_LEAVE_GROUP: i32 = 3;
pub const UNIX_ACCEPT_GROUP: i32 = 4;
pub const UNIX_GROUP_STATS: i32 = 16;

/// `struct unix_mreq` of include/umcast.h.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UnixMreq {
    pub address: libc::sockaddr_un,
    pub flags: u32,
}

/// `struct unix_group_stats` of include/umcast.h.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct UnixGroupStats {
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub dropped: u64,
    pub filtered: u64,
    pub capacity: u64,
    pub flags: u32,
    pub reserved: u32,
}

const _: () = assert!(size_of::<UnixMreq>() == 116);
const _: () = assert!(size_of::<UnixGroupStats>() == 48);

/// Whether `fd` is an AF_UNIX socket (SOL_UNIX belongs to the kernel on
/// every other descriptor).
pub fn is_unix_socket(fd: i32) -> bool {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).is_ok_and(|d| d == libc::AF_UNIX)
}

fn state_for(fd: i32) -> Result<Arc<SockState>, Errno> {
    if let Some(st) = fdtable::get(fd) {
        return Ok(st);
    }
    let st = SockState::probe(fd)?;
    fdtable::insert(fd, st.clone());
    Ok(st)
}

/// setsockopt(fd, SOL_UNIX, name, val, len) on an AF_UNIX socket.
pub fn setsockopt(fd: i32, name: i32, val: *const libc::c_void, len: libc::socklen_t) -> Result<i32, Errno> {
    if !matches!(name, UNIX_CREATE_GROUP | UNIX_JOIN_GROUP | UNIX_LEAVE_GROUP | UNIX_ACCEPT_GROUP) {
        return Err(Errno::ENOPROTOOPT);
    }
    let ty = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    if ty == libc::SOCK_STREAM {
        return Err(Errno::EOPNOTSUPP);
    }
    if (len as usize) < size_of::<UnixMreq>() {
        return Err(Errno::EINVAL);
    }
    if val.is_null() {
        return Err(Errno::EFAULT);
    }
    // SAFETY: the caller passed `len >= sizeof(struct unix_mreq)` readable
    // bytes at `val`; read unaligned since C callers need not align it.
    let mreq: UnixMreq = unsafe { std::ptr::read_unaligned(val as *const UnixMreq) };
    if mreq.flags & !MREQ_ALL != 0 || (name == UNIX_CREATE_GROUP && mreq.flags != 0) {
        return Err(Errno::EINVAL);
    }
    // ACCEPT_GROUP takes an all-zero address as "this socket's group".
    let empty = mreq.address.sun_family == 0 && mreq.address.sun_path.iter().all(|&c| c == 0);
    if mreq.address.sun_family as i32 != libc::AF_UNIX && !(name == UNIX_ACCEPT_GROUP && empty) {
        return Err(Errno::EINVAL);
    }
    match name {
        UNIX_CREATE_GROUP => create(fd, ty, &mreq),
        UNIX_JOIN_GROUP => join(fd, ty, &mreq),
        UNIX_LEAVE_GROUP => leave(fd, &mreq),
        _ => accept_group(fd, ty, &mreq),
    }
    .map(|()| 0)
}

fn create(fd: i32, ty: i32, mreq: &UnixMreq) -> Result<(), Errno> {
    let addr = UnixAddr::from_mreq(&mreq.address)?;
    let g = Group::create(fd, &addr, ty)?;
    debug!("fd {fd}: created group {:?}", addr);
    // A good moment to remove what groups of dead processes left behind.
    if let Ok(c) = shmcore::gc::collect() {
        if c != shmcore::gc::Collected::default() {
            debug!("removed stale shared memory: {c:?}");
        }
    }
    let st = state_for(fd)?;
    st.refresh(fd);
    *st.created.lock() = Some(g);
    Ok(())
}

/// Resolves `addr` the way connect() would, then opens the group there.
fn lookup_group(addr: &UnixAddr) -> Result<Arc<Group>, Errno> {
    let probe = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    let (sa, len) = addr.to_sockaddr();
    let seqpacket_group = || Group::open_typed(addr, libc::SOCK_SEQPACKET).is_ok();
    match sys::connect(probe.as_raw_fd(), &sa, len) {
        // A datagram socket accepted the connect: a segment claiming another
        // type is damaged.
        Ok(()) => {
            Group::open(addr).and_then(|g| if g.sock_type() == libc::SOCK_DGRAM { Ok(g) } else { Err(Errno::EIO) })
        }
        // A SEQPACKET group is there: a datagram socket cannot join it.
        Err(Errno::EPROTOTYPE) if seqpacket_group() => Err(Errno::EPROTOTYPE),
        Err(Errno::EPROTOTYPE) => Err(Errno::EINVAL),
        // Abstract names are kept apart per socket type: a SEQPACKET group
        // at this name is invisible to a datagram connect.
        Err(Errno::ECONNREFUSED) if addr.is_abstract() && seqpacket_group() => Err(Errno::EPROTOTYPE),
        Err(e) => Err(e),
    }
}

fn join(fd: i32, ty: i32, mreq: &UnixMreq) -> Result<(), Errno> {
    if ty != libc::SOCK_DGRAM {
        return Err(Errno::EINVAL);
    }
    let addr = UnixAddr::from_mreq(&mreq.address)?;
    let g = lookup_group(&addr)?;
    if g.sock_type() != libc::SOCK_DGRAM {
        return Err(Errno::EPROTOTYPE);
    }
    let st = state_for(fd)?;
    let ep = st.endpoint_or_init()?;
    if ep.memberships().iter().any(|m| m.is_active() && m.group.group_id() == g.group_id()) {
        return Err(Errno::EADDRINUSE);
    }
    let rcvbuf = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?.max(1) as u64;
    let m = g.join(st.ino, mreq.flags, rcvbuf)?;
    debug!("fd {fd}: joined group {:?} as slot {} (flags {:#x}, capacity {rcvbuf})", addr, m.slot, mreq.flags);
    ep.add(m);
    // A filter attached before joining applies to group messages too.
    if let Some(prog) = crate::filters::kernel_filter(fd) {
        if shmcore::bpf::Program::new(&prog).is_ok() {
            g.set_filter(st.ino, false, Some(&prog))?;
        }
    }
    Ok(())
}

/// Whether membership group `g` is the group named `addr`.
fn names_group(g: &Group, addr: &UnixAddr) -> bool {
    if g.addr() == addr {
        return true;
    }
    // Another spelling of the same path group: compare the socket files.
    matches!((g.addr(), addr), (UnixAddr::Path(a), UnixAddr::Path(b))
        if matches!((sys::stat_path(a), sys::stat_path(b)), (Ok(x), Ok(y)) if x.st_dev == y.st_dev && x.st_ino == y.st_ino))
}

/// The socket's active membership in the group named `addr` (including one
/// a server gave it since its last call); EADDRNOTAVAIL if none.
fn active_membership(st: &SockState, addr: &UnixAddr) -> Result<Arc<shmcore::group::Membership>, Errno> {
    let ep = st.endpoint().ok_or(Errno::EADDRNOTAVAIL)?;
    ep.refresh();
    ep.memberships().into_iter().find(|m| m.is_active() && names_group(&m.group, addr)).ok_or(Errno::EADDRNOTAVAIL)
}

fn leave(fd: i32, mreq: &UnixMreq) -> Result<(), Errno> {
    let addr = UnixAddr::from_mreq(&mreq.address)?;
    let st = fdtable::get(fd).ok_or(Errno::EADDRNOTAVAIL)?;
    // The server's end of a SEQPACKET membership: end its client's.
    let accepted = st.accepted.lock().clone();
    if let Some(g) = accepted.filter(|g| names_group(g, &addr)) {
        g.end_accepted(st.ino)?;
        *st.accepted.lock() = None;
        debug!("fd {fd}: ended its peer's membership in {:?}", addr);
        return Ok(());
    }
    let m = active_membership(&st, &addr)?;
    m.leave()?;
    debug!("fd {fd}: left group {:?}", addr);
    Ok(())
}

/// ACCEPT_GROUP on a socket returned by accept() on a SOCK_SEQPACKET
/// group's listening socket: the client's socket at the other end becomes a
/// member with `mreq.flags`. The client's process finds out by itself (it
/// watches the group since its connect()).
fn accept_group(fd: i32, ty: i32, mreq: &UnixMreq) -> Result<(), Errno> {
    if ty != libc::SOCK_SEQPACKET {
        return Err(Errno::EINVAL);
    }
    // The address must be empty or the group's own.
    let named = match UnixAddr::from_mreq(&mreq.address) {
        Ok(a) => Some(a),
        Err(_) if mreq.address.sun_path.iter().all(|&c| c == 0) => None,
        Err(e) => return Err(e),
    };
    // An accepted socket carries its listener's address.
    let (sa, len) = sys::getsockname(fd)?;
    let local = UnixAddr::from_sockaddr(&sa, len).map_err(|_| Errno::EINVAL)?;
    if local == UnixAddr::Unnamed {
        return Err(Errno::EINVAL);
    }
    let g = Group::open_typed(&local, libc::SOCK_SEQPACKET).map_err(|_| Errno::EINVAL)?;
    if g.sock_type() != libc::SOCK_SEQPACKET {
        return Err(Errno::EINVAL);
    }
    if named.as_ref().is_some_and(|a| !names_group(&g, a)) {
        return Err(Errno::EINVAL);
    }
    let me = sys::fstat(fd)?.st_ino;
    if me == g.group_ino() {
        return Err(Errno::EINVAL); // the listening socket itself
    }
    let info = shmcore::diag::lookup(me)?.ok_or(Errno::EINVAL)?;
    let client = info.peer.ok_or(Errno::EINVAL)? as u64;
    if !g.slots_of(client).is_empty() {
        return Err(Errno::EADDRINUSE);
    }
    let client_rcvbuf = shmcore::diag::lookup(client)?.and_then(|i| i.rcvbuf).unwrap_or(212_992) as u64;
    let st = state_for(fd)?;
    g.join_with_peer(client, mreq.flags, client_rcvbuf, me)?;
    g.take_candidate_filter(client);
    if mreq.flags & shmcore::group::MREQ_SEND_TO_PEER != 0 {
        // The server's socket receives its client's group messages through
        // a copy slot of its own.
        let rcvbuf = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?.max(1) as u64;
        let copy = g.join_with_peer(me, shmcore::layout::SLOT_PEER_COPY, rcvbuf, client)?;
        st.endpoint_or_init()?.add(copy);
        // What reaches the server passes the server socket's own filter.
        if let Some(prog) = crate::filters::kernel_filter(fd).filter(|p| shmcore::bpf::Program::new(p).is_ok()) {
            g.set_filter(me, false, Some(&prog))?;
        }
    }
    *st.accepted.lock() = Some(g.clone());
    // A filter on the accepted socket also filters what its client gets.
    if let Some(prog) = crate::filters::kernel_filter(fd) {
        if shmcore::bpf::Program::new(&prog).is_ok() {
            g.set_filter(client, true, Some(&prog))?;
        }
    }
    debug!("fd {fd}: accepted its peer (socket inode {client}) into group {:?} (flags {:#x})", g.addr(), mreq.flags);
    // A client already asleep in recv/poll wakes and adopts the membership.
    g.wake_all();
    Ok(())
}

/// getsockopt(fd, SOL_UNIX, name, ...) on an AF_UNIX socket.
///
/// UNIX_GROUP_STATS: `val` holds a `struct unix_mreq` naming the group on
/// input and receives a `struct unix_group_stats` (len >= 116 bytes in,
/// 48 bytes out).
pub fn getsockopt(fd: i32, name: i32, val: *mut libc::c_void, len: *mut libc::socklen_t) -> Result<i32, Errno> {
    if name != UNIX_GROUP_STATS {
        return Err(Errno::ENOPROTOOPT);
    }
    if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)? == libc::SOCK_STREAM {
        return Err(Errno::EOPNOTSUPP);
    }
    if val.is_null() || len.is_null() {
        return Err(Errno::EFAULT);
    }
    // SAFETY: len is a valid pointer (checked non-null; caller's contract).
    let have = unsafe { *len } as usize;
    if have < size_of::<UnixMreq>() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `have >= sizeof(unix_mreq)` readable bytes at val.
    let mreq: UnixMreq = unsafe { std::ptr::read_unaligned(val as *const UnixMreq) };
    let addr = UnixAddr::from_mreq(&mreq.address)?;
    let st = fdtable::get(fd).ok_or(Errno::EADDRNOTAVAIL)?;
    let m = active_membership(&st, &addr)?;
    let (_, dropped, filtered, capacity) = m.stats();
    let (messages, bytes) = m.queue.census();
    let stats = UnixGroupStats {
        queued_messages: messages,
        queued_bytes: bytes,
        dropped,
        filtered,
        capacity,
        flags: m.flags,
        reserved: 0,
    };
    // SAFETY: the buffer holds at least 116 >= 48 bytes (checked above).
    unsafe {
        std::ptr::write_unaligned(val as *mut UnixGroupStats, stats);
        *len = size_of::<UnixGroupStats>() as libc::socklen_t;
    }
    Ok(0)
}
