//! epoll with group readiness.
//!
//! For each tracked socket the caller registers, the shim keeps a
//! `Registration` (the caller's events and data) and puts the socket's
//! doorbell into the same epoll set, tagged with a pointer to a `Bell`
//! record the shim owns (a heap address, which no caller datum equals).
//! `epoll_wait` answers group readiness from the registrations, sleeps in
//! the real call, and translates doorbell events back into events of the
//! caller's descriptors carrying the caller's data untouched.
//!
//! Semantics kept: level-triggered (reported while a message waits),
//! EPOLLET (a new event when new messages arrived since the last report),
//! EPOLLONESHOT (disarmed after one report until EPOLL_CTL_MOD).

use crate::fdtable;
use crate::hooks::call_real;
use crate::poll::Deadline;
use crate::readiness::{self, Arming};
use crate::state::SockState;
use parking_lot::Mutex;
use shmcore::Errno;
use std::collections::HashMap;
use std::sync::Arc;

const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLONESHOT: u32 = libc::EPOLLONESHOT as u32;
const EPOLLRDNORM: u32 = libc::EPOLLRDNORM as u32;
const EPOLLWRNORM: u32 = libc::EPOLLWRNORM as u32;
const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;

/// One caller registration of a tracked socket.
struct Registration {
    st: Arc<SockState>,
    events: u32,
    data: u64,
    armed: bool,
    /// For EPOLLET: the arrival count at the last report.
    seen: u64,
}

/// A doorbell in the kernel's epoll set; its epoll data is this record's
/// address.
struct Bell {
    fd: i32,
    users: usize,
}

pub struct EpollSet {
    epfd: i32,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    regs: HashMap<i32, Registration>,
    bells: HashMap<i32, Box<Bell>>,
}

fn to_poll(ev: u32) -> i16 {
    let mut p = 0;
    if ev & (EPOLLIN | EPOLLRDNORM) != 0 {
        p |= libc::POLLIN;
    }
    if ev & (EPOLLOUT | EPOLLWRNORM) != 0 {
        p |= libc::POLLOUT;
    }
    p
}

fn masked_events(st: &SockState, ev: u32) -> u32 {
    let m = readiness::masked_from_kernel(st);
    let mut out = ev;
    if m & readiness::OUT_BITS != 0 {
        out &= !(EPOLLOUT | EPOLLWRNORM);
    }
    if m & readiness::IN_BITS != 0 {
        out &= !(EPOLLIN | EPOLLRDNORM | EPOLLRDHUP);
    }
    out
}

/// Arrivals so far in every queue of the socket (for EPOLLET).
fn arrivals(st: &SockState) -> u64 {
    st.endpoint().map_or(0, |ep| {
        ep.memberships()
            .iter()
            .map(|m| {
                m.queue
                    .header()
                    .tail
                    .tail
                    .load(std::sync::atomic::Ordering::Acquire)
            })
            .sum()
    })
}

