//! The HTTP listener on the sidecar's tokio runtime (hyper 1, HTTP/1.1): accept, serve each
//! connection, and guard every request before a route sees it: the rate cap, the bearer token,
//! the body cap. Every error is a JSON object `{"error": "..."}`.

use super::routes;
use super::{Plane, Reply};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use log::{debug, warn};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a client has to send a request's header section.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the task is aborted.
pub async fn accept_loop(listener: tokio::net::TcpListener, plane: Arc<Plane>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                crate::metrics::connection_opened(crate::metrics::Listener::Http);
                let _ = stream.set_nodelay(true);
                let plane = Arc::clone(&plane);
                tokio::spawn(async move {
                    crate::metrics::session_started(crate::metrics::Listener::Http);
                    let service = hyper::service::service_fn(move |request| {
                        let plane = Arc::clone(&plane);
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(&plane, request, remote).await)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(io, service)
                        .await;
                    if let Err(e) = served {
                        debug!("http {remote}: {e}");
                    }
                    crate::metrics::session_ended(crate::metrics::Listener::Http);
                });
            }
            Err(e) => {
                // EMFILE and friends: pause instead of spinning.
                warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One request, start to end.
async fn handle(
    plane: &Plane,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let reply = guarded(plane, request, remote).await;
    let status = reply.status;
    if status.is_client_error() || status.is_server_error() {
        log::info!("http {remote}: {method} {path}: {}", status.as_u16());
    }
    reply.into_response()
}

async fn guarded(plane: &Plane, request: Request<Incoming>, remote: SocketAddr) -> Reply {
    let path = request.uri().path();
    // /metrics and /healthz are for monitoring: open, and not rate capped, so a flood of API
    // calls cannot blind the dashboards.
    let open = matches!(path, "/metrics" | "/healthz");
    if !open {
        if !plane.limiter.allow() {
            crate::metrics::refused(crate::metrics::Refusal::RateLimited);
            return Reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests (limit {} per second)",
                    plane.settings.max_requests_per_sec
                ),
            );
        }
        if let Err(reply) = check_token(plane, &request) {
            return reply;
        }
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(plane, &parts.headers, body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    routes::route(
        plane,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        body,
        remote,
    )
    .await
}

/// The bearer token (RFC 6750 §2.1), compared in constant time.
fn check_token(plane: &Plane, request: &Request<Incoming>) -> Result<(), Reply> {
    let Some(expected) = plane.settings.token.as_deref() else {
        return Err(Reply::error(
            StatusCode::FORBIDDEN,
            "the API is disabled: no http.token or http.token_file is configured",
        ));
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        None => Err(Reply::error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)",
        )
        .with_header(WWW_AUTHENTICATE, "Bearer realm=\"ringmail\"")),
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => {
            crate::metrics::refused(crate::metrics::Refusal::AuthFailed);
            Err(
                Reply::error(StatusCode::UNAUTHORIZED, "wrong bearer token").with_header(
                    WWW_AUTHENTICATE,
                    "Bearer realm=\"ringmail\", error=\"invalid_token\"",
                ),
            )
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole body, at most `http.max_body_size` bytes: a declared length over the cap is
/// refused before a byte is read, and an undeclared one as soon as it passes the cap.
async fn read_body(
    plane: &Plane,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, Reply> {
    let cap = plane.settings.max_body_size;
    let too_big = || {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (limit {cap} bytes)"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > cap as u64) {
        return Err(too_big());
    }
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// A token bucket shared by every connection: `rate` requests a second, bursts up to `rate`.
/// The lock is the sidecar's alone, held for a few arithmetic steps; no shard ever touches it.
pub struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_sec: u32) -> RateLimiter {
        let rate = f64::from(per_sec.max(1));
        RateLimiter {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    pub fn allow(&self) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Reply {
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_refuses() {
        let limiter = RateLimiter::new(5);
        let allowed = (0..20).filter(|_| limiter.allow()).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        std::thread::sleep(Duration::from_millis(450));
        assert!(limiter.allow());
    }

    #[test]
    fn tokens_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
