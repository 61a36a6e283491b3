//! One server-side connection: a reader task (client frames -> [`Ctrl`] actions) and the writer
//! loop (events, replies, heartbeats, pings and faults -> frames), plus the [`Link`] the
//! generators use to reach it.
//!
//! The writer owns every decision about what goes on the wire, so replies and scope changes are
//! ordered with the data: a scope is installed by the writer, never behind its back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::sim::coinapi::{self, CompiledScope};
use crate::sim::faults::{BookFault, CountFaults, FaultPlan, Timed};
use crate::sim::fmt::{push_fixed, push_ts, wall_ns};
use crate::sim::market::{Event, Kind};
use crate::sim::moment::{self, PriceScope};
use crate::sim::{HeartbeatSpelling, Shared, SimProtocol};

type Ws = WebSocketStream<TcpStream>;

/// Which stream a connection serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    CoinApi,
    Prices,
    Orders,
}

/// A connection's current subscription, as the generator and the writer filter with it.
#[derive(Clone, Debug, Default)]
pub(crate) enum LinkScope {
    /// Nothing subscribed (also the order stream, which is fed from the log, not the fan-out).
    #[default]
    Nothing,
    Coin(Arc<CompiledScope>),
    Prices(Arc<PriceScope>),
}

impl LinkScope {
    pub(crate) fn matches(&self, ev: &Event) -> bool {
        match self {
            LinkScope::Nothing => false,
            LinkScope::Coin(c) => c.matches(ev),
            LinkScope::Prices(p) => p.matches(ev),
        }
    }
}

/// What the reader asks the writer to do.
#[derive(Debug)]
pub(crate) enum Ctrl {
    /// Install a new scope; optionally change heartbeats and send a reply first.
    Install {
        scope: LinkScope,
        heartbeat: Option<bool>,
        nonempty: bool,
        reply: Option<String>,
    },
    /// Send a text frame (not recorded as data).
    Reply(String),
    /// Send a text frame, then close the connection.
    ErrorClose(String),
    /// The client closed or the socket failed.
    Gone,
}

/// The protocol half that reads client frames.
pub(crate) enum Session {
    Coin(coinapi::Session),
    Prices(moment::PriceSession),
    Orders,
}

impl Session {
    fn on_text(&mut self, text: &str) -> Vec<Ctrl> {
        match self {
            Session::Coin(s) => s.on_text(text),
            Session::Prices(s) => s.on_text(text),
            Session::Orders => vec![Ctrl::Reply(moment::error_json(
                "the order stream takes no requests",
                "invalid_request",
            ))],
        }
    }

    fn on_binary(&mut self) -> Vec<Ctrl> {
        match self {
            Session::Coin(s) => s.on_binary(),
            Session::Prices(_) | Session::Orders => vec![Ctrl::Reply(moment::error_json(
                "binary messages are not supported",
                "invalid_request",
            ))],
        }
    }
}

/// A sent data message as stored (compact; expanded by `SimServer::sent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    pub kind: u8,
    /// Index into the record key table, or `NO_KEY`.
    pub key: u32,
    /// Sequence / msg_number, or `NONE`.
    pub seq: u64,
    /// Generator event number (for trade uuids), or `NONE`.
    pub ev: u64,
}

pub(crate) const NONE: u64 = u64::MAX;
pub(crate) const NO_KEY: u32 = u32::MAX;

/// What the generators see of a connection.
pub(crate) struct Link {
    pub id: usize,
    pub kind: StreamKind,
    pub scope: RwLock<LinkScope>,
    /// Fan-out queue (CoinAPI and prices); the order stream reads the log instead.
    pub tx: Option<mpsc::Sender<Arc<Event>>>,
    /// Events queued for this connection by the generator.
    pub enqueued: AtomicU64,
    /// Events the writer has finished with (flushed or filtered out); for the order stream,
    /// the log position flushed so far.
    pub done: AtomicU64,
    pub alive: AtomicBool,
    overflowed: AtomicBool,
    overflow_notify: Notify,
    /// Highest ping number the client has answered.
    pong_seen: AtomicU64,
}

