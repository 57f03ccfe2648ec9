//! Compaction tests on a real directory inside a glommio executor: moves that survive restarts,
//! retiring what a move empties, chains of moves, torn moved records, the policy, refusals.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use super::tests::{body, envelope, logs, open, opts, pending_ids, run, unretire};
use super::*;

/// 64 KiB segments; `BIG` bodies fit three to a segment, `FIFTH` bodies five.
const SEG: u64 = 64 * 1024;
const BIG: usize = 20_000;
const FIFTH: usize = 12_000;

fn pend(attempts: u32, next_attempt: u64) -> RecipientState {
    RecipientState::Pending {
        attempts,
        next_attempt,
    }
}

fn deferred(attempts: u32, next_attempt: u64) -> Outcome {
    Outcome::Deferred {
        attempts,
        next_attempt,
    }
}

/// Commits messages `from..to` (message `n` has `recipients` recipients and `len` bytes).
async fn commit_range(
    q: &ShardQueue,
    from: usize,
    to: usize,
    recipients: usize,
    len: usize,
) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for n in from..to {
        ids.push(
            q.commit(&envelope(n, recipients), &body(n, len))
                .await
                .expect("commit"),
        );
    }
    ids
}

/// Marks every recipient of each message delivered.
async fn deliver_all(q: &ShardQueue, ids: &[MessageId], recipients: usize) {
    for id in ids {
        for r in 0..recipients {
            q.record(*id, r, Outcome::Delivered).await.expect("record");
        }
    }
}

/// Opens shard 0 with a compaction age threshold.
async fn open_aged(dir: &Path, compact_after_secs: u64) -> (Rc<ShardQueue>, Vec<QueuedMessage>) {
    let options = QueueOptions {
        compact_after_secs,
        ..opts(SEG)
    };
    ShardQueue::open(dir, 0, options)
        .await
        .expect("queue opens")
}

/// Where a message's record lies in its log: (offset, length).
fn record_place(q: &ShardQueue, id: MessageId) -> (u64, u64) {
    let inner = q.inner.borrow();
    let entry = inner
        .segments
        .get(&id.segment)
        .and_then(|s| s.messages.get(id.index as usize))
        .expect("known message");
    (entry.offset, entry.record_len)
}

fn segment_log(dir: &Path, segment: u64) -> std::path::PathBuf {
    recover::segment_path(&dir.join("shard-0"), segment, recover::LOG_EXT)
}

#[test]
fn move_then_reopen_yields_one_copy_with_its_states_and_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        // Segment 1: a two-recipient message m and two others; then roll over.
        let m = q
            .commit(&envelope(0, 2), &body(0, BIG))
            .await
            .expect("commit");
        let others = commit_range(&q, 1, 4, 1, BIG).await;
        assert_ne!(others[2].segment, m.segment, "the fourth rolled over");
        q.record(m, 0, Outcome::Delivered).await.expect("record");
        q.record(m, 1, deferred(2, 5000)).await.expect("record");
        let pending_before = q.stats().messages_pending;

        let moved = q.move_forward(m).await.expect("move");
        assert!(moved.segment > m.segment);
        assert_eq!(q.read_message(moved).await.expect("read"), body(0, BIG));
        assert_eq!(q.stats().messages_pending, pending_before);
        assert_eq!(q.stats().moved, 1);
        // The offline listing, beside the running queue: one copy, the new one.
        let listed = scan(&dir).expect("scan");
        let copies: Vec<_> = listed
            .iter()
            .filter(|l| l.envelope == envelope(0, 2))
            .collect();
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].id, moved);
        assert_eq!(
            copies[0].states,
            vec![RecipientState::Delivered, pend(2, 5000)]
        );
        drop(q);

        let (q, pending) = open(&dir, SEG).await;
        let want: Vec<MessageId> = others.iter().copied().chain([moved]).collect();
        let mut got = pending_ids(&pending);
        got.sort();
        assert_eq!(got, want);
        let copy = pending.iter().find(|p| p.id == moved).expect("moved copy");
        assert_eq!(copy.envelope, envelope(0, 2));
        assert_eq!(copy.size, BIG as u64);
        assert_eq!(copy.states, vec![RecipientState::Delivered, pend(2, 5000)]);
        assert_eq!(q.read_message(moved).await.expect("read"), body(0, BIG));
        assert_eq!(pending_ids(&scan(&dir).expect("scan")), want);
    });
}

