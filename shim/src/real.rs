//! Pointers to the real libc functions that the hooks wrap, resolved with
//! `dlsym(RTLD_NEXT, name)` once (eagerly in the constructor, lazily if a
//! hook runs before it, for example from another library's constructor).

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

pub struct RealFn {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
}

impl RealFn {
    pub const fn new(name: &'static CStr) -> RealFn {
        RealFn { name, ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The real function's address. Aborts with a message if libc does not
    /// have it: continuing would call through a null pointer.
    pub fn addr(&self) -> *mut c_void {
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            return p;
        }
        self.resolve()
    }

    /// Looks the symbol up without failing (from the constructor: a libc
    /// without, say, epoll_pwait2 is fine until a program calls it).
    pub fn try_resolve(&self) {
        // SAFETY: as in `resolve`.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        self.ptr.store(p, Ordering::Relaxed);
    }

    #[cold]
    pub fn resolve(&self) -> *mut c_void {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always
        // safe to call; it returns null if the symbol does not exist.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        if p.is_null() {
            crate::log::fatal(&format!(
                "libumcast: the real {} was not found after libumcast.so; is libc loaded?",
                self.name.to_string_lossy()
            ));
        }
        self.ptr.store(p, Ordering::Relaxed);
        p
    }

    pub fn name(&self) -> &'static CStr {
        self.name
    }
}
