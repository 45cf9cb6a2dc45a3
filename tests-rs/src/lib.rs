//! Helpers for the integration tests: where libumcast.so is, and running a
//! program under it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The library under test: `$UMCAST_LIB`, or the workspace's release build.
pub fn library() -> PathBuf {
    if let Ok(p) = std::env::var("UMCAST_LIB") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/libumcast.so");
    assert!(p.exists(), "{} is missing: run `cargo build --release` (or `make`) first", p.display());
    p
}

/// Runs `cmd` with the library preloaded, failing the test if it does not
/// finish within `limit` (a hang is a failure, not a stuck run).
pub fn run_preloaded(mut cmd: Command, limit: Duration) -> Output {
    cmd.env("LD_PRELOAD", library());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the program under test");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "timed out after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
