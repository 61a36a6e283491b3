//! One connection's life: send the opening request, read frames into batches (natural
//! batching), check sequences, answer pings at once, watch liveness, obey commands.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::{ClientConfig, Command, Ended, OnNotice};
use crate::delivery::{Queue, Stats, StreamEnd};
use crate::feed::liveness::Liveness;
use crate::feed::msgnum::MsgNumberTracker;
use crate::feed::sequence::{SeqCheck, SequenceTracker};
use crate::model::{Envelope, Gap, Msg};
use crate::protocol::{Decoder, Session, Verdict};
use crate::transport::{Connection, Frame, TransportError};

/// Wall clock now, ns since the epoch.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How long past `before_time` a make-before-break waits for the old connection to close before
/// switching anyway. Reading the old one to its close keeps what it still had in flight, which
/// the new connection (subscribed later) may not carry.
const SWITCH_GRACE: Duration = Duration::from_secs(2);

/// Within a burst of ready frames, the clocks are read for the first frame and then every this
/// many frames (about 10 µs of parsing at full speed).
const CLOCK_EVERY: usize = 16;

/// The longest a switch waits for the new connection to pass the old one's last message.
const CATCH_UP: Duration = Duration::from_secs(1);

/// A `ParseError` keeps at most this much of the offending frame.
const RAW_KEEP: usize = 4096;

fn lossy_prefix(bytes: &[u8]) -> Box<str> {
    let cut = bytes.len().min(RAW_KEEP);
    String::from_utf8_lossy(&bytes[..cut]).into()
}

/// Per-connection parsing and bookkeeping state.
pub(crate) struct Reader {
    decoder: Decoder,
    sequences: SequenceTracker,
    /// Moment order numbers; carried from connection to connection by the caller.
    pub(crate) replay: MsgNumberTracker,
    /// The `Gap.key` of the Moment order stream, made once rather than per message.
    orders_key: crate::model::Key,
    keep_raw: bool,
    /// Book streams resynchronised by resubscribing: their sequence baselines restart at the
    /// next snapshot. Bound: one entry per resync in flight.
    rebase: Vec<(&'static str, Box<str>)>,
}

/// What the reader wants the connection to do after a frame.
pub(crate) enum After {
    Continue,
    /// The server refused the key: end the stream with an auth error after delivering.
    AuthFailed(String),
    /// The server announced it will close this connection by `before_ns`.
    Notice {
        before_ns: i64,
    },
}

impl Reader {
    pub(crate) fn new(session: &Session, keep_raw: bool, replay: MsgNumberTracker) -> Self {
        Reader {
            decoder: session.decoder(),
            sequences: SequenceTracker::default(),
            replay,
            orders_key: std::sync::Arc::from("orders"),
            keep_raw,
            rebase: Vec::new(),
        }
    }

    /// The next snapshot of `(book_type, symbol_id)` starts its sequence afresh.
    pub(crate) fn rebase(&mut self, book_type: &'static str, symbol_id: &str) {
        if !self
            .rebase
            .iter()
            .any(|(t, s)| *t == book_type && &**s == symbol_id)
        {
            self.rebase.push((book_type, symbol_id.into()));
        }
    }

    /// The sequence verdict of `msg`, if it carries a number: CoinAPI per (type, key) on this
    /// connection, Moment order events by `msg_number` across connections.
    fn check(&mut self, msg: &Msg) -> Option<(&'static str, crate::model::Key, SeqCheck)> {
        if let Some((kind, key, seq)) = msg.sequence_key() {
            let snapshot = match msg {
                Msg::Book(b) => b.is_snapshot,
                Msg::BookL3(b) => b.is_snapshot,
                _ => false,
            };
            if snapshot && !self.rebase.is_empty() {
                if let Some(i) = self
                    .rebase
                    .iter()
                    .position(|(t, s)| *t == kind && **s == **key)
                {
                    self.rebase.swap_remove(i);
                    self.sequences.forget(kind, key);
                }
            }
            return Some((kind, key.clone(), self.sequences.check(kind, key, seq)));
        }
        if let Msg::OrderEvent(o) = msg {
            let key = self.orders_key.clone();
            return Some((o.kind.wire(), key, self.replay.check(o.msg_number)));
        }
        None
    }

