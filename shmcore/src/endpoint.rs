//! The receiving side of one member socket in this process: its
//! memberships, its doorbell, and the receive loop that waits for either a
//! group message or an ordinary datagram from the kernel.

use crate::group::{Group, Membership};
use crate::queue::Received;
use crate::waker::Waker;
use crate::{sys, Errno};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// What a receive produced.
#[derive(Debug)]
pub enum Delivery {
    /// A group message (payload already in the caller's buffers).
    Group(Received),
    /// The kernel delivered an ordinary datagram of this many bytes.
    Kernel(usize),
}

/// How a receive may wait.
#[derive(Clone, Copy, Debug)]
pub struct RecvMode {
    pub peek: bool,
    /// MSG_DONTWAIT (the socket's O_NONBLOCK is checked only when needed).
    pub dontwait: bool,
}

pub struct Endpoint {
    pub ino: u64,
    /// Active memberships, then former ones whose queues still hold messages.
    memberships: RwLock<Vec<Arc<Membership>>>,
    /// Groups this socket may become a member of without calling anything
    /// itself (a SOCK_SEQPACKET client whose server may ACCEPT_GROUP it),
    /// with the membership generation last looked at.
    candidates: RwLock<Vec<(Arc<Group>, AtomicU64)>>,
    /// The socket's own classic filter, installed in memberships adopted
    /// later (a SEQPACKET client's, given by its server).
    own_filter: RwLock<Option<Vec<crate::bpf::SockFilter>>>,
    next: AtomicUsize,
}

impl Endpoint {
    pub fn new(ino: u64) -> Result<Endpoint, Errno> {
        Ok(Endpoint {
            ino,
            memberships: RwLock::new(Vec::new()),
            candidates: RwLock::new(Vec::new()),
            own_filter: RwLock::new(None),
            next: AtomicUsize::new(0),
        })
    }

    /// Whether group traffic can still reach this socket: an active
    /// membership, a candidate group, or messages left in a former one.
    /// Without it the socket is an ordinary socket again.
    pub fn has_group_interest(&self) -> bool {
        self.refresh();
        !self.candidates.read().unwrap_or_else(|e| e.into_inner()).is_empty()
            || self.memberships().iter().any(|m| m.is_active() || m.pending().unwrap_or(false))
    }

