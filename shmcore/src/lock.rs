//! The group lock: a process-shared, robust pthread mutex in the segment.
//!
//! Robust means the kernel marks the mutex when its owner dies; the next
//! locker gets `EOWNERDEAD` and must repair what the dead owner left half
//! done before calling `pthread_mutex_consistent`. [`ShmMutex::lock`] reports
//! that as `Locked::recovered`, and `Group` then rolls back the dead sender's
//! uncommitted message, so a sender killed at any point leaves no trace.

use crate::Errno;
use std::cell::UnsafeCell;

/// How long to wait for a lock whose owner is alive before declaring the
/// shared state broken. Lock holders never sleep with the lock held, so a
/// wait this long means a stopped process or corrupted memory.
const GIVE_UP_MS: u64 = 30_000;
const SLICE_MS: u64 = 1_000;

pub struct ShmMutex<'a> {
    m: &'a UnsafeCell<libc::pthread_mutex_t>,
}

/// A held group lock; unlocks on drop.
pub struct Locked<'a> {
    m: &'a UnsafeCell<libc::pthread_mutex_t>,
    /// The previous owner died holding the lock: repair before relying on
    /// the protected state.
    pub recovered: bool,
}

impl<'a> ShmMutex<'a> {
    pub fn new(m: &'a UnsafeCell<libc::pthread_mutex_t>) -> Self {
        ShmMutex { m }
    }

    /// Initialises the mutex in freshly created, not yet published memory.
    pub fn init(&self) -> Result<(), Errno> {
        // SAFETY: attr is initialised by pthread_mutexattr_init before use and
        // destroyed after; the mutex memory is valid and not yet shared.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_ERRORCHECK);
            let r = libc::pthread_mutex_init(self.m.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if r != 0 {
                return Err(Errno(r));
            }
        }
        Ok(())
    }

    /// The owner's thread id as glibc records it (0: unlocked).
    fn owner_tid(&self) -> i32 {
        // SAFETY: glibc's pthread_mutex_t starts with `int __lock; unsigned
        // __count; int __owner;` on every Linux target; a volatile read of an
        // int inside the mapped mutex is always in bounds.
        unsafe { std::ptr::read_volatile((self.m.get() as *const i32).add(2)) }
    }

    pub fn lock(&self) -> Result<Locked<'a>, Errno> {
        let start = crate::sys::now_ms();
        loop {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid out-pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
            ts.tv_sec += (SLICE_MS / 1000) as libc::time_t;
            // SAFETY: the mutex lives in a mapping that outlives `self`.
            let r = unsafe { libc::pthread_mutex_timedlock(self.m.get(), &ts) };
            match r {
                0 => {
                    return Ok(Locked {
                        m: self.m,
                        recovered: false,
                    })
                }
                libc::EOWNERDEAD => {
                    return Ok(Locked {
                        m: self.m,
                        recovered: true,
                    })
                }
                libc::ETIMEDOUT => {
                    let tid = self.owner_tid();
                    // SAFETY: kill with signal 0 only checks existence.
                    let alive = tid > 0 && unsafe { libc::kill(tid, 0) } == 0;
                    if !alive || crate::sys::now_ms() - start > GIVE_UP_MS {
                        // A dead owner the kernel did not report, or a lock
                        // held far longer than any sender holds it: the
                        // shared state cannot be trusted.
                        return Err(Errno::EIO);
                    }
                }
                libc::ENOTRECOVERABLE | libc::EINVAL => return Err(Errno::EIO),
                libc::EDEADLK => return Err(Errno::EDEADLK),
                e => return Err(Errno(e)),
            }
        }
    }
}

impl Locked<'_> {
    /// Declares the state repaired after `recovered` (EOWNERDEAD).
    pub fn mark_consistent(&mut self) {
        if self.recovered {
            // SAFETY: we hold the mutex, which is in the EOWNERDEAD state.
            unsafe { libc::pthread_mutex_consistent(self.m.get()) };
            self.recovered = false;
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: we hold the mutex. If it was never marked consistent the
        // unlock makes it unrecoverable, which later lockers see as EIO:
        // that only happens if repair itself failed.
        unsafe { libc::pthread_mutex_unlock(self.m.get()) };
    }
}
