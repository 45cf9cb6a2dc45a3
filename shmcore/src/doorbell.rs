//! Doorbells: how a receiver that frees room wakes a poller waiting for
//! POLLOUT in another process.
//!
//! A doorbell is a hidden unix datagram socket bound to the abstract name
//! `umcast-db-<id>`. A poller registers the id in the group's room waiters,
//! re-checks, then polls the doorbell beside its own descriptors; whoever
//! frees room sends one byte to it (non-blocking: a full doorbell has
//! already been rung). Sleeping receivers use the group FIFO instead (see
//! `waker`), which wakes them all with one write.

use crate::addr::UnixAddr;
use crate::{sys, Errno};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

fn doorbell_addr(id: u64) -> UnixAddr {
    UnixAddr::Abstract(format!("umcast-db-{id:016x}").into_bytes())
}

/// Doorbells live at high descriptor numbers so that the application's
/// "lowest free descriptor" expectations are not disturbed.
const HIGH_FD: RawFd = 512;

pub struct Doorbell {
    fd: OwnedFd,
    id: u64,
}

impl Doorbell {
    pub fn new() -> Result<Doorbell, Errno> {
        let s = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0)?;
        let s = move_high(s);
        loop {
            let id = sys::random_u64();
            let (sa, len) = doorbell_addr(id).to_sockaddr();
            match sys::bind(s.as_raw_fd(), &sa, len) {
                Ok(()) => return Ok(Doorbell { fd: s, id }),
                Err(Errno::EADDRINUSE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Empties the doorbell after a wake-up.
    pub fn drain(&self) {
        let mut b = [0u8; 16];
        while sys::recv(self.fd(), &mut b, libc::MSG_DONTWAIT).is_ok() {}
    }
}

/// Moves a descriptor the library owns to a high number (see `HIGH_FD`).
pub fn move_high(fd: OwnedFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new descriptor
    // that we then own; on failure we keep the original.
    let hi = unsafe { libc::syscall(libc::SYS_fcntl, fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    if hi >= 0 {
        // SAFETY: freshly duplicated, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(hi as RawFd) }
    } else {
        fd
    }
}

/// Rings the doorbell with this id. Returns false if the doorbell no longer
/// exists (its process is gone: the entry can be cleared). EAGAIN means it
/// is already ringing, which is success.
pub fn ring(id: u64) -> bool {
    static RINGER: OnceLock<Option<OwnedFd>> = OnceLock::new();
    let ringer = RINGER
        .get_or_init(|| sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0).ok().map(move_high));
    let Some(r) = ringer else { return true };
    let (sa, len) = doorbell_addr(id).to_sockaddr();
    !matches!(sys::sendto(r.as_raw_fd(), &[1], libc::MSG_DONTWAIT, Some((&sa, len))), Err(Errno::ECONNREFUSED))
}
