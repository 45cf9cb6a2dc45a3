//! Hook bodies. Each starts with the fast-path table lookup (or, for calls
//! that can discover a group, the kernel's own answer) and reaches the slow
//! path only for descriptors that take part in a group.

use crate::edge::{guarded, int, ssize};
use crate::hooks::call_real;
use crate::poll::Deadline;
use crate::send::SendReq;
use crate::{fdtable, lifecycle, options, poll, recv, send};
use libc::{
    c_int, c_uint, c_ulong, c_void, epoll_event, fd_set, iovec, mmsghdr, msghdr, nfds_t, pollfd, sigset_t, size_t,
    sockaddr, socklen_t, ssize_t, timespec, timeval,
};
use shmcore::Errno;
use std::io::IoSlice;

// ---- options -------------------------------------------------------------

pub unsafe fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    if level == options::SOL_UNIX && options::is_unix_socket(fd) {
        return int(guarded("setsockopt", || options::setsockopt(fd, name, val, len)));
    }
    if level == libc::SOL_SOCKET
        && matches!(name, libc::SO_ATTACH_FILTER | libc::SO_DETACH_FILTER | libc::SO_ATTACH_BPF)
        && fdtable::is_tracked(fd)
    {
        if let Some(st) = fdtable::get(fd) {
            return int(guarded("setsockopt", || crate::filters::setsockopt(fd, &st, name, val, len)));
        }
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::setsockopt(fd, level, name, val, len) };
    if r == 0 && level == libc::SOL_SOCKET && fdtable::is_tracked(fd) {
        if let Some(st) = fdtable::get(fd) {
            st.refresh(fd);
        }
    }
    r
}

pub unsafe fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int {
    if level == options::SOL_UNIX && options::is_unix_socket(fd) {
        return int(guarded("getsockopt", || options::getsockopt(fd, name, val, len)));
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::getsockopt(fd, level, name, val, len) }
}

pub unsafe fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::bind(fd, addr, len) };
    if r == 0 {
        if let Some(st) = fdtable::get(fd) {
            st.refresh(fd);
        }
    }
    r
}

pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if let Some(st) = fdtable::get(fd) {
        // A new peer: the next send finds out again whether it is a group.
        *st.connected.lock() = None;
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::connect(fd, addr, len) };
    if r == 0 {
        let e = Errno::last();
        let _ = guarded("connect", || {
            send::discover_on_connect(fd, addr, len);
            Ok(())
        });
        e.set();
    }
    r
}

pub unsafe fn shutdown(fd: c_int, how: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::shutdown(fd, how) };
    if r == 0 && (how == libc::SHUT_RD || how == libc::SHUT_RDWR) {
        if let Some(st) = fdtable::get(fd) {
            lifecycle::end_accepted(&st);
            lifecycle::end_memberships(&st);
        }
    }
    r
}

// ---- sending -------------------------------------------------------------

/// # Safety
/// `buf` must be readable for `len` bytes (the caller's contract).
unsafe fn one(buf: *const c_void, len: size_t) -> [IoSlice<'static>; 1] {
    let s: &[u8] = if len == 0 || buf.is_null() {
        &[]
    } else {
        // SAFETY: the caller's buffer, valid for the duration of the call.
        unsafe { std::slice::from_raw_parts(buf as *const u8, len) }
    };
    [IoSlice::new(s)]
}

/// # Safety
/// `iov` must point to `cnt` valid iovecs.
unsafe fn iovs<'a>(iov: *const iovec, cnt: usize) -> &'a [IoSlice<'a>] {
    if iov.is_null() || cnt == 0 {
        return &[];
    }
    // SAFETY: IoSlice is ABI-compatible with iovec on Unix.
    unsafe { std::slice::from_raw_parts(iov as *const IoSlice<'a>, cnt) }
}

/// # Safety
/// `ctl` must be readable for `len` bytes.
unsafe fn bytes<'a>(ctl: *const c_void, len: usize) -> &'a [u8] {
    if ctl.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller's control buffer.
    unsafe { std::slice::from_raw_parts(ctl as *const u8, len) }
}

pub unsafe fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: caller's buffer.
    let iov = unsafe { one(buf, len) };
    let req = SendReq { fd, iov: &iov, flags, addr: None, control: &[] };
    // SAFETY: forwarded unchanged.
    ssize(guarded("send", || send::send(&req, &mut || unsafe { call_real::send(fd, buf, len, flags) })))
}

pub unsafe fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    // SAFETY: caller's buffer.
    let iov = unsafe { one(buf, len) };
    let req = SendReq { fd, iov: &iov, flags, addr: Some((addr, alen)), control: &[] };
    // SAFETY: forwarded unchanged.
    ssize(guarded("sendto", || send::send(&req, &mut || unsafe { call_real::sendto(fd, buf, len, flags, addr, alen) })))
}

