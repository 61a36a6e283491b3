//! One connection's life as I/O: the logic is [`Machine`]'s; this task reads frames into it
//! (natural batching), performs its actions, and arms its one deadline.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::counters::Counters;
use super::{ClientConfig, Command, Status};
use crate::delivery::Queue;
use crate::feed::backoff::Backoff;
use crate::feed::machine::{Action, Clock, End, Input, Machine, Request, Settings, Wire};
use crate::feed::msgnum::MsgNumberTracker;
use crate::protocol::Session;
use crate::record::{self, Event as RecEvent, Request as RecRequest, Role, Tap};
use crate::transport::watch::SocketWatch;
use crate::transport::{ConnectFailure, Connection, Frame, TransportError};

/// Wall clock now, ns since the epoch.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Within a burst of ready frames, the clocks are read for the first frame and then every this
/// many frames (about 10 µs of parsing at full speed).
const CLOCK_EVERY: usize = 16;

/// A connection being opened in the background (after its backoff delay).
type PendingConnect =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Connection, ConnectFailure>> + Send>>;

/// The task's clock: monotonic time since `origin`, and the wall clock.
struct Clocks {
    origin: Instant,
}

impl Clocks {
    fn read(&self) -> Clock {
        Clock {
            mono: self.origin.elapsed(),
            wall_ns: wall_ns(),
        }
    }
}

fn input(frame: &Frame) -> Input<'_> {
    match frame {
        Frame::Data { payload, .. } => Input::Data(payload),
        Frame::Ping => Input::Ping,
        Frame::Pong => Input::Pong,
        Frame::Close { code, reason } => Input::Close {
            code: *code,
            reason,
        },
    }
}

/// A frame as recorded (its payload copied by the tap).
fn recorded(tap: &mut Tap, frame: &Frame) -> RecEvent {
    match frame {
        Frame::Data { payload, binary } => RecEvent::Data {
            payload: tap.copy(payload),
            binary: *binary,
        },
        Frame::Ping => RecEvent::Ping,
        Frame::Pong => RecEvent::Pong,
        Frame::Close { code, reason } => RecEvent::Close {
            code: *code,
            reason: reason.clone(),
        },
    }
}

/// A consumer request as recorded.
fn recorded_request(req: &Request) -> RecRequest {
    match req {
        Request::Close => RecRequest::Close,
        Request::Subscribe(_) => RecRequest::Subscribe,
        Request::Unsubscribe(_) => RecRequest::Unsubscribe,
        Request::Resync {
            symbol_id,
            book_type,
        } => RecRequest::Resync {
            symbol_id: symbol_id.clone(),
            book_type: (*book_type).to_string(),
        },
        Request::Refresh => RecRequest::Refresh,
    }
}

fn request(cmd: Option<Command>) -> Request {
    match cmd {
        None | Some(Command::Close) => Request::Close,
        Some(Command::Subscribe(s)) => Request::Subscribe(s),
        Some(Command::Unsubscribe(s)) => Request::Unsubscribe(s),
        Some(Command::Resync {
            symbol_id,
            book_type,
        }) => Request::Resync {
            symbol_id,
            book_type,
        },
        Some(Command::Refresh) => Request::Refresh,
    }
}

fn add_counts(counters: &Counters, m: &mut Machine) {
    let c = m.take_counts();
    for (field, n) in [
        (&counters.bytes, c.bytes),
        (&counters.messages, c.messages),
        (&counters.parse_errors, c.parse_errors),
        (&counters.gaps, c.gaps),
        (&counters.duplicates, c.duplicates),
    ] {
        Counters::add(field, n);
    }
}

/// Where the task's results go: the consumer's queue, the stream's counters, and the inline
/// consumer's socket watch (which is told the socket being read now).
pub(crate) struct Sinks<'a> {
    pub queue: &'a Arc<Queue>,
    pub status: &'a Status,
    pub watch: Option<&'a SocketWatch>,
}

impl Sinks<'_> {
    fn watch(&self, conn: Option<&Connection>) {
        if let Some(w) = self.watch {
            w.set_socket(conn.map(Connection::raw_fd));
        }
    }

    fn counters(&self) -> &Counters {
        &self.status.counters
    }
}

/// How a connection ended, and whether it was ever made (had a frame after the opening).
pub(crate) struct Outcome {
    pub end: End,
    pub made: bool,
    pub msg_numbers: MsgNumberTracker,
    /// The recording's number for the connection (the one delivered from at the end).
    pub conn: u32,
}

