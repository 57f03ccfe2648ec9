//! Queue tests on a real directory inside a glommio executor: round trips, group commit,
//! recipient state, retiring and recycling, torn and corrupt tails, and `scan` beside a writer.

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::LocalExecutorBuilder;

use super::*;
use crate::envelope::Envelope;

/// Runs `f` to completion on a fresh glommio executor thread.
pub(super) fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::default()
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("test body completes");
}

pub(super) fn envelope(n: usize, recipients: usize) -> Envelope {
    Envelope {
        sender: format!("sender{n}@example.org"),
        recipients: (0..recipients)
            .map(|r| format!("rcpt{r}@example.net"))
            .collect(),
        received_at: 1_795_624_291 + n as u64,
        smtputf8: n.is_multiple_of(2),
        body_8bit: n.is_multiple_of(3),
    }
}

pub(super) fn body(n: usize, len: usize) -> Vec<u8> {
    let mut b = format!("Subject: message {n}\r\n\r\n").into_bytes();
    b.resize(len, b'a' + (n % 26) as u8);
    b
}

pub(super) fn opts(segment_size: u64) -> QueueOptions {
    QueueOptions {
        segment_size,
        ..QueueOptions::default()
    }
}

pub(super) async fn open(dir: &Path, segment_size: u64) -> (Rc<ShardQueue>, Vec<QueuedMessage>) {
    ShardQueue::open(dir, 0, opts(segment_size))
        .await
        .expect("queue opens")
}

/// Files of shard 0 whose names start with `prefix` and end with `.log`, sorted.
pub(super) fn logs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("shard-0"))
        .expect("shard dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(prefix) && name.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

pub(super) fn pending_ids(list: &[QueuedMessage]) -> Vec<MessageId> {
    list.iter().map(|m| m.id).collect()
}

#[test]
fn message_id_display_and_parse() {
    let id = MessageId {
        shard: 3,
        segment: 0x1a2b3c4d,
        index: 5,
    };
    assert_eq!(id.to_string(), "1a2b3c4d.3.5");
    assert_eq!("1a2b3c4d.3.5".parse::<MessageId>(), Ok(id));
    for bad in [
        "",
        "1a2b",
        "1a2b.3",
        "1a2b.3.5.7",
        "xyz.3.5",
        "1a2b.-3.5",
        "1a2b.70000.5",
        "1a2b.3.",
        "+1a.3.5",
        "11111111111111111.0.0",
    ] {
        assert!(bad.parse::<MessageId>().is_err(), "{bad:?} must not parse");
    }
}

#[test]
fn commit_and_reopen_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, pending) = open(&dir, 1 << 20).await;
        assert!(pending.is_empty());
        let mut ids = Vec::new();
        for n in 0..10 {
            ids.push(
                q.commit(&envelope(n, 2), &body(n, 500))
                    .await
                    .expect("commit"),
            );
        }
        assert_eq!(q.read_message(ids[3]).await.expect("read"), body(3, 500));
        assert_eq!(q.stats().messages_pending, 10);
        q.close().await.expect("close");
        assert_eq!(
            q.commit(&envelope(0, 1), b"x").await,
            Err(QueueError::Closed)
        );
        drop(q);

        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), ids);
        for (n, m) in pending.iter().enumerate() {
            assert_eq!(m.envelope, envelope(n, 2));
            assert_eq!(m.size, 500);
            assert_eq!(m.states.len(), 2);
            assert!(!m.states[0].is_final());
            assert_eq!(q.read_message(m.id).await.expect("read"), body(n, 500));
        }
        assert_eq!(q.stats().generation, 2);
        match ShardQueue::open(&dir, 0, opts(1 << 20)).await {
            Err(QueueError::Locked { .. }) => {}
            other => panic!("a second open must fail as locked, got {:?}", other.err()),
        }
        let more = q
            .commit(&envelope(10, 1), &body(10, 10))
            .await
            .expect("commit");
        assert!(!ids.contains(&more));
        let bogus = MessageId {
            shard: 0,
            segment: 999,
            index: 0,
        };
        assert_eq!(
            q.read_message(bogus).await,
            Err(QueueError::UnknownMessage(bogus))
        );
        assert_eq!(
            q.commit(&envelope(0, 0), b"x").await,
            Err(QueueError::BadEnvelope("no recipients"))
        );
    });
}

