//! The SMTP client's driver: the only code touching the socket. It connects (TCP_NODELAY, a
//! connect timeout), moves bytes between the socket and the sans-IO [`Session`], upgrades to
//! TLS after STARTTLS and runs the RFC 5321 §4.5.3.2 clocks.
//!
//! Clocks: `connect_timeout`; `greeting_timeout` (§4.5.3.2.1); `command_timeout` for every
//! command reply, the reply to DATA (§4.5.3.2.5) and each write of the data block
//! (§4.5.3.2.5); `data_timeout` for the reply to the end of data (§4.5.3.2.6).

use super::body::encode_data;
use super::outcome::{ClientError, ClientErrorKind, RecipientResult, Stage};
use super::reply::{ReplyError, parse_reply};
use super::session::{Action, Outgoing, Session, TlsMode, Wait};
use super::tls_config;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest single write of the data block; each gets its own `command_timeout`.
const WRITE_CHUNK: usize = 64 * 1024;

/// What every client connection on a shard shares: the name we give, the clocks, TLS configs.
#[derive(Clone)]
pub struct ClientSettings {
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub greeting_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Web PKI roots plus the extra CAs: for [`TlsMode::Verify`].
    pub tls_verified: Arc<rustls::ClientConfig>,
    /// Accepts any certificate (RFC 7435 opportunistic TLS): for [`TlsMode::Opportunistic`].
    pub tls_unverified: Arc<rustls::ClientConfig>,
}

impl ClientSettings {
    /// Builds both TLS configs; `extra_ca_file` holds PEM CA certificates trusted beside the
    /// built-in web PKI roots (`relay.tls_ca_file`). The error names the file.
    pub fn new(
        helo_name: impl Into<String>,
        connect_timeout: Duration,
        greeting_timeout: Duration,
        command_timeout: Duration,
        data_timeout: Duration,
        extra_ca_file: Option<&Path>,
    ) -> Result<ClientSettings, String> {
        Ok(ClientSettings {
            helo_name: helo_name.into(),
            connect_timeout,
            greeting_timeout,
            command_timeout,
            data_timeout,
            tls_verified: tls_config::verified(extra_ca_file)?,
            tls_unverified: tls_config::unverified()?,
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// Between taking the plain stream and getting the TLS one back.
    Gone,
}

/// One open connection to a remote SMTP server, ready for transactions.
pub struct SmtpClient {
    stream: Stream,
    session: Session,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    server_name: String,
    addr: SocketAddr,
    tls_mode: TlsMode,
    tls_info: Option<String>,
    settings: ClientSettings,
}

/// Connects to `addr`, reads the greeting, says EHLO (or HELO) and does STARTTLS as `tls` says.
/// `server_name` is the name the certificate must match in [`TlsMode::Verify`] (the MX host).
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    tls: TlsMode,
    settings: &ClientSettings,
) -> Result<SmtpClient, ClientError> {
    connect_from(addr, server_name, tls, settings, &Bind::default()).await
}

/// Where an outbound connection comes from: a local address to bind() before connecting (a
/// source-IP pool's member) and the EHLO name that goes with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    /// `None`: the kernel picks the source address.
    pub address: Option<IpAddr>,
    /// `None`: `ClientSettings::helo_name`.
    pub helo: Option<String>,
}

/// [`connect`] from the source `bind` names.
pub async fn connect_from(
    addr: SocketAddr,
    server_name: &str,
    tls: TlsMode,
    settings: &ClientSettings,
    bind: &Bind,
) -> Result<SmtpClient, ClientError> {
    let connected = match bind.address {
        None => timed(settings.connect_timeout, TcpStream::connect(addr)).await,
        Some(source) => timed(settings.connect_timeout, connect_bound(source, addr))
            .await
            .map(|r| r.map_err(glommio::GlommioError::from)),
    };
    let helo_name = bind.helo.as_deref().unwrap_or(&settings.helo_name);
    let stream = match connected {
        None => return Err(ClientError::new(Stage::Connect, ClientErrorKind::Timeout)),
        Some(Err(e)) => {
            // Keeps the io::ErrorKind (ConnectionRefused, ...) for the caller.
            let e = std::io::Error::from(e);
            return Err(ClientError::new(
                Stage::Connect,
                ClientErrorKind::Connect(e),
            ));
        }
        Some(Ok(s)) => s,
    };
    // The body and the final dot are one write, but commands are small writes too: no Nagle.
    let _ = stream.set_nodelay(true);
    let mut client = SmtpClient {
        stream: Stream::Plain(stream),
        session: Session::new(helo_name, tls),
        inbuf: Vec::with_capacity(4096),
        out: Vec::with_capacity(1024),
        server_name: server_name.to_string(),
        addr,
        tls_mode: tls,
        tls_info: None,
        settings: settings.clone(),
    };
    match client.drive(Action::Read(Wait::Greeting), &[]).await? {
        Action::Ready => Ok(client),
        other => Err(client.protocol(format!("unexpected step {other:?}"))),
    }
}

impl SmtpClient {
    /// Sends one message in one transaction; results in recipient order. An `Err` applies to
    /// every recipient (the connection failed); the client is then not reusable.
    pub async fn send(&mut self, msg: &Outgoing<'_>) -> Result<Vec<RecipientResult>, ClientError> {
        if !self.session.is_reusable() {
            return Err(self.protocol("connection is not reusable".into()));
        }
        let first = self.session.begin(msg, &mut self.out);
        match self.drive(first, msg.body).await? {
            Action::Done(results) => Ok(results),
            other => Err(self.protocol(format!("unexpected step {other:?}"))),
        }
    }

