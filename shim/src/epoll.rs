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
    /// For EPOLLET: the arrival count at the last input report (None:
    /// nothing reported since ADD/MOD).
    seen: Option<u64>,
    /// For EPOLLET: EPOLLOUT was reported and the socket stayed writable.
    out_reported: bool,
}

/// One of our descriptors in the caller's epoll set; its epoll data is
/// this record's address. Group FIFOs are watched edge-triggered and never
/// read; the room doorbell is level-triggered and drained when it fires.
/// Registrations stay until the descriptor or the set is closed (a FIFO
/// of a group this process no longer receives from only costs a spurious,
/// internally absorbed wake-up).
struct Bell {
    fd: i32,
    edge: bool,
}

/// Identifies a bell: its descriptor and the group whose FIFO it is (0 for
/// the room doorbell), so a reused descriptor number is registered anew.
type BellKey = (i32, u64);

/// The shim's view of one epoll instance (shared by every descriptor
/// that names it: dup, fork). Real calls always use the descriptor the
/// caller passed, never a remembered number.
pub struct EpollSet {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    regs: HashMap<i32, Registration>,
    bells: HashMap<BellKey, Box<Bell>>,
    /// Rotates which registration `synthesize` looks at first, so that
    /// more ready members than `maxevents` are all reported in turn.
    rotate: usize,
    /// Alternates whether group events or kernel events fill a small
    /// `maxevents` first, as the kernel's ready list rotates.
    kernel_first: bool,
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
        ep.memberships().iter().map(|m| m.queue.header().tail.tail.load(std::sync::atomic::Ordering::Acquire)).sum()
    })
}

impl EpollSet {
    pub fn new() -> EpollSet {
        EpollSet { inner: Mutex::new(Inner::default()) }
    }

