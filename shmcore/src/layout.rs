//! The shared-memory layout: what every process that maps a group agrees on.
//!
//! ```text
//!  /dev/shm/umcast.g.<key>            one per group, made by CREATE_GROUP
//!  +--------------------------------+
//!  | GroupHeader                    |  magic (written last), identity, state,
//!  |   lock (robust pthread mutex)  |  the group lock and what it protects:
//!  |   next_seq, inflight journal   |  sequence numbers, membership generation
//!  |--------------------------------|
//!  | committed_seq (own cache line) |  readers poll this; one store commits
//!  |--------------------------------|
//!  | room_seq, blocked_senders      |  futex word for senders waiting for room
//!  |--------------------------------|
//!  | MemberSlot[MAX_MEMBERS]        |  one 128-byte slot per member socket
//!  +--------------------------------+
//!
//!  /dev/shm/umcast.q.<group_id>.<queue_id>   one per membership, made at JOIN
//!  +--------------------------------+
//!  | QueueHeader (one page)         |  head (receivers) and tail (senders)
//!  |--------------------------------|  on separate cache lines
//!  | data: records, ring of         |  mapped twice back to back, so a
//!  | `storage` bytes                |  record never has to wrap
//!  +--------------------------------+
//! ```
//!
//! Every struct is `#[repr(C)]`, holds indices and sizes, never pointers, and
//! every field another process can write is an atomic. Values read from here
//! are untrusted: readers bound every index and length before use.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

pub const GROUP_MAGIC: u64 = u64::from_le_bytes(*b"UMCgrp\x00\x01");
pub const QUEUE_MAGIC: u64 = u64::from_le_bytes(*b"UMCque\x00\x01");
pub const LAYOUT_VERSION: u32 = 2;

/// Members per group. A JOIN beyond this fails with ENOBUFS.
pub const MAX_MEMBERS: usize = 256;

/// `GroupHeader::state` values.
pub const GROUP_OPEN: u32 = 1;
/// The group socket G is gone: its address no longer names the group.
pub const GROUP_CLOSED: u32 = 2;

/// Internal `MemberSlot::flags` bit (above the UNIX_MREQ_* bits): the slot
/// is the SEND_TO_PEER copy of a SEQPACKET member, owned by the server's
/// accepted socket; it receives only its member's messages.
pub const SLOT_PEER_COPY: u32 = 0x100;

/// `MemberSlot::state` values.
pub const SLOT_FREE: u32 = 0;
pub const SLOT_ACTIVE: u32 = 1;
/// Membership ended by the other end (a SEQPACKET server) while messages
/// were queued for a member socket that may not have mapped its queue yet:
/// no longer a recipient, but kept until the member reads them or is gone.
pub const SLOT_LEFT: u32 = 2;

/// Identity, state and the lock. Immutable fields are written by the creator
/// before `magic` is stored with Release (SYNC POINT: segment-publish, paired
/// with the Acquire load in `Group::open`).
#[repr(C, align(64))]
pub struct GroupHeader {
    pub magic: AtomicU64,
    pub version: u32,
    /// `size_of::<GroupSegment>()` as the creator saw it.
    pub segment_size: u32,
    /// SOCK_DGRAM or SOCK_SEQPACKET.
    pub sock_type: u32,
    pub max_members: u32,
    /// Inode of the group socket G (sockfs).
    pub group_ino: u64,
    /// Random identity of this incarnation of the group; names queue files.
    pub group_id: u64,
    /// GROUP_OPEN or GROUP_CLOSED.
    pub state: AtomicU32,
    pub _pad0: u32,
    /// The group lock (see `lock`): owner thread id, or 0. Held for the
    /// reservation, copy and commit of one message, and for membership
    /// changes.
    pub lock: AtomicU32,
    pub _pad1: u32,
    // ---- protected by `lock` (atomics so that reads stay defined) ----
    /// Last sequence number handed out.
    pub next_seq: AtomicU64,
    /// Sequence number of the message being written (0: none). If the lock
    /// is found with its owner dead, the slots carrying this number in
    /// `MemberSlot::inflight_seq` are rolled back.
    pub inflight_seq: AtomicU64,
    /// Slots `0..high_water` may be active.
    pub high_water: AtomicU32,
    pub member_count: AtomicU32,
    /// Bumped on every membership change.
    pub member_gen: AtomicU64,
    /// When a sender last checked every member and G for liveness (ms).
    pub last_sweep_ms: AtomicU64,
    /// The group's address as given at creation (for tools and adoption):
    /// `addr_kind` 1 = path, 2 = abstract; `addr_len` bytes of `addr`.
    pub addr_kind: u32,
    pub addr_len: u32,
    pub addr: [u8; 108],
}

/// The commit word, alone on its cache line: readers load it on every
/// receive, the lock holder stores it once per message.
#[repr(C, align(64))]
pub struct CommitLine {
    /// Highest committed sequence number. A record whose seq is greater has
    /// not been committed and is invisible (SYNC POINT: commit, Release
    /// store in `Group::send`, Acquire loads in `Queue::peek`).
    pub committed_seq: AtomicU64,
}

