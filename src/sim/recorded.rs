//! Serving a recording (`tw.Simulator(replay=path)`): the frames a stream received, sent again
//! over WebSocket to whoever connects, so any client (tickwire, a peer, a script) can be run
//! against recorded data.
//!
//! The n-th connection accepted gets the n-th connection of the recording (in the order the
//! recording opened them): its data frames and the server's pings, in recorded order, whatever
//! the client subscribes to (what a client sends is not interpreted; pings are answered). The
//! recorded end of that connection ends the served one the same way: the server's close frame
//! with its code, an abrupt end (the recording's read error: a reset, a broken rule) as a TCP
//! close without a close frame, a connection the client itself ended (`Stale`, a consumer's
//! close) as a normal close. A client that reconnects therefore gets the next recorded
//! connection, and a make-before-break successor dialled on a recorded notice gets the recorded
//! successor, alongside. A connection the client left for its successor is not closed by the
//! server: it stays open, silent, for the client to switch and close it as it did when
//! recording (for [`HOLD`] at most, then a normal close). Past the recording's last connection,
//! a client is closed at once with 1000 "end of recording".
//!
//! A frame that the recorded client's message preceded (its hello, a subscription) waits for
//! the client to send one too, for [`ANSWER_WAIT`] at most, so data does not overtake the
//! request it answers. Pacing: with `speed`, each frame goes out `(recv_ns - opened_ns) /
//! speed` after the served connection's start, `opened_ns` being when the recorded connection
//! opened; without, as fast as the client reads. Damage in the file ends the served
//! connection with 1011 and a reason naming the offset (and a log line), after everything
//! before it was sent.
//!
//! Each served connection reads the files itself, from the start, on a blocking thread that
//! feeds it [`AHEAD`] steps and [`AHEAD_BYTES`] of payload ahead at most: its memory is that
//! plus one decompressed block (256 KiB, or one larger frame), whatever the recording's size
//! (and the n-th connection decompresses what comes before it in the files again).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::record::{parts_of, Event, ReadError, Reader, Role};

/// How long a connection its client left for a successor stays open for that client to close:
/// past the client's own bound on a switch (the notice + 5 s).
const HOLD: Duration = Duration::from_secs(10);

/// How long a frame waits for the client's message that preceded it in the recording (a
/// client other than the recorder may never send it).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Steps read ahead of the served connection (each one frame at most)...
const AHEAD: usize = 256;
/// ...holding this many payload bytes at most (a larger frame alone takes them all).
const AHEAD_BYTES: u32 = 4 << 20;

/// A step read ahead, holding its share of [`AHEAD_BYTES`] until it is taken.
type Ahead = (Step, Option<OwnedSemaphorePermit>);

/// What a recording server serves.
#[derive(Clone, Debug)]
pub struct RecordedConfig {
    /// The recording's files in order. A path that does not exist but whose rotated parts
    /// (`<stem>.<n>.twr`) do stands for those parts.
    pub paths: Vec<PathBuf>,
    /// `None`: as fast as the client reads; `1.0`: the recorded timing; `2.0` twice as fast.
    pub speed: Option<f64>,
}

/// Counters over every served connection.
#[derive(Debug, Default)]
pub struct RecordedStats {
    pub connections: AtomicU64,
    pub open_connections: AtomicU64,
    /// Data frames sent.
    pub messages_sent: AtomicU64,
    /// Their payload bytes.
    pub bytes_sent: AtomicU64,
    /// Set once a client asked for a connection past the recording's last one.
    pub exhausted: AtomicBool,
}