impl Link {
    pub(crate) fn new(id: usize, kind: StreamKind, tx: Option<mpsc::Sender<Arc<Event>>>) -> Self {
        Self {
            id,
            kind,
            scope: RwLock::new(LinkScope::Nothing),
            tx,
            enqueued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            overflowed: AtomicBool::new(false),
            overflow_notify: Notify::new(),
            pong_seen: AtomicU64::new(0),
        }
    }

    /// Whether the generator should queue `ev` here.
    pub(crate) fn wants(&self, ev: &Event) -> bool {
        self.alive.load(Ordering::Relaxed)
            && !self.overflowed.load(Ordering::Relaxed)
            && self.scope.read().matches(ev)
    }

    /// The per-connection queue overflowed (slow consumer): the writer sends an error and
    /// closes.
    pub(crate) fn trigger_overflow(&self) {
        if !self.overflowed.swap(true, Ordering::Relaxed) {
            self.overflow_notify.notify_one();
        }
    }

    #[cfg(test)]
    pub(crate) fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn has_nonempty_scope(&self) -> bool {
        !matches!(*self.scope.read(), LinkScope::Nothing)
    }
}

/// Where a writer's events come from.
pub(crate) enum Source {
    Channel(mpsc::Receiver<Arc<Event>>),
    /// The shared order log, from `cursor`.
    Log {
        cursor: usize,
        len_rx: watch::Receiver<usize>,
    },
}

impl Source {
    async fn next(&mut self, shared: &Shared) -> Option<Arc<Event>> {
        match self {
            Source::Channel(rx) => rx.recv().await,
            Source::Log { cursor, len_rx } => {
                let c = *cursor;
                len_rx.wait_for(|len| *len > c).await.ok()?;
                let ev = shared.order_log.read().get(c).cloned();
                *cursor += 1;
                ev
            }
        }
    }

    fn try_next(&mut self, shared: &Shared) -> Option<Arc<Event>> {
        match self {
            Source::Channel(rx) => rx.try_recv().ok(),
            Source::Log { cursor, .. } => {
                let ev = shared.order_log.read().get(*cursor).cloned();
                if ev.is_some() {
                    *cursor += 1;
                }
                ev
            }
        }
    }

    fn position(&self) -> Option<u64> {
        match self {
            Source::Channel(_) => None,
            Source::Log { cursor, .. } => Some(*cursor as u64),
        }
    }
}

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exit {
    Shutdown,
    Overflow,
    Disconnect,
    PongTimeout,
    /// A close frame was already sent (error, reconnect).
    Closed,
    ClientGone,
    Io,
}

enum Step {
    Shutdown,
    Overflow,
    Fault,
    StallEnd,
    PongCheck,
    Ctrl(Option<Ctrl>),
    Ping,
    Heartbeat,
    Data(Option<Arc<Event>>),
}

/// How the writer renders events.
enum Render {
    Coin(coinapi::Renderer),
    Prices,
    Orders { min_no: u64 },
}

/// Everything a connection needs from the handshake.
pub(crate) struct ConnInfo {
    pub stream: StreamKind,
    /// CoinAPI: the upgrade did not carry the key, so the first request's `apikey` must.
    pub need_key: Option<String>,
    /// Moment orders: start (again) at this `msg_number`.
    pub start_msg_number: Option<u64>,
}