pub unsafe fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() {
        // SAFETY: let the kernel report the bad pointer.
        return unsafe { call_real::sendmsg(fd, msg, flags) };
    }
    // SAFETY: the caller's msghdr is valid.
    let m = unsafe { &*msg };
    // SAFETY: the caller's iovecs and control buffer.
    let (iov, control) = unsafe { (iovs(m.msg_iov, m.msg_iovlen), bytes(m.msg_control, m.msg_controllen)) };
    let req = SendReq { fd, iov, flags, addr: Some((m.msg_name as *const sockaddr, m.msg_namelen)), control };
    // SAFETY: forwarded unchanged.
    ssize(guarded("sendmsg", || send::send(&req, &mut || unsafe { call_real::sendmsg(fd, msg, flags) })))
}

pub unsafe fn sendmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int {
    if !fdtable::is_tracked(fd) {
        // SAFETY: forwarded unchanged.
        let r = unsafe { call_real::sendmmsg(fd, vec, vlen, flags) };
        if r >= 0 || Errno::last() != Errno::EPIPE {
            return r;
        }
    }
    // One message at a time through the group-aware path, as the kernel
    // does: stop at the first error, report it only if nothing was sent.
    let mut sent: c_int = 0;
    for i in 0..vlen as usize {
        // SAFETY: the caller's array holds vlen entries.
        let e = unsafe { &mut *vec.add(i) };
        // SAFETY: each entry's msghdr is valid.
        let r = unsafe { sendmsg(fd, &e.msg_hdr, flags) };
        if r < 0 {
            return if sent > 0 { sent } else { -1 };
        }
        e.msg_len = r as c_uint;
        sent += 1;
    }
    sent
}

pub unsafe fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    if !fdtable::is_tracked(fd) {
        // SAFETY: forwarded unchanged.
        let r = unsafe { call_real::write(fd, buf, len) };
        if r >= 0 || Errno::last() != Errno::EPIPE {
            return r;
        }
    }
    // SAFETY: caller's buffer.
    let iov = unsafe { one(buf, len) };
    let req = SendReq { fd, iov: &iov, flags: 0, addr: None, control: &[] };
    // SAFETY: forwarded unchanged.
    ssize(guarded("write", || send::send(&req, &mut || unsafe { call_real::write(fd, buf, len) })))
}

pub unsafe fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    if !fdtable::is_tracked(fd) {
        // SAFETY: forwarded unchanged.
        let r = unsafe { call_real::writev(fd, iov, cnt) };
        if r >= 0 || Errno::last() != Errno::EPIPE {
            return r;
        }
    }
    // SAFETY: the caller's iovecs.
    let v = unsafe { iovs(iov, cnt.max(0) as usize) };
    let req = SendReq { fd, iov: v, flags: 0, addr: None, control: &[] };
    // SAFETY: forwarded unchanged.
    ssize(guarded("writev", || send::send(&req, &mut || unsafe { call_real::writev(fd, iov, cnt) })))
}

// ---- receiving -----------------------------------------------------------

/// Receives through a msghdr built by the caller (tracked descriptors).
///
/// # Safety
/// `msg` must be valid for recvmsg(2).
unsafe fn recv_tracked(fd: c_int, msg: *mut msghdr, flags: c_int) -> Option<ssize_t> {
    let st = fdtable::get(fd)?;
    // SAFETY: caller's contract.
    Some(ssize(guarded("recv", || unsafe { recv::recvmsg(fd, &st, msg, flags) })))
}

fn msg_for(iov: *mut iovec, cnt: usize, name: *mut sockaddr, namelen: socklen_t) -> msghdr {
    // SAFETY: msghdr is plain data; zero is a valid empty header.
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov;
    m.msg_iovlen = cnt;
    m.msg_name = name as *mut c_void;
    m.msg_namelen = if name.is_null() { 0 } else { namelen };
    m
}

