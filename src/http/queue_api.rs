//! The queue API: list and show read the queue directory as `ringmail queue list` does (off
//! the shards, on a blocking thread); flush, pause, resume, delete, bounce and status go to
//! the shards as control requests (crate::control), exactly as `ringmail queue flush` does.

use super::{Plane, Reply};
use crate::clock::{iso_datetime, now_unix};
use crate::control::ControlRequest;
use crate::queue::{MessageId, QueuedMessage, RecipientState};
use hyper::StatusCode;
use serde_json::{Value, json};

/// What `GET /api/queue` filters by.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only messages with a recipient at this domain (exact, case-insensitive).
    pub domain: Option<String>,
    /// Only messages with a recipient in this state.
    pub state: Option<StateFilter>,
    /// Only messages at least this many seconds old.
    pub min_age: Option<u64>,
    /// Only messages at most this many seconds old.
    pub max_age: Option<u64>,
    /// At most this many messages (oldest first).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Not yet delivered (never tried, or deferred).
    Pending,
    /// Tried and deferred at least once.
    Deferred,
    Delivered,
    Failed,
}

impl ListFilter {
    /// Parses a query string (`domain=x&state=deferred&min_age=60`).
    pub fn parse(query: Option<&str>) -> Result<ListFilter, String> {
        let mut filter = ListFilter::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{key}: `{v}` is not a number of seconds"))
            };
            match key {
                "domain" => filter.domain = Some(value.to_ascii_lowercase()),
                "state" => {
                    filter.state = Some(match value.as_str() {
                        "pending" => StateFilter::Pending,
                        "deferred" => StateFilter::Deferred,
                        "delivered" => StateFilter::Delivered,
                        "failed" => StateFilter::Failed,
                        other => {
                            return Err(format!(
                                "state: `{other}` is not one of pending, deferred, delivered, failed"
                            ));
                        }
                    })
                }
                "min_age" => filter.min_age = Some(number(&value)?),
                "max_age" => filter.max_age = Some(number(&value)?),
                "limit" => {
                    filter.limit = Some(
                        value
                            .parse()
                            .map_err(|_| format!("limit: `{value}` is not a number"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}` (domain, state, min_age, max_age, limit)"
                    ));
                }
            }
        }
        Ok(filter)
    }

    fn matches(&self, message: &QueuedMessage, now: u64) -> bool {
        let age = now.saturating_sub(message.envelope.received_at);
        if self.min_age.is_some_and(|min| age < min) || self.max_age.is_some_and(|max| age > max) {
            return false;
        }
        message
            .envelope
            .recipients
            .iter()
            .zip(&message.states)
            .any(|(recipient, state)| {
                let domain_ok = self.domain.as_ref().is_none_or(|domain| {
                    recipient
                        .rsplit_once('@')
                        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
                });
                let state_ok = self.state.is_none_or(|wanted| match (wanted, state) {
                    (StateFilter::Pending, RecipientState::Pending { .. }) => true,
                    (StateFilter::Deferred, RecipientState::Pending { attempts, .. }) => {
                        *attempts > 0
                    }
                    (StateFilter::Delivered, RecipientState::Delivered) => true,
                    (StateFilter::Failed, RecipientState::Failed) => true,
                    _ => false,
                });
                domain_ok && state_ok
            })
    }
}

/// `%XX` and `+` decoding for query values; a `%` not followed by two hex digits stays.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One message as JSON.
pub fn message_json(message: &QueuedMessage) -> Value {
    let recipients: Vec<Value> = message
        .envelope
        .recipients
        .iter()
        .zip(&message.states)
        .map(|(address, state)| match state {
            RecipientState::Delivered => json!({"address": address, "state": "delivered"}),
            RecipientState::Failed => json!({"address": address, "state": "failed"}),
            RecipientState::Pending {
                attempts: 0,
                next_attempt,
            } => json!({"address": address, "state": "pending", "attempts": 0,
                        "next_attempt": iso_datetime(*next_attempt)}),
            RecipientState::Pending {
                attempts,
                next_attempt,
            } => json!({"address": address, "state": "deferred", "attempts": attempts,
                        "next_attempt": iso_datetime(*next_attempt)}),
        })
        .collect();
    json!({
        "id": message.id.to_string(),
        "received_at": iso_datetime(message.envelope.received_at),
        "age_seconds": now_unix().saturating_sub(message.envelope.received_at),
        "size": message.size,
        "sender": message.envelope.sender,
        "recipients": recipients,
    })
}

/// Reads the queue directory on a blocking thread.
async fn scan(plane: &Plane) -> Result<Vec<QueuedMessage>, Reply> {
    let dir = plane.settings.queue_dir.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        crate::queue::scan(&dir).map_err(|e| format!("cannot read the queue: {e}"))
    })
    .await;
    match scanned {
        Ok(Ok(mut messages)) => {
            messages.sort_by_key(|m| (m.envelope.received_at, m.id.to_string()));
            Ok(messages)
        }
        Ok(Err(e)) => Err(Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// `GET /api/queue`.
pub async fn list(plane: &Plane, query: Option<&str>) -> Reply {
    let filter = match ListFilter::parse(query) {
        Ok(filter) => filter,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e),
    };
    let messages = match scan(plane).await {
        Ok(messages) => messages,
        Err(reply) => return reply,
    };
    let now = now_unix();
    let matching: Vec<Value> = messages
        .iter()
        .filter(|m| filter.matches(m, now))
        .take(filter.limit.unwrap_or(usize::MAX))
        .map(message_json)
        .collect();
    Reply::json(
        StatusCode::OK,
        &json!({"count": matching.len(), "messages": matching}),
    )
}

/// `GET /api/queue/ID`.
pub async fn show(plane: &Plane, id: MessageId) -> Reply {
    let messages = match scan(plane).await {
        Ok(messages) => messages,
        Err(reply) => return reply,
    };
    match messages.iter().find(|m| m.id == id) {
        Some(message) => Reply::json(StatusCode::OK, &message_json(message)),
        None => Reply::error(StatusCode::NOT_FOUND, format!("no such message {id}")),
    }
}

/// Flush, pause, resume, delete, bounce, status: one control request to the shards.
pub async fn control(plane: &Plane, request: ControlRequest) -> Reply {
    let reply = plane.control.request(request, "http").await;
    let status = if reply.ok {
        StatusCode::OK
    } else if reply.text.starts_with("no such message") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "ok": reply.ok, "result": reply.text, "details": reply.details });
    if !reply.ok {
        body["error"] = Value::String(reply.text.clone());
    }
    Reply::json(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        assert_eq!(ListFilter::parse(None), Ok(ListFilter::default()));
        let f = ListFilter::parse(Some("domain=Example.ORG&state=deferred&min_age=60&limit=5"))
            .unwrap();
        assert_eq!(f.domain.as_deref(), Some("example.org"));
        assert_eq!(f.state, Some(StateFilter::Deferred));
        assert_eq!(f.min_age, Some(60));
        assert_eq!(f.limit, Some(5));
        assert_eq!(
            ListFilter::parse(Some("state=stuck")).unwrap_err(),
            "state: `stuck` is not one of pending, deferred, delivered, failed"
        );
        assert_eq!(
            ListFilter::parse(Some("min_age=soon")).unwrap_err(),
            "min_age: `soon` is not a number of seconds"
        );
        assert!(ListFilter::parse(Some("color=red")).is_err());
        assert_eq!(percent_decode("a%40b+c%zz%4"), "a@b c%zz%4");
    }
}