    /// Whether another transaction may go over this connection: false after a 421, a protocol
    /// error, an I/O error or a timeout.
    pub fn is_reusable(&self) -> bool {
        self.session.is_reusable()
    }

    /// The TLS version and cipher suite, e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`; `None` when
    /// the connection is plaintext.
    pub fn tls(&self) -> Option<String> {
        self.tls_info.clone()
    }

    /// The server's name (as given to [`connect`]) and address, for logs and `Remote-MTA`.
    pub fn peer(&self) -> (&str, SocketAddr) {
        (&self.server_name, self.addr)
    }

    /// The name the server gave in its greeting.
    pub fn greeting_name(&self) -> &str {
        self.session.greeting_name()
    }

    /// The TLS policy this connection was opened with.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls_mode
    }

    /// Says QUIT (when the connection is still in a state to) and closes it.
    pub async fn quit(mut self) {
        if self.session.is_reusable() {
            let action = self.session.quit(&mut self.out);
            let _ = self.drive(action, &[]).await;
        }
        // A peer that stopped reading must not hold the caller past the command clock.
        let limit = self.settings.command_timeout;
        let _ = match &mut self.stream {
            Stream::Plain(s) => timed(limit, s.close()).await,
            Stream::Tls(s) => timed(limit, s.close()).await,
            Stream::Gone => None,
        };
    }