pub unsafe fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    if fdtable::is_tracked(fd) {
        let mut iov = iovec { iov_base: buf, iov_len: len };
        let mut m = msg_for(&mut iov, 1, std::ptr::null_mut(), 0);
        // SAFETY: a msghdr over the caller's buffer.
        if let Some(r) = unsafe { recv_tracked(fd, &mut m, flags) } {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::recv(fd, buf, len, flags) }
}

pub unsafe fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if fdtable::is_tracked(fd) {
        let mut iov = iovec { iov_base: buf, iov_len: len };
        let (name, nlen) = if addr.is_null() || alen.is_null() {
            (std::ptr::null_mut(), 0)
        } else {
            // SAFETY: the caller's address length pointer.
            (addr, unsafe { *alen })
        };
        let mut m = msg_for(&mut iov, 1, name, nlen);
        // SAFETY: a msghdr over the caller's buffers.
        if let Some(r) = unsafe { recv_tracked(fd, &mut m, flags) } {
            if r >= 0 && !name.is_null() {
                // SAFETY: as above.
                unsafe { *alen = m.msg_namelen };
            }
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::recvfrom(fd, buf, len, flags, addr, alen) }
}

pub unsafe fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let r = match fdtable::is_tracked(fd) && !msg.is_null() {
        // SAFETY: the caller's msghdr.
        true => unsafe { recv_tracked(fd, msg, flags) },
        false => None,
    };
    // SAFETY: forwarded unchanged.
    let r = r.unwrap_or_else(|| unsafe { call_real::recvmsg(fd, msg, flags) });
    // SAFETY: msg was just filled by a successful receive.
    if r >= 0 && !msg.is_null() && unsafe { (*msg).msg_controllen } > 0 {
        let e = Errno::last();
        // SAFETY: as above.
        let _ = guarded("recvmsg", || {
            unsafe { lifecycle::adopt_received(msg) };
            Ok(())
        });
        e.set();
    }
    r
}

pub unsafe fn recvmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut timespec) -> c_int {
    if !fdtable::is_tracked(fd) || vec.is_null() {
        // SAFETY: forwarded unchanged.
        return unsafe { call_real::recvmmsg(fd, vec, vlen, flags, timeout) };
    }
    // As the kernel: each datagram with the caller's flags (MSG_WAITFORONE
    // turns on MSG_DONTWAIT after the first), the timeout checked after
    // each one; an error after the first datagram ends the batch quietly.
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's timespec.
        let t = unsafe { &*timeout };
        Some(shmcore::sys::now_ms() + t.tv_sec.max(0) as u64 * 1000 + (t.tv_nsec.max(0) as u64) / 1_000_000)
    };
    let mut flags = flags;
    let mut got: c_int = 0;
    for i in 0..vlen as usize {
        // SAFETY: the caller's array holds vlen entries.
        let e = unsafe { &mut *vec.add(i) };
        // SAFETY: each entry's msghdr is valid.
        let r = unsafe { recvmsg(fd, &mut e.msg_hdr, flags & !libc::MSG_WAITFORONE) };
        if r < 0 {
            return if got > 0 { got } else { -1 };
        }
        e.msg_len = r as c_uint;
        got += 1;
        if flags & libc::MSG_WAITFORONE != 0 {
            flags |= libc::MSG_DONTWAIT;
        }
        if deadline.is_some_and(|d| shmcore::sys::now_ms() >= d) {
            break;
        }
    }
    got
}

pub unsafe fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    if fdtable::is_tracked(fd) {
        let mut iov = iovec { iov_base: buf, iov_len: len };
        let mut m = msg_for(&mut iov, 1, std::ptr::null_mut(), 0);
        // SAFETY: a msghdr over the caller's buffer.
        if let Some(r) = unsafe { recv_tracked(fd, &mut m, 0) } {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::read(fd, buf, len) }
}

pub unsafe fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    if fdtable::is_tracked(fd) && cnt >= 0 {
        let mut m = msg_for(iov as *mut iovec, cnt as usize, std::ptr::null_mut(), 0);
        // SAFETY: a msghdr over the caller's iovecs.
        if let Some(r) = unsafe { recv_tracked(fd, &mut m, 0) } {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::readv(fd, iov, cnt) }
}

extern "C" {
    fn __chk_fail() -> !;
}