/// Runs one connection (and, on a reconnect notice, its make-before-break successor) until
/// the stream must reconnect or end. `backoff` paces successors as it paces reconnects.
#[allow(
    clippy::too_many_arguments,
    reason = "the task's borrowed parts, passed as they are rather than bundled"
)]
pub(crate) async fn drive(
    conn: Connection,
    config: &mut ClientConfig,
    out: &Sinks<'_>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    msg_numbers: MsgNumberTracker,
    backoff: &mut Backoff,
    (shown_url, attempt): (&str, u32),
) -> Outcome {
    let clocks = Clocks {
        origin: Instant::now(),
    };
    let settings = Settings {
        heartbeat_timeout: config.heartbeat_timeout,
        ping_timeout: config.ping_timeout,
        connect_timeout: config.connect.connect_timeout,
        on_notice: config.on_notice,
        hold_limit: config.hold_limit.max(1),
        batch_size: config.batch_size.max(1),
        keep_raw: config.keep_raw,
        shown_url: shown_url.into(),
        attempt,
        answer_expected: match &config.session {
            Session::CoinApi(s) => s.scope().heartbeat,
            Session::Moment(_) => true,
        },
    };
    let opened = clocks.read();
    let mut tap = config.recorder.clone().map(Tap::new);
    let primary_id = tap.as_ref().map_or(0, |t| t.recorder().new_conn());
    if let Some(t) = &mut tap {
        t.push(
            primary_id,
            opened,
            RecEvent::Opened {
                role: Role::Primary,
                attempt,
                url: shown_url.into(),
                settings: record::play::settings_json(&settings),
                continued: false,
            },
        );
    }
    let mut m = Machine::new(config.session.clone(), settings, msg_numbers, opened);
    let mut io = Io {
        primary: conn,
        successor: None,
        connecting: None,
        made: false,
        wedged: false,
        tap,
        primary_id,
        successor_id: None,
    };
    out.watch(Some(&io.primary));
    let end = io
        .run(&mut m, config, out, commands, backoff, &clocks)
        .await;
    out.watch(None);
    if let Some(t) = &mut io.tap {
        t.flush();
    }
    let made = io.made;
    let conn = io.primary_id;
    let (session, msg_numbers) = m.into_parts();
    config.session = session;
    Outcome {
        end,
        made,
        msg_numbers,
        conn,
    }
}

/// The sockets the machine's actions are performed on.
struct Io {
    primary: Connection,
    successor: Option<Connection>,
    connecting: Option<PendingConnect>,
    made: bool,
    /// A write on the primary failed or was abandoned (its peer stopped reading): a close
    /// frame could not reach the peer either, so the socket is dropped without one.
    wedged: bool,
    /// `record=`: what this task hands the recorder, and the connections' numbers in it.
    tap: Option<Tap>,
    primary_id: u32,
    successor_id: Option<u32>,
}

