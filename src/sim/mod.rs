//! The market-data simulator: a real WebSocket server on a loopback address that speaks the
//! CoinAPI market-data protocol or Moment's real-time APIs, generates a seeded, deterministic
//! market, injects faults on schedule and records every data message it sends.
//!
//! Layout: `market` (CoinAPI generator), `moment` (instruments, prices, order log),
//! `coinapi` (requests, scope and filter rules, rendering), `faults` (schedules), `conn` (one
//! connection's reader and writer), `pump` (pacing and fan-out), `fmt` (JSON text helpers).
//! Everything except `conn`, `pump` and this file is sans-I/O and takes `now` as an argument.
//!
//! ```ignore
//! let rt = tokio::runtime::Runtime::new()?;
//! let sim = SimServer::start(rt.handle(), "127.0.0.1", 0, SimConfig::default())?;
//! println!("{}", sim.url()); // ws://127.0.0.1:PORT/v1/
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::sim::conn::{ConnInfo, Link, Rec, StreamKind, NONE, NO_KEY};
pub use crate::sim::market::SimBook;
use crate::sim::market::{trade_uuid, Event, Kind, Market, Universe};

/// One connection's true books: `(kind, symbol index)` -> `(sequence, book)` in send order.
pub(crate) type BookRecord = std::collections::HashMap<(u8, u32), Vec<(u64, Arc<SimBook>)>>;
use crate::sim::moment::{Instruments, OrderGen, PriceGen};

pub(crate) mod coinapi;
pub(crate) mod conn;
pub(crate) mod faults;
pub(crate) mod fmt;
pub mod load;
pub(crate) mod market;
pub(crate) mod moment;
pub(crate) mod pump;
pub mod recorded;

#[cfg(test)]
mod tests;

/// Which venue protocol the simulator speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimProtocol {
    /// CoinAPI market-data WebSocket V1 (PROTOCOLS.md part 1).
    #[default]
    CoinApi,
    /// Moment real-time prices and orders (PROTOCOLS.md part 2).
    Moment,
}

/// How CoinAPI heartbeats are spelled on the wire (the vendor's docs use both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeartbeatSpelling {
    /// `{"type":"heartbeat"}`.
    #[default]
    Heartbeat,
    /// `{"type":"hearbeat"}`, as in the market-data V1 docs and the official SDKs.
    Hearbeat,
}

/// Faults to inject. Count-based faults (`*_every`) count each connection's data messages and
/// apply to every connection; time-based faults count seconds since the connection's first
/// subscription (Moment: since it connected) and apply only to the simulator's first
/// connection, so a reconnecting client lands on a healthy server.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Every Nth data message skips one sequence number for its key (never sent). On the
    /// Moment order stream the Nth message itself is skipped; messages without a sequence
    /// (exrate, price_update) are sent unchanged.
    pub gap_every: Option<u64>,
    /// Every Nth data message is sent twice (same sequence; recorded twice).
    pub duplicate_every: Option<u64>,
    /// Every Nth data message is preceded by an extra, truncated copy of itself (broken JSON),
    /// recorded with `msg_type` "malformed".
    pub malformed_every: Option<u64>,
    /// Close the TCP connection abruptly (no close frame) after this many seconds.
    pub disconnect_after_s: Option<f64>,
    /// Start a stall after this many seconds: nothing is sent (no data, heartbeats or pings)
    /// and nothing is read (pongs go unanswered) while the socket stays open.
    pub stall_after_s: Option<f64>,
    /// Stall length; `None` stalls until the client leaves.
    pub stall_s: Option<f64>,
    /// Send a CoinAPI `reconnect` notice after this many seconds, keep streaming, and close
    /// the socket at its `before_time`.
    pub reconnect_notice_after_s: Option<f64>,
    /// `within_seconds` of the reconnect notice (default 10).
    pub reconnect_within_s: f64,
    /// Send an `error` message and close after this many seconds.
    pub error_after_s: Option<f64>,
    /// Every Nth `book`/`book_l3` update of a connection is not sent at all: a real change
    /// lost, its sequence number skipped (the simulator's own book still has it).
    pub book_drop_every: Option<u64>,
    /// Every Nth `book`/`book_l3` update is preceded by a bogus update, with a sequence
    /// number of its own, that crosses the book (a bid at the best ask).
    pub book_cross_every: Option<u64>,
    /// Every Nth `book`/`book_l3` update is sent as a snapshot of the book instead.
    pub book_snapshot_every: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            gap_every: None,
            duplicate_every: None,
            malformed_every: None,
            disconnect_after_s: None,
            stall_after_s: None,
            stall_s: None,
            reconnect_notice_after_s: None,
            reconnect_within_s: 10.0,
            error_after_s: None,
            book_drop_every: None,
            book_cross_every: None,
            book_snapshot_every: None,
        }
    }
}

