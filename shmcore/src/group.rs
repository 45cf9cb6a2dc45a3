//! Groups: creation, lookup, membership and the send path.
//!
//! Locking: one robust mutex per group (the group lock) protects sequence
//! numbers, the membership table and every queue's tail. A send takes it
//! once: it checks room in every recipient's queue, appends the record to
//! each, and commits with one store of `committed_seq`. The order in which
//! senders take the lock is the order every member sees, which gives the
//! total order; the single commit store gives atomicity. Receivers never take
//! the lock.

use crate::addr::UnixAddr;
use crate::layout::*;
use crate::lock::{Locked, ShmMutex};
use crate::queue::Queue;
use crate::sys::{self, Mapping};
use crate::{diag, doorbell, waker, Errno};
use std::ffi::CString;
use std::io::IoSlice;
use std::mem::size_of;
use std::os::fd::OwnedFd;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicU32};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

/// UNIX_MREQ_* flags.
pub const MREQ_LOOPBACK: u32 = 0x01;
pub const MREQ_SEND_TO_PEER: u32 = 0x02;
pub const MREQ_DROP_WHEN_FULL: u32 = 0x04;
pub const MREQ_ALL: u32 = 0x07;

/// Longest single futex sleep of a blocked sender; it then re-checks the
/// group, so a missed wake-up or a dead member costs at most this long.
const ROOM_WAIT_SLICE_MS: u64 = 250;

/// Minimum interval between two liveness checks of one member.
const LIVENESS_CHECK_MS: u64 = 200;

/// `MemberSlot::checked_ms` of a member known to be gone.
const DEAD: u64 = u64::MAX;

/// Interval of the full liveness sweep done by senders.
const SWEEP_MS: u64 = 1000;

/// A member queue mapped by this process: (queue id, queue).
type CachedQueue = (u64, Arc<Queue>);

/// A mapped group.
pub struct Group {
    map: Mapping,
    path: CString,
    addr: UnixAddr,
    group_id: u64,
    group_ino: u64,
    sock_type: i32,
    mode: libc::mode_t,
    /// Sender-side cache of mapped member queues, by slot: (queue_id, queue).
    queues: Mutex<Vec<Option<CachedQueue>>>,
    /// The group's wake FIFO, opened on first use (see `waker`).
    wake: OnceLock<Result<OwnedFd, Errno>>,
    /// Filter programs loaded by this process, by id.
    programs: Mutex<std::collections::HashMap<u64, Arc<crate::bpf::Program>>>,
    /// Sender-side cache of filtered members' own wake FIFOs, by slot.
    member_fifos: Mutex<Vec<Option<(u64, OwnedFd)>>>,
}

/// Who is sending: identity for sender exclusion and what receivers see.
#[derive(Clone, Debug, Default)]
pub struct Sender {
    /// Inode of the sending socket (0: none, e.g. a test harness).
    pub ino: u64,
    /// The sender's bound address, as bytes after `sun_family` (empty: unbound).
    pub addr: Vec<u8>,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// How a send may wait.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Fail with EAGAIN instead of waiting.
    Never,
    /// Wait at most this many milliseconds (then EAGAIN).
    Millis(u64),
    Forever,
}

/// The network namespace's inode, which scopes abstract names. Cached:
/// a process that changes namespace (setns/unshare) after using groups
/// keeps naming them in the first one.
fn netns_ino() -> u64 {
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| sys::stat_path(b"/proc/self/ns/net").map(|s| s.st_ino).unwrap_or(0))
}

/// Cheap test (one or two stat calls) whether a group segment of this
/// socket type exists for `addr`; a true answer still needs `Group::open`
/// to be believed.
pub fn segment_exists(addr: &UnixAddr, sock_type: i32) -> bool {
    segment_path(addr, sock_type).is_ok_and(|p| sys::stat_path(p.as_bytes()).is_ok())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

/// The mode of a path group's shared files: the socket file's read/write
/// bits for group and others, kept only where every directory on the way
/// lets that class through (search permission), since only then can it
/// connect; the owner always keeps read/write. Ownership of the directories
/// is not modelled: a class is cut off if any directory denies it.
pub fn path_group_mode(path: &[u8]) -> Result<libc::mode_t, Errno> {
    let st = sys::stat_path(path)?;
    // Connecting needs write permission on the socket file: a class that
    // may write gets read/write, any other nothing.
    let mut mode: libc::mode_t = 0o600;
    if st.st_mode & 0o020 != 0 {
        mode |= 0o060;
    }
    if st.st_mode & 0o002 != 0 {
        mode |= 0o006;
    }
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map_err(|_| Errno::EIO)?.join(p) };
    for dir in abs.ancestors().skip(1) {
        let Ok(d) = sys::stat_path(dir.as_os_str().as_bytes()) else { continue };
        if d.st_mode & 0o001 == 0 {
            mode &= !0o006;
        }
        if d.st_mode & 0o010 == 0 {
            mode &= !0o060;
        }
    }
    Ok(mode)
}

/// The segment file name for a group address. A path group is named by its
/// socket file's device and inode (so every spelling of the path agrees); an
/// abstract group by its network namespace, socket type (the kernel keeps
/// abstract names apart per type: a datagram and a seqpacket socket may
/// both be bound to one name) and name.
pub fn segment_path(addr: &UnixAddr, sock_type: i32) -> Result<CString, Errno> {
    let name = match addr {
        UnixAddr::Path(p) => {
            let st = sys::stat_path(p)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(Errno::ECONNREFUSED);
            }
            format!("/dev/shm/umcast.g.p.{:x}.{:x}", st.st_dev, st.st_ino)
        }
        UnixAddr::Abstract(n) => {
            let ty = if sock_type == libc::SOCK_SEQPACKET { 's' } else { 'd' };
            format!("/dev/shm/umcast.g.a.{:x}.{ty}.{}", netns_ino(), hex(n))
        }
        UnixAddr::Unnamed => return Err(Errno::EINVAL),
    };
    CString::new(name).map_err(|_| Errno::EINVAL)
}

impl Group {
    fn seg(&self) -> &GroupSegment {
        // SAFETY: the mapping is exactly size_of::<GroupSegment>() bytes (checked
        // at create/open) and every shared field is atomic or only touched
        // under the lock.
        unsafe { &*(self.map.as_ptr() as *const GroupSegment) }
    }

    fn slot(&self, i: usize) -> &MemberSlot {
        &self.seg().slots[i]
    }

    pub fn addr(&self) -> &UnixAddr {
        &self.addr
    }

    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    pub fn group_ino(&self) -> u64 {
        self.group_ino
    }

    pub fn sock_type(&self) -> i32 {
        self.sock_type
    }