#[test]
fn a_segment_whose_last_live_message_moved_is_retired_and_recycled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 1, BIG).await;
        let rest = commit_range(&q, 3, 4, 1, BIG).await;
        assert_ne!(rest[0].segment, first[0].segment);
        deliver_all(&q, &first[..2], 1).await;
        q.record(first[2], 0, deferred(1, 99))
            .await
            .expect("record");
        assert_eq!(q.stats().segments, 2);
        assert_eq!(q.stats().free_segments, 0);

        let moved = q.move_forward(first[2]).await.expect("move");
        assert_eq!(moved.segment, rest[0].segment, "into the active segment");
        let stats = q.stats();
        assert_eq!(stats.segments, 1, "the emptied segment retired");
        assert_eq!(stats.free_segments, 1);
        assert_eq!(logs(&dir, "free-").len(), 1);
        assert_eq!(
            q.read_message(first[2]).await,
            Err(QueueError::UnknownMessage(first[2]))
        );
        // The next rollover takes the retired files instead of creating new ones.
        commit_range(&q, 4, 6, 1, BIG).await;
        assert_eq!(q.stats().free_segments, 0);
        assert_eq!(logs(&dir, "free-").len(), 0);
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        assert_eq!(pending.len(), 4);
        let copy = pending.iter().find(|p| p.id == moved).expect("moved copy");
        assert_eq!(copy.states, vec![pend(1, 99)]);
    });
}

/// The crash the brief worries about most: the moved record is durable, the old segment's
/// retire never happened (or was not durable). Recovery must not bring the old copy back.
#[test]
fn crash_after_the_move_before_the_retire_keeps_one_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 1, BIG).await;
        commit_range(&q, 3, 4, 1, BIG).await;
        deliver_all(&q, &first[1..], 1).await;
        let moved = q.move_forward(first[0]).await.expect("move");
        assert_eq!(logs(&dir, "free-").len(), 1);
        drop(q);
        unretire(&dir, "");
        let (q, pending) = open(&dir, SEG).await;
        assert!(pending_ids(&pending).contains(&moved));
        assert!(!pending_ids(&pending).contains(&first[0]));
        assert_eq!(pending.len(), 2);
        assert_eq!(q.stats().segments, 1, "recovery retired the old segment");
        assert_eq!(pending_ids(&scan(&dir).expect("scan")).len(), 2);
    });
}

#[test]
fn moving_twice_then_reopening_resurrects_neither_older_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        // Segment 1: a (to be moved twice) and x, which stays live and keeps segment 1.
        let s1 = commit_range(&q, 0, 3, 1, BIG).await;
        let (a, x) = (s1[0], s1[1]);
        deliver_all(&q, &s1[2..], 1).await;
        // Segment 2 (active): fillers, then a's first copy b.
        let s2 = commit_range(&q, 3, 5, 1, BIG).await;
        assert!(s2.iter().all(|i| i.segment > a.segment));
        let b = q.move_forward(a).await.expect("move a");
        assert_eq!(b.segment, s2[0].segment);
        q.record(b, 0, deferred(3, 700)).await.expect("record");
        // Roll over, then move b on to c in segment 3.
        let s3 = commit_range(&q, 5, 6, 1, BIG).await;
        assert!(s3[0].segment > b.segment);
        let c = q.move_forward(b).await.expect("move b");
        assert_eq!(c.segment, s3[0].segment);
        // Segment 2 is now all finished, but its record is what finishes a in segment 1,
        // which x keeps on disk: segment 2 must stay until segment 1 goes.
        deliver_all(&q, &s2, 1).await;
        assert_eq!(q.stats().segments, 3);
        assert!(q.move_forward(a).await.is_err(), "a was moved already");
        drop(q);

        let (q, pending) = open(&dir, SEG).await;
        assert_eq!(pending_ids(&pending), vec![x, s3[0], c]);
        assert_eq!(pending[2].states, vec![pend(3, 700)]);
        assert_eq!(pending[2].envelope, envelope(0, 1));
        assert_eq!(q.read_message(c).await.expect("read"), body(0, BIG));
        assert_eq!(q.stats().segments, 3);
        // Finishing x retires segment 1, and with it segment 2, which waited for it.
        q.record(x, 0, Outcome::Delivered).await.expect("record");
        assert_eq!(q.stats().segments, 1);
        // A crash before those two retires: recovery redoes them (segment 1 first; segment 2,
        // all finished, waits for it) and brings back neither a nor b.
        drop(q);
        unretire(&dir, "");
        assert_eq!(logs(&dir, "seg-").len(), 3);
        let (q, pending) = open(&dir, SEG).await;
        assert_eq!(pending_ids(&pending), vec![s3[0], c]);
        assert_eq!(q.stats().segments, 1);
        assert_eq!(logs(&dir, "seg-").len(), 1);
        // The copy that moved into segment 3 is compacted in its turn: c -> d.
        commit_range(&q, 6, 8, 1, BIG).await;
        let d = q.move_forward(c).await.expect("move c");
        assert!(d.segment > c.segment);
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        let ids = pending_ids(&pending);
        assert!(ids.contains(&d));
        assert!(!ids.contains(&c) && !ids.contains(&b) && !ids.contains(&a));
        assert_eq!(ids.len(), 4);
        assert_eq!(pending_ids(&scan(&dir).expect("scan")), ids);
    });
}

