//! One connection's logic as a sans-I/O state machine: opening, liveness, pings, reconnect
//! notices, make-before-break, switching and closing.
//!
//! Events go in (a frame, a read or write failure, a deadline reached, a command, the
//! successor connecting or failing), each with the time; [`Action`]s come out for the caller
//! to perform (send, ping, flush, deliver, open the successor, switch, close, end). Nothing
//! here reads a clock or touches a socket, so every fault is driven in tests with time passed
//! in. The caller reads frames in bursts (natural batching): [`Machine::on_frame`] for each
//! ready frame, then [`Machine::end_burst`], then performs what [`Machine::poll`] gives.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::book_handover::{book_stream, BookHandover, BookId};
use crate::feed::msgnum::MsgNumberTracker;
use crate::feed::sequence::{SeqCheck, SequenceTracker};
use crate::model::{Envelope, Gap, Key, Msg};
use crate::protocol::{Decoder, ScopeChange, Session, Verdict};

/// The latest a make-before-break switch waits after the notice, whatever `before_time`
/// says: a notice an hour ahead must not hold a second connection (and its messages) for an
/// hour.
pub const SWITCH_WITHIN: Duration = Duration::from_secs(5);

/// The time as the machine sees it: `mono` is monotonic time since the caller's origin (it
/// drives every deadline); `wall_ns` is the wall clock in ns since the epoch (it stamps
/// messages and places a notice's `before_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Clock {
    pub mono: Duration,
    pub wall_ns: i64,
}

/// Which of the (at most two) connections an event or action concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// The connection being delivered from.
    Primary,
    /// A make-before-break successor, opened on a reconnect notice.
    Successor,
}

/// A frame as the machine sees it.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Data(&'a [u8]),
    Ping,
    Pong,
    Close { code: Option<u16>, reason: &'a str },
}

/// What to do when the server announces it will close the connection (CoinAPI `reconnect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNotice {
    /// Open a second connection at once, hold its messages, switch once it has caught up.
    MakeBeforeBreak,
    /// Reconnect at once (a hole, marked by `Disconnected`/`Connected`).
    Immediate,
    /// Keep reading until the server closes, then reconnect.
    WaitForClose,
}

/// What the consumer asks of a running connection.
#[derive(Debug)]
pub enum Request {
    Subscribe(ScopeChange),
    Unsubscribe(ScopeChange),
    /// Takes an exact CoinAPI symbol out of the scope and back in, so the server sends fresh
    /// book snapshots for it; its `book_type` stream re-baselines at the next snapshot.
    Resync {
        symbol_id: String,
        book_type: &'static str,
    },
    /// Opens a successor connection with the same scope and switches to it (the
    /// make-before-break machinery, without a notice), so every book restarts from a fresh
    /// snapshot: the resync of a filtered scope, which cannot drop one symbol. Ignored while
    /// a successor is already open or the connection is not `Open`.
    Refresh,
    Close,
}

/// The connection's state. Each transition is made in [`Machine::go`], which refuses the
/// ones listed on the variants (they would mean a bug, so they are not made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The opening request is sent; no frame yet. Refuses to become `Probing`, `Holding` or
    /// `Switching` (a connection that never answered has nothing to probe or hand over).
    Connecting,
    /// Frames flow.
    Open,
    /// Silent past `ping_timeout`: our ping is out, any frame brings the connection back.
    /// Refuses `Switching` (only a hold switches).
    Probing,
    /// A notice arrived (make-before-break): the successor is being opened or read, its
    /// messages held. Refuses `Probing` (the old connection is leaving anyway; its silence
    /// ends the hold instead) and `Connecting`.
    Holding,
    /// The successor took over; its messages the old connection already delivered are still
    /// being dropped. Refuses `Holding` until it is `Open` again.
    Switching,
    /// The connection is being closed. Refuses everything but `Closed`.
    Closing,
    /// Done: the machine has emitted [`Action::End`] and takes no more events.
    Closed,
}

impl State {
    /// The state's name, as `stream.state` shows it.
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Probing => "probing",
            State::Holding => "holding",
            State::Switching => "switching",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }

    fn allows(self, to: State) -> bool {
        use State::{Closed, Closing, Connecting, Holding, Open, Probing, Switching};
        !matches!(
            (self, to),
            (Closed, _)
                | (Closing, Connecting | Open | Probing | Holding | Switching)
                | (Connecting, Probing | Holding | Switching)
                | (Probing, Switching)
                | (Holding, Probing | Connecting)
                | (Switching, Holding | Connecting)
                | (Open | Probing, Connecting)
        )
    }
}

/// A terminal failure: the stream ends with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// The server refused the key.
    Auth(String),
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The consumer closed the stream.
    User,
    /// The connection is gone; reconnect if the policy allows.
    Lost { reason: String, code: Option<u16> },
    /// The server announced a restart and `on_notice="immediate"` asked to reconnect now.
    Reconnect { reason: String },
    /// Deliver `Disconnected`, then end the stream with this.
    Terminal {
        reason: String,
        code: Option<u16>,
        fatal: Fatal,
    },
}

/// What the caller must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Send one text frame, flushed, within the write deadline.
    Send { to: Wire, text: String },
    /// Send our own ping.
    Ping { to: Wire },
    /// Write out what the connection owes the server (pongs queued by its reads).
    Flush { to: Wire },
    /// Hand a batch to the consumer.
    Deliver(Vec<Envelope>),
    /// The first frame after the opening request came: the connection counts as made.
    Established,
    /// Open the successor connection (same scope); report with
    /// [`Machine::on_successor_connected`] or [`Machine::on_successor_failed`]. `paced`: after
    /// the reconnect backoff's delay (a notice); a refresh is paced by its consumer instead.
    OpenSuccessor { paced: bool },
    /// The successor is now the primary; close the old one.
    Switch,
    /// Close this connection (close frame within the close deadline, then drop it).
    Close { which: Wire },
    /// The connection's life is over.
    End(End),
}

/// Counters the machine adds to, for the caller to move into the stream's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes: u64,
    pub messages: u64,
    pub parse_errors: u64,
    pub gaps: u64,
    pub duplicates: u64,
}

/// The machine's fixed settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Silence after which the connection counts as dead (`None`: never by this rule).
    pub heartbeat_timeout: Option<Duration>,
    /// Silence after which we ping; as long again without a frame and it is dead.
    pub ping_timeout: Option<Duration>,
    /// The longest from the opening request to the first frame.
    pub connect_timeout: Duration,
    pub on_notice: OnNotice,
    /// The most messages a hold keeps (and identities it remembers) before it must switch.
    pub hold_limit: usize,
    pub batch_size: usize,
    pub keep_raw: bool,
    /// The URL as shown in `Connected` (no secrets).
    pub shown_url: Box<str>,
    /// This connection's attempt number, for `Connected`.
    pub attempt: u32,
    /// Whether the server answers the opening request (CoinAPI with heartbeats, Moment's
    /// `success`). Without an answer to wait for, the connection counts as made at once.
    pub answer_expected: bool,
}

/// What a decoded frame asks of the connection.
enum After {
    Continue,
    Auth(String),
    ServerError(String),
    Notice { before_ns: i64 },
}

