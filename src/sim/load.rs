//! A pre-rendered CoinAPI load for benchmarks: the simulator's market, rendered once into
//! WebSocket frames and written over and over, so the server costs a memcpy-sized patch and a
//! `write` per message instead of generating and formatting each one.
//!
//! The live simulator tops out near a million messages a second on one CPU, below what a
//! client that only counts can take; this load goes several times faster, so a client's own
//! ceiling can be measured. Each pass over the messages rewrites their sequence numbers (a
//! fixed-width field, so frames keep their length), which keeps every (type, key) contiguous
//! across passes: a client sees an endless, gap-free feed. Time stamps and trade uuids repeat
//! from pass to pass, so the load is for throughput and CPU, not for latency or dedup checks.
//!
//! It speaks just enough of the protocol for that: any upgrade request is accepted, the first
//! client frame (the hello) starts the stream, whatever it asks for; pings are answered, a
//! close ends the connection. With `compression`, a client that offers permessage-deflate
//! (RFC 7692) gets it, with context takeover, compressed as it is sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::sim::market::{Kind, Market, Universe};

/// The data types the load carries: the benchmark's mix.
const KINDS: [Kind; 4] = [Kind::Trade, Kind::Quote, Kind::Book5, Kind::Index];

/// Width of the sequence field. Sequences start at 10^12 and grow by one per message of a key,
/// so they keep 13 digits for about nine trillion messages.
const SEQ_WIDTH: usize = 13;
const SEQ_BASE: u64 = 1_000_000_000_000;

/// How many bytes are written per `write` call (and between checks for pings and pacing).
const CHUNK: usize = 256 * 1024;

/// What a load server sends.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Distinct messages rendered (one pass).
    pub messages: usize,
    pub symbols: usize,
    pub seed: u64,
    /// Messages per second per connection; 0 = as fast as the socket takes them.
    pub rate: u64,
    /// Accept permessage-deflate when a client offers it.
    pub compression: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            messages: 100_000,
            symbols: 100,
            seed: 0,
            rate: 0,
            compression: false,
        }
    }
}

/// Counters over every connection.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub connections: AtomicU64,
    pub messages_sent: AtomicU64,
    /// JSON text bytes (before compression).
    pub payload_bytes: AtomicU64,
    /// Bytes written to sockets (frame headers and compressed payloads).
    pub wire_bytes: AtomicU64,
}

/// One pass of messages, rendered and framed once.
#[derive(Debug)]
struct Template {
    /// Every message as an unmasked text frame, back to back.
    frames: Vec<u8>,
    /// Per message: where its frame starts (one more entry: the end).
    starts: Vec<usize>,
    /// Per message: where its sequence digits start, within `frames`.
    seq_at: Vec<usize>,
    /// Per message: its sequence in pass 0, and how much it grows per pass (the number of
    /// messages of its key in one pass).
    seq0: Vec<u64>,
    step: Vec<u64>,
    /// Per message: where its payload starts.
    payload_at: Vec<usize>,
}

