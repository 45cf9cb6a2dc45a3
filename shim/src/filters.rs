//! SO_ATTACH_FILTER and friends on sockets that receive group traffic.
//!
//! The kernel keeps getting the program (ordinary datagrams stay filtered
//! by the kernel), and the library stores a copy in the group so senders
//! run it on group messages (see shmcore::filter). A program the library's
//! interpreter cannot run while the kernel can (an eBPF program, or classic
//! loads whose value only the kernel knows) is refused with EOPNOTSUPP on
//! such sockets; one the kernel refuses gets the kernel's error.

use crate::hooks::call_real;
use crate::state::SockState;
use shmcore::bpf::{Program, SockFilter};
use shmcore::group::Group;
use shmcore::{sys, Errno};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// A server socket's client membership: (group, client socket inode).
type PeerTarget = (Arc<Group>, u64);

/// The groups in which this socket's filter applies: its own memberships
/// (for a server's accepted socket: its SEND_TO_PEER copy), and as a peer
/// filter the membership it gave its client.
fn targets(st: &SockState) -> (Vec<Arc<Group>>, Option<PeerTarget>) {
    let own = st
        .endpoint()
        .map(|ep| ep.memberships().into_iter().filter(|m| m.is_active()).map(|m| m.group.clone()).collect())
        .unwrap_or_default();
    let peer = st.accepted.lock().clone().and_then(|g| {
        let client = shmcore::diag::lookup(st.ino).ok().flatten()?.peer? as u64;
        Some((g, client))
    });
    (own, peer)
}

/// Installs (or with None removes) `insns` wherever this socket's filter
/// applies in its groups.
pub fn apply(st: &SockState, insns: Option<&[SockFilter]>) -> Result<(), Errno> {
    if let Some(ep) = st.endpoint() {
        ep.set_own_filter(insns.map(|i| i.to_vec()));
    }
    let (own, peer) = targets(st);
    for g in own {
        g.set_filter(st.ino, false, insns)?;
    }
    if let Some((g, client)) = peer {
        g.set_filter(client, true, insns)?;
    }
    Ok(())
}

/// The classic program the kernel has attached to `fd`, if any.
pub fn kernel_filter(fd: i32) -> Option<Vec<SockFilter>> {
    let mut n: libc::socklen_t = 0;
    // SAFETY: SO_GET_FILTER with a zero length reports the instruction
    // count in `n` without writing the buffer.
    let r = unsafe { call_real::getsockopt(fd, libc::SOL_SOCKET, libc::SO_GET_FILTER, std::ptr::null_mut(), &mut n) };
    if r != 0 || n == 0 || n > 4096 {
        return None;
    }
    let mut prog = vec![SockFilter { code: 0, jt: 0, jf: 0, k: 0 }; n as usize];
    // SAFETY: the buffer holds `n` instructions, which is what the length
    // (counted in instructions for this option) says.
    let r = unsafe {
        call_real::getsockopt(fd, libc::SOL_SOCKET, libc::SO_GET_FILTER, prog.as_mut_ptr() as *mut libc::c_void, &mut n)
    };
    (r == 0 && n as usize == prog.len()).then_some(prog)
}

/// Whether the kernel would accept this classic program (tried on a
/// scratch socket; the real socket's filter is untouched).
fn kernel_accepts(fprog: *const libc::c_void, len: libc::socklen_t) -> Result<(), Errno> {
    let scratch = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    // SAFETY: the caller's sock_fprog, as the kernel would read it.
    let r = unsafe { call_real::setsockopt(scratch.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, fprog, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// setsockopt(SOL_SOCKET, SO_ATTACH_FILTER / SO_DETACH_FILTER /
/// SO_ATTACH_BPF) on a tracked socket.
pub fn setsockopt(
    fd: i32,
    st: &SockState,
    name: i32,
    val: *const libc::c_void,
    len: libc::socklen_t,
) -> Result<i32, Errno> {
    let (own, peer) = targets(st);
    let involved = !own.is_empty() || peer.is_some();
    let real = || {
        // SAFETY: the caller's arguments, forwarded unchanged.
        let r = unsafe { call_real::setsockopt(fd, libc::SOL_SOCKET, name, val, len) };
        if r == 0 {
            Ok(0)
        } else {
            Err(Errno::last())
        }
    };
    if !involved {
        let r = real();
        // A SEQPACKET client not yet a member: its filter applies to the
        // membership its server may give it later.
        if r.is_ok() {
            if let Some(ep) = st.endpoint() {
                ep.set_own_filter(kernel_filter(fd).filter(|p| Program::new(p).is_ok()));
            }
        }
        return r;
    }
    match name {
        libc::SO_ATTACH_BPF => Err(Errno::EOPNOTSUPP),
        libc::SO_DETACH_FILTER => {
            real()?;
            apply(st, None)?;
            Ok(0)
        }
        _ => {
            // A locked filter cannot change: the kernel says EPERM before
            // looking at the program.
            if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_LOCK_FILTER).unwrap_or(0) != 0 {
                return Err(Errno::EPERM);
            }
            // SO_ATTACH_FILTER: struct sock_fprog { unsigned short len; struct sock_filter *filter; }
            if val.is_null() || (len as usize) < std::mem::size_of::<libc::sock_fprog>() {
                return real();
            }
            // SAFETY: `len` covers a sock_fprog at `val` (checked above).
            let fprog: libc::sock_fprog = unsafe { std::ptr::read_unaligned(val as *const libc::sock_fprog) };
            let n = fprog.len as usize;
            if n == 0 || n > 4096 || fprog.filter.is_null() {
                return real();
            }
            // SAFETY: the program the caller describes: `n` instructions.
            let insns: Vec<SockFilter> =
                unsafe { std::slice::from_raw_parts(fprog.filter as *const SockFilter, n) }.to_vec();
            if Program::new(&insns).is_err() {
                // The kernel's verdict decides between "invalid" and
                // "valid but not runnable here".
                kernel_accepts(val, len)?;
                return Err(Errno::EOPNOTSUPP);
            }
            real()?;
            apply(st, Some(&insns))?;
            Ok(0)
        }
    }
}
