//! Group readiness of one tracked socket, and how to wait for it.
//!
//! A member is readable when a committed group message waits in one of its
//! queues; a socket connected to a group is writable when every recipient
//! without DROP_WHEN_FULL has room for a 1-byte message. Waiting for either
//! means: announce (set the member's `sleeping` flags, or register as a room
//! waiter), re-check, then sleep on doorbell descriptors beside the caller's
//! own descriptors. `Arming` holds the announcements and undoes them on drop.

use crate::state::SockState;
use shmcore::doorbell::Doorbell;
use shmcore::endpoint::Endpoint;
use shmcore::group::Group;
use std::sync::{Arc, OnceLock};

pub const IN_BITS: i16 = libc::POLLIN | libc::POLLRDNORM;
pub const OUT_BITS: i16 = libc::POLLOUT | libc::POLLWRNORM;

/// The group a socket sends to when it writes without an address.
pub fn send_group(st: &SockState) -> Option<Arc<Group>> {
    st.connected.lock().clone().or_else(|| st.seqpacket_group())
}

/// Whether the kernel says `fd` can send (for a SEQPACKET member, whose
/// peer must also have room).
fn kernel_writable(fd: i32) -> bool {
    let mut p = [libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }];
    shmcore::sys::poll(&mut p, Some(0)).is_ok() && p[0].revents & libc::POLLOUT != 0
}

/// Whether a group message waits for this socket.
pub fn readable(st: &SockState) -> bool {
    st.endpoint().is_some_and(|ep| ep.pending())
}

/// Whether a 1-byte send to the socket's connected group would not block.
pub fn writable(st: &SockState) -> bool {
    send_group(st).is_none_or(|g| g.writable(st.ino, st.bound.lock().len()).unwrap_or(true))
}

/// Group readiness bits among `want` (poll bits).
pub fn group_revents(st: &SockState, fd: i32, want: i16) -> i16 {
    let mut r = 0;
    if want & IN_BITS != 0 && readable(st) {
        r |= want & IN_BITS;
    }
    if want & OUT_BITS != 0 {
        if let Some(g) = send_group(st) {
            let seqpacket = g.sock_type() == libc::SOCK_SEQPACKET;
            if writable(st) && (!seqpacket || kernel_writable(fd)) {
                r |= want & OUT_BITS;
            }
        }
    }
    r
}

/// Poll bits the kernel must not be asked for on this socket, because the
/// group decides them: POLLOUT of a socket connected to a group (the kernel
/// only sees the group socket's empty queue), and POLLIN of a group socket
/// G (whose receiving side is shut down, so the kernel always says POLLIN).
pub fn masked_from_kernel(st: &SockState) -> i16 {
    let mut m = 0;
    if send_group(st).is_some() {
        m |= OUT_BITS;
    }
    if st.created.lock().is_some() {
        m |= IN_BITS | libc::POLLRDHUP;
    }
    m
}

/// The process's doorbell for "room appeared" (one is enough: a poller
/// re-checks every group it waits on when it rings).
pub fn room_doorbell() -> Option<&'static Doorbell> {
    static BELL: OnceLock<Option<Doorbell>> = OnceLock::new();
    BELL.get_or_init(|| Doorbell::new().ok()).as_ref()
}

/// A descriptor to sleep on, and how to reset it after it fired.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bell {
    /// This thread's waker (edge-triggered group FIFOs): collect its edges.
    Waker(i32),
    /// The process's room doorbell (a datagram socket): drain it.
    Doorbell(i32),
}

impl Bell {
    pub fn fd(self) -> i32 {
        match self {
            Bell::Waker(fd) | Bell::Doorbell(fd) => fd,
        }
    }

    /// Resets the bell after it fired.
    pub fn reset(self) {
        match self {
            Bell::Waker(_) => {
                let _ = shmcore::waker::Waker::with(|w| w.consume());
            }
            Bell::Doorbell(fd) => drain_bell(fd),
        }
    }
}

/// Announcements made before sleeping; undone on drop.
#[derive(Default)]
pub struct Arming {
    endpoints: Vec<Arc<Endpoint>>,
    waker: Option<i32>,
    waiters: Vec<(Arc<Group>, Option<usize>, u64)>,
    /// Some room waiter could not get a doorbell entry: sleep in slices.
    pub needs_slices: bool,
}

impl Arming {
    /// Announces interest in `want` on `st`. Returns true if, after the
    /// announcement, the socket turned out ready already.
    pub fn arm(&mut self, st: &SockState, fd: i32, want: i16) -> bool {
        if want & IN_BITS != 0 {
            if let Some(ep) = st.endpoint() {
                match ep.watch() {
                    Ok(fd) => self.waker = Some(fd),
                    Err(_) => self.needs_slices = true,
                }
                for m in ep.memberships() {
                    m.prepare_sleep();
                }
                self.endpoints.push(ep.clone());
            }
        }
        if want & OUT_BITS != 0 {
            if let Some(g) = send_group(st) {
                // The kernel is not asked for POLLOUT of a group sender, so a
                // SEQPACKET member whose peer is full is re-checked in slices.
                self.needs_slices |= g.sock_type() == libc::SOCK_SEQPACKET && writable(st);
                match room_doorbell() {
                    Some(bell) => {
                        let idx = g.register_room_waiter(bell.id());
                        self.needs_slices |= idx.is_none();
                        self.waiters.push((g, idx, bell.id()));
                    }
                    None => self.needs_slices = true,
                }
            }
        }
        group_revents(st, fd, want) != 0
    }

    /// Descriptors to sleep on.
    pub fn bells(&self) -> Vec<Bell> {
        let mut v = Vec::new();
        if let Some(fd) = self.waker {
            v.push(Bell::Waker(fd));
        }
        if !self.waiters.is_empty() {
            if let Some(b) = room_doorbell() {
                v.push(Bell::Doorbell(b.fd()));
            }
        }
        v
    }
}

impl Drop for Arming {
    fn drop(&mut self) {
        for ep in &self.endpoints {
            for m in ep.memberships() {
                m.cancel_sleep();
            }
        }
        for (g, idx, id) in self.waiters.drain(..) {
            g.unregister_room_waiter(idx, id);
        }
    }
}

/// Empties a doorbell that fired.
pub fn drain_bell(fd: i32) {
    let mut b = [0u8; 64];
    while shmcore::sys::recv(fd, &mut b, libc::MSG_DONTWAIT).is_ok() {}
}

/// Longest sleep when some room waiter has no doorbell entry.
pub const SLICE_MS: u64 = 10;
