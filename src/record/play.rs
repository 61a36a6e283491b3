//! Replay: a recording's records fed through the same connection machine a live stream runs
//! ([`Machine`]: decoder, sequence checks, liveness, make-before-break), with the recorded
//! times as its clock, into the same delivery queue. `Gap`, `ParseError`, `Stale` and
//! `Switched` are derived again from the frames; `Connected` and `Disconnected` come from the
//! recorded connection boundaries; the machine's sends, pings and dials are not performed
//! (the recording holds what followed them). Batch boundaries and `Dropped` are not
//! reproduced, except that records the recorder lost are said as `Dropped`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::format::{Event, Meta, Record, Request as RecRequest, Role, Stamp};
use super::read::{ReadError, Reader};
use crate::client::Command;
use crate::codec::write::ObjectWriter;
use crate::delivery::{Queue, Stats, StreamEnd};
use crate::feed::machine::{
    Action, Clock, End, Fatal, Input, Machine, OnNotice, Request, Settings, Wire,
};
use crate::feed::msgnum::MsgNumberTracker;
use crate::model::{Envelope, Msg};
use crate::protocol::coinapi::{CoinApiSession, Scope};
use crate::protocol::moment::{MomentSession, MomentStream};
use crate::protocol::Session;

/// The connection machine's settings as recorded in an `Opened` record.
pub fn settings_json(s: &Settings) -> String {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let mut w = ObjectWriter::default();
    if let Some(d) = s.heartbeat_timeout {
        w = w.int("heartbeat_timeout_ns", ns(d));
    }
    if let Some(d) = s.ping_timeout {
        w = w.int("ping_timeout_ns", ns(d));
    }
    w.int("connect_timeout_ns", ns(s.connect_timeout))
        .str(
            "on_notice",
            match s.on_notice {
                OnNotice::MakeBeforeBreak => "make_before_break",
                OnNotice::Immediate => "immediate",
                OnNotice::WaitForClose => "wait_for_close",
            },
        )
        .int("hold_limit", s.hold_limit as u64)
        .int("batch_size", s.batch_size as u64)
        .bool("keep_raw", s.keep_raw)
        .bool("answer_expected", s.answer_expected)
        .finish()
}

/// The settings of an `Opened` record; `keep_raw` is the replay's own choice.
///
/// # Errors
/// A text when the JSON is not such settings.
pub fn settings_from_json(
    json: &str,
    url: &str,
    attempt: u32,
    keep_raw: bool,
) -> Result<Settings, String> {
    use simd_json::prelude::*;
    let mut b = json.as_bytes().to_vec();
    let v = simd_json::to_owned_value(&mut b)
        .map_err(|e| format!("connection settings are not JSON: {e}"))?;
    let ns = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(Duration::from_nanos);
    let n = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .ok_or_else(|| format!("connection settings lack {k}"))
    };
    let on_notice = match v.get("on_notice").and_then(|x| x.as_str()) {
        Some("make_before_break") => OnNotice::MakeBeforeBreak,
        Some("immediate") => OnNotice::Immediate,
        Some("wait_for_close") => OnNotice::WaitForClose,
        other => {
            return Err(format!(
                "unknown on_notice {other:?} in connection settings"
            ))
        }
    };
    Ok(Settings {
        heartbeat_timeout: ns("heartbeat_timeout_ns"),
        ping_timeout: ns("ping_timeout_ns"),
        connect_timeout: ns("connect_timeout_ns").unwrap_or(Duration::from_secs(10)),
        on_notice,
        hold_limit: usize::try_from(n("hold_limit")?)
            .unwrap_or(usize::MAX)
            .max(1),
        batch_size: usize::try_from(n("batch_size")?).unwrap_or(4096).max(1),
        keep_raw,
        shown_url: url.into(),
        attempt,
        answer_expected: v
            .get("answer_expected")
            .and_then(|x| x.as_bool())
            .unwrap_or(true),
    })
}

