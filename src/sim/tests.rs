//! Socket-level tests: a real simulator on 127.0.0.1:0 and tokio-tungstenite clients.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use simd_json::prelude::*;
use simd_json::OwnedValue;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use super::*;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn start(cfg: SimConfig) -> SimServer {
    SimServer::start(&Handle::current(), "127.0.0.1", 0, cfg).expect("simulator starts")
}

async fn connect_h(url: &str, headers: &[(&str, &str)]) -> Result<Client, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let v = HeaderValue::from_str(v).map_err(|e| e.to_string())?;
        req.headers_mut().insert(name, v);
    }
    match connect_async(req).await {
        Ok((c, _)) => Ok(c),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(format!("http {}", resp.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn connect(url: &str) -> Client {
    connect_h(url, &[]).await.expect("connects")
}

#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Close(Option<u16>),
    /// The stream ended without a close frame (or failed).
    Ended,
    Timeout,
}

/// The next text/close frame (pings and pongs are skipped; tungstenite answers pings).
async fn recv(c: &mut Client, within: Duration) -> Got {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.next()).await {
            Err(_) => return Got::Timeout,
            Ok(None | Some(Err(_))) => return Got::Ended,
            Ok(Some(Ok(Message::Text(t)))) => return Got::Text(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(f)))) => return Got::Close(f.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn send(c: &mut Client, text: &str) {
    c.send(Message::text(text)).await.expect("send");
}

fn parse(s: &str) -> Option<OwnedValue> {
    let mut b = s.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).ok()
}

fn field(v: &OwnedValue, name: &str) -> Option<String> {
    v.get_str(name).map(str::to_owned)
}

/// What a received CoinAPI frame looks like as a record.
fn as_record(text: &str) -> SentRecord {
    let Some(v) = parse(text) else {
        return SentRecord {
            msg_type: "malformed".into(),
            key: None,
            seq: None,
            uuid: None,
        };
    };
    let ty = field(&v, "type")
        .or_else(|| field(&v, "msg_type"))
        .unwrap_or_default();
    let key = field(&v, "symbol_id")
        .or_else(|| field(&v, "index_id"))
        .or_else(|| field(&v, "instrument_id"))
        .or_else(|| {
            v.get("order")
                .and_then(|o| o.get_str("id"))
                .map(str::to_owned)
        })
        .or_else(|| field(&v, "order_id"))
        .or_else(|| {
            v.get("allocation")
                .and_then(|a| a.get_str("order_id"))
                .map(str::to_owned)
        })
        .or_else(|| {
            Some(format!(
                "{}/{}",
                field(&v, "asset_id_base")?,
                field(&v, "asset_id_quote")?
            ))
        });
    let seq = v
        .get_u64("sequence")
        .or_else(|| v.get_str("msg_number").and_then(|n| n.parse().ok()));
    SentRecord {
        msg_type: ty,
        key,
        seq,
        uuid: field(&v, "uuid"),
    }
}

fn is_data(text: &str) -> bool {
    match parse(text) {
        None => true, // malformed
        Some(v) => {
            let t = field(&v, "type")
                .or_else(|| field(&v, "msg_type"))
                .unwrap_or_default();
            !matches!(
                t.as_str(),
                "heartbeat" | "hearbeat" | "error" | "reconnect" | "success" | "subscription"
            )
        }
    }
}

/// Reads frames until the simulator says it is finished and nothing more arrives.
async fn drain_until_finished(sim: &SimServer, c: &mut Client, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        match recv(c, Duration::from_millis(150)).await {
            Got::Text(t) => out.push(t),
            Got::Timeout if sim.stats().finished => return out,
            Got::Timeout => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "not finished: {:?}", sim.stats());
    }
}

#[test]
fn public_types_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SimServer>();
    send_sync::<SimConfig>();
    send_sync::<SimStats>();
    send_sync::<SentRecord>();
}