    /// Decodes one data frame into `out` (possibly a `Gap` before it, or nothing for a
    /// duplicate).
    pub(crate) fn on_data(
        &mut self,
        payload: &[u8],
        recv_ns: i64,
        session: &Session,
        stats: &Stats,
        out: &mut Vec<Envelope>,
    ) -> After {
        Stats::add(&stats.bytes, payload.len() as u64);
        let raw = self.keep_raw.then(|| {
            String::from_utf8_lossy(payload)
                .into_owned()
                .into_boxed_str()
        });
        let msg = match self.decoder.decode(payload) {
            Ok(m) => m,
            Err(e) => {
                Stats::add(&stats.parse_errors, 1);
                out.push(Envelope::event(
                    recv_ns,
                    Msg::ParseError {
                        reason: e.0.into(),
                        raw: lossy_prefix(payload),
                    },
                ));
                return After::Continue;
            }
        };
        if let Some((kind, key, verdict)) = self.check(&msg) {
            match verdict {
                SeqCheck::First | SeqCheck::InOrder => {}
                SeqCheck::Gap { expected, received } => {
                    Stats::add(&stats.gaps, 1);
                    out.push(Envelope::event(
                        recv_ns,
                        Msg::Gap(Gap {
                            msg_type: kind,
                            key,
                            expected,
                            received,
                        }),
                    ));
                }
                SeqCheck::Duplicate => {
                    Stats::add(&stats.duplicates, 1);
                    return After::Continue;
                }
            }
        }
        let verdict = session.classify(&msg);
        let after = match (&verdict, &msg) {
            (Verdict::AuthFailed, Msg::Error(e)) => After::AuthFailed(e.message.to_string()),
            (Verdict::ReconnectSoon, Msg::Reconnect(n)) => After::Notice {
                before_ns: n.before_time,
            },
            _ => After::Continue,
        };
        out.push(Envelope { recv_ns, raw, msg });
        after
    }
}

/// Counts the data messages of a batch and hands it to the queue; false once the consumer
/// has closed the stream.
async fn deliver(queue: &Queue, batch: Vec<Envelope>) -> bool {
    let data = batch.iter().filter(|e| e.msg.is_data()).count();
    Stats::add(&queue.stats.messages, data as u64);
    queue.push(batch).await
}

/// Runs one connection (and, on a reconnect notice, its make-before-break successor) until the
/// stream must reconnect or end.
pub(crate) async fn drive(
    conn: Connection,
    config: &mut ClientConfig,
    queue: &Arc<Queue>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    replay: &mut MsgNumberTracker,
) -> Ended {
    let mut reader = Reader::new(&config.session, config.keep_raw, std::mem::take(replay));
    let ended = drive_with(conn, config, queue, commands, &mut reader).await;
    queue.watch_socket(None);
    *replay = std::mem::take(&mut reader.replay);
    ended
}

async fn send_opening(conn: &mut Connection, session: &Session) -> Result<(), TransportError> {
    for req in session.opening() {
        conn.send_text(req).await?;
    }
    Ok(())
}

async fn drive_with(
    mut conn: Connection,
    config: &mut ClientConfig,
    queue: &Arc<Queue>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    reader: &mut Reader,
) -> Ended {
    let lost = |e: TransportError| Ended::Lost {
        reason: e.reason,
        code: e.code,
    };
    if let Err(e) = send_opening(&mut conn, &config.session).await {
        return lost(e);
    }
    queue.watch_socket(Some(conn.raw_fd()));
    let now = Instant::now();
    let mut liveness = Liveness::new(config.heartbeat_timeout, now);
    let mut probe = Liveness::new(config.ping_timeout, now);
    let mut pinged = false;
    let far = now + Duration::from_secs(86_400 * 365);
    let batch_size = config.batch_size;
    let mut batch: Vec<Envelope> = Vec::with_capacity(batch_size.min(4096));
    let mut successor: Option<Successor> = None;
    // Set when a make-before-break could not be made: said in the Disconnected reason.
    let mut fallback: Option<String> = None;
    // The three deadlines live in timers made once: a fresh `sleep_until` per wake-up was a
    // timer-wheel insert and removal each, about 3 % of the client at 100k msg/s paced. A
    // deadline that only moves later is re-armed without touching the wheel.
    let timers = [(); 3].map(|()| Box::pin(tokio::time::sleep_until(far.into())));
    let [mut switch_timer, mut stale_timer, mut probe_timer] = timers;
    loop {
        let stale_at = liveness.deadline().unwrap_or(far);
        // Our own ping goes out after `ping_timeout` of silence; as long again and it is dead.
        let probe_at = probe.deadline().map_or(far, |d| {
            if pinged {
                d + config.ping_timeout.unwrap_or_default()
            } else {
                d
            }
        });
        let switch_at = successor.as_ref().map_or(far, |s| s.deadline);
        for (timer, at) in [
            (&mut switch_timer, switch_at),
            (&mut stale_timer, stale_at),
            (&mut probe_timer, probe_at),
        ] {
            if timer.deadline() != at.into() {
                timer.as_mut().reset(at.into());
            }
        }
        let next_active = successor
            .as_ref()
            .is_some_and(|s| s.wants_connect() || s.wants_read());
        let first = tokio::select! {
            biased;
            cmd = commands.recv() => {
                let reqs = match cmd {
                    None | Some(Command::Close) => {
                        conn.close().await;
                        if let Some(s) = successor.take() {
                            s.close().await;
                        }
                        return Ended::User;
                    }
                    Some(Command::Subscribe(s)) => config.session.apply(&s, true),
                    Some(Command::Unsubscribe(s)) => config.session.apply(&s, false),
                    Some(Command::Resync { symbol_id, book_type }) => {
                        reader.rebase(book_type, &symbol_id);
                        let one = crate::protocol::ScopeChange::CoinApi(
                            crate::protocol::coinapi::Scope {
                                symbols: vec![format!("{symbol_id}$")],
                                ..Default::default()
                            },
                        );
                        config.session.apply(&one, false).and_then(|mut out| {
                            out.extend(config.session.apply(&one, true)?);
                            Ok(out)
                        })
                    }
                };
                for req in reqs.unwrap_or_default() {
                    if let Some(next) = successor.as_mut().and_then(|s| s.conn.as_mut()) {
                        // The successor must carry the same scope when it takes over.
                        let _ = next.send_text(req.clone()).await;
                    }
                    if let Err(e) = conn.send_text(req).await {
                        return lost(e);
                    }
                }
                continue;
            }
            ev = async { successor.as_mut().expect("guarded").event().await }, if next_active => {
                let Some(s) = successor.as_mut() else { continue };
                match ev {
                    SuccessorEvent::Connected(Ok(mut next)) => {
                        match send_opening(&mut next, &config.session).await {
                            Ok(()) => s.conn = Some(*next),
                            Err(e) => {
                                fallback = Some(format!(
                                    "make-before-break failed ({}); waited for close",
                                    e.reason
                                ));
                                successor = None;
                            }
                        }
                    }
                    SuccessorEvent::Connected(Err(e)) => {
                        fallback =
                            Some(format!("make-before-break refused ({e}); waited for close"));
                        successor = None;
                    }
                    SuccessorEvent::Frame(f) => {
                        if let Err(e) = s.on_frame(f, &config.session, &queue.stats) {
                            fallback = Some(format!(
                                "make-before-break connection failed ({}); waited for close",
                                e.reason
                            ));
                            if let Some(s) = successor.take() {
                                s.close().await;
                            }
                        }
                    }
                }
                continue;
            }
            f = conn.next() => f,
            () = switch_timer.as_mut() => {
                // `before_time` passed: the old server is about to go; switch now.
                let Some(s) = successor.take() else { continue };
                match s.conn.is_some() {
                    true => {
                        let old = std::mem::replace(&mut conn, match switch(s, reader, queue, &config.session).await {
                            Some(c) => c,
                            None => return Ended::User,
                        });
                        old.close().await;
                        let t = Instant::now();
                        liveness.on_frame(t);
                        probe.on_frame(t);
                    }
                    false => fallback = Some("make-before-break connection not ready in time; waited for close".into()),
                }
                continue;
            }
            () = stale_timer.as_mut() => {
                let silence = liveness.silence(Instant::now()).as_secs_f64();
                return stale(queue, silence).await;
            }
            () = probe_timer.as_mut() => {
                if pinged {
                    let silence = probe.silence(Instant::now()).as_secs_f64();
                    return stale(queue, silence).await;
                }
                pinged = true;
                if let Err(e) = conn.ping().await {
                    return lost(e);
                }
                continue;
            }
        };
        // Natural batching: take the first frame, then whatever is already readable.
        let mut next = Some(first);
        let mut owe_pong = false;
        let mut ended: Option<Ended> = None;
        let mut recv_ns = 0;
        let mut in_burst = 0usize;
        while let Some(item) = next.take() {
            let frame = match item {
                Ok(f) => f,
                Err(e) => {
                    ended = Some(lost(e));
                    break;
                }
            };
            // Frames drained in one burst were all readable when it began; reading the clocks
            // for every one of them cost 7 % of the core at full speed. A fresh reading every
            // CLOCK_EVERY frames keeps `recv_ns` within microseconds of the read.
            if in_burst.is_multiple_of(CLOCK_EVERY) {
                let t = Instant::now();
                liveness.on_frame(t);
                probe.on_frame(t);
                recv_ns = wall_ns();
                queue.stats.last_frame_ns.store(recv_ns, Relaxed);
            }
            in_burst += 1;
            pinged = false;
            match frame {
                Frame::Data { payload, .. } => {
                    let from = batch.len();
                    let after = reader.on_data(
                        &payload,
                        recv_ns,
                        &config.session,
                        &queue.stats,
                        &mut batch,
                    );
                    if let Some(s) = successor.as_mut() {
                        s.remember(&batch[from..]);
                    }
                    match after {
                        After::Continue => {}
                        After::AuthFailed(message) => {
                            ended = Some(Ended::Terminal {
                                reason: format!("server error: {message}"),
                                code: None,
                                end: StreamEnd::Auth(format!(
                                    "the server refused the key: {message}"
                                )),
                            });
                            break;
                        }
                        After::Notice { before_ns } => match config.on_notice {
                            OnNotice::WaitForClose => {}
                            OnNotice::Immediate => {
                                ended = Some(Ended::Reconnect {
                                    reason:
                                        "the server announced a reconnect (on_notice=immediate)"
                                            .into(),
                                });
                                break;
                            }
                            OnNotice::MakeBeforeBreak if successor.is_none() => {
                                // The switch waits for the old connection's close, which
                                // delivers everything it still has in flight; the deadline
                                // only covers a server that keeps it open past `before_time`.
                                // A notice from the far future (or garbage) waits at most
                                // an hour, so no deadline overflows.
                                let wait = Duration::from_nanos(
                                    u64::try_from(before_ns.saturating_sub(wall_ns())).unwrap_or(0),
                                )
                                .min(Duration::from_secs(3600))
                                    + SWITCH_GRACE;
                                successor = Some(Successor::new(
                                    config,
                                    Instant::now() + wait,
                                    reader.replay.clone(),
                                ));
                            }
                            OnNotice::MakeBeforeBreak => {}
                        },
                    }
                }
                Frame::Ping => owe_pong = true,
                Frame::Pong => {}
                Frame::Close { code, reason } => {
                    let reason = if reason.is_empty() {
                        "server closed the connection".to_string()
                    } else {
                        format!("server closed the connection: {reason}")
                    };
                    owe_pong = true;
                    ended = Some(Ended::Lost { reason, code });
                    break;
                }
            }
            if batch.len() >= batch_size {
                break;
            }
            next = conn.try_next();
        }
        if owe_pong {
            // The pong was queued by the read; write it now rather than with our next send.
            if let Err(e) = conn.flush().await {
                ended.get_or_insert(lost(e));
            }
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size.min(4096)));
            if !deliver(queue, full).await {
                conn.close().await;
                return Ended::User;
            }
        }
        match ended {
            None => {}
            // The old connection is gone: a ready successor takes over without a hole.
            Some(Ended::Lost { .. }) if successor.as_ref().is_some_and(|s| s.conn.is_some()) => {
                let s = successor.take().expect("checked");
                conn = match switch(s, reader, queue, &config.session).await {
                    Some(c) => c,
                    None => return Ended::User,
                };
                let t = Instant::now();
                liveness.on_frame(t);
                probe.on_frame(t);
            }
            Some(Ended::Lost { reason, code }) => {
                if let Some(s) = successor.take() {
                    s.close().await;
                }
                let reason = match fallback.take() {
                    Some(f) => format!("{reason}; {f}"),
                    None => reason,
                };
                return Ended::Lost { reason, code };
            }
            Some(other) => {
                if let Some(s) = successor.take() {
                    s.close().await;
                }
                return other;
            }
        }
    }
}