#[test]
fn a_torn_moved_record_leaves_the_old_copy_live() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 2, BIG).await;
        let active = commit_range(&q, 3, 4, 1, BIG).await;
        deliver_all(&q, &first[1..], 2).await;
        q.record(first[0], 1, Outcome::Failed)
            .await
            .expect("record");
        let moved = q.move_forward(first[0]).await.expect("move");
        let (offset, len) = record_place(&q, moved);
        drop(q);
        // Undo the old segment's retire and tear the moved record: the crash hit while its
        // batch was being written (before the fdatasync that would have made it durable).
        unretire(&dir, "");
        let mut f = OpenOptions::new()
            .write(true)
            .open(segment_log(&dir, moved.segment))
            .expect("open log");
        f.seek(SeekFrom::Start(offset + len / 2)).expect("seek");
        f.write_all(&vec![0; len as usize]).expect("write");
        drop(f);

        let (q, pending) = open(&dir, SEG).await;
        assert_eq!(pending_ids(&pending), vec![first[0], active[0]]);
        assert_eq!(pending[0].states, vec![pend(0, 0), RecipientState::Failed]);
        assert_eq!(q.read_message(first[0]).await.expect("read"), body(0, BIG));
        assert_eq!(
            pending_ids(&scan(&dir).expect("scan")),
            vec![first[0], active[0]]
        );
        // Moving again after the crash works and overwrites the torn bytes.
        let again = q.move_forward(first[0]).await.expect("move again");
        assert_eq!(again, moved, "the same place in the same segment");
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        assert_eq!(pending_ids(&pending), vec![active[0], again]);
        assert_eq!(pending[1].states, vec![pend(0, 0), RecipientState::Failed]);
    });
}

#[test]
fn states_recorded_after_the_move_survive_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 3, BIG).await;
        commit_range(&q, 3, 4, 1, BIG).await;
        let m = first[0];
        q.record(m, 0, deferred(1, 10)).await.expect("record");
        let moved = q.move_forward(m).await.expect("move");
        q.record(moved, 0, deferred(2, 20)).await.expect("record");
        q.record(moved, 1, Outcome::Delivered)
            .await
            .expect("record");
        // The old id still names the message while its segment is known: it follows the move.
        q.record(m, 2, Outcome::Failed)
            .await
            .expect("record via the old id");
        assert_eq!(
            q.record(moved, 2, Outcome::Delivered).await,
            Err(QueueError::AlreadyFinal {
                id: moved,
                recipient: 2
            })
        );
        drop(q);
        let (q, pending) = open(&dir, SEG).await;
        let copy = pending.iter().find(|p| p.id == moved).expect("moved copy");
        assert_eq!(
            copy.states,
            vec![
                pend(2, 20),
                RecipientState::Delivered,
                RecipientState::Failed
            ]
        );
        assert!(!pending_ids(&pending).contains(&m));
        q.record(moved, 0, Outcome::Delivered)
            .await
            .expect("record");
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        assert!(!pending_ids(&pending).contains(&moved));
    });
}

