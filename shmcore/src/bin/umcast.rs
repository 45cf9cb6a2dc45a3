//! `umcast`: inspect multicast groups and clean up after dead processes.
//!
//!     umcast list     groups visible to this user, their members (pid,
//!                     flags, queue depth, drops) and blocked senders
//!     umcast gc       remove shared memory of groups whose sockets are gone
//!     umcast gc --now the same without the 10 s grace for files a CREATE or
//!                     JOIN in progress may be filling in (only when no
//!                     program using groups is running)

use shmcore::gc;
use std::io::Write;
use std::process::ExitCode;

fn flags(f: u32) -> String {
    let mut v = Vec::new();
    if f & 1 != 0 {
        v.push("loopback");
    }
    if f & 2 != 0 {
        v.push("send-to-peer");
    }
    if f & 4 != 0 {
        v.push("drop-when-full");
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn list(out: &mut impl Write) -> std::io::Result<()> {
    let groups = gc::groups();
    if groups.is_empty() {
        writeln!(out, "no groups")?;
        return Ok(());
    }
    for (_, g) in groups {
        let info = g.info();
        writeln!(
            out,
            "group {} ({}, {}) members {} blocked senders {}",
            g.addr(),
            if g.sock_type() == libc::SOCK_SEQPACKET { "seqpacket" } else { "dgram" },
            if g.is_closed() { "closed" } else { "open" },
            info.members.len(),
            info.blocked_senders
        )?;
        for m in info.members {
            writeln!(
                out,
                "  slot {:3} pid {:7} socket {:9} flags {:<14} queued {:5} msgs {:8} bytes  capacity {:8}  dropped {}  filtered {}",
                m.slot, m.pid, m.sock_ino, flags(m.flags), m.queued_messages, m.queued_bytes, m.capacity, m.dropped, m.filtered
            )?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("list") | None => {
            // A closed pipe (umcast list | head) is not an error.
            let _ = list(&mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
        Some("gc") => match if std::env::args().nth(2).as_deref() == Some("--now") {
            gc::collect_with(std::time::Duration::ZERO)
        } else {
            gc::collect()
        } {
            Ok(c) => {
                println!(
                    "removed {} groups, {} queues, {} temporary files",
                    c.groups_removed, c.queues_removed, c.temporaries_removed
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("umcast gc: {e}");
                ExitCode::FAILURE
            }
        },
        Some(other) => {
            eprintln!("umcast: unknown command {other:?}; use 'list' or 'gc'");
            ExitCode::from(2)
        }
    }
}