pub unsafe fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t {
    if fdtable::is_tracked(fd) {
        if len > buflen {
            // SAFETY: glibc's fortify failure report; does not return.
            unsafe { __chk_fail() };
        }
        // SAFETY: checked above; same contract as recv.
        return unsafe { recv(fd, buf, len, flags) };
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::__recv_chk(fd, buf, len, buflen, flags) }
}

pub unsafe fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    if fdtable::is_tracked(fd) {
        if len > buflen {
            // SAFETY: glibc's fortify failure report; does not return.
            unsafe { __chk_fail() };
        }
        // SAFETY: checked above; same contract as recvfrom.
        return unsafe { recvfrom(fd, buf, len, flags, addr, alen) };
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::__recvfrom_chk(fd, buf, len, buflen, flags, addr, alen) }
}

pub unsafe fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t {
    if fdtable::is_tracked(fd) {
        if len > buflen {
            // SAFETY: glibc's fortify failure report; does not return.
            unsafe { __chk_fail() };
        }
        // SAFETY: checked above; same contract as read.
        return unsafe { read(fd, buf, len) };
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::__read_chk(fd, buf, len, buflen) }
}

// ---- descriptor lifecycle ------------------------------------------------

pub unsafe fn close(fd: c_int) -> c_int {
    if !fdtable::is_tracked(fd) {
        // SAFETY: forwarded unchanged.
        return unsafe { call_real::close(fd) };
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::close(fd) };
    let e = Errno::last();
    let _ = guarded("close", || {
        lifecycle::forget_fd(fd);
        fdtable::remove_epoll(fd);
        Ok(())
    });
    e.set();
    r
}

pub unsafe fn closefrom(lo: c_int) {
    // SAFETY: forwarded unchanged.
    unsafe { call_real::closefrom(lo) };
    let e = Errno::last();
    for fd in fdtable::tracked_in(lo.max(0) as u32, u32::MAX) {
        lifecycle::forget_fd(fd);
        fdtable::remove_epoll(fd);
    }
    e.set();
}

pub unsafe fn close_range(lo: c_uint, hi: c_uint, flags: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::close_range(lo, hi, flags) };
    if r == 0 && flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        let e = Errno::last();
        for fd in fdtable::tracked_in(lo, hi) {
            lifecycle::forget_fd(fd);
            fdtable::remove_epoll(fd);
        }
        e.set();
    }
    r
}

pub unsafe fn dup(fd: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::dup(fd) };
    if r >= 0 && fdtable::is_tracked(fd) {
        lifecycle::duplicated(fd, r);
        fdtable::dup_epoll(fd, r);
    }
    r
}

unsafe fn dup_onto(fd: c_int, to: c_int, real: impl FnOnce() -> c_int) -> c_int {
    let replaced = fdtable::is_tracked(to) && to != fd;
    let r = real();
    if r >= 0 {
        let e = Errno::last();
        if replaced {
            lifecycle::forget_fd(to);
            fdtable::remove_epoll(to);
        }
        if fdtable::is_tracked(fd) {
            lifecycle::duplicated(fd, r);
            fdtable::dup_epoll(fd, r);
        }
        e.set();
    }
    r
}

pub unsafe fn dup2(fd: c_int, to: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    unsafe { dup_onto(fd, to, || call_real::dup2(fd, to)) }
}

pub unsafe fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    unsafe { dup_onto(fd, to, || call_real::dup3(fd, to, flags)) }
}

fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) {
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && fdtable::is_tracked(fd) {
        let e = Errno::last();
        lifecycle::duplicated(fd, r);
        fdtable::dup_epoll(fd, r);
        e.set();
    }
}

pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: forwarded unchanged (the variadic argument is passed in the
    // same register as a fixed one on the supported ABIs).
    let r = unsafe { call_real::fcntl(fd, cmd, arg) };
    after_fcntl(fd, cmd, r);
    r
}

pub unsafe fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: as for fcntl.
    let r = unsafe { call_real::fcntl64(fd, cmd, arg) };
    after_fcntl(fd, cmd, r);
    r
}

// ---- readiness -----------------------------------------------------------

fn ms_of(ts: *const timespec) -> Option<u64> {
    if ts.is_null() {
        return None;
    }
    // SAFETY: the caller's timespec.
    let t = unsafe { &*ts };
    Some(t.tv_sec.max(0) as u64 * 1000 + (t.tv_nsec.max(0) as u64).div_ceil(1_000_000))
}

