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

fn set_byte(fd: i32, v: u8) {
    let Ok(u) = usize::try_from(fd) else { return };
    let Some(slot) = TOP.get(u >> CHUNK_BITS) else { return };
    if slot.load(Ordering::Acquire).is_null() {
        let fresh: Box<Chunk> = Box::new([const { AtomicU8::new(0) }; CHUNK]);
        let p = Box::into_raw(fresh);
        if slot.compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: we still own `p`; another thread installed its chunk first.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    if let Some(b) = byte(fd) {
        b.store(v, Ordering::Release);
    }
}

pub fn get(fd: i32) -> Option<Arc<SockState>> {
    if !is_tracked(fd) {
        return None;
    }
    MAP.read().get(&fd).cloned()
}

/// Tracks `fd` as a descriptor of `st`.
pub fn insert(fd: i32, st: Arc<SockState>) {
    if usize::try_from(fd).map_or(true, |u| u >= CHUNK * CHUNKS) {
        crate::log::warning!("descriptor {fd} is beyond the tracked range; its group traffic will not be seen");
        return;
    }
    MAP.write().insert(fd, st);
    set_byte(fd, 1);
}

/// Stops tracking `fd`; returns its state and whether another descriptor in
/// this process still refers to the same socket.
pub fn remove(fd: i32) -> Option<(Arc<SockState>, bool)> {
    if !is_tracked(fd) {
        return None;
    }
    let mut m = MAP.write();
    set_byte(fd, 0);
    let st = m.remove(&fd)?;
    let shared = m.values().any(|o| Arc::ptr_eq(o, &st));
    Some((st, shared))
}

/// Tracked descriptors in `lo..=hi` (for close_range).
pub fn tracked_in(lo: u32, hi: u32) -> Vec<i32> {
    MAP.read().keys().copied().filter(|&fd| (fd as u32) >= lo && (fd as u32) <= hi).collect()
}

/// The state already tracked for the socket with this inode, if any
/// descriptor of it is known.
pub fn find_by_ino(ino: u64) -> Option<Arc<SockState>> {
    MAP.read().values().find(|s| s.ino == ino).cloned()
}