/// The session a recording's frames are decoded with. Only the venue and stream matter for
/// decoding and classifying; the scope's requests are not sent on replay.
///
/// # Errors
/// A text when the header names no known feed.
pub fn session_of(meta: &Meta) -> Result<Session, String> {
    match (meta.venue.as_str(), meta.feed.as_str()) {
        ("coinapi", _) => Ok(Session::CoinApi(CoinApiSession::new(Scope::default()))),
        ("moment", "prices") => Ok(Session::Moment(MomentSession::new(
            MomentStream::Prices,
            Vec::new(),
            false,
            None,
        ))),
        ("moment", "orders") => Ok(Session::Moment(MomentSession::new(
            MomentStream::Orders,
            Vec::new(),
            false,
            None,
        ))),
        (v, f) => Err(format!(
            "the recording's header names an unknown feed {v:?}/{f:?}"
        )),
    }
}

/// How to replay.
#[derive(Clone, Debug)]
pub struct PlayOptions {
    /// `None`: as fast as possible; `Some(1.0)`: the recorded timing.
    pub speed: Option<f64>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// The most messages handed to the queue at once.
    pub batch_size: usize,
    pub keep_raw: bool,
}

fn clock(at: Stamp) -> Clock {
    Clock {
        mono: Duration::from_nanos(at.mono_ns),
        wall_ns: at.wall_ns,
    }
}

fn book_type(s: &str) -> &'static str {
    if s == "book_l3" {
        "book_l3"
    } else {
        "book"
    }
}

/// What stops a replay early.
enum Stop {
    /// The consumer closed the stream.
    Consumer,
    /// Past `end_ns`.
    Past,
}

/// The replay of one or more recording files into a queue.
struct Player {
    queue: Arc<Queue>,
    commands: mpsc::UnboundedReceiver<Command>,
    session: Session,
    opts: PlayOptions,
    machine: Option<Machine>,
    primary: Option<u32>,
    successor: Option<u32>,
    /// Moment order numbers, carried from connection to connection as the live task does.
    tracker: MsgNumberTracker,
    /// How the current connection's machine ended (for a terminal auth failure).
    end: Option<End>,
    /// Primary frames given to the machine since its last `end_burst`, and the clock of the
    /// last one.
    burst: Option<Clock>,
    pending: Vec<Envelope>,
    primaries_seen: u64,
    /// Pacing: the first paced record's time and when it was replayed.
    pace_origin: Option<(i64, Instant)>,
    records: u64,
    /// A successor restated at a block or file start that the machine, started there too,
    /// did not ask for; and the current primary's opening (attempt, URL, settings). If the
    /// primary is then replaced by that successor, replay goes on from the successor as a new
    /// primary.
    orphan: Option<u32>,
    opening: Option<(u32, String, String)>,
}

impl Player {
    fn counts(&mut self) {
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        let c = m.take_counts();
        let s = &self.queue.stats;
        // Messages are counted as they pass the time window (`out`), not here.
        for (field, n) in [
            (&s.bytes, c.bytes),
            (&s.parse_errors, c.parse_errors),
            (&s.gaps, c.gaps),
            (&s.duplicates, c.duplicates),
        ] {
            if n > 0 {
                Stats::add(field, n);
            }
        }
    }

    /// Performs what the machine asks that replay can: delivering, and following switches.
    fn drain(&mut self) -> Result<(), Stop> {
        while let Some(action) = self.machine.as_mut().and_then(Machine::poll) {
            match action {
                Action::Deliver(batch) => {
                    self.counts();
                    self.out(batch)?;
                }
                Action::Switch => self.primary = self.successor.take(),
                Action::Close {
                    which: Wire::Successor,
                } => self.successor = None,
                Action::End(end) => self.end = Some(end),
                Action::Send { .. }
                | Action::Ping { .. }
                | Action::Flush { .. }
                | Action::Established
                | Action::OpenSuccessor
                | Action::Close { .. } => {}
            }
        }
        self.counts();
        Ok(())
    }