    /// Records the socket's own filter for memberships adopted later, and
    /// leaves it in every candidate group for a server to install at once.
    pub fn set_own_filter(&self, f: Option<Vec<crate::bpf::SockFilter>>) {
        for (g, _) in self.candidates.read().unwrap_or_else(|e| e.into_inner()).iter() {
            g.leave_candidate_filter(self.ino, f.as_deref());
        }
        *self.own_filter.write().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Stops watching for memberships given by others (after SHUT_RD).
    pub fn clear_candidates(&self) {
        self.candidates.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Watches `g` for memberships that others give this socket.
    pub fn add_candidate(&self, g: Arc<Group>) {
        let mut c = self.candidates.write().unwrap_or_else(|e| e.into_inner());
        if !c.iter().any(|(x, _)| x.group_id() == g.group_id()) {
            c.push((g, AtomicU64::new(u64::MAX)));
        }
    }

    /// Adopts memberships that appeared in candidate groups since the last
    /// look. One atomic load per candidate when nothing changed.
    pub fn refresh(&self) {
        let c = self.candidates.read().unwrap_or_else(|e| e.into_inner());
        for (g, seen) in c.iter() {
            let gen = g.member_gen();
            if seen.swap(gen, Relaxed) == gen {
                continue;
            }
            let known: Vec<u64> = self.memberships().iter().map(|m| m.queue_id).collect();
            for i in g.slots_to_adopt(self.ino) {
                if let Ok(m) = g.adopt(i) {
                    if !known.contains(&m.queue_id) {
                        if let Some(f) = self.own_filter.read().unwrap_or_else(|e| e.into_inner()).as_deref() {
                            let _ = g.set_filter(self.ino, false, Some(f));
                        }
                        self.add(m);
                    }
                }
            }
        }
    }

    /// The wake FIFOs a sleeper of this socket must watch, with their
    /// channel keys: a filtered membership's own FIFO, otherwise its group's;
    /// and every candidate group's.
    pub fn wake_fds(&self) -> Vec<(RawFd, u64)> {
        let mut v = Vec::new();
        for m in self.memberships() {
            if m.group.slot_filtered(m.slot) {
                if let Some(fd) = m.own_wake_fd() {
                    v.push((fd, m.queue_id));
                    continue;
                }
            }
            if let Ok(fd) = m.group.wake_fd() {
                v.push((fd, m.group.group_id()));
            }
        }
        for (g, _) in self.candidates.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Ok(fd) = g.wake_fd() {
                v.push((fd, g.group_id()));
            }
        }
        v.sort_unstable_by_key(|&(_, k)| k);
        v.dedup_by_key(|&mut (_, k)| k);
        v
    }

    pub fn add(&self, m: Arc<Membership>) {
        self.memberships.write().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    /// Active memberships (for LEAVE, stats and close).
    pub fn memberships(&self) -> Vec<Arc<Membership>> {
        self.memberships.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops former memberships that have nothing left to read.
    fn prune(&self) {
        let mut v = self.memberships.write().unwrap_or_else(|e| e.into_inner());
        v.retain(|m| {
            let keep = m.is_active() || m.pending().unwrap_or(false);
            if !keep {
                // A retired slot (ended by the other end) is ours to free.
                m.group.release_left(m.slot, m.queue_id);
            }
            keep
        });
    }

    /// Whether a group message is waiting in any membership.
    pub fn pending(&self) -> bool {
        self.refresh();
        self.memberships.read().unwrap_or_else(|e| e.into_inner()).iter().any(|m| m.pending().unwrap_or(false))
    }

    /// One non-blocking attempt at a group message, round-robin across
    /// memberships so one busy group cannot starve another.
    pub fn try_group(&self, out: &mut [std::io::IoSliceMut<'_>], peek: bool) -> Result<Option<Received>, Errno> {
        self.refresh();
        let ms = self.memberships.read().unwrap_or_else(|e| e.into_inner()).clone();
        if ms.is_empty() {
            return Ok(None);
        }
        let start = self.next.fetch_add(1, Relaxed);
        let mut stale = false;
        for k in 0..ms.len() {
            let m = &ms[(start + k) % ms.len()];
            if let Some(r) = m.take(out, !peek)? {
                return Ok(Some(r));
            }
            stale |= !m.is_active();
        }
        if stale {
            self.prune();
        }
        Ok(None)
    }

    /// Receives a group message or an ordinary datagram. `kernel` makes one
    /// non-blocking kernel receive into the caller's buffers (EAGAIN: none).
    pub fn recv(
        &self,
        fd: RawFd,
        out: &mut [std::io::IoSliceMut<'_>],
        mode: RecvMode,
        kernel: &mut dyn FnMut() -> Result<usize, Errno>,
    ) -> Result<Delivery, Errno> {
        let mut deadline: Option<Option<u64>> = None;
        let mut blocking: Option<bool> = None;
        // A blocking receive asks the kernel only when poll says the socket
        // itself is readable; a non-blocking one asks once.
        let mut ask_kernel = false;
        loop {
            if let Some(r) = self.try_group(out, mode.peek)? {
                return Ok(Delivery::Group(r));
            }
            let block = match blocking {
                Some(b) => b,
                None => {
                    let b = !mode.dontwait && sys::fcntl_getfl(fd)? & libc::O_NONBLOCK == 0;
                    blocking = Some(b);
                    ask_kernel |= !b;
                    b
                }
            };
            if ask_kernel {
                match kernel() {
                    Ok(n) => return Ok(Delivery::Kernel(n)),
                    Err(Errno::EAGAIN) => {}
                    Err(e) => return Err(e),
                }
            }
            if !block {
                return Err(Errno::EAGAIN);
            }
            let dl = *deadline.get_or_insert_with(|| {
                sys::socket_timeout_ms(fd, libc::SO_RCVTIMEO).ok().flatten().map(|ms| sys::now_ms() + ms)
            });
            let left = match dl {
                Some(d) => match d.saturating_sub(sys::now_ms()) {
                    0 => return Err(Errno::EAGAIN),
                    l => Some(l),
                },
                None => None,
            };
            ask_kernel = self.sleep(fd, left, dl.is_some())?;
        }
    }

    /// Sleeps until a group message or kernel datagram may be waiting.
    /// Returns whether the socket itself is readable (an ordinary datagram).
    fn sleep(&self, fd: RawFd, timeout_ms: Option<u64>, has_timeout: bool) -> Result<bool, Errno> {
        let ms = self.memberships();
        let wfd = self.watch()?;
        for m in &ms {
            m.prepare_sleep();
        }
        // SYNC POINT: sleep; declare asleep (SeqCst), then re-check.
        if ms.iter().any(|m| m.pending().unwrap_or(false)) {
            ms.iter().for_each(|m| m.cancel_sleep());
            return Ok(false);
        }
        let mut fds = [
            libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: wfd, events: libc::POLLIN, revents: 0 },
        ];
        let r = sys::poll(&mut fds, timeout_ms);
        ms.iter().for_each(|m| m.cancel_sleep());
        if fds[1].revents != 0 {
            let _ = Waker::with(|w| w.consume());
        }
        match r {
            Ok(_) => Ok(fds[0].revents != 0),
            Err(Errno::EINTR) if !has_timeout && crate::signals::all_handlers_restart() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Endpoint {
    /// Makes this thread's waker watch every wake FIFO of this socket;
    /// returns the waker's descriptor.
    pub fn watch(&self) -> Result<RawFd, Errno> {
        let fds = self.wake_fds();
        Waker::with(|w| {
            for (fd, key) in fds {
                w.watch(key, fd)?;
            }
            Ok(w.fd())
        })?
    }
}
