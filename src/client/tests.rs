//! The stream's task over real 127.0.0.1 sockets, against raw peers
//! ([`crate::transport::testing`]): first connection, a peer that stops reading, and close.
//! Waits on timers run on paused tokio time, so each deadline is met exactly and at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::*;
use crate::delivery::{Overflow, Pop, Queue, StreamEnd};
use crate::protocol::coinapi::{CoinApiSession, Scope};
use crate::transport::testing::{accept_upgrade, frame, listener};

fn config(url: url::Url) -> ClientConfig {
    ClientConfig {
        connect: ConnectOptions {
            url,
            headers: Vec::new(),
            compression: false,
            max_message_size: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            ca_file: None,
        },
        session: Session::CoinApi(CoinApiSession::new(Scope {
            data_types: vec!["trade".into()],
            heartbeat: true,
            ..Scope::default()
        })),
        batch_size: 100,
        heartbeat_timeout: Some(Duration::from_secs(10)),
        ping_timeout: None,
        reconnect: Some(BackoffPolicy::default()),
        on_notice: OnNotice::WaitForClose,
        hold_limit: 1000,
        keep_raw: false,
        recorder: None,
    }
}

fn start(config: ClientConfig) -> (Arc<Queue>, mpsc::UnboundedSender<Command>, Arc<Status>) {
    let queue = Queue::new(1000, 100, Overflow::Block, None);
    let (tx, status) = spawn(
        &tokio::runtime::Handle::current(),
        config,
        queue.clone(),
        None,
        1,
    );
    (queue, tx, status)
}

/// The next event of the stream (data messages skipped), or its end.
async fn next_event(queue: &Queue, pending: &mut Vec<Msg>) -> Result<Msg, StreamEnd> {
    loop {
        if !pending.is_empty() {
            return Ok(pending.remove(0));
        }
        match queue.pop_async().await {
            Pop::Batch(b) => pending.extend(b.into_iter().map(|e| e.msg).filter(|m| !m.is_data())),
            Pop::End(end) => return Err(end),
            Pop::Empty => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_port_ends_the_stream_after_the_initial_attempts() {
    let (l, url) = listener();
    drop(l);
    let started = Instant::now();
    let (queue, _tx, status) = start(config(url));
    let end = next_event(&queue, &mut Vec::new())
        .await
        .expect_err("no connection");
    let StreamEnd::Connect(why) = end else {
        panic!("expected a connect failure, got {end:?}");
    };
    assert!(why.contains("after 3 attempts"), "{why}");
    assert!(why.contains("connection refused"), "{why}");
    // Two backoff waits (0.1 s and 0.2 s, jittered by 20 %), far inside DESIGN.md's 15 s.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(240) && took <= Duration::from_millis(360),
        "{took:?}"
    );
    assert_eq!(status.state(), State::Closed);
    let waiting = status.waiting().expect("the last wait is shown");
    assert!(waiting.contains("attempt 3"), "{waiting}");
    assert!(waiting.ends_with(": connection refused"), "{waiting}");
    assert_eq!(status.counters.snapshot().reconnects, 2);
}

/// A peer that answers the upgrade, then floods pings (the largest a ping may carry, so the
/// pongs fill the way back quickly) and never reads; `peer` gets its reading half.
async fn ping_flood(l: tokio::net::TcpListener) -> tokio::net::tcp::OwnedReadHalf {
    let (read, mut write) = accept_upgrade(&l).await.into_split();
    tokio::spawn(async move {
        let ping = frame(0x9, &[b'p'; 125]);
        while write.write_all(&ping).await.is_ok() {}
    });
    read
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_floods_pings_and_reads_nothing_is_left_at_the_write_timeout() {
    let (l, url) = listener();
    let (queue, _tx, status) = start(config(url));
    let _peer = ping_flood(l).await;
    let mut pending = Vec::new();
    let first = next_event(&queue, &mut pending).await;
    assert!(matches!(first, Ok(Msg::Connected { .. })), "{first:?}");
    let connected = Instant::now();
    let second = next_event(&queue, &mut pending).await;
    let Ok(Msg::Disconnected { reason, .. }) = second else {
        panic!("expected Disconnected, got {second:?}");
    };
    assert!(reason.contains("write_timeout"), "{reason}");
    // The pong flush waited its write_timeout (10 s), within DESIGN.md's 20 s; no close
    // frame is waited for, as the peer reads nothing.
    let took = connected.elapsed();
    assert_eq!(took, Duration::from_secs(10));
    assert!(
        status.counters.snapshot().last_frame_ns > 0,
        "the pings were read"
    );
}

#[tokio::test(start_paused = true)]
async fn close_frees_the_socket_within_close_timeout_while_a_write_is_stuck() {
    let (l, url) = listener();
    let (queue, tx, status) = start(config(url));
    let mut peer = ping_flood(l).await;
    let first = next_event(&queue, &mut Vec::new()).await;
    assert!(matches!(first, Ok(Msg::Connected { .. })), "{first:?}");
    // Paused time moves only once every task waits: by 5 s the pong flush is stuck.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(status.state(), State::Open);
    let closing = Instant::now();
    queue.close();
    tx.send(Command::Close).unwrap();
    // The socket is released: the peer reads what was buffered, then the end. (The 60 s
    // stands in for "never", which paused time would otherwise wait for.)
    let drained = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::copy(&mut peer, &mut tokio::io::sink()),
    )
    .await;
    assert!(drained.is_ok(), "the peer's read ended");
    // Within close_timeout (2 s): at once, as the stuck write shows no close frame can go.
    assert_eq!(closing.elapsed(), Duration::ZERO);
    assert_eq!(status.state(), State::Closed);
}