    fn add_bell(epfd: i32, inner: &mut Inner, key: BellKey, edge: bool) -> Result<(), Errno> {
        if inner.bells.contains_key(&key) {
            return Ok(());
        }
        let bell = Box::new(Bell { fd: key.0, edge });
        let events = if edge { EPOLLIN | EPOLLET } else { EPOLLIN };
        let mut ev = libc::epoll_event { events, u64: &*bell as *const Bell as u64 };
        // SAFETY: registering our own descriptor in the caller's set.
        if unsafe { call_real::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, key.0, &mut ev) } < 0 {
            let e = Errno::last();
            if e != Errno::EEXIST {
                return Err(e);
            }
            // Registered under an older record (a reused descriptor number):
            // point it at the new one.
            // SAFETY: as above.
            if unsafe { call_real::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, key.0, &mut ev) } < 0 {
                return Err(Errno::last());
            }
        }
        inner.bells.retain(|k, _| k.0 != key.0);
        inner.bells.insert(key, bell);
        Ok(())
    }

    /// The bells a registration needs: the wake FIFOs of the socket's
    /// groups (input), the room doorbell (output to a group).
    fn bells_of(st: &SockState, events: u32) -> Vec<(BellKey, bool)> {
        let mut v = Vec::new();
        if events & (EPOLLIN | EPOLLRDNORM) != 0 {
            if let Some(ep) = st.endpoint() {
                v.extend(ep.wake_fds().into_iter().map(|key| (key, true)));
            }
        }
        if events & (EPOLLOUT | EPOLLWRNORM) != 0 && readiness::send_group(st).is_some() {
            if let Some(b) = readiness::room_doorbell() {
                v.push(((b.fd(), 0), false));
            }
        }
        v
    }

    /// Registers whatever bells the current registrations need (a member
    /// may have joined another group since it was added).
    fn ensure_bells(epfd: i32, inner: &mut Inner) -> Result<(), Errno> {
        let want: Vec<(BellKey, bool)> = inner.regs.values().flat_map(|r| Self::bells_of(&r.st, r.events)).collect();
        for (key, edge) in want {
            Self::add_bell(epfd, inner, key, edge)?;
        }
        Ok(())
    }

    /// epoll_ctl on a tracked socket.
    pub fn ctl(
        &self,
        epfd: i32,
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
        let mut kev = user.map(|u| libc::epoll_event { events: masked_events(&st, u.events), u64: u.u64 });
        let kp = kev.as_mut().map_or(std::ptr::null_mut(), |k| k as *mut libc::epoll_event);
        // SAFETY: the caller's arguments, with the event mask adjusted.
        if unsafe { call_real::epoll_ctl(epfd, op, fd, kp) } < 0 {
            return Err(Errno::last());
        }
        inner.regs.remove(&fd);
        if op == libc::EPOLL_CTL_DEL {
            return Ok(());
        }
        let u = user.ok_or(Errno::EFAULT)?;
        for (key, edge) in Self::bells_of(&st, u.events) {
            Self::add_bell(epfd, &mut inner, key, edge)?;
        }
        // As the kernel re-checks readiness on ADD and MOD, an edge-triggered
        // registration reports what is already waiting once.
        let reg = Registration { st, events: u.events, data: u.u64, armed: true, seen: None, out_reported: false };
        inner.regs.insert(fd, reg);
        Ok(())
    }

    /// Forgets registrations of a socket that is gone from this process
    /// (the kernel dropped its own registration with the socket).
    pub fn forget_socket(&self, st: &Arc<SockState>) {
        self.inner.lock().regs.retain(|_, r| !Arc::ptr_eq(&r.st, st));
    }

    /// Group events ready now, appended to `out` (at most `max`).
    fn synthesize(inner: &mut Inner, out: &mut Vec<libc::epoll_event>, max: usize) {
        let mut fds: Vec<i32> = inner.regs.keys().copied().collect();
        fds.sort_unstable();
        if !fds.is_empty() {
            let k = inner.rotate % fds.len();
            fds.rotate_left(k);
            inner.rotate = inner.rotate.wrapping_add(1);
        }
        for fd in fds {
            if out.len() >= max {
                break;
            }
            let Some(r) = inner.regs.get_mut(&fd) else {
                continue;
            };
            if !r.armed {
                continue;
            }
            let mut ready = readiness::group_revents(&r.st, fd, to_poll(r.events));
            if r.events & EPOLLET != 0 {
                if ready & readiness::IN_BITS != 0 {
                    let now = arrivals(&r.st);
                    if r.seen == Some(now) {
                        ready &= !readiness::IN_BITS;
                    }
                    r.seen = Some(now);
                }
                if ready & readiness::OUT_BITS != 0 {
                    if r.out_reported {
                        ready &= !readiness::OUT_BITS;
                    }
                    r.out_reported = true;
                } else if r.events & (EPOLLOUT | EPOLLWRNORM) != 0 && readiness::send_group(&r.st).is_some() {
                    // Not writable now: the next time room appears is a new edge.
                    r.out_reported = false;
                }
            }
            let mut evs = 0;
            if ready & readiness::IN_BITS != 0 {
                evs |= r.events & (EPOLLIN | EPOLLRDNORM);
            }
            if ready & readiness::OUT_BITS != 0 {
                evs |= r.events & (EPOLLOUT | EPOLLWRNORM);
            }
            if evs != 0 {
                out.push(libc::epoll_event { events: evs, u64: r.data });
                if r.events & EPOLLONESHOT != 0 {
                    r.armed = false;
                }
            }
        }
    }

    /// Our doorbell registrations as (epoll data, descriptor).
    fn bell_snapshot(inner: &Inner) -> Vec<(u64, i32, bool)> {
        inner.bells.values().map(|b| (&**b as *const Bell as u64, b.fd, b.edge)).collect()
    }

    /// One real epoll_pwait for at most `max` events, made without holding
    /// our lock (other threads may call epoll_ctl meanwhile). Doorbell
    /// events are drained and dropped; the caller's events are returned.
    /// Returns whether a doorbell rang.
    fn kernel_events(
        epfd: i32,
        bells: &[(u64, i32, bool)],
        max: usize,
        ms: i32,
        sigmask: *const libc::sigset_t,
        out: &mut Vec<libc::epoll_event>,
    ) -> Result<bool, Errno> {
        if max == 0 {
            return Ok(false);
        }
        let mut buf: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; max];
        // SAFETY: a live buffer of `max` events; the caller's sigmask.
        let r = unsafe { call_real::epoll_pwait(epfd, buf.as_mut_ptr(), max as i32, ms, sigmask) };
        if r < 0 {
            return Err(Errno::last());
        }
        let mut rang = false;
        for k in &buf[..r as usize] {
            if let Some((_, fd, edge)) = bells.iter().find(|(tag, _, _)| *tag == k.u64) {
                if !edge {
                    readiness::drain_bell(*fd);
                }
                rang = true;
            } else {
                out.push(*k);
            }
        }
        Ok(rang)
    }

    /// A kernel event of a one-shot caller registration disarms it for
    /// group events too.
    fn note_kernel_events(inner: &mut Inner, evs: &[libc::epoll_event]) {
        for k in evs {
            if let Some(reg) = inner.regs.values_mut().find(|g| g.data == k.u64 && g.events & EPOLLONESHOT != 0) {
                reg.armed = false;
            }
        }
    }

    /// epoll_wait / epoll_pwait / epoll_pwait2 on a set with tracked sockets.
    pub fn wait(
        &self,
        epfd: i32,
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
            let bells;
            {
                let mut inner = self.inner.lock();
                Self::ensure_bells(epfd, &mut inner)?;
                bells = Self::bell_snapshot(&inner);
                // Alternate who fills a small maxevents first, as the
                // kernel's ready list rotates.
                let kernel_first = inner.kernel_first;
                inner.kernel_first = !kernel_first;
                if kernel_first {
                    let mut got = Vec::new();
                    Self::kernel_events(epfd, &bells, max, 0, sigmask, &mut got)?;
                    Self::note_kernel_events(&mut inner, &got);
                    out.extend(got);
                    Self::synthesize(&mut inner, &mut out, max);
                    if !out.is_empty() {
                        drop(inner);
                        return Ok(Self::deliver(out, events, max));
                    }
                } else {
                    Self::synthesize(&mut inner, &mut out, max);
                }
                if !out.is_empty() {
                    wait_ms = Some(0);
                } else if wait_ms != Some(0) {
                    let mut ready = false;
                    for (fd, r) in inner.regs.iter().filter(|(_, r)| r.armed) {
                        ready |= arming.arm(&r.st, *fd, to_poll(r.events));
                    }
                    if ready {
                        continue;
                    }
                    if arming.needs_slices {
                        wait_ms = Some(wait_ms.map_or(readiness::SLICE_MS, |w| w.min(readiness::SLICE_MS)));
                    }
                }
            }
            let ms = wait_ms.map_or(-1, |m| m.min(i32::MAX as u64) as i32);
            let mut got = Vec::new();
            let rang = Self::kernel_events(epfd, &bells, max - out.len(), ms, sigmask, &mut got);
            drop(arming);
            let rang = rang?;
            let mut inner = self.inner.lock();
            Self::note_kernel_events(&mut inner, &got);
            out.extend(got);
            if rang {
                let mut more = Vec::new();
                Self::synthesize(&mut inner, &mut more, max - out.len().min(max));
                for e in more {
                    // Merge with a kernel event of the same registration.
                    match out.iter_mut().find(|x| x.u64 == e.u64) {
                        Some(x) => x.events |= e.events,
                        None => out.push(e),
                    }
                }
            }
            drop(inner);
            if !out.is_empty() || timeout.expired() {
                return Ok(Self::deliver(out, events, max));
            }
        }
    }

    fn deliver(out: Vec<libc::epoll_event>, events: *mut libc::epoll_event, max: usize) -> usize {
        let n = out.len().min(max);
        // SAFETY: the caller's array holds `max` events.
        unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), events, n) };
        n
    }
}

/// Drops every registration of a socket that left this process.
pub fn forget_socket(st: &Arc<SockState>) {
    for set in fdtable::epoll_sets() {
        set.forget_socket(st);
    }
}
