//! Keeping the descriptor table true as descriptors are duplicated and
//! closed, and ending memberships when a socket is finally gone.

use crate::fdtable;
use crate::log::debug;
use crate::state::SockState;
use shmcore::diag;
use std::sync::Arc;

/// After `fd` was closed (or replaced by dup2/dup3): if no descriptor of
/// this socket is left in this process and the kernel says the socket no
/// longer exists anywhere, the group socket's group is closed and the
/// member's memberships end.
pub fn forget_fd(fd: i32) {
    if let Some((st, shared)) = fdtable::remove(fd) {
        if !shared {
            crate::epoll::forget_socket(&st);
            finish_if_gone(&st);
        }
    }
}

pub fn finish_if_gone(st: &Arc<SockState>) {
    if diag::socket_exists(st.ino) {
        // Another process (a fork child, a receiver of SCM_RIGHTS) still
        // holds the socket: the membership belongs to it.
        return;
    }
    if let Some(g) = st.created.lock().take() {
        debug!("group socket (inode {}) closed: group {:?} is closed", st.ino, g.addr());
        g.mark_closed();
    }
    end_accepted(st);
    end_memberships(st);
}

/// A server's accepted SEQPACKET socket that is closed or shut down ends
/// its client's membership.
pub fn end_accepted(st: &SockState) {
    if let Some(g) = st.accepted.lock().take() {
        debug!("accepted socket (inode {}) gone: its client leaves {:?}", st.ino, g.addr());
        let _ = g.end_accepted(st.ino);
    }
}

/// Ends every active membership of the socket (close, SHUT_RD).
pub fn end_memberships(st: &SockState) {
    if let Some(ep) = st.endpoint() {
        // A membership given meanwhile by a server counts too, and none is
        // taken after this.
        ep.refresh();
        ep.clear_candidates();
        for m in ep.memberships() {
            if m.is_active() {
                debug!("socket inode {}: membership in {:?} ends", st.ino, m.group.addr());
                let _ = m.leave();
            }
        }
    }
}

/// `newfd` is now a duplicate of `oldfd`.
pub fn duplicated(oldfd: i32, newfd: i32) {
    if let Some(st) = fdtable::get(oldfd) {
        fdtable::insert(newfd, st);
    }
}

/// Recognises a descriptor this process did not create through the library
/// (inherited across exec, received with SCM_RIGHTS): if its socket is a
/// group socket G or a member of some group, track it as such. `groups` is
/// the list of visible groups (scanned once by the caller).
pub fn adopt(fd: i32, groups: &[(String, Arc<shmcore::group::Group>)]) {
    if fdtable::is_tracked(fd) {
        return;
    }
    let Ok(stat) = shmcore::sys::fstat(fd) else {
        return;
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return;
    }
    let ino = stat.st_ino;
    let created = groups.iter().find(|(_, g)| g.group_ino() == ino && !g.is_closed()).map(|(_, g)| g.clone());
    let memberships: Vec<_> = groups
        .iter()
        .flat_map(|(_, g)| g.slots_to_adopt(ino).into_iter().filter_map(move |i| g.adopt(i).ok()))
        .collect();
    if created.is_none() && memberships.is_empty() {
        return;
    }
    let Ok(st) = SockState::probe(fd) else { return };
    fdtable::insert(fd, st.clone());
    if let Some(g) = created {
        debug!("fd {fd}: recognised as the socket of group {:?}", g.addr());
        *st.created.lock() = Some(g);
    }
    if memberships.is_empty() {
        return;
    }
    let Ok(ep) = st.endpoint_or_init() else {
        return;
    };
    let known: Vec<u64> = ep.memberships().iter().map(|m| m.queue_id).collect();
    for m in memberships {
        if known.contains(&m.queue_id) {
            continue;
        }
        debug!("fd {fd}: recognised as a member of group {:?}", m.group.addr());
        ep.add(m);
    }
}

/// Adopts every socket descriptor inherited at start-up (exec with the
/// library preloaded). Costs a directory scan only when this process has
/// socket descriptors and groups exist.
pub fn adopt_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| shmcore::sys::fstat(fd).is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFSOCK))
        .collect();
    if fds.is_empty() {
        return;
    }
    let groups = shmcore::gc::groups();
    if groups.is_empty() {
        return;
    }
    for fd in fds {
        adopt(fd, &groups);
    }
}

/// Adopts descriptors received in SCM_RIGHTS control messages.
///
/// # Safety
/// `msg` must be a msghdr just filled by a successful recvmsg.
pub unsafe fn adopt_received(msg: *const libc::msghdr) {
    // SAFETY: caller's contract.
    let m = unsafe { &*msg };
    if m.msg_control.is_null() || m.msg_controllen == 0 {
        return;
    }
    let mut fds = Vec::new();
    // SAFETY: walking a kernel-filled control buffer with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<i32>();
                let p = libc::CMSG_DATA(c) as *const i32;
                for k in 0..n {
                    fds.push(std::ptr::read_unaligned(p.add(k)));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    // Only unix sockets can be group sockets or members: other received
    // descriptors (files, pipes, memfds) cost one fstat and nothing more.
    fds.retain(|&fd| {
        shmcore::sys::fstat(fd).is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFSOCK)
            && shmcore::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == Ok(libc::AF_UNIX)
    });
    if fds.is_empty() {
        return;
    }
    let groups = shmcore::gc::groups();
    for fd in fds {
        adopt(fd, &groups);
    }
}
