//! The control server and the shard side together: real socket, real sidecar, fake shards
//! (glommio executors running `serve_shard`, or bare threads holding the receivers).

use super::client::{self, ClientError};
use super::protocol::Reply;
use super::*;
use crate::sidecar::Sidecar;
use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// A shard's handler that records what it was asked and answers from a little state.
struct FakeShard {
    shard: u64,
    seen: Arc<Mutex<Vec<(u64, ControlRequest)>>>,
    paused: Cell<bool>,
}

impl ControlHandler for FakeShard {
    fn handle(&self, request: ControlRequest) -> Pin<Box<dyn Future<Output = ShardReply> + '_>> {
        Box::pin(async move {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push((self.shard, request));
            }
            // Answer from a later turn of the executor, as a real handler doing I/O would.
            glommio::yield_if_needed().await;
            match request {
                ControlRequest::Flush => ShardReply::Done {
                    count: self.shard + 1,
                },
                ControlRequest::Pause | ControlRequest::Resume => {
                    self.paused.set(request == ControlRequest::Pause);
                    ShardReply::Done { count: 0 }
                }
                ControlRequest::Status => ShardReply::Status {
                    paused: self.paused.get(),
                    pending: 10 * self.shard,
                },
                ControlRequest::Delete(id) | ControlRequest::Bounce(id) => {
                    if id.to_string().ends_with(".3") {
                        ShardReply::Done { count: 2 }
                    } else {
                        ShardReply::NotFound
                    }
                }
            }
        })
    }
}

fn ask(dir: &Path, request: ControlRequest) -> Reply {
    client::send(dir, &request, WAIT).expect("a reply")
}

fn id(text: &str) -> crate::queue::MessageId {
    text.parse().expect("test id")
}

#[test]
fn fans_out_to_glommio_shards_and_routes_by_message_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sidecar = Sidecar::start().expect("sidecar");
    let (senders, receivers) = channels(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let executors: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(shard, requests)| {
            let seen = Arc::clone(&seen);
            glommio::LocalExecutorBuilder::default()
                .name(&format!("fake-shard-{shard}"))
                .spawn(move || async move {
                    let handler = Rc::new(FakeShard {
                        shard: shard as u64,
                        seen,
                        paused: Cell::new(false),
                    });
                    serve_shard(requests, handler).await;
                })
                .expect("executor")
        })
        .collect();
    let server =
        ControlServer::start(&sidecar, &socket_path(dir.path()), senders).expect("control server");

    let meta = std::fs::metadata(server.path()).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let d = dir.path();
    assert_eq!(
        ask(d, ControlRequest::Flush).encode(),
        "ok flushed 3 recipients\n"
    );
    assert_eq!(
        ask(d, ControlRequest::Pause).encode(),
        "ok delivery paused on 2 shards\n"
    );
    assert_eq!(
        ask(d, ControlRequest::Status).encode(),
        "ok paused, 10 recipients pending\nshard 0: paused, 0 pending\nshard 1: paused, 10 pending\n"
    );
    assert_eq!(
        ask(d, ControlRequest::Resume).encode(),
        "ok delivery resumed on 2 shards\n"
    );
    seen.lock().expect("lock").clear();
    assert_eq!(
        ask(d, ControlRequest::Delete(id("1a.1.3"))).encode(),
        "ok deleted 1a.1.3: 2 recipients dropped\n"
    );
    assert_eq!(
        ask(d, ControlRequest::Bounce(id("1a.0.4"))).encode(),
        "err no such message 1a.0.4\n"
    );
    // Shard 7 does not exist: answered without asking anyone.
    assert_eq!(
        ask(d, ControlRequest::Delete(id("1a.7.3"))).encode(),
        "err no such message 1a.7.3\n"
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            (1, ControlRequest::Delete(id("1a.1.3"))),
            (0, ControlRequest::Bounce(id("1a.0.4"))),
        ],
        "delete and bounce go only to the shard named in the id"
    );

    let path = server.path().to_path_buf();
    drop(server);
    assert!(
        !path.exists(),
        "the socket is removed when the server stops"
    );
    // The senders are gone with the server, so each serve_shard returns and its executor ends.
    drop(sidecar);
    for executor in executors {
        executor.join().expect("executor ends");
    }
}