/// Runs one upgraded connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, ws: Ws, info: ConnInfo) {
    let cfg = &shared.config;
    let id = shared.open_record_slot();
    let recs = shared.record_slot(id);
    let books = shared.book_slot(id);
    let (sink, stream) = ws.split();
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (stall_tx, stall_rx) = watch::channel(false);
    let (tx, source) = match info.stream {
        StreamKind::Orders => {
            let len_rx = shared.log_len_rx();
            let cursor = shared.log_start(info.start_msg_number);
            (None, Source::Log { cursor, len_rx })
        }
        _ => {
            let cap = if cfg.rate == 0 {
                shared.tuning.unpaced_queue
            } else {
                shared.tuning.queue_capacity
            };
            let (tx, rx) = mpsc::channel(cap.max(1));
            (Some(tx), Source::Channel(rx))
        }
    };
    let link = Arc::new(Link::new(id, info.stream, tx));
    if let Some(pos) = source.position() {
        link.done.store(pos, Ordering::Relaxed);
    }
    shared.add_link(link.clone());
    let session = match info.stream {
        StreamKind::CoinApi => Session::Coin(coinapi::Session::new(
            shared.universe.clone(),
            info.need_key.clone(),
        )),
        StreamKind::Prices => Session::Prices(moment::PriceSession::new(shared.instruments())),
        StreamKind::Orders => Session::Orders,
    };
    let reader = tokio::spawn(read_loop(stream, session, link.clone(), ctrl_tx, stall_rx));
    let render = match info.stream {
        StreamKind::CoinApi => Render::Coin(coinapi::Renderer::new(
            &shared.universe,
            crate::sim::market::mix64(cfg.seed ^ (id as u64).wrapping_mul(0x1000_0001)),
        )),
        StreamKind::Prices => Render::Prices,
        StreamKind::Orders => Render::Orders {
            min_no: info.start_msg_number.unwrap_or(0),
        },
    };
    let now = Instant::now();
    let ping_interval = cfg.ping_interval.unwrap_or(match cfg.protocol {
        SimProtocol::CoinApi => Duration::from_secs(60),
        SimProtocol::Moment => Duration::from_secs(30),
    });
    let mut w = Writer {
        shared: shared.clone(),
        link: link.clone(),
        sink,
        render,
        scope: LinkScope::Nothing,
        counts: CountFaults::new(&cfg.faults),
        plan: FaultPlan::new(&cfg.faults, id == 0),
        recs,
        books,
        local: Vec::new(),
        pending_done: 0,
        pending_msgs: 0,
        pending_bytes: 0,
        last_text: now,
        heartbeat: false,
        last_ping: now,
        ping_interval: ping_interval.max(Duration::from_millis(1)),
        pong_wait: None,
        ping_no: 0,
        stalled: None,
        stall_tx,
        moment: cfg.protocol == SimProtocol::Moment,
    };
    let exit = w.run(source, ctrl_rx, reader).await;
    log::debug!("sim connection {id} ended: {exit:?}");
    link.alive.store(false, Ordering::Relaxed);
    shared.remove_link(id);
}

