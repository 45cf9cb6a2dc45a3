//! libumcast.so: multicast groups for AF_UNIX datagram sockets, for
//! unmodified programs, by `LD_PRELOAD`.
//!
//! Layers, from the C caller inwards:
//! - `hooks`: the table of intercepted libc functions (exported symbols and
//!   the real functions behind them);
//! - `dispatch`: each hook's body: fast-path lookup, then the slow path;
//! - `send`, `recv`, `options`, `lifecycle`: translation between libc's
//!   calling conventions and the core;
//! - `fdtable`, `state`: which descriptors take part in a group;
//! - `shmcore` (separate crate): all multicast semantics.

mod dispatch;
mod edge;
mod epoll;
mod fdtable;
mod filters;
pub mod hooks;
mod lifecycle;
mod log;
mod options;
mod poll;
mod readiness;
mod real;
mod recv;
mod send;
mod state;

extern "C" fn atfork_child() {
    state::forget_pid();
}

#[ctor::ctor]
fn init() {
    log::init();
    hooks::real_fns::resolve_all();
    // SAFETY: registering a plain extern "C" handler with no preconditions.
    unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    // Descriptors inherited across exec may be group sockets or members.
    let _ = edge::guarded("start-up", || {
        lifecycle::adopt_inherited();
        Ok(())
    });
    log::debug!("libumcast loaded");
}