/// Identity of a message across connections: sequence numbers are per connection, so a
/// trade is known by its `uuid` and anything else by type, key and time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Identity {
    Trade(Box<str>),
    Other(&'static str, crate::model::Key, i64, i64),
}

fn identity(msg: &Msg) -> Option<Identity> {
    Some(match msg {
        Msg::Trade(t) => Identity::Trade(t.uuid.clone()),
        Msg::Quote(q) => Identity::Other(
            "quote",
            q.symbol_id.clone(),
            q.time_exchange,
            q.time_coinapi,
        ),
        Msg::Book(b) => Identity::Other(
            b.kind.wire(),
            b.symbol_id.clone(),
            b.time_exchange,
            b.time_coinapi,
        ),
        Msg::BookL3(b) => Identity::Other(
            "book_l3",
            b.symbol_id.clone(),
            b.time_exchange,
            b.time_coinapi,
        ),
        Msg::Ohlcv(o) => Identity::Other(
            "ohlcv",
            o.symbol_id.clone(),
            o.time_period_start,
            o.time_close.unwrap_or(0),
        ),
        Msg::Index(i) => Identity::Other("index", i.index_id.clone(), i.time_coinapi, 0),
        Msg::Exrate(x) => Identity::Other("exrate", x.asset_id_base.clone(), x.time, 0),
        _ => return None,
    })
}