/// Simulator configuration. `Debug` does not show the key.
#[derive(Clone)]
pub struct SimConfig {
    /// CoinAPI or Moment.
    pub protocol: SimProtocol,
    /// Events per second overall, paced; 0 = as fast as the slowest connection's socket takes
    /// them (the generator waits).
    pub rate: u64,
    /// Number of symbols (CoinAPI) or instruments (Moment, at least the 9 scenario ones).
    pub symbols: usize,
    /// Generator seed: same seed, same events (times aside, which are the wall clock).
    pub seed: u64,
    /// Stop generating after this many events (per generator: CoinAPI market; Moment prices
    /// and orders each). Connections stay open.
    pub total: Option<u64>,
    /// WebSocket ping interval; `None` = protocol default (CoinAPI 60 s, Moment 30 s).
    pub ping_interval: Option<Duration>,
    /// How long a client may take to answer a ping before it is disconnected.
    pub pong_grace: Duration,
    /// CoinAPI heartbeat spelling.
    pub heartbeat_spelling: HeartbeatSpelling,
    /// Required key, if any (CoinAPI: `X-CoinAPI-Key` header or the hello's `apikey`; Moment:
    /// `Authorization: Bearer` or `auth_token`).
    pub api_key: Option<String>,
    /// Faults to inject.
    pub faults: Faults,
    /// Keep the per-connection record behind `sent()` (24 bytes a message): on for tests,
    /// off for long runs (demo, benchmarks) whose memory must stay flat.
    pub record: bool,
    /// Paced generation: `false` wakes on the runtime's 1 ms timer and generates what fell due
    /// in one burst; `true` busy-waits one server CPU so each event is generated (and stamped)
    /// at its own due time, for latency measurements that see the client, not the bursts.
    pub spin_pacing: bool,
    /// CoinAPI: generate only these data types (each keeps its weight in the mix); `None`,
    /// the whole mix. A load made of one type (say `book`) for benchmarks.
    pub generate: Option<Vec<String>>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("protocol", &self.protocol)
            .field("rate", &self.rate)
            .field("symbols", &self.symbols)
            .field("seed", &self.seed)
            .field("total", &self.total)
            .field("ping_interval", &self.ping_interval)
            .field("pong_grace", &self.pong_grace)
            .field("heartbeat_spelling", &self.heartbeat_spelling)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("faults", &self.faults)
            .field("record", &self.record)
            .field("spin_pacing", &self.spin_pacing)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            protocol: SimProtocol::CoinApi,
            rate: 10_000,
            symbols: 100,
            seed: 0,
            total: None,
            ping_interval: None,
            pong_grace: Duration::from_secs(5),
            heartbeat_spelling: HeartbeatSpelling::Heartbeat,
            api_key: None,
            faults: Faults::default(),
            record: true,
            spin_pacing: false,
            generate: None,
        }
    }
}

/// One sent data message, as recorded for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRecord {
    /// Wire type (`trade`, `price_update`, ...) or `malformed`.
    pub msg_type: String,
    /// Symbol id, index id, exrate pair (`BASE/QUOTE`), instrument id or order id.
    pub key: Option<String>,
    /// CoinAPI `sequence`, or Moment `msg_number` as a number.
    pub seq: Option<u64>,
    /// Trade uuid.
    pub uuid: Option<String>,
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Connections upgraded so far.
    pub connections: u64,
    /// Connections currently open.
    pub open_connections: u64,
    /// Data messages written (duplicates and malformed frames included), as in `sent()`.
    pub messages_sent: u64,
    /// Text payload bytes written (data and control messages).
    pub bytes_sent: u64,
    /// Events generated (Moment: price updates and order events together).
    pub generated: u64,
    /// `total` reached by every generator that started, and every open connection's queue
    /// flushed to its socket. Always false without `total`.
    pub finished: bool,
    /// Connections closed because a ping went unanswered past `pong_grace`.
    pub pong_timeouts: u64,
}