struct Writer {
    shared: Arc<Shared>,
    link: Arc<Link>,
    sink: SplitSink<Ws, Message>,
    render: Render,
    scope: LinkScope,
    counts: CountFaults,
    plan: FaultPlan,
    recs: Arc<Mutex<Vec<Rec>>>,
    /// The true book after each book message sent (when recording).
    books: Arc<Mutex<crate::sim::BookRecord>>,
    local: Vec<Rec>,
    /// Events handled since the last flush (added to `link.done` after it).
    pending_done: u64,
    pending_msgs: u64,
    pending_bytes: u64,
    last_text: Instant,
    heartbeat: bool,
    last_ping: Instant,
    ping_interval: Duration,
    /// (deadline, ping number) of an unanswered ping.
    pong_wait: Option<(Instant, u64)>,
    ping_no: u64,
    /// `Some(end)` while stalled; `Some(None)`: stalled until the client leaves.
    stalled: Option<Option<Instant>>,
    stall_tx: watch::Sender<bool>,
    moment: bool,
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when an unanswered ping's grace has run out (never if it was answered).
async fn pong_deadline(link: Arc<Link>, wait: Option<(Instant, u64)>) {
    sleep_opt(wait.map(|w| w.0)).await;
    if let Some((_, k)) = wait {
        if link.pong_seen.load(Ordering::Relaxed) >= k {
            std::future::pending::<()>().await;
        }
    }
}

/// Frames fed per batch before returning to the loop (timers, control) and flushing.
const BATCH: usize = 1024;

impl Writer {
    async fn run(
        &mut self,
        mut source: Source,
        mut ctrl_rx: mpsc::UnboundedReceiver<Ctrl>,
        mut reader: JoinHandle<()>,
    ) -> Exit {
        let mut shutdown = self.shared.shutdown_rx();
        let exit = self
            .run_inner(&mut source, &mut ctrl_rx, &mut shutdown)
            .await;
        self.commit();
        self.stall_tx.send_replace(false);
        match &exit {
            Exit::Shutdown => {
                self.close_gracefully(CloseCode::Away, "server shutdown", &mut reader)
                    .await;
            }
            Exit::Overflow => {
                // As on the real server, the error goes out behind whatever the socket already
                // holds; give a slow client a while to get to it, then hang up.
                let text = if self.moment {
                    moment::error_json(OVERFLOW_MSG, "server_error")
                } else {
                    coinapi::error_json(OVERFLOW_MSG)
                };
                let sent = tokio::select! {
                    r = self.text(text) => r.is_ok(),
                    () = tokio::time::sleep(OVERFLOW_ERROR_WAIT) => false,
                    () = crate::sim::until_set(&mut shutdown) => false,
                };
                if sent {
                    self.close_gracefully(CloseCode::Policy, "slow consumer", &mut reader)
                        .await;
                }
            }
            Exit::PongTimeout => {
                self.shared.pong_timeouts.fetch_add(1, Ordering::Relaxed);
                let frame = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "pong timeout".into(),
                };
                let _ = timeout(
                    Duration::from_millis(200),
                    self.sink.send(Message::Close(Some(frame))),
                )
                .await;
            }
            Exit::Disconnect => {
                // Abrupt: no close frame, the TCP connection just ends (FIN on drop).
                let _ = timeout(Duration::from_secs(1), self.sink.flush()).await;
            }
            Exit::ClientGone => {
                // Lets tungstenite finish a client-initiated close handshake.
                let _ = timeout(Duration::from_millis(500), self.sink.flush()).await;
            }
            Exit::Closed => {
                // A close frame went out: wait (briefly) for the client's reply so the socket
                // is not reset under data the client has yet to read.
                let _ = timeout(Duration::from_secs(1), &mut reader).await;
            }
            Exit::Io => {}
        }
        self.commit();
        self.stall_tx.send_replace(false);
        reader.abort();
        exit
    }

    async fn run_inner(
        &mut self,
        source: &mut Source,
        ctrl_rx: &mut mpsc::UnboundedReceiver<Ctrl>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Exit {
        if self.moment {
            // Moment: the welcome comes first, and fault clocks start at connect.
            if self.text(moment::welcome_json()).await.is_err() {
                return Exit::Io;
            }
            self.plan.start(Instant::now());
            if self.link.kind == StreamKind::Orders {
                self.shared.start_orders();
            }
        }
        let link = self.link.clone();
        let mut source_done = false;
        loop {
            if *shutdown.borrow_and_update() {
                return Exit::Shutdown;
            }
            let stalled = self.stalled.is_some();
            let fault_at = self.plan.next_due();
            let stall_end = self.stalled.flatten();
            let hb_at = (self.heartbeat && !stalled).then(|| self.last_text + HEARTBEAT_SILENCE);
            let ping_at = (!stalled).then(|| self.last_ping + self.ping_interval);
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => Step::Shutdown,
                () = link.overflow_notify.notified() => Step::Overflow,
                () = sleep_opt(fault_at) => Step::Fault,
                () = sleep_opt(stall_end) => Step::StallEnd,
                () = pong_deadline(link.clone(), self.pong_wait) => Step::PongCheck,
                c = ctrl_rx.recv(), if !stalled => Step::Ctrl(c),
                () = sleep_opt(ping_at) => Step::Ping,
                () = sleep_opt(hb_at) => Step::Heartbeat,
                ev = source.next(&self.shared), if !stalled && !source_done => Step::Data(ev),
            };
            let r = match step {
                Step::Shutdown => Err(Exit::Shutdown),
                Step::Overflow => Err(Exit::Overflow),
                Step::PongCheck => Err(Exit::PongTimeout),
                Step::Fault => self.fault().await,
                Step::StallEnd => {
                    self.stalled = None;
                    self.stall_tx.send_replace(false);
                    self.last_ping = Instant::now();
                    Ok(())
                }
                Step::Ctrl(None) => Err(Exit::ClientGone),
                Step::Ctrl(Some(c)) => self.ctrl(c).await,
                Step::Ping => self.ping().await,
                Step::Heartbeat => {
                    let hb = match self.shared.config.heartbeat_spelling {
                        HeartbeatSpelling::Heartbeat => "{\"type\":\"heartbeat\"}",
                        HeartbeatSpelling::Hearbeat => "{\"type\":\"hearbeat\"}",
                    };
                    self.text(hb.to_owned()).await
                }
                Step::Data(None) => {
                    source_done = true;
                    Ok(())
                }
                Step::Data(Some(ev)) => {
                    // A write may block on a slow client; only terminal events interrupt it.
                    let disconnect_at = self.plan.disconnect_due();
                    let pong = pong_deadline(link.clone(), self.pong_wait);
                    tokio::select! {
                        biased;
                        _ = shutdown.changed() => Err(Exit::Shutdown),
                        () = link.overflow_notify.notified() => Err(Exit::Overflow),
                        () = sleep_opt(disconnect_at) => Err(Exit::Disconnect),
                        () = pong => Err(Exit::PongTimeout),
                        r = self.write_batch(ev, source) => r,
                    }
                }
            };
            if let Err(exit) = r {
                return exit;
            }
        }
    }