/// Why a recording server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file is missing, not a recording, damaged in its header or from a newer format.
    #[error(transparent)]
    Recording(#[from] ReadError),
    /// No file given.
    #[error("no recording given")]
    NoFiles,
    /// Binding the listener failed (or the host is not loopback).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running recording server; stops when dropped.
pub struct RecordedServer {
    addr: SocketAddr,
    venue: String,
    stats: Arc<RecordedStats>,
    shutdown: watch::Sender<bool>,
}

impl RecordedServer {
    /// Opens every file (so a missing, foreign or newer-format file is refused here, not on
    /// the first connection), binds `host:port` (loopback only) and serves on `handle`.
    ///
    /// # Errors
    /// [`StartError`]: a file that cannot be read as a recording, or the bind's error.
    pub fn start(
        handle: &tokio::runtime::Handle,
        host: &str,
        port: u16,
        config: RecordedConfig,
    ) -> Result<RecordedServer, StartError> {
        let files = expand(&config.paths);
        let mut venue = None;
        for path in &files {
            let reader = Reader::open(path)?;
            venue.get_or_insert_with(|| reader.meta().venue.clone());
        }
        let venue = venue.ok_or(StartError::NoFiles)?;
        let (listener, addr) = super::bind_loopback(handle, host, port)?;
        let stats = Arc::new(RecordedStats::default());
        let (shutdown, rx) = watch::channel(false);
        let plan = Arc::new(Plan {
            files,
            speed: config.speed.filter(|s| s.is_finite() && *s > 0.0),
        });
        handle.spawn(accept_loop(listener, plan, stats.clone(), rx));
        Ok(RecordedServer {
            addr,
            venue,
            stats,
            shutdown,
        })
    }

    /// `ws://127.0.0.1:PORT/v1/`; any path is served the same.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The recorded venue: "coinapi" or "moment".
    pub fn venue(&self) -> &str {
        &self.venue
    }

    pub fn stats(&self) -> &RecordedStats {
        &self.stats
    }

    /// Stops accepting and ends every connection (close 1001).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for RecordedServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The files, each existing path as given and each rotated stem as its parts.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().flat_map(|p| parts_of(p)).collect()
}

struct Plan {
    files: Vec<PathBuf>,
    speed: Option<f64>,
}

async fn accept_loop(
    listener: TcpListener,
    plan: Arc<Plan>,
    stats: Arc<RecordedStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut accepted: u64 = 0;
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    log::warn!("recording server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = super::until_set(&mut shutdown) => return,
        };
        let _ = tcp.set_nodelay(true);
        // Upgrades are taken in accept order, so the n-th client gets the n-th connection (a
        // client that never completes its upgrade holds the next ones back for 10 s at most).
        let upgrade = tokio_tungstenite::accept_async(tcp);
        let Ok(Ok(ws)) = tokio::time::timeout(Duration::from_secs(10), upgrade).await else {
            continue;
        };
        let nth = accepted;
        accepted += 1;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (plan, stats, shutdown) = (plan.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
            serve(ws, nth, plan, &stats, shutdown).await;
            stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// What a served connection does next, read from the recording.
#[derive(Debug, PartialEq)]
enum Step {
    /// The recorded connection opened at `wall_ns`: the pacing's origin.
    Open {
        wall_ns: i64,
    },
    Frame {
        wall_ns: i64,
        payload: Bytes,
        binary: bool,
    },
    Ping {
        wall_ns: i64,
    },
    /// End with a close frame (`code` `None`: a close frame without a code).
    Close {
        wall_ns: i64,
        code: Option<u16>,
        reason: String,
    },
    /// End without a close frame.
    Abort {
        wall_ns: i64,
    },
    /// Send nothing more; the client closes (it switched to its successor).
    Hold {
        wall_ns: i64,
    },
    /// The recorded client sent a message here (its hello, a subscription).
    Sent,
    /// The recording has no `nth` connection.
    NoMore,
    /// The files ended while the connection was open (a recording cut short).
    End,
    /// The files cannot be read past here.
    Damaged(String),
}

impl Step {
    fn wall_ns(&self) -> Option<i64> {
        match self {
            Step::Frame { wall_ns, .. }
            | Step::Ping { wall_ns }
            | Step::Close { wall_ns, .. }
            | Step::Abort { wall_ns }
            | Step::Hold { wall_ns } => Some(*wall_ns),
            _ => None,
        }
    }
}

/// Picks the `nth` connection's steps out of the records, in order. Pure: the blocking reader
/// feeds it, and tests feed it records directly.
struct Picker {
    nth: u64,
    /// Connections opened so far.
    opened: u64,
    /// The highest connection number seen opening: connection numbers grow, so a higher one
    /// is a new connection and a restated one (`continued`, at the start of a rotated file) is
    /// not.
    highest: Option<u32>,
    /// The recorded connection being served, once found.
    target: Option<u32>,
    /// The server's close frame was seen: the end that follows is that close.
    closed: bool,
    /// A make-before-break successor opened after the target and still open: the target's
    /// end, if the client's, is the switch to it.
    successor: Option<u32>,
}

impl Picker {
    fn new(nth: u64) -> Self {
        Picker {
            nth,
            opened: 0,
            highest: None,
            target: None,
            closed: false,
            successor: None,
        }
    }

    /// The step this record makes, if any, and whether it is the last.
    fn pick(&mut self, rec: &crate::record::Record) -> Option<Step> {
        let wall_ns = rec.at.wall_ns;
        if let Event::Opened { role, .. } = rec.event {
            if self.highest.is_none_or(|h| rec.conn > h) {
                self.highest = Some(rec.conn);
                self.opened += 1;
                if self.opened == self.nth + 1 {
                    self.target = Some(rec.conn);
                    return Some(Step::Open { wall_ns });
                }
                if self.target.is_some() && role == Role::Successor {
                    self.successor = Some(rec.conn);
                }
            }
            return None;
        }
        if self.successor == Some(rec.conn) {
            if let Event::Closed { .. } | Event::ConnectFailed { .. } = rec.event {
                self.successor = None;
            }
        }
        if self.target != Some(rec.conn) || self.closed {
            return None;
        }
        match &rec.event {
            Event::Data { payload, binary } => Some(Step::Frame {
                wall_ns,
                payload: payload.clone(),
                binary: *binary,
            }),
            Event::Ping => Some(Step::Ping { wall_ns }),
            Event::Sent { .. } => Some(Step::Sent),
            Event::Close { code, reason } => {
                self.closed = true;
                Some(Step::Close {
                    wall_ns,
                    code: *code,
                    reason: reason.clone(),
                })
            }
            Event::ReadError { .. } => {
                self.closed = true;
                Some(Step::Abort { wall_ns })
            }
            // The client left it for its successor: it closes it again on replay.
            Event::Closed { .. } if self.successor.is_some() => {
                self.closed = true;
                Some(Step::Hold { wall_ns })
            }
            // The client ended it (or the recording's stream did): a normal close.
            Event::Closed { .. } => {
                self.closed = true;
                Some(Step::Close {
                    wall_ns,
                    code: Some(1000),
                    reason: String::new(),
                })
            }
            _ => None,
        }
    }

    fn done(&self) -> bool {
        self.closed
    }

    /// The step after the last record of the last file.
    fn at_end(&self) -> Step {
        if self.target.is_none() {
            Step::NoMore
        } else {
            Step::End
        }
    }
}

/// Reads the files on a blocking thread and sends the `nth` connection's steps, stopping at
/// its end or when the served connection is gone (the channel closed).
fn read_steps(files: &[PathBuf], nth: u64, tx: &mpsc::Sender<Ahead>) {
    let budget = Arc::new(Semaphore::new(AHEAD_BYTES as usize));
    // A blocking-pool thread: waiting on the runtime's semaphore from here is allowed.
    let handle = tokio::runtime::Handle::current();
    let mut picker = Picker::new(nth);
    for path in files {
        let reader = match Reader::open(path) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send((Step::Damaged(e.to_string()), None));
                return;
            }
        };
        for rec in reader {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    let _ = tx.blocking_send((Step::Damaged(e.to_string()), None));
                    return;
                }
            };
            if let Some(step) = picker.pick(&rec) {
                let permit = match &step {
                    Step::Frame { payload, .. } => {
                        let share = u32::try_from(payload.len())
                            .unwrap_or(u32::MAX)
                            .clamp(1, AHEAD_BYTES);
                        match handle.block_on(budget.clone().acquire_many_owned(share)) {
                            Ok(p) => Some(p),
                            Err(_) => return,
                        }
                    }
                    _ => None,
                };
                if tx.blocking_send((step, permit)).is_err() {
                    return;
                }
                if picker.done() {
                    return;
                }
            }
        }
    }
    let _ = tx.blocking_send((picker.at_end(), None));
}