/// Internal knobs (tests shrink the slow-consumer queue).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Per-connection queue for paced rates (the real server's 131 072 messages).
    pub queue_capacity: usize,
    /// Per-connection queue at `rate=0`: small, so events are not generated far ahead of the
    /// socket (their timestamps would go stale).
    pub unpaced_queue: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_capacity: 131_072,
            unpaced_queue: 2_048,
        }
    }
}

/// State shared by the accept loop, the generators and the connections.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub tuning: Tuning,
    pub universe: Arc<Universe>,
    instruments: Arc<Instruments>,
    /// Record key table (see `Universe::keys`, `Instruments::keys`; order ids are appended).
    keys: RwLock<Vec<Arc<str>>>,
    records: Mutex<Vec<Arc<Mutex<Vec<Rec>>>>>,
    /// Per connection (accept order), when recording: the true book after each `book` /
    /// `book_l3` message sent, by (kind, symbol), with its sequence.
    book_records: Mutex<Vec<Arc<Mutex<BookRecord>>>>,
    links: Mutex<Vec<Arc<Link>>>,
    pub links_version: AtomicU64,
    broadcast_start: watch::Sender<bool>,
    orders_start: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    pub order_log: RwLock<Vec<Arc<Event>>>,
    log_len: watch::Sender<usize>,
    /// Signalled by writers after each flush (the unpaced order log waits on it).
    pub progress: Notify,
    pub connections: AtomicU64,
    pub open_connections: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub generated: AtomicU64,
    pub pong_timeouts: AtomicU64,
    pub broadcast_done: AtomicBool,
    pub orders_done: AtomicBool,
}

impl Shared {
    fn new(config: SimConfig, tuning: Tuning) -> Self {
        let universe = Arc::new(Universe::new(config.symbols));
        let instruments = Arc::new(Instruments::new(config.symbols));
        let keys = match config.protocol {
            SimProtocol::CoinApi => universe.keys(),
            SimProtocol::Moment => instruments.keys(),
        };
        Self {
            config,
            tuning,
            universe,
            instruments,
            keys: RwLock::new(keys),
            records: Mutex::new(Vec::new()),
            book_records: Mutex::new(Vec::new()),
            links: Mutex::new(Vec::new()),
            links_version: AtomicU64::new(0),
            broadcast_start: watch::Sender::new(false),
            orders_start: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
            order_log: RwLock::new(Vec::new()),
            log_len: watch::Sender::new(0),
            progress: Notify::new(),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            pong_timeouts: AtomicU64::new(0),
            broadcast_done: AtomicBool::new(false),
            orders_done: AtomicBool::new(false),
        }
    }

    pub(crate) fn instruments(&self) -> Arc<Instruments> {
        self.instruments.clone()
    }

    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn broadcast_start_rx(&self) -> watch::Receiver<bool> {
        self.broadcast_start.subscribe()
    }

    pub(crate) fn orders_start_rx(&self) -> watch::Receiver<bool> {
        self.orders_start.subscribe()
    }

    /// A connection has a non-empty scope: the broadcast generator may start.
    pub(crate) fn start_broadcast(&self) {
        self.broadcast_start
            .send_if_modified(|s| !std::mem::replace(s, true));
    }

    /// An order-stream connection exists: the order log may start.
    pub(crate) fn start_orders(&self) {
        self.orders_start
            .send_if_modified(|s| !std::mem::replace(s, true));
    }

    /// Registers a new connection; returns its index (accept order).
    pub(crate) fn open_record_slot(&self) -> usize {
        let mut r = self.records.lock();
        r.push(Arc::new(Mutex::new(Vec::new())));
        self.book_records.lock().push(Arc::default());
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        r.len() - 1
    }

