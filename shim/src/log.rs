//! `UMCAST_LOG=debug` traces the shim's decisions to stderr;
//! `UMCAST_LOG=warn` (the default is off) reports only problems.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);
pub const WARN: u8 = 1;
pub const DEBUG: u8 = 2;

pub fn init() {
    let lvl = match std::env::var("UMCAST_LOG").as_deref() {
        Ok("debug") | Ok("trace") => DEBUG,
        Ok("warn") | Ok("info") => WARN,
        _ => 0,
    };
    LEVEL.store(lvl, Ordering::Relaxed);
}

pub fn enabled(lvl: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= lvl
}

/// Writes one line to stderr without going through any hooked function.
pub fn emit(msg: &str) {
    let line = format!("umcast[{}]: {}\n", shmcore::sys::getpid(), msg);
    // SAFETY: writing a live buffer to fd 2 with the raw system call.
    unsafe { libc::syscall(libc::SYS_write, 2, line.as_ptr(), line.len()) };
}

/// Reports an unrecoverable setup problem and aborts.
pub fn fatal(msg: &str) -> ! {
    emit(msg);
    std::process::abort();
}

macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::DEBUG) {
            $crate::log::emit(&format!($($t)*));
        }
    };
}

macro_rules! warning {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::WARN) {
            $crate::log::emit(&format!($($t)*));
        }
    };
}

pub(crate) use {debug, warning};