/// Writes `v` as exactly `SEQ_WIDTH` decimal digits.
fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out[..SEQ_WIDTH].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// A server-to-client frame header: FIN, the opcode, `rsv1` for a compressed message.
fn frame_header(out: &mut Vec<u8>, opcode: u8, rsv1: bool, len: usize) {
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

impl Template {
    fn render(config: &LoadConfig) -> Template {
        let universe = Arc::new(Universe::new(config.symbols.max(1)));
        let mut market = Market::new(config.seed, universe.clone());
        let nkeys = universe.symbols.len().max(universe.indexes.len());
        let mut counts = vec![0u64; KINDS.len() * nkeys];
        let mut slots = Vec::with_capacity(config.messages);
        let mut t = Template {
            frames: Vec::with_capacity(config.messages * 300),
            starts: Vec::with_capacity(config.messages + 1),
            seq_at: Vec::with_capacity(config.messages),
            seq0: Vec::with_capacity(config.messages),
            step: Vec::with_capacity(config.messages),
            payload_at: Vec::with_capacity(config.messages),
        };
        // Stamps 1 µs apart, starting now: plausible times, fixed for the load server's life.
        let t0 = crate::sim::fmt::wall_ns();
        let mut text = String::with_capacity(512);
        let mut made = 0usize;
        while made < config.messages.max(1) {
            let ev = market.next_event(t0 + made as i64 * 1_000);
            let Some(k) = KINDS.iter().position(|&k| k == ev.kind) else {
                continue;
            };
            let slot = k * nkeys + ev.key as usize;
            let seq = SEQ_BASE + counts[slot];
            counts[slot] += 1;
            text.clear();
            text.push_str(&ev.head);
            let digits_in_text = text.len();
            text.push_str(&"0".repeat(SEQ_WIDTH));
            text.push_str(&ev.tail);
            t.starts.push(t.frames.len());
            frame_header(&mut t.frames, 0x1, false, text.len());
            t.payload_at.push(t.frames.len());
            t.seq_at.push(t.frames.len() + digits_in_text);
            t.frames.extend_from_slice(text.as_bytes());
            t.seq0.push(seq);
            slots.push(slot);
            made += 1;
        }
        t.starts.push(t.frames.len());
        t.step = slots.iter().map(|&s| counts[s]).collect();
        t
    }

    fn len(&self) -> usize {
        self.seq0.len()
    }

    /// Writes the sequence of message `i` in pass `pass` into `frames` (a copy of `self.frames`).
    fn patch(&self, frames: &mut [u8], i: usize, pass: u64) {
        let seq = self.seq0[i] + pass * self.step[i];
        put_digits(&mut frames[self.seq_at[i]..], seq);
    }
}

/// A running load server; stops when dropped.
pub struct LoadServer {
    addr: SocketAddr,
    stats: Arc<LoadStats>,
    shutdown: watch::Sender<bool>,
}

impl LoadServer {
    /// Renders the messages, binds `host:port` (loopback only) and serves on `handle`.
    ///
    /// # Errors
    /// `InvalidInput` for a host that is not a loopback address; bind errors as they come.
    pub fn start(
        handle: &tokio::runtime::Handle,
        host: &str,
        port: u16,
        config: LoadConfig,
    ) -> std::io::Result<LoadServer> {
        let (listener, addr) = super::bind_loopback(handle, host, port)?;
        let template = Arc::new(Template::render(&config));
        let stats = Arc::new(LoadStats::default());
        let (shutdown, rx) = watch::channel(false);
        handle.spawn(accept_loop(
            listener,
            template,
            Arc::new(config),
            stats.clone(),
            rx,
        ));
        Ok(LoadServer {
            addr,
            stats,
            shutdown,
        })
    }

    /// The feed URL: `ws://127.0.0.1:PORT/v1/`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    /// Stops accepting and ends every connection.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for LoadServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    template: Arc<Template>,
    config: Arc<LoadConfig>,
    stats: Arc<LoadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    log::debug!("load server: accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.wait_for(|&s| s) => return,
        };
        let (template, config, stats) = (template.clone(), config.clone(), stats.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = serve(tcp, &template, &config, &stats) => {
                    if let Err(e) = r {
                        log::debug!("load server: connection ended: {e}");
                    }
                }
                _ = stop.wait_for(|&s| s) => {}
            }
        });
    }
}

/// Reads the upgrade request; returns the `Sec-WebSocket-Key` and whether deflate was offered.
async fn read_upgrade(tcp: &mut TcpStream) -> std::io::Result<(String, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("upgrade request too long"));
        }
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut key = None;
    let mut deflate = false;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "sec-websocket-key" {
            key = Some(value.trim().to_string());
        } else if name == "sec-websocket-extensions" && value.contains("permessage-deflate") {
            deflate = true;
        }
    }
    key.map(|k| (k, deflate))
        .ok_or_else(|| std::io::Error::other("no Sec-WebSocket-Key"))
}

/// What the client's frames ask of the writer.
enum FromClient {
    Pong(Vec<u8>),
    Close,
}

/// Reads client frames: the first one (the hello) starts the stream; pings are handed to the
/// writer to answer; a close or EOF ends the connection.
async fn read_client(
    mut rd: OwnedReadHalf,
    started: tokio::sync::oneshot::Sender<()>,
    tx: mpsc::UnboundedSender<FromClient>,
) -> std::io::Result<()> {
    let mut started = Some(started);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Parse every complete frame in the buffer.
        while let Some((opcode, payload, used)) = parse_client_frame(&buf) {
            buf.drain(..used);
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
            match opcode {
                0x9 => {
                    let _ = tx.send(FromClient::Pong(payload));
                }
                0x8 => {
                    let _ = tx.send(FromClient::Close);
                    return Ok(());
                }
                _ => {}
            }
        }
        if buf.len() > 1 << 20 {
            let _ = tx.send(FromClient::Close);
            return Err(std::io::Error::other("client frame over 1 MiB"));
        }
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            let _ = tx.send(FromClient::Close);
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One complete client frame at the start of `buf`: `(opcode, unmasked payload, bytes used)`.
fn parse_client_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let mask: [u8; 4] = if masked {
        let m = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        m
    } else {
        [0; 4]
    };
    let payload = buf.get(at..at.checked_add(len)?)?;
    let payload = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Some((b0 & 0x0f, payload, at + len))
}