/// Where senders that wait for room sleep.
#[repr(C, align(64))]
pub struct RoomLine {
    /// Futex word: bumped by a receiver that freed room while senders wait.
    pub room_seq: AtomicU32,
    /// Number of pollers waiting for room (registered in `waiters`);
    /// futex-blocked senders count in their blocking member's slot.
    pub blocked_senders: AtomicU32,
    /// Doorbell ids of pollers waiting for POLLOUT (0: free entry). A
    /// receiver that frees room while senders wait rings each of them.
    pub waiters: [AtomicU64; ROOM_WAITERS],
    /// Largest record size a futex-blocked sender waits to fit (0: none).
    /// A receiver wakes futex sleepers once its queue has that much room,
    /// not for every message it reads.
    pub wanted: AtomicU64,
}

/// Pollers that can wait for room on one group through a doorbell; more
/// poll in short slices instead.
pub const ROOM_WAITERS: usize = 14;

/// One member socket's entry.
#[repr(C, align(64))]
pub struct MemberSlot {
    /// SLOT_FREE or SLOT_ACTIVE (Release when activated, after all fields).
    pub state: AtomicU32,
    /// UNIX_MREQ_* flags of the membership.
    pub flags: AtomicU32,
    /// Inode of the member socket.
    pub sock_ino: AtomicU64,
    /// Names the queue file `umcast.q.<group_id>.<queue_id>`.
    pub queue_id: AtomicU64,
    /// SOCK_SEQPACKET: for a member, the inode of its peer (the server's
    /// accepted socket); for a peer slot (`SLOT_PEER_COPY` in `flags`), the
    /// member whose messages it receives. 0 for datagram groups.
    pub peer_ino: AtomicU64,
    /// The member socket's own classic BPF filter (SO_ATTACH_FILTER), in
    /// `umcast.f.<group_id>.<filter_id>`; 0: none.
    pub filter_id: AtomicU64,
    /// SOCK_SEQPACKET: the filter attached to the member's peer (the
    /// server's accepted socket), which also filters what the member gets.
    pub peer_filter_id: AtomicU64,
    /// Senders sleeping on the room futex because this member is full.
    /// Only this member's reads wake them (SYNC POINT: room-wait).
    pub room_waiters: AtomicU32,
    pub _reserved: u32,
    /// Pid of the process that joined (diagnostics, liveness hint).
    pub owner_pid: AtomicU32,
    /// `(epoch << 1) | asleep`: bit 0 is set while a receiver of this member
    /// is asleep and wants the group's FIFO written; each new sleep bumps the
    /// epoch. Senders clear bit 0 only after ringing, with a CAS on the exact
    /// value they saw (SYNC POINT: sleep, SeqCst with the commit).
    pub sleeping: AtomicU32,
    /// Queue tail before the in-flight message (crash rollback).
    pub rollback_tail: AtomicU64,
    /// Sequence number of the in-flight message written to this slot.
    pub inflight_seq: AtomicU64,
    /// Messages missed while full (DROP_WHEN_FULL).
    pub dropped: AtomicU64,
    /// Messages refused by a socket filter.
    pub filtered: AtomicU64,
    /// Accounting capacity of the member's queue (its SO_RCVBUF at join).
    pub capacity: AtomicU64,
    /// When a sender last asked the kernel whether this member's socket
    /// still exists (monotonic ms), to rate-limit liveness checks.
    pub checked_ms: AtomicU64,
}

/// The whole group segment.
#[repr(C)]
pub struct GroupSegment {
    pub header: GroupHeader,
    pub commit: CommitLine,
    pub room: RoomLine,
    pub slots: [MemberSlot; MAX_MEMBERS],
}

/// Head of a member queue file (its first page).
#[repr(C, align(64))]
pub struct QueueHeader {
    pub magic: AtomicU64,
    /// Bytes of the data ring.
    pub storage: u64,
    /// Accounting capacity (the member's SO_RCVBUF at join).
    pub capacity: u64,
    pub group_id: u64,
    pub _pad: [u64; 4],
    /// Consumer position (monotonic byte offset), written by receivers.
    pub head: HeadLine,
    /// Producer position, written by the group lock holder.
    pub tail: TailLine,
}

#[repr(C, align(64))]
pub struct HeadLine {
    pub head: AtomicU64,
}

#[repr(C, align(64))]
pub struct TailLine {
    pub tail: AtomicU64,
}

/// A record in a queue's data ring. Followed by `addr_len` bytes of the
/// sender's address (the bytes after `sun_family`, padded to 8), then the
/// payload; the whole record is `size` bytes, a multiple of 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordHeader {
    pub seq: u64,
    pub size: u32,
    pub len: u32,
    pub flags: u16,
    pub addr_len: u16,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub const RECORD_HEADER: usize = size_of::<RecordHeader>();

/// Size of a record carrying `addr_len` address bytes and `len` payload bytes.
pub fn record_size(addr_len: usize, len: usize) -> usize {
    (RECORD_HEADER + addr_len.next_multiple_of(8) + len).next_multiple_of(8)
}

// Layout pinned at compile time; tests-c/t_layout.c checks the same numbers
// from C so that a future C reader agrees.
const _: () = {
    assert!(size_of::<RecordHeader>() == 32);
    assert!(size_of::<MemberSlot>() == 128);
    assert!(offset_of!(GroupSegment, commit) % 64 == 0);
    assert!(offset_of!(GroupSegment, room) % 64 == 0);
    assert!(offset_of!(QueueHeader, head) == 64);
    assert!(offset_of!(QueueHeader, tail) == 128);
    assert!(size_of::<QueueHeader>() <= 4096);
    assert!(size_of::<RoomLine>() == 128);
};