impl Io {
    #[allow(
        clippy::too_many_arguments,
        reason = "the task's borrowed parts, passed as they are rather than bundled"
    )]
    async fn run(
        &mut self,
        m: &mut Machine,
        config: &ClientConfig,
        out: &Sinks<'_>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        backoff: &mut Backoff,
        clocks: &Clocks,
    ) -> End {
        let far = clocks.origin + Duration::from_secs(86_400 * 365);
        // One timer, re-armed only when the deadline moves: a fresh `sleep_until` per wake-up
        // was a timer-wheel insert and removal each.
        let mut timer = Box::pin(tokio::time::sleep_until(far));
        loop {
            while let Some(action) = m.poll() {
                if let Some(end) = self
                    .perform(action, m, config, out, commands, backoff, clocks)
                    .await
                {
                    add_counts(out.counters(), m);
                    out.status.set_state(m.state());
                    return end;
                }
            }
            add_counts(out.counters(), m);
            out.status.set_state(m.state());
            if let Some(t) = &mut self.tap {
                t.flush();
            }
            let at = m.next_deadline().map_or(far, |d| clocks.origin + d);
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            let successor_read = m.wants_successor_read() && self.successor.is_some();
            let successor_connect = m.wants_successor_connect() && self.connecting.is_some();
            tokio::select! {
                biased;
                cmd = commands.recv() => {
                    let (req, now) = (request(cmd), clocks.read());
                    self.note(self.primary_id, now, || RecEvent::Request(recorded_request(&req)));
                    m.on_request(req, now);
                }
                res = async { self.connecting.as_mut().expect("guarded").await },
                    if successor_connect =>
                {
                    self.connecting = None;
                    let now = clocks.read();
                    match res {
                        Ok(c) => {
                            self.successor = Some(c);
                            if let Some(t) = &mut self.tap {
                                let id = t.recorder().new_conn();
                                self.successor_id = Some(id);
                                t.push(id, now, RecEvent::Opened {
                                    role: Role::Successor,
                                    attempt: 0,
                                    url: String::new(),
                                    settings: "{}".into(),
                                    continued: false,
                                });
                            }
                            m.on_successor_connected(now);
                        }
                        Err(e) => {
                            let reason = e.to_string();
                            self.note(self.primary_id, now, || RecEvent::SuccessorFailed {
                                reason: reason.clone(),
                            });
                            m.on_successor_failed(&reason, now);
                        }
                    }
                }
                f = async { self.successor.as_mut().expect("guarded").next().await },
                    if successor_read =>
                {
                    let now = clocks.read();
                    let id = self.successor_id.unwrap_or(0);
                    match f {
                        Ok(frame) => {
                            if let Some(t) = &mut self.tap {
                                let ev = recorded(t, &frame);
                                t.push(id, now, ev);
                            }
                            m.on_frame(Wire::Successor, input(&frame), now);
                        }
                        Err(e) => {
                            self.note(id, now, || RecEvent::ReadError {
                                reason: e.reason.clone(),
                                code: e.code,
                            });
                            m.on_read_error(Wire::Successor, &e.reason, e.code, now);
                        }
                    }
                    m.end_burst(now);
                }
                first = self.primary.next() => {
                    let now = self.burst(m, first, clocks);
                    out.counters().last_frame_ns.store(now.wall_ns, Relaxed);
                    m.end_burst(now);
                }
                () = timer.as_mut() => {
                    let now = clocks.read();
                    self.note(self.primary_id, now, || RecEvent::Deadline);
                    m.on_deadline(now);
                }
            }
        }
    }

    /// Natural batching: the first frame, then whatever is already readable, up to a batch.
    fn burst(
        &mut self,
        m: &mut Machine,
        first: Result<Frame, TransportError>,
        clocks: &Clocks,
    ) -> Clock {
        let mut next = Some(first);
        let mut now = clocks.read();
        let mut in_burst = 0usize;
        while let Some(item) = next.take() {
            // Frames drained in one burst were all readable when it began; reading the clocks
            // for every one of them cost 7 % of the core at full speed.
            if in_burst > 0 && in_burst.is_multiple_of(CLOCK_EVERY) {
                now = clocks.read();
            }
            in_burst += 1;
            match item {
                Ok(frame) => {
                    if let Some(t) = &mut self.tap {
                        let ev = recorded(t, &frame);
                        t.push(self.primary_id, now, ev);
                    }
                    if !m.on_frame(Wire::Primary, input(&frame), now) {
                        break;
                    }
                }
                Err(e) => {
                    self.note(self.primary_id, now, || RecEvent::ReadError {
                        reason: e.reason.clone(),
                        code: e.code,
                    });
                    m.on_read_error(Wire::Primary, &e.reason, e.code, now);
                    break;
                }
            }
            next = self.primary.try_next();
        }
        now
    }

    /// Records `event` on connection `conn` at `now`, if recording (built only then).
    fn note(&mut self, conn: u32, now: Clock, event: impl FnOnce() -> RecEvent) {
        if let Some(t) = &mut self.tap {
            t.push(conn, now, event());
        }
    }

    /// The recording's number of a wire's connection, if it exists.
    fn wire_id(&self, to: Wire) -> Option<u32> {
        match to {
            Wire::Primary => Some(self.primary_id),
            Wire::Successor => self.successor.as_ref().and(self.successor_id),
        }
    }

    fn wire(&mut self, to: Wire) -> Option<&mut Connection> {
        match to {
            Wire::Primary => Some(&mut self.primary),
            Wire::Successor => self.successor.as_mut(),
        }
    }

    /// Performs one action; `Some` when the connection's life is over.
    #[allow(
        clippy::too_many_arguments,
        reason = "the task's borrowed parts, passed as they are rather than bundled"
    )]
    async fn perform(
        &mut self,
        action: Action,
        m: &mut Machine,
        config: &ClientConfig,
        out: &Sinks<'_>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        backoff: &mut Backoff,
        clocks: &Clocks,
    ) -> Option<End> {
        let (to, write) = match action {
            Action::Send { to, text } => (to, Write::Text(text)),
            Action::Ping { to } => (to, Write::Ping),
            Action::Flush { to } => (to, Write::Flush),
            Action::Deliver(batch) => {
                // What was read counts before the push, which may wait (block) or be the
                // last thing this connection does: the stats say what came off the socket.
                add_counts(out.counters(), m);
                if !out.queue.push(batch).await {
                    self.note(self.primary_id, clocks.read(), || {
                        RecEvent::Request(RecRequest::ConsumerGone)
                    });
                    m.on_consumer_gone();
                }
                return None;
            }
            Action::Established => {
                self.made = true;
                out.queue.settle();
                return None;
            }
            Action::OpenSuccessor { paced } => {
                // A refresh is paced by the book consumer that asks for it.
                let delay = if paced {
                    backoff
                        .next_delay(rand::random::<f64>())
                        .unwrap_or_default()
                } else {
                    Duration::ZERO
                };
                let mut opts = config.connect.clone();
                opts.url = m.session().connect_url(&opts.url, None);
                self.connecting = Some(Box::pin(async move {
                    // Successors are paced like reconnects: a server announcing a restart
                    // on every connection cannot make tickwire dial in a loop.
                    tokio::time::sleep(delay).await;
                    Connection::connect(&opts).await
                }));
                return None;
            }
            Action::Switch => {
                if let Some(next) = self.successor.take() {
                    if let Some(id) = self.successor_id.take() {
                        let old = std::mem::replace(&mut self.primary_id, id);
                        self.note(old, clocks.read(), || RecEvent::Closed {
                            reported: false,
                            reason: "replaced by its make-before-break successor".into(),
                            code: None,
                        });
                    }
                    let old = std::mem::replace(&mut self.primary, next);
                    // What was stuck was the old primary's writes.
                    self.wedged = false;
                    out.watch(Some(&self.primary));
                    // The old server is leaving; its close must not hold up the new stream.
                    tokio::spawn(old.close());
                }
                return None;
            }
            Action::Close { which } => {
                match which {
                    Wire::Successor => {
                        self.connecting = None;
                        if let Some(c) = self.successor.take() {
                            if let Some(id) = self.successor_id.take() {
                                self.note(id, clocks.read(), || RecEvent::Closed {
                                    reported: false,
                                    reason: "make-before-break given up".into(),
                                    code: None,
                                });
                            }
                            tokio::spawn(c.close());
                        }
                    }
                    // Closed in place (within close_timeout) and swapped for nothing: the
                    // caller drops this Io right after the `End` that follows.
                    Wire::Primary if !self.wedged => close_primary(&mut self.primary).await,
                    Wire::Primary => {}
                }
                return None;
            }
            Action::End(end) => return Some(end),
        };
        if let Some(id) = self.wire_id(to) {
            if self.tap.is_some() && self.wire(to).is_some() {
                let sent = match &write {
                    Write::Text(t) => Some(RecEvent::Sent {
                        text: record::scrub(t),
                    }),
                    Write::Ping => Some(RecEvent::SentPing),
                    Write::Flush => None,
                };
                if let Some(ev) = sent {
                    self.note(id, clocks.read(), || ev);
                }
            }
        }
        let to_id = self.wire_id(to);
        let conn = self.wire(to)?;
        let mut stashed = Vec::new();
        let result = {
            let fut = write.run(conn);
            tokio::pin!(fut);
            // A close asked for while a write waits on a peer that does not read must not
            // wait for `write_timeout`: it is taken at once and the write abandoned. Scope
            // changes wait for the write in progress.
            loop {
                tokio::select! {
                    biased;
                    r = &mut fut => break Some(r),
                    cmd = commands.recv() => match request(cmd) {
                        Request::Close => break None,
                        other => stashed.push(other),
                    },
                }
            }
        };
        let now = clocks.read();
        if to == Wire::Primary && !matches!(result, Some(Ok(()))) {
            self.wedged = true;
        }
        match result {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                if let Some(id) = to_id {
                    self.note(id, now, || RecEvent::WriteError {
                        reason: e.reason.clone(),
                    });
                }
                m.on_write_error(to, &e.reason, now);
            }
            None => stashed = vec![Request::Close],
        }
        for req in stashed {
            self.note(self.primary_id, now, || {
                RecEvent::Request(recorded_request(&req))
            });
            m.on_request(req, now);
        }
        None
    }
}

/// Closes the primary within its close deadline; the socket is dropped with the `Io`.
async fn close_primary(conn: &mut Connection) {
    conn.shutdown().await;
}

/// A write the machine asked for.
enum Write {
    Text(String),
    Ping,
    Flush,
}

impl Write {
    async fn run(self, conn: &mut Connection) -> Result<(), TransportError> {
        match self {
            Write::Text(t) => conn.send_text(t).await,
            Write::Ping => conn.ping().await,
            Write::Flush => conn.flush().await,
        }
    }
}