    /// Runs the session until it is ready, done or closed; writes what it asks first.
    async fn drive(&mut self, mut action: Action, body: &[u8]) -> Result<Action, ClientError> {
        loop {
            if let Action::Fail(e) = action {
                // The session's QUIT is a courtesy: a peer that already hung up must not turn
                // its refusal into an I/O error.
                let _ = self.flush().await;
                self.session.abort();
                return Err(e);
            }
            self.flush().await?;
            action = match action {
                Action::Read(wait) => {
                    let reply = self.read_reply(wait).await?;
                    self.session.on_reply(reply, &mut self.out)
                }
                Action::StartTls => {
                    self.start_tls().await?;
                    self.session.tls_established(&mut self.out)
                }
                Action::SendBody => {
                    let mut data = Vec::new();
                    encode_data(body, &mut data);
                    for chunk in data.chunks(WRITE_CHUNK) {
                        self.write(chunk).await?;
                    }
                    Action::Read(Wait::Final)
                }
                Action::Fail(e) => return Err(e),
                done @ (Action::Ready | Action::Done(_) | Action::Closed) => return Ok(done),
            };
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let result = self.write(&out).await;
        self.out = out;
        self.out.clear();
        result
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let timeout = self.settings.command_timeout;
        let written = match &mut self.stream {
            Stream::Plain(s) => timed(timeout, write_all_flush(s, bytes)).await,
            Stream::Tls(s) => timed(timeout, write_all_flush(s.as_mut(), bytes)).await,
            Stream::Gone => Some(Err(std::io::Error::other("no stream"))),
        };
        match written {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(self.io_error(e.to_string())),
            None => Err(self.failed(ClientErrorKind::Timeout)),
        }
    }

    async fn read_reply(&mut self, wait: Wait) -> Result<super::Reply, ClientError> {
        let timeout = match wait {
            Wait::Greeting => self.settings.greeting_timeout,
            Wait::Command | Wait::DataInit => self.settings.command_timeout,
            Wait::Final => self.settings.data_timeout,
        };
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match parse_reply(&self.inbuf) {
                Ok((reply, used)) => {
                    self.inbuf.drain(..used);
                    return Ok(reply);
                }
                Err(ReplyError::NeedMore) => {}
                Err(e) => return Err(self.protocol(e.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let read = match &mut self.stream {
                Stream::Plain(s) => timed(left, s.read(&mut chunk)).await,
                Stream::Tls(s) => timed(left, s.read(&mut chunk)).await,
                Stream::Gone => Some(Err(std::io::Error::other("no stream"))),
            };
            match read {
                None => return Err(self.failed(ClientErrorKind::Timeout)),
                Some(Ok(0)) => return Err(self.io_error("connection closed by the server".into())),
                Some(Ok(n)) => self
                    .inbuf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Some(Err(e)) => return Err(self.io_error(e.to_string())),
            }
        }
    }

    async fn start_tls(&mut self) -> Result<(), ClientError> {
        // Bytes after the 220 were sent before TLS and must not be read as if sent inside it
        // (the client side of CVE-2011-0411).
        if !self.inbuf.is_empty() {
            return Err(self.protocol("data pipelined after the STARTTLS reply".into()));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(self.protocol("STARTTLS on a TLS connection".into()));
        };
        let config = match self.tls_mode {
            TlsMode::Verify => self.settings.tls_verified.clone(),
            _ => self.settings.tls_unverified.clone(),
        };
        let name = match rustls::pki_types::ServerName::try_from(self.server_name.clone()) {
            Ok(name) => name,
            Err(e) => return Err(self.failed(ClientErrorKind::Tls(e.to_string()))),
        };
        let connector = futures_rustls::TlsConnector::from(config);
        let handshake = timed(self.settings.command_timeout, connector.connect(name, tcp)).await;
        match handshake {
            Some(Ok(tls)) => {
                let conn = tls.get_ref().1;
                self.tls_info = Some(describe(conn));
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Some(Err(e)) => Err(self.failed(ClientErrorKind::TlsHandshake(e.to_string()))),
            None => Err(self.failed(ClientErrorKind::Timeout)),
        }
    }

    fn failed(&mut self, kind: ClientErrorKind) -> ClientError {
        let stage = self.session.stage();
        self.session.abort();
        ClientError::new(stage, kind)
    }

    fn io_error(&mut self, e: String) -> ClientError {
        self.failed(ClientErrorKind::Io(e))
    }

    fn protocol(&mut self, e: String) -> ClientError {
        self.failed(ClientErrorKind::Protocol(e))
    }
}

/// A TCP connection from `source` to `addr`. glommio's own connect cannot bind first, so the
/// socket is made here (non-blocking, bound, connect started) and handed to glommio; a
/// zero-length send then completes once the handshake has (or fails with why it did not: the
/// kernel reports a connecting socket's error to its first send).
async fn connect_bound(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    if source.is_ipv4() != addr.is_ipv4() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("source address {source} cannot reach {addr} (other address family)"),
        ));
    }
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(source, 0)))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {source}: {e}")))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut stream = TcpStream::from(socket);
    stream.write(&[]).await?;
    Ok(stream)
}

async fn write_all_flush<W>(w: &mut W, bytes: &[u8]) -> std::io::Result<()>
where
    W: futures_lite::AsyncWrite + Unpin + ?Sized,
{
    w.write_all(bytes).await?;
    w.flush().await
}

/// `Some(result)`, or `None` when `limit` passed first.
async fn timed<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
fn describe(conn: &rustls::ClientConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version} {:?}", suite.suite()),
        None => version,
    }
}
