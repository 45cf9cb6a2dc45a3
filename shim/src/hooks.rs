//! The hook table: every intercepted libc function, listed once.
//!
//! `hooks!` expands each line into (1) a `RealFn` holding the real
//! function's address, (2) a typed `call_real::NAME` to call it, and (3) the
//! exported `NAME` that libumcast.so puts in front of libc. Each exported
//! function forwards to `crate::dispatch::NAME`, whose body is a few lines:
//! the fast-path table lookup, then the slow path.

use crate::real::RealFn;
use libc::{
    c_int, c_uint, c_ulong, c_void, epoll_event, fd_set, iovec, mmsghdr, msghdr, nfds_t, pollfd, sigset_t, size_t,
    sockaddr, socklen_t, ssize_t, timespec, timeval,
};

macro_rules! hooks {
    ($( fn $name:ident ( $($a:ident : $t:ty),* ) -> $r:ty ; )*) => {
        /// Real-function addresses, one per hook.
        #[allow(non_upper_case_globals)]
        pub mod real_fns {
            use super::*;
            $(
                pub static $name: RealFn = RealFn::new(
                    match std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                        Ok(c) => c,
                        Err(_) => panic!("hook name"),
                    },
                );
            )*
            /// Resolves every real function (from the constructor).
            pub fn resolve_all() {
                $( $name.try_resolve(); )*
            }
        }

        /// Typed calls of the real functions.
        pub mod call_real {
            use super::*;
            $(
                /// # Safety
                /// The arguments must be valid for the libc function of this name.
                #[inline(always)]
                pub unsafe fn $name($($a: $t),*) -> $r {
                    // SAFETY: the address was resolved by dlsym for exactly this
                    // symbol, whose C prototype is the one written in `hooks!`.
                    let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(real_fns::$name.addr()) };
                    // SAFETY: the caller's arguments are forwarded unchanged.
                    unsafe { f($($a),*) }
                }
            )*
        }

        $(
            /// Exported hook; see `crate::dispatch`.
            ///
            /// # Safety
            /// Same contract as the libc function of this name.
            #[no_mangle]
            pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
                // SAFETY: forwarded with the caller's (libc) contract.
                unsafe { crate::dispatch::$name($($a),*) }
            }
        )*
    };
}

hooks! {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn shutdown(fd: c_int, how: c_int) -> c_int;

    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn sendmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int;
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t;

    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn recvmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut timespec) -> c_int;
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t;
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;

    fn close(fd: c_int) -> c_int;
    fn close_range(lo: c_uint, hi: c_uint, flags: c_int) -> c_int;
    fn closefrom(lo: c_int) -> ();
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, to: c_int) -> c_int;
    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;

    fn chmod(path: *const libc::c_char, mode: libc::mode_t) -> c_int;
    fn fchmodat(dirfd: c_int, path: *const libc::c_char, mode: libc::mode_t, flags: c_int) -> c_int;
    fn chown(path: *const libc::c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_int;

    fn setuid(uid: libc::uid_t) -> c_int;
    fn setgid(gid: libc::gid_t) -> c_int;
    fn seteuid(uid: libc::uid_t) -> c_int;
    fn setegid(gid: libc::gid_t) -> c_int;
    fn setreuid(r: libc::uid_t, e: libc::uid_t) -> c_int;
    fn setregid(r: libc::gid_t, e: libc::gid_t) -> c_int;
    fn setresuid(r: libc::uid_t, e: libc::uid_t, s: libc::uid_t) -> c_int;
    fn setresgid(r: libc::gid_t, e: libc::gid_t, s: libc::gid_t) -> c_int;

    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int;
    fn ppoll(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int;
    fn __ppoll_chk(fds: *mut pollfd, n: nfds_t, timeout: *const timespec, mask: *const sigset_t, fdslen: size_t) -> c_int;
    fn select(n: c_int, rd: *mut fd_set, wr: *mut fd_set, ex: *mut fd_set, timeout: *mut timeval) -> c_int;
    fn pselect(n: c_int, rd: *mut fd_set, wr: *mut fd_set, ex: *mut fd_set, timeout: *const timespec, mask: *const sigset_t) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut epoll_event) -> c_int;
    fn epoll_wait(epfd: c_int, ev: *mut epoll_event, max: c_int, timeout: c_int) -> c_int;
    fn epoll_pwait(epfd: c_int, ev: *mut epoll_event, max: c_int, timeout: c_int, mask: *const sigset_t) -> c_int;
    fn epoll_pwait2(epfd: c_int, ev: *mut epoll_event, max: c_int, timeout: *const timespec, mask: *const sigset_t) -> c_int;
}
