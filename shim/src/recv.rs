//! Receiving on a member socket: a group message or an ordinary datagram,
//! presented exactly as the kernel presents a unix datagram (source
//! address, truncation flags, credentials).

use crate::edge::from_ret;
use crate::hooks::call_real;
use crate::state::SockState;
use shmcore::endpoint::{Delivery, RecvMode};
use shmcore::queue::Received;
use shmcore::{sys, Errno};
use std::io::IoSliceMut;
use std::mem::size_of;

/// Receives into `msg` (iovecs, name, control, flags) from a tracked socket.
///
/// # Safety
/// `msg` must be a valid msghdr whose buffers are writable, as for recvmsg(2).
pub unsafe fn recvmsg(fd: i32, st: &SockState, msg: *mut libc::msghdr, flags: i32) -> Result<usize, Errno> {
    // Out-of-band and error-queue reads are the kernel's business.
    if flags & (libc::MSG_OOB | libc::MSG_ERRQUEUE) != 0 {
        // SAFETY: forwarded unchanged.
        return from_ret(unsafe { call_real::recvmsg(fd, msg, flags) });
    }
    let Some(ep) = st.endpoint().filter(|ep| ep.has_group_interest()) else {
        if st.created.lock().is_some() {
            return group_socket_recv(fd, flags);
        }
        // SAFETY: forwarded unchanged.
        return from_ret(unsafe { call_real::recvmsg(fd, msg, flags) });
    };
    // SAFETY: the caller guarantees msg is valid.
    let m = unsafe { &mut *msg };
    let iov: &mut [IoSliceMut<'_>] = if m.msg_iov.is_null() || m.msg_iovlen == 0 {
        &mut []
    } else {
        // SAFETY: IoSliceMut is ABI-compatible with iovec on Unix, and the
        // caller's iovecs describe writable buffers.
        unsafe { std::slice::from_raw_parts_mut(m.msg_iov as *mut IoSliceMut<'_>, m.msg_iovlen) }
    };
    let mode = RecvMode { peek: flags & libc::MSG_PEEK != 0, dontwait: flags & libc::MSG_DONTWAIT != 0 };
    let mut kernel = || {
        // SAFETY: the caller's msghdr, as recvmsg(2) would use it.
        from_ret(unsafe { call_real::recvmsg(fd, msg, flags | libc::MSG_DONTWAIT) })
    };
    match ep.recv(fd, iov, mode, &mut kernel)? {
        Delivery::Kernel(n) => Ok(n),
        // SAFETY: msg is valid (caller).
        Delivery::Group(r) => Ok(unsafe { present(fd, msg, &r, flags) }),
    }
}

/// Fills name, control and flags of `msg` for a group message.
///
/// # Safety
/// As for `recvmsg`.
unsafe fn present(fd: i32, msg: *mut libc::msghdr, r: &Received, flags: i32) -> usize {
    // SAFETY: caller guarantees validity.
    let m = unsafe { &mut *msg };
    let total = r.header.len as usize;
    m.msg_flags = if r.copied < total { libc::MSG_TRUNC } else { 0 };
    if !m.msg_name.is_null() && !r.addr.is_empty() {
        let fam = size_of::<libc::sa_family_t>();
        let full = fam + r.addr.len();
        let room = m.msg_namelen as usize;
        let mut sa = [0u8; size_of::<libc::sockaddr_un>()];
        sa[..fam].copy_from_slice(&(libc::AF_UNIX as libc::sa_family_t).to_ne_bytes());
        sa[fam..full].copy_from_slice(&r.addr);
        let n = full.min(room);
        // SAFETY: the caller's name buffer holds msg_namelen bytes.
        unsafe { std::ptr::copy_nonoverlapping(sa.as_ptr(), m.msg_name as *mut u8, n) };
        m.msg_namelen = full as libc::socklen_t;
    } else {
        // As the kernel: an unbound sender leaves the name empty (length 0).
        m.msg_namelen = 0;
    }
    let mut used = 0usize;
    if !m.msg_control.is_null()
        && m.msg_controllen > 0
        && sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED).unwrap_or(0) != 0
    {
        // SAFETY: pure arithmetic macros.
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::ucred>() as u32) } as usize;
        let clen = unsafe { libc::CMSG_LEN(size_of::<libc::ucred>() as u32) } as usize;
        if m.msg_controllen >= clen {
            let cred = libc::ucred { pid: r.header.pid, uid: r.header.uid, gid: r.header.gid };
            let hdr =
                libc::cmsghdr { cmsg_len: clen as _, cmsg_level: libc::SOL_SOCKET, cmsg_type: libc::SCM_CREDENTIALS };
            // SAFETY: the control buffer holds at least `clen` bytes.
            unsafe {
                let p = m.msg_control as *mut u8;
                std::ptr::write_unaligned(p as *mut libc::cmsghdr, hdr);
                std::ptr::write_unaligned(p.add(clen - size_of::<libc::ucred>()) as *mut libc::ucred, cred);
            }
            used = space.min(m.msg_controllen);
        } else {
            m.msg_flags |= libc::MSG_CTRUNC;
        }
    }
    m.msg_controllen = used as _;
    if flags & libc::MSG_TRUNC != 0 {
        total
    } else {
        r.copied
    }
}

/// The group socket G never receives: behave like a datagram socket that
/// nothing is ever sent to (wait for the timeout, or fail at once when
/// non-blocking).
fn group_socket_recv(fd: i32, flags: i32) -> Result<usize, Errno> {
    if flags & libc::MSG_DONTWAIT != 0 || sys::fcntl_getfl(fd)? & libc::O_NONBLOCK != 0 {
        return Err(Errno::EAGAIN);
    }
    let timeout = sys::socket_timeout_ms(fd, libc::SO_RCVTIMEO)?;
    loop {
        match sys::poll(&mut [], timeout) {
            Ok(_) if timeout.is_some() => return Err(Errno::EAGAIN),
            Ok(_) => continue,
            Err(Errno::EINTR) if timeout.is_none() && shmcore::signals::all_handlers_restart() => continue,
            Err(e) => return Err(e),
        }
    }
}
