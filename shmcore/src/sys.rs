//! Thin, safe wrappers over the system calls the core makes.
//!
//! Calls that libumcast.so intercepts (socket I/O, poll, close, fcntl, ...)
//! go through raw `syscall(2)` so that the core, linked into the shim, never
//! re-enters the shim's own hooks. Everything returns `Result<_, Errno>`.

use crate::Errno;
use libc::{c_int, c_long, c_void, size_t, sockaddr, sockaddr_un, socklen_t};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn ret(r: c_long) -> Result<c_long, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `syscall(2)` with up to six integer arguments.
macro_rules! raw {
    ($nr:expr $(, $a:expr)*) => {
        // SAFETY: every caller passes arguments that are valid for the
        // system call named (pointers to live buffers of the stated size).
        ret(unsafe { libc::syscall($nr $(, $a as c_long)*) })
    };
}

pub fn socket(domain: c_int, ty: c_int, proto: c_int) -> Result<OwnedFd, Errno> {
    let fd = raw!(libc::SYS_socket, domain, ty | libc::SOCK_CLOEXEC, proto)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn close(fd: RawFd) -> Result<(), Errno> {
    raw!(libc::SYS_close, fd).map(drop)
}

pub fn bind(fd: RawFd, addr: &sockaddr_un, len: socklen_t) -> Result<(), Errno> {
    raw!(libc::SYS_bind, fd, addr as *const sockaddr_un, len).map(drop)
}

pub fn connect(fd: RawFd, addr: &sockaddr_un, len: socklen_t) -> Result<(), Errno> {
    raw!(libc::SYS_connect, fd, addr as *const sockaddr_un, len).map(drop)
}

pub fn shutdown(fd: RawFd, how: c_int) -> Result<(), Errno> {
    raw!(libc::SYS_shutdown, fd, how).map(drop)
}

/// `sendto` with an optional unix address.
pub fn sendto(fd: RawFd, buf: &[u8], flags: c_int, addr: Option<(&sockaddr_un, socklen_t)>) -> Result<usize, Errno> {
    let (a, l) = match addr {
        Some((a, l)) => (a as *const sockaddr_un as *const sockaddr, l),
        None => (std::ptr::null(), 0),
    };
    raw!(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), flags, a, l).map(|n| n as usize)
}

pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    raw!(libc::SYS_write, fd, buf.as_ptr(), buf.len()).map(|n| n as usize)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    raw!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()).map(|n| n as usize)
}

pub fn recv(fd: RawFd, buf: &mut [u8], flags: c_int) -> Result<usize, Errno> {
    raw!(
        libc::SYS_recvfrom,
        fd,
        buf.as_mut_ptr(),
        buf.len(),
        flags,
        std::ptr::null_mut::<sockaddr>(),
        std::ptr::null_mut::<socklen_t>()
    )
    .map(|n| n as usize)
}

/// `recvmsg` on a caller-built msghdr.
///
/// # Safety
/// `msg` must describe valid, writable buffers (iovecs, name, control).
pub unsafe fn recvmsg(fd: RawFd, msg: *mut libc::msghdr, flags: c_int) -> Result<usize, Errno> {
    raw!(libc::SYS_recvmsg, fd, msg, flags).map(|n| n as usize)
}

/// `sendmsg` on a caller-built msghdr.
///
/// # Safety
/// `msg` must describe valid, readable buffers.
pub unsafe fn sendmsg(fd: RawFd, msg: *const libc::msghdr, flags: c_int) -> Result<usize, Errno> {
    raw!(libc::SYS_sendmsg, fd, msg, flags).map(|n| n as usize)
}

pub fn getsockopt_int(fd: RawFd, level: c_int, name: c_int) -> Result<c_int, Errno> {
    let mut v: c_int = 0;
    let mut l = size_of::<c_int>() as socklen_t;
    raw!(libc::SYS_getsockopt, fd, level, name, &mut v as *mut c_int, &mut l as *mut socklen_t)?;
    Ok(v)
}

