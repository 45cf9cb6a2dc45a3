//! The group lock: a futex word in shared memory holding its owner's thread
//! id, robust against owners that die and against hostile bytes.
//!
//! Why not a robust pthread mutex: glibc links every held robust mutex into
//! a per-thread list through pointers stored *inside the mutex*, and
//! follows them on unlock. Any process that can write the segment could
//! then make another process write through a pointer of its choosing. This
//! lock keeps nothing but a thread id in shared memory.
//!
//! Word encoding: `0` free; otherwise bits 0..30 are the owner's thread id
//! (Linux tids are below 2^22) and bit 31 says "waiters may be sleeping".
//! A waiter that has waited a while asks the kernel whether the owner still
//! exists (`kill(tid, 0)`); if not, it takes the lock over with a CAS and
//! reports `recovered`, and the caller repairs what the dead owner left.

use crate::{sys, Errno};
use std::sync::atomic::{AtomicU32, Ordering::*};

const WAITERS: u32 = 1 << 31;
const TID_MASK: u32 = WAITERS - 1;
/// How long a waiter sleeps before checking that the owner is alive. Lock
/// holders never sleep with the lock held, so this is rarely reached.
const CHECK_MS: u64 = 20;
/// A lock held by a live thread this long means a stopped process or
/// corrupted memory: give up with EIO rather than hang.
const GIVE_UP_MS: u64 = 5_000;

/// This thread's id, cached per thread (and re-read in a fork child,
/// whose only thread has a new id): no system call per lock.
fn gettid() -> u32 {
    use std::cell::Cell;
    thread_local! {
        static TID: Cell<(u64, u32)> = const { Cell::new((u64::MAX, 0)) };
    }
    let generation = sys::fork_generation();
    TID.with(|t| {
        let (g, tid) = t.get();
        if g == generation {
            return tid;
        }
        // SAFETY: gettid has no preconditions.
        let tid = (unsafe { libc::syscall(libc::SYS_gettid) }) as u32;
        t.set((generation, tid));
        tid
    })
}

fn thread_exists(tid: u32) -> bool {
    if tid == 0 || tid > TID_MASK {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
    r == 0 || Errno::last() == Errno::EPERM
}

pub struct ShmMutex<'a> {
    word: &'a AtomicU32,
}

/// A held group lock; unlocks on drop.
pub struct Locked<'a> {
    word: &'a AtomicU32,
    /// The previous owner died holding the lock: repair the protected state
    /// before relying on it.
    pub recovered: bool,
}

impl<'a> ShmMutex<'a> {
    pub fn new(word: &'a AtomicU32) -> Self {
        ShmMutex { word }
    }

    pub fn lock(&self) -> Result<Locked<'a>, Errno> {
        let me = gettid() & TID_MASK;
        // Uncontended fast path.
        if self.word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
            return Ok(Locked { word: self.word, recovered: false });
        }
        let start = sys::now_ms();
        let mut spins = 0;
        loop {
            let cur = self.word.load(Relaxed);
            if cur == 0 {
                // Take it, keeping the waiters bit conservatively set: some
                // other waiter may be asleep.
                if self.word.compare_exchange(0, me | WAITERS, Acquire, Relaxed).is_ok() {
                    return Ok(Locked { word: self.word, recovered: false });
                }
                continue;
            }
            let owner = cur & TID_MASK;
            if owner == me {
                return Err(Errno::EDEADLK);
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if spins == 64 {
                // Contended after spinning: is the owner still there at all?
                // (A sender killed while holding the lock is the common
                // case of a long hold.)
                spins += 1;
                if !thread_exists(owner) {
                    if self.word.compare_exchange(cur, me | WAITERS, Acquire, Relaxed).is_ok() {
                        return Ok(Locked { word: self.word, recovered: true });
                    }
                    continue;
                }
            }
            if cur & WAITERS == 0 && self.word.compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed).is_err() {
                continue;
            }
            let _ = sys::futex_wait(self.word, cur | WAITERS, Some(CHECK_MS));
            let cur = self.word.load(Relaxed);
            if cur != 0 && !thread_exists(cur & TID_MASK) {
                // The owner is gone (or the word is garbage): take over.
                if self.word.compare_exchange(cur, me | WAITERS, Acquire, Relaxed).is_ok() {
                    return Ok(Locked { word: self.word, recovered: true });
                }
                continue;
            }
            if sys::now_ms().saturating_sub(start) > GIVE_UP_MS {
                return Err(Errno::EIO);
            }
        }
    }
}

impl Locked<'_> {
    /// Kept for callers that finish repair explicitly; repair needs no
    /// separate step with this lock.
    pub fn mark_consistent(&mut self) {
        self.recovered = false;
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.word.swap(0, Release) & WAITERS != 0 {
            sys::futex_wake_all(self.word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_threads_and_counts_right() {
        let word = Arc::new(AtomicU32::new(0));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (w, c) = (word.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _l = ShmMutex::new(&w).lock().unwrap();
                        // Non-atomic read-modify-write under the lock.
                        let v = c.load(Relaxed);
                        c.store(v + 1, Relaxed);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(count.load(Relaxed), 80_000);
        assert_eq!(word.load(Relaxed), 0);
    }

    #[test]
    fn dead_owner_is_recovered_and_garbage_is_bounded() {
        // A thread id that does not exist: the lock is taken over.
        let word = AtomicU32::new(TID_MASK - 7);
        let l = ShmMutex::new(&word).lock().unwrap();
        assert!(l.recovered);
        drop(l);
        // Our own tid: the caller already holds it.
        let me = AtomicU32::new(gettid());
        assert_eq!(ShmMutex::new(&me).lock().err(), Some(Errno::EDEADLK));
    }
}