/// Per-connection parsing and sequence state.
struct Reader {
    decoder: Decoder,
    sequences: SequenceTracker,
    /// Moment order numbers, carried from connection to connection.
    msg_numbers: MsgNumberTracker,
    /// The `Gap.key` of the Moment order stream, made once rather than per message.
    orders_key: Key,
    keep_raw: bool,
    /// Book streams resynchronised by resubscribing: their sequence baselines restart at the
    /// next snapshot. Bound: one entry per resync in flight (the consumer's limiter paces them).
    rebase: Vec<(&'static str, Box<str>)>,
}

impl Reader {
    fn new(session: &Session, keep_raw: bool, msg_numbers: MsgNumberTracker) -> Self {
        Reader {
            decoder: session.decoder(),
            sequences: SequenceTracker::default(),
            msg_numbers,
            orders_key: Key::from("orders"),
            keep_raw,
            rebase: Vec::new(),
        }
    }

    /// The next snapshot of `(book_type, symbol_id)` starts its sequence afresh.
    fn rebase(&mut self, book_type: &'static str, symbol_id: &str) {
        if !self
            .rebase
            .iter()
            .any(|(t, s)| *t == book_type && &**s == symbol_id)
        {
            self.rebase.push((book_type, symbol_id.into()));
        }
    }

