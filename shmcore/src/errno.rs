//! A typed errno: every fallible core function returns `Result<T, Errno>`,
//! and only the shim's hook edge turns it into `-1` plus `errno`.

use core::fmt;

/// An `errno` value. Constants, not an enum, so any value the kernel returns
/// can be carried through unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENFILE: Errno = Errno(libc::ENFILE);
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EPIPE: Errno = Errno(libc::EPIPE);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTSOCK: Errno = Errno(libc::ENOTSOCK);
    pub const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);
    pub const EPROTOTYPE: Errno = Errno(libc::EPROTOTYPE);
    pub const ENOPROTOOPT: Errno = Errno(libc::ENOPROTOOPT);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const EADDRINUSE: Errno = Errno(libc::EADDRINUSE);
    pub const EADDRNOTAVAIL: Errno = Errno(libc::EADDRNOTAVAIL);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    pub const EPROTO: Errno = Errno(libc::EPROTO);
    pub const EOWNERDEAD: Errno = Errno(libc::EOWNERDEAD);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const EDEADLK: Errno = Errno(libc::EDEADLK);

    /// The calling thread's current `errno`.
    pub fn last() -> Errno {
        // SAFETY: __errno_location always returns a valid pointer to this
        // thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// Stores this value in the calling thread's `errno`.
    pub fn set(self) {
        // SAFETY: as in `last`.
        unsafe { *libc::__errno_location() = self.0 };
    }

    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: strerror returns a pointer to a NUL-terminated static or
        // thread-local string; we copy it out immediately.
        let msg = unsafe { core::ffi::CStr::from_ptr(libc::strerror(self.0)) };
        write!(f, "Errno({}: {})", self.0, msg.to_string_lossy())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Errno {}

/// Converts a raw `-1`-on-error return into a `Result`, reading `errno`.
pub fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}