#[test]
fn concurrent_commits_share_fdatasyncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 8 << 20).await;
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let q = q.clone();
                glommio::spawn_local(async move { q.commit(&envelope(n, 1), &body(n, 1024)).await })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("commit"));
        }
        let stats = q.stats();
        eprintln!("200 concurrent commits: {stats:?}");
        assert_eq!(stats.commits, 200);
        assert!(
            stats.fdatasyncs < 50,
            "200 concurrent commits took {} fdatasyncs",
            stats.fdatasyncs
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        drop(q);
        let (_, pending) = open(&dir, 8 << 20).await;
        assert_eq!(pending.len(), 200);
    });
}

#[test]
fn recipient_states_survive_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        let a = q.commit(&envelope(0, 2), b"a").await.expect("commit");
        let b = q.commit(&envelope(1, 1), b"b").await.expect("commit");
        let c = q.commit(&envelope(2, 3), b"c").await.expect("commit");
        let deferred = Outcome::Deferred {
            attempts: 2,
            next_attempt: 5000,
        };
        q.record(a, 0, Outcome::Delivered).await.expect("record");
        q.record(a, 1, Outcome::Failed).await.expect("record");
        q.record(b, 0, deferred).await.expect("record");
        q.record(c, 1, Outcome::Delivered).await.expect("record");
        q.record(c, 2, deferred).await.expect("record");
        assert_eq!(q.stats().messages_pending, 2);
        assert_eq!(
            q.record(a, 0, deferred).await,
            Err(QueueError::AlreadyFinal {
                id: a,
                recipient: 0
            })
        );
        assert_eq!(
            q.record(b, 1, Outcome::Delivered).await,
            Err(QueueError::NoSuchRecipient {
                id: b,
                recipient: 1
            })
        );
        drop(q);

        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), vec![b, c]);
        let pend = |attempts, next_attempt| RecipientState::Pending {
            attempts,
            next_attempt,
        };
        assert_eq!(pending[0].states, vec![pend(2, 5000)]);
        assert_eq!(
            pending[1].states,
            vec![pend(0, 0), RecipientState::Delivered, pend(2, 5000)]
        );
        assert_eq!(q.stats().messages_pending, 2);
        // Finish c after recovery; appends after the recovered prefix survive another reopen.
        q.record(c, 0, Outcome::Delivered).await.expect("record");
        q.record(c, 2, Outcome::Failed).await.expect("record");
        drop(q);
        let (_, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), vec![b]);
    });
}

#[test]
fn finished_segments_are_retired_and_recycled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let size = 64 * 1024;
        let (q, _) = open(&dir, size).await;
        // 20 KiB messages: three per segment.
        let mut ids = Vec::new();
        for n in 0..7 {
            ids.push(
                q.commit(&envelope(n, 1), &body(n, 20_000))
                    .await
                    .expect("commit"),
            );
        }
        assert_eq!(q.stats().segments, 3);
        let first_segment = ids[0].segment;
        assert!(ids[..3].iter().all(|i| i.segment == first_segment));
        assert_ne!(ids[3].segment, first_segment);
        for id in &ids[..3] {
            q.record(*id, 0, Outcome::Delivered).await.expect("record");
        }
        let stats = q.stats();
        assert_eq!(stats.segments, 2);
        assert_eq!(stats.free_segments, 1);
        assert_eq!(logs(&dir, "free-").len(), 1);
        assert_eq!(
            q.read_message(ids[0]).await,
            Err(QueueError::UnknownMessage(ids[0]))
        );
        // The next rollover reuses the free files rather than creating new ones.
        for n in 7..11 {
            ids.push(
                q.commit(&envelope(n, 1), &body(n, 20_000))
                    .await
                    .expect("commit"),
            );
        }
        assert_eq!(q.stats().free_segments, 0);
        assert_eq!(logs(&dir, "free-").len(), 0);
        assert_eq!(logs(&dir, "seg-").len(), 3);
        drop(q);

        // The recycled file still holds the retired segment's old records beyond the new
        // ones; recovery must not read them.
        let (q, pending) = open(&dir, size).await;
        assert_eq!(pending_ids(&pending), ids[3..].to_vec());
        // Finishing a sealed segment after recovery retires it too; finishing the newest
        // (active) one does not.
        for id in &ids[3..] {
            q.record(*id, 0, Outcome::Delivered).await.expect("record");
        }
        assert_eq!(q.stats().segments, 1);
        drop(q);
        let (q, pending) = open(&dir, size).await;
        assert!(pending.is_empty());
        assert_eq!(q.stats().segments, 1);
    });
}

