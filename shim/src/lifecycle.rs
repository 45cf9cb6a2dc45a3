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
        debug!(
            "group socket (inode {}) closed: group {:?} is closed",
            st.ino,
            g.addr()
        );
        g.mark_closed();
    }
    end_memberships(st);
}

/// Ends every active membership of the socket (close, SHUT_RD).
pub fn end_memberships(st: &SockState) {
    if let Some(ep) = st.endpoint() {
        for m in ep.memberships() {
            if m.is_active() {
                debug!(
                    "socket inode {}: membership in {:?} ends",
                    st.ino,
                    m.group.addr()
                );
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
