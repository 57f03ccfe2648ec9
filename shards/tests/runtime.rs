//! End-to-end tests of the shard runtime: real pinned executors, mesh, shutdown, listeners.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shards::{Counters, MeshError, ShardContext, ShardError, ShardSet, ShardSetConfig};

fn config(count: usize) -> ShardSetConfig {
    ShardSetConfig {
        shard_count: count,
        pin_to_cpus: true,
        name: "test".into(),
        mesh_capacity: 16,
    }
}

/// Joins on a helper thread so a hung shard fails the test instead of hanging it.
fn join_within<R: Send + 'static>(set: ShardSet<R>, limit: Duration) -> Result<Vec<R>, ShardError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(set.join());
    });
    rx.recv_timeout(limit)
        .expect("shards did not finish in time")
}

#[test]
fn shards_exchange_messages_and_stop_on_foreign_trigger() {
    let set = shards::start::<(usize, u64), _, _>(
        config(2),
        |ctx: ShardContext<(usize, u64)>| async move {
            let me = ctx.id();
            let other = (me + 1) % ctx.count();
            let mesh = ctx.mesh();
            assert_eq!((mesh.id(), mesh.count()), (me, 2));
            mesh.send_to(other, (me, 100 + me as u64))
                .await
                .expect("send to peer");
            mesh.send_to(me, (me, 7)).await.expect("send to self");
            let mut got = Vec::new();
            for _ in 0..2 {
                let (from, msg) = mesh.recv().await.expect("message before shutdown");
                assert_eq!(from, msg.0, "from matches the sender's id");
                got.push(msg);
            }
            got.sort();
            // Unknown shard: the message comes back.
            match mesh.try_send_to(9, (me, 1)) {
                Err(MeshError::NoSuchShard { shard: 9, msg }) => assert_eq!(msg, (me, 1)),
                other => panic!("expected NoSuchShard, got {other:?}"),
            }
            ctx.shutdown().wait().await;
            let woke = Instant::now();
            assert!(mesh.recv().await.is_none(), "recv ends after shutdown");
            (got, woke)
        },
    )
    .expect("start");
    assert_eq!(set.count(), 2);

    std::thread::sleep(Duration::from_millis(100));
    let handle = set.shutdown_handle();
    let t0 = Instant::now();
    std::thread::spawn(move || handle.trigger())
        .join()
        .expect("trigger thread");
    let outputs = join_within(set, Duration::from_secs(10)).expect("join");
    // The target is < 100 ms; the bound leaves room for a loaded 2-core build machine.
    for (shard, (_, woke)) in outputs.iter().enumerate() {
        let latency = woke.duration_since(t0);
        eprintln!("shard {shard} woke {latency:?} after the foreign trigger");
        assert!(
            latency < Duration::from_millis(250),
            "shard {shard} woke after {latency:?}"
        );
    }
    let outputs: Vec<_> = outputs.into_iter().map(|(got, _)| got).collect();
    let mut shard0 = vec![(0, 7), (1, 101)];
    shard0.sort();
    let mut shard1 = vec![(1, 7), (0, 100)];
    shard1.sort();
    assert_eq!(outputs, vec![shard0, shard1]);
}

#[test]
fn try_send_reports_full_when_peer_does_not_read() {
    let mut cfg = config(2);
    cfg.mesh_capacity = 1;
    let set = shards::start::<u32, _, _>(cfg, |ctx: ShardContext<u32>| async move {
        if ctx.id() == 0 {
            let mut full = false;
            for i in 0..50 {
                match ctx.mesh().try_send_to(1, i) {
                    Ok(()) => {}
                    Err(MeshError::Full { shard: 1, msg }) => {
                        assert_eq!(msg, i);
                        full = true;
                        break;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            ctx.shutdown().handle().trigger();
            full
        } else {
            ctx.shutdown().wait().await;
            true
        }
    })
    .expect("start");
    assert_eq!(
        join_within(set, Duration::from_secs(10)).expect("join"),
        vec![true, true]
    );
}

#[test]
fn a_panicking_shard_stops_the_set_and_join_reports_it() {
    let set = shards::start::<(), _, _>(config(2), |ctx: ShardContext<()>| async move {
        if ctx.id() == 1 {
            panic!("boom on shard 1");
        }
        ctx.shutdown().wait().await;
    })
    .expect("start");
    match join_within(set, Duration::from_secs(10)) {
        Err(ShardError::Panicked { shard: 1, message }) => assert!(message.contains("boom")),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn two_shards_share_one_port() {
    let reserved = shards::reserve_port("127.0.0.1:0".parse().expect("addr")).expect("reserve");
    let addr = reserved.addr();
    assert_ne!(addr.port(), 0);
    let accepted = Arc::new(Counters::new(2));
    let (bound_tx, bound_rx) = mpsc::channel::<SocketAddr>();
    let counters = accepted.clone();
    let set = shards::start::<(), _, _>(config(2), move |ctx: ShardContext<()>| {
        let counters = counters.clone();
        let bound_tx = bound_tx.clone();
        async move {
            let listener = shards::bind_listener(addr, 4096).expect("bind");
            bound_tx
                .send(listener.local_addr().expect("local addr"))
                .expect("report");
            let stop = ctx.shutdown();
            loop {
                let next = futures_lite::future::or(
                    async { Some(shards::accept_nodelay(&listener).await) },
                    async {
                        stop.wait().await;
                        None
                    },
                )
                .await;
                let Some(conn) = next else { break };
                let mut stream = conn.expect("accept");
                assert!(stream.nodelay().expect("nodelay"));
                counters.add(ctx.id(), 1);
                futures_lite::AsyncWriteExt::write_all(&mut stream, b"hi\n")
                    .await
                    .expect("write");
            }
        }
    })
    .expect("start");
    for _ in 0..2 {
        assert_eq!(
            bound_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("bound"),
            addr
        );
    }
    drop(reserved);

    for _ in 0..20 {
        let mut client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reply = String::new();
        client.read_to_string(&mut reply).expect("read");
        assert_eq!(reply, "hi\n");
    }
    assert_eq!(accepted.sum(), 20);
    set.shutdown_handle().trigger();
    join_within(set, Duration::from_secs(10)).expect("join");
}

#[test]
fn bad_addresses_are_errors_not_panics() {
    // 192.0.2.0/24 is TEST-NET-1: never a local address, so bind fails with EADDRNOTAVAIL.
    let bad: SocketAddr = "192.0.2.1:2525".parse().expect("addr");
    assert!(shards::reserve_port(bad).is_err());
    let set = shards::start::<(), _, _>(config(1), move |_ctx: ShardContext<()>| async move {
        shards::bind_listener(bad, 1024).is_err()
    })
    .expect("start");
    assert_eq!(
        join_within(set, Duration::from_secs(10)).expect("join"),
        vec![true]
    );
}

#[test]
fn blocking_pool_is_available() {
    let set = shards::start::<(), _, _>(config(1), |_ctx: ShardContext<()>| async move {
        glommio::executor().spawn_blocking(|| 6 * 7).await
    })
    .expect("start");
    assert_eq!(
        join_within(set, Duration::from_secs(10)).expect("join"),
        vec![42]
    );
}