/// `record` on a message while it is being moved waits for the move and lands on the copy.
#[test]
fn a_state_recorded_during_the_move_lands_on_the_new_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 2, BIG).await;
        commit_range(&q, 3, 4, 1, BIG).await;
        let m = first[0];
        let active = q.inner.borrow().active.expect("an active segment");
        let queued = || q.inner.borrow().segments[&active].messages.len();
        let before = queued();
        let mover = {
            let q = q.clone();
            glommio::spawn_local(async move { q.move_forward(m).await })
        };
        // Let the move read the old record and queue its copy (states taken): from here on,
        // a state recorded on the old copy alone would be lost with it.
        for _ in 0..10_000 {
            if queued() > before {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
        }
        assert_eq!(queued(), before + 1, "the moved record is queued");
        let moving = q.inner.borrow().segments[&m.segment].messages[0].moving;
        q.record(m, 1, Outcome::Delivered).await.expect("record");
        let moved = mover.await.expect("move");
        eprintln!("record issued while moving: {moving}");
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        let copy = pending.iter().find(|p| p.id == moved).expect("moved copy");
        assert_eq!(copy.states, vec![pend(0, 0), RecipientState::Delivered]);
        assert!(!pending_ids(&pending).contains(&m));
    });
}

#[test]
fn moving_many_messages_from_several_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        // Five per segment, 25 messages: five full segments, then one more (active).
        let ids = commit_range(&q, 0, 25, 1, FIFTH).await;
        let tail = commit_range(&q, 25, 26, 1, FIFTH).await;
        assert_eq!(q.stats().segments, 6);
        // Every fifth survives, deferred: each sealed segment is 80% dead.
        let mut survivors = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            if n % 5 == 2 {
                q.record(*id, 0, deferred(1, 1000 + n as u64))
                    .await
                    .expect("record");
                survivors.push((n, *id));
            } else {
                q.record(*id, 0, Outcome::Delivered).await.expect("record");
            }
        }
        assert!(survivors.iter().all(|(_, id)| q.should_move(*id)));
        let listed = q.compactable(usize::MAX);
        let want: Vec<MessageId> = survivors.iter().map(|(_, id)| *id).collect();
        assert_eq!(listed, want);
        assert_eq!(q.compactable(2), want[..2].to_vec());
        // All at once: the moves share batches like concurrent commits.
        let syncs_before = q.stats().fdatasyncs;
        let tasks: Vec<_> = survivors
            .iter()
            .map(|&(n, id)| {
                let q = q.clone();
                glommio::spawn_local(async move { (n, q.move_forward(id).await) })
            })
            .collect();
        let mut moved = Vec::new();
        for t in tasks {
            let (n, result) = t.await;
            moved.push((n, result.expect("move")));
        }
        eprintln!(
            "5 concurrent moves took {} fdatasyncs",
            q.stats().fdatasyncs - syncs_before
        );
        assert!(q.compactable(usize::MAX).is_empty());
        let stats = q.stats();
        assert_eq!(stats.moved, 5);
        assert!(
            stats.segments <= 2,
            "five emptied segments retired: {stats:?}"
        );
        drop(q);

        let (q, pending) = open(&dir, SEG).await;
        assert_eq!(pending.len(), moved.len() + tail.len());
        for (n, id) in &moved {
            let copy = pending.iter().find(|p| p.id == *id).expect("moved copy");
            assert_eq!(copy.envelope, envelope(*n, 1));
            assert_eq!(copy.states, vec![pend(1, 1000 + *n as u64)]);
            assert_eq!(q.read_message(*id).await.expect("read"), body(*n, FIFTH));
        }
    });
}