impl EpollSet {
    pub fn new(epfd: i32) -> EpollSet {
        EpollSet {
            epfd,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn add_bell(&self, inner: &mut Inner, fd: i32) -> Result<(), Errno> {
        if let Some(b) = inner.bells.get_mut(&fd) {
            b.users += 1;
            return Ok(());
        }
        let bell = Box::new(Bell { fd, users: 1 });
        let mut ev = libc::epoll_event {
            events: EPOLLIN,
            u64: &*bell as *const Bell as u64,
        };
        // SAFETY: registering our own doorbell descriptor in the caller's set.
        if unsafe { call_real::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(Errno::last());
        }
        inner.bells.insert(fd, bell);
        Ok(())
    }

    fn drop_bell(&self, inner: &mut Inner, fd: i32) {
        if let Some(b) = inner.bells.get_mut(&fd) {
            b.users -= 1;
            if b.users == 0 {
                // SAFETY: removing our own registration; failure (the set is
                // being closed) leaves nothing to undo.
                unsafe {
                    call_real::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut())
                };
                inner.bells.remove(&fd);
            }
        }
    }

    fn bells_of(st: &SockState, events: u32) -> Vec<i32> {
        let mut v = Vec::new();
        if events & (EPOLLIN | EPOLLRDNORM) != 0 {
            if let Some(ep) = st.endpoint() {
                v.push(ep.doorbell_fd());
            }
        }
        if events & (EPOLLOUT | EPOLLWRNORM) != 0 && readiness::send_group(st).is_some() {
            if let Some(b) = readiness::room_doorbell() {
                v.push(b.fd());
            }
        }
        v
    }

    /// epoll_ctl on a tracked socket.
    pub fn ctl(
        &self,
        op: i32,
        fd: i32,
        st: Arc<SockState>,
        ev: *mut libc::epoll_event,
    ) -> Result<(), Errno> {
        let mut inner = self.inner.lock();
        let user = if ev.is_null() {
            None
        } else {
            // SAFETY: the caller's epoll_event.
            Some(unsafe { std::ptr::read_unaligned(ev) })
        };
        let mut kev = user.map(|u| libc::epoll_event {
            events: masked_events(&st, u.events),
            u64: u.u64,
        });
        let kp = kev
            .as_mut()
            .map_or(std::ptr::null_mut(), |k| k as *mut libc::epoll_event);
        // SAFETY: the caller's arguments, with the event mask adjusted.
        if unsafe { call_real::epoll_ctl(self.epfd, op, fd, kp) } < 0 {
            return Err(Errno::last());
        }
        if let Some(old) = inner.regs.remove(&fd) {
            for b in Self::bells_of(&old.st, old.events) {
                self.drop_bell(&mut inner, b);
            }
        }
        if op == libc::EPOLL_CTL_DEL {
            return Ok(());
        }
        let u = user.ok_or(Errno::EFAULT)?;
        for b in Self::bells_of(&st, u.events) {
            self.add_bell(&mut inner, b)?;
        }
        let seen = arrivals(&st);
        inner.regs.insert(
            fd,
            Registration {
                st,
                events: u.events,
                data: u.u64,
                armed: true,
                seen,
            },
        );
        Ok(())
    }

    /// Forgets registrations of a socket that is gone from this process.
    pub fn forget_socket(&self, st: &Arc<SockState>) {
        let mut inner = self.inner.lock();
        let fds: Vec<i32> = inner
            .regs
            .iter()
            .filter(|(_, r)| Arc::ptr_eq(&r.st, st))
            .map(|(fd, _)| *fd)
            .collect();
        for fd in fds {
            if let Some(old) = inner.regs.remove(&fd) {
                for b in Self::bells_of(&old.st, old.events) {
                    self.drop_bell(&mut inner, b);
                }
            }
        }
    }

    /// Group events ready now, appended to `out` (at most `max`).
    fn synthesize(inner: &mut Inner, out: &mut Vec<libc::epoll_event>, max: usize) {
        for r in inner.regs.values_mut() {
            if out.len() >= max || !r.armed {
                continue;
            }
            let mut ready = readiness::group_revents(&r.st, to_poll(r.events));
            if r.events & EPOLLET != 0 && ready & readiness::IN_BITS != 0 {
                let now = arrivals(&r.st);
                if now == r.seen {
                    ready &= !readiness::IN_BITS;
                }
                r.seen = now;
            }
            let mut evs = 0;
            if ready & readiness::IN_BITS != 0 {
                evs |= r.events & (EPOLLIN | EPOLLRDNORM);
            }
            if ready & readiness::OUT_BITS != 0 {
                evs |= r.events & (EPOLLOUT | EPOLLWRNORM);
            }
            if evs != 0 {
                out.push(libc::epoll_event {
                    events: evs,
                    u64: r.data,
                });
                if r.events & EPOLLONESHOT != 0 {
                    r.armed = false;
                }
            }
        }
    }

    /// epoll_wait / epoll_pwait / epoll_pwait2 on a set with tracked sockets.
    pub fn wait(
        &self,
        events: *mut libc::epoll_event,
        max: i32,
        timeout: Deadline,
        sigmask: *const libc::sigset_t,
    ) -> Result<usize, Errno> {
        if max <= 0 || events.is_null() {
            return Err(Errno::EINVAL);
        }
        let max = max as usize;
        loop {
            let mut out = Vec::with_capacity(max);
            let mut arming = Arming::default();
            let mut wait_ms = timeout.left_ms();
            {
                let mut inner = self.inner.lock();
                Self::synthesize(&mut inner, &mut out, max);
                if out.is_empty() && wait_ms != Some(0) {
                    let mut ready = false;
                    for r in inner.regs.values().filter(|r| r.armed) {
                        ready |= arming.arm(&r.st, to_poll(r.events));
                    }
                    if ready {
                        drop(inner);
                        drop(arming);
                        continue;
                    }
                    if arming.needs_slices {
                        wait_ms = Some(
                            wait_ms.map_or(readiness::SLICE_MS, |w| w.min(readiness::SLICE_MS)),
                        );
                    }
                } else {
                    wait_ms = Some(0);
                }
            }
            let mut buf: Vec<libc::epoll_event> =
                vec![libc::epoll_event { events: 0, u64: 0 }; max];
            let ms = wait_ms.map_or(-1, |m| m.min(i32::MAX as u64) as i32);
            // SAFETY: a live buffer of `max` events; the caller's sigmask.
            let r = unsafe {
                call_real::epoll_pwait(self.epfd, buf.as_mut_ptr(), max as i32, ms, sigmask)
            };
            let err = if r < 0 { Some(Errno::last()) } else { None };
            drop(arming);
            if let Some(e) = err {
                return Err(e);
            }
            let mut inner = self.inner.lock();
            let mut rang = false;
            for k in &buf[..r as usize] {
                if let Some(b) = inner
                    .bells
                    .values()
                    .find(|b| &***b as *const Bell as u64 == k.u64)
                {
                    readiness::drain_bell(b.fd);
                    rang = true;
                    continue;
                }
                // A kernel event of a caller registration: pass it through;
                // a one-shot registration is now disarmed for group events too.
                if let Some(reg) = inner
                    .regs
                    .values_mut()
                    .find(|g| g.data == k.u64 && g.events & EPOLLONESHOT != 0)
                {
                    reg.armed = false;
                }
                out.push(*k);
            }
            if rang {
                let room = max - out.len().min(max);
                let mut more = Vec::new();
                Self::synthesize(&mut inner, &mut more, room);
                for e in more {
                    // Merge with a kernel event for the same registration.
                    if let Some(x) = out.iter_mut().find(|x| x.u64 == e.u64) {
                        x.events |= e.events;
                    } else {
                        out.push(e);
                    }
                }
            }
            drop(inner);
            if !out.is_empty() || timeout.expired() {
                let n = out.len().min(max);
                // SAFETY: the caller's array holds `max` events.
                unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), events, n) };
                return Ok(n);
            }
        }
    }
}

/// Drops every registration of a socket that left this process.
pub fn forget_socket(st: &Arc<SockState>) {
    for set in fdtable::epoll_sets() {
        set.forget_socket(st);
    }
}
