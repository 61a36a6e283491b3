//! The transport's deadlines and frame mapping over real 127.0.0.1 sockets, against a raw
//! peer ([`super::testing`]). Tests that wait on a timer run on paused tokio time: the clock
//! moves only when every task waits, so each deadline is met exactly and at once.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::testing::{accept_upgrade, frame, listener};
use super::{ConnectFailure, ConnectOptions, Connection, Frame};

fn options(url: url::Url) -> ConnectOptions {
    ConnectOptions {
        url,
        headers: Vec::new(),
        compression: false,
        max_message_size: 1 << 20,
        connect_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(2),
        ca_file: None,
    }
}

/// Connects to a raw peer that answered the upgrade; the peer's side of the socket too.
async fn open() -> (Connection, tokio::net::TcpStream) {
    let (l, url) = listener();
    let opts = options(url);
    let (conn, peer) = tokio::join!(Connection::connect(&opts), accept_upgrade(&l));
    (conn.expect("the upgrade was answered"), peer)
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_upgrade_fails_at_the_connect_timeout() {
    let (l, url) = listener();
    let opts = options(url);
    let started = Instant::now();
    let (res, _held) = tokio::join!(Connection::connect(&opts), async {
        // Accepted, and never answered.
        l.accept().await.unwrap()
    });
    assert_eq!(res.err(), Some(ConnectFailure::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_nothing_fails_a_send_at_the_write_timeout() {
    let (mut conn, _peer) = open().await;
    let text = "x".repeat(64 << 10);
    let mut sent = 0;
    let (err, took) = loop {
        let started = Instant::now();
        match conn.send_text(text.clone()).await {
            Ok(()) => sent += 1,
            Err(e) => break (e, started.elapsed()),
        }
        assert!(sent < 10_000, "the socket buffers cannot hold this much");
    };
    assert!(err.reason.contains("write_timeout"), "{}", err.reason);
    assert_eq!(took, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn pongs_to_a_ping_flood_fail_the_flush_at_the_write_timeout() {
    let (mut conn, mut peer) = open().await;
    // The peer pings and never reads: each ping read queues a pong the flush must write.
    let ping = frame(0x9, b"0123456789abcdef0123456789abcdef");
    let flood = async move {
        loop {
            if peer.write_all(&ping).await.is_err() {
                return;
            }
        }
    };
    let client = async {
        loop {
            let f = conn.next().await.expect("the pings arrive");
            assert!(matches!(f, Frame::Ping));
            let started = Instant::now();
            if let Err(e) = conn.flush().await {
                return (e, started.elapsed());
            }
        }
    };
    let (err, took) = tokio::select! {
        r = client => r,
        () = flood => unreachable!("the peer's writes block before the client gives up"),
    };
    assert!(err.reason.contains("write_timeout"), "{}", err.reason);
    assert_eq!(took, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn close_drops_the_socket_at_the_close_timeout_when_the_peer_reads_nothing() {
    let (mut conn, mut peer) = open().await;
    // Fill the way to the peer, so the close frame cannot be written.
    let text = "x".repeat(64 << 10);
    while conn.send_text(text.clone()).await.is_ok() {}
    let started = Instant::now();
    conn.close().await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // The socket is gone: the peer reads what was buffered, then the end (a timer stands
    // in for "never", as paused time would otherwise wait for ever).
    let drained = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::copy(&mut peer, &mut tokio::io::sink()),
    )
    .await;
    assert!(drained.is_ok(), "the peer's read ended");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "the end came without waiting on a timer"
    );
}

#[tokio::test]
async fn a_continuation_without_a_message_fails_with_1002() {
    let (mut conn, mut peer) = open().await;
    peer.write_all(&frame(0x0, b"orphan")).await.unwrap();
    let err = conn.next().await.expect_err("no message to continue");
    assert_eq!(err.code, Some(1002), "{}", err.reason);
}

#[tokio::test]
async fn frames_are_mapped_to_what_the_core_sees() {
    let (mut conn, mut peer) = open().await;
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    for f in [
        frame(0x1, b"{\"type\":\"hearbeat\"}"),
        frame(0x2, b"\x01\x02"),
        frame(0x9, b""),
        frame(0xA, b""),
        frame(0x8, &close),
    ] {
        peer.write_all(&f).await.unwrap();
    }
    assert!(
        matches!(conn.next().await, Ok(Frame::Data { binary: false, payload }) if payload.starts_with(b"{"))
    );
    assert!(
        matches!(conn.next().await, Ok(Frame::Data { binary: true, payload }) if payload[..] == [1, 2])
    );
    assert!(matches!(conn.next().await, Ok(Frame::Ping)));
    assert!(matches!(conn.next().await, Ok(Frame::Pong)));
    match conn.next().await {
        Ok(Frame::Close { code, reason }) => {
            assert_eq!(code, Some(1000));
            assert_eq!(reason, "bye");
        }
        other => panic!("expected the close frame, got {other:?}"),
    }
}