/// # Safety
/// `fds` must point to `n` pollfds.
unsafe fn poll_common(fds: *mut pollfd, n: nfds_t, timeout: Deadline, mask: *const sigset_t) -> Option<c_int> {
    if fds.is_null() || n == 0 {
        return None;
    }
    // SAFETY: the caller's array of n pollfds.
    let slice = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    if !slice.iter().any(|p| fdtable::is_tracked(p.fd)) {
        return None;
    }
    let watch = poll::tracked(slice);
    if watch.is_empty() {
        return None;
    }
    Some(int(guarded("poll", || poll::poll(slice, &watch, timeout, mask).map(|n| n as i32))))
}

pub unsafe fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    let t = Deadline::from_ms((timeout >= 0).then_some(timeout as u64));
    // SAFETY: the caller's array.
    if let Some(r) = unsafe { poll_common(fds, n, t, std::ptr::null()) } {
        return r;
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::poll(fds, n, timeout) }
}

pub unsafe fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int {
    if !timeout.is_null() {
        // SAFETY: the caller's timespec.
        let t = unsafe { &*timeout };
        if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
            // SAFETY: let the kernel report the bad timeout.
            return unsafe { call_real::ppoll(fds, n, timeout, mask) };
        }
    }
    // SAFETY: the caller's array.
    if let Some(r) = unsafe { poll_common(fds, n, Deadline::from_ms(ms_of(timeout)), mask) } {
        return r;
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::ppoll(fds, n, timeout, mask) }
}

pub unsafe fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int {
    if fdslen / std::mem::size_of::<pollfd>() < n as usize {
        // SAFETY: glibc's fortify failure report; does not return.
        unsafe { __chk_fail() };
    }
    // SAFETY: checked as glibc would; same contract as poll.
    unsafe { poll(fds, n, timeout) }
}

pub unsafe fn __ppoll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
    fdslen: size_t,
) -> c_int {
    if fdslen / std::mem::size_of::<pollfd>() < n as usize {
        // SAFETY: glibc's fortify failure report; does not return.
        unsafe { __chk_fail() };
    }
    // SAFETY: checked as glibc would; same contract as ppoll.
    unsafe { ppoll(fds, n, timeout, mask) }
}

pub unsafe fn select(n: c_int, rd: *mut fd_set, wr: *mut fd_set, ex: *mut fd_set, timeout: *mut timeval) -> c_int {
    if !poll::sets_tracked(n, [rd, wr, ex]) {
        // SAFETY: forwarded unchanged.
        return unsafe { call_real::select(n, rd, wr, ex, timeout) };
    }
    let ms = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's timeval.
        let t = unsafe { &*timeout };
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            return int(Err(Errno::EINVAL));
        }
        Some(t.tv_sec as u64 * 1000 + (t.tv_usec as u64).div_ceil(1000))
    };
    let dl = Deadline::from_ms(ms);
    let r = int(guarded("select", || poll::select(n, rd, wr, ex, dl, std::ptr::null()).map(|n| n as i32)));
    if !timeout.is_null() {
        // Linux select reports the time left.
        let left = dl.left_ms().unwrap_or(0);
        // SAFETY: the caller's timeval.
        unsafe {
            *timeout =
                timeval { tv_sec: (left / 1000) as libc::time_t, tv_usec: ((left % 1000) * 1000) as libc::suseconds_t }
        };
    }
    r
}

pub unsafe fn pselect(
    n: c_int,
    rd: *mut fd_set,
    wr: *mut fd_set,
    ex: *mut fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if !poll::sets_tracked(n, [rd, wr, ex]) {
        // SAFETY: forwarded unchanged.
        return unsafe { call_real::pselect(n, rd, wr, ex, timeout, mask) };
    }
    let dl = Deadline::from_ms(ms_of(timeout));
    int(guarded("pselect", || poll::select(n, rd, wr, ex, dl, mask).map(|n| n as i32)))
}

pub unsafe fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut epoll_event) -> c_int {
    if !fdtable::is_tracked(fd) && !fdtable::is_tracked(epfd) {
        // SAFETY: forwarded unchanged.
        return unsafe { call_real::epoll_ctl(epfd, op, fd, ev) };
    }
    match fdtable::get(fd) {
        Some(st) => {
            let set = fdtable::epoll_or_insert(epfd);
            int(guarded("epoll_ctl", || set.ctl(epfd, op, fd, st, ev).map(|()| 0)))
        }
        // SAFETY: forwarded unchanged.
        None => unsafe { call_real::epoll_ctl(epfd, op, fd, ev) },
    }
}