/// Renames shard 0's `free-*.<ext>` files back to `seg-*.<ext>`: the directory as it was
/// before a retire's renames (a crash just before, or between, them).
pub(super) fn unretire(dir: &Path, ext: &str) {
    for e in fs::read_dir(dir.join("shard-0")).expect("shard dir") {
        let path = e.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(rest) = name.strip_prefix("free-")
            && rest.ends_with(ext)
        {
            fs::rename(&path, path.with_file_name(format!("seg-{rest}"))).expect("rename");
        }
    }
}

#[test]
fn crash_around_retire_is_finished_by_recovery() {
    for (case, ext) in [("before both renames", ""), ("between renames", ".state")] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        run(move || async move {
            let size = 64 * 1024;
            let (q, _) = open(&dir, size).await;
            let mut ids = Vec::new();
            for n in 0..4 {
                ids.push(
                    q.commit(&envelope(n, 1), &body(n, 20_000))
                        .await
                        .expect("commit"),
                );
            }
            for id in &ids[..3] {
                q.record(*id, 0, Outcome::Delivered).await.expect("record");
            }
            assert_eq!(logs(&dir, "free-").len(), 1, "{case}");
            drop(q);
            unretire(&dir, ext);
            let (q, pending) = open(&dir, size).await;
            assert_eq!(pending_ids(&pending), vec![ids[3]], "{case}");
            assert_eq!(q.stats().segments, 1, "{case}");
            assert_eq!(q.stats().free_segments, 1, "{case}");
            assert_eq!(logs(&dir, "seg-").len(), 1, "{case}");
        });
    }
}

#[test]
fn finishing_the_active_segment_retires_it_at_rollover() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 64 * 1024).await;
        let first = q
            .commit(&envelope(0, 1), &body(0, 40_000))
            .await
            .expect("commit");
        q.record(first, 0, Outcome::Failed).await.expect("record");
        assert_eq!(q.stats().segments, 1, "the active segment stays");
        let second = q
            .commit(&envelope(1, 1), &body(1, 40_000))
            .await
            .expect("commit");
        assert_ne!(first.segment, second.segment);
        assert_eq!(q.stats().segments, 1);
        assert_eq!(q.stats().free_segments, 1);
    });
}

/// Issue 11, item 2: a rollover that seals a segment whose last message's final state record
/// is still in an unsynced batch must not retire it; the retire comes once that record is
/// durable. (Before the fix, `record` counted the message finished at once, and the rollover
/// renamed the segment's files away while the final state could still be lost.)
#[test]
fn a_rollover_does_not_retire_before_the_final_state_is_durable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 64 * 1024).await;
        let first = q
            .commit(&envelope(0, 1), &body(0, 40_000))
            .await
            .expect("commit");
        // The final state is queued, and stays unsynced while the batcher is held.
        q.batcher.hold(true);
        let record = {
            let q = q.clone();
            glommio::spawn_local(async move { q.record(first, 0, Outcome::Delivered).await })
        };
        // A message that does not fit rolls the segment over meanwhile.
        let second = {
            let q = q.clone();
            glommio::spawn_local(async move { q.commit(&envelope(1, 1), &body(1, 40_000)).await })
        };
        // Let the rollover (its own directory I/O, not held) run to its end.
        for _ in 0..50 {
            if q.stats().segments == 2 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            q.stats().free_segments,
            0,
            "a segment was retired before its final state record was durable"
        );
        assert_eq!(q.stats().segments, 2, "the rollover made a new segment");
        assert_eq!(logs(&dir, "seg-").len(), 2, "both logs are still in place");
        assert_eq!(
            q.stats().messages_pending,
            1,
            "not finished before it is durable"
        );

        q.batcher.hold(false);
        record.await.expect("record");
        let second = second.await.expect("commit");
        assert_ne!(first.segment, second.segment);
        // Durable now: the old segment retires.
        assert_eq!(q.stats().segments, 1);
        assert_eq!(q.stats().free_segments, 1);
        assert_eq!(q.stats().messages_pending, 1);
        assert_eq!(logs(&dir, "free-").len(), 1);
    });
}