    pub(crate) fn record_slot(&self, id: usize) -> Arc<Mutex<Vec<Rec>>> {
        self.records.lock()[id].clone()
    }

    pub(crate) fn book_slot(&self, id: usize) -> Arc<Mutex<BookRecord>> {
        self.book_records.lock()[id].clone()
    }

    pub(crate) fn add_link(&self, link: Arc<Link>) {
        self.links.lock().push(link);
        self.links_version.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn remove_link(&self, id: usize) {
        self.links.lock().retain(|l| l.id != id);
        self.links_version.fetch_add(1, Ordering::AcqRel);
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn links_snapshot(&self) -> Vec<Arc<Link>> {
        self.links.lock().clone()
    }

    pub(crate) fn log_len_rx(&self) -> watch::Receiver<usize> {
        self.log_len.subscribe()
    }

    pub(crate) fn set_log_len(&self, len: usize) {
        self.log_len.send_replace(len);
    }

    /// Where an order-stream connection starts reading the log: at the first entry whose
    /// `msg_number` is at least `start` (a resume), or at the end (live only).
    pub(crate) fn log_start(&self, start: Option<u64>) -> usize {
        let log = self.order_log.read();
        match start {
            Some(n) => log.partition_point(|e| e.fixed_seq.unwrap_or(0) < n),
            None => log.len(),
        }
    }

    pub(crate) fn intern_key(&self, key: &str) -> u32 {
        let mut keys = self.keys.write();
        keys.push(key.into());
        u32::try_from(keys.len() - 1).unwrap_or(NO_KEY)
    }

    fn finished(&self) -> bool {
        if self.config.total.is_none() {
            return false;
        }
        let b_started = *self.broadcast_start.borrow();
        let o_started = *self.orders_start.borrow();
        if !b_started && !o_started
            || b_started && !self.broadcast_done.load(Ordering::Acquire)
            || o_started && !self.orders_done.load(Ordering::Acquire)
        {
            return false;
        }
        let log_len = self.order_log.read().len() as u64;
        self.links.lock().iter().all(|l| {
            !l.alive.load(Ordering::Relaxed)
                || match l.kind {
                    StreamKind::Orders => l.done.load(Ordering::Acquire) >= log_len,
                    _ => l.done.load(Ordering::Acquire) >= l.enqueued.load(Ordering::Acquire),
                }
        })
    }
}

/// A running simulator. Dropping it shuts it down.
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn loopback_ip(host: &str) -> std::io::Result<IpAddr> {
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("simulator host must be a loopback address, got {host:?}"),
                )
            })?,
    };
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("simulator binds loopback addresses only, got {host:?}"),
        ))
    }
}

/// Binds `host:port` (loopback only; port 0 = ephemeral) as a listener on `handle`'s runtime.
fn bind_loopback(
    handle: &tokio::runtime::Handle,
    host: &str,
    port: u16,
) -> std::io::Result<(TcpListener, SocketAddr)> {
    let std_listener = std::net::TcpListener::bind((loopback_ip(host)?, port))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let _guard = handle.enter();
    Ok((TcpListener::from_std(std_listener)?, addr))
}

impl SimServer {
    /// Binds `host:port` (port 0 = ephemeral), spawns the server on `handle` and returns once
    /// it is listening.
    ///
    /// # Errors
    /// `InvalidInput` for a host that is not a loopback address; bind errors as they come.
    pub fn start(
        handle: &tokio::runtime::Handle,
        host: &str,
        port: u16,
        config: SimConfig,
    ) -> std::io::Result<SimServer> {
        Self::start_tuned(handle, host, port, config, Tuning::default())
    }

