//! Concurrent senders from several threads and several processes into one
//! group: every member sees every message once, all members in the same
//! order, each sender's messages in the order sent. Members have small
//! queues, so senders block on flow control throughout.
//!
//! Child processes are this test binary run again with UMCAST_CHILD set
//! (forking a multi-threaded test harness is not safe).

use shmcore::addr::UnixAddr;
use shmcore::endpoint::{Delivery, Endpoint, RecvMode};
use shmcore::group::{Group, Sender, Wait};
use shmcore::sys;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROCS: u32 = 2;
const THREADS: u32 = 2;
const PER_THREAD: u32 = 4000;
const MEMBERS: usize = 4;

fn dgram() -> OwnedFd {
    sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0).unwrap()
}

/// Runs only inside a child process: sends this process's share.
#[test]
fn child_sender() {
    let Ok(name) = std::env::var("UMCAST_CHILD") else {
        return;
    };
    let proc_id: u32 = std::env::var("UMCAST_CHILD_ID").unwrap().parse().unwrap();
    let group = Group::open(&UnixAddr::Abstract(name.into_bytes())).expect("child opens the group");
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let g = group.clone();
            std::thread::spawn(move || {
                let sender = Sender { pid: sys::getpid(), ..Default::default() };
                for seq in 0..PER_THREAD {
                    let id = proc_id * THREADS + t;
                    let mut msg = [0u8; 12];
                    msg[..4].copy_from_slice(&id.to_le_bytes());
                    msg[4..8].copy_from_slice(&seq.to_le_bytes());
                    // Varying sizes exercise wrap-around of the rings.
                    let pad = vec![id as u8; (seq % 300) as usize];
                    g.send(&sender, &[IoSlice::new(&msg), IoSlice::new(&pad)], &mut || Wait::Forever).unwrap();
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
}

#[test]
fn threads_and_processes_share_one_total_order() {
    if std::env::var("UMCAST_CHILD").is_ok() {
        return;
    }
    let name = format!("umcast-core-conc-{}-{}", std::process::id(), sys::random_u64());
    let addr = UnixAddr::Abstract(name.clone().into_bytes());
    let g = dgram();
    let group = Group::create(g.as_raw_fd(), &addr, libc::SOCK_DGRAM).unwrap();
    let socks: Vec<OwnedFd> = (0..MEMBERS).map(|_| dgram()).collect();
    let eps: Vec<Arc<Endpoint>> = socks
        .iter()
        .map(|s| {
            let ino = sys::fstat(s.as_raw_fd()).unwrap().st_ino;
            let ep = Arc::new(Endpoint::new(ino).unwrap());
            ep.add(group.join(ino, 0, 4096).unwrap());
            ep
        })
        .collect();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            Command::new(&exe)
                .args(["--exact", "child_sender", "--nocapture", "--test-threads", "1"])
                .env("UMCAST_CHILD", &name)
                .env("UMCAST_CHILD_ID", p.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let total = (PROCS * THREADS * PER_THREAD) as usize;
    let receivers: Vec<_> = eps
        .iter()
        .zip(socks.iter())
        .map(|(ep, s)| {
            let ep = ep.clone();
            let fd = s.as_raw_fd();
            std::thread::spawn(move || {
                let mut seen = Vec::with_capacity(total);
                let mut buf = vec![0u8; 512];
                let deadline = Instant::now() + Duration::from_secs(60);
                while seen.len() < total {
                    assert!(Instant::now() < deadline, "receiver timed out after {} messages", seen.len());
                    let mode = RecvMode { peek: false, dontwait: false };
                    let got = ep
                        .recv(fd, &mut [IoSliceMut::new(&mut buf)], mode, &mut || {
                            sys::recv(fd, &mut [0u8; 1], libc::MSG_DONTWAIT)
                        })
                        .unwrap();
                    let Delivery::Group(r) = got else { panic!("unexpected kernel datagram") };
                    let id = u32::from_le_bytes(buf[..4].try_into().unwrap());
                    let seq = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                    assert_eq!(r.header.len as usize, 12 + (seq % 300) as usize);
                    assert!(buf[12..r.copied].iter().all(|&b| b == id as u8), "payload intact");
                    seen.push((id, seq));
                }
                seen
            })
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a sender process failed");
    }
    let orders: Vec<Vec<(u32, u32)>> = receivers.into_iter().map(|h| h.join().unwrap()).collect();
    for o in &orders[1..] {
        assert!(o == &orders[0], "members saw different orders");
    }
    let mut next = vec![0u32; (PROCS * THREADS) as usize];
    for &(id, seq) in &orders[0] {
        assert_eq!(seq, next[id as usize], "per-sender FIFO and no loss or duplicate");
        next[id as usize] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_THREAD));
    drop(group);
}
