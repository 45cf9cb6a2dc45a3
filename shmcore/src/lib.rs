//! shmcore: the shared-memory core of libumcast.
//!
//! Everything that decides multicast semantics lives here and is testable
//! with plain `cargo test`, without LD_PRELOAD: the group segment layout, the
//! member queues, reservation and commit, flow control, wakeups and the
//! classic BPF interpreter. The `shim` crate only translates libc calls.
//!
//! System calls that the shim intercepts (send, recv, poll, close, ...) are
//! made here through raw `syscall(2)` in [`sys`], so the core never re-enters
//! the shim's hooks.

pub mod addr;
pub mod bpf;
pub mod diag;
pub mod doorbell;
pub mod endpoint;
pub mod errno;
pub mod filter;
pub mod gc;
pub mod group;
pub mod layout;
pub mod lock;
pub mod queue;
pub mod signals;
pub mod sys;
pub mod waker;

pub use errno::Errno;
