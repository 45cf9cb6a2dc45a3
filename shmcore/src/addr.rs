//! Unix socket addresses as the multicast API sees them.
//!
//! A group is named by a path or by an abstract name. The same group can be
//! written three ways (inside `struct unix_mreq`, as a `sendto` address with
//! an explicit length, or as returned by `getpeername`); [`UnixAddr`]
//! normalises all of them so they compare equal.

use crate::Errno;
use libc::{sa_family_t, sockaddr_un, socklen_t};
use std::mem::{offset_of, size_of};

pub const SUN_PATH_MAX: usize = 108;
const PATH_OFF: usize = offset_of!(sockaddr_un, sun_path);

/// A normalised AF_UNIX address.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum UnixAddr {
    /// A filesystem path (no NUL bytes, non-empty).
    Path(Vec<u8>),
    /// An abstract name: the bytes after the leading NUL (may be empty).
    Abstract(Vec<u8>),
    /// No address (an unbound socket).
    Unnamed,
}

fn sun_path_bytes(sa: &sockaddr_un) -> [u8; SUN_PATH_MAX] {
    let mut out = [0u8; SUN_PATH_MAX];
    for (o, c) in out.iter_mut().zip(sa.sun_path.iter()) {
        *o = *c as u8;
    }
    out
}

impl UnixAddr {
    /// Parses the address inside a `struct unix_mreq`, whose length is
    /// implied: a path ends at its first NUL; an abstract name runs to the
    /// last non-NUL byte of `sun_path`.
    pub fn from_mreq(sa: &sockaddr_un) -> Result<UnixAddr, Errno> {
        if sa.sun_family as i32 != libc::AF_UNIX {
            return Err(Errno::EINVAL);
        }
        let p = sun_path_bytes(sa);
        if p[0] != 0 {
            let n = p.iter().position(|&c| c == 0).unwrap_or(SUN_PATH_MAX);
            Ok(UnixAddr::Path(p[..n].to_vec()))
        } else {
            let end = p.iter().rposition(|&c| c != 0).map_or(1, |i| i + 1);
            if end <= 1 {
                // An all-zero address names nothing.
                return Err(Errno::EINVAL);
            }
            Ok(UnixAddr::Abstract(p[1..end].to_vec()))
        }
    }

    /// Parses an address with an explicit length, as `sendto`, `connect`
    /// and `getsockname` carry it. Mirrors the kernel's `unix_mkname`.
    pub fn from_sockaddr(sa: &sockaddr_un, len: socklen_t) -> Result<UnixAddr, Errno> {
        let len = len as usize;
        if len < size_of::<sa_family_t>() || len > size_of::<sockaddr_un>() {
            return Err(Errno::EINVAL);
        }
        if sa.sun_family as i32 != libc::AF_UNIX {
            return Err(Errno::EINVAL);
        }
        let n = len - PATH_OFF;
        if n == 0 {
            return Ok(UnixAddr::Unnamed);
        }
        let p = sun_path_bytes(sa);
        if p[0] != 0 {
            let end = p[..n].iter().position(|&c| c == 0).unwrap_or(n);
            Ok(UnixAddr::Path(p[..end].to_vec()))
        } else {
            Ok(UnixAddr::Abstract(p[1..n].to_vec()))
        }
    }

    /// The `sockaddr_un` and length that name this address to the kernel.
    pub fn to_sockaddr(&self) -> (sockaddr_un, socklen_t) {
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut sa: sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as sa_family_t;
        let (bytes, start) = match self {
            UnixAddr::Path(p) => (p.as_slice(), 0usize),
            UnixAddr::Abstract(n) => (n.as_slice(), 1usize),
            UnixAddr::Unnamed => (&[][..], 0),
        };
        let n = bytes.len().min(SUN_PATH_MAX - start);
        for (i, b) in bytes[..n].iter().enumerate() {
            sa.sun_path[start + i] = *b as libc::c_char;
        }
        let len = match self {
            UnixAddr::Unnamed => size_of::<sa_family_t>(),
            // The terminating NUL is counted when it fits, as SUN_LEN does.
            UnixAddr::Path(_) => PATH_OFF + (n + 1).min(SUN_PATH_MAX),
            UnixAddr::Abstract(_) => PATH_OFF + 1 + n,
        };
        (sa, len as socklen_t)
    }

    /// The bytes after `sun_family` as the kernel reports them for a bound
    /// socket (`getsockname`, `msg_name`): what a receiver sees as source.
    pub fn wire_bytes(&self) -> Vec<u8> {
        let (sa, len) = self.to_sockaddr();
        let p = sun_path_bytes(&sa);
        p[..(len as usize - PATH_OFF)].to_vec()
    }

    pub fn is_abstract(&self) -> bool {
        matches!(self, UnixAddr::Abstract(_))
    }
}

impl std::fmt::Display for UnixAddr {
    /// Paths as they are; abstract names as `@name` (non-printable bytes
    /// escaped), as `ss -x` shows them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnixAddr::Path(p) => write!(f, "{}", String::from_utf8_lossy(p)),
            UnixAddr::Abstract(n) => write!(f, "@{}", n.escape_ascii()),
            UnixAddr::Unnamed => write!(f, "(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(path: &[u8]) -> sockaddr_un {
        // SAFETY: plain old data.
        let mut sa: sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as sa_family_t;
        for (i, b) in path.iter().enumerate() {
            sa.sun_path[i] = *b as libc::c_char;
        }
        sa
    }

    #[test]
    fn mreq_and_sockaddr_forms_agree() {
        let sa = mk(b"\0grp");
        let a = UnixAddr::from_mreq(&sa).unwrap();
        assert_eq!(a, UnixAddr::Abstract(b"grp".to_vec()));
        let (sa2, len) = a.to_sockaddr();
        assert_eq!(len as usize, PATH_OFF + 4);
        assert_eq!(UnixAddr::from_sockaddr(&sa2, len).unwrap(), a);
        let p = UnixAddr::from_mreq(&mk(b"/tmp/x")).unwrap();
        assert_eq!(p, UnixAddr::Path(b"/tmp/x".to_vec()));
        let (sa3, len3) = p.to_sockaddr();
        assert_eq!(len3 as usize, PATH_OFF + 7);
        assert_eq!(UnixAddr::from_sockaddr(&sa3, len3).unwrap(), p);
        // A path given without its NUL still names the same file.
        assert_eq!(UnixAddr::from_sockaddr(&sa3, len3 - 1).unwrap(), p);
    }

    #[test]
    fn bad_forms_are_refused() {
        let mut sa = mk(b"x");
        sa.sun_family = libc::AF_INET as sa_family_t;
        assert_eq!(UnixAddr::from_mreq(&sa), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::from_mreq(&mk(b"")), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::from_sockaddr(&mk(b"x"), 1), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::from_sockaddr(&mk(b"x"), 2), Ok(UnixAddr::Unnamed));
    }

    #[test]
    fn full_length_names_fit() {
        let long = vec![b'a'; SUN_PATH_MAX];
        let a = UnixAddr::from_mreq(&mk(&long)).unwrap();
        let (_, len) = a.to_sockaddr();
        assert_eq!(len as usize, size_of::<sockaddr_un>());
        let mut ab = vec![0u8];
        ab.extend(vec![b'b'; SUN_PATH_MAX - 1]);
        let b = UnixAddr::from_mreq(&mk(&ab)).unwrap();
        let (_, lenb) = b.to_sockaddr();
        assert_eq!(lenb as usize, size_of::<sockaddr_un>());
    }
}