    /// Moves recorded sends and counters to the shared state.
    fn commit(&mut self) {
        if !self.local.is_empty() {
            self.recs.lock().append(&mut self.local);
        }
        let s = &self.shared;
        s.messages_sent
            .fetch_add(std::mem::take(&mut self.pending_msgs), Ordering::Relaxed);
        s.bytes_sent
            .fetch_add(std::mem::take(&mut self.pending_bytes), Ordering::Relaxed);
    }

    async fn flush(&mut self) -> Result<(), Exit> {
        // Records first: once the client has a message, `sent()` already lists it.
        self.commit();
        self.sink.flush().await.map_err(|_| Exit::Io)?;
        let done = std::mem::take(&mut self.pending_done);
        if done > 0 {
            self.link.done.fetch_add(done, Ordering::Relaxed);
        }
        self.shared.progress.notify_one();
        Ok(())
    }

    async fn feed_text(&mut self, text: String) -> Result<(), Exit> {
        self.pending_bytes += text.len() as u64;
        self.last_text = Instant::now();
        self.sink
            .feed(Message::Text(text.into()))
            .await
            .map_err(|_| Exit::Io)
    }

    /// Sends one non-data text frame and flushes.
    async fn text(&mut self, text: String) -> Result<(), Exit> {
        self.feed_text(text).await?;
        self.flush().await
    }

    async fn write_batch(&mut self, first: Arc<Event>, source: &mut Source) -> Result<(), Exit> {
        self.send_event(&first).await?;
        for _ in 1..BATCH {
            match source.try_next(&self.shared) {
                Some(ev) => self.send_event(&ev).await?,
                None => break,
            }
        }
        self.flush().await
    }

