//! The boundary between C callers and the Rust core: results become
//! `-1`/`errno`, and a panic becomes EIO with a message instead of unwinding
//! into C (or silently falling back to libc, which would hide a broken
//! multicast call).

use shmcore::Errno;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            crate::log::emit(&format!(
                "internal error in {what}; the call failed with EIO. Please report it with UMCAST_LOG=debug output."
            ));
            Err(Errno::EIO)
        }
    }
}

pub fn ssize(r: Result<usize, Errno>) -> libc::ssize_t {
    match r {
        Ok(n) => n as libc::ssize_t,
        Err(e) => {
            e.set();
            -1
        }
    }
}

pub fn int(r: Result<i32, Errno>) -> libc::c_int {
    match r {
        Ok(n) => n,
        Err(e) => {
            e.set();
            -1
        }
    }
}

/// Converts a real libc call's return into a Result, reading errno.
pub fn from_ret(r: isize) -> Result<usize, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}
