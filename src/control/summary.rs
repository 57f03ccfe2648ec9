//! Turning what each shard answered into the one reply the operator reads. Pure: the server
//! gathers the answers, this decides the wording.

use super::protocol::Reply;
use super::{ControlRequest, ShardReply};
use std::time::Duration;

/// What came back from one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardAnswer {
    /// The shard's handler answered.
    Replied(ShardReply),
    /// No answer before the deadline (the shard is stuck or overloaded).
    TimedOut,
    /// The shard's request channel or reply channel closed: it is not serving control requests
    /// (stopped, or failed at startup).
    Gone,
}

/// The reply for `request`, given the answers of the shards it went to (`(shard, answer)`).
pub fn summarize(
    request: &ControlRequest,
    answers: &[(usize, ShardAnswer)],
    timeout: Duration,
) -> Reply {
    match request {
        ControlRequest::Delete(id) | ControlRequest::Bounce(id) => {
            let verb = if matches!(request, ControlRequest::Delete(_)) {
                "deleted"
            } else {
                "bounced"
            };
            match answers.first() {
                Some((_, ShardAnswer::Replied(ShardReply::Done { count }))) => {
                    let what = if verb == "deleted" {
                        "dropped"
                    } else {
                        "returned to the sender"
                    };
                    Reply::ok(format!("{verb} {id}: {} {what}", recipients(*count)))
                }
                // No answer at all: the id names a shard that does not exist.
                None | Some((_, ShardAnswer::Replied(ShardReply::NotFound))) => {
                    Reply::err(format!("no such message {id}"))
                }
                Some((shard, answer)) => {
                    Reply::err(format!("{id}: shard {shard}: {}", problem(answer, timeout)))
                }
            }
        }
        ControlRequest::Flush | ControlRequest::Pause | ControlRequest::Resume => {
            let mut total = 0u64;
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for (shard, answer) in answers {
                match answer {
                    ShardAnswer::Replied(ShardReply::Done { count }) => {
                        total += count;
                        done.push((*shard, *count));
                    }
                    other => failed.push((*shard, problem(other, timeout))),
                }
            }
            let shards = answers.len();
            let summary = match request {
                ControlRequest::Flush => format!("flushed {}", recipients(total)),
                ControlRequest::Pause => format!("delivery paused on {}", shard_count(shards)),
                _ => format!("delivery resumed on {}", shard_count(shards)),
            };
            if failed.is_empty() {
                return Reply::ok(summary);
            }
            // Partly done matters to the operator (some shards are paused, some are not), so
            // the shards that did succeed are listed.
            let details = done
                .iter()
                .map(|(shard, count)| match request {
                    ControlRequest::Flush => {
                        format!("shard {shard}: flushed {}", recipients(*count))
                    }
                    ControlRequest::Pause => format!("shard {shard}: paused"),
                    _ => format!("shard {shard}: resumed"),
                })
                .collect();
            Reply::err(grouped(&failed)).with_details(details)
        }
        ControlRequest::Status => {
            let mut pending_total = 0u64;
            let mut paused_shards = 0usize;
            let mut details = Vec::new();
            let mut failed = Vec::new();
            for (shard, answer) in answers {
                match answer {
                    ShardAnswer::Replied(ShardReply::Status { paused, pending }) => {
                        pending_total += pending;
                        paused_shards += usize::from(*paused);
                        let state = if *paused { "paused" } else { "running" };
                        details.push(format!("shard {shard}: {state}, {pending} pending"));
                    }
                    other => failed.push((*shard, problem(other, timeout))),
                }
            }
            if !failed.is_empty() {
                return Reply::err(grouped(&failed)).with_details(details);
            }
            let state = match paused_shards {
                0 => "running".to_string(),
                n if n == answers.len() => "paused".to_string(),
                n => format!("paused on {n} of {}", shard_count(answers.len())),
            };
            Reply::ok(format!("{state}, {} pending", recipients(pending_total)))
                .with_details(details)
        }
    }
}

/// Why a shard's answer is not a success, for the operator.
fn problem(answer: &ShardAnswer, timeout: Duration) -> String {
    match answer {
        ShardAnswer::Replied(ShardReply::Failed(why)) => why.clone(),
        ShardAnswer::TimedOut => format!("did not answer within {}", seconds(timeout)),
        ShardAnswer::Gone => "is not serving control requests (stopped?)".into(),
        // A handler answering with the wrong kind of reply is a bug in the handler.
        ShardAnswer::Replied(other) => format!("unexpected reply {other:?}"),
    }
}

