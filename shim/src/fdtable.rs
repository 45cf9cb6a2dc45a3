//! The descriptor table: which descriptors take part in a group.
//!
//! The fast path is one lookup: a byte per descriptor, in chunks allocated
//! on first use, that is nonzero only for descriptors the shim tracks (a
//! group socket G, a member, a socket that sent to a group). Every other
//! call goes straight to libc after that one load. The slow path maps the
//! descriptor to its socket's shared state (several descriptors of one
//! socket, made by dup or inherited by fork, share one `SockState`).
//!
//! Locking order: `MAP` before any `SockState` lock.

use crate::epoll::EpollSet;
use crate::state::SockState;
use once_cell::sync::Lazy;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::Arc;

const CHUNK_BITS: usize = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 256; // descriptors 0 .. 1M are tracked; beyond, never ours

type Chunk = [AtomicU8; CHUNK];

static TOP: [AtomicPtr<Chunk>; CHUNKS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];
static MAP: Lazy<RwLock<HashMap<i32, Arc<SockState>>>> = Lazy::new(|| RwLock::new(HashMap::new()));
static EPOLL: Lazy<RwLock<HashMap<i32, Arc<EpollSet>>>> = Lazy::new(|| RwLock::new(HashMap::new()));

/// Kind bits of the fast-path byte.
const SOCKET: u8 = 1;
const EPOLL_SET: u8 = 2;

fn byte(fd: i32) -> Option<&'static AtomicU8> {
    let fd = usize::try_from(fd).ok()?;
    let c = TOP.get(fd >> CHUNK_BITS)?.load(Ordering::Acquire);
    if c.is_null() {
        return None;
    }
    // SAFETY: chunks are leaked boxes, never freed, so the pointer stays valid.
    Some(unsafe { &(*c)[fd & (CHUNK - 1)] })
}

/// The fast-path test: is this descriptor possibly ours?
#[inline(always)]
pub fn is_tracked(fd: i32) -> bool {
    byte(fd).is_some_and(|b| b.load(Ordering::Relaxed) != 0)
}

fn update_byte(fd: i32, set: u8, clear: u8) {
    let Ok(u) = usize::try_from(fd) else { return };
    let Some(slot) = TOP.get(u >> CHUNK_BITS) else {
        return;
    };
    if slot.load(Ordering::Acquire).is_null() {
        let fresh: Box<Chunk> = Box::new([const { AtomicU8::new(0) }; CHUNK]);
        let p = Box::into_raw(fresh);
        if slot.compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: we still own `p`; another thread installed its chunk first.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    if let Some(b) = byte(fd) {
        let old = b.load(Ordering::Relaxed);
        b.store((old & !clear) | set, Ordering::Release);
    }
}

pub fn get(fd: i32) -> Option<Arc<SockState>> {
    if byte(fd).is_none_or(|b| b.load(Ordering::Relaxed) & SOCKET == 0) {
        return None;
    }
    MAP.read().get(&fd).cloned()
}

/// The group-aware state of an epoll descriptor, if it watches members.
pub fn epoll(epfd: i32) -> Option<Arc<EpollSet>> {
    if byte(epfd).is_none_or(|b| b.load(Ordering::Relaxed) & EPOLL_SET == 0) {
        return None;
    }
    EPOLL.read().get(&epfd).cloned()
}

/// The epoll state for `epfd`, made on first use.
pub fn epoll_or_insert(epfd: i32) -> Arc<EpollSet> {
    if let Some(e) = epoll(epfd) {
        return e;
    }
    let mut m = EPOLL.write();
    let e = m.entry(epfd).or_insert_with(|| Arc::new(EpollSet::new())).clone();
    update_byte(epfd, EPOLL_SET, 0);
    e
}

/// Forgets the epoll state of a closed descriptor.
pub fn remove_epoll(epfd: i32) -> Option<Arc<EpollSet>> {
    let mut m = EPOLL.write();
    update_byte(epfd, 0, EPOLL_SET);
    m.remove(&epfd)
}

/// `to` now refers to the same epoll set as `from`.
pub fn dup_epoll(from: i32, to: i32) {
    if let Some(e) = epoll(from) {
        EPOLL.write().insert(to, e);
        update_byte(to, EPOLL_SET, 0);
    }
}

/// Every epoll state (to drop registrations of a socket that is gone).
pub fn epoll_sets() -> Vec<Arc<EpollSet>> {
    EPOLL.read().values().cloned().collect()
}

/// Tracks `fd` as a descriptor of `st`.
pub fn insert(fd: i32, st: Arc<SockState>) {
    if usize::try_from(fd).map_or(true, |u| u >= CHUNK * CHUNKS) {
        crate::log::warning!("descriptor {fd} is beyond the tracked range; its group traffic will not be seen");
        return;
    }
    MAP.write().insert(fd, st);
    update_byte(fd, SOCKET, 0);
}

/// Stops tracking `fd`; returns its state and whether another descriptor in
/// this process still refers to the same socket.
pub fn remove(fd: i32) -> Option<(Arc<SockState>, bool)> {
    get(fd)?;
    let mut m = MAP.write();
    update_byte(fd, 0, SOCKET);
    let st = m.remove(&fd)?;
    let shared = m.values().any(|o| Arc::ptr_eq(o, &st));
    Some((st, shared))
}

/// Tracked descriptors in `lo..=hi` (for close_range).
pub fn tracked_in(lo: u32, hi: u32) -> Vec<i32> {
    let mut v: Vec<i32> = MAP.read().keys().copied().collect();
    v.extend(EPOLL.read().keys().copied());
    v.sort_unstable();
    v.dedup();
    v.retain(|&fd| (fd as u32) >= lo && (fd as u32) <= hi);
    v
}

/// The state already tracked for the socket with this inode, if any
/// descriptor of it is known.
pub fn find_by_ino(ino: u64) -> Option<Arc<SockState>> {
    MAP.read().values().find(|s| s.ino == ino).cloned()
}
