//! What the shim knows about one socket that takes part in a group.

use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use shmcore::addr::UnixAddr;
use shmcore::endpoint::Endpoint;
use shmcore::group::{Group, Sender};
use shmcore::{sys, Errno};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

pub struct SockState {
    /// The socket's inode: its identity across dup, fork and exec.
    pub ino: u64,
    /// Set when this socket is a group socket G.
    pub created: Mutex<Option<Arc<Group>>>,
    /// The receiving side, once the socket has joined a group.
    pub endpoint: OnceCell<Arc<Endpoint>>,
    /// The group this socket is connected to (connect(group address)).
    pub connected: Mutex<Option<Arc<Group>>>,
    /// The last group this socket sent to with an explicit address.
    pub sendto_cache: Mutex<Option<(UnixAddr, Arc<Group>)>>,
    /// The socket's bound address as receivers see it (bytes after sun_family).
    pub bound: Mutex<Vec<u8>>,
    /// SO_SNDBUF, for the kernel's datagram size limit (refreshed by setsockopt).
    pub sndbuf: AtomicI32,
    /// A server's accepted SOCK_SEQPACKET socket that made its client a
    /// member (ACCEPT_GROUP): the group.
    pub accepted: Mutex<Option<Arc<Group>>>,
}

impl SockState {
    /// Builds the state of an AF_UNIX socket from what the kernel says.
    pub fn probe(fd: i32) -> Result<Arc<SockState>, Errno> {
        let st = sys::fstat(fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::ENOTSOCK);
        }
        if let Some(existing) = crate::fdtable::find_by_ino(st.st_ino) {
            return Ok(existing);
        }
        let s = SockState {
            ino: st.st_ino,

            created: Mutex::new(None),
            endpoint: OnceCell::new(),
            connected: Mutex::new(None),
            sendto_cache: Mutex::new(None),
            bound: Mutex::new(Vec::new()),
            sndbuf: AtomicI32::new(0),
            accepted: Mutex::new(None),
        };
        s.refresh(fd);
        Ok(Arc::new(s))
    }

    /// Re-reads what bind() and setsockopt() may change.
    pub fn refresh(&self, fd: i32) {
        *self.bound.lock() = sys::getsockname(fd)
            .ok()
            .and_then(|(sa, len)| UnixAddr::from_sockaddr(&sa, len).ok())
            .map(|a| if a == UnixAddr::Unnamed { Vec::new() } else { a.wire_bytes() })
            .unwrap_or_default();
        let sb = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(212992);
        self.sndbuf.store(sb, Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.endpoint.get()
    }

    /// The SOCK_SEQPACKET group this socket is a member of (its own
    /// membership, not a SEND_TO_PEER copy), if any: everything it sends
    /// goes to that group.
    pub fn seqpacket_group(&self) -> Option<Arc<Group>> {
        let ep = self.endpoint()?;
        ep.refresh();
        ep.memberships()
            .into_iter()
            .find(|m| {
                m.group.sock_type() == libc::SOCK_SEQPACKET
                    && m.is_active()
                    && m.group.slot_flags(m.slot) & shmcore::layout::SLOT_PEER_COPY == 0
            })
            .map(|m| m.group.clone())
    }

    pub fn endpoint_or_init(&self) -> Result<&Arc<Endpoint>, Errno> {
        self.endpoint.get_or_try_init(|| Endpoint::new(self.ino).map(Arc::new))
    }

    /// The sender identity for a group send from this socket.
    pub fn sender(&self) -> Sender {
        let (pid, uid, gid) = creds();
        Sender { ino: self.ino, addr: self.bound.lock().clone(), pid, uid, gid }
    }
}

static PID: AtomicI32 = AtomicI32::new(0);
/// uid << 32 | gid, or u64::MAX when not yet read.
static IDS: AtomicU64 = AtomicU64::new(u64::MAX);

/// This process's credentials, as SCM_CREDENTIALS reports them. Cached: the
/// pid is forgotten in fork children, the ids whenever the process changes
/// them (the set*id hooks), so no system call is made per send.
pub fn creds() -> (i32, u32, u32) {
    let mut pid = PID.load(Ordering::Relaxed);
    if pid == 0 {
        pid = sys::getpid();
        PID.store(pid, Ordering::Relaxed);
    }
    let mut ids = IDS.load(Ordering::Relaxed);
    if ids == u64::MAX {
        ids = (sys::getuid() as u64) << 32 | sys::getgid() as u64;
        IDS.store(ids, Ordering::Relaxed);
    }
    (pid, (ids >> 32) as u32, ids as u32)
}

pub fn forget_pid() {
    PID.store(0, Ordering::Relaxed);
}

/// After setuid/setgid and friends.
pub fn forget_ids() {
    IDS.store(u64::MAX, Ordering::Relaxed);
}