    fn check(&mut self, msg: &Msg) -> Option<(&'static str, Key, SeqCheck)> {
        if let Some((kind, key, seq)) = msg.sequence_key() {
            if !self.rebase.is_empty() && msg.is_book_snapshot() {
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
            return Some((o.kind.wire(), key, self.msg_numbers.check(o.msg_number)));
        }
        None
    }

    /// Decodes one data frame into `out` (a `Gap` before it, or nothing for a duplicate).
    fn on_data(
        &mut self,
        payload: &[u8],
        recv_ns: i64,
        session: &Session,
        counts: &mut Counts,
        out: &mut Vec<Envelope>,
    ) -> After {
        counts.bytes += payload.len() as u64;
        let raw = self.keep_raw.then(|| {
            String::from_utf8_lossy(payload)
                .into_owned()
                .into_boxed_str()
        });
        let msg = match self.decoder.decode(payload) {
            Ok(m) => m,
            Err(e) => {
                counts.parse_errors += 1;
                out.push(Envelope::event(
                    recv_ns,
                    Msg::ParseError {
                        reason: e.0.into(),
                        raw: crate::model::parse_error_raw(payload),
                        count: 1,
                    },
                ));
                return After::Continue;
            }
        };
        if let Some((kind, key, verdict)) = self.check(&msg) {
            match verdict {
                SeqCheck::First | SeqCheck::InOrder => {}
                SeqCheck::Gap { expected, received } => {
                    counts.gaps += 1;
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
                    counts.duplicates += 1;
                    return After::Continue;
                }
            }
        }
        let after = match (session.classify(&msg), &msg) {
            (Verdict::Deliver, _) => After::Continue,
            (Verdict::AuthFailed, Msg::Error(e)) => After::Auth(e.message.to_string()),
            (Verdict::ServerClosing, Msg::Error(e)) => After::ServerError(e.message.to_string()),
            (Verdict::ReconnectSoon, Msg::Reconnect(n)) => After::Notice {
                before_ns: n.before_time,
            },
            (Verdict::AuthFailed | Verdict::ServerClosing | Verdict::ReconnectSoon, _) => {
                After::Continue
            }
        };
        out.push(Envelope { recv_ns, raw, msg });
        after
    }
}

/// Identity of a message across connections: sequence numbers are per connection, so a
/// trade is known by its `uuid` and anything else by type, key and time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Identity {
    Trade(Box<str>),
    Other(&'static str, Key, i64, i64),
}

pub(super) fn identity(msg: &Msg) -> Option<Identity> {
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

/// The second connection of a make-before-break.
struct Successor {
    /// Connected and sent the opening request.
    ready: bool,
    reader: Reader,
    /// Its messages, until the switch; at most `hold_limit`.
    held: Vec<Envelope>,
    /// Identities the old connection delivered since the notice; at most `hold_limit`.
    seen: HashSet<Identity>,
    /// The successor carried a message the old one delivered: from there on it carries
    /// everything, so switching loses nothing.
    overlapped: bool,
    /// Book streams the old connection carried whose snapshot the successor has not sent
    /// yet: the switch waits for them (or the deadline), so a book restarts from the new
    /// connection's snapshot instead of being reset. Bounded by the book keys in scope.
    books_waiting: HashSet<(&'static str, Key)>,
    /// Book streams the successor has sent a snapshot for.
    books_ready: HashSet<(&'static str, Key)>,
    /// The old connection's last delivered message of each book stream since the notice.
    /// Bounded by the book keys in scope.
    book_last: HashMap<BookId, Identity>,
    /// Opened for a refresh rather than a notice: its failure is no reason for a later
    /// disconnect.
    refresh: bool,
    /// A reconnect notice the successor's own server sent while it was held: acted on once
    /// the successor is the primary, so that server's leaving is a make-before-break too.
    notice: bool,
    /// Notice + [`SWITCH_WITHIN`].
    deadline: Duration,
    last_frame: Duration,
    owe_pong: bool,
}

/// One connection's machine (and its successor's, during a make-before-break).
pub struct Machine {
    settings: Settings,
    session: Session,
    state: State,
    reader: Reader,
    opened_at: Duration,
    last_frame: Duration,
    /// When our unanswered ping went out.
    pinged_at: Option<Duration>,
    clock: Clock,
    batch: Vec<Envelope>,
    actions: VecDeque<Action>,
    owe_pong: bool,
    /// Set when the burst must stop: the connection ends with this after delivering.
    ending: Option<End>,
    switch_due: bool,
    successor: Option<Successor>,
    /// After a switch, identities the old connection delivered that the new one may repeat.
    filter: Option<HashSet<Identity>>,
    /// The new primary's own server announced its leaving while the switch was still
    /// dropping repeats: the next make-before-break starts once that is done.
    notice_pending: bool,
    /// After a switch, the book streams whose successor snapshot is not delivered yet.
    handover: Option<BookHandover>,
    /// Why a make-before-break could not be made: said in the `Disconnected` reason.
    fallback: Option<String>,
    counts: Counts,
}

impl Machine {
    /// A machine for a connection just opened at `now`: its first actions send the opening
    /// request.
    pub fn new(
        session: Session,
        settings: Settings,
        msg_numbers: MsgNumberTracker,
        now: Clock,
    ) -> Self {
        let reader = Reader::new(&session, settings.keep_raw, msg_numbers);
        let mut actions = VecDeque::new();
        for text in session.opening() {
            actions.push_back(Action::Send {
                to: Wire::Primary,
                text,
            });
        }
        let cap = settings.batch_size.clamp(1, 4096);
        let answer_expected = settings.answer_expected;
        let mut m = Machine {
            settings,
            session,
            state: State::Connecting,
            reader,
            opened_at: now.mono,
            last_frame: now.mono,
            pinged_at: None,
            clock: now,
            batch: Vec::with_capacity(cap),
            actions,
            owe_pong: false,
            ending: None,
            switch_due: false,
            successor: None,
            filter: None,
            notice_pending: false,
            handover: None,
            fallback: None,
            counts: Counts::default(),
        };
        if !answer_expected {
            m.establish(now);
            m.deliver();
        }
        m
    }

    /// Connecting → Open: the connection counts as made; `Connected` is its first event.
    fn establish(&mut self, now: Clock) {
        self.go(State::Open);
        self.actions.push_back(Action::Established);
        self.batch.push(Envelope::event(
            now.wall_ns,
            Msg::Connected {
                url: self.settings.shown_url.clone(),
                attempt: self.settings.attempt,
            },
        ));
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The session (its scope follows the consumer's subscribe/unsubscribe calls).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session and the Moment order numbers, for the next connection.
    pub fn into_parts(self) -> (Session, MsgNumberTracker) {
        (self.session, self.reader.msg_numbers)
    }

    /// The counters since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// The wall time of the latest clock reading the machine was given.
    pub fn wall_ns(&self) -> i64 {
        self.clock.wall_ns
    }

    /// The next action to perform.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the caller should be completing the successor's connection.
    pub fn wants_successor_connect(&self) -> bool {
        self.successor.as_ref().is_some_and(|s| !s.ready)
    }

    /// Whether the caller should read the successor: reading pauses once the hold is full
    /// (TCP backpressure on the new connection).
    pub fn wants_successor_read(&self) -> bool {
        self.successor
            .as_ref()
            .is_some_and(|s| s.ready && s.held.len() < self.settings.hold_limit)
    }

    /// When [`Machine::on_deadline`] must be called next if nothing else happens.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.state == State::Closed {
            return None;
        }
        let mut at: Option<Duration> = None;
        let mut keep = |d: Duration| at = Some(at.map_or(d, |a| a.min(d)));
        if self.state == State::Connecting {
            keep(self.opened_at + self.settings.connect_timeout);
        }
        if let Some(t) = self.settings.heartbeat_timeout {
            keep(self.last_frame + t);
        }
        if let Some(t) = self.settings.ping_timeout {
            // No ping before the first frame: `connect_timeout` covers that silence.
            if self.state != State::Connecting || self.pinged_at.is_some() {
                keep(self.pinged_at.unwrap_or(self.last_frame) + t);
            }
        }
        if let Some(s) = &self.successor {
            keep(s.deadline);
        }
        at
    }

    /// Makes a transition, unless it is one the current state refuses.
    fn go(&mut self, to: State) -> bool {
        if self.state.allows(to) {
            self.state = to;
            true
        } else {
            log::debug!("connection state {:?} refuses {:?}", self.state, to);
            false
        }
    }

    fn live(&self) -> bool {
        !matches!(self.state, State::Closing | State::Closed)
    }

    /// One frame of a burst. False when the burst should stop here (the batch is full, or
    /// the connection is ending or switching); then call [`Machine::end_burst`].
    pub fn on_frame(&mut self, wire: Wire, input: Input<'_>, now: Clock) -> bool {
        if !self.live() {
            return false;
        }
        self.clock = now;
        match wire {
            Wire::Primary => self.on_primary(input, now),
            Wire::Successor => {
                self.on_successor_frame(input, now);
                !self.switch_due
            }
        }
    }

    fn on_primary(&mut self, input: Input<'_>, now: Clock) -> bool {
        self.last_frame = now.mono;
        if self.pinged_at.take().is_some() && self.state == State::Probing {
            self.go(State::Open);
        }
        if self.state == State::Connecting {
            self.establish(now);
        }
        match input {
            Input::Data(payload) => {
                let from = self.batch.len();
                let after = self.reader.on_data(
                    payload,
                    now.wall_ns,
                    &self.session,
                    &mut self.counts,
                    &mut self.batch,
                );
                if self.filter.is_some() {
                    self.drop_repeats(from);
                }
                if self.handover.is_some() {
                    self.hand_over_books(from);
                }
                if self.successor.is_some() {
                    self.remember(from);
                }
                match after {
                    After::Continue => {}
                    After::Auth(message) => {
                        self.ending = Some(End::Terminal {
                            reason: format!("server error: {message}"),
                            code: None,
                            fatal: Fatal::Auth(format!("the server refused the key: {message}")),
                        });
                    }
                    After::ServerError(message) => {
                        self.ending = Some(End::Lost {
                            reason: format!("server error: {message}"),
                            code: None,
                        });
                    }
                    After::Notice { before_ns } => self.on_notice(before_ns, now),
                }
            }
            Input::Ping => self.owe_pong = true,
            Input::Pong => {}
            Input::Close { code, reason } => {
                self.owe_pong = true;
                let reason = if reason.is_empty() {
                    "server closed the connection".to_string()
                } else {
                    format!("server closed the connection: {reason}")
                };
                self.primary_gone(reason, code);
            }
        }
        self.ending.is_none() && !self.switch_due && self.batch.len() < self.settings.batch_size
    }

    /// After a switch, drops what the new connection repeats of the old one's deliveries,
    /// until it carries something new.
    fn drop_repeats(&mut self, from: usize) {
        let Some(filter) = &self.filter else { return };
        let mut kept = from;
        let mut passed = false;
        for i in from..self.batch.len() {
            // Book streams are handed over on their own (`BookHandover`).
            let book = book_stream(&self.batch[i].msg).is_some();
            let repeat = !passed
                && !book
                && identity(&self.batch[i].msg).is_some_and(|id| {
                    let seen = filter.contains(&id);
                    passed = !seen;
                    seen
                });
            if repeat {
                self.counts.duplicates += 1;
            } else {
                self.batch.swap(kept, i);
                kept += 1;
            }
        }
        self.batch.truncate(kept);
        if passed {
            self.filter = None;
            if self.state == State::Switching {
                self.go(State::Open);
                if std::mem::take(&mut self.notice_pending) {
                    self.on_notice(0, self.clock);
                }
            }
        }
    }

    /// After a switch, passes the new connection's messages from `from` on through the book
    /// hand-over.
    fn hand_over_books(&mut self, from: usize) {
        let Some(h) = self.handover.as_mut() else {
            return;
        };
        let fresh: Vec<Envelope> = self.batch.drain(from..).collect();
        let before = h.dropped;
        for e in fresh {
            h.pass(e, &mut self.batch);
        }
        self.counts.duplicates += h.dropped - before;
        if h.expired() {
            h.finish(&mut self.batch);
        }
        if h.is_done() {
            self.handover = None;
        }
    }

    /// Notes what the old connection delivered, for the switch's overlap.
    fn remember(&mut self, from: usize) {
        let limit = self.settings.hold_limit;
        let Some(s) = self.successor.as_mut() else {
            return;
        };
        for e in &self.batch[from..] {
            if let Some(id) = identity(&e.msg) {
                s.seen.insert(id);
            }
            if let Some((book, _)) = book_stream(&e.msg) {
                if let Some(id) = identity(&e.msg) {
                    s.book_last.insert(book.clone(), id);
                }
                if !s.books_ready.contains(&book) {
                    s.books_waiting.insert(book);
                }
            }
        }
        if s.seen.len() >= limit {
            // The hold's memory is spent: switch now, or give up on the make-before-break.
            self.switch_or_fall_back("the hold reached queue_size before the successor caught up");
        }
    }

    /// `_before_ns` is when the server says it will leave; the deadline does not follow it.
    fn on_notice(&mut self, _before_ns: i64, now: Clock) {
        match self.settings.on_notice {
            OnNotice::WaitForClose => {}
            OnNotice::Immediate => {
                self.ending = Some(End::Reconnect {
                    reason: "the server announced a reconnect (on_notice=immediate)".into(),
                });
            }
            OnNotice::MakeBeforeBreak => {
                if self.state == State::Switching {
                    // The new primary is still dropping what repeats the old one: the notice
                    // is acted on once it has passed it (one successor at a time).
                    self.notice_pending = true;
                    return;
                }
                if self.successor.is_some() || !matches!(self.state, State::Open | State::Probing) {
                    return;
                }
                // The switch comes once the successor catches up, or at notice + SWITCH_WITHIN
                // whatever before_time says: a `before_time` that is already due (CoinAPI
                // gives it to the second) must not fail a successor still dialling; a server
                // that leaves at before_time closes, and a ready successor takes over then.
                self.open_successor(now, false);
            }
        }
    }

    /// Opens the successor (make-before-break); the switch comes once it has caught up, or
    /// at `now` + [`SWITCH_WITHIN`] at the latest.
    fn open_successor(&mut self, now: Clock, refresh: bool) {
        let deadline = now.mono + SWITCH_WITHIN;
        self.pinged_at = None;
        self.go(State::Holding);
        self.successor = Some(Successor {
            ready: false,
            reader: Reader::new(
                &self.session,
                self.settings.keep_raw,
                self.reader.msg_numbers.clone(),
            ),
            held: Vec::new(),
            seen: HashSet::new(),
            overlapped: false,
            books_waiting: HashSet::new(),
            books_ready: HashSet::new(),
            book_last: HashMap::new(),
            refresh,
            notice: false,
            deadline,
            last_frame: now.mono,
            owe_pong: false,
        });
        self.actions
            .push_back(Action::OpenSuccessor { paced: !refresh });
    }

    /// The primary closed or broke: a ready successor takes over, otherwise the connection
    /// is lost (saying why a make-before-break did not happen).
    fn primary_gone(&mut self, reason: String, code: Option<u16>) {
        if self.successor.as_ref().is_some_and(|s| s.ready) {
            self.switch_due = true;
            return;
        }
        if self.successor.take().is_some() {
            self.fallback =
                Some("make-before-break connection not ready when the old one closed".into());
            self.actions.push_back(Action::Close {
                which: Wire::Successor,
            });
        }
        let reason = match self.fallback.take() {
            Some(f) => format!("{reason}; {f}; waited for close"),
            None => reason,
        };
        self.ending.get_or_insert(End::Lost { reason, code });
    }

    /// Switches if the successor is ready; otherwise gives the make-before-break up (the
    /// old connection is then read to its close). The fallback reason is made here only.
    fn switch_or_fall_back(&mut self, why: &str) {
        match self.successor.as_ref() {
            Some(s) if s.ready => self.switch_due = true,
            Some(_) => {
                let refresh = self.successor.take().is_some_and(|s| s.refresh);
                self.note_fallback(refresh, format!("make-before-break gave up ({why})"));
                self.actions.push_back(Action::Close {
                    which: Wire::Successor,
                });
                self.go(State::Open);
            }
            None => {}
        }
    }

    /// Keeps why a make-before-break failed for the disconnect that may follow; a refresh's
    /// failure only logs (the old connection is not leaving, and the refresh is retried).
    fn note_fallback(&mut self, refresh: bool, why: String) {
        if refresh {
            log::warn!("book refresh through a new connection failed: {why}");
        } else {
            self.fallback = Some(why);
        }
    }

    fn successor_failed(&mut self, why: String) {
        let Some(s) = self.successor.take() else {
            return;
        };
        log::warn!("make-before-break connection failed: {why}");
        self.note_fallback(
            s.refresh,
            format!("make-before-break connection failed ({why})"),
        );
        self.actions.push_back(Action::Close {
            which: Wire::Successor,
        });
        self.go(State::Open);
    }

    fn on_successor_frame(&mut self, input: Input<'_>, now: Clock) {
        let Some(s) = self.successor.as_mut() else {
            return;
        };
        s.last_frame = now.mono;
        match input {
            Input::Data(payload) => {
                let from = s.held.len();
                // A notice or error on the successor is delivered after the switch. An error
                // does not act here (the new connection's own close is handled as a loss); a
                // notice is acted on right after the switch.
                let after = s.reader.on_data(
                    payload,
                    now.wall_ns,
                    &self.session,
                    &mut self.counts,
                    &mut s.held,
                );
                if matches!(after, After::Notice { .. }) {
                    s.notice = true;
                }
                for e in &s.held[from..] {
                    if let Some((book, true)) = book_stream(&e.msg) {
                        s.books_waiting.remove(&book);
                        s.books_ready.insert(book);
                    }
                }
                if !s.overlapped {
                    // A book snapshot is the new connection's own state, not part of the shared
                    // live stream: it may carry the time of an update the old one delivered,
                    // and switching on it would cut off the snapshots still to come.
                    s.overlapped = s.held[from..].iter().any(|e| {
                        !e.msg.is_book_snapshot()
                            && identity(&e.msg).is_some_and(|id| s.seen.contains(&id))
                    });
                }
                if s.overlapped && s.books_waiting.is_empty() {
                    self.switch_due = true;
                } else if s.held.len() >= self.settings.hold_limit {
                    self.switch_or_fall_back(
                        "the hold reached queue_size before the successor caught up",
                    );
                }
            }
            Input::Ping => s.owe_pong = true,
            Input::Pong => {}
            Input::Close { reason, .. } => {
                self.successor_failed(format!("closed: {reason}"));
            }
        }
    }

    /// Ends a burst: flushes owed pongs, makes a due switch, delivers the batch, and ends
    /// the connection if it must.
    pub fn end_burst(&mut self, now: Clock) {
        self.clock = now;
        if self.owe_pong {
            self.owe_pong = false;
            self.actions.push_back(Action::Flush { to: Wire::Primary });
        }
        if let Some(s) = self.successor.as_mut() {
            if std::mem::take(&mut s.owe_pong) {
                self.actions.push_back(Action::Flush {
                    to: Wire::Successor,
                });
            }
        }
        if self.switch_due {
            self.switch_due = false;
            self.switch(now);
            // The old connection's end (if that was the cause) is the switch itself.
            if matches!(self.ending, Some(End::Lost { .. })) {
                self.ending = None;
            }
        }
        self.deliver();
        if let Some(end) = self.ending.take() {
            self.finish(end);
        }
    }

    fn deliver(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let cap = self.settings.batch_size.clamp(1, 4096);
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(cap));
        self.counts.messages += batch.iter().filter(|e| e.msg.is_data()).count() as u64;
        self.actions.push_back(Action::Deliver(batch));
    }

    /// Ends the connection: close what is open, then `End`. The only way to `Closed`.
    fn finish(&mut self, end: End) {
        if !self.live() {
            return;
        }
        self.go(State::Closing);
        if self.successor.take().is_some() {
            self.actions.push_back(Action::Close {
                which: Wire::Successor,
            });
        }
        // A lost connection is closed too: its socket is freed within the close deadline.
        self.actions.push_back(Action::Close {
            which: Wire::Primary,
        });
        self.go(State::Closed);
        self.actions.push_back(Action::End(end));
    }

    /// The switch: held messages minus the overlap with what the old connection delivered,
    /// after a `Switched` event. Made here only. A book (`book`, `book_l3`) restarts from the
    /// new connection's snapshot, advanced past what the old connection delivered of it
    /// ([`BookHandover`]): no book update is delivered twice or lost.
    fn switch(&mut self, now: Clock) {
        let Some(s) = self.successor.take() else {
            return;
        };
        let Successor {
            reader,
            held,
            seen,
            last_frame,
            books_waiting,
            books_ready,
            mut book_last,
            notice,
            ..
        } = s;
        let held_count = held.len() as u64;
        let mut overlap = 0u64;
        let at = self.batch.len();
        self.batch.push(Envelope::event(
            now.wall_ns,
            Msg::Switched {
                held: held_count,
                overlap_dropped: 0,
            },
        ));
        // Every book stream either connection carried since the notice.
        let streams: HashSet<BookId> = books_waiting
            .into_iter()
            .chain(books_ready)
            .chain(
                held.iter()
                    .filter_map(|e| book_stream(&e.msg).map(|(id, _)| id)),
            )
            .chain(book_last.keys().cloned())
            .collect();
        let mut books = BookHandover::new(
            streams.into_iter().map(|id| {
                let last = book_last.remove(&id);
                (id, last)
            }),
            &seen,
            self.settings.hold_limit,
        );
        let mut passed = false;
        for e in held {
            let book_gap =
                matches!(&e.msg, Msg::Gap(g) if matches!(g.msg_type, "book" | "book_l3"));
            if book_gap || book_stream(&e.msg).is_some() {
                books.pass(e, &mut self.batch);
                continue;
            }
            if matches!(e.msg, Msg::Heartbeat) {
                overlap += 1;
                continue;
            }
            match identity(&e.msg) {
                Some(id) if !passed && seen.contains(&id) => {
                    overlap += 1;
                    continue;
                }
                Some(_) => passed = true,
                None => {}
            }
            self.batch.push(e);
        }
        overlap += books.dropped;
        books.dropped = 0;
        if let Some(Envelope {
            msg: Msg::Switched {
                overlap_dropped, ..
            },
            ..
        }) = self.batch.get_mut(at)
        {
            *overlap_dropped = overlap;
        }
        log::info!("make-before-break switch: held {held_count}, {overlap} dropped as overlap");
        self.handover = (!books.is_done()).then_some(books);
        let msg_numbers = std::mem::take(&mut self.reader.msg_numbers);
        self.reader = reader;
        self.reader.msg_numbers = msg_numbers;
        self.last_frame = last_frame.max(self.last_frame);
        self.pinged_at = None;
        self.fallback = None;
        self.actions.push_back(Action::Switch);
        // Book streams are handed over on their own: the filter keeps the other identities.
        let rest: HashSet<Identity> = if passed {
            HashSet::new()
        } else {
            seen.into_iter()
                .filter(|i| !matches!(i, Identity::Other("book" | "book_l3", ..)))
                .collect()
        };
        if rest.is_empty() {
            self.go(State::Open);
        } else {
            // The new connection has not yet passed the old one: keep dropping its repeats.
            self.filter = Some(rest);
            self.go(State::Switching);
        }
        if notice {
            self.on_notice(0, now);
        }
    }

    /// The primary's read failed (no close frame, protocol violation, oversize frame).
    pub fn on_read_error(&mut self, wire: Wire, reason: &str, code: Option<u16>, now: Clock) {
        if !self.live() {
            return;
        }
        self.clock = now;
        match wire {
            Wire::Primary => self.primary_gone(reason.to_string(), code),
            Wire::Successor => self.successor_failed(reason.to_string()),
        }
    }

    /// A write (send, ping, flush) failed or missed its deadline: the peer is not reading.
    pub fn on_write_error(&mut self, wire: Wire, reason: &str, now: Clock) {
        if !self.live() {
            return;
        }
        self.clock = now;
        match wire {
            Wire::Primary => {
                self.primary_gone(format!("write failed: {reason}"), None);
                self.end_burst(now);
            }
            Wire::Successor => self.successor_failed(format!("write failed: {reason}")),
        }
    }

    /// The successor connected; its opening request goes out.
    pub fn on_successor_connected(&mut self, now: Clock) {
        self.clock = now;
        let Some(s) = self.successor.as_mut() else {
            // The hold was given up meanwhile: the new connection is not wanted.
            self.actions.push_back(Action::Close {
                which: Wire::Successor,
            });
            return;
        };
        s.ready = true;
        s.last_frame = now.mono;
        for text in self.session.opening() {
            self.actions.push_back(Action::Send {
                to: Wire::Successor,
                text,
            });
        }
    }

    /// The successor could not be opened.
    pub fn on_successor_failed(&mut self, reason: &str, now: Clock) {
        self.clock = now;
        log::warn!("make-before-break connection refused: {reason}");
        if let Some(s) = self.successor.take() {
            self.note_fallback(s.refresh, format!("make-before-break refused ({reason})"));
            self.go(State::Open);
        }
    }

    /// Time passed: whatever deadline is due acts.
    pub fn on_deadline(&mut self, now: Clock) {
        if !self.live() {
            return;
        }
        self.clock = now;
        let t = now.mono;
        if self.state == State::Connecting && t >= self.opened_at + self.settings.connect_timeout {
            self.ending = Some(End::Lost {
                reason: format!(
                    "no answer to the opening request within {:.1} s",
                    self.settings.connect_timeout.as_secs_f64()
                ),
                code: None,
            });
        }
        if self.successor.as_ref().is_some_and(|s| t >= s.deadline) {
            self.switch_or_fall_back("the successor was not ready by notice + 5 s");
        }
        let silence = t.saturating_sub(self.last_frame);
        let dead = self
            .settings
            .heartbeat_timeout
            .is_some_and(|h| silence >= h)
            || match (self.settings.ping_timeout, self.pinged_at) {
                (Some(p), Some(sent)) => t >= sent + p,
                _ => false,
            };
        if dead && self.ending.is_none() {
            let silence_s = silence.as_secs_f64();
            self.batch
                .push(Envelope::event(now.wall_ns, Msg::Stale { silence_s }));
            // A silent old connection during a hold hands over to a ready successor.
            if self.successor.as_ref().is_some_and(|s| s.ready) {
                self.switch_due = true;
            } else {
                self.primary_gone(format!("no frame for {silence_s:.1} s"), None);
            }
        } else if let (Some(p), None) = (self.settings.ping_timeout, self.pinged_at) {
            if silence >= p && self.ending.is_none() && self.state != State::Connecting {
                self.pinged_at = Some(t);
                if self.state == State::Open {
                    self.go(State::Probing);
                }
                self.actions.push_back(Action::Ping { to: Wire::Primary });
            }
        }
        self.end_burst(now);
    }

    /// A consumer request.
    pub fn on_request(&mut self, req: Request, now: Clock) {
        if !self.live() {
            return;
        }
        self.clock = now;
        let texts = match req {
            Request::Close => {
                self.deliver();
                self.finish(End::User);
                return;
            }
            Request::Refresh => {
                if self.successor.is_none() && self.state == State::Open {
                    self.open_successor(now, true);
                } else {
                    log::debug!("book refresh not started: {:?}", self.state);
                }
                return;
            }
            Request::Subscribe(s) => self.session.apply(&s, true),
            Request::Unsubscribe(s) => self.session.apply(&s, false),
            Request::Resync {
                symbol_id,
                book_type,
            } => {
                self.reader.rebase(book_type, &symbol_id);
                let one = ScopeChange::CoinApi(crate::protocol::coinapi::Scope {
                    symbols: vec![format!("{symbol_id}$")],
                    ..Default::default()
                });
                self.session.apply(&one, false).and_then(|mut out| {
                    out.extend(self.session.apply(&one, true)?);
                    Ok(out)
                })
            }
        };
        for text in texts.unwrap_or_default() {
            if self.successor.as_ref().is_some_and(|s| s.ready) {
                // The successor must carry the same scope when it takes over.
                self.actions.push_back(Action::Send {
                    to: Wire::Successor,
                    text: text.clone(),
                });
            }
            self.actions.push_back(Action::Send {
                to: Wire::Primary,
                text,
            });
        }
    }

    /// The consumer is gone (the queue was closed): end without delivering more.
    pub fn on_consumer_gone(&mut self) {
        self.batch.clear();
        self.finish(End::User);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::coinapi::{CoinApiSession, Scope};

    /// 2030-01-01T00:00:00Z, the wall clock at mono 0.
    const BASE_NS: i64 = 1_893_456_000 * 1_000_000_000;

    fn at(ms: u64) -> Clock {
        Clock {
            mono: Duration::from_millis(ms),
            wall_ns: BASE_NS + i64::try_from(ms).unwrap() * 1_000_000,
        }
    }

    fn settings(on_notice: OnNotice) -> Settings {
        Settings {
            heartbeat_timeout: Some(Duration::from_secs(3)),
            ping_timeout: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(10),
            on_notice,
            hold_limit: 1000,
            batch_size: 1024,
            keep_raw: false,
            shown_url: "ws://127.0.0.1:1/v1/".into(),
            attempt: 0,
            answer_expected: true,
        }
    }

    fn machine(s: Settings) -> Machine {
        let session = Session::CoinApi(CoinApiSession::new(Scope {
            data_types: vec!["trade".into()],
            heartbeat: true,
            ..Scope::default()
        }));
        Machine::new(session, s, MsgNumberTracker::default(), at(0))
    }

    fn trade(n: u64) -> String {
        format!(
            r#"{{"type":"trade","symbol_id":"S","sequence":{n},"time_exchange":"2030-01-01T00:00:00.0000000Z","time_coinapi":"2030-01-01T00:00:00.0000000Z","uuid":"u{n}","price":1.0,"size":1.0,"taker_side":"BUY"}}"#
        )
    }

    const HEARTBEAT: &str = r#"{"type":"hearbeat"}"#;

    /// A notice whose `before_time` is `secs` after BASE.
    fn notice(secs: u64) -> String {
        let t = 1_893_456_000 + secs;
        let (h, m, s) = (t % 86_400 / 3600, t % 3600 / 60, t % 60);
        let day = 1 + (t - 1_893_456_000) / 86_400;
        format!(
            r#"{{"type":"reconnect","within_seconds":{secs},"before_time":"2030-01-{day:02}T{h:02}:{m:02}:{s:02}.0000000Z"}}"#
        )
    }

    fn drain(m: &mut Machine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll()).collect()
    }

    /// Feeds one burst of data frames on `wire` and returns the actions.
    fn burst(m: &mut Machine, wire: Wire, frames: &[String], ms: u64) -> Vec<Action> {
        for f in frames {
            if !m.on_frame(wire, Input::Data(f.as_bytes()), at(ms)) {
                break;
            }
        }
        m.end_burst(at(ms));
        drain(m)
    }

    fn delivered(actions: &[Action]) -> Vec<&Msg> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deliver(b) => Some(b.iter().map(|e| &e.msg)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn trades(actions: &[Action]) -> Vec<String> {
        delivered(actions)
            .into_iter()
            .filter_map(|m| match m {
                Msg::Trade(t) => Some(t.uuid.to_string()),
                _ => None,
            })
            .collect()
    }

    fn ended(actions: &[Action]) -> Option<&End> {
        actions.iter().find_map(|a| match a {
            Action::End(e) => Some(e),
            _ => None,
        })
    }

    fn lost_reason(actions: &[Action]) -> String {
        match ended(actions) {
            Some(End::Lost { reason, .. }) => reason.clone(),
            other => panic!("not lost: {other:?}"),
        }
    }

    fn trades_of(ns: std::ops::RangeInclusive<u64>) -> Vec<String> {
        ns.map(trade).collect()
    }

    fn uuids(ns: std::ops::RangeInclusive<u64>) -> Vec<String> {
        ns.map(|n| format!("u{n}")).collect()
    }

    /// Open, with the notice delivered at 1 s and the successor connected at 1.1 s.
    fn holding(on_notice: OnNotice, before_s: u64) -> Machine {
        let mut m = machine(settings(on_notice));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[HEARTBEAT.into()], 0);
        let a = burst(&mut m, Wire::Primary, &[notice(before_s)], 1000);
        assert!(a.iter().any(|a| matches!(a, Action::OpenSuccessor { .. })));
        assert_eq!(m.state(), State::Holding);
        m.on_successor_connected(at(1100));
        let a = drain(&mut m);
        assert!(matches!(
            a.as_slice(),
            [Action::Send {
                to: Wire::Successor,
                ..
            }]
        ));
        m
    }

    #[test]
    fn the_first_frame_makes_the_connection_and_connected_comes_first() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        assert_eq!(m.state(), State::Connecting);
        let a = drain(&mut m);
        assert!(
            matches!(a.as_slice(), [Action::Send { to: Wire::Primary, text }] if text.contains("hello"))
        );
        let a = burst(&mut m, Wire::Primary, &[trade(1)], 5);
        assert!(matches!(a[0], Action::Established));
        let msgs = delivered(&a);
        assert!(matches!(msgs[0], Msg::Connected { attempt: 0, .. }));
        assert!(matches!(msgs[1], Msg::Trade(_)));
        assert_eq!(m.state(), State::Open);
        assert_eq!(m.take_counts().messages, 1);
    }

    #[test]
    fn no_answer_to_the_opening_fails_the_attempt_at_connect_timeout() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        // The heartbeat deadline (3 s) comes first: silence before any frame is a dead attempt.
        let mut s = settings(OnNotice::WaitForClose);
        s.heartbeat_timeout = None;
        let mut m2 = machine(s);
        drain(&mut m2);
        assert_eq!(m2.next_deadline(), Some(Duration::from_secs(10)));
        m2.on_deadline(at(10_000));
        let a = drain(&mut m2);
        assert!(lost_reason(&a).contains("no answer to the opening request"));
        assert_eq!(m2.state(), State::Closed);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_session_without_an_answer_counts_as_made_at_once() {
        let mut s = settings(OnNotice::WaitForClose);
        s.answer_expected = false;
        s.heartbeat_timeout = None;
        let mut m = machine(s);
        let a = drain(&mut m);
        assert!(matches!(
            a.as_slice(),
            [Action::Send { .. }, Action::Established, Action::Deliver(b)]
                if matches!(b[0].msg, Msg::Connected { .. })
        ));
        assert_eq!(m.state(), State::Open);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(10)), "the ping");
    }

