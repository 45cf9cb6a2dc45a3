//! Waking sleeping receivers: one write wakes every sleeper of a group.
//!
//! Each group has a FIFO, `/dev/shm/umcast.w.<group_id>`. A sender that
//! commits a message to a recipient whose `sleeping` flag is set writes one
//! byte to it: one system call however many receivers sleep. Receivers never
//! read the FIFO; they watch it edge-triggered (`EPOLLET`) in an epoll
//! instance, and the kernel gives every epoll instance its own event for
//! every write (pipes wake their readers on each write). Nobody drains the
//! FIFO except a sender that finds it full, which empties it and writes
//! again at once, so the FIFO stays readable and no collected edge is lost.
//!
//! A thread that sleeps on members keeps one such epoll instance, its
//! `Waker`, watching the FIFOs of the groups it has waited on; it polls the
//! waker's descriptor beside the member socket. Per thread, because an
//! edge must be collected by the thread it woke. A caller's own epoll set
//! watches the FIFOs directly.

use crate::{sys, Errno};
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn fifo_path(group_id: u64) -> CString {
    CString::new(format!("/dev/shm/umcast.w.{group_id:016x}")).expect("no NUL")
}

/// A member's own FIFO, used instead of the group's while the member has a
/// filter: a message its filter refuses must not wake it, so it cannot
/// share a wake-up with the members that do get it.
pub fn member_fifo_path(group_id: u64, queue_id: u64) -> CString {
    CString::new(format!("/dev/shm/umcast.w.{group_id:016x}.{queue_id:016x}")).expect("no NUL")
}

/// Creates a group's FIFO with the group's mode.
pub fn create_fifo(group_id: u64, mode: libc::mode_t) -> Result<(), Errno> {
    create_fifo_at(&fifo_path(group_id), mode)
}

/// Creates a FIFO (EEXIST is success) with exactly `mode`.
pub fn create_fifo_at(p: &CString, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: mknodat with a valid path creates a FIFO; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_mknodat, libc::AT_FDCWD, p.as_ptr(), libc::S_IFIFO | 0o600, 0) };
    if r < 0 && Errno::last() != Errno::EEXIST {
        return Err(Errno::last());
    }
    // fchmodat is not intercepted by the shim for non-sockets, but use the
    // raw call anyway: the umask must not narrow the group's mode.
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, p.as_ptr(), mode, 0) };
    Ok(())
}

/// Opens a group's FIFO for both ends, non-blocking (never waits for a
/// peer, and lets a sender drain it when full).
pub fn open_fifo(group_id: u64) -> Result<OwnedFd, Errno> {
    open_fifo_at(&fifo_path(group_id))
}

pub fn open_fifo_at(p: &CString) -> Result<OwnedFd, Errno> {
    sys::open(p, libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOFOLLOW, 0)
}

/// Wakes every receiver sleeping on the group whose FIFO is `fd`.
pub fn wake(fd: RawFd) {
    for _ in 0..2 {
        match sys::write(fd, &[1]) {
            Err(Errno::EAGAIN) => {
                // Full after ~64K wake-ups: empty it and write again.
                let mut buf = [0u8; 4096];
                while sys::read(fd, &mut buf).is_ok_and(|n| n > 0) {}
            }
            _ => return,
        }
    }
}

/// A thread's epoll instance watching group FIFOs (edge-triggered).
pub struct Waker {
    ep: OwnedFd,
    generation: u64,
    watched: HashSet<u64>,
}

thread_local! {
    static WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

impl Waker {
    fn new() -> Result<Waker, Errno> {
        // SAFETY: epoll_create1 has no memory arguments.
        let fd = unsafe { libc::syscall(libc::SYS_epoll_create1, libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: freshly created, owned by nobody else.
        let ep = crate::doorbell::move_high(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        Ok(Waker { ep, generation: sys::fork_generation(), watched: HashSet::new() })
    }

    /// Runs `f` with this thread's waker (made on first use, and again in a
    /// fork child, whose inherited instance is shared with the parent).
    pub fn with<R>(f: impl FnOnce(&mut Waker) -> R) -> Result<R, Errno> {
        WAKER.with(|w| {
            let mut w = w.borrow_mut();
            if w.as_ref().is_none_or(|x| x.generation != sys::fork_generation()) {
                *w = Some(Waker::new()?);
            }
            Ok(f(w.as_mut().expect("just made")))
        })
    }

    /// Watches a wake FIFO, named by its channel key (a group id, or a
    /// member's queue id for its own FIFO); idempotent.
    pub fn watch(&mut self, key: u64, fifo: RawFd) -> Result<(), Errno> {
        if self.watched.contains(&key) {
            return Ok(());
        }
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: key };
        // SAFETY: registering a live descriptor in our own epoll instance.
        let r = unsafe { libc::syscall(libc::SYS_epoll_ctl, self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fifo, &mut ev) };
        if r < 0 && Errno::last() != Errno::EEXIST {
            return Err(Errno::last());
        }
        self.watched.insert(key);
        Ok(())
    }

    pub fn fd(&self) -> RawFd {
        self.ep.as_raw_fd()
    }

    /// Collects pending edges so the waker's descriptor stops being ready.
    pub fn consume(&self) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
        loop {
            // SAFETY: a live buffer of 16 events; zero timeout.
            let n = unsafe {
                libc::syscall(libc::SYS_epoll_pwait, self.ep.as_raw_fd(), evs.as_mut_ptr(), 16, 0, 0usize, 8usize)
            };
            if n < 16 {
                return;
            }
        }
    }
}