    async fn send_event(&mut self, ev: &Event) -> Result<(), Exit> {
        self.pending_done += 1;
        let wanted = match &self.render {
            Render::Orders { min_no } => ev.fixed_seq.unwrap_or(0) >= *min_no,
            _ => self.scope.matches(ev),
        };
        if !wanted {
            return Ok(());
        }
        let f = self.counts.next();
        let mut buf = String::with_capacity(ev.head.len() + ev.tail.len() + 24);
        let mut cross: Option<(String, u64)> = None;
        let (seq, key) = match &mut self.render {
            Render::Coin(r) => {
                // Book faults act on updates only: a lost or forced snapshot would leave
                // nothing to resynchronise from.
                let fault = if matches!(ev.kind, Kind::Book | Kind::BookL3) && r.continues(ev) {
                    self.counts.next_book()
                } else {
                    BookFault::None
                };
                match fault {
                    BookFault::Drop => {
                        r.skip(ev);
                        return Ok(());
                    }
                    BookFault::Cross => {
                        let mut x = String::new();
                        cross = r.render_cross(ev, &mut x).map(|s| (x, s));
                    }
                    BookFault::Snapshot | BookFault::None => {}
                }
                let snapshot = fault == BookFault::Snapshot;
                (r.render_as(ev, f.gap, snapshot, &mut buf), ev.rec_key)
            }
            Render::Prices => {
                let key = match &self.scope {
                    LinkScope::Prices(p) => moment::render_price(ev, p, &mut buf),
                    _ => ev.rec_key,
                };
                (None, key)
            }
            Render::Orders { .. } => {
                if f.gap {
                    // The order log has no per-connection numbering: a gap is a skipped
                    // message, whose msg_number this connection never sees.
                    return Ok(());
                }
                buf.clear();
                buf.push_str(&ev.head);
                (ev.fixed_seq, ev.rec_key)
            }
        };
        // Recorded once written into the socket's buffer: a write interrupted before that
        // (a terminal fault on a blocked socket) sends nothing and records nothing.
        if let Some((text, s)) = cross {
            self.feed_text(text).await?;
            self.record(ev.kind, key, Some(s), None);
        }
        if f.malformed {
            let cut = (buf.len() / 2).max(1);
            let broken = buf.get(..cut).unwrap_or("{").to_owned();
            self.feed_text(broken).await?;
            self.record(Kind::Malformed, NO_KEY, None, None);
        }
        let uuid_ev = (ev.kind == Kind::Trade).then_some(ev.no);
        if f.duplicate {
            self.feed_text(buf.clone()).await?;
            self.record(ev.kind, key, seq, uuid_ev);
        }
        self.feed_text(buf).await?;
        self.record(ev.kind, key, seq, uuid_ev);
        if let (Some(seq), Some(book), true) = (seq, &ev.book, self.shared.config.record) {
            self.books
                .lock()
                .entry((ev.kind as u8, ev.key))
                .or_default()
                .push((seq, book.clone()));
        }
        Ok(())
    }

    fn record(&mut self, kind: Kind, key: u32, seq: Option<u64>, ev: Option<u64>) {
        self.pending_msgs += 1;
        if !self.shared.config.record {
            return;
        }
        self.local.push(Rec {
            kind: kind as u8,
            key,
            seq: seq.unwrap_or(NONE),
            ev: ev.unwrap_or(NONE),
        });
    }

    async fn ctrl(&mut self, c: Ctrl) -> Result<(), Exit> {
        match c {
            Ctrl::Install {
                scope,
                heartbeat,
                nonempty,
                reply,
            } => {
                if let Some(reply) = reply {
                    self.text(reply).await?;
                }
                if let (Render::Coin(r), LinkScope::Coin(new)) = (&mut self.render, &scope) {
                    let old = match &self.scope {
                        LinkScope::Coin(o) => Some(&**o),
                        _ => None,
                    };
                    r.rescope(old, new);
                }
                *self.link.scope.write() = scope.clone();
                self.scope = scope;
                if let Some(h) = heartbeat {
                    if h && !self.heartbeat {
                        self.last_text = Instant::now();
                    }
                    self.heartbeat = h;
                }
                if nonempty {
                    self.plan.start(Instant::now());
                    self.shared.start_broadcast();
                }
                Ok(())
            }
            Ctrl::Reply(text) => self.text(text).await,
            Ctrl::ErrorClose(text) => {
                self.text(text).await?;
                self.send_close(CloseCode::Normal, "").await;
                Err(Exit::Closed)
            }
            Ctrl::Gone => Err(Exit::ClientGone),
        }
    }

    async fn ping(&mut self) -> Result<(), Exit> {
        self.ping_no += 1;
        let k = self.ping_no;
        self.last_ping = Instant::now();
        // Track the oldest unanswered ping; any later pong answers every earlier ping.
        let seen = self.link.pong_seen.load(Ordering::Relaxed);
        if self.pong_wait.is_none_or(|(_, w)| seen >= w) {
            self.pong_wait = Some((self.last_ping + self.shared.config.pong_grace, k));
        }
        self.sink
            .feed(Message::Ping(k.to_be_bytes().to_vec().into()))
            .await
            .map_err(|_| Exit::Io)?;
        self.flush().await
    }