    /// Makes `fd` the group socket G of a new group at `addr`: binds it
    /// exactly as bind() would, then publishes a fresh segment, replacing any
    /// stale one left at the same name.
    pub fn create(fd: RawFd, addr: &UnixAddr, sock_type: i32) -> Result<Arc<Group>, Errno> {
        let (_, len) = sys::getsockname(fd)?;
        if len as usize > size_of::<libc::sa_family_t>() {
            return Err(Errno::EINVAL);
        }
        let (sa, salen) = addr.to_sockaddr();
        sys::bind(fd, &sa, salen)?;
        if sock_type == libc::SOCK_DGRAM {
            // G never receives: with receiving shut down the kernel refuses
            // ordinary datagrams to the group's address with EPIPE, which is
            // how a sender that is not yet known finds out it is a group.
            sys::shutdown(fd, libc::SHUT_RD)?;
        }
        let group_ino = sys::fstat(fd)?.st_ino;
        let mode = match addr {
            UnixAddr::Path(p) => path_group_mode(p)?,
            _ => 0o600,
        };
        let path = segment_path(addr, sock_type)?;
        let tmp = CString::new(format!("/dev/shm/umcast.t.{:016x}", sys::random_u64())).expect("no NUL");
        let f = sys::open(&tmp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600)?;
        let made = (|| {
            sys::fchmod(&f, mode)?;
            sys::ftruncate(&f, size_of::<GroupSegment>() as u64)?;
            let map = Mapping::map_shared(&f, size_of::<GroupSegment>())?;
            let g = Group {
                map,
                path: path.clone(),
                addr: addr.clone(),
                group_id: sys::random_u64(),
                group_ino,
                sock_type,
                mode,
                queues: Mutex::new(vec![None; MAX_MEMBERS]),
                wake: OnceLock::new(),
                programs: Mutex::new(Default::default()),
                member_fifos: Mutex::new((0..MAX_MEMBERS).map(|_| None).collect()),
            };
            waker::create_fifo(g.group_id, mode)?;
            // SAFETY: the file is new and unnamed to others (temporary name
            // known only to us), so nobody else reads this memory yet.
            let h = unsafe { &mut *(g.map.as_ptr() as *mut GroupHeader) };
            h.version = LAYOUT_VERSION;
            h.segment_size = size_of::<GroupSegment>() as u32;
            h.sock_type = sock_type as u32;
            h.max_members = MAX_MEMBERS as u32;
            h.group_ino = group_ino;
            h.group_id = g.group_id;
            h.state.store(GROUP_OPEN, Relaxed);
            let (kind, bytes) = match addr {
                UnixAddr::Path(p) => (1, p.as_slice()),
                UnixAddr::Abstract(n) => (2, n.as_slice()),
                UnixAddr::Unnamed => (0, &[][..]),
            };
            let n = bytes.len().min(h.addr.len());
            h.addr[..n].copy_from_slice(&bytes[..n]);
            h.addr_len = n as u32;
            h.addr_kind = kind;
            // SYNC POINT: segment-publish (Acquire in `open`).
            h.magic.store(GROUP_MAGIC, Release);
            // A group already named here is unreachable from now on (its
            // socket file was replaced): close it, so that senders holding
            // it find out. rename() then replaces the segment atomically.
            if let Ok(old) = Group::open_segment_c(path.clone()) {
                old.mark_closed();
            }
            sys::rename(&tmp, &path)?;
            Ok(Arc::new(g))
        })();
        if made.is_err() {
            let _ = sys::unlink(&tmp);
        }
        made
    }

    /// Opens the group at `addr`. EINVAL means "no group there" (no segment,
    /// a stale one, or one whose socket is not the one bound at `addr`).
    pub fn open(addr: &UnixAddr) -> Result<Arc<Group>, Errno> {
        Group::open_typed(addr, libc::SOCK_DGRAM)
    }

    /// Opens the group of this socket type at `addr` (see `open`).
    pub fn open_typed(addr: &UnixAddr, sock_type: i32) -> Result<Arc<Group>, Errno> {
        let path =
            segment_path(addr, sock_type).map_err(|e| if e == Errno::ECONNREFUSED { Errno::EINVAL } else { e })?;
        let g = match Group::open_segment_c(path) {
            Ok(g) => g,
            Err(Errno::ENOENT) => return Err(Errno::EINVAL),
            // A segment file is named here but is not a valid segment.
            Err(Errno::EINVAL) => return Err(Errno::EIO),
            Err(e) => return Err(e),
        };
        // The segment is this address's group only if its socket still
        // exists and is the one bound at this address.
        let info = diag::lookup(g.group_ino)?.ok_or(Errno::EINVAL)?;
        let same = match addr {
            UnixAddr::Path(p) => {
                let fst = sys::stat_path(p)?;
                info.vfs == Some(diag::vfs_key(&fst))
            }
            _ => info.name.as_ref() == Some(addr),
        };
        if !same {
            return Err(Errno::EINVAL);
        }
        if g.is_closed() {
            // Its socket is alive and bound here, yet the state says closed:
            // the shared state was damaged.
            return Err(Errno::EIO);
        }
        Ok(g)
    }

    /// Opens a segment file by name, checking only its header (for tools,
    /// garbage collection and adoption of inherited sockets).
    pub fn open_segment(path: &str) -> Result<Arc<Group>, Errno> {
        Group::open_segment_c(CString::new(path).map_err(|_| Errno::EINVAL)?)
    }

    fn open_segment_c(path: CString) -> Result<Arc<Group>, Errno> {
        let f = sys::open(&path, libc::O_RDWR | libc::O_NOFOLLOW, 0)?;
        let st = sys::fstat(f.as_raw_fd())?;
        if st.st_size as usize != size_of::<GroupSegment>() {
            return Err(Errno::EINVAL);
        }
        let map = Mapping::map_shared(&f, size_of::<GroupSegment>())?;
        // SAFETY: the mapping holds a whole GroupSegment (size checked above).
        let h = unsafe { &*(map.as_ptr() as *const GroupHeader) };
        if h.magic.load(Acquire) != GROUP_MAGIC
            || h.version != LAYOUT_VERSION
            || h.segment_size as usize != size_of::<GroupSegment>()
            || h.max_members as usize != MAX_MEMBERS
        {
            return Err(Errno::EINVAL);
        }
        let n = (h.addr_len as usize).min(h.addr.len());
        let addr = match h.addr_kind {
            1 => UnixAddr::Path(h.addr[..n].to_vec()),
            2 => UnixAddr::Abstract(h.addr[..n].to_vec()),
            _ => UnixAddr::Unnamed,
        };
        Ok(Arc::new(Group {
            path,
            addr,
            group_id: h.group_id,
            group_ino: h.group_ino,
            sock_type: h.sock_type as i32,
            mode: (st.st_mode & 0o666) as libc::mode_t,
            queues: Mutex::new(vec![None; MAX_MEMBERS]),
            wake: {
                // Opened now, while this process may: a later chmod of the
                // group must not cut off a member that already joined.
                let w = OnceLock::new();
                let _ = w.set(waker::open_fifo(h.group_id));
                w
            },
            programs: Mutex::new(Default::default()),
            member_fifos: Mutex::new((0..MAX_MEMBERS).map(|_| None).collect()),
            map,
        }))
    }

