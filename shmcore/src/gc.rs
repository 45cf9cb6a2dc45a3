//! Garbage collection of shared-memory files whose groups are gone.
//!
//! Processes that exit or are killed do not run any close hook, so their
//! groups and queues are found and removed later: by senders (dead members
//! are evicted within a second, see `Group::send`), when a group is created,
//! and by `umcast gc`. A file is removed only when the kernel confirms the
//! sockets behind it are gone, and queue and temporary files only once they
//! are old enough that no JOIN or CREATE can still be filling them in.

use crate::group::Group;
use crate::{sys, Errno};
use std::collections::HashSet;
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const SHM_DIR: &str = "/dev/shm";
const GRACE: Duration = Duration::from_secs(10);

/// What a collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub groups_removed: usize,
    pub queues_removed: usize,
    pub temporaries_removed: usize,
}

fn old_enough(meta: &std::fs::Metadata, grace: Duration) -> bool {
    meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).is_some_and(|age| age >= grace)
}

fn unlink(name: &str) -> bool {
    CString::new(format!("{SHM_DIR}/{name}")).ok().is_some_and(|p| sys::unlink(&p).is_ok())
}

/// Every group segment currently named in /dev/shm that this user can open.
pub fn groups() -> Vec<(String, Arc<Group>)> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("umcast.g."))
        .filter_map(|n| Group::open_segment(&format!("{SHM_DIR}/{n}")).ok().map(|g| (n, g)))
        .collect()
}

/// Removes what belongs to groups whose sockets are all gone.
pub fn collect() -> Result<Collected, Errno> {
    collect_with(GRACE)
}

/// `collect`, removing queue, FIFO, filter and temporary files of dead
/// groups once they are `grace` old. A grace of zero is only safe when no
/// process can be in the middle of CREATE_GROUP or JOIN (`umcast gc --now`
/// at the end of a test run).
pub fn collect_with(grace: Duration) -> Result<Collected, Errno> {
    let old = |m: &std::fs::Metadata| old_enough(m, grace);
    let mut out = Collected::default();
    let mut live_queues: HashSet<(u64, u64)> = HashSet::new();
    let mut live_groups: HashSet<u64> = HashSet::new();
    for (name, g) in groups() {
        // Groups whose socket G lives are swept by their own senders.
        if !g.is_closed() && crate::diag::socket_exists(g.group_ino()) {
            live_groups.insert(g.group_id());
            live_queues.extend(g.active_queue_ids().into_iter().map(|q| (g.group_id(), q)));
            continue;
        }
        let _ = g.sweep();
        // G is gone: the name goes once no member socket lives (a damaged
        // segment's counts cannot be trusted, the kernel can).
        let dgram = g.sock_type() != libc::SOCK_SEQPACKET;
        if g.is_closed() && (dgram || g.member_count() == 0 || !g.any_member_alive()) {
            if unlink(&name) {
                out.groups_removed += 1;
            }
            // Its FIFO goes with it (members hold it open if they need it).
            if let Some(n) = crate::waker::fifo_path(g.group_id()).to_str().ok().and_then(|p| p.rsplit('/').next()) {
                unlink(n);
            }
            continue;
        }
        live_groups.insert(g.group_id());
        for qid in g.active_queue_ids() {
            live_queues.insert((g.group_id(), qid));
        }
    }
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Ok(out);
    };
    for e in dir.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        if name.starts_with("umcast.g.") {
            // A segment this build cannot map (another layout version, or
            // garbage): removable once the socket its header names is gone.
            let path = format!("{SHM_DIR}/{name}");
            if Group::open_segment(&path).is_err() && foreign_segment_is_dead(&path) && unlink(&name) {
                out.groups_removed += 1;
            }
        } else if let Some(rest) = name.strip_prefix("umcast.q.") {
            let mut it = rest.split('.').map(|h| u64::from_str_radix(h, 16));
            if let (Some(Ok(gid)), Some(Ok(qid))) = (it.next(), it.next()) {
                if !live_queues.contains(&(gid, qid)) && old(&meta) && unlink(&name) {
                    out.queues_removed += 1;
                }
            }
        } else if let Some(rest) = name.strip_prefix("umcast.f.") {
            // Filter programs belong to their group.
            let gid = rest.split('.').next().and_then(|h| u64::from_str_radix(h, 16).ok());
            if gid.is_some_and(|g| !live_groups.contains(&g)) && old(&meta) && unlink(&name) {
                out.queues_removed += 1;
            }
        } else if let Some(rest) = name.strip_prefix("umcast.w.") {
            // A group's wake FIFO lives as long as the group.
            // umcast.w.<group> and a filtered member's umcast.w.<group>.<queue>
            let gid = rest.split('.').next().and_then(|h| u64::from_str_radix(h, 16).ok());
            let live = gid.is_some_and(|gid| live_groups.contains(&gid));
            if !live && old(&meta) && unlink(&name) {
                out.queues_removed += 1;
            }
        } else if name.starts_with("umcast.t.") && old(&meta) && unlink(&name) {
            out.temporaries_removed += 1;
        }
    }
    Ok(out)
}

/// Every layout version starts with magic (8 bytes), version, size, type,
/// member count (4 each) and the group socket's inode (8 bytes at 24).
fn foreign_segment_is_dead(path: &str) -> bool {
    use std::io::Read;
    let mut head = [0u8; 32];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.read_exact(&mut head).is_err() {
        // Too short to be a segment: only a crashed creator leaves that.
        return f.metadata().ok().is_some_and(|m| old_enough(&m, GRACE));
    }
    // The magic may be damaged too: the file's name says it is a group
    // segment; what decides is whether the socket it names is gone.
    let ino = u64::from_ne_bytes(head[24..32].try_into().expect("8 bytes"));
    !crate::diag::socket_exists(ino)
}