#[test]
fn moves_that_cannot_happen_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        let first = commit_range(&q, 0, 3, 1, BIG).await;
        let active = commit_range(&q, 3, 4, 1, BIG).await;
        q.record(first[1], 0, Outcome::Delivered)
            .await
            .expect("record");
        let not_movable =
            |r: Result<MessageId, QueueError>| matches!(r, Err(QueueError::NotMovable { .. }));
        assert!(not_movable(q.move_forward(active[0]).await), "active");
        assert!(!q.should_move(active[0]));
        assert!(not_movable(q.move_forward(first[1]).await), "finished");
        let unknown = MessageId {
            shard: 0,
            segment: 0xdead,
            index: 0,
        };
        assert_eq!(
            q.move_forward(unknown).await,
            Err(QueueError::UnknownMessage(unknown))
        );
        let past_the_end = MessageId {
            index: 7,
            ..first[0]
        };
        assert_eq!(
            q.move_forward(past_the_end).await,
            Err(QueueError::UnknownMessage(past_the_end))
        );
        let other_shard = MessageId {
            shard: 1,
            ..first[0]
        };
        assert_eq!(
            q.move_forward(other_shard).await,
            Err(QueueError::UnknownMessage(other_shard))
        );
        // A commit not yet durable (polled once: queued, its batch not synced).
        let late = envelope(9, 1);
        let pending_commit = q.commit(&late, b"not yet");
        let mut pending_commit = std::pin::pin!(pending_commit);
        assert!(
            futures_lite::future::poll_once(&mut pending_commit)
                .await
                .is_none()
        );
        let not_durable = MessageId {
            index: active[0].index + 1,
            ..active[0]
        };
        assert!(
            not_movable(q.move_forward(not_durable).await),
            "not durable"
        );
        pending_commit.await.expect("commit");
        // Moved already: the old copy is finished.
        let moved = q.move_forward(first[0]).await.expect("move");
        assert!(not_movable(q.move_forward(first[0]).await), "moved");
        assert!(
            not_movable(q.move_forward(moved).await),
            "new copy in the active segment"
        );
        q.close().await.expect("close");
        assert_eq!(q.move_forward(first[2]).await, Err(QueueError::Closed));
    });
}

#[test]
fn should_move_follows_the_rule() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        // A young segment counts only by its dead share.
        let (q, _) = open_aged(&dir, 3600).await;
        let s1 = commit_range(&q, 0, 5, 1, FIFTH).await;
        commit_range(&q, 5, 6, 1, FIFTH).await;
        assert!(!q.should_move(s1[0]), "all live");
        deliver_all(&q, &s1[1..4], 1).await;
        assert!(!q.should_move(s1[0]), "40% live");
        deliver_all(&q, &s1[4..], 1).await;
        assert!(q.should_move(s1[0]), "20% live: mostly dead");
        assert!(!q.should_move(s1[1]), "finished");
        drop(q);

        // An old segment moves once a quarter of it is dead; a nearly all-live one does not.
        let tmp2 = tempfile::tempdir().expect("tempdir");
        let (q, _) = open_aged(tmp2.path(), 0).await;
        let s1 = commit_range(&q, 0, 5, 1, FIFTH).await;
        commit_range(&q, 5, 6, 1, FIFTH).await;
        assert!(!q.should_move(s1[0]), "old but all live");
        assert!(q.compactable(10).is_empty());
        deliver_all(&q, &s1[..1], 1).await;
        assert!(!q.should_move(s1[1]), "old, 80% live");
        deliver_all(&q, &s1[1..2], 1).await;
        assert!(q.should_move(s1[2]), "old, 60% live");
        assert_eq!(q.compactable(10), s1[2..].to_vec());
    });
}

/// The scenario: one deferred message among many finished ones keeps a whole segment
/// alive; compaction frees it, and the deferred message survives restarts.
#[test]
fn compaction_keeps_a_deferred_message_through_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, SEG).await;
        // About sixty 1 KB messages per segment; three segments' worth.
        let ids = commit_range(&q, 0, 150, 1, 1000).await;
        let deferred_id = ids[10];
        for id in &ids {
            if *id == deferred_id {
                q.record(*id, 0, deferred(1, 4_000_000_000))
                    .await
                    .expect("record");
            } else {
                q.record(*id, 0, Outcome::Delivered).await.expect("record");
            }
        }
        let before = q.stats();
        assert!(before.segments >= 2, "{before:?}");
        assert!(q.should_move(deferred_id));
        let moved = q.move_forward(deferred_id).await.expect("move");
        let after = q.stats();
        assert_eq!(after.segments, before.segments - 1, "{after:?}");
        assert!(after.bytes < before.bytes);
        drop(q);
        for _ in 0..2 {
            let (q, pending) = open(&dir, SEG).await;
            assert_eq!(pending_ids(&pending), vec![moved]);
            assert_eq!(pending[0].states, vec![pend(1, 4_000_000_000)]);
            assert_eq!(q.read_message(moved).await.expect("read"), body(10, 1000));
            assert_eq!(q.stats().segments, 1);
        }
        let (q, _) = open(&dir, SEG).await;
        q.record(moved, 0, Outcome::Delivered)
            .await
            .expect("record");
        drop(q);
        let (_, pending) = open(&dir, SEG).await;
        assert!(pending.is_empty());
    });
}