#[test]
fn a_shard_that_never_answers_is_reported_not_waited_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sidecar = Sidecar::start().expect("sidecar");
    let (senders, mut receivers) = channels(3);
    let silent = receivers.pop().expect("shard 2");
    // Shard 1 is gone: its receiver is dropped, as when a shard failed to start.
    drop(receivers.pop());
    let answering = receivers.pop().expect("shard 0");
    let answerer = std::thread::spawn(move || {
        for message in answering.iter() {
            let _ = message.reply.send(ShardReply::Done { count: 1 });
        }
    });
    let server = ControlServer::start_with_timeout(
        &sidecar,
        &socket_path(dir.path()),
        senders,
        Duration::from_millis(300),
    )
    .expect("control server");

    let started = std::time::Instant::now();
    let reply = ask(dir.path(), ControlRequest::Flush);
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    assert_eq!(
        reply.encode(),
        "err shard 1: is not serving control requests (stopped?); \
         shard 2: did not answer within 0.3 s\nshard 0: flushed 1 recipient\n"
    );
    assert_eq!(
        ask(dir.path(), ControlRequest::Bounce(id("1a.2.3"))).encode(),
        "err 1a.2.3: shard 2: did not answer within 0.3 s\n"
    );

    drop(server);
    drop(sidecar);
    drop(silent);
    answerer.join().expect("answerer");
}

/// Sends raw bytes and returns everything the server wrote back.
fn raw(dir: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket_path(dir)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    // The server may answer (and close) before taking all of an over-long request.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

#[test]
fn bad_requests_get_err_lines_and_a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_path(dir.path());
    // What a killed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(matches!(
        client::send(dir.path(), &ControlRequest::Flush, WAIT),
        Err(ClientError::NotRunning { .. })
    ));

    let sidecar = Sidecar::start().expect("sidecar");
    let (senders, receivers) = channels(1);
    let server = ControlServer::start(&sidecar, &path, senders).expect("replaces the stale socket");
    let d = dir.path();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"hello\n".to_vec(), "err unknown command\n"),
        (b"\x00\xff\xfe\r\n".to_vec(), "err unknown command\n"),
        (b"\n".to_vec(), "err empty request\n"),
        (b"".to_vec(), "err empty request\n"),
        (
            b"delete nonsense\n".to_vec(),
            "err bad message id: not a message id (expected <hex>.<shard>.<index>)\n",
        ),
        (
            vec![b'x'; 64 * 1024],
            "err request line too long (limit 1024 bytes)\n",
        ),
        (b"delete 1a.5.0\n".to_vec(), "err no such message 1a.5.0\n"),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            raw(d, &bytes),
            want,
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    drop(server);
    drop(receivers);
    drop(sidecar);
}

#[test]
fn serve_shard_answers_in_order_and_ends_with_its_senders() {
    let (senders, mut receivers) = channels(1);
    let requests = receivers.pop().expect("one");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sender = senders.into_iter().next().expect("one");
    let (reply_tx, reply_rx) = flume::unbounded();
    for request in [ControlRequest::Pause, ControlRequest::Status] {
        sender
            .send(ControlMessage {
                request,
                reply: reply_tx.clone(),
            })
            .expect("queued");
    }
    drop(sender);
    glommio::LocalExecutorBuilder::default()
        .spawn(move || {
            let handler = Rc::new(FakeShard {
                shard: 4,
                seen,
                paused: Cell::new(false),
            });
            serve_shard(requests, handler)
        })
        .expect("executor")
        .join()
        .expect("serve_shard returns once the senders are gone");
    let replies: Vec<ShardReply> = reply_rx.try_iter().collect();
    assert_eq!(
        replies,
        vec![
            ShardReply::Done { count: 0 },
            ShardReply::Status {
                paused: true,
                pending: 40
            }
        ]
    );
}