pub fn setsockopt_int(fd: RawFd, level: c_int, name: c_int, v: c_int) -> Result<(), Errno> {
    raw!(libc::SYS_setsockopt, fd, level, name, &v as *const c_int, size_of::<c_int>() as socklen_t).map(drop)
}

/// A socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`) in milliseconds; `None`
/// means "wait forever" (the kernel's zero timeval).
pub fn socket_timeout_ms(fd: RawFd, name: c_int) -> Result<Option<u64>, Errno> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut l = size_of::<libc::timeval>() as socklen_t;
    raw!(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, name, &mut tv as *mut libc::timeval, &mut l as *mut socklen_t)?;
    if tv.tv_sec == 0 && tv.tv_usec == 0 {
        Ok(None)
    } else {
        Ok(Some(tv.tv_sec as u64 * 1000 + (tv.tv_usec as u64).div_ceil(1000)))
    }
}

/// The socket's bound address (`getsockname`), as raw bytes and length.
pub fn getsockname(fd: RawFd) -> Result<(sockaddr_un, socklen_t), Errno> {
    let mut a = MaybeUninit::<sockaddr_un>::zeroed();
    let mut l = size_of::<sockaddr_un>() as socklen_t;
    raw!(libc::SYS_getsockname, fd, a.as_mut_ptr(), &mut l as *mut socklen_t)?;
    // SAFETY: zero-initialised, then filled by the kernel.
    Ok((unsafe { a.assume_init() }, l))
}

pub fn getpeername(fd: RawFd) -> Result<(sockaddr_un, socklen_t), Errno> {
    let mut a = MaybeUninit::<sockaddr_un>::zeroed();
    let mut l = size_of::<sockaddr_un>() as socklen_t;
    raw!(libc::SYS_getpeername, fd, a.as_mut_ptr(), &mut l as *mut socklen_t)?;
    // SAFETY: zero-initialised, then filled by the kernel.
    Ok((unsafe { a.assume_init() }, l))
}

pub fn fcntl_getfl(fd: RawFd) -> Result<c_int, Errno> {
    raw!(libc::SYS_fcntl, fd, libc::F_GETFL).map(|v| v as c_int)
}

pub fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    raw!(libc::SYS_fstat, fd, st.as_mut_ptr())?;
    // SAFETY: filled by the kernel on success.
    Ok(unsafe { st.assume_init() })
}

/// `stat` of a path given as raw bytes (no NUL inside).
pub fn stat_path(path: &[u8]) -> Result<libc::stat, Errno> {
    let c = std::ffi::CString::new(path).map_err(|_| Errno::EINVAL)?;
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    raw!(libc::SYS_newfstatat, libc::AT_FDCWD, c.as_ptr(), st.as_mut_ptr(), 0)?;
    // SAFETY: filled by the kernel on success.
    Ok(unsafe { st.assume_init() })
}

/// `poll` with a millisecond timeout (`None`: forever), through `ppoll`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: Option<u64>) -> Result<usize, Errno> {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    raw!(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, std::ptr::null::<libc::sigset_t>(), 0usize)
        .map(|n| n as usize)
}