enum SuccessorEvent {
    Connected(Result<Box<Connection>, crate::transport::ConnectFailure>),
    Frame(Result<Frame, TransportError>),
}

/// A connection being opened in the background.
type PendingConnect = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Box<Connection>, crate::transport::ConnectFailure>>
            + Send,
    >,
>;

/// The second connection of a make-before-break: opened with the same scope as soon as the
/// notice arrives, its messages held (bounded) until the switch.
struct Successor {
    connecting: Option<PendingConnect>,
    conn: Option<Connection>,
    reader: Reader,
    held: Vec<Envelope>,
    hold_limit: usize,
    /// Identities the old connection delivered since the notice.
    seen: std::collections::HashSet<Identity>,
    deadline: Instant,
}

impl Successor {
    fn new(config: &ClientConfig, deadline: Instant, replay: MsgNumberTracker) -> Self {
        let opts = config.connect.clone();
        Successor {
            connecting: Some(Box::pin(async move {
                Connection::connect(&opts).await.map(Box::new)
            })),
            conn: None,
            reader: Reader::new(&config.session, config.keep_raw, replay),
            held: Vec::new(),
            hold_limit: config.hold_limit,
            seen: std::collections::HashSet::new(),
            deadline,
        }
    }

    fn wants_connect(&self) -> bool {
        self.connecting.is_some() && self.conn.is_none()
    }