    async fn fault(&mut self) -> Result<(), Exit> {
        let now = Instant::now();
        let Some(fault) = self.plan.pop_due(now) else {
            return Ok(());
        };
        log::debug!("sim connection {}: fault {fault:?}", self.link.id);
        match fault {
            Timed::Disconnect => Err(Exit::Disconnect),
            Timed::Stall(d) => {
                // What was fed before the stall still goes out; then nothing at all.
                self.flush().await?;
                self.stall_tx.send_replace(true);
                self.stalled = Some(d.map(|d| now + d));
                self.pong_wait = None;
                Ok(())
            }
            Timed::ReconnectNotice(within) => {
                let w = Duration::try_from_secs_f64(within).unwrap_or(Duration::ZERO);
                let before = wall_ns().saturating_add(i64::try_from(w.as_nanos()).unwrap_or(0));
                let mut s = String::from("{\"type\":\"reconnect\",\"within_seconds\":");
                if within.fract() == 0.0 && within < 1e15 {
                    s.push_str(&(within as u64).to_string());
                } else {
                    push_fixed(&mut s, (within * 1e9) as i64, 3);
                }
                s.push_str(",\"before_time\":\"");
                push_ts(&mut s, before, 7);
                s.push_str("\"}");
                self.text(s).await?;
                self.plan.push_at(now + w, Timed::ReconnectClose);
                Ok(())
            }
            Timed::ReconnectClose => {
                self.flush().await?;
                self.send_close(CloseCode::Away, "reconnect").await;
                Err(Exit::Closed)
            }
            Timed::Error => {
                let text = if self.moment {
                    moment::error_json("simulated server error", "server_error")
                } else {
                    coinapi::error_json("Simulated server error.")
                };
                self.text(text).await?;
                self.send_close(CloseCode::Error, "").await;
                Err(Exit::Closed)
            }
        }
    }

    async fn send_close(&mut self, code: CloseCode, reason: &str) {
        self.commit();
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(
            Duration::from_secs(1),
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
    }

    /// Sends a close frame and waits (briefly) for the client's reply, so the TCP connection
    /// ends cleanly and nothing already sent is lost to a reset.
    async fn close_gracefully(
        &mut self,
        code: CloseCode,
        reason: &str,
        reader: &mut JoinHandle<()>,
    ) {
        self.send_close(code, reason).await;
        let _ = timeout(Duration::from_secs(1), reader).await;
    }
}

/// The real server's slow-consumer message.
pub(crate) const OVERFLOW_MSG: &str =
    "Reached maximum allowed buffered messages for this connection.";

const HEARTBEAT_SILENCE: Duration = Duration::from_secs(1);

/// How long an overflowed connection waits for its error message to get into the socket.
const OVERFLOW_ERROR_WAIT: Duration = Duration::from_secs(10);

async fn read_loop(
    mut stream: SplitStream<Ws>,
    mut session: Session,
    link: Arc<Link>,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    mut stall: watch::Receiver<bool>,
) {
    loop {
        if *stall.borrow_and_update() {
            // Stalled: do not read (so pings go unanswered, as on a hung server).
            if stall.wait_for(|s| !*s).await.is_err() {
                return;
            }
            continue;
        }
        let msg = tokio::select! {
            m = stream.next() => m,
            r = stall.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        };
        let actions = match msg {
            Some(Ok(Message::Text(t))) => session.on_text(t.as_str()),
            Some(Ok(Message::Binary(_))) => session.on_binary(),
            Some(Ok(Message::Pong(p))) => {
                if let Ok(b) = <[u8; 8]>::try_from(p.as_ref()) {
                    link.pong_seen
                        .fetch_max(u64::from_be_bytes(b), Ordering::Relaxed);
                }
                Vec::new()
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => Vec::new(),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                let _ = ctrl.send(Ctrl::Gone);
                return;
            }
        };
        for a in actions {
            if ctrl.send(a).is_err() {
                return;
            }
        }
    }
}
