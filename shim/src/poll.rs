//! poll, ppoll and select with group readiness.
//!
//! When the caller's set holds a tracked socket, the shim answers group
//! readiness itself and, if nothing is ready, sleeps in the real `ppoll` on
//! the caller's descriptors plus the doorbells of the members it waits for.
//! The caller's signal mask is passed through, so `ppoll`/`pselect` keep
//! their atomic mask semantics; a signal interrupts with EINTR as usual.

use crate::fdtable;
use crate::hooks::call_real;
use crate::readiness::{self, Arming};
use crate::state::SockState;
use shmcore::{sys, Errno};
use std::sync::Arc;

/// A timeout as a deadline on the monotonic clock (None: forever).
#[derive(Clone, Copy)]
pub struct Deadline(Option<u64>);

impl Deadline {
    pub fn from_ms(ms: Option<u64>) -> Deadline {
        Deadline(ms.map(|m| sys::now_ms().saturating_add(m)))
    }
    pub fn left_ms(&self) -> Option<u64> {
        self.0.map(|d| d.saturating_sub(sys::now_ms()))
    }
    pub fn expired(&self) -> bool {
        self.left_ms() == Some(0)
    }
}

/// Tracked entries of a pollfd array: (index, state).
pub fn tracked(fds: &[libc::pollfd]) -> Vec<(usize, Arc<SockState>)> {
    fds.iter()
        .enumerate()
        .filter(|(_, p)| fdtable::is_tracked(p.fd))
        .filter_map(|(i, p)| fdtable::get(p.fd).map(|s| (i, s)))
        .collect()
}

fn to_timespec(ms: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ms / 1000) as libc::time_t, tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long }
}

/// poll over `fds`, some of them tracked. `sigmask` as for ppoll.
pub fn poll(
    fds: &mut [libc::pollfd],
    watch: &[(usize, Arc<SockState>)],
    timeout: Deadline,
    sigmask: *const libc::sigset_t,
) -> Result<usize, Errno> {
    loop {
        // Ready now? Then only collect what the kernel has, without waiting.
        let group_ready = watch.iter().any(|(i, st)| readiness::group_revents(st, fds[*i].fd, fds[*i].events) != 0);
        let mut arming = Arming::default();
        let mut wait = if group_ready { Some(0) } else { timeout.left_ms() };
        if !group_ready && wait != Some(0) {
            let mut ready = false;
            for (i, st) in watch {
                ready |= arming.arm(st, fds[*i].fd, fds[*i].events);
            }
            if ready {
                drop(arming);
                continue;
            }
            if arming.needs_slices {
                wait = Some(wait.map_or(readiness::SLICE_MS, |w| w.min(readiness::SLICE_MS)));
            }
        }
        let bells = arming.bells();
        let mut ext: Vec<libc::pollfd> = Vec::with_capacity(fds.len() + bells.len());
        ext.extend(fds.iter().map(|p| libc::pollfd { fd: p.fd, events: p.events, revents: 0 }));
        for (i, st) in watch {
            ext[*i].events &= !readiness::masked_from_kernel(st);
        }
        ext.extend(bells.iter().map(|b| libc::pollfd { fd: b.fd(), events: libc::POLLIN, revents: 0 }));
        let ts = wait.map(to_timespec);
        // SAFETY: `ext` is a live array of pollfds; ts and sigmask are the
        // caller's or null.
        let r = unsafe {
            call_real::ppoll(
                ext.as_mut_ptr(),
                ext.len() as libc::nfds_t,
                ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec),
                sigmask,
            )
        };
        let err = if r < 0 { Some(Errno::last()) } else { None };
        drop(arming);
        for (b, p) in bells.iter().zip(&ext[fds.len()..]) {
            if p.revents != 0 {
                b.reset();
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        let mut n = 0;
        for (k, p) in fds.iter_mut().enumerate() {
            p.revents = ext[k].revents;
        }
        for (i, st) in watch {
            let p = &mut fds[*i];
            p.revents &= !readiness::masked_from_kernel(st);
            p.revents |= readiness::group_revents(st, p.fd, p.events);
        }
        for p in fds.iter() {
            if p.revents != 0 {
                n += 1;
            }
        }
        if n > 0 || timeout.expired() {
            return Ok(n);
        }
        // Only a doorbell rang (another receiver took the message) or a
        // slice ended: wait again for the time that is left.
    }
}

/// select/pselect through `poll`. Returns the number of set bits, and
/// rewrites the sets, as select does.
pub fn select(
    nfds: i32,
    rd: *mut libc::fd_set,
    wr: *mut libc::fd_set,
    ex: *mut libc::fd_set,
    timeout: Deadline,
    sigmask: *const libc::sigset_t,
) -> Result<usize, Errno> {
    if !(0..=libc::FD_SETSIZE as i32).contains(&nfds) {
        return Err(Errno::EINVAL);
    }
    let isset = |s: *mut libc::fd_set, fd: i32| {
        // SAFETY: s is the caller's fd_set (non-null), fd < nfds <= FD_SETSIZE.
        !s.is_null() && unsafe { libc::FD_ISSET(fd, s) }
    };
    let mut fds = Vec::new();
    for fd in 0..nfds {
        let mut ev = 0;
        if isset(rd, fd) {
            ev |= libc::POLLIN;
        }
        if isset(wr, fd) {
            ev |= libc::POLLOUT;
        }
        if isset(ex, fd) {
            ev |= libc::POLLPRI;
        }
        if ev != 0 {
            fds.push(libc::pollfd { fd, events: ev, revents: 0 });
        }
    }
    let watch = tracked(&fds);
    poll(&mut fds, &watch, timeout, sigmask)?;
    if fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        return Err(Errno::EBADF);
    }
    let mut n = 0;
    for s in [rd, wr, ex] {
        if !s.is_null() {
            // SAFETY: the caller's fd_set.
            unsafe { libc::FD_ZERO(s) };
        }
    }
    for p in &fds {
        // select's notion of readable/writable includes error and hangup.
        let r = p.revents;
        let mut mark = |s: *mut libc::fd_set| {
            if !s.is_null() {
                // SAFETY: the caller's fd_set; fd < nfds <= FD_SETSIZE.
                unsafe { libc::FD_SET(p.fd, s) };
                n += 1;
            }
        };
        if p.events & libc::POLLIN != 0 && r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            mark(rd);
        }
        if p.events & libc::POLLOUT != 0 && r & (libc::POLLOUT | libc::POLLERR) != 0 {
            mark(wr);
        }
        if p.events & libc::POLLPRI != 0 && r & libc::POLLPRI != 0 {
            mark(ex);
        }
    }
    Ok(n)
}

/// Whether any descriptor in the first `nfds` bits of the sets is tracked.
pub fn sets_tracked(nfds: i32, sets: [*mut libc::fd_set; 3]) -> bool {
    (0..nfds.clamp(0, libc::FD_SETSIZE as i32)).any(|fd| {
        fdtable::is_tracked(fd)
            && sets.iter().any(|&s| {
                // SAFETY: the caller's fd_set; fd < FD_SETSIZE.
                !s.is_null() && unsafe { libc::FD_ISSET(fd, s) }
            })
    })
}
