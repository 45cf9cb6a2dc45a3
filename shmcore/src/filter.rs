//! Socket filters on group traffic: where programs live and how senders
//! run them.
//!
//! A member's classic BPF program (and, for a SOCK_SEQPACKET member, its
//! peer's) is stored in a file `/dev/shm/umcast.f.<group_id>.<filter_id>`
//! whose id is written in the member's slot; senders load it once per id
//! and run it on each message before delivery, so a message the program
//! refuses costs the member nothing: no queue room, no wake-up.
//!
//! File format: `u32` instruction count, `u32` zero, then the instructions
//! as `struct sock_filter` (8 bytes each). Everything read is validated
//! again with `Program::new`; a file that fails is treated as corruption.

use crate::bpf::{Program, SockFilter};
use crate::{sys, Errno};
use std::ffi::CString;
use std::os::fd::AsRawFd;

pub fn filter_path(group_id: u64, filter_id: u64) -> CString {
    CString::new(format!("/dev/shm/umcast.f.{group_id:016x}.{filter_id:016x}")).expect("no NUL")
}

/// Stores a program for a group; returns its id.
pub fn store(group_id: u64, insns: &[SockFilter], mode: libc::mode_t) -> Result<u64, Errno> {
    // Random ids have the top bit clear; see `candidate_id`.
    let id = (sys::random_u64() | 1) & !CANDIDATE;
    store_as(group_id, id, insns, mode)
}

const CANDIDATE: u64 = 1 << 63;

/// The id under which a SEQPACKET client that is not yet a member leaves
/// its own filter for the server to install at ACCEPT_GROUP (before the
/// client itself notices its membership).
pub fn candidate_id(sock_ino: u64) -> u64 {
    CANDIDATE | sock_ino
}

/// Stores a program under a given id, replacing any program there.
pub fn store_as(group_id: u64, id: u64, insns: &[SockFilter], mode: libc::mode_t) -> Result<u64, Errno> {
    let path = filter_path(group_id, id);
    let tmp = CString::new(format!("/dev/shm/umcast.t.{:016x}", sys::random_u64())).expect("no NUL");
    let f = sys::open(&tmp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600)?;
    let mut bytes = Vec::with_capacity(8 + insns.len() * 8);
    bytes.extend_from_slice(&(insns.len() as u32).to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    for i in insns {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    let written = (|| {
        sys::fchmod(&f, mode)?;
        let n = sys::write(f.as_raw_fd(), &bytes)?;
        if n != bytes.len() {
            return Err(Errno::EIO);
        }
        sys::rename(&tmp, &path)?;
        Ok(id)
    })();
    if written.is_err() {
        let _ = sys::unlink(&tmp);
    }
    written
}

/// Loads and validates a stored program.
pub fn load(group_id: u64, filter_id: u64) -> Result<Program, Errno> {
    let f =
        sys::open(&filter_path(group_id, filter_id), libc::O_RDONLY | libc::O_NOFOLLOW, 0).map_err(|_| Errno::EIO)?;
    let mut head = [0u8; 8];
    if sys::read(f.as_raw_fd(), &mut head)? != 8 {
        return Err(Errno::EIO);
    }
    let n = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if n == 0 || n > 4096 {
        return Err(Errno::EIO);
    }
    let mut body = vec![0u8; n * 8];
    if sys::read(f.as_raw_fd(), &mut body)? != body.len() {
        return Err(Errno::EIO);
    }
    let insns: Vec<SockFilter> = body
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Program::new(&insns).map_err(|_| Errno::EIO)
}

pub fn remove(group_id: u64, filter_id: u64) {
    if filter_id != 0 {
        let _ = sys::unlink(&filter_path(group_id, filter_id));
    }
}