/// `shard 1: why` or, when several shards failed the same way, `shards 0, 1: why`; different
/// reasons are joined with `; `.
fn grouped(failed: &[(usize, String)]) -> String {
    let mut groups: Vec<(Vec<usize>, &str)> = Vec::new();
    for (shard, why) in failed {
        match groups.iter_mut().find(|(_, w)| w == why) {
            Some((shards, _)) => shards.push(*shard),
            None => groups.push((vec![*shard], why)),
        }
    }
    groups
        .iter()
        .map(|(shards, why)| {
            let list: Vec<String> = shards.iter().map(usize::to_string).collect();
            let noun = if shards.len() == 1 { "shard" } else { "shards" };
            format!("{noun} {}: {why}", list.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn recipients(n: u64) -> String {
    if n == 1 {
        "1 recipient".into()
    } else {
        format!("{n} recipients")
    }
}

fn shard_count(n: usize) -> String {
    if n == 1 {
        "1 shard".into()
    } else {
        format!("{n} shards")
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShardAnswer::*;
    use ShardReply::*;

    const TEN: Duration = Duration::from_secs(10);

    type Answers = Vec<(usize, ShardAnswer)>;

    fn id() -> crate::queue::MessageId {
        "1a.0.3".parse().expect("test id")
    }

    fn text(reply: &Reply) -> String {
        reply.encode()
    }

    #[test]
    fn wording_per_request_and_outcome() {
        let not_wired = || Replied(Failed("not available".into()));
        let cases: Vec<(ControlRequest, Answers, &str)> = vec![
            (
                ControlRequest::Flush,
                vec![
                    (0, Replied(Done { count: 5 })),
                    (1, Replied(Done { count: 7 })),
                ],
                "ok flushed 12 recipients\n",
            ),
            (
                ControlRequest::Flush,
                vec![(0, Replied(Done { count: 1 }))],
                "ok flushed 1 recipient\n",
            ),
            (
                ControlRequest::Flush,
                vec![(0, Replied(Done { count: 5 })), (1, TimedOut)],
                "err shard 1: did not answer within 10 s\nshard 0: flushed 5 recipients\n",
            ),
            (
                ControlRequest::Pause,
                vec![
                    (0, Replied(Done { count: 0 })),
                    (1, Replied(Done { count: 0 })),
                ],
                "ok delivery paused on 2 shards\n",
            ),
            (
                ControlRequest::Pause,
                vec![(0, not_wired()), (1, not_wired())],
                "err shards 0, 1: not available\n",
            ),
            (
                ControlRequest::Resume,
                vec![(0, Gone), (1, Replied(Done { count: 0 })), (2, TimedOut)],
                "err shard 0: is not serving control requests (stopped?); \
                 shard 2: did not answer within 10 s\nshard 1: resumed\n",
            ),
            (
                ControlRequest::Delete(id()),
                vec![(0, Replied(Done { count: 2 }))],
                "ok deleted 1a.0.3: 2 recipients dropped\n",
            ),
            (
                ControlRequest::Bounce(id()),
                vec![(0, Replied(Done { count: 1 }))],
                "ok bounced 1a.0.3: 1 recipient returned to the sender\n",
            ),
            (
                ControlRequest::Delete(id()),
                vec![(0, Replied(NotFound))],
                "err no such message 1a.0.3\n",
            ),
            (
                ControlRequest::Bounce(id()),
                vec![],
                "err no such message 1a.0.3\n",
            ),
            (
                ControlRequest::Bounce(id()),
                vec![(0, TimedOut)],
                "err 1a.0.3: shard 0: did not answer within 10 s\n",
            ),
            (
                ControlRequest::Delete(id()),
                vec![(0, Replied(Failed("disk full".into())))],
                "err 1a.0.3: shard 0: disk full\n",
            ),
            (
                ControlRequest::Status,
                vec![
                    (
                        0,
                        Replied(Status {
                            paused: false,
                            pending: 5,
                        }),
                    ),
                    (
                        1,
                        Replied(Status {
                            paused: false,
                            pending: 7,
                        }),
                    ),
                ],
                "ok running, 12 recipients pending\nshard 0: running, 5 pending\n\
                 shard 1: running, 7 pending\n",
            ),
            (
                ControlRequest::Status,
                vec![
                    (
                        0,
                        Replied(Status {
                            paused: true,
                            pending: 0,
                        }),
                    ),
                    (
                        1,
                        Replied(Status {
                            paused: true,
                            pending: 1,
                        }),
                    ),
                ],
                "ok paused, 1 recipient pending\nshard 0: paused, 0 pending\n\
                 shard 1: paused, 1 pending\n",
            ),
            (
                ControlRequest::Status,
                vec![
                    (
                        0,
                        Replied(Status {
                            paused: true,
                            pending: 0,
                        }),
                    ),
                    (
                        1,
                        Replied(Status {
                            paused: false,
                            pending: 0,
                        }),
                    ),
                ],
                "ok paused on 1 of 2 shards, 0 recipients pending\nshard 0: paused, 0 pending\n\
                 shard 1: running, 0 pending\n",
            ),
            (
                ControlRequest::Status,
                vec![
                    (
                        0,
                        Replied(Status {
                            paused: false,
                            pending: 3,
                        }),
                    ),
                    (1, Replied(Done { count: 0 })),
                ],
                "err shard 1: unexpected reply Done { count: 0 }\nshard 0: running, 3 pending\n",
            ),
        ];
        for (request, answers, want) in cases {
            let got = text(&summarize(&request, &answers, TEN));
            assert_eq!(got, want, "{request:?} {answers:?}");
        }
    }

    #[test]
    fn timeout_wording_keeps_fractions() {
        let reply = summarize(
            &ControlRequest::Flush,
            &[(0, TimedOut)],
            Duration::from_millis(300),
        );
        assert_eq!(reply.text, "shard 0: did not answer within 0.3 s");
    }
}
