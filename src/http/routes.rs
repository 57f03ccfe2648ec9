//! The route table (one `match`) and the handlers that are not the queue API's: /metrics,
//! /healthz and the injection call.

use super::inject::{InjectRequest, InjectRules, Prepared, prepare};
use super::{Plane, Reply, ShardRequest, queue_api};
use crate::control::ControlRequest;
use crate::envelope::Envelope;
use crate::metrics::DestinationSample;
use crate::queue::MessageId;
use crate::smtp::PeerInfo;
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

/// How long a scrape or a health check waits for the shards.
const SHARD_ANSWER: Duration = Duration::from_secs(2);

/// How long an injection waits for the shards to make its messages durable.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Dispatches one request that passed the guards (server.rs).
pub async fn route(
    plane: &Plane,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Bytes,
    remote: SocketAddr,
) -> Reply {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => metrics(plane).await,
        (&Method::GET, ["healthz"]) => healthz(plane).await,
        (&Method::GET, ["api", "status"]) => {
            queue_api::control(plane, ControlRequest::Status).await
        }
        (&Method::GET, ["api", "queue"]) => queue_api::list(plane, query).await,
        (&Method::POST, ["api", "queue", "flush"]) => {
            queue_api::control(plane, ControlRequest::Flush).await
        }
        (&Method::POST, ["api", "queue", "pause"]) => {
            queue_api::control(plane, ControlRequest::Pause).await
        }
        (&Method::POST, ["api", "queue", "resume"]) => {
            queue_api::control(plane, ControlRequest::Resume).await
        }
        (&Method::GET, ["api", "queue", id]) => match parse_id(id) {
            Ok(id) => queue_api::show(plane, id).await,
            Err(reply) => reply,
        },
        (&Method::DELETE, ["api", "queue", id])
        | (&Method::POST, ["api", "queue", id, "delete"]) => match parse_id(id) {
            Ok(id) => queue_api::control(plane, ControlRequest::Delete(id)).await,
            Err(reply) => reply,
        },
        (&Method::POST, ["api", "queue", id, "bounce"]) => match parse_id(id) {
            Ok(id) => queue_api::control(plane, ControlRequest::Bounce(id)).await,
            Err(reply) => reply,
        },
        (&Method::POST, ["api", "inject"]) => inject(plane, &body, remote).await,
        _ if known_path(&segments) => Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => Reply::error(StatusCode::NOT_FOUND, format!("no such endpoint {path}")),
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["metrics"] | ["healthz"] | ["api", "status"] | ["api", "queue", ..] | ["api", "inject"]
    )
}

fn parse_id(text: &str) -> Result<MessageId, Reply> {
    text.parse().map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            format!("bad message id `{text}`: {e}"),
        )
    })
}

/// Asks every shard for its destinations; `None` for a shard that did not answer in time.
async fn ask_shards(plane: &Plane) -> Vec<Option<Vec<DestinationSample>>> {
    let deadline = tokio::time::Instant::now() + SHARD_ANSWER;
    let mut waiting = Vec::new();
    for shard in &plane.shards {
        let (reply, answer) = flume::bounded(1);
        let sent = tokio::time::timeout_at(
            deadline,
            shard.send_async(ShardRequest::Destinations { reply }),
        )
        .await;
        waiting.push(matches!(sent, Ok(Ok(()))).then_some(answer));
    }
    let mut answers = Vec::new();
    for answer in waiting {
        answers.push(match answer {
            Some(answer) => tokio::time::timeout_at(deadline, answer.recv_async())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        });
    }
    answers
}

/// `GET /metrics`.
async fn metrics(plane: &Plane) -> Reply {
    let destinations = ask_shards(plane)
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    let scrape = crate::metrics::Scrape::take(destinations, crate::clock::now_unix());
    Reply::text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        crate::metrics::encode(scrape),
    )
}

/// `GET /healthz`: every shard ready (queue recovered, serving) and answering now.
async fn healthz(plane: &Plane) -> Reply {
    let answers = ask_shards(plane).await;
    let shards: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(shard, answer)| {
            let ready = crate::metrics::slot(shard).is_some_and(|c| c.ready.load(Relaxed));
            json!({"shard": shard, "ready": ready, "answering": answer.is_some()})
        })
        .collect();
    let healthy = crate::metrics::all_ready() && answers.iter().all(Option::is_some);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Reply::json(
        status,
        &json!({"status": if healthy { "ok" } else { "unavailable" }, "shards": shards}),
    )
}