    /// Reading pauses once the hold is full (TCP backpressure on the new connection).
    fn wants_read(&self) -> bool {
        self.conn.is_some() && self.held.len() < self.hold_limit
    }

    /// The next thing that happens on the successor: its connection completing, or a frame.
    async fn event(&mut self) -> SuccessorEvent {
        if let Some(fut) = self.connecting.as_mut() {
            let res = fut.await;
            self.connecting = None;
            return SuccessorEvent::Connected(res);
        }
        match self.conn.as_mut() {
            Some(c) => SuccessorEvent::Frame(c.next().await),
            None => std::future::pending().await,
        }
    }

    /// True once the new connection has carried a message the old one never delivered: it is
    /// past the overlap, so nothing read from it after the switch can be a repeat.
    fn caught_up(&self) -> bool {
        self.held
            .iter()
            .rev()
            .any(|e| identity(&e.msg).is_some_and(|id| !self.seen.contains(&id)))
    }

    /// Reads the new connection until it is past the overlap with what the old one delivered
    /// (it may lag the old one by a few messages), for at most `CATCH_UP`: a quiet market has
    /// nothing to overlap.
    async fn catch_up(&mut self, session: &Session, stats: &Stats) {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while !self.caught_up() {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let Ok(frame) = tokio::time::timeout_at(deadline, conn.next()).await else {
                return;
            };
            if self.on_frame(frame, session, stats).is_err() {
                return;
            }
        }
    }