    fn out(&mut self, batch: Vec<Envelope>) -> Result<(), Stop> {
        let data = batch.iter().filter(|e| e.msg.is_data()).count() as u64;
        let (start, end) = (self.opts.start_ns, self.opts.end_ns);
        if start.is_none() && end.is_none() {
            // No window: the machine's batch goes on as it is (no copy per message).
            Stats::add(&self.queue.stats.messages, data);
            if self.pending.is_empty() {
                self.pending = batch;
            } else {
                self.pending.extend(batch);
            }
        } else {
            let (start, end) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
            let mut kept = 0;
            for e in batch {
                if e.recv_ns < start {
                    continue;
                }
                if e.recv_ns > end {
                    Stats::add(&self.queue.stats.messages, kept);
                    return Err(Stop::Past);
                }
                kept += u64::from(e.msg.is_data());
                self.pending.push(e);
            }
            Stats::add(&self.queue.stats.messages, kept);
        }
        if self.pending.len() >= self.opts.batch_size {
            self.push()?;
        }
        Ok(())
    }

    fn push(&mut self) -> Result<(), Stop> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let cap = self.opts.batch_size.min(4096);
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(cap));
        if futures::executor::block_on(self.queue.push(batch)) {
            Ok(())
        } else {
            Err(Stop::Consumer)
        }
    }

    fn end_burst(&mut self) -> Result<(), Stop> {
        if let (Some(now), Some(m)) = (self.burst.take(), self.machine.as_mut()) {
            m.end_burst(now);
        }
        self.drain()
    }

    /// Waits until the record's time comes (at `speed`); what is pending goes out first.
    fn pace(&mut self, wall_ns: i64) -> Result<(), Stop> {
        let Some(speed) = self.opts.speed else {
            return Ok(());
        };
        if wall_ns < self.opts.start_ns.unwrap_or(i64::MIN) {
            return Ok(());
        }
        let (t0, origin) = *self.pace_origin.get_or_insert((wall_ns, Instant::now()));
        let ahead_ns = (wall_ns.saturating_sub(t0).max(0) as f64 / speed) as u64;
        let due = origin + Duration::from_nanos(ahead_ns);
        if Instant::now() >= due {
            return Ok(());
        }
        self.end_burst()?;
        self.push()?;
        // Sleep most of the way (the OS wakes a little late), then yield until due: about
        // tens of microseconds of error instead of a timer's millisecond.
        const SPIN: Duration = Duration::from_micros(200);
        loop {
            let now = Instant::now();
            if now >= due {
                return Ok(());
            }
            let left = due - now;
            if left > SPIN {
                std::thread::sleep(left - SPIN);
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn closed_by_consumer(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Close) | Err(mpsc::error::TryRecvError::Disconnected) => return true,
                // Scope changes mean nothing to a recording.
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => return false,
            }
        }
    }

    fn wire(&self, conn: u32) -> Option<Wire> {
        if Some(conn) == self.primary {
            Some(Wire::Primary)
        } else if Some(conn) == self.successor {
            Some(Wire::Successor)
        } else {
            None
        }
    }

    /// Starts a machine for a primary connection; `reconnect`: counted as one.
    fn open_primary(
        &mut self,
        rec: &Record,
        (attempt, url, settings): (u32, &str, &str),
        reconnect: bool,
    ) {
        self.opening = Some((attempt, url.to_string(), settings.to_string()));
        let settings = match settings_from_json(settings, url, attempt, self.opts.keep_raw) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("replay: connection {} skipped: {e}", rec.conn);
                return;
            }
        };
        if reconnect && self.primaries_seen > 0 {
            Stats::add(&self.queue.stats.reconnects, 1);
        }
        self.primaries_seen += 1;
        let tracker = std::mem::take(&mut self.tracker);
        self.machine = Some(Machine::new(
            self.session.clone(),
            settings,
            tracker,
            clock(rec.at),
        ));
        self.primary = Some(rec.conn);
        self.successor = None;
        self.end = None;
    }

    /// The current connection is over: keep what carries on to the next one.
    fn close_primary(&mut self) {
        if let Some(m) = self.machine.take() {
            let (_, tracker) = m.into_parts();
            self.tracker = tracker;
        }
        self.primary = None;
        self.successor = None;
    }

    fn on_record(&mut self, rec: Record) -> Result<(), Stop> {
        self.records += 1;
        if self.records.is_multiple_of(256) && self.closed_by_consumer() {
            return Err(Stop::Consumer);
        }
        if rec.at.wall_ns > self.opts.end_ns.unwrap_or(i64::MAX) {
            return Err(Stop::Past);
        }
        let now = clock(rec.at);
        let wire = self.wire(rec.conn);
        let frame = match &rec.event {
            Event::Data { payload, .. } => Some(Input::Data(payload)),
            Event::Ping => Some(Input::Ping),
            Event::Pong => Some(Input::Pong),
            Event::Close { code, reason } => Some(Input::Close {
                code: *code,
                reason,
            }),
            _ => None,
        };
        if let (Some(input), Some(Wire::Primary)) = (frame, wire) {
            self.pace(rec.at.wall_ns)?;
            let Some(m) = self.machine.as_mut() else {
                return Ok(());
            };
            self.burst = Some(now);
            if !m.on_frame(Wire::Primary, input, now) {
                self.end_burst()?;
            }
            return Ok(());
        }
        // Anything else ends the burst the live task was in.
        self.end_burst()?;
        if !matches!(
            rec.event,
            Event::Sent { .. } | Event::SentPing | Event::ConnectFailed { .. }
        ) {
            self.pace(rec.at.wall_ns)?;
        }
        match rec.event {
            Event::Opened {
                role: Role::Primary,
                continued,
                attempt,
                ref url,
                ref settings,
            } => {
                if !(continued && self.primary == Some(rec.conn)) {
                    self.close_primary();
                    self.open_primary(&rec, (attempt, url, settings), true);
                }
            }
            Event::Opened {
                role: Role::Successor,
                continued,
                ..
            } => {
                if continued && self.successor == Some(rec.conn) {
                    return Ok(());
                }
                match self.machine.as_mut() {
                    Some(m) if m.wants_successor_connect() => {
                        self.successor = Some(rec.conn);
                        m.on_successor_connected(now);
                    }
                    _ if continued => self.orphan = Some(rec.conn),
                    _ => {}
                }
            }
            Event::Data { .. } | Event::Ping | Event::Pong | Event::Close { .. } => {
                if let (Some(input), Some(Wire::Successor), Some(m)) =
                    (frame, wire, self.machine.as_mut())
                {
                    m.on_frame(Wire::Successor, input, now);
                    m.end_burst(now);
                }
            }
            Event::ReadError { ref reason, code } => {
                if let (Some(w), Some(m)) = (wire, self.machine.as_mut()) {
                    m.on_read_error(w, reason, code, now);
                    m.end_burst(now);
                }
            }
            Event::WriteError { ref reason } => {
                if let (Some(w), Some(m)) = (wire, self.machine.as_mut()) {
                    m.on_write_error(w, reason, now);
                }
            }
            Event::SuccessorFailed { ref reason } => {
                if let Some(m) = self.machine.as_mut() {
                    m.on_successor_failed(reason, now);
                }
            }
            Event::Deadline => {
                if let Some(m) = self.machine.as_mut() {
                    m.on_deadline(now);
                }
            }
            Event::Request(ref r) => {
                if let Some(m) = self.machine.as_mut() {
                    match r {
                        RecRequest::Close => m.on_request(Request::Close, now),
                        RecRequest::ConsumerGone => m.on_consumer_gone(),
                        RecRequest::Resync {
                            symbol_id,
                            book_type: t,
                        } => m.on_request(
                            Request::Resync {
                                symbol_id: symbol_id.clone(),
                                book_type: book_type(t),
                            },
                            now,
                        ),
                        // What they sent is in `Sent` records; the decoder does not depend
                        // on the scope.
                        RecRequest::Subscribe | RecRequest::Unsubscribe => {}
                    }
                }
            }
            Event::Closed {
                reported,
                ref reason,
                code,
            } => {
                if wire == Some(Wire::Primary) {
                    self.drain()?;
                    if reported {
                        self.out(vec![Envelope::event(
                            rec.at.wall_ns,
                            Msg::Disconnected {
                                reason: reason.as_str().into(),
                                code,
                            },
                        )])?;
                    }
                    let end = self.end.take();
                    self.close_primary();
                    if let (false, Some(next), Some((attempt, url, settings))) =
                        (reported, self.orphan.take(), self.opening.clone())
                    {
                        let at = Record {
                            conn: next,
                            ..rec.clone()
                        };
                        self.open_primary(&at, (attempt, &url, &settings), false);
                    }
                    if let Some(End::Terminal {
                        fatal: Fatal::Auth(m),
                        ..
                    }) = end
                    {
                        self.push()?;
                        self.queue.finish(StreamEnd::Auth(m));
                        return Err(Stop::Consumer);
                    }
                } else if wire == Some(Wire::Successor) {
                    self.successor = None;
                }
            }
            Event::Lost { records } => {
                Stats::add(&self.queue.stats.dropped, records);
                self.out(vec![Envelope::event(
                    rec.at.wall_ns,
                    Msg::Dropped {
                        count: records,
                        reason: "not in the recording: its writer could not keep up".into(),
                    },
                )])?;
            }
            Event::Sent { .. } | Event::SentPing | Event::ConnectFailed { .. } => {}
        }
        self.drain()
    }
}