/// `POST /api/inject`: check and build every message, spread them over the shards, and answer
/// once each is durable (or refused).
async fn inject(plane: &Plane, body: &Bytes, remote: SocketAddr) -> Reply {
    let request: InjectRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return Reply::error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}"));
        }
    };
    let policy = Arc::clone(&plane.policy);
    let settings = plane.settings.clone();
    let local = plane.local;
    // The recipient policy may read the passwd file and the mail root: a blocking thread.
    let prepared = tokio::task::spawn_blocking(move || {
        let counted = crate::metrics::CountedPolicy(&*policy);
        let rules = InjectRules {
            hostname: &settings.hostname,
            max_message_size: settings.max_message_size,
            max_recipients: settings.max_inject_recipients,
            max_total_bytes: super::inject::MAX_TOTAL_BYTES,
            policy: &counted,
            // The caller holds the API token: it is authenticated, and may relay as an SMTP
            // AUTH client may. Local-user checks and refused address forms still apply.
            peer: PeerInfo {
                remote,
                local,
                authenticated: true,
            },
            now: SystemTime::now(),
        };
        let recipients: Vec<String> = request.recipients.iter().map(|r| r.to.clone()).collect();
        prepare(&request, &rules).map(|prepared| (recipients, prepared))
    })
    .await;
    let (recipients, prepared) = match prepared {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Reply::error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let results = commit(plane, prepared, remote).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let listed: Vec<Value> = recipients
        .iter()
        .zip(&results)
        .map(|(to, result)| match result {
            Ok(id) => json!({"to": to, "id": id}),
            Err(error) => json!({"to": to, "error": error}),
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        &json!({"accepted": accepted, "refused": results.len() - accepted, "results": listed}),
    )
}

/// One shard's share of an injection: the request positions, and their messages.
type ShardBatch = (Vec<usize>, Vec<(Envelope, Vec<u8>)>);

/// Hands the accepted messages to the shards, round-robin, and gathers each one's queue id in
/// request order.
async fn commit(
    plane: &Plane,
    prepared: Vec<Prepared>,
    remote: SocketAddr,
) -> Vec<Result<String, String>> {
    let shard_count = plane.shards.len().max(1);
    let start = plane.next_shard.fetch_add(1, Relaxed);
    let mut results: Vec<Result<String, String>> = Vec::with_capacity(prepared.len());
    let mut per_shard: Vec<ShardBatch> =
        (0..shard_count).map(|_| (Vec::new(), Vec::new())).collect();
    let mut next = start;
    for (index, item) in prepared.into_iter().enumerate() {
        match item {
            Ok(message) => {
                let (indexes, messages) = &mut per_shard[next % shard_count];
                indexes.push(index);
                messages.push(message);
                next += 1;
                results.push(Err(String::new()));
            }
            Err(why) => results.push(Err(why)),
        }
    }
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    let mut waiting = Vec::new();
    for (shard, (indexes, messages)) in per_shard.into_iter().enumerate() {
        if messages.is_empty() {
            continue;
        }
        let (reply, answer) = flume::bounded(1);
        let request = ShardRequest::Commit {
            messages,
            client: remote,
            reply,
        };
        let sent = match plane.shards.get(shard) {
            Some(sender) => tokio::time::timeout_at(deadline, sender.send_async(request))
                .await
                .is_ok_and(|sent| sent.is_ok()),
            None => false,
        };
        waiting.push((indexes, sent.then_some(answer)));
    }
    for (indexes, answer) in waiting {
        let answered = match answer {
            Some(answer) => tokio::time::timeout_at(deadline, answer.recv_async())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        match answered {
            Some(ids) if ids.len() == indexes.len() => {
                for (index, id) in indexes.into_iter().zip(ids) {
                    results[index] = id;
                }
            }
            _ => {
                // Not known to be durable: the caller must not assume it was queued (it may
                // have been, and would then be delivered; retrying risks a duplicate).
                for index in indexes {
                    results[index] = Err(
                        "451 4.3.0 the shard did not confirm the commit in time; it may or may not be queued"
                            .to_string(),
                    );
                }
            }
        }
    }
    results
}
