//! Signal semantics of emulated blocking calls.
//!
//! A blocking socket call in the kernel is restarted after a signal handler
//! installed with SA_RESTART and fails with EINTR otherwise (always with
//! EINTR when a socket timeout is set). The library waits in `ppoll`, which
//! the kernel never restarts, so on EINTR it asks which handlers are
//! installed: if every caught signal restarts, the wait resumes.

/// Whether every signal with a handler was installed with SA_RESTART.
pub fn all_handlers_restart() -> bool {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: querying (act = NULL) into a zeroed, valid out-struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        let h = old.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN && old.sa_flags & libc::SA_RESTART == 0 {
            return false;
        }
    }
    true
}