    pub(crate) fn start_tuned(
        handle: &tokio::runtime::Handle,
        host: &str,
        port: u16,
        config: SimConfig,
        tuning: Tuning,
    ) -> std::io::Result<SimServer> {
        let (listener, addr) = bind_loopback(handle, host, port)?;
        let shared = Arc::new(Shared::new(config, tuning));
        handle.spawn(accept_loop(shared.clone(), listener));
        let seed = shared.config.seed;
        match shared.config.protocol {
            SimProtocol::CoinApi => {
                let mut market = Market::new(seed, shared.universe.clone());
                if let Some(types) = &shared.config.generate {
                    market.only(types);
                }
                handle.spawn(pump::broadcast(shared.clone(), move |now| {
                    market.next_event(now)
                }));
            }
            SimProtocol::Moment => {
                let mut prices = PriceGen::new(seed, shared.instruments());
                handle.spawn(pump::broadcast(shared.clone(), move |now| {
                    prices.next_event(now)
                }));
                let mut orders = OrderGen::new(seed, shared.instruments());
                handle.spawn(pump::order_log(shared.clone(), move |now, intern| {
                    orders.next_event(now, intern)
                }));
            }
        }
        Ok(SimServer { addr, shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The feed URL: `ws://127.0.0.1:PORT/v1/` (in Moment mode the API root; see `url_for`).
    pub fn url(&self) -> String {
        format!("ws://{}/v1/", self.addr)
    }

    /// Moment stream URLs: `"prices"` -> `.../v1/data/price-stream/`, `"orders"` ->
    /// `.../v1/trading/order-stream/`. `None` for other names and in CoinAPI mode.
    pub fn url_for(&self, stream: &str) -> Option<String> {
        if self.shared.config.protocol != SimProtocol::Moment {
            return None;
        }
        let path = match stream {
            "prices" => "data/price-stream/",
            "orders" => "trading/order-stream/",
            _ => return None,
        };
        Some(format!("ws://{}/v1/{path}", self.addr))
    }

    /// Every data message written, per connection in accept order.
    pub fn sent(&self) -> Vec<Vec<SentRecord>> {
        let slots = self.shared.records.lock().clone();
        let keys = self.shared.keys.read().clone();
        let seed = self.shared.config.seed;
        slots
            .iter()
            .map(|slot| {
                slot.lock()
                    .iter()
                    .map(|r| {
                        let kind = Kind::from_u8(r.kind);
                        SentRecord {
                            msg_type: kind.name().to_owned(),
                            key: (r.key != NO_KEY)
                                .then(|| keys.get(r.key as usize).map(|k| k.to_string()))
                                .flatten(),
                            seq: (r.seq != NONE).then_some(r.seq),
                            uuid: (kind == Kind::Trade && r.ev != NONE).then(|| {
                                let mut s = String::with_capacity(36);
                                fmt::push_uuid(&mut s, trade_uuid(seed, r.ev), true);
                                s
                            }),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The simulator's true `book` (or `book_l3`, with `l3`) book of `symbol_id` as of a
    /// message it sent: on `connection` (accept order; default the last one that sent this
    /// book), at `sequence` (default its last message). Needs recording (`record`, on by
    /// default). Returns the message's sequence and the book.
    pub fn book(
        &self,
        symbol_id: &str,
        l3: bool,
        connection: Option<usize>,
        sequence: Option<u64>,
    ) -> Option<(u64, Arc<SimBook>)> {
        let sym = self
            .shared
            .universe
            .symbols
            .iter()
            .position(|s| s.id == symbol_id)?;
        let kind = if l3 { Kind::BookL3 } else { Kind::Book } as u8;
        let slots = self.shared.book_records.lock().clone();
        let pick = |slot: &Arc<Mutex<BookRecord>>| -> Option<(u64, Arc<SimBook>)> {
            let rec = slot.lock();
            let hist = rec.get(&(kind, u32::try_from(sym).ok()?))?;
            match sequence {
                None => hist.last().cloned(),
                Some(q) => hist
                    .binary_search_by_key(&q, |(s, _)| *s)
                    .ok()
                    .map(|i| hist[i].clone()),
            }
        };
        match connection {
            Some(c) => pick(slots.get(c)?),
            None => slots.iter().rev().find_map(pick),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> SimStats {
        let s = &self.shared;
        SimStats {
            connections: s.connections.load(Ordering::Relaxed),
            open_connections: s.open_connections.load(Ordering::Relaxed),
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            generated: s.generated.load(Ordering::Relaxed),
            finished: s.finished(),
            pong_timeouts: s.pong_timeouts.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and closes every connection (with a close frame). Idempotent; also
    /// done on drop. Returns at once; the tasks wind down on the runtime.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown_rx();
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    log::warn!("simulator accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = until_set(&mut shutdown) => return,
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut info = None;
            let callback = Upgrade {
                config: &shared.config,
                info: &mut info,
            };
            let upgrade = tokio_tungstenite::accept_hdr_async(tcp, callback);
            let Ok(Ok(ws)) = tokio::time::timeout(Duration::from_secs(10), upgrade).await else {
                return;
            };
            let Some(info) = info else { return };
            if *shared.shutdown_rx().borrow() {
                return;
            }
            conn::serve(shared, ws, info).await;
        });
    }
}

/// Resolves once the flag is set (or its sender is gone). The guard `wait_for` returns is
/// dropped here, so callers' futures stay `Send`.
pub(crate) async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// The upgrade callback: routes and authenticates, and keeps what the connection needs.
struct Upgrade<'a> {
    config: &'a SimConfig,
    info: &'a mut Option<ConnInfo>,
}

impl Callback for Upgrade<'_> {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        match check_upgrade(self.config, req) {
            Ok(info) => {
                *self.info = Some(info);
                Ok(resp)
            }
            Err((status, text)) => {
                let mut r = ErrorResponse::new(Some(text.to_owned()));
                *r.status_mut() = status;
                Err(r)
            }
        }
    }
}

/// A refused upgrade: HTTP status and body.
type Refusal = (StatusCode, &'static str);

fn reject(status: StatusCode, text: &'static str) -> Refusal {
    (status, text)
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Decides an upgrade: route (Moment), authentication, resume point.
fn check_upgrade(config: &SimConfig, req: &Request) -> Result<ConnInfo, Refusal> {
    match config.protocol {
        SimProtocol::CoinApi => {
            // Any of the documented key carriers; a wrong one is rejected, none at all defers
            // to the hello's `apikey`.
            let auth = header(req, "authorization")
                .map(|a| a.strip_prefix("Bearer ").unwrap_or(a).trim().to_owned());
            let path_key = req
                .uri()
                .path()
                .split('/')
                .find_map(|seg| seg.strip_prefix("APIKEY-"))
                .map(str::to_owned);
            let offered: Vec<String> = [
                header(req, "x-coinapi-key").map(str::to_owned),
                auth,
                query_param(req, "apikey"),
                path_key,
            ]
            .into_iter()
            .flatten()
            .collect();
            let need_key = match &config.api_key {
                None => None,
                Some(key) if offered.is_empty() => Some(key.clone()),
                Some(key) if offered.iter().any(|o| o == key) => None,
                Some(_) => return Err(reject(StatusCode::UNAUTHORIZED, "Invalid API key")),
            };
            Ok(ConnInfo {
                stream: StreamKind::CoinApi,
                need_key,
                start_msg_number: None,
            })
        }
        SimProtocol::Moment => {
            let segs: Vec<&str> = req
                .uri()
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .collect();
            let versioned = segs.first().is_some_and(|v| {
                v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())
            });
            let stream = match (versioned, segs.get(1..)) {
                (true, Some(["data", "price-stream"])) => StreamKind::Prices,
                (true, Some(["trading", "order-stream"])) => StreamKind::Orders,
                _ => return Err(reject(StatusCode::NOT_FOUND, "Not Found")),
            };
            if let Some(key) = &config.api_key {
                let bearer = header(req, "authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(|k| k.trim().to_owned());
                let token = bearer.or_else(|| query_param(req, "auth_token"));
                if token.as_deref() != Some(key.as_str()) {
                    return Err(reject(StatusCode::UNAUTHORIZED, "Unauthorized"));
                }
            }
            let start_msg_number = match query_param(req, "start_msg_number") {
                None => None,
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    reject(StatusCode::BAD_REQUEST, "start_msg_number must be a number")
                })?),
            };
            Ok(ConnInfo {
                stream,
                need_key: None,
                start_msg_number: start_msg_number.filter(|_| stream == StreamKind::Orders),
            })
        }
    }
}
