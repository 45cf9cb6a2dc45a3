//! Questions about unix sockets answered by the kernel through sock_diag
//! (NETLINK_SOCK_DIAG, AF_UNIX), without privileges:
//! does the socket with this inode still exist, what is it bound to, who is
//! its peer. Used where the library must be sure of a socket's identity
//! (is the socket bound at a group's address really that group's socket?)
//! and when deciding whether a socket is finally gone.

use crate::addr::UnixAddr;
use crate::{sys, Errno};
use std::mem::size_of;
use std::os::fd::AsRawFd;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_MEMINFO: u32 = 0x20;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_MEMINFO: u16 = 5;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// Index of the receive buffer size in the SK_MEMINFO_* array.
const SK_MEMINFO_RCVBUF: usize = 1;

#[repr(C)]
struct Request {
    // struct nlmsghdr
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    // struct unix_diag_req
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

/// What the kernel says about one unix socket.
#[derive(Debug, Clone, Default)]
pub struct SocketInfo {
    pub ino: u32,
    pub sock_type: u8,
    pub state: u8,
    /// The bound address (None: unbound).
    pub name: Option<UnixAddr>,
    /// For a path-bound socket: the socket file's (inode, device).
    pub vfs: Option<(u32, u32)>,
    /// The inode of the connected peer, if any.
    pub peer: Option<u32>,
    /// The kernel's shutdown bits (1: no more receiving, 2: no more sending).
    pub shutdown: u8,
    /// SO_RCVBUF of the socket.
    pub rcvbuf: Option<u32>,
}

/// Looks up the unix socket with inode `ino`. `Ok(None)` means no such
/// socket exists any more.
pub fn lookup(ino: u64) -> Result<Option<SocketInfo>, Errno> {
    let ino32 = u32::try_from(ino).map_err(|_| Errno::EINVAL)?;
    let nl = sys::socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG)?;
    let req = Request {
        len: size_of::<Request>() as u32,
        ty: SOCK_DIAG_BY_FAMILY,
        flags: NLM_F_REQUEST,
        seq: 1,
        pid: 0,
        family: libc::AF_UNIX as u8,
        protocol: 0,
        pad: 0,
        states: u32::MAX,
        ino: ino32,
        show: UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_MEMINFO,
        cookie: [u32::MAX; 2],
    };
    // SAFETY: Request is repr(C) plain data; viewing it as bytes is sound.
    let bytes = unsafe { std::slice::from_raw_parts(&req as *const Request as *const u8, size_of::<Request>()) };
    sys::sendto(nl.as_raw_fd(), bytes, 0, None)?;
    let mut buf = [0u8; 8192];
    let n = sys::recv(nl.as_raw_fd(), &mut buf, 0)?;
    parse_reply(&buf[..n], ino32)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn parse_reply(b: &[u8], ino: u32) -> Result<Option<SocketInfo>, Errno> {
    let bad = Errno::EPROTO;
    let len = u32_at(b, 0).ok_or(bad)? as usize;
    let ty = u16_at(b, 4).ok_or(bad)?;
    if len > b.len() || len < 16 {
        return Err(bad);
    }
    if ty == NLMSG_ERROR {
        let err = u32_at(b, 16).ok_or(bad)? as i32;
        return match -err {
            0 => Err(bad),
            libc::ENOENT => Ok(None),
            e => Err(Errno(e)),
        };
    }
    if ty != SOCK_DIAG_BY_FAMILY || len < 16 + 16 {
        return Err(bad);
    }
    let msg = &b[16..len];
    let mut info =
        SocketInfo { sock_type: msg[1], state: msg[2], ino: u32_at(msg, 4).ok_or(bad)?, ..Default::default() };
    if info.ino != ino {
        return Err(bad);
    }
    let mut off = 16;
    while off + 4 <= msg.len() {
        let alen = u16_at(msg, off).ok_or(bad)? as usize;
        let aty = u16_at(msg, off + 2).ok_or(bad)? & 0x3fff;
        if alen < 4 || off + alen > msg.len() {
            break;
        }
        let payload = &msg[off + 4..off + alen];
        match aty {
            UNIX_DIAG_NAME if !payload.is_empty() => {
                info.name = Some(if payload[0] == 0 {
                    UnixAddr::Abstract(payload[1..].to_vec())
                } else {
                    let end = payload.iter().position(|&c| c == 0).unwrap_or(payload.len());
                    UnixAddr::Path(payload[..end].to_vec())
                });
            }
            UNIX_DIAG_VFS => {
                info.vfs = Some((u32_at(payload, 0).ok_or(bad)?, u32_at(payload, 4).ok_or(bad)?));
            }
            UNIX_DIAG_PEER => info.peer = u32_at(payload, 0).filter(|&p| p != 0),
            UNIX_DIAG_SHUTDOWN => info.shutdown = *payload.first().unwrap_or(&0),
            UNIX_DIAG_MEMINFO => info.rcvbuf = u32_at(payload, 4 * SK_MEMINFO_RCVBUF),
            _ => {}
        }
        off += (alen + 3) & !3;
    }
    Ok(Some(info))
}

/// A file's identity as sock_diag reports it in UNIX_DIAG_VFS: the inode,
/// and the device in the kernel's internal encoding (major << 20 | minor),
/// which differs from `st_dev`'s.
pub fn vfs_key(st: &libc::stat) -> (u32, u32) {
    let (maj, min) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    (st.st_ino as u32, (maj << 20) | (min & 0xfffff))
}

/// Whether the unix socket with this inode still exists. Errors other than
/// "no such socket" count as "exists": it is never safe to tear down a group
/// or membership on a guess.
pub fn socket_exists(ino: u64) -> bool {
    !matches!(lookup(ino), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bound_abstract_socket_and_its_absence() {
        let s = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0).unwrap();
        let name = format!("umcast-diag-test-{}", std::process::id());
        let a = UnixAddr::Abstract(name.as_bytes().to_vec());
        let (sa, len) = a.to_sockaddr();
        sys::bind(s.as_raw_fd(), &sa, len).unwrap();
        let ino = sys::fstat(s.as_raw_fd()).unwrap().st_ino;
        let info = lookup(ino).unwrap().expect("socket exists");
        assert_eq!(info.name, Some(a));
        assert_eq!(info.sock_type as i32, libc::SOCK_DGRAM);
        drop(s);
        assert!(lookup(ino).unwrap().is_none());
        assert!(!socket_exists(ino));
    }

    #[test]
    fn reports_peer_and_shutdown() {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid out-array of two ints.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) }, 0);
        let a = sys::fstat(fds[0]).unwrap().st_ino;
        let b = sys::fstat(fds[1]).unwrap().st_ino;
        sys::shutdown(fds[0], libc::SHUT_RD).unwrap();
        let info = lookup(a).unwrap().unwrap();
        assert_eq!(info.peer, Some(b as u32));
        assert_eq!(info.shutdown & 1, 1);
        sys::close(fds[0]).unwrap();
        sys::close(fds[1]).unwrap();
    }

    #[test]
    fn garbage_replies_are_errors_not_panics() {
        assert!(parse_reply(&[], 1).is_err());
        assert!(parse_reply(&[0xff; 64], 1).is_err());
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn vfs_identity_matches_stat_of_the_socket_file() {
        let dir = std::env::temp_dir().join(format!("umcast-diag-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s");
        let s = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0).unwrap();
        let a = UnixAddr::Path(path.as_os_str().as_encoded_bytes().to_vec());
        let (sa, len) = a.to_sockaddr();
        sys::bind(s.as_raw_fd(), &sa, len).unwrap();
        let st = sys::stat_path(path.as_os_str().as_encoded_bytes()).unwrap();
        let info = lookup(sys::fstat(s.as_raw_fd()).unwrap().st_ino).unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(info.vfs, Some(vfs_key(&st)), "stat dev {:#x}", st.st_dev);
    }
}
