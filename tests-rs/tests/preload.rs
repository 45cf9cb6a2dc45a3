//! Programs that are not C, under LD_PRELOAD: anything that calls libc gets
//! the groups. Python's socket module, and Rust's std with libc.

use std::process::Command;
use std::time::Duration;
use umcast_tests::run_preloaded;

const PY: &str = r#"
import os, socket, struct, sys
SOL_UNIX, CREATE, JOIN = 280, 1, 2
name = b"\0umcast-py-%d" % os.getpid()
def mreq(flags=0):
    sun = struct.pack("H", socket.AF_UNIX) + name.ljust(108, b"\0")
    return sun + b"\0" * 2 + struct.pack("I", flags)  # sockaddr_un, padding, flags
g = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
g.setsockopt(SOL_UNIX, CREATE, mreq())
members = []
for _ in range(3):
    m = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    m.setsockopt(SOL_UNIX, JOIN, mreq())
    members.append(m)
pid = os.fork()
if pid == 0:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for i in range(100):
        s.sendto(b"msg %d" % i, name)
    os._exit(0)
for m in members:
    got = [m.recv(100) for _ in range(100)]
    assert got == [b"msg %d" % i for i in range(100)], got[:5]
_, status = os.waitpid(pid, 0)
assert status == 0
print("python: 3 members got 100 messages in order")
"#;

/// The layout Python packs above: sockaddr_un (110 bytes), 2 bytes of
/// padding, then the flags (struct unix_mreq is 116 bytes).
#[test]
fn python_socket_module_gets_groups() {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PY]);
    let out = run_preloaded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "python under LD_PRELOAD failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 members got 100 messages in order"));
}

/// Without the library the same option is the kernel's: level 280 is not
/// a unix socket level, so CREATE_GROUP fails. (The test above therefore
/// cannot pass without the library.)
#[test]
fn without_the_library_the_kernel_refuses_the_option() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.setsockopt(280, 1, bytes(116))",
        ])
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run python3");
    assert!(!out.status.success(), "the kernel alone accepted SOL_UNIX/CREATE_GROUP");
}

/// Rust's std (UnixDatagram) through libc: this test binary re-runs itself
/// under the library as the group's user.
#[test]
fn rust_std_unix_datagram_gets_groups() {
    if std::env::var("UMCAST_RUST_CHILD").is_ok() {
        rust_child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "rust_std_unix_datagram_gets_groups", "--nocapture", "--test-threads", "1"])
        .env("UMCAST_RUST_CHILD", "1");
    let out = run_preloaded(cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("rust: 2 members got 50 messages"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rust_child() {
    use std::os::fd::AsRawFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let name = format!("umcast-rs-{}", std::process::id());
    // struct unix_mreq { sockaddr_un address; unsigned flags; }
    let mut mreq = [0u8; 116];
    mreq[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    mreq[3..3 + name.len()].copy_from_slice(name.as_bytes());
    let opt = |fd: i32, name: i32| {
        // SAFETY: a 116-byte buffer laid out as struct unix_mreq.
        let r = unsafe { libc::setsockopt(fd, 280, name, mreq.as_ptr() as *const libc::c_void, 116) };
        assert_eq!(r, 0, "setsockopt({name}): {}", std::io::Error::last_os_error());
    };
    let g = UnixDatagram::unbound().unwrap();
    opt(g.as_raw_fd(), 1);
    let members: Vec<UnixDatagram> = (0..2).map(|_| UnixDatagram::unbound().unwrap()).collect();
    for m in &members {
        opt(m.as_raw_fd(), 2);
    }
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let s = UnixDatagram::unbound().unwrap();
    for i in 0..50u32 {
        s.send_to_addr(&i.to_le_bytes(), &addr).unwrap();
    }
    for m in &members {
        m.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        for i in 0..50u32 {
            let mut b = [0u8; 8];
            let n = m.recv(&mut b).unwrap();
            assert_eq!(&b[..n], &i.to_le_bytes());
        }
    }
    println!("rust: 2 members got 50 messages");
}