    #[test]
    fn a_stalled_server_is_stale_at_the_heartbeat_deadline_exactly() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[trade(1)], 1000);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(4)));
        m.on_deadline(at(3999));
        assert!(drain(&mut m).is_empty(), "not yet");
        m.on_deadline(at(4000));
        let a = drain(&mut m);
        assert!(
            matches!(delivered(&a)[..], [Msg::Stale { silence_s }] if (*silence_s - 3.0).abs() < 1e-9)
        );
        assert_eq!(lost_reason(&a), "no frame for 3.0 s");
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Close {
                which: Wire::Primary
            }
        )));
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn a_silent_peer_is_pinged_then_declared_dead() {
        let mut s = settings(OnNotice::WaitForClose);
        s.heartbeat_timeout = None;
        let mut m = machine(s);
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[trade(1)], 0);
        m.on_deadline(at(10_000));
        assert!(matches!(
            drain(&mut m)[..],
            [Action::Ping { to: Wire::Primary }]
        ));
        assert_eq!(m.state(), State::Probing);
        // Any frame answers: a pong brings it back.
        m.on_frame(Wire::Primary, Input::Pong, at(12_000));
        m.end_burst(at(12_000));
        assert_eq!(m.state(), State::Open);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(22)));
        m.on_deadline(at(22_000));
        assert!(matches!(drain(&mut m)[..], [Action::Ping { .. }]));
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(32)));
        m.on_deadline(at(32_000));
        let a = drain(&mut m);
        assert_eq!(lost_reason(&a), "no frame for 20.0 s");
    }

    #[test]
    fn pings_are_answered_with_a_flush_after_the_burst() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        for _ in 0..3 {
            m.on_frame(Wire::Primary, Input::Ping, at(1));
        }
        m.end_burst(at(1));
        let a = drain(&mut m);
        let flushes = a
            .iter()
            .filter(|a| matches!(a, Action::Flush { to: Wire::Primary }))
            .count();
        assert_eq!(flushes, 1, "one flush per burst, however many pings");
    }

    #[test]
    fn a_peer_that_stops_reading_ends_the_connection() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[trade(1)], 0);
        m.on_write_error(
            Wire::Primary,
            "the server read nothing for 10.0 s",
            at(10_000),
        );
        let a = drain(&mut m);
        assert!(lost_reason(&a).starts_with("write failed: the server read nothing"));
        assert_eq!(m.state(), State::Closed);
    }

    #[test]
    fn an_abrupt_close_and_a_close_frame_are_losses() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[trade(1)], 0);
        m.on_read_error(Wire::Primary, "connection closed", None, at(5));
        m.end_burst(at(5));
        assert_eq!(lost_reason(&drain(&mut m)), "connection closed");

        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        m.on_frame(
            Wire::Primary,
            Input::Close {
                code: Some(1001),
                reason: "bye",
            },
            at(1),
        );
        m.end_burst(at(1));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::Flush { .. })));
        assert!(
            matches!(ended(&a), Some(End::Lost { code: Some(1001), reason }) if reason.ends_with("bye"))
        );
    }

    #[test]
    fn a_notice_under_immediate_reconnects_after_delivering_it() {
        let mut m = machine(settings(OnNotice::Immediate));
        drain(&mut m);
        let a = burst(&mut m, Wire::Primary, &[trade(1), notice(10), trade(2)], 0);
        let msgs = delivered(&a);
        assert!(
            matches!(msgs.last(), Some(Msg::Reconnect(_))),
            "the burst stops at the notice"
        );
        assert!(matches!(ended(&a), Some(End::Reconnect { .. })));
    }

    #[test]
    fn a_notice_under_wait_for_close_changes_nothing_until_the_close() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        let a = burst(&mut m, Wire::Primary, &[notice(10), trade(1)], 0);
        assert_eq!(trades(&a), ["u1"]);
        assert_eq!(m.state(), State::Open);
        assert!(!a.iter().any(|a| matches!(a, Action::OpenSuccessor { .. })));
    }

    #[test]
    fn make_before_break_switches_once_the_successor_overlaps_without_loss_or_repeat() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        let mut all = Vec::new();
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(1..=5),
            1200,
        )));
        // The successor starts at 4: it overlaps the old connection at once, and the switch
        // is made at that first overlapping message (the rest is read as the new primary).
        let a = burst(&mut m, Wire::Successor, &trades_of(4..=7), 1300);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        let switched = delivered(&a)
            .into_iter()
            .find_map(|m| match m {
                Msg::Switched {
                    held,
                    overlap_dropped,
                } => Some((*held, *overlap_dropped)),
                _ => None,
            })
            .unwrap();
        assert_eq!(switched, (1, 1));
        all.extend(trades(&a));
        assert_eq!(m.state(), State::Switching);
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(5..=9),
            1400,
        )));
        assert_eq!(m.state(), State::Open);
        assert_eq!(all, uuids(1..=9));
    }

    /// A server that sends a notice on every connection: the notice the successor got while
    /// held is acted on after the switch, so its server's leaving is a make-before-break too
    /// (once ignored, that connection's close was a loss and a plain reconnect).
    #[test]
    fn a_notice_the_successor_got_while_held_opens_the_next_successor_after_the_switch() {
        let opens = |a: &[Action]| a.iter().any(|a| matches!(a, Action::OpenSuccessor { .. }));
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        let mut all = trades(&burst(&mut m, Wire::Primary, &trades_of(1..=3), 1200));
        let mut frames = vec![notice(20)];
        frames.extend(trades_of(3..=5));
        let a = burst(&mut m, Wire::Successor, &frames, 1300);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        all.extend(trades(&a));
        // The new primary has not passed the old one yet: one successor at a time.
        assert_eq!(m.state(), State::Switching);
        assert!(!opens(&a));
        let a = burst(&mut m, Wire::Primary, &trades_of(4..=5), 1350);
        assert!(
            opens(&a),
            "the successor's own notice opens the next one: {a:?}"
        );
        assert_eq!(m.state(), State::Holding);
        all.extend(trades(&a));
        m.on_successor_connected(at(1400));
        drain(&mut m);
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(6..=8),
            1500,
        )));
        let a = burst(&mut m, Wire::Successor, &trades_of(7..=10), 1600);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        all.extend(trades(&a));
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(8..=10),
            1700,
        )));
        assert_eq!(m.state(), State::Open);
        assert_eq!(all, uuids(1..=10));
    }

    #[test]
    fn a_successor_slower_than_the_old_connection_has_its_repeats_dropped_after_the_switch() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        let mut all = trades(&burst(&mut m, Wire::Primary, &trades_of(1..=10), 1200));
        let a = burst(&mut m, Wire::Successor, &trades_of(2..=3), 1300);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        assert_eq!(m.state(), State::Switching);
        all.extend(trades(&a));
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(4..=12),
            1400,
        )));
        assert_eq!(m.state(), State::Open);
        assert_eq!(all, uuids(1..=12));
    }

    #[test]
    fn a_notice_an_hour_ahead_still_switches_at_notice_plus_five_seconds() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 3600);
        // A quiet market: heartbeats only, so there is nothing to overlap.
        burst(&mut m, Wire::Successor, &[HEARTBEAT.into()], 2000);
        burst(&mut m, Wire::Primary, &[HEARTBEAT.into()], 2500);
        burst(&mut m, Wire::Primary, &[HEARTBEAT.into()], 4000);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(6)));
        m.on_deadline(at(5999));
        assert!(!drain(&mut m).iter().any(|a| matches!(a, Action::Switch)));
        m.on_deadline(at(6000));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        // Nothing was delivered since the notice: nothing to filter, so open at once.
        assert_eq!(m.state(), State::Open);
        assert_eq!(
            m.next_deadline(),
            Some(Duration::from_secs(7)),
            "heartbeat deadline"
        );
    }

    #[test]
    fn a_successor_not_ready_by_the_deadline_falls_back_to_waiting_for_the_close() {
        let mut m = machine(settings(OnNotice::MakeBeforeBreak));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[notice(3600)], 1000);
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[HEARTBEAT.into()], 3000);
        burst(&mut m, Wire::Primary, &[HEARTBEAT.into()], 5500);
        m.on_deadline(at(6000));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Close {
                which: Wire::Successor
            }
        )));
        assert_eq!(m.state(), State::Open);
        assert!(!m.wants_successor_connect());
        m.on_read_error(Wire::Primary, "connection closed", None, at(7000));
        m.end_burst(at(7000));
        let reason = lost_reason(&drain(&mut m));
        assert_eq!(
            reason,
            "connection closed; make-before-break gave up (the successor was not ready by \
             notice + 5 s); waited for close"
        );
    }

    #[test]
    fn a_refused_successor_is_said_in_the_disconnect_reason() {
        let mut m = machine(settings(OnNotice::MakeBeforeBreak));
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[notice(10)], 0);
        drain(&mut m);
        m.on_successor_failed("connection refused", at(100));
        assert_eq!(m.state(), State::Open);
        assert_eq!(m.next_deadline(), Some(Duration::from_secs(3)));
        m.on_frame(
            Wire::Primary,
            Input::Close {
                code: None,
                reason: "",
            },
            at(200),
        );
        m.end_burst(at(200));
        assert_eq!(
            lost_reason(&drain(&mut m)),
            "server closed the connection; make-before-break refused (connection refused); \
             waited for close"
        );
    }

    #[test]
    fn the_old_connection_closing_hands_over_to_a_ready_successor() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        let mut all = trades(&burst(&mut m, Wire::Primary, &trades_of(1..=3), 1200));
        burst(&mut m, Wire::Successor, &[HEARTBEAT.into()], 1250);
        m.on_read_error(Wire::Primary, "connection closed", None, at(1300));
        m.end_burst(at(1300));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));
        assert!(
            ended(&a).is_none(),
            "no Disconnected: the successor took over"
        );
        all.extend(trades(&burst(
            &mut m,
            Wire::Primary,
            &trades_of(2..=5),
            1400,
        )));
        assert_eq!(all, uuids(1..=5));
    }

    #[test]
    fn the_hold_is_bounded_by_queue_size() {
        let mut s = settings(OnNotice::MakeBeforeBreak);
        s.hold_limit = 4;
        let mut m = machine(s);
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[notice(3600)], 0);
        drain(&mut m);
        m.on_successor_connected(at(10));
        drain(&mut m);
        // The successor is ahead of the old connection and never overlaps: its hold fills.
        burst(&mut m, Wire::Successor, &trades_of(100..=102), 20);
        assert!(m.wants_successor_read());
        let a = burst(&mut m, Wire::Successor, &trades_of(103..=103), 30);
        assert!(!m.wants_successor_read() || a.iter().any(|a| matches!(a, Action::Switch)));
        assert!(a.iter().any(|a| matches!(a, Action::Switch)));

        // The old connection's remembered identities are bounded too.
        let mut s = settings(OnNotice::MakeBeforeBreak);
        s.hold_limit = 4;
        let mut m = machine(s);
        drain(&mut m);
        burst(&mut m, Wire::Primary, &[notice(3600)], 0);
        drain(&mut m);
        let a = burst(&mut m, Wire::Primary, &trades_of(1..=4), 20);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Close {
                which: Wire::Successor
            }
        )));
        assert_eq!(m.state(), State::Open);
        assert_eq!(m.next_deadline(), Some(Duration::from_millis(3020)));
    }

    #[test]
    fn close_during_a_switch_closes_both_connections() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        burst(&mut m, Wire::Primary, &trades_of(1..=2), 1200);
        m.on_request(Request::Close, at(1300));
        let a = drain(&mut m);
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Close {
                which: Wire::Successor
            }
        )));
        assert!(a.iter().any(|a| matches!(
            a,
            Action::Close {
                which: Wire::Primary
            }
        )));
        assert_eq!(ended(&a), Some(&End::User));
        assert_eq!(m.state(), State::Closed);
        // Nothing acts after the end.
        m.on_deadline(at(99_000));
        m.on_frame(Wire::Primary, Input::Ping, at(99_000));
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn scope_changes_go_to_both_connections_during_a_hold() {
        let mut m = holding(OnNotice::MakeBeforeBreak, 10);
        let change = ScopeChange::CoinApi(Scope {
            symbols: vec!["X".into()],
            ..Scope::default()
        });
        m.on_request(Request::Subscribe(change), at(1200));
        let a = drain(&mut m);
        let to: Vec<Wire> = a
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(to, [Wire::Successor, Wire::Primary]);
    }

    #[test]
    fn a_key_error_is_terminal_and_other_errors_reconnect() {
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        let a = burst(
            &mut m,
            Wire::Primary,
            &[r#"{"type":"error","message":" invalid api KEY "}"#.into()],
            0,
        );
        assert!(matches!(
            ended(&a),
            Some(End::Terminal {
                fatal: Fatal::Auth(_),
                ..
            })
        ));
        let mut m = machine(settings(OnNotice::WaitForClose));
        drain(&mut m);
        let a = burst(
            &mut m,
            Wire::Primary,
            &[r#"{"type":"error","message":"Too many requests for this API key"}"#.into()],
            0,
        );
        assert_eq!(
            lost_reason(&a),
            "server error: Too many requests for this API key"
        );
        assert!(matches!(delivered(&a).last(), Some(Msg::Error(_))));
    }

    #[test]
    fn transitions_refuse_what_they_document() {
        assert!(!State::Connecting.allows(State::Holding));
        assert!(!State::Holding.allows(State::Probing));
        assert!(!State::Closed.allows(State::Open));
        assert!(!State::Closing.allows(State::Open));
        assert!(State::Closing.allows(State::Closed));
        assert!(State::Open.allows(State::Holding));
        assert!(State::Probing.allows(State::Holding));
        assert!(State::Holding.allows(State::Switching));
        assert!(!State::Switching.allows(State::Holding));
    }
}
