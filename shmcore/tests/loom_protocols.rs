//! Model checks (loom) of the two cross-process hand-shakes whose
//! correctness rests on memory ordering: a receiver going to sleep against
//! a sender committing (no lost wake-up), and a sender waiting for room
//! against a receiver freeing it (no lost room wake-up). loom runs every
//! interleaving the C11 memory model allows; the atomics and orderings are
//! the ones `group.rs` uses (SYNC POINT: sleep, SYNC POINT: room-wait).
//! Each side has a SeqCst fence between its store and its load: loom
//! models SeqCst fences exactly (SeqCst loads and stores only as AcqRel),
//! and the library has the same fences.

use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use loom::sync::Arc;
use loom::thread;

/// Receiver: declare asleep, re-check, sleep only if nothing committed.
/// Sender: commit, then wake if a sleep was declared. Never: the receiver
/// sleeps and the sender did not wake it.
#[test]
fn no_lost_wakeup_between_commit_and_sleep() {
    loom::model(|| {
        let committed = Arc::new(AtomicU64::new(0));
        let sleeping = Arc::new(AtomicU32::new(0));
        let (c2, s2) = (committed.clone(), sleeping.clone());
        let sender = thread::spawn(move || {
            c2.store(1, SeqCst); // the commit store
            fence(SeqCst);
            let w = s2.load(SeqCst);
            if w & 1 != 0 {
                // wake (FIFO write), then clear exactly that declaration
                let _ = s2.compare_exchange(w, w & !1, SeqCst, Relaxed);
                return true;
            }
            false
        });
        // prepare_sleep: new epoch, asleep bit
        let w = sleeping.load(Relaxed);
        sleeping.store((w | 1).wrapping_add(2), SeqCst);
        fence(SeqCst);
        let sees_message = committed.load(SeqCst) == 1;
        let woke = sender.join().unwrap();
        assert!(sees_message || woke, "receiver slept through a committed message");
    });
}

/// Sender: announce (blocked_senders), snapshot the futex word, re-check
/// room, sleep only if still full. Receiver: free room, then bump the word
/// if a sender announced. Never: the sender sleeps on an unchanged word
/// while room was freed.
#[test]
fn no_lost_room_wakeup() {
    loom::model(|| {
        let head = Arc::new(AtomicU64::new(0)); // 1 = room freed
        let blocked = Arc::new(AtomicU32::new(0));
        let room_seq = Arc::new(AtomicU32::new(0));
        let (h2, b2, r2) = (head.clone(), blocked.clone(), room_seq.clone());
        let receiver = thread::spawn(move || {
            h2.store(1, SeqCst); // the consuming CAS on head
            fence(SeqCst);
            if b2.load(SeqCst) > 0 {
                r2.fetch_add(1, SeqCst); // then FUTEX_WAKE
            }
        });
        blocked.fetch_add(1, SeqCst);
        fence(SeqCst);
        let snapshot = room_seq.load(SeqCst);
        let still_full = head.load(SeqCst) == 0;
        receiver.join().unwrap();
        if still_full {
            // FUTEX_WAIT(room_seq, snapshot) returns at once if the word moved.
            assert_ne!(room_seq.load(SeqCst), snapshot, "sender would sleep with room already freed");
        }
    });
}