#[test]
fn oversized_message_gets_its_own_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let size = 64 * 1024;
        let (q, _) = open(&dir, size).await;
        let small = q.commit(&envelope(0, 1), b"small").await.expect("commit");
        let big = q
            .commit(&envelope(1, 1), &body(1, 200_000))
            .await
            .expect("commit");
        let after = q.commit(&envelope(2, 1), b"after").await.expect("commit");
        assert_ne!(small.segment, big.segment);
        assert_ne!(big.segment, after.segment);
        assert_eq!(q.read_message(big).await.expect("read"), body(1, 200_000));
        drop(q);
        let (q, pending) = open(&dir, size).await;
        assert_eq!(pending_ids(&pending), vec![small, big, after]);
        assert_eq!(q.read_message(big).await.expect("read"), body(1, 200_000));
    });
}

/// Byte offset of record `index` in a log holding records of `record_len` bytes each.
fn record_offset(index: u64, record_len: u64) -> u64 {
    index * record_len
}

/// Commits `n` equal-sized messages and returns their ids and the record length.
async fn commit_equal(q: &ShardQueue, n: usize) -> (Vec<MessageId>, u64) {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            q.commit(&envelope(1, 1), &body(i, 300))
                .await
                .expect("commit"),
        );
    }
    let record_len = q.stats().bytes / n as u64;
    (ids, record_len)
}

#[test]
fn torn_tail_keeps_exactly_the_valid_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        let (ids, record_len) = commit_equal(&q, 6).await;
        drop(q);
        // Zero the second half of record 4 (a write torn by a crash) and everything after.
        let log = logs(&dir, "seg-").remove(0);
        let mut f = OpenOptions::new().write(true).open(&log).expect("open log");
        let cut = record_offset(4, record_len) + record_len / 2;
        f.seek(SeekFrom::Start(cut)).expect("seek");
        f.write_all(&vec![0; (2 * record_len) as usize])
            .expect("write");
        drop(f);

        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), ids[..4].to_vec());
        let (more, _) = commit_equal(&q, 2).await;
        assert_eq!(more[0].index, 4, "appends continue after the valid prefix");
        drop(q);
        let (q, pending) = open(&dir, 1 << 20).await;
        let want: Vec<MessageId> = ids[..4].iter().chain(&more).copied().collect();
        assert_eq!(pending_ids(&pending), want);
        assert_eq!(q.read_message(more[1]).await.expect("read"), body(1, 300));
    });
}

#[test]
fn truncated_file_keeps_exactly_the_valid_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        let (ids, record_len) = commit_equal(&q, 5).await;
        drop(q);
        let log = logs(&dir, "seg-").remove(0);
        let f = OpenOptions::new().write(true).open(&log).expect("open log");
        f.set_len(record_offset(3, record_len) + 7)
            .expect("truncate");
        drop(f);
        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), ids[..3].to_vec());
        let (more, _) = commit_equal(&q, 1).await;
        drop(q);
        let (_, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending.len(), 4);
        assert_eq!(pending[3].id, more[0]);
    });
}

#[test]
fn flipped_byte_cuts_the_log_and_old_records_beyond_stay_dead() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        let (ids, record_len) = commit_equal(&q, 5).await;
        drop(q);
        let log = logs(&dir, "seg-").remove(0);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log)
            .expect("open log");
        let at = record_offset(2, record_len) + 60;
        let mut byte = [0];
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.read_exact(&mut byte).expect("read");
        f.seek(SeekFrom::Start(at)).expect("seek");
        f.write_all(&[byte[0] ^ 1]).expect("write");
        drop(f);

        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), ids[..2].to_vec());
        // One record of the same length lands exactly where record 2 was; intact old record
        // 3 (same segment, sequence 3) follows it but has an older generation.
        let (more, _) = commit_equal(&q, 1).await;
        assert_eq!(more[0].index, 2);
        drop(q);
        let (_, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), vec![ids[0], ids[1], more[0]]);
    });
}

#[test]
fn scan_lists_a_running_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q0, _) = open(&dir, 1 << 20).await;
        let (q1, _) = ShardQueue::open(&dir, 1, opts(1 << 20))
            .await
            .expect("shard 1 opens");
        let a = q0.commit(&envelope(0, 2), b"a").await.expect("commit");
        let b = q1.commit(&envelope(1, 1), b"b").await.expect("commit");
        let c = q0.commit(&envelope(2, 1), b"c").await.expect("commit");
        q0.record(a, 1, Outcome::Failed).await.expect("record");
        q0.record(c, 0, Outcome::Delivered).await.expect("record");
        let listed = scan(&dir).expect("scan");
        assert_eq!(pending_ids(&listed), vec![a, b]);
        assert_eq!(listed[0].states[1], RecipientState::Failed);
        assert_eq!(listed[1].envelope, envelope(1, 1));
        assert_eq!(listed[1].id.shard(), 1);
        // A half-written record at the tail is simply not listed.
        let log = logs(&dir, "seg-").remove(0);
        let end = q0.stats().bytes;
        let mut f = OpenOptions::new().write(true).open(&log).expect("open log");
        f.seek(SeekFrom::Start(end)).expect("seek");
        f.write_all(&record::MAGIC.to_le_bytes()).expect("write");
        drop(f);
        assert_eq!(scan(&dir).expect("scan").len(), 2);
    });
}