async fn serve(
    mut tcp: TcpStream,
    template: &Template,
    config: &LoadConfig,
    stats: &LoadStats,
) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let (key, offered) = read_upgrade(&mut tcp).await?;
    let deflate = offered && config.compression;
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if deflate {
        response.push_str("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    }
    response.push_str("\r\n");
    tcp.write_all(response.as_bytes()).await?;
    stats.connections.fetch_add(1, Ordering::Relaxed);

    let (rd, mut wr) = tcp.into_split();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (tx, mut from_client) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_client(rd, started_tx, tx));
    if started_rx.await.is_err() {
        reader.abort();
        return Ok(()); // closed before saying hello
    }

    let mut frames = template.frames.clone();
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut scratch: Vec<u8> = Vec::with_capacity(1024);
    let mut compressor = deflate.then(|| Compress::new(Compression::fast(), false));
    // Pacing: messages per 1 ms tick; 0 = no pacing.
    let per_tick = if config.rate > 0 {
        (config.rate / 1000).max(1) as usize
    } else {
        0
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = template.len();
    let mut pass = 0u64;
    let mut i = 0usize;
    let result = loop {
        // Answer pings, notice closes.
        let mut closing = false;
        while let Ok(m) = from_client.try_recv() {
            match m {
                FromClient::Pong(p) => {
                    frame_header(&mut out, 0xA, false, p.len());
                    out.extend_from_slice(&p);
                }
                FromClient::Close => closing = true,
            }
        }
        if closing {
            let _ = wr.write_all(&out).await;
            break Ok(());
        }
        let budget = if per_tick > 0 {
            ticker.tick().await;
            per_tick
        } else {
            usize::MAX
        };
        let mut sent = 0usize;
        let mut payload = 0u64;
        while sent < budget && out.len() < CHUNK {
            template.patch(&mut frames, i, pass);
            let (start, end) = (template.starts[i], template.starts[i + 1]);
            let body = template.payload_at[i];
            payload += (end - body) as u64;
            match compressor.as_mut() {
                None => out.extend_from_slice(&frames[start..end]),
                Some(c) => compress_frame(c, &frames[body..end], &mut scratch, &mut out)?,
            }
            sent += 1;
            i += 1;
            if i == n {
                i = 0;
                pass += 1;
            }
        }
        if let Err(e) = wr.write_all(&out).await {
            break Err(e);
        }
        stats
            .messages_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        stats.payload_bytes.fetch_add(payload, Ordering::Relaxed);
        stats
            .wire_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out.clear();
    };
    reader.abort();
    result
}

/// Appends `payload` as one compressed text frame (RFC 7692: a sync flush, its trailing
/// `00 00 ff ff` left off, RSV1 set); `body` is scratch space, reused across messages.
fn compress_frame(
    c: &mut Compress,
    payload: &[u8],
    body: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    body.clear();
    let before_in = c.total_in();
    loop {
        let consumed = (c.total_in() - before_in) as usize;
        body.reserve(256);
        c.compress_vec(&payload[consumed..], body, FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        let done = (c.total_in() - before_in) as usize == payload.len();
        if done && body.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
    }
    frame_header(out, 0x1, true, body.len() - 4);
    out.extend_from_slice(&body[..body.len() - 4]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_continue_every_key_without_a_gap() {
        let config = LoadConfig {
            messages: 2_000,
            symbols: 5,
            ..LoadConfig::default()
        };
        let t = Template::render(&config);
        assert_eq!(t.len(), 2_000);
        let mut frames = t.frames.clone();
        let mut last: std::collections::HashMap<(String, String), u64> = Default::default();
        for pass in 0..3 {
            for i in 0..t.len() {
                t.patch(&mut frames, i, pass);
                let text =
                    std::str::from_utf8(&frames[t.payload_at[i]..t.starts[i + 1]]).expect("utf-8");
                let v: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
                let kind = v["type"].as_str().expect("type").to_string();
                let key = v
                    .get("symbol_id")
                    .or_else(|| v.get("index_id"))
                    .and_then(|k| k.as_str())
                    .expect("key")
                    .to_string();
                let seq = v["sequence"].as_u64().expect("sequence");
                if let Some(prev) = last.insert((kind, key), seq) {
                    assert_eq!(seq, prev + 1, "message {i} of pass {pass}");
                }
            }
        }
    }

    #[test]
    fn frame_headers_carry_the_length() {
        let mut h = Vec::new();
        frame_header(&mut h, 0x1, false, 125);
        assert_eq!(h, [0x81, 125]);
        h.clear();
        frame_header(&mut h, 0x1, true, 300);
        assert_eq!(h, [0xC1, 126, 1, 44]);
    }

    #[test]
    fn client_frames_are_unmasked() {
        // A masked "hi" text frame from the client side.
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let (op, payload, used) = parse_client_frame(&frame).expect("complete");
        assert_eq!((op, payload.as_slice(), used), (1, &b"hi"[..], 8));
        assert!(parse_client_frame(&frame[..5]).is_none());
    }

    #[test]
    fn compressed_frames_inflate_back() {
        let mut c = Compress::new(Compression::fast(), false);
        let mut d = flate2::Decompress::new(false);
        for text in [
            &b"{\"type\":\"trade\"}"[..],
            b"{\"type\":\"trade\",\"x\":1}",
        ] {
            let mut out = Vec::new();
            compress_frame(&mut c, text, &mut Vec::new(), &mut out).expect("compress");
            assert_eq!(out[0], 0xC1);
            let mut body = out[2..].to_vec();
            body.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut plain = Vec::with_capacity(256);
            d.decompress_vec(&body, &mut plain, flate2::FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(plain, text);
        }
    }
}
