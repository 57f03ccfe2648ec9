//! The HTTP control plane: metrics, health, the queue API and the injection API, served by
//! hyper on the sidecar thread (DESIGN.md: everything tokio-bound lives there), never on a
//! shard. Off unless `[http] listen` is set (the embedded default uses 127.0.0.1:2580).
//!
//! | method and path                     | token | what                                                  |
//! |-------------------------------------|-------|-------------------------------------------------------|
//! | `GET /metrics`                      | no    | Prometheus/OpenMetrics text (src/metrics/)            |
//! | `GET /healthz`                      | no    | 200 when every shard serves with its queue recovered, else 503 |
//! | `GET /api/status`                   | yes   | paused or running, recipients pending, per shard      |
//! | `GET /api/queue`                    | yes   | list; `?domain=&state=&min_age=&max_age=&limit=`      |
//! | `GET /api/queue/ID`                 | yes   | one message                                           |
//! | `POST /api/queue/flush`             | yes   | retry every deferred recipient now                    |
//! | `POST /api/queue/pause`, `/resume`  | yes   | stop or restart starting deliveries                   |
//! | `POST /api/queue/ID/delete`         | yes   | drop a message (no bounce); also `DELETE /api/queue/ID` |
//! | `POST /api/queue/ID/bounce`         | yes   | return a message to its sender                        |
//! | `POST /api/inject`                  | yes   | queue personalised messages (inject.rs)               |
//!
//! The queue operations are the control socket's (crate::control) and `ringmail queue`'s; the
//! injected messages are committed by the shards (shard_service.rs) through the same group
//! commit as SMTP before the call answers.
//!
//! The listener is bound on the main thread before root is dropped, like the mail listeners,
//! so a port below 1024 works when ringmail starts as root.

mod inject;
mod queue_api;
mod routes;
mod server;
pub mod shard_service;

pub use shard_service::{ShardRequest, channels, serve_shard};

use crate::config::Config;
use crate::control::ControlRequester;
use crate::relay::access::RcptPolicy;
use crate::sidecar::Sidecar;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What the HTTP plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The bearer token; `None`: the API answers 403.
    pub token: Option<String>,
    pub max_body_size: usize,
    pub max_requests_per_sec: u32,
    pub max_inject_recipients: usize,
    pub hostname: String,
    pub max_message_size: usize,
    pub queue_dir: PathBuf,
}

impl HttpSettings {
    /// From the configuration and the token read by [`read_token`].
    pub fn new(config: &Config, token: Option<String>) -> HttpSettings {
        HttpSettings {
            token,
            max_body_size: config.http.max_body_size,
            max_requests_per_sec: config.http.max_requests_per_sec,
            max_inject_recipients: config.http.max_inject_recipients,
            hostname: config.server.hostname.clone(),
            max_message_size: config.smtp.max_message_size,
            queue_dir: config.queue_dir(),
        }
    }
}

/// Reads `http.token`, or the first line of `http.token_file` (before the privilege drop, so
/// the file may be root's alone).
pub fn read_token(config: &Config) -> Result<Option<String>, String> {
    if let Some(path) = &config.http.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("http.token_file: cannot read {}: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.len() < 16 || token.contains(|c: char| !c.is_ascii_graphic()) {
            return Err(format!(
                "http.token_file: {}: the token must be at least 16 printable characters",
                path.display()
            ));
        }
        return Ok(Some(token));
    }
    Ok((!config.http.token.is_empty()).then(|| config.http.token.clone()))
}

/// Binds the listener (plainly, no `SO_REUSEPORT`: one process, one sidecar serves it).
pub fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("http: `{addr}` is not ip:port"))?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program, or another ringmail, listens there)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need ringmail to be started as root, or CAP_NET_BIND_SERVICE)"
            }
            _ => "",
        };
        format!("http cannot listen on {addr}: {e}{hint}")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("http on {addr}: {e}"))?;
    Ok(listener)
}

/// Everything a request handler reaches: shared by every connection on the sidecar.
pub struct Plane {
    pub settings: HttpSettings,
    limiter: server::RateLimiter,
    /// Shard `i`'s HTTP channel.
    shards: Vec<flume::Sender<ShardRequest>>,
    control: ControlRequester,
    /// The recipient rules, as SMTP applies them (a copy for the sidecar).
    policy: Arc<RcptPolicy>,
    local: SocketAddr,
    /// Round-robin start for spreading injected messages over the shards.
    next_shard: std::sync::atomic::AtomicUsize,
}

/// The running listener; dropping it stops accepting.
pub struct HttpServer {
    accept: tokio::task::JoinHandle<()>,
    local: SocketAddr,
}

impl HttpServer {
    /// Serves `listener` on the sidecar.
    pub fn start(
        sidecar: &Sidecar,
        listener: std::net::TcpListener,
        settings: HttpSettings,
        config: &Config,
        shards: Vec<flume::Sender<ShardRequest>>,
        control: ControlRequester,
    ) -> std::io::Result<HttpServer> {
        let local = listener.local_addr()?;
        let listener = {
            // from_std registers with the runtime's reactor, which must be the current one.
            let _runtime = sidecar.handle().enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let plane = Arc::new(Plane {
            limiter: server::RateLimiter::new(settings.max_requests_per_sec),
            settings,
            shards,
            control,
            policy: Arc::new(RcptPolicy::new(config)),
            local,
            next_shard: Default::default(),
        });
        let accept = sidecar.handle().spawn(server::accept_loop(listener, plane));
        Ok(HttpServer { accept, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A response: status, content type, body, extra headers.
pub struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message.into() }))
    }

    pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Reply {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}