/// A close reason fits a control frame (125 bytes, 2 of them the code).
fn short(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

async fn close_with(ws: &mut WebSocketStream<TcpStream>, code: Option<u16>, reason: &str) {
    let frame = code.map(|c| CloseFrame {
        code: CloseCode::from(c),
        reason: short(reason).into(),
    });
    // The client may be gone already; nothing else to do then.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.send(Message::Close(frame))).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// How one wait ended.
#[derive(Debug, PartialEq)]
enum Waited {
    Ready,
    /// The client closed or dropped the connection.
    Left,
    Shutdown,
}

/// The served socket and how many data messages the client has sent on it.
struct Client {
    ws: WebSocketStream<TcpStream>,
    heard: u64,
}

impl Client {
    /// Reads the client until `due` has passed and it has sent `want` messages (that wait
    /// bounded by [`ANSWER_WAIT`]), answering pings meanwhile.
    async fn wait(
        &mut self,
        due: Option<Instant>,
        want: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Waited {
        let answer_by = Instant::now() + ANSWER_WAIT;
        loop {
            let due_now = due.is_none_or(|d| d <= Instant::now());
            if due_now && (self.heard >= want || answer_by <= Instant::now()) {
                return Waited::Ready;
            }
            let until = if due_now {
                answer_by
            } else {
                due.unwrap_or(answer_by)
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                m = self.ws.next() => match m {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => self.heard += 1,
                    Some(Ok(_)) => {}
                    _ => return Waited::Left,
                },
                () = super::until_set(shutdown) => return Waited::Shutdown,
            }
        }
    }

    /// Reads until the next step is ready, counting what the client sends.
    async fn next_step(
        &mut self,
        rx: &mut mpsc::Receiver<Ahead>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Step, Waited> {
        loop {
            tokio::select! {
                // The step's byte share is released here: it is out of the read-ahead.
                s = rx.recv() => return Ok(s.map_or(Step::End, |(step, _)| step)),
                m = self.ws.next() => match m {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => self.heard += 1,
                    Some(Ok(_)) => {}
                    _ => return Err(Waited::Left),
                },
                () = super::until_set(shutdown) => return Err(Waited::Shutdown),
            }
        }
    }
}

async fn serve(
    ws: WebSocketStream<TcpStream>,
    nth: u64,
    plan: Arc<Plan>,
    stats: &RecordedStats,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel(AHEAD);
    let reading = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || read_steps(&plan.files, nth, &tx))
    };
    let mut client = Client { ws, heard: 0 };
    // Pacing origin: (when the served connection started, when the recorded one opened).
    let mut origin: Option<(Instant, i64)> = None;
    // Messages the recorded client had sent by this point.
    let mut sent_before: u64 = 0;
    let ended = loop {
        let step = match client.next_step(&mut rx, &mut shutdown).await {
            Ok(step) => step,
            Err(why) => break why,
        };
        if let Step::Sent = step {
            sent_before += 1;
            continue;
        }
        let due = match (plan.speed, origin, step.wall_ns()) {
            (Some(speed), Some((t0, r0)), Some(at)) => {
                let offset = at.saturating_sub(r0).max(0) as f64 / 1e9 / speed;
                Some(t0 + Duration::from_secs_f64(offset))
            }
            _ => None,
        };
        // Only a frame waits for what the client sent before it was recorded (its hello, a
        // subscription), so data never overtakes the request it answers.
        let want = if matches!(step, Step::Frame { .. }) {
            sent_before
        } else {
            0
        };
        if due.is_some() || client.heard < want {
            // Flushed first: what is queued goes out before the wait, not after it.
            if client.ws.flush().await.is_err() {
                break Waited::Left;
            }
            match client.wait(due, want, &mut shutdown).await {
                Waited::Ready => {}
                other => break other,
            }
        }
        let ws = &mut client.ws;
        let sent = match step {
            Step::Open { wall_ns } => {
                origin = Some((Instant::now(), wall_ns));
                Ok(())
            }
            Step::Frame {
                payload, binary, ..
            } => {
                let len = payload.len() as u64;
                let opcode = OpCode::Data(if binary { Data::Binary } else { Data::Text });
                // As a raw frame: the recorded bytes go out exactly, unvalidated (a recorded
                // frame that is not UTF-8 must reach the client as it did).
                let r = ws
                    .feed(Message::Frame(Frame::message(payload, opcode, true)))
                    .await;
                if r.is_ok() {
                    stats.messages_sent.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                }
                r
            }
            Step::Ping { .. } => ws.feed(Message::Ping(Bytes::new())).await,
            Step::Close { code, reason, .. } => {
                close_with(ws, code, &reason).await;
                break Waited::Ready;
            }
            Step::Hold { .. } => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.flush()).await;
                let held = Instant::now() + HOLD;
                // `want` beyond anything: this waits for the client to leave, or HOLD.
                match client.wait(Some(held), u64::MAX, &mut shutdown).await {
                    Waited::Left => {}
                    _ => close_with(&mut client.ws, Some(1000), "end of recorded connection").await,
                }
                break Waited::Ready;
            }
            Step::Abort { .. } => {
                // What was recorded before the end goes out; then the socket is dropped.
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.flush()).await;
                break Waited::Ready;
            }
            Step::NoMore => {
                stats.exhausted.store(true, Ordering::Relaxed);
                close_with(ws, Some(1000), "end of recording").await;
                break Waited::Ready;
            }
            Step::End => {
                close_with(ws, Some(1000), "end of recording").await;
                break Waited::Ready;
            }
            Step::Damaged(what) => {
                log::error!("recording server: {what}");
                close_with(ws, Some(1011), &what).await;
                break Waited::Ready;
            }
            Step::Sent => Ok(()),
        };
        // Frames are flushed when none is ready behind them (as fast as possible) or each
        // one (paced), so a paced frame leaves at its time.
        let flushed = match sent {
            Ok(()) if plan.speed.is_some() || rx.is_empty() => ws.flush().await,
            other => other,
        };
        if flushed.is_err() {
            break Waited::Left;
        }
    };
    if ended == Waited::Shutdown {
        close_with(&mut client.ws, Some(1001), "simulator shutting down").await;
    }
    drop(rx);
    // The reader stops at its next send; nothing to wait for.
    drop(reading);
    // Dropping the socket without a close frame is the abrupt end (`Abort`).
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Role, Stamp};

    fn rec(conn: u32, wall_ns: i64, event: Event) -> Record {
        Record {
            conn,
            at: Stamp {
                wall_ns,
                mono_ns: 0,
            },
            event,
        }
    }

    fn opened(conn: u32, wall_ns: i64, continued: bool) -> Record {
        rec(
            conn,
            wall_ns,
            Event::Opened {
                role: Role::Primary,
                attempt: 0,
                url: "ws://127.0.0.1:1/v1/".into(),
                settings: "{}".into(),
                continued,
            },
        )
    }

    fn data(conn: u32, wall_ns: i64, text: &'static str) -> Record {
        rec(
            conn,
            wall_ns,
            Event::Data {
                payload: Bytes::from_static(text.as_bytes()),
                binary: false,
            },
        )
    }

    fn picks(nth: u64, records: &[Record]) -> Vec<Step> {
        let mut p = Picker::new(nth);
        let mut out = Vec::new();
        for r in records {
            if let Some(s) = p.pick(r) {
                out.push(s);
                if p.done() {
                    return out;
                }
            }
        }
        out.push(p.at_end());
        out
    }

    /// Two connections overlapping (a successor opened on a notice), the first ended by the
    /// server's close frame, the second by the client.
    fn session() -> Vec<Record> {
        vec![
            opened(0, 100, false),
            data(0, 110, "a"),
            rec(0, 115, Event::Ping),
            rec(0, 116, Event::Sent { text: "{}".into() }),
            opened(1, 120, false),
            data(1, 121, "x"),
            data(0, 122, "b"),
            rec(
                0,
                130,
                Event::Close {
                    code: Some(4000),
                    reason: "bye".into(),
                },
            ),
            rec(
                0,
                131,
                Event::Closed {
                    reported: true,
                    reason: "closed".into(),
                    code: Some(4000),
                },
            ),
            // A rotated file restates the open connection: not a new one.
            opened(1, 140, true),
            data(1, 141, "y"),
            rec(
                1,
                150,
                Event::Closed {
                    reported: false,
                    reason: "consumer".into(),
                    code: None,
                },
            ),
        ]
    }

    fn frame(wall_ns: i64, text: &'static str) -> Step {
        Step::Frame {
            wall_ns,
            payload: Bytes::from_static(text.as_bytes()),
            binary: false,
        }
    }

    #[test]
    fn the_nth_client_gets_the_nth_recorded_connection() {
        assert_eq!(
            picks(0, &session()),
            vec![
                Step::Open { wall_ns: 100 },
                frame(110, "a"),
                Step::Ping { wall_ns: 115 },
                Step::Sent,
                frame(122, "b"),
                Step::Close {
                    wall_ns: 130,
                    code: Some(4000),
                    reason: "bye".into()
                },
            ]
        );
        assert_eq!(
            picks(1, &session()),
            vec![
                Step::Open { wall_ns: 120 },
                frame(121, "x"),
                frame(141, "y"),
                Step::Close {
                    wall_ns: 150,
                    code: Some(1000),
                    reason: String::new()
                },
            ]
        );
        assert_eq!(picks(2, &session()), vec![Step::NoMore]);
    }

    #[test]
    fn a_read_error_ends_abruptly_and_a_cut_recording_ends() {
        let records = vec![
            opened(0, 1, false),
            data(0, 2, "a"),
            rec(
                0,
                3,
                Event::ReadError {
                    reason: "reset".into(),
                    code: None,
                },
            ),
            opened(1, 4, false),
            data(1, 5, "b"),
        ];
        assert_eq!(
            picks(0, &records),
            vec![
                Step::Open { wall_ns: 1 },
                frame(2, "a"),
                Step::Abort { wall_ns: 3 }
            ]
        );
        assert_eq!(
            picks(1, &records),
            vec![Step::Open { wall_ns: 4 }, frame(5, "b"), Step::End]
        );
    }

    #[test]
    fn a_connection_left_for_its_successor_is_held_open() {
        let successor = rec(
            1,
            20,
            Event::Opened {
                role: Role::Successor,
                attempt: 0,
                url: "ws://127.0.0.1:1/v1/".into(),
                settings: "{}".into(),
                continued: false,
            },
        );
        let closed = |conn, wall_ns| {
            rec(
                conn,
                wall_ns,
                Event::Closed {
                    reported: false,
                    reason: "switched".into(),
                    code: None,
                },
            )
        };
        let records = vec![
            opened(0, 10, false),
            data(0, 11, "a"),
            successor,
            data(1, 21, "a"),
            closed(0, 30),
            data(1, 31, "b"),
            closed(1, 40),
        ];
        assert_eq!(
            picks(0, &records),
            vec![
                Step::Open { wall_ns: 10 },
                frame(11, "a"),
                Step::Hold { wall_ns: 30 }
            ]
        );
        // The successor itself, once its predecessor is gone, ends as any connection.
        assert_eq!(
            picks(1, &records),
            vec![
                Step::Open { wall_ns: 20 },
                frame(21, "a"),
                frame(31, "b"),
                Step::Close {
                    wall_ns: 40,
                    code: Some(1000),
                    reason: String::new()
                }
            ]
        );
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let s = short(&long);
        assert!(s.len() <= 123);
        assert!(long.starts_with(&s));
    }

    mod served {
        //! A recording written with the format's writer, served to a tungstenite client over
        //! 127.0.0.1.

        use std::path::PathBuf;

        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;

        use super::*;
        use crate::record::{FileWriter, Meta};

        struct TempFile(PathBuf);

        impl TempFile {
            fn new(name: &str) -> Self {
                TempFile(
                    std::env::temp_dir()
                        .join(format!("tickwire-served-{name}-{}.twr", std::process::id())),
                )
            }
        }

        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }

        fn meta() -> Meta {
            Meta {
                venue: "coinapi".into(),
                feed: "coinapi".into(),
                url: "ws://127.0.0.1:1/v1/".into(),
                scope: "{\"type\":\"hello\"}".into(),
                tickwire: "test".into(),
                created_ns: 1,
                part: 0,
            }
        }

        /// Writes `records`, a block boundary after each index in `cuts`; returns where each
        /// block starts.
        fn write(path: &PathBuf, records: &[Record], cuts: &[usize]) -> Vec<u64> {
            let file = std::fs::File::create(path).unwrap();
            let mut w = FileWriter::new(file, &meta(), Vec::new()).unwrap();
            let mut starts = vec![w.written()];
            for (i, r) in records.iter().enumerate() {
                w.push(r).unwrap();
                if cuts.contains(&i) {
                    w.flush_block().unwrap();
                    starts.push(w.written());
                }
            }
            w.finish().unwrap();
            starts
        }

        /// What a client reads: the texts, then how it ended (`Some(code)` for a close frame,
        /// `None` for a connection dropped without one).
        async fn client(url: &str) -> (Vec<String>, Option<(u16, String)>) {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            // The hello the recordings' client sent; frames recorded after it wait for it.
            ws.send(Message::text("hello")).await.unwrap();
            let mut texts = Vec::new();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
                    Some(Ok(Message::Close(f))) => {
                        let f = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                        return (texts, f);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return (texts, None),
                }
            }
        }

        fn start(path: &TempFile) -> RecordedServer {
            let config = RecordedConfig {
                paths: vec![path.0.clone()],
                speed: None,
            };
            RecordedServer::start(&tokio::runtime::Handle::current(), "127.0.0.1", 0, config)
                .unwrap()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn connections_and_their_ends_are_served_in_order() {
            let file = TempFile::new("order");
            let mut records = session();
            records.push(opened(2, 160, false));
            records.push(data(2, 161, "z"));
            records.push(rec(
                2,
                162,
                Event::ReadError {
                    reason: "reset".into(),
                    code: None,
                },
            ));
            write(&file.0, &records, &[3, 8]);
            let server = start(&file);
            assert_eq!(server.venue(), "coinapi");
            let url = server.url();
            let first = client(&url).await;
            assert_eq!(first.0, ["a", "b"]);
            assert_eq!(first.1, Some((4000, "bye".to_string())));
            let second = client(&url).await;
            assert_eq!(second.0, ["x", "y"]);
            assert_eq!(second.1, Some((1000, String::new())));
            // Recorded as a read error: dropped without a close frame.
            let third = client(&url).await;
            assert_eq!(third.0, ["z"]);
            assert_eq!(third.1, None);
            let fourth = client(&url).await;
            assert!(fourth.0.is_empty());
            assert_eq!(fourth.1, Some((1000, "end of recording".to_string())));
            let st = server.stats();
            assert_eq!(st.connections.load(Ordering::Relaxed), 4);
            assert_eq!(st.messages_sent.load(Ordering::Relaxed), 5);
            assert!(st.exhausted.load(Ordering::Relaxed));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn damage_ends_the_connection_naming_the_offset_after_what_came_before() {
            let file = TempFile::new("damage");
            let records = vec![
                opened(0, 1, false),
                data(0, 2, "before"),
                data(0, 3, "after"),
            ];
            let starts = write(&file.0, &records, &[1]);
            // A byte inside the second block's compressed data.
            let at =
                usize::try_from(starts[1]).unwrap() + crate::record::format::BLOCK_HEADER_LEN + 1;
            let mut bytes = std::fs::read(&file.0).unwrap();
            bytes[at] ^= 0xff;
            std::fs::write(&file.0, bytes).unwrap();
            let server = start(&file);
            let (texts, end) = client(&server.url()).await;
            assert_eq!(texts, ["before"]);
            let (code, reason) = end.unwrap();
            assert_eq!(code, 1011);
            assert!(reason.contains(&format!("byte {}", starts[1])), "{reason}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn foreign_and_missing_files_are_refused_at_start() {
            let file = TempFile::new("foreign");
            std::fs::write(&file.0, b"hello").unwrap();
            let handle = tokio::runtime::Handle::current();
            let config = |p: &PathBuf| RecordedConfig {
                paths: vec![p.clone()],
                speed: None,
            };
            let err = RecordedServer::start(&handle, "127.0.0.1", 0, config(&file.0));
            assert!(matches!(
                err,
                Err(StartError::Recording(ReadError::NotRecording { .. }))
            ));
            let missing = file.0.with_extension("missing");
            let err = RecordedServer::start(&handle, "127.0.0.1", 0, config(&missing));
            assert!(matches!(
                err,
                Err(StartError::Recording(ReadError::Io { .. }))
            ));
            let err = RecordedServer::start(&handle, "0.0.0.0", 0, config(&file.0));
            assert!(err.is_err());
        }
    }
}
