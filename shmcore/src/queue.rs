//! A member's queue: a ring of records in its own shared-memory file.
//!
//! One producer at a time (whoever holds the group lock) appends at `tail`;
//! any number of receivers sharing the member socket consume at `head` with a
//! compare-and-swap, so each message is read once. A record is visible only
//! once its sequence number is at most the group's `committed_seq`: that one
//! store is what makes a message appear in every recipient's queue at once.

use crate::layout::{record_size, QueueHeader, RecordHeader, QUEUE_MAGIC, RECORD_HEADER};
use crate::sys::{self, Mapping};
use crate::Errno;
use std::ffi::CString;
use std::io::IoSlice;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Extra ring storage beyond the accounting capacity, so that an empty queue
/// always holds one message of the kernel's default maximum size.
/// With the header page, a queue file is `capacity + 64 KiB` rounded to
/// pages: the memory budget per member.
pub const STORAGE_SLACK: usize = 64 * 1024;

/// The kernel's default maximum unix datagram (the default SO_SNDBUF,
/// 212992, less 32) as a record with the longest sender address: every ring
/// holds at least this, so a sender with default buffers always fits an
/// empty queue, however small the member's SO_RCVBUF.
const MIN_STORAGE: usize = 212_992 - 32 + RECORD_HEADER + 112;

/// Ring bytes for a queue of accounting capacity `capacity`.
pub fn storage_for(capacity: u64) -> u64 {
    let budget = sys::page_round(capacity as usize + STORAGE_SLACK) - sys::page_size();
    sys::page_round(budget.max(MIN_STORAGE)) as u64
}

pub fn queue_path(group_id: u64, queue_id: u64) -> CString {
    CString::new(format!("/dev/shm/umcast.q.{group_id:016x}.{queue_id:016x}")).expect("no NUL")
}

/// A mapped member queue.
pub struct Queue {
    map: Mapping,
    header_len: usize,
    storage: u64,
    capacity: u64,
}

/// A record read from a queue.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub header: RecordHeader,
    /// The sender's address bytes (after `sun_family`).
    pub addr: Vec<u8>,
    /// Payload bytes copied into the caller's buffer.
    pub copied: usize,
}