#[test]
fn a_caller_that_gives_up_does_not_stall_the_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        // Poll a commit once (it queues its record) and drop it, as a timed-out session would.
        let first = futures_lite::future::poll_once(q.commit(&envelope(0, 1), b"dropped")).await;
        assert!(first.is_none(), "a commit cannot be durable after one poll");
        // Later commits still complete, and the dropped one was settled all the same.
        let id = q.commit(&envelope(1, 1), b"kept").await.expect("commit");
        // Its settling task may run just after ours.
        for _ in 0..100 {
            if q.stats().messages_pending == 2 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(q.stats().messages_pending, 2);
        let dropped = MessageId { index: 0, ..id };
        assert_eq!(q.read_message(dropped).await.expect("read"), b"dropped");
        q.close().await.expect("close");
    });
}

#[test]
fn torn_state_tail_loses_only_the_torn_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let (q, _) = open(&dir, 1 << 20).await;
        let a = q.commit(&envelope(0, 1), b"a").await.expect("commit");
        let b = q.commit(&envelope(1, 1), b"b").await.expect("commit");
        q.record(a, 0, Outcome::Delivered).await.expect("record");
        let deferred = Outcome::Deferred {
            attempts: 1,
            next_attempt: 77,
        };
        q.record(b, 0, deferred).await.expect("record");
        drop(q);
        let state = logs(&dir, "seg-").remove(0).with_extension("state");
        let one = (record::HEADER_LEN + record::STATE_PAYLOAD_LEN) as u64;
        let f = OpenOptions::new().write(true).open(&state).expect("open");
        f.set_len(one + one / 2).expect("truncate");
        drop(f);

        let (q, pending) = open(&dir, 1 << 20).await;
        assert_eq!(pending_ids(&pending), vec![b]);
        assert_eq!(
            pending[0].states,
            vec![RecipientState::Pending {
                attempts: 0,
                next_attempt: 0
            }]
        );
        q.record(b, 0, Outcome::Delivered).await.expect("record");
        drop(q);
        let (q, pending) = open(&dir, 1 << 20).await;
        assert!(pending.is_empty());
        assert_eq!(q.stats().messages_pending, 0);
    });
}

/// A failed batch can leave a hole in any file it touched (here the second file's bytes are
/// never written after the first file's write fails): a later batch's bytes for that file
/// must not be written or acknowledged, even when its own write and sync would succeed.
#[test]
fn a_failed_batch_fails_every_later_batch_on_its_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let bad_path = dir.join("read-only");
        fs::write(&bad_path, b"x").expect("write");
        let open_rw = |path: PathBuf| async move {
            glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .buffered_open(&path)
                .await
                .expect("open")
        };
        // Opened read-only, so every write to it fails.
        let bad = Rc::new(
            glommio::io::BufferedFile::open(&bad_path)
                .await
                .expect("open"),
        );
        let good = Rc::new(open_rw(dir.join("good")).await);
        let other = Rc::new(open_rw(dir.join("other")).await);
        let (bad_path, good_path, other_path) = (
            Rc::new(bad_path),
            Rc::new(dir.join("good")),
            Rc::new(dir.join("other")),
        );
        let batcher = commit::Batcher::new();
        let first = batcher.enqueue(&bad, &bad_path, 0, vec![1; 10]);
        batcher.enqueue(&good, &good_path, 0, vec![2; 10]);
        assert!(batcher.wait(first).await.is_err());
        let second = batcher.enqueue(&good, &good_path, 10, vec![3; 10]);
        assert!(second > first);
        assert!(
            batcher.wait(second).await.is_err(),
            "a batch after a hole was acknowledged"
        );
        assert_eq!(fs::metadata(&*good_path).expect("stat").len(), 0);
        let third = batcher.enqueue(&other, &other_path, 0, vec![4; 10]);
        batcher
            .wait(third)
            .await
            .expect("an untouched file still commits");
        assert_eq!(fs::metadata(&*other_path).expect("stat").len(), 10);
    });
}