    fn remember(&mut self, delivered: &[Envelope]) {
        self.seen
            .extend(delivered.iter().filter_map(|e| identity(&e.msg)));
    }

    fn on_frame(
        &mut self,
        f: Result<Frame, TransportError>,
        session: &Session,
        stats: &Stats,
    ) -> Result<(), TransportError> {
        match f? {
            Frame::Data { payload, .. } => {
                let recv_ns = wall_ns();
                self.reader
                    .on_data(&payload, recv_ns, session, stats, &mut self.held);
            }
            Frame::Close { reason, .. } => {
                return Err(TransportError {
                    reason: format!("closed: {reason}"),
                    code: None,
                })
            }
            Frame::Ping | Frame::Pong => {}
        }
        Ok(())
    }

    async fn close(self) {
        if let Some(c) = self.conn {
            c.close().await;
        }
    }
}

/// Switches to the successor: delivers its held messages minus the overlap with what the old
/// connection delivered, then a `Switched` event. A book (`book`, `book_l3`) restarts from
/// the new connection's snapshot: its messages before that snapshot are dropped, and from it
/// on all are kept. The reader's
/// per-connection state becomes the successor's. `None` if the consumer closed meanwhile.
async fn switch(
    mut s: Successor,
    reader: &mut Reader,
    queue: &Queue,
    session: &Session,
) -> Option<Connection> {
    s.catch_up(session, &queue.stats).await;
    let Successor {
        conn,
        reader: next_reader,
        held,
        seen,
        ..
    } = s;
    let held_count = held.len() as u64;
    let mut overlap = 0u64;
    let mut snapshotted: std::collections::HashSet<(&'static str, crate::model::Key)> =
        std::collections::HashSet::new();
    let mut out = Vec::with_capacity(held.len() + 1);
    out.push(Envelope::event(
        wall_ns(),
        Msg::Switched {
            held: held_count,
            overlap_dropped: 0,
        },
    ));
    for e in held {
        // Books restart from the successor's own snapshot: updates before it are dropped, and
        // from it on the book's messages are kept even where they repeat what the old
        // connection delivered, since they rebuild the book that snapshot replaces.
        let book = match &e.msg {
            Msg::Book(b) if b.kind == crate::model::BookKind::Full => {
                Some(("book", &b.symbol_id, b.is_snapshot))
            }
            Msg::BookL3(b) => Some(("book_l3", &b.symbol_id, b.is_snapshot)),
            _ => None,
        };
        if let Some((kind, key, snapshot)) = book {
            let id = (kind, key.clone());
            if snapshot {
                snapshotted.insert(id.clone());
            }
            if snapshotted.contains(&id) {
                out.push(e);
            } else {
                overlap += 1;
            }
            continue;
        }
        if matches!(e.msg, Msg::Heartbeat) || identity(&e.msg).is_some_and(|id| seen.contains(&id))
        {
            overlap += 1;
            continue;
        }
        out.push(e);
    }
    if let Some(Envelope {
        msg: Msg::Switched {
            overlap_dropped, ..
        },
        ..
    }) = out.first_mut()
    {
        *overlap_dropped = overlap;
    }
    log::info!("make-before-break switch: held {held_count}, {overlap} dropped as overlap");
    let replay = std::mem::take(&mut reader.replay);
    *reader = next_reader;
    reader.replay = replay;
    if !deliver(queue, out).await {
        if let Some(c) = conn {
            c.close().await;
        }
        return None;
    }
    if let Some(c) = &conn {
        queue.watch_socket(Some(c.raw_fd()));
    }
    conn
}

async fn stale(queue: &Queue, silence_s: f64) -> Ended {
    super::push_event(queue, Msg::Stale { silence_s }).await;
    Ended::Lost {
        reason: format!("no frame for {silence_s:.1} s"),
        code: None,
    }
}