/// `FUTEX_WAIT` on a shared (non-private) futex word, with an optional
/// relative timeout in milliseconds. `Ok(())` also on a spurious wake-up or
/// when the word no longer holds `expected` (EAGAIN); the caller re-checks.
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout_ms: Option<u64>) -> Result<(), Errno> {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    match raw!(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, tsp) {
        Ok(_) => Ok(()),
        Err(Errno::EAGAIN) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Wakes every waiter on a shared futex word.
pub fn futex_wake_all(word: &std::sync::atomic::AtomicU32) {
    // Nothing useful can be done if the wake fails (only EFAULT/EINVAL, which
    // would mean the word is not mapped): waiters also wake by timeout.
    let _ = raw!(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
}

/// Opens (optionally creating) a file under a directory fd.
pub fn open(path: &std::ffi::CStr, flags: c_int, mode: libc::mode_t) -> Result<OwnedFd, Errno> {
    let fd = raw!(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags | libc::O_CLOEXEC, mode)?;
    // SAFETY: freshly returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn ftruncate(fd: &OwnedFd, len: u64) -> Result<(), Errno> {
    raw!(libc::SYS_ftruncate, fd.as_raw_fd(), len).map(drop)
}

pub fn fchmod(fd: &OwnedFd, mode: libc::mode_t) -> Result<(), Errno> {
    raw!(libc::SYS_fchmod, fd.as_raw_fd(), mode).map(drop)
}

pub fn fchown(fd: &OwnedFd, uid: u32, gid: u32) -> Result<(), Errno> {
    raw!(libc::SYS_fchown, fd.as_raw_fd(), uid, gid).map(drop)
}

pub fn rename(from: &std::ffi::CStr, to: &std::ffi::CStr) -> Result<(), Errno> {
    raw!(libc::SYS_renameat, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr()).map(drop)
}

pub fn unlink(path: &std::ffi::CStr) -> Result<(), Errno> {
    raw!(libc::SYS_unlinkat, libc::AT_FDCWD, path.as_ptr(), 0).map(drop)
}

/// Eight random bytes from the kernel.
pub fn random_u64() -> u64 {
    let mut v: u64 = 0;
    // getrandom with flags 0 on a u64 cannot block after early boot; on the
    // impossible failure fall back to a mix of time and pid, still unique
    // enough for a file name.
    if raw!(libc::SYS_getrandom, &mut v as *mut u64, 8usize, 0).is_err() {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        v = (ts.tv_nsec as u64) ^ ((ts.tv_sec as u64) << 32) ^ (std::process::id() as u64).rotate_left(17);
    }
    v
}

/// Current monotonic time in milliseconds.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Bumped in every fork child: process-local resources made before a fork
/// (shared with the parent afterwards) compare it to know they must be
/// made anew. Costs no system call.
pub fn fork_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static GEN: AtomicU64 = AtomicU64::new(0);
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn child() {
        GEN.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: registering a plain extern "C" handler with no preconditions.
    REGISTER.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(child));
    });
    GEN.load(Ordering::Relaxed)
}

pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and is not intercepted.
    unsafe { libc::getpid() }
}

pub fn getuid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getuid() }
}

pub fn getgid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getgid() }
}

/// A memory mapping that is unmapped on drop.
pub struct Mapping {
    ptr: *mut c_void,
    len: size_t,
}

// SAFETY: a Mapping is a plain region of shared memory; all access to it goes
// through atomics or through copies validated by the reader.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and read-write.
    pub fn map_shared(fd: &OwnedFd, len: usize) -> Result<Mapping, Errno> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Mapping { ptr: p, len })
    }

    /// Maps a file laid out as one header page followed by `data` bytes, with
    /// the data area mapped twice back to back, so that a record that runs
    /// past the end of the ring is contiguous in memory (a "mirrored" ring).
    pub fn map_mirrored(fd: &OwnedFd, header: usize, data: usize) -> Result<Mapping, Errno> {
        let total = header + 2 * data;
        // SAFETY: reserve address space only; replaced below with MAP_FIXED
        // inside the reservation we own.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let m = Mapping { ptr: base, len: total };
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_SHARED | libc::MAP_FIXED;
        // SAFETY: both fixed mappings lie inside the reservation `m` owns.
        let a = unsafe { libc::mmap(base, header + data, prot, flags, fd.as_raw_fd(), 0) };
        if a == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: as above; offset `header` is page-aligned by construction.
        let b = unsafe {
            libc::mmap(
                (base as *mut u8).add(header + data) as *mut c_void,
                data,
                prot,
                flags,
                fd.as_raw_fd(),
                header as libc::off_t,
            )
        };
        if b == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(m)
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr as *mut u8
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing borrows it past our lifetime.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The system page size.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

/// `n` rounded up to a whole number of pages.
pub fn page_round(n: usize) -> usize {
    n.div_ceil(page_size()) * page_size()
}