impl Queue {
    /// Creates the queue file for a new membership. `capacity` is the
    /// accounting limit (the member's SO_RCVBUF); the ring gets
    /// `capacity + STORAGE_SLACK` bytes rounded to pages.
    pub fn create(group_id: u64, queue_id: u64, capacity: u64, mode: libc::mode_t) -> Result<Queue, Errno> {
        let header_len = sys::page_size();
        let storage = storage_for(capacity);
        let path = queue_path(group_id, queue_id);
        let fd = sys::open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600)?;
        let made = (|| {
            sys::fchmod(&fd, mode)?;
            sys::ftruncate(&fd, header_len as u64 + storage)?;
            let map = Mapping::map_mirrored(&fd, header_len, storage as usize)?;
            let q = Queue { map, header_len, storage, capacity };
            let h = q.header_mut_init();
            h.storage = storage;
            h.capacity = capacity;
            h.group_id = group_id;
            // SYNC POINT: queue-publish; paired with the Acquire in `open`.
            q.header().magic.store(QUEUE_MAGIC, Release);
            Ok(q)
        })();
        if made.is_err() {
            let _ = sys::unlink(&path);
        }
        made
    }

    /// Maps an existing queue, checking its header against what the group
    /// slot says it should be.
    pub fn open(group_id: u64, queue_id: u64, capacity: u64) -> Result<Queue, Errno> {
        let header_len = sys::page_size();
        let path = queue_path(group_id, queue_id);
        let fd = sys::open(&path, libc::O_RDWR | libc::O_NOFOLLOW, 0)?;
        let st = sys::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        let storage = storage_for(capacity);
        if st.st_size as u64 != header_len as u64 + storage {
            return Err(Errno::EIO);
        }
        let map = Mapping::map_mirrored(&fd, header_len, storage as usize)?;
        let q = Queue { map, header_len, storage, capacity };
        let h = q.header();
        if h.magic.load(Acquire) != QUEUE_MAGIC
            || h.storage != storage
            || h.capacity != capacity
            || h.group_id != group_id
        {
            return Err(Errno::EIO);
        }
        Ok(q)
    }

    pub fn unlink(group_id: u64, queue_id: u64) {
        let _ = sys::unlink(&queue_path(group_id, queue_id));
    }

    pub fn header(&self) -> &QueueHeader {
        // SAFETY: the mapping starts with a page that holds a QueueHeader
        // (size checked at compile time); all shared fields are atomics.
        unsafe { &*(self.map.as_ptr() as *const QueueHeader) }
    }

    #[allow(clippy::mut_from_ref)]
    fn header_mut_init(&self) -> &mut QueueHeader {
        // SAFETY: only called by `create` before the queue is published, when
        // no other process can see the file's contents yet.
        unsafe { &mut *(self.map.as_ptr() as *mut QueueHeader) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data area starts one header page into the mapping.
        unsafe { self.map.as_ptr().add(self.header_len) }
    }

    pub fn storage(&self) -> u64 {
        self.storage
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes in use, validated: a corrupted head or tail is EIO.
    pub fn used(&self, tail: u64) -> Result<u64, Errno> {
        let head = self.header().head.head.load(Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.storage {
            return Err(Errno::EIO);
        }
        Ok(used)
    }

    /// Whether a record of `size` bytes can be admitted now. An empty queue
    /// takes any record that fits the ring; otherwise the accounting
    /// capacity (SO_RCVBUF) bounds the bytes queued.
    pub fn has_room(&self, size: u64) -> Result<bool, Errno> {
        let tail = self.header().tail.tail.load(Relaxed);
        let used = self.used(tail)?;
        Ok(if used == 0 { size <= self.storage } else { used + size <= self.capacity.min(self.storage) })
    }

    /// Appends a record at `tail`. The caller holds the group lock and has
    /// checked `has_room`. Returns the previous tail (for rollback).
    pub fn append(&self, mut rec: RecordHeader, addr: &[u8], payload: &[IoSlice<'_>]) -> u64 {
        let tail = self.header().tail.tail.load(Relaxed);
        let len: usize = payload.iter().map(|s| s.len()).sum();
        let size = record_size(addr.len(), len);
        rec.size = size as u32;
        rec.len = len as u32;
        rec.addr_len = addr.len() as u16;
        let at = (tail % self.storage) as usize;
        // SAFETY: `at + size <= 2 * storage` because `size <= storage`
        // (checked by has_room), and the data area is mapped twice, so the
        // whole record lies inside the mapping. Receivers never read past
        // `tail`, which we publish only after writing.
        unsafe {
            let base = self.data().add(at);
            std::ptr::copy_nonoverlapping(&rec as *const RecordHeader as *const u8, base, RECORD_HEADER);
            std::ptr::copy_nonoverlapping(addr.as_ptr(), base.add(RECORD_HEADER), addr.len());
            let mut p = base.add(RECORD_HEADER + addr.len().next_multiple_of(8));
            for s in payload {
                std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
                p = p.add(s.len());
            }
        }
        // SYNC POINT: tail-publish; paired with the Acquire in `peek`. The
        // record stays invisible until the group's commit store anyway.
        self.header().tail.tail.store(tail + size as u64, Release);
        tail
    }

    /// Rolls the tail back to `tail` (crash recovery, group lock held).
    pub fn rollback(&self, tail: u64) {
        self.header().tail.tail.store(tail, Release);
    }

    /// Reads the record at the head if it is committed, copying its payload
    /// into `out` (at most `out.len()` bytes, scattered over the slices).
    /// With `consume`, removes it; a concurrent receiver that consumed it
    /// first makes this retry with the next one. Returns `Ok(None)` when no
    /// committed record is waiting, and `(received, freed_bytes)` otherwise.
    pub fn take(
        &self,
        committed: u64,
        out: &mut [std::io::IoSliceMut<'_>],
        consume: bool,
    ) -> Result<Option<(Received, u64)>, Errno> {
        let hdr = self.header();
        loop {
            let head = hdr.head.head.load(Acquire);
            let tail = hdr.tail.tail.load(Acquire);
            if head == tail {
                return Ok(None);
            }
            let avail = tail.wrapping_sub(head);
            if avail > self.storage {
                return Err(Errno::EIO);
            }
            let at = (head % self.storage) as usize;
            let mut rec = RecordHeader::default();
            // SAFETY: `at < storage` and the header is 32 bytes, inside the
            // double mapping; a volatile-style copy of plain bytes that a
            // producer may be rewriting is validated below before use.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data().add(at),
                    &mut rec as *mut RecordHeader as *mut u8,
                    RECORD_HEADER,
                )
            };
            if rec.seq > committed {
                return Ok(None);
            }
            let size = rec.size as u64;
            if size < RECORD_HEADER as u64
                || !size.is_multiple_of(8)
                || size > avail
                || rec.addr_len as usize > crate::addr::SUN_PATH_MAX
                || record_size(rec.addr_len as usize, rec.len as usize) as u64 != size
            {
                // Re-check: a concurrent consumer may have moved the head
                // and a producer reused the bytes we read.
                if hdr.head.head.load(Acquire) != head {
                    continue;
                }
                return Err(Errno::EIO);
            }
            let mut got = Received { header: rec, addr: vec![0u8; rec.addr_len as usize], copied: 0 };
            // SAFETY: the record lies within [at, at + size) with size <=
            // avail <= storage, inside the double mapping.
            unsafe {
                let base = self.data().add(at);
                std::ptr::copy_nonoverlapping(base.add(RECORD_HEADER), got.addr.as_mut_ptr(), got.addr.len());
                let mut src = base.add(RECORD_HEADER + got.addr.len().next_multiple_of(8));
                let mut left = rec.len as usize;
                for o in out.iter_mut() {
                    if left == 0 {
                        break;
                    }
                    let n = o.len().min(left);
                    std::ptr::copy_nonoverlapping(src, o.as_mut_ptr(), n);
                    src = src.add(n);
                    left -= n;
                    got.copied += n;
                }
            }
            if !consume {
                // Validate the copy: the bytes are stable as long as nobody
                // consumed the record while we read it.
                if hdr.head.head.load(Acquire) != head {
                    continue;
                }
                return Ok(Some((got, 0)));
            }
            // SYNC POINT: consume; AcqRel CAS pairs with the producer's
            // Acquire load of head in `used`.
            match hdr.head.head.compare_exchange(head, head + size, std::sync::atomic::Ordering::AcqRel, Relaxed) {
                Ok(_) => return Ok(Some((got, size))),
                Err(_) => continue,
            }
        }
    }

    /// Committed messages and bytes waiting (for stats and readiness).
    pub fn pending(&self, committed: u64) -> Result<bool, Errno> {
        let hdr = self.header();
        let head = hdr.head.head.load(Acquire);
        let tail = hdr.tail.tail.load(Acquire);
        if head == tail {
            return Ok(false);
        }
        if tail.wrapping_sub(head) > self.storage {
            return Err(Errno::EIO);
        }
        let at = (head % self.storage) as usize;
        let mut seq = 0u64;
        // SAFETY: 8 bytes at `at < storage`, inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.data().add(at), &mut seq as *mut u64 as *mut u8, 8) };
        Ok(seq <= committed)
    }

    /// Messages and payload bytes waiting (committed or not), for stats.
    /// Walks the records; stops quietly at anything malformed.
    pub fn census(&self) -> (u64, u64) {
        let hdr = self.header();
        let mut at = hdr.head.head.load(Acquire);
        let tail = hdr.tail.tail.load(Acquire);
        let (mut n, mut bytes) = (0u64, 0u64);
        while at < tail && tail - at <= self.storage {
            let mut rec = RecordHeader::default();
            // SAFETY: `at % storage < storage`; 32 bytes inside the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data().add((at % self.storage) as usize),
                    &mut rec as *mut RecordHeader as *mut u8,
                    RECORD_HEADER,
                )
            };
            if (rec.size as usize) < RECORD_HEADER || rec.size as u64 > tail - at {
                break;
            }
            n += 1;
            bytes += rec.len as u64;
            at += rec.size as u64;
        }
        (n, bytes)
    }
}