/// Replays `paths` (files in order) into `queue` on a thread of its own, then ends the
/// stream: normally at the end, or with the reader's error (naming the damaged offset).
/// `first` is the first file, already opened (so a refused file is refused at once).
///
/// # Errors
/// The thread could not be started.
pub fn spawn(
    first: Reader,
    rest: Vec<PathBuf>,
    opts: PlayOptions,
    queue: Arc<Queue>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> std::io::Result<()> {
    let session = session_of(first.meta()).map_err(std::io::Error::other)?;
    queue.settle();
    let mut player = Player {
        queue,
        commands,
        session,
        machine: None,
        primary: None,
        successor: None,
        tracker: MsgNumberTracker::default(),
        end: None,
        burst: None,
        pending: Vec::with_capacity(opts.batch_size.min(4096)),
        primaries_seen: 0,
        pace_origin: None,
        records: 0,
        orphan: None,
        opening: None,
        opts,
    };
    std::thread::Builder::new()
        .name("tickwire-replay".into())
        .spawn(move || {
            let end = play(&mut player, first, rest);
            if let Some(end) = end {
                let _ = player.push();
                player.queue.finish(end);
            }
        })?;
    Ok(())
}

/// Records handed from the reading thread to the replay at once...
const CHUNK: usize = 4096;
/// ...and the most chunks read ahead (about 4 MB of records).
const READ_AHEAD: usize = 4;

/// Reads (and decompresses) the files on a thread of its own, so the replay's thread only runs
/// the machine: the chunks of records in order, then the first error if any. Ends early when
/// the replay stops listening.
fn read_ahead(
    first: Reader,
    rest: Vec<PathBuf>,
    start_ns: Option<i64>,
) -> std::io::Result<std::sync::mpsc::Receiver<Result<Vec<Record>, ReadError>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("tickwire-read".into())
        .spawn(move || {
            let mut next = Some(Ok(first));
            let mut rest = rest.into_iter();
            while let Some(opened) = next.take() {
                let mut reader = match opened {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if let Some(start) = start_ns {
                    if let Err(e) = reader.seek(start) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                let mut chunk = Vec::with_capacity(CHUNK);
                for item in reader {
                    match item {
                        Ok(rec) => chunk.push(rec),
                        Err(e) => {
                            let _ = tx.send(Ok(chunk));
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if tx.send(Ok(full)).is_err() {
                            return;
                        }
                    }
                }
                if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
                    return;
                }
                next = rest.next().map(|path| Reader::open(&path));
            }
        })?;
    Ok(rx)
}

/// Runs the replay; the stream's end, or `None` when it was already ended.
fn play(p: &mut Player, first: Reader, rest: Vec<PathBuf>) -> Option<StreamEnd> {
    let chunks = match read_ahead(first, rest, p.opts.start_ns) {
        Ok(rx) => rx,
        Err(e) => {
            return Some(StreamEnd::Recording(format!(
                "cannot start reading the recording: {e}"
            )))
        }
    };
    for chunk in chunks {
        let records = match chunk {
            Ok(r) => r,
            Err(e) => return Some(damaged(p, &e)),
        };
        for rec in records {
            match p.on_record(rec) {
                Ok(()) => {}
                Err(Stop::Consumer) => return None,
                Err(Stop::Past) => return finished(p),
            }
        }
    }
    finished(p)
}

fn finished(p: &mut Player) -> Option<StreamEnd> {
    if p.end_burst().is_err() || p.push().is_err() {
        return None;
    }
    Some(StreamEnd::Finished)
}

fn damaged(p: &mut Player, e: &ReadError) -> StreamEnd {
    let _ = p.end_burst();
    StreamEnd::Recording(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Pop;
    use crate::record::format::{Meta, Stamp};
    use crate::record::write::FileWriter;
    use bytes::Bytes;

    const BASE_NS: i64 = 1_893_456_000 * 1_000_000_000;

    fn trade(n: u64) -> Event {
        Event::Data {
            payload: Bytes::from(format!(
                r#"{{"type":"trade","symbol_id":"S","sequence":{n},"time_exchange":"2030-01-01T00:00:00.0000000Z","time_coinapi":"2030-01-01T00:00:00.0000000Z","uuid":"u{n}","price":1.0,"size":1.0,"taker_side":"BUY"}}"#
            )),
            binary: false,
        }
    }

    fn at(ms: u64) -> Stamp {
        Stamp {
            wall_ns: BASE_NS + ms as i64 * 1_000_000,
            mono_ns: ms * 1_000_000,
        }
    }

    fn settings() -> Settings {
        Settings {
            heartbeat_timeout: Some(Duration::from_secs(3)),
            ping_timeout: None,
            connect_timeout: Duration::from_secs(10),
            on_notice: OnNotice::MakeBeforeBreak,
            hold_limit: 1000,
            batch_size: 1024,
            keep_raw: false,
            shown_url: "ws://127.0.0.1:1/v1/".into(),
            attempt: 0,
            answer_expected: true,
        }
    }

    fn replay(records: Vec<(u64, Event)>, opts: PlayOptions) -> Vec<Envelope> {
        replay_on(
            records.into_iter().map(|(ms, e)| (0, ms, e)).collect(),
            opts,
        )
    }

    fn replay_on(records: Vec<(u32, u64, Event)>, opts: PlayOptions) -> Vec<Envelope> {
        let path = std::env::temp_dir().join(format!(
            "tickwire-play-{}-{:?}.twr",
            std::process::id(),
            std::thread::current().id()
        ));
        let meta = Meta {
            venue: "coinapi".into(),
            feed: "coinapi".into(),
            ..Meta::default()
        };
        let f = std::fs::File::create(&path).unwrap();
        let mut w = FileWriter::new(f, &meta, Vec::new()).unwrap();
        for (conn, ms, event) in records {
            w.push(&Record {
                conn,
                at: at(ms),
                event,
            })
            .unwrap();
        }
        w.finish().unwrap();
        let queue = Queue::new(10_000, 1024, crate::delivery::Overflow::Block, None);
        let (_tx, rx) = mpsc::unbounded_channel();
        spawn(
            Reader::open(&path).unwrap(),
            Vec::new(),
            opts,
            queue.clone(),
            rx,
        )
        .unwrap();
        let mut out = Vec::new();
        loop {
            match queue.pop(Some(Duration::from_secs(10))) {
                Pop::Batch(b) => out.extend(b),
                Pop::End(StreamEnd::Finished) => break,
                other => panic!("{other:?}"),
            }
        }
        let _ = std::fs::remove_file(&path);
        out
    }

    fn opts() -> PlayOptions {
        PlayOptions {
            speed: None,
            start_ns: None,
            end_ns: None,
            batch_size: 1024,
            keep_raw: false,
        }
    }

    #[test]
    fn replay_derives_gaps_parse_errors_and_staleness_from_the_recorded_frames() {
        let records = vec![
            (
                0,
                Event::Opened {
                    role: Role::Primary,
                    attempt: 0,
                    url: "ws://127.0.0.1:1/v1/".into(),
                    settings: settings_json(&settings()),
                    continued: false,
                },
            ),
            (
                1,
                Event::Sent {
                    text: "{\"type\":\"hello\"}".into(),
                },
            ),
            (10, trade(1)),
            (11, trade(2)),
            (12, trade(4)),
            (
                13,
                Event::Data {
                    payload: Bytes::from_static(b"{\"type\":\"trade\",oops"),
                    binary: false,
                },
            ),
            (3_013, Event::Deadline),
            (
                3_014,
                Event::Closed {
                    reported: true,
                    reason: "no frame for 3.0 s".into(),
                    code: None,
                },
            ),
        ];
        let out = replay(records.clone(), opts());
        let kinds: Vec<&str> = out.iter().map(|e| e.msg.type_name()).collect();
        assert_eq!(
            kinds,
            [
                "connected",
                "trade",
                "trade",
                "gap",
                "trade",
                "parse_error",
                "stale",
                "disconnected"
            ]
        );
        assert_eq!(out[0].recv_ns, at(10).wall_ns);
        assert_eq!(out[4].recv_ns, at(12).wall_ns);
        match &out[6].msg {
            Msg::Stale { silence_s } => assert!((silence_s - 3.0).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
        assert_eq!(out[7].recv_ns, at(3_014).wall_ns);
        // A window in time: only what falls in it, the baselines still set before it.
        let window = replay(
            records,
            PlayOptions {
                start_ns: Some(at(12).wall_ns),
                end_ns: Some(at(13).wall_ns),
                ..opts()
            },
        );
        let kinds: Vec<&str> = window.iter().map(|e| e.msg.type_name()).collect();
        assert_eq!(kinds, ["gap", "trade", "parse_error"]);
    }

    #[test]
    fn a_replay_starting_inside_a_hold_carries_on_from_the_successor() {
        let opened = |role, continued| Event::Opened {
            role,
            attempt: 0,
            url: "ws://127.0.0.1:1/v1/".into(),
            settings: if role == Role::Primary {
                settings_json(&settings())
            } else {
                "{}".into()
            },
            continued,
        };
        // As a block (or rotated file) starting during a make-before-break hold begins.
        let records = vec![
            (0, 0, opened(Role::Primary, true)),
            (1, 0, opened(Role::Successor, true)),
            (0, 10, trade(1)),
            (1, 11, trade(1)),
            (1, 12, trade(2)),
            (
                0,
                13,
                Event::Closed {
                    reported: false,
                    reason: "replaced by its make-before-break successor".into(),
                    code: None,
                },
            ),
            (1, 14, trade(3)),
            (1, 15, trade(5)),
        ];
        let out = replay_on(records, opts());
        let kinds: Vec<&str> = out.iter().map(|e| e.msg.type_name()).collect();
        assert_eq!(
            kinds,
            ["connected", "trade", "connected", "trade", "gap", "trade"]
        );
        assert_eq!(out[3].recv_ns, at(14).wall_ns);
    }
}