unsafe fn epoll_common(
    epfd: c_int,
    ev: *mut epoll_event,
    max: c_int,
    timeout: Deadline,
    mask: *const sigset_t,
) -> Option<c_int> {
    let set = fdtable::epoll(epfd)?;
    Some(int(guarded("epoll_wait", || set.wait(epfd, ev, max, timeout, mask).map(|n| n as i32))))
}

pub unsafe fn epoll_wait(epfd: c_int, ev: *mut epoll_event, max: c_int, timeout: c_int) -> c_int {
    let t = Deadline::from_ms((timeout >= 0).then_some(timeout as u64));
    // SAFETY: the caller's arguments.
    if let Some(r) = unsafe { epoll_common(epfd, ev, max, t, std::ptr::null()) } {
        return r;
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::epoll_wait(epfd, ev, max, timeout) }
}

pub unsafe fn epoll_pwait(
    epfd: c_int,
    ev: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    let t = Deadline::from_ms((timeout >= 0).then_some(timeout as u64));
    // SAFETY: the caller's arguments.
    if let Some(r) = unsafe { epoll_common(epfd, ev, max, t, mask) } {
        return r;
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::epoll_pwait(epfd, ev, max, timeout, mask) }
}

pub unsafe fn epoll_pwait2(
    epfd: c_int,
    ev: *mut epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if fdtable::epoll(epfd).is_some() {
        // SAFETY: the caller's arguments.
        if let Some(r) = unsafe { epoll_common(epfd, ev, max, Deadline::from_ms(ms_of(timeout)), mask) } {
            return r;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { call_real::epoll_pwait2(epfd, ev, max, timeout, mask) }
}

// ---- permissions of path groups -------------------------------------------

/// After a successful chmod/chown of `path` (relative to `dirfd`): if it is
/// a path group's socket file, the group's shared state follows.
fn permissions_changed(dirfd: c_int, path: *const libc::c_char) {
    if path.is_null() {
        return;
    }
    // SAFETY: the caller's NUL-terminated path.
    let p = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
    if p.is_empty() || (dirfd != libc::AT_FDCWD && p[0] != b'/') {
        return; // paths relative to another directory: not resolvable here
    }
    let addr = shmcore::addr::UnixAddr::Path(p.to_vec());
    if shmcore::group::segment_exists(&addr, libc::SOCK_DGRAM) {
        let e = Errno::last();
        let _ = guarded("chmod", || shmcore::group::Group::sync_permissions(&addr));
        e.set();
    }
}

pub unsafe fn chmod(path: *const libc::c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::chmod(path, mode) };
    if r == 0 {
        permissions_changed(libc::AT_FDCWD, path);
    }
    r
}

pub unsafe fn fchmodat(dirfd: c_int, path: *const libc::c_char, mode: libc::mode_t, flags: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::fchmodat(dirfd, path, mode, flags) };
    if r == 0 {
        permissions_changed(dirfd, path);
    }
    r
}

pub unsafe fn chown(path: *const libc::c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { call_real::chown(path, uid, gid) };
    if r == 0 {
        permissions_changed(libc::AT_FDCWD, path);
    }
    r
}

// ---- credentials -----------------------------------------------------------

/// The set*id family: the cached credentials group messages carry must be
/// read again.
macro_rules! id_hooks {
    ($($name:ident($($a:ident: $t:ty),*);)*) => {$(
        pub unsafe fn $name($($a: $t),*) -> c_int {
            // SAFETY: forwarded unchanged.
            let r = unsafe { call_real::$name($($a),*) };
            crate::state::forget_ids();
            r
        }
    )*};
}

id_hooks! {
    setuid(uid: libc::uid_t);
    setgid(gid: libc::gid_t);
    seteuid(uid: libc::uid_t);
    setegid(gid: libc::gid_t);
    setreuid(r: libc::uid_t, e: libc::uid_t);
    setregid(r: libc::gid_t, e: libc::gid_t);
    setresuid(r: libc::uid_t, e: libc::uid_t, s: libc::uid_t);
    setresgid(r: libc::gid_t, e: libc::gid_t, s: libc::gid_t);
}