const HELLO_ALL: &str = r#"{"type":"hello","heartbeat":false,"subscribe_data_type":["trade","quote","book","book5","book20","book50","book_l3","ohlcv","exrate","index"],"subscribe_filter_asset_id":["BTC","ETH","USD","USDT","EUR","SOL","XRP"]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinapi_stream_matches_the_record() {
    let sim = start(SimConfig {
        rate: 5_000,
        total: Some(2_000),
        seed: 1,
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade","quote"],"subscribe_filter_symbol_id":["BITSTAMP_"]}"#,
    )
    .await;
    let frames = drain_until_finished(&sim, &mut c, Duration::from_secs(3)).await;
    let got: Vec<SentRecord> = frames.iter().map(|t| as_record(t)).collect();
    let sent = sim.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(got, sent[0]);
    assert!(got.len() > 50, "{}", got.len());
    let stats = sim.stats();
    assert_eq!(stats.generated, 2_000);
    assert_eq!(stats.messages_sent, got.len() as u64);
    assert!(stats.finished);
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    for r in &got {
        assert!(r.msg_type == "trade" || r.msg_type == "quote");
        let key = r.key.clone().unwrap_or_default();
        assert!(key.starts_with("BITSTAMP_"), "{key}");
        let seq = r.seq.unwrap_or_default();
        assert!(seq >= 1000);
        if let Some(prev) = last.insert((r.msg_type.clone(), key), seq) {
            assert_eq!(seq, prev + 1);
        }
        assert_eq!(r.uuid.is_some(), r.msg_type == "trade");
    }
    // After `total` nothing more is generated, but the connection stays open.
    assert_eq!(recv(&mut c, Duration::from_millis(300)).await, Got::Timeout);
    assert_eq!(sim.stats().open_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_share_events_but_not_sequences() {
    let sim = start(SimConfig {
        rate: 4_000,
        total: Some(1_500),
        seed: 2,
        ..SimConfig::default()
    });
    let hello = r#"{"type":"hello","subscribe_data_type":["trade","book"],"subscribe_filter_asset_id":["BTC","ETH"]}"#;
    let mut a = connect(&sim.url()).await;
    let mut b = connect(&sim.url()).await;
    send(&mut a, hello).await;
    send(&mut b, hello).await;
    let fa = drain_until_finished(&sim, &mut a, Duration::from_secs(3)).await;
    let fb = drain_until_finished(&sim, &mut b, Duration::from_secs(3)).await;
    let sent = sim.sent();
    assert_eq!(fa.iter().map(|t| as_record(t)).collect::<Vec<_>>(), sent[0]);
    assert_eq!(fb.iter().map(|t| as_record(t)).collect::<Vec<_>>(), sent[1]);
    // b subscribed a moment later: its trades are a suffix of a's, same uuids and times.
    let trades = |f: &[String]| -> Vec<(String, String, String, u64)> {
        f.iter()
            .filter_map(|t| parse(t))
            .filter(|v| v.get_str("type") == Some("trade"))
            .map(|v| {
                (
                    field(&v, "uuid").unwrap_or_default(),
                    field(&v, "time_exchange").unwrap_or_default(),
                    field(&v, "time_coinapi").unwrap_or_default(),
                    v.get_u64("sequence").unwrap_or_default(),
                )
            })
            .collect()
    };
    let (ta, tb) = (trades(&fa), trades(&fb));
    assert!(tb.len() > 100 && ta.len() >= tb.len());
    let off = ta.len() - tb.len();
    let mut same_seq = 0;
    for (x, y) in ta[off..].iter().zip(&tb) {
        assert_eq!((&x.0, &x.1, &x.2), (&y.0, &y.1, &y.2));
        same_seq += usize::from(x.3 == y.3);
    }
    assert!(
        same_seq < tb.len() / 10,
        "sequences should be per connection"
    );
    // Each connection starts each book with a snapshot.
    for f in [&fa, &fb] {
        let mut seen = std::collections::HashSet::new();
        for v in f.iter().filter_map(|t| parse(t)) {
            if v.get_str("type") == Some("book") {
                let first = seen.insert(field(&v, "symbol_id"));
                assert_eq!(v.get_bool("is_snapshot"), Some(first));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_faults_gap_duplicate_malformed() {
    let sim = start(SimConfig {
        rate: 8_000,
        total: Some(3_000),
        seed: 3,
        faults: Faults {
            gap_every: Some(5),
            duplicate_every: Some(7),
            malformed_every: Some(11),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade","quote","index"]}"#,
    )
    .await;
    let frames = drain_until_finished(&sim, &mut c, Duration::from_secs(3)).await;
    let got: Vec<SentRecord> = frames.iter().map(|t| as_record(t)).collect();
    assert_eq!(got, sim.sent()[0]);
    // Walk the stream with the fault schedule.
    let mut n = 0u64;
    let mut i = 0usize;
    let mut last: HashMap<(String, Option<String>), u64> = HashMap::new();
    let (mut gaps, mut dups, mut bad) = (0, 0, 0);
    while i < got.len() {
        n += 1;
        if n.is_multiple_of(11) {
            assert_eq!(got[i].msg_type, "malformed", "message {n}");
            assert!(parse(&frames[i]).is_none());
            bad += 1;
            i += 1;
        }
        let r = &got[i];
        assert_ne!(r.msg_type, "malformed");
        if n.is_multiple_of(7) {
            assert_eq!(&got[i + 1], r, "duplicate of message {n}");
            assert_eq!(frames[i], frames[i + 1]);
            dups += 1;
            i += 1;
        }
        let seq = r.seq.unwrap_or_default();
        if let Some(prev) = last.insert((r.msg_type.clone(), r.key.clone()), seq) {
            let step = if n.is_multiple_of(5) { 2 } else { 1 };
            assert_eq!(seq, prev + step, "message {n}");
            gaps += usize::from(step == 2);
        }
        i += 1;
    }
    assert!(gaps > 10 && dups > 10 && bad > 10, "{gaps} {dups} {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_fault_hits_only_the_first_connection() {
    let sim = start(SimConfig {
        rate: 1_000,
        faults: Faults {
            disconnect_after_s: Some(0.3),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade"]}"#,
    )
    .await;
    let t0 = Instant::now();
    let mut texts = Vec::new();
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => texts.push(t),
            other => break other,
        }
    };
    let dt = t0.elapsed();
    assert_eq!(end, Got::Ended, "no close frame");
    assert!(
        dt > Duration::from_millis(250) && dt < Duration::from_millis(1500),
        "{dt:?}"
    );
    assert_eq!(
        texts.iter().map(|t| as_record(t)).collect::<Vec<_>>(),
        sim.sent()[0]
    );
    // The next connection is healthy.
    let mut d = connect(&sim.url()).await;
    send(
        &mut d,
        r#"{"type":"hello","subscribe_data_type":["trade"]}"#,
    )
    .await;
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(600) {
        assert!(matches!(
            recv(&mut d, Duration::from_secs(1)).await,
            Got::Text(_)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_fault_sends_nothing_then_resumes() {
    let sim = start(SimConfig {
        rate: 1_000,
        faults: Faults {
            stall_after_s: Some(0.2),
            stall_s: Some(0.6),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","heartbeat":true,"subscribe_data_type":["trade"]}"#,
    )
    .await;
    let t0 = Instant::now();
    let mut longest = Duration::ZERO;
    let mut last = Instant::now();
    let mut texts = Vec::new();
    while t0.elapsed() < Duration::from_millis(1300) {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => {
                longest = longest.max(last.elapsed());
                last = Instant::now();
                texts.push(t);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(longest >= Duration::from_millis(500), "{longest:?}");
    assert!(longest < Duration::from_millis(1000), "{longest:?}");
    // Nothing was lost: the queue held the stalled messages.
    let got: Vec<SentRecord> = texts.iter().map(|t| as_record(t)).collect();
    let sent = sim.sent();
    assert_eq!(got, sent[0][..got.len()]);
    let mut last: HashMap<Option<String>, u64> = HashMap::new();
    for r in &got {
        if let Some(prev) = last.insert(r.key.clone(), r.seq.unwrap_or_default()) {
            assert_eq!(r.seq, Some(prev + 1));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_notice_then_close_at_before_time() {
    let sim = start(SimConfig {
        rate: 1_000,
        faults: Faults {
            reconnect_notice_after_s: Some(0.2),
            reconnect_within_s: 0.5,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade"]}"#,
    )
    .await;
    let t0 = Instant::now();
    let mut notice_at = None;
    let mut after_notice = 0;
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => {
                let v = parse(&t).expect("json");
                if v.get_str("type") == Some("reconnect") {
                    assert_eq!(v.get_f64("within_seconds"), Some(0.5));
                    let before = field(&v, "before_time").unwrap_or_default();
                    assert_eq!(
                        before.len(),
                        "2020-08-06T19:19:09.7035429Z".len(),
                        "{before}"
                    );
                    notice_at = Some(t0.elapsed());
                } else if notice_at.is_some() {
                    after_notice += 1;
                }
            }
            other => break (other, t0.elapsed()),
        }
    };
    let notice_at = notice_at.expect("a reconnect notice");
    assert!(notice_at >= Duration::from_millis(180), "{notice_at:?}");
    assert_eq!(end.0, Got::Close(Some(1001)));
    let lived = end.1 - notice_at;
    assert!(
        lived >= Duration::from_millis(450) && lived < Duration::from_millis(1000),
        "{lived:?}"
    );
    assert!(after_notice > 100, "kept streaming: {after_notice}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_fault_then_close() {
    let sim = start(SimConfig {
        rate: 500,
        faults: Faults {
            error_after_s: Some(0.2),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["quote"]}"#,
    )
    .await;
    let mut last = String::new();
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => last = t,
            other => break other,
        }
    };
    assert_eq!(
        last,
        r#"{"type":"error","message":"Simulated server error."}"#
    );
    assert!(matches!(end, Got::Close(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_after_a_second_of_silence() {
    let run = |spelling: HeartbeatSpelling| async move {
        let sim = start(SimConfig {
            rate: 2_000,
            heartbeat_spelling: spelling,
            ..SimConfig::default()
        });
        let mut quiet = connect(&sim.url()).await;
        let mut busy = connect(&sim.url()).await;
        // Nothing matches this filter: the connection is silent.
        send(
            &mut quiet,
            r#"{"type":"hello","heartbeat":true,"subscribe_data_type":["trade"],"subscribe_filter_symbol_id":["NOPE$"]}"#,
        )
        .await;
        send(
            &mut busy,
            r#"{"type":"hello","heartbeat":true,"subscribe_data_type":["trade"]}"#,
        )
        .await;
        let t0 = Instant::now();
        let got = recv(&mut quiet, Duration::from_millis(2500)).await;
        let dt = t0.elapsed();
        let mut busy_heartbeats = 0;
        while t0.elapsed() < Duration::from_millis(1300) {
            if let Got::Text(t) = recv(&mut busy, Duration::from_secs(1)).await {
                busy_heartbeats += usize::from(t.contains("heartbeat") || t.contains("hearbeat"));
            }
        }
        (got, dt, busy_heartbeats)
    };
    let (a, b) = tokio::join!(
        run(HeartbeatSpelling::Heartbeat),
        run(HeartbeatSpelling::Hearbeat)
    );
    assert_eq!(a.0, Got::Text(r#"{"type":"heartbeat"}"#.into()));
    assert_eq!(b.0, Got::Text(r#"{"type":"hearbeat"}"#.into()));
    for (_, dt, busy) in [a, b] {
        assert!(
            dt >= Duration::from_millis(950) && dt < Duration::from_millis(1600),
            "{dt:?}"
        );
        assert_eq!(busy, 0, "no heartbeat while data flows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinapi_auth() {
    let sim = start(SimConfig {
        rate: 1_000,
        api_key: Some("k1".into()),
        ..SimConfig::default()
    });
    let url = sim.url();
    assert_eq!(
        connect_h(&url, &[("X-CoinAPI-Key", "wrong")]).await.err(),
        Some("http 401".into())
    );
    assert_eq!(
        connect_h(&format!("{url}?apikey=wrong"), &[]).await.err(),
        Some("http 401".into())
    );
    let hello = |key: &str| {
        format!(r#"{{"type":"hello","apikey":"{key}","subscribe_data_type":["trade"]}}"#)
    };
    // No header: the hello's apikey decides.
    let mut c = connect(&url).await;
    send(&mut c, &hello("wrong")).await;
    assert_eq!(
        recv(&mut c, Duration::from_secs(1)).await,
        Got::Text(r#"{"type":"error","message":"Invalid API key"}"#.into())
    );
    assert!(matches!(
        recv(&mut c, Duration::from_secs(1)).await,
        Got::Close(_)
    ));
    let mut c = connect(&url).await;
    send(&mut c, &hello("k1")).await;
    assert!(
        matches!(recv(&mut c, Duration::from_secs(1)).await, Got::Text(t) if t.contains("\"trade\""))
    );
    let mut c = connect_h(&url, &[("X-CoinAPI-Key", "k1")])
        .await
        .expect("authorized");
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade"]}"#,
    )
    .await;
    assert!(
        matches!(recv(&mut c, Duration::from_secs(1)).await, Got::Text(t) if t.contains("\"trade\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hello_gets_an_error_and_a_close() {
    let sim = start(SimConfig::default());
    for bad in [
        "not json",
        r#"{"type":"hello","subscribe_data_type":["tick"]}"#,
        r#"{"type":"hello"}"#,
    ] {
        let mut c = connect(&sim.url()).await;
        send(&mut c, bad).await;
        match recv(&mut c, Duration::from_secs(1)).await {
            Got::Text(t) => assert!(t.starts_with(r#"{"type":"error","message":"#), "{t}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            recv(&mut c, Duration::from_secs(1)).await,
            Got::Close(_)
        ));
    }
}

async fn collect(c: &mut Client, ms: u64) -> Vec<SentRecord> {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while Instant::now() < until {
        if let Got::Text(t) = recv(c, Duration::from_millis(100)).await {
            out.push(as_record(&t));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_changes_live() {
    let sim = start(SimConfig {
        rate: 4_000,
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(&mut c, r#"{"type":"hello","subscribe_data_type":["trade"],"subscribe_filter_exchange_id":["COINBASE"]}"#).await;
    let first = collect(&mut c, 200).await;
    assert!(!first.is_empty());
    assert!(first
        .iter()
        .all(|r| r.msg_type == "trade"
            && r.key.as_deref().is_some_and(|k| k.starts_with("COINBASE_"))));
    send(&mut c, r#"{"type":"subscribe","subscribe_data_type":["quote"],"subscribe_filter_exchange_id":["KRAKEN"]}"#).await;
    let _ = collect(&mut c, 50).await;
    let second = collect(&mut c, 300).await;
    assert!(second.iter().any(|r| r.msg_type == "quote"));
    assert!(second
        .iter()
        .any(|r| r.key.as_deref().is_some_and(|k| k.starts_with("KRAKEN_"))));
    send(
        &mut c,
        r#"{"type":"unsubscribe","subscribe_data_type":["trade"]}"#,
    )
    .await;
    let _ = collect(&mut c, 50).await;
    let third = collect(&mut c, 300).await;
    assert!(!third.is_empty() && third.iter().all(|r| r.msg_type == "quote"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_the_overflow_error() {
    let sim = SimServer::start_tuned(
        &Handle::current(),
        "127.0.0.1",
        0,
        SimConfig {
            rate: 20_000,
            ..SimConfig::default()
        },
        Tuning {
            queue_capacity: 64,
            ..Tuning::default()
        },
    )
    .expect("start");
    let mut c = connect(&sim.url()).await;
    send(&mut c, HELLO_ALL).await;
    // Do not read until the simulator has given up on this connection.
    let t0 = Instant::now();
    while !sim
        .shared
        .links_snapshot()
        .iter()
        .any(|l| l.is_overflowed())
    {
        assert!(t0.elapsed() < Duration::from_millis(2800), "no overflow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut texts = Vec::new();
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => texts.push(t),
            other => break other,
        }
    };
    assert!(matches!(end, Got::Close(_) | Got::Ended), "{end:?}");
    let last = texts.pop().unwrap_or_default();
    assert_eq!(
        last,
        r#"{"type":"error","message":"Reached maximum allowed buffered messages for this connection."}"#
    );
    assert_eq!(
        texts.iter().map(|t| as_record(t)).collect::<Vec<_>>(),
        sim.sent()[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaced_total_is_delivered_exactly() {
    let sim = start(SimConfig {
        rate: 0,
        total: Some(20_000),
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(&mut c, HELLO_ALL).await;
    let frames = drain_until_finished(&sim, &mut c, Duration::from_secs(3)).await;
    assert_eq!(sim.stats().generated, 20_000);
    assert_eq!(
        frames.iter().map(|t| as_record(t)).collect::<Vec<_>>(),
        sim.sent()[0]
    );
    assert!(frames.len() > 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_and_stops_accepting() {
    assert_eq!(
        SimServer::start(&Handle::current(), "0.0.0.0", 0, SimConfig::default())
            .err()
            .map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
    assert!(SimServer::start(&Handle::current(), "10.1.2.3", 0, SimConfig::default()).is_err());
    let sim = SimServer::start(&Handle::current(), "localhost", 0, SimConfig::default())
        .expect("localhost is loopback");
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade"]}"#,
    )
    .await;
    assert!(matches!(
        recv(&mut c, Duration::from_secs(1)).await,
        Got::Text(_)
    ));
    sim.shutdown();
    sim.shutdown();
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(_) => {}
            other => break other,
        }
    };
    assert_eq!(end, Got::Close(Some(u16::from(CloseCode::Away))));
    // Reading on lets tungstenite send its close reply; then the stream ends.
    assert_eq!(recv(&mut c, Duration::from_secs(1)).await, Got::Ended);
    assert!(connect_h(&sim.url(), &[]).await.is_err());
    let t0 = Instant::now();
    while sim.stats().open_connections > 0 {
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Throughput at `rate=0` to one client. Not a test of speed (no assertion on it); run with
/// `cargo test --release -- --ignored --nocapture unpaced_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test"]
async fn unpaced_throughput() {
    let n = 1_000_000;
    let sim = start(SimConfig {
        rate: 0,
        total: Some(n),
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url()).await;
    send(
        &mut c,
        r#"{"type":"hello","subscribe_data_type":["trade","quote","book5","index"]}"#,
    )
    .await;
    let t0 = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), c.next()).await {
        if let Message::Text(t) = m {
            count += 1;
            bytes += t.len() as u64;
        }
    }
    let dt = t0.elapsed().as_secs_f64() - 0.5;
    println!(
        "rate=0: {count} messages, {:.0} msg/s, {:.1} MB/s, avg {} B",
        count as f64 / dt,
        bytes as f64 / dt / 1e6,
        bytes / count.max(1)
    );
}

// ---- Moment ----

fn moment(cfg: SimConfig) -> SimServer {
    start(SimConfig {
        protocol: SimProtocol::Moment,
        ..cfg
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moment_upgrade_auth_and_routes() {
    let sim = moment(SimConfig {
        api_key: Some("msk_papr.secret".into()),
        ..SimConfig::default()
    });
    let prices = sim.url_for("prices").expect("prices url");
    let orders = sim.url_for("orders").expect("orders url");
    assert!(prices.ends_with("/v1/data/price-stream/"));
    assert!(orders.ends_with("/v1/trading/order-stream/"));
    assert_eq!(sim.url_for("quotes"), None);
    assert_eq!(connect_h(&prices, &[]).await.err(), Some("http 401".into()));
    assert_eq!(
        connect_h(&prices, &[("Authorization", "Bearer nope")])
            .await
            .err(),
        Some("http 401".into())
    );
    let base = sim.url();
    assert_eq!(
        connect_h(
            &format!("{base}data/nothing/"),
            &[("Authorization", "Bearer msk_papr.secret")]
        )
        .await
        .err(),
        Some("http 404".into())
    );
    let mut c = connect_h(&prices, &[("Authorization", "Bearer msk_papr.secret")])
        .await
        .expect("bearer");
    assert_eq!(
        recv(&mut c, Duration::from_secs(1)).await,
        Got::Text(r#"{"msg_type":"success","msg":"connected"}"#.into())
    );
    let v2 = prices.replace("/v1/", "/v2/");
    let mut c = connect(&format!("{v2}?auth_token=msk_papr.secret")).await;
    assert!(
        matches!(recv(&mut c, Duration::from_secs(1)).await, Got::Text(t) if t.contains("connected"))
    );
    let start = SimServer::start(&Handle::current(), "127.0.0.1", 0, SimConfig::default())
        .expect("coinapi");
    assert_eq!(start.url_for("prices"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moment_prices_subscriptions() {
    let sim = moment(SimConfig {
        rate: 3_000,
        symbols: 12,
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url_for("prices").unwrap_or_default()).await;
    assert!(
        matches!(recv(&mut c, Duration::from_secs(1)).await, Got::Text(t) if t.contains("connected"))
    );
    send(
        &mut c,
        r#"{"msg_type":"subscribe","instrument_id":"880591DM1"}"#,
    )
    .await;
    send(
        &mut c,
        r#"{"msg_type":"subscribe","instrument_id":"US037833DP29"}"#,
    )
    .await;
    send(
        &mut c,
        r#"{"msg_type":"subscribe","instrument_id":"999999999"}"#,
    )
    .await;
    send(&mut c, r#"{"msg_type":"subscribe","instrument":1}"#).await;
    let mut control = Vec::new();
    let mut updates = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        if let Got::Text(t) = recv(&mut c, Duration::from_millis(200)).await {
            if t.contains("\"price_update\"") {
                updates.push(t);
            } else {
                control.push(t);
            }
        }
    }
    assert_eq!(
        control,
        [
            r#"{"msg_type":"subscription","instrument_id":"880591DM1","msg":"subscribed"}"#,
            r#"{"msg_type":"subscription","instrument_id":"US037833DP29","msg":"subscribed"}"#,
            r#"{"msg_type":"error","msg":"unknown instrument 999999999","error_type":"invalid_request"}"#,
            r#"{"msg_type":"error","msg":"malformed request: instrument_id must be a string","error_type":"invalid_request"}"#,
        ]
    );
    assert!(updates.len() > 50, "{}", updates.len());
    let mut ids = std::collections::BTreeSet::new();
    for u in &updates {
        let v = parse(u).expect("json");
        let id = field(&v, "instrument_id").unwrap_or_default();
        if id == "880591DM1" {
            assert!(v.get("bid_price").is_some_and(|x| x.is_null()));
            assert!(v.get("ask_price").is_some_and(|x| x.is_null()));
        } else {
            assert_eq!(id, "US037833DP29");
            assert_eq!(v.get_str("cusip"), Some("037833DP2"));
        }
        ids.insert(id);
    }
    assert_eq!(ids.len(), 2);
    assert_eq!(
        updates.iter().map(|t| as_record(t)).collect::<Vec<_>>(),
        sim.sent()[0][..updates.len()]
    );
    // The connection is still open after errors; unsubscribe_all stops the flow.
    send(&mut c, r#"{"msg_type":"unsubscribe_all"}"#).await;
    loop {
        match recv(&mut c, Duration::from_secs(1)).await {
            Got::Text(t) if t.contains("\"price_update\"") => {}
            Got::Text(t) => {
                assert_eq!(t, r#"{"msg_type":"subscription","msg":"unsubscribed_all"}"#);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(recv(&mut c, Duration::from_millis(200)).await, Got::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moment_orders_start_at_a_start_number() {
    let sim = moment(SimConfig {
        rate: 400,
        total: Some(80),
        ..SimConfig::default()
    });
    let url = sim.url_for("orders").unwrap_or_default();
    let mut a = connect(&url).await;
    assert!(
        matches!(recv(&mut a, Duration::from_secs(1)).await, Got::Text(t) if t.contains("connected"))
    );
    let fa = drain_until_finished(&sim, &mut a, Duration::from_secs(3)).await;
    assert_eq!(fa.len(), 80);
    let ra: Vec<SentRecord> = fa.iter().map(|t| as_record(t)).collect();
    assert_eq!(ra, sim.sent()[0]);
    let numbers: Vec<u64> = ra.iter().map(|r| r.seq.unwrap_or_default()).collect();
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1);
    }
    assert_eq!(
        numbers[0] % 10_000_000_000,
        0,
        "the day's counter starts at 0"
    );
    let first = parse(&fa[0]).expect("json");
    assert_eq!(first.get_str("msg_type"), Some("order_update"));
    assert_eq!(first.get_str("event_type"), Some("request"));
    assert_eq!(first.get_str("msg_number").map(str::len), Some(18));
    // From the 10th message on: exactly the rest of the log.
    let from = numbers[9];
    let mut b = connect(&format!("{url}?start_msg_number={from}")).await;
    assert!(
        matches!(recv(&mut b, Duration::from_secs(1)).await, Got::Text(t) if t.contains("connected"))
    );
    let fb = drain_until_finished(&sim, &mut b, Duration::from_secs(2)).await;
    assert_eq!(fb, fa[9..]);
    assert_eq!(sim.sent()[1], ra[9..]);
    assert_eq!(
        connect_h(&format!("{url}?start_msg_number=abc"), &[])
            .await
            .err(),
        Some("http 400".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moment_pong_grace_closes_a_silent_client() {
    let sim = moment(SimConfig {
        rate: 50,
        ping_interval: Some(Duration::from_millis(200)),
        pong_grace: Duration::from_millis(300),
        ..SimConfig::default()
    });
    let url = sim.url_for("orders").unwrap_or_default();
    let mut silent = connect(&url).await;
    let mut live = connect(&url).await;
    assert!(matches!(
        recv(&mut silent, Duration::from_secs(1)).await,
        Got::Text(_)
    ));
    // `live` keeps reading (tungstenite answers pings); `silent` does not read at all, so
    // its pongs are never sent.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1000) {
        let _ = recv(&mut live, Duration::from_millis(100)).await;
    }
    assert_eq!(sim.stats().pong_timeouts, 1);
    assert_eq!(sim.stats().open_connections, 1);
    let end = loop {
        match recv(&mut silent, Duration::from_secs(1)).await {
            Got::Text(_) => {}
            other => break other,
        }
    };
    assert!(matches!(end, Got::Close(_) | Got::Ended), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moment_faults_apply() {
    let sim = moment(SimConfig {
        rate: 500,
        faults: Faults {
            error_after_s: Some(0.2),
            duplicate_every: Some(3),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let mut c = connect(&sim.url_for("orders").unwrap_or_default()).await;
    let mut texts = Vec::new();
    let end = loop {
        match recv(&mut c, Duration::from_secs(2)).await {
            Got::Text(t) => texts.push(t),
            other => break other,
        }
    };
    assert!(matches!(end, Got::Close(_)), "{end:?}");
    assert_eq!(
        texts.last().map(String::as_str),
        Some(r#"{"msg_type":"error","msg":"simulated server error","error_type":"server_error"}"#)
    );
    let data: Vec<SentRecord> = texts
        .iter()
        .filter(|t| is_data(t))
        .map(|t| as_record(t))
        .collect();
    assert_eq!(data, sim.sent()[0]);
    assert!(data.len() >= 6);
    assert_eq!(data[2], data[3], "the 3rd message is sent twice");
}