    /// Re-derives the segment's and the member queues' permissions from the
    /// path group's socket file after a chmod or chown of that file, so the
    /// shared state stays open to exactly those who may connect. Only what
    /// the caller owns (or everything, for root) can be changed; the rest
    /// keeps its mode.
    pub fn sync_permissions(addr: &UnixAddr) -> Result<(), Errno> {
        let UnixAddr::Path(p) = addr else {
            return Ok(());
        };
        let st = sys::stat_path(p)?;
        let mode = path_group_mode(p)?;
        let path = segment_path(addr, libc::SOCK_DGRAM)?;
        let f = sys::open(&path, libc::O_RDWR | libc::O_NOFOLLOW, 0)?;
        sys::fchown(&f, st.st_uid, st.st_gid).ok();
        sys::fchmod(&f, mode)?;
        let g = Group::open(addr)?;
        let fifo = waker::fifo_path(g.group_id);
        // SAFETY: a path, ids and a mode; no memory is passed.
        unsafe {
            libc::syscall(libc::SYS_fchownat, libc::AT_FDCWD, fifo.as_ptr(), st.st_uid, st.st_gid, 0);
            libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, fifo.as_ptr(), mode, 0);
        }
        for i in 0..MAX_MEMBERS {
            let s = g.slot(i);
            if s.state.load(Acquire) == SLOT_ACTIVE {
                let q = crate::queue::queue_path(g.group_id, s.queue_id.load(Relaxed));
                if let Ok(qf) = sys::open(&q, libc::O_RDWR | libc::O_NOFOLLOW, 0) {
                    sys::fchown(&qf, st.st_uid, st.st_gid).ok();
                    sys::fchmod(&qf, mode).ok();
                }
            }
        }
        Ok(())
    }

    /// The group's wake FIFO (both ends), for senders and watchers.
    pub fn wake_fd(&self) -> Result<RawFd, Errno> {
        match self.wake.get_or_init(|| waker::open_fifo(self.group_id)) {
            Ok(f) => Ok(f.as_raw_fd()),
            Err(e) => Err(*e),
        }
    }

    /// Whether the group socket G has been closed.
    pub fn is_closed(&self) -> bool {
        self.seg().header.state.load(Acquire) != GROUP_OPEN
    }

    /// Marks the group closed (its socket G is gone) and removes its name,
    /// so the address no longer finds it. Members keep their mappings.
    pub fn mark_closed(&self) {
        // SEQPACKET members keep exchanging messages after the listening
        // socket is gone, and open each other's queues by the names the
        // segment lists: its name stays until garbage collection finds the
        // group without members.
        if self.seg().header.state.swap(GROUP_CLOSED, Release) != GROUP_CLOSED && self.sock_type == libc::SOCK_DGRAM {
            // Nobody can send to a closed datagram group (senders holding it
            // get ECONNREFUSED), so every file of it can lose its name now;
            // members keep what they have mapped or open.
            let _ = sys::unlink(&self.path);
            let _ = sys::unlink(&waker::fifo_path(self.group_id));
            for i in 0..MAX_MEMBERS {
                let s = self.slot(i);
                if s.state.load(Acquire) == SLOT_ACTIVE {
                    Queue::unlink(self.group_id, s.queue_id.load(Relaxed));
                    crate::filter::remove(self.group_id, s.filter_id.load(Relaxed));
                    crate::filter::remove(self.group_id, s.peer_filter_id.load(Relaxed));
                }
            }
        }
    }

    /// Wakes every receiver sleeping on this group (for example a client
    /// that became a member while blocked in recv or poll).
    pub fn wake_all(&self) {
        if let Ok(fd) = self.wake_fd() {
            waker::wake(fd);
        }
    }

    /// Membership generation: changes whenever a member joins or leaves.
    pub fn member_gen(&self) -> u64 {
        self.seg().header.member_gen.load(Acquire)
    }

    /// Slot `i`'s flags (UNIX_MREQ_* and SLOT_PEER_COPY).
    pub fn slot_flags(&self, i: usize) -> u32 {
        self.slot(i.min(MAX_MEMBERS - 1)).flags.load(Relaxed)
    }

    fn lock(&self) -> Result<Locked<'_>, Errno> {
        let mut l = ShmMutex::new(&self.seg().header.lock).lock()?;
        if l.recovered {
            self.repair()?;
            l.mark_consistent();
        }
        Ok(l)
    }

    /// Undoes what a sender that died holding the lock left uncommitted.
    fn repair(&self) -> Result<(), Errno> {
        let h = &self.seg().header;
        let committed = self.seg().commit.committed_seq.load(Acquire);
        let s = h.inflight_seq.load(Relaxed);
        if s != 0 && s > committed {
            for i in 0..MAX_MEMBERS {
                let slot = self.slot(i);
                if slot.state.load(Acquire) == SLOT_ACTIVE && slot.inflight_seq.load(Relaxed) == s {
                    if let Ok(q) = self.queue(i) {
                        q.rollback(slot.rollback_tail.load(Relaxed));
                    }
                }
            }
        }
        h.next_seq.store(committed, Relaxed);
        h.inflight_seq.store(0, Relaxed);
        Ok(())
    }

    /// The mapped queue of slot `i` (group lock held, or for repair).
    fn queue(&self, i: usize) -> Result<Arc<Queue>, Errno> {
        let slot = self.slot(i);
        let qid = slot.queue_id.load(Acquire);
        let mut cache = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, q)) = &cache[i] {
            if *id == qid {
                return Ok(q.clone());
            }
        }
        let cap = slot_capacity(slot)?;
        // A queue the slot names but that cannot be opened means damaged
        // shared state (or a member that vanished without cleanup).
        let q = Arc::new(Queue::open(self.group_id, qid, cap).map_err(|_| Errno::EIO)?);
        cache[i] = Some((qid, q.clone()));
        Ok(q)
    }

    /// Makes the socket with inode `sock_ino` a member.
    pub fn join(self: &Arc<Self>, sock_ino: u64, flags: u32, rcvbuf: u64) -> Result<Arc<Membership>, Errno> {
        self.join_with_peer(sock_ino, flags, rcvbuf, 0)
    }

    /// Makes the socket with inode `sock_ino` a member, recording its peer
    /// (SOCK_SEQPACKET: see `MemberSlot::peer_ino`).
    pub fn join_with_peer(
        self: &Arc<Self>,
        sock_ino: u64,
        flags: u32,
        rcvbuf: u64,
        peer_ino: u64,
    ) -> Result<Arc<Membership>, Errno> {
        let _l = self.lock()?;
        let h = &self.seg().header;
        let high = (h.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
        let mut free = None;
        for i in 0..MAX_MEMBERS {
            let s = self.slot(i);
            let active = s.state.load(Relaxed) == SLOT_ACTIVE;
            if active && i < high && s.sock_ino.load(Relaxed) == sock_ino {
                return Err(Errno::EADDRINUSE);
            }
            if s.state.load(Relaxed) == SLOT_FREE && free.is_none() {
                free = Some(i);
            }
        }
        let i = free.ok_or(Errno(libc::ENOBUFS))?;
        let queue_id = sys::random_u64();
        let queue = Arc::new(Queue::create(self.group_id, queue_id, rcvbuf, self.mode)?);
        let s = self.slot(i);
        s.flags.store(flags, Relaxed);
        s.sock_ino.store(sock_ino, Relaxed);
        s.queue_id.store(queue_id, Relaxed);
        s.checked_ms.store(0, Relaxed);
        s.owner_pid.store(sys::getpid() as u32, Relaxed);
        s.sleeping.store(0, Relaxed);
        s.inflight_seq.store(0, Relaxed);
        s.dropped.store(0, Relaxed);
        s.filtered.store(0, Relaxed);
        s.capacity.store(rcvbuf, Relaxed);
        s.peer_ino.store(peer_ino, Relaxed);
        s.filter_id.store(0, Relaxed);
        s.peer_filter_id.store(0, Relaxed);
        s.room_waiters.store(0, Relaxed);
        s.state.store(SLOT_ACTIVE, Release);
        if i + 1 > high {
            h.high_water.store(i as u32 + 1, Relaxed);
        }
        h.member_count.fetch_add(1, Relaxed);
        h.member_gen.fetch_add(1, Relaxed);
        self.queues.lock().unwrap_or_else(|e| e.into_inner())[i] = Some((queue_id, queue.clone()));
        Ok(Arc::new(Membership { group: self.clone(), slot: i, queue_id, queue, flags, own_wake: OnceLock::new() }))
    }

    /// Ends a membership; its queued messages stay readable by `m`.
    pub fn leave(&self, m: &Membership) -> Result<(), Errno> {
        let _l = self.lock()?;
        let s = self.slot(m.slot);
        if s.state.load(Relaxed) != SLOT_ACTIVE || s.queue_id.load(Relaxed) != m.queue_id {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let ino = s.sock_ino.load(Relaxed);
        self.evict(m.slot);
        // A SEQPACKET member's SEND_TO_PEER copy ends with it.
        if s.flags.load(Relaxed) & SLOT_PEER_COPY == 0 {
            self.evict_where(|t| t.flags.load(Relaxed) & SLOT_PEER_COPY != 0 && t.peer_ino.load(Relaxed) == ino);
        }
        // Senders blocked on this member must re-evaluate.
        self.wake_blocked_senders();
        Ok(())
    }

    /// Ends the membership a server's accepted socket `peer_ino` gave its
    /// client (ACCEPT_GROUP), and its SEND_TO_PEER copy: the server closed
    /// or shut down that socket, or left through it. EADDRNOTAVAIL if none.
    pub fn end_accepted(&self, peer_ino: u64) -> Result<(), Errno> {
        let _l = self.lock()?;
        // The server's copy slot goes; the client's member slot is retired:
        // what is queued for it stays readable even if its process has not
        // mapped the queue yet.
        let mut n = self.evict_where(|t| t.sock_ino.load(Relaxed) == peer_ino);
        let high = (self.seg().header.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
        for i in 0..high {
            let t = self.slot(i);
            if t.state.load(Acquire) == SLOT_ACTIVE && t.peer_ino.load(Relaxed) == peer_ino {
                self.retire(i);
                n += 1;
            }
        }
        self.wake_blocked_senders();
        if n == 0 {
            return Err(Errno::EADDRNOTAVAIL);
        }
        Ok(())
    }

    /// Evicts every active slot matching `pred` (group lock held).
    fn evict_where(&self, pred: impl Fn(&MemberSlot) -> bool) -> usize {
        let high = (self.seg().header.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
        let mut n = 0;
        for i in 0..high {
            let t = self.slot(i);
            if t.state.load(Acquire) == SLOT_ACTIVE && pred(t) {
                self.evict(i);
                n += 1;
            }
        }
        n
    }

    /// Sends one message to every recipient, atomically. Returns its length.
    ///
    /// `wait` is asked how to wait only when a recipient is full, so the
    /// caller's system calls for O_NONBLOCK and SO_SNDTIMEO stay off the
    /// common path.
    pub fn send(
        &self,
        sender: &Sender,
        payload: &[IoSlice<'_>],
        wait: &mut dyn FnMut() -> Wait,
    ) -> Result<usize, Errno> {
        let len: usize = payload.iter().map(|s| s.len()).sum();
        let size = record_size(sender.addr.len(), len) as u64;
        let mut mode: Option<(Wait, Option<u64>)> = None;
        let mut sleepers: Vec<(usize, u32)> = Vec::new();
        // The payload in one piece, made only if some recipient has a filter.
        let mut flat: Option<Vec<u8>> = None;
        loop {
            let l = self.lock()?;
            self.maybe_sweep();
            if self.is_closed() && self.sock_type == libc::SOCK_DGRAM {
                return Err(Errno::ECONNREFUSED);
            }
            let h = &self.seg().header;
            let high = (h.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
            // (slot, queue, deliver?) for every recipient.
            // (slot, queue, what it gets) for every recipient.
            let mut recipients: Vec<(usize, Arc<Queue>, Fate)> = Vec::with_capacity(high);
            let mut blocked_on: Option<(usize, Arc<Queue>)> = None;
            for i in 0..high {
                let s = self.slot(i);
                if s.state.load(Acquire) != SLOT_ACTIVE {
                    continue;
                }
                let flags = s.flags.load(Relaxed);
                if sender.ino != 0 && s.sock_ino.load(Relaxed) == sender.ino && flags & MREQ_LOOPBACK == 0 {
                    continue;
                }
                // A SEND_TO_PEER copy receives only its own member's messages.
                if flags & SLOT_PEER_COPY != 0 && s.peer_ino.load(Relaxed) != sender.ino {
                    continue;
                }
                let q = self.queue(i)?;
                if size > q.storage() {
                    return Err(Errno::EMSGSIZE);
                }
                // Filters run first: a refused message takes no room.
                let take = match self.filtered_len(i, payload, len, &mut flat)? {
                    None => {
                        recipients.push((i, q, Fate::Filtered));
                        continue;
                    }
                    Some(n) => n,
                };
                let room = q.has_room(record_size(sender.addr.len(), take) as u64)?;
                if !room && flags & MREQ_DROP_WHEN_FULL == 0 {
                    blocked_on = Some((i, q));
                    break;
                }
                recipients.push((i, q, if room { Fate::Deliver(take) } else { Fate::Dropped }));
            }
            if let Some((bi, q)) = blocked_on {
                if !self.member_alive(bi, false) {
                    // A dead member never holds the group back.
                    self.evict(bi);
                    continue;
                }
                let (w, deadline) = *mode.get_or_insert_with(|| {
                    let w = wait();
                    (w, if let Wait::Millis(ms) = w { Some(sys::now_ms() + ms) } else { None })
                });
                let deadline_left = match w {
                    Wait::Never => return Err(Errno::EAGAIN),
                    Wait::Forever => None,
                    Wait::Millis(_) => {
                        let left = deadline.unwrap_or(0).saturating_sub(sys::now_ms());
                        if left == 0 {
                            return Err(Errno::EAGAIN);
                        }
                        Some(left)
                    }
                };
                let room = &self.seg().room;
                // SYNC POINT: room-wait; announce, then re-check (pairs with
                // the SeqCst fence in `Membership::recv`).
                // Only the member that is full can let this sender go: it
                // is the one told (its slot's `room_waiters`), so the other
                // members' reads cost nothing.
                let waiters = &self.slot(bi).room_waiters;
                room.wanted.fetch_max(size, SeqCst);
                waiters.fetch_add(1, SeqCst);
                fence(SeqCst);
                let snapshot = room.room_seq.load(SeqCst);
                let still_full = !q.has_room(size)?;
                drop(l);
                let r = if still_full {
                    let slice = deadline_left.map_or(ROOM_WAIT_SLICE_MS, |d| d.min(ROOM_WAIT_SLICE_MS));
                    sys::futex_wait(&room.room_seq, snapshot, Some(slice))
                } else {
                    Ok(())
                };
                if waiters.fetch_sub(1, SeqCst) == 1 {
                    room.wanted.store(0, Relaxed);
                }
                match r {
                    Ok(()) | Err(Errno::ETIMEDOUT) => continue,
                    Err(e) => return Err(e),
                }
            }
            let seq = h.next_seq.load(Relaxed) + 1;
            h.next_seq.store(seq, Relaxed);
            h.inflight_seq.store(seq, Relaxed);
            let rec = RecordHeader { seq, pid: sender.pid, uid: sender.uid, gid: sender.gid, ..Default::default() };
            for (i, q, fate) in &recipients {
                let s = self.slot(*i);
                let take = match fate {
                    Fate::Dropped => {
                        s.dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                    Fate::Filtered => {
                        s.filtered.fetch_add(1, Relaxed);
                        continue;
                    }
                    Fate::Deliver(n) => *n,
                };
                s.rollback_tail.store(q.header().tail.tail.load(Relaxed), Relaxed);
                s.inflight_seq.store(seq, Relaxed);
                if take < len {
                    // A filter kept only the first `take` bytes.
                    let f = flat.as_deref().unwrap_or(&[]);
                    q.append(rec, &sender.addr, &[IoSlice::new(&f[..take.min(f.len())])]);
                } else {
                    q.append(rec, &sender.addr, payload);
                }
            }
            // SYNC POINT: commit (Acquire loads in `Membership::take`); the
            // SeqCst store also orders it before the `sleeping` loads below
            // (pairs with `Membership::prepare_sleep`).
            self.seg().commit.committed_seq.store(seq, SeqCst);
            h.inflight_seq.store(0, Relaxed);
            drop(l);
            fence(SeqCst);
            // Wake sleepers with one FIFO write, then clear exactly the sleep
            // declarations we answered: a sender killed in between leaves
            // the flags set for the next sender, and a receiver that
            // declared a new sleep meanwhile (new epoch) keeps its flag.
            for (i, _, fate) in &recipients {
                let w = self.slot(*i).sleeping.load(SeqCst);
                if matches!(fate, Fate::Deliver(_)) && w & 1 != 0 {
                    sleepers.push((*i, w));
                }
            }
            if !sleepers.is_empty() {
                // Unfiltered sleepers share the group's FIFO (one write for
                // all); a filtered one has its own, so that messages its
                // filter refuses never wake it.
                let mut group_fifo = false;
                for (i, _) in &sleepers {
                    match self.member_wake_fd(*i) {
                        Some(fd) => waker::wake(fd),
                        None => group_fifo = true,
                    }
                }
                if group_fifo {
                    if let Ok(fd) = self.wake_fd() {
                        waker::wake(fd);
                    }
                }
                for (i, w) in sleepers.drain(..) {
                    let _ = self.slot(i).sleeping.compare_exchange(w, w & !1, SeqCst, Relaxed);
                }
            }
            return Ok(len);
        }
    }

    /// Whether slot `i`'s socket still exists. Asks the kernel at most every
    /// `LIVENESS_CHECK_MS` per slot unless `force`.
    fn member_alive(&self, i: usize, force: bool) -> bool {
        let s = self.slot(i);
        let now = sys::now_ms();
        let last = s.checked_ms.load(Relaxed);
        if last == DEAD {
            return false;
        }
        if !force && now.saturating_sub(last) < LIVENESS_CHECK_MS {
            return true;
        }
        let alive = diag::socket_exists(s.sock_ino.load(Relaxed));
        // A socket that is gone never comes back: remember the verdict.
        s.checked_ms.store(if alive { now } else { DEAD }, Relaxed);
        alive
    }

    /// Frees slot `i` of a member whose socket is gone (group lock held).
    fn evict(&self, i: usize) {
        let s = self.slot(i);
        let was = s.state.swap(SLOT_FREE, Release);
        if was == SLOT_LEFT {
            Queue::unlink(self.group_id, s.queue_id.load(Relaxed));
            self.queues.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
        }
        if was != SLOT_FREE {
            let _ = sys::unlink(&waker::member_fifo_path(self.group_id, s.queue_id.load(Relaxed)));
        }
        if was == SLOT_ACTIVE {
            crate::filter::remove(self.group_id, s.filter_id.swap(0, Relaxed));
            crate::filter::remove(self.group_id, s.peer_filter_id.swap(0, Relaxed));
            let h = &self.seg().header;
            h.member_count.fetch_sub(1, Relaxed);
            h.member_gen.fetch_add(1, Relaxed);
            Queue::unlink(self.group_id, s.queue_id.load(Relaxed));
            self.queues.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
        }
    }

    /// Ends slot `i`'s membership but keeps its queue while it holds
    /// messages (group lock held): the member may read them later.
    fn retire(&self, i: usize) {
        let s = self.slot(i);
        let pending = self.queue(i).is_ok_and(|q| q.pending(u64::MAX).unwrap_or(false));
        if !pending {
            self.evict(i);
            return;
        }
        if s.state.compare_exchange(SLOT_ACTIVE, SLOT_LEFT, Release, Relaxed).is_ok() {
            crate::filter::remove(self.group_id, s.filter_id.swap(0, Relaxed));
            crate::filter::remove(self.group_id, s.peer_filter_id.swap(0, Relaxed));
            let h = &self.seg().header;
            h.member_count.fetch_sub(1, Relaxed);
            h.member_gen.fetch_add(1, Relaxed);
        }
    }

    /// Frees a retired slot whose member has read everything (or is gone).
    pub fn release_left(&self, i: usize, queue_id: u64) {
        let Ok(_l) = self.lock() else { return };
        let s = self.slot(i.min(MAX_MEMBERS - 1));
        if s.state.load(Acquire) == SLOT_LEFT && s.queue_id.load(Relaxed) == queue_id {
            self.evict(i);
        }
    }

    /// Once a second (group lock held): evicts members whose sockets are
    /// gone and closes the group if its socket G is gone.
    fn maybe_sweep(&self) {
        let h = &self.seg().header;
        let now = sys::now_ms();
        let last = h.last_sweep_ms.load(Relaxed);
        if now.saturating_sub(last) < SWEEP_MS || h.last_sweep_ms.compare_exchange(last, now, Relaxed, Relaxed).is_err()
        {
            return;
        }
        self.sweep_locked();
    }

    fn sweep_locked(&self) {
        let high = (self.seg().header.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
        for i in 0..high {
            let s = self.slot(i);
            if s.state.load(Acquire) == SLOT_LEFT && !diag::socket_exists(s.sock_ino.load(Relaxed)) {
                self.evict(i);
                continue;
            }
            if s.state.load(Acquire) != SLOT_ACTIVE {
                continue;
            }
            // A SEQPACKET membership also ends when the other end of its
            // connection (the server's accepted socket) is gone.
            let peer = s.peer_ino.load(Relaxed);
            if !self.member_alive(i, true) || (peer != 0 && !diag::socket_exists(peer)) {
                self.evict(i);
            }
        }
        if !self.is_closed() && !diag::socket_exists(self.group_ino) {
            self.mark_closed();
        }
    }

    /// Checks every member and G now (for tools and garbage collection).
    pub fn sweep(&self) -> Result<(), Errno> {
        let _l = self.lock()?;
        self.sweep_locked();
        Ok(())
    }

    /// How much of the message slot `i` gets after its filters (its own
    /// and, for a SEQPACKET member, its peer's): `None` if refused.
    fn filtered_len(
        &self,
        i: usize,
        payload: &[IoSlice<'_>],
        len: usize,
        flat: &mut Option<Vec<u8>>,
    ) -> Result<Option<usize>, Errno> {
        let s = self.slot(i);
        let ids = [s.filter_id.load(Acquire), s.peer_filter_id.load(Acquire)];
        if ids == [0, 0] {
            return Ok(Some(len));
        }
        let data = flat.get_or_insert_with(|| payload.iter().flat_map(|p| p.iter().copied()).collect());
        let mut take = len;
        for id in ids.into_iter().filter(|&id| id != 0) {
            let prog = self.program(id)?;
            match prog.accepted_len(data) {
                None => return Ok(None),
                Some(n) => take = take.min(n),
            }
        }
        Ok(Some(take))
    }

    /// The own wake FIFO of slot `i` if it has a filter (group lock held),
    /// opened once per queue id; None: the member sleeps on the group FIFO.
    fn member_wake_fd(&self, i: usize) -> Option<RawFd> {
        let s = self.slot(i);
        if s.filter_id.load(Acquire) == 0 && s.peer_filter_id.load(Acquire) == 0 {
            return None;
        }
        let qid = s.queue_id.load(Relaxed);
        let mut fifos = self.member_fifos.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, fd)) = &fifos[i] {
            if *id == qid {
                return Some(fd.as_raw_fd());
            }
        }
        let fd = waker::open_fifo_at(&waker::member_fifo_path(self.group_id, qid)).ok()?;
        let raw = fd.as_raw_fd();
        fifos[i] = Some((qid, fd));
        Some(raw)
    }

    /// Whether slot `i`'s member sleeps on its own FIFO (it has a filter).
    pub fn slot_filtered(&self, i: usize) -> bool {
        let s = self.slot(i.min(MAX_MEMBERS - 1));
        s.filter_id.load(Acquire) != 0 || s.peer_filter_id.load(Acquire) != 0
    }

    /// A stored filter program, loaded once per id.
    fn program(&self, id: u64) -> Result<Arc<crate::bpf::Program>, Errno> {
        let mut cache = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&id) {
            return Ok(p.clone());
        }
        let p = Arc::new(crate::filter::load(self.group_id, id)?);
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(id, p.clone());
        Ok(p)
    }

    /// ACCEPT_GROUP: installs the filter the client left as a candidate
    /// (`filter::candidate_id`), if any.
    pub fn take_candidate_filter(&self, sock_ino: u64) {
        let id = crate::filter::candidate_id(sock_ino);
        if crate::filter::load(self.group_id, id).is_err() {
            return;
        }
        let Ok(_l) = self.lock() else { return };
        for i in self.slots_of(sock_ino) {
            let s = self.slot(i);
            let fifo = waker::member_fifo_path(self.group_id, s.queue_id.load(Relaxed));
            if s.flags.load(Relaxed) & SLOT_PEER_COPY == 0 && waker::create_fifo_at(&fifo, self.mode).is_ok() {
                s.filter_id.store(id, Release);
            }
        }
    }

    /// A SEQPACKET client not yet a member records (or with None removes)
    /// its own filter for its server to install.
    pub fn leave_candidate_filter(&self, sock_ino: u64, insns: Option<&[crate::bpf::SockFilter]>) {
        let id = crate::filter::candidate_id(sock_ino);
        match insns {
            Some(p) => {
                let _ = crate::filter::store_as(self.group_id, id, p, self.mode);
            }
            None => crate::filter::remove(self.group_id, id),
        }
    }

    /// Sets the filter of the member socket `sock_ino` in this group (its
    /// own with `peer == false`; the one its peer imposes with `peer`).
    /// `insns` None detaches. Replaced programs are removed.
    pub fn set_filter(&self, sock_ino: u64, peer: bool, insns: Option<&[crate::bpf::SockFilter]>) -> Result<(), Errno> {
        let id = match insns {
            Some(p) => crate::filter::store(self.group_id, p, self.mode)?,
            None => 0,
        };
        let _l = self.lock()?;
        for i in self.slots_of(sock_ino) {
            // The member's own FIFO exists before any sender can choose it.
            let qid = self.slot(i).queue_id.load(Relaxed);
            waker::create_fifo_at(&waker::member_fifo_path(self.group_id, qid), self.mode)?;
        }
        for i in self.slots_of(sock_ino) {
            let s = self.slot(i);
            // A server's copy slot has only the server socket's own filter
            // (what reaches the server passes its filter, as any datagram).
            if peer && s.flags.load(Relaxed) & SLOT_PEER_COPY != 0 {
                continue;
            }
            let cell = if peer { &s.peer_filter_id } else { &s.filter_id };
            let old = cell.swap(id, Release);
            crate::filter::remove(self.group_id, old);
            // A sleeper armed on the other FIFO wakes and re-arms.
            if let Ok(fd) = waker::open_fifo_at(&waker::member_fifo_path(self.group_id, s.queue_id.load(Relaxed))) {
                waker::wake(fd.as_raw_fd());
            }
        }
        self.wake_all();
        Ok(())
    }

    /// Wakes every sender waiting for room (a member left: re-evaluate).
    fn wake_blocked_senders(&self) {
        let room = &self.seg().room;
        room.room_seq.fetch_add(1, SeqCst);
        sys::futex_wake_all(&room.room_seq);
        if room.blocked_senders.load(SeqCst) > 0 {
            self.ring_room_waiters();
        }
    }

    /// Rings the doorbells of pollers waiting for room (any room may make a
    /// 1-byte send possible).
    fn ring_room_waiters(&self) {
        for w in &self.seg().room.waiters {
            let id = w.load(Relaxed);
            if id != 0 && !doorbell::ring(id) {
                // The poller's process is gone.
                let _ = w.compare_exchange(id, 0, Relaxed, Relaxed);
            }
        }
    }

    /// Registers a poller's doorbell to be rung when room appears. The
    /// caller must re-check `writable` afterwards, before sleeping, and call
    /// `unregister_room_waiter` when done. `None`: no free entry (the poller
    /// then waits in short slices).
    pub fn register_room_waiter(&self, doorbell_id: u64) -> Option<usize> {
        let room = &self.seg().room;
        let idx = room.waiters.iter().position(|w| w.compare_exchange(0, doorbell_id, SeqCst, Relaxed).is_ok());
        // SYNC POINT: room-wait (as for futex sleepers in `send`).
        room.blocked_senders.fetch_add(1, SeqCst);
        fence(SeqCst);
        idx
    }

    pub fn unregister_room_waiter(&self, idx: Option<usize>, doorbell_id: u64) {
        let room = &self.seg().room;
        if let Some(i) = idx.filter(|&i| i < ROOM_WAITERS) {
            let _ = room.waiters[i].compare_exchange(doorbell_id, 0, SeqCst, Relaxed);
        }
        room.blocked_senders.fetch_sub(1, SeqCst);
    }

    /// Whether a 1-byte send from this sender would not block now (POLLOUT).
    pub fn writable(&self, sender_ino: u64, sender_addr_len: usize) -> Result<bool, Errno> {
        let h = &self.seg().header;
        let high = (h.high_water.load(Relaxed) as usize).min(MAX_MEMBERS);
        let size = record_size(sender_addr_len, 1) as u64;
        for i in 0..high {
            let s = self.slot(i);
            if s.state.load(Acquire) != SLOT_ACTIVE {
                continue;
            }
            let flags = s.flags.load(Relaxed);
            if flags & MREQ_DROP_WHEN_FULL != 0
                || (s.sock_ino.load(Relaxed) == sender_ino && flags & MREQ_LOOPBACK == 0)
                || (flags & SLOT_PEER_COPY != 0 && s.peer_ino.load(Relaxed) != sender_ino)
            {
                continue;
            }
            if !self.queue(i)?.has_room(size)? && self.member_alive(i, false) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A snapshot of the group for tools (no lock taken).
    pub fn info(&self) -> GroupInfo {
        let members = (0..MAX_MEMBERS)
            .filter(|&i| self.slot(i).state.load(Acquire) == SLOT_ACTIVE)
            .map(|i| {
                let s = self.slot(i);
                let (queued_messages, queued_bytes, capacity) = match self.queue(i) {
                    Ok(q) => {
                        let (n, b) = q.census();
                        (n, b, q.capacity())
                    }
                    Err(_) => (0, 0, 0),
                };
                MemberInfo {
                    slot: i,
                    pid: s.owner_pid.load(Relaxed),
                    sock_ino: s.sock_ino.load(Relaxed),
                    flags: s.flags.load(Relaxed),
                    queued_messages,
                    queued_bytes,
                    capacity,
                    dropped: s.dropped.load(Relaxed),
                    filtered: s.filtered.load(Relaxed),
                }
            })
            .collect();
        GroupInfo { members, blocked_senders: self.seg().room.blocked_senders.load(Relaxed) }
    }

    /// Whether any active slot names a socket that still exists.
    pub fn any_member_alive(&self) -> bool {
        (0..MAX_MEMBERS)
            .map(|i| self.slot(i))
            .filter(|s| s.state.load(Acquire) == SLOT_ACTIVE)
            .any(|s| diag::socket_exists(s.sock_ino.load(Relaxed)))
    }

    /// Queue ids of the active members (for garbage collection).
    pub fn active_queue_ids(&self) -> Vec<u64> {
        (0..MAX_MEMBERS)
            .map(|i| self.slot(i))
            .filter(|s| matches!(s.state.load(Acquire), SLOT_ACTIVE | SLOT_LEFT))
            .map(|s| s.queue_id.load(Relaxed))
            .collect()
    }

    /// Slots a process that holds socket `ino` should map: active ones and
    /// retired ones still holding its messages.
    pub fn slots_to_adopt(&self, ino: u64) -> Vec<usize> {
        (0..MAX_MEMBERS)
            .filter(|&i| {
                let s = self.slot(i);
                matches!(s.state.load(Acquire), SLOT_ACTIVE | SLOT_LEFT) && s.sock_ino.load(Relaxed) == ino
            })
            .collect()
    }

    /// Slots whose member socket has inode `ino`.
    pub fn slots_of(&self, ino: u64) -> Vec<usize> {
        (0..MAX_MEMBERS)
            .filter(|&i| {
                let s = self.slot(i);
                s.state.load(Acquire) == SLOT_ACTIVE && s.sock_ino.load(Relaxed) == ino
            })
            .collect()
    }

    /// The membership in slot `i`, for a process that inherited or received
    /// the member socket (exec, SCM_RIGHTS) and so has no `Membership` yet.
    pub fn adopt(self: &Arc<Self>, i: usize) -> Result<Arc<Membership>, Errno> {
        let s = self.slot(i);
        if i >= MAX_MEMBERS || !matches!(s.state.load(Acquire), SLOT_ACTIVE | SLOT_LEFT) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let queue_id = s.queue_id.load(Relaxed);
        let queue = self.queue(i)?;
        Ok(Arc::new(Membership {
            group: self.clone(),
            slot: i,
            queue_id,
            queue,
            flags: s.flags.load(Relaxed),
            own_wake: OnceLock::new(),
        }))
    }

    /// Active members (without retired slots).
    pub fn member_count(&self) -> u32 {
        self.seg().header.member_count.load(Relaxed)
    }
}

fn slot_capacity(s: &MemberSlot) -> Result<u64, Errno> {
    let c = s.capacity.load(Relaxed);
    // Bound what a corrupted slot can make us map.
    if c == 0 || c > (1 << 31) {
        return Err(Errno::EIO);
    }
    Ok(c)
}

/// What `Group::info` reports.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub members: Vec<MemberInfo>,
    pub blocked_senders: u32,
}

#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub slot: usize,
    pub pid: u32,
    pub sock_ino: u64,
    pub flags: u32,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub capacity: u64,
    pub dropped: u64,
    pub filtered: u64,
}

/// What one recipient gets of a message.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// The first `n` bytes (all of them unless a filter truncated).
    Deliver(usize),
    /// Nothing: DROP_WHEN_FULL and no room.
    Dropped,
    /// Nothing: its filter refused the message.
    Filtered,
}

/// One socket's membership in one group, as seen by its receivers.
pub struct Membership {
    pub group: Arc<Group>,
    pub slot: usize,
    pub queue_id: u64,
    pub queue: Arc<Queue>,
    pub flags: u32,
    /// The member's own wake FIFO, once its filter made it use one.
    own_wake: OnceLock<Option<OwnedFd>>,
}

impl Membership {
    /// Takes (or with `!consume`, peeks) the next committed message.
    pub fn take(
        &self,
        out: &mut [std::io::IoSliceMut<'_>],
        consume: bool,
    ) -> Result<Option<crate::queue::Received>, Errno> {
        let committed = self.group.seg().commit.committed_seq.load(Acquire);
        let r = self.queue.take(committed, out, consume)?;
        if let Some((_, freed)) = &r {
            // Wake futex-blocked senders once this queue fits what they wait
            // to send, not for every message read: a sender woken for a
            // sliver of room would only block again, and each wake-up costs
            // a system call. Pollers are rung whenever room appears.
            if *freed > 0 {
                // SYNC POINT: room-wait (pairs with the announce in `send`).
                fence(SeqCst);
                let room = &self.group.seg().room;
                let mine = self.group.slot(self.slot).room_waiters.load(SeqCst) > 0;
                if mine {
                    let tail = self.queue.header().tail.tail.load(Acquire);
                    let used = self.queue.used(tail).unwrap_or(0);
                    let wanted = room.wanted.load(SeqCst);
                    let cap = self.queue.capacity().min(self.queue.storage());
                    if used == 0 || used + wanted <= cap {
                        room.room_seq.fetch_add(1, SeqCst);
                        sys::futex_wake_all(&room.room_seq);
                    }
                }
                if room.blocked_senders.load(SeqCst) > 0 {
                    self.group.ring_room_waiters();
                }
            }
        }
        Ok(r.map(|(got, _)| got))
    }

    /// Whether a committed message is waiting.
    pub fn pending(&self) -> Result<bool, Errno> {
        let committed = self.group.seg().commit.committed_seq.load(SeqCst);
        self.queue.pending(committed)
    }

    /// Asks senders to write the group's wake FIFO on the next commit. The
    /// caller must watch the FIFO (see `waker`), then re-check `pending`
    /// before sleeping.
    pub fn prepare_sleep(&self) {
        // `sleeping` is (epoch << 1) | asleep: each declaration is new, so a
        // sender's late clear of an older one cannot cancel it.
        let w = self.sleeping_flag().load(Relaxed);
        self.sleeping_flag().store((w | 1).wrapping_add(2), SeqCst);
        // Orders the declaration before the caller's re-check (model-checked
        // in tests/loom_protocols.rs).
        fence(SeqCst);
    }

    pub fn cancel_sleep(&self) {
        let f = self.sleeping_flag();
        let w = f.load(Relaxed);
        if w & 1 != 0 {
            let _ = f.compare_exchange(w, w & !1, Relaxed, Relaxed);
        }
    }

    /// This member's own wake FIFO (see `Group::member_wake_fd`), opened
    /// once.
    pub fn own_wake_fd(&self) -> Option<RawFd> {
        self.own_wake
            .get_or_init(|| waker::open_fifo_at(&waker::member_fifo_path(self.group.group_id, self.queue_id)).ok())
            .as_ref()
            .map(|f| f.as_raw_fd())
    }

    fn sleeping_flag(&self) -> &AtomicU32 {
        &self.group.slot(self.slot).sleeping
    }

    /// Whether this membership is still active (not left, not replaced).
    pub fn is_active(&self) -> bool {
        let s = self.group.slot(self.slot);
        s.state.load(Acquire) == SLOT_ACTIVE && s.queue_id.load(Relaxed) == self.queue_id
    }

    pub fn leave(&self) -> Result<(), Errno> {
        self.group.leave(self)
    }

    /// (queued messages unknown here, queued bytes, dropped, filtered, capacity)
    pub fn stats(&self) -> (u64, u64, u64, u64) {
        let s = self.group.slot(self.slot);
        let tail = self.queue.header().tail.tail.load(Acquire);
        let used = self.queue.used(tail).unwrap_or(0);
        (used, s.dropped.load(Relaxed), s.filtered.load(Relaxed), self.queue.capacity())
    }
}
