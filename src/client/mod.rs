//! The connection task: drives the transport with a venue session and the feed logic, fills
//! the delivery queue, and owns reconnects. One task per stream on the shared runtime.

mod connection;
pub mod counters;

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use tokio::sync::mpsc;

use crate::delivery::{Queue, StreamEnd};
use crate::feed::backoff::{self, Backoff, BackoffPolicy, INITIAL_RETRY_AFTER_MAX};
use crate::feed::machine::{End, Fatal};
use crate::feed::msgnum::MsgNumberTracker;
use crate::model::{Envelope, Msg};
use crate::protocol::{ScopeChange, Session};
use crate::record::{Event as RecEvent, Record, Recorder, Stamp};
use crate::transport::watch::SocketWatch;
use crate::transport::{ConnectFailure, ConnectOptions, Connection};

pub use connection::wall_ns;
use connection::Sinks;
pub use counters::{Counters, CountersSnapshot};

/// What the consumer asks of a running stream.
#[derive(Debug)]
pub enum Command {
    Subscribe(ScopeChange),
    Unsubscribe(ScopeChange),
    /// Takes an exact symbol out of the CoinAPI scope and back in, so the server sends fresh
    /// book snapshots for it; the symbol's `book_type` stream re-baselines its sequence at
    /// the next snapshot (the numbering may jump across the resubscription).
    Resync {
        symbol_id: String,
        book_type: &'static str,
    },
    /// Opens a successor connection with the same scope and switches to it, so every book
    /// restarts from a fresh snapshot (the resync of a filtered scope).
    Refresh,
    Close,
}

pub use crate::feed::machine::{OnNotice, State};

/// What a running stream shows of its connection: the machine's state, the cause the
/// current attempt is waiting on (for `stream.state` and the CLI), and the connection's
/// counters. The stream's task writes all three; it alone owns them.
#[derive(Debug)]
pub struct Status {
    state: AtomicU8,
    waiting: Mutex<Option<String>>,
    pub counters: Counters,
}

const STATES: [State; 7] = [
    State::Connecting,
    State::Open,
    State::Probing,
    State::Holding,
    State::Switching,
    State::Closing,
    State::Closed,
];

impl Default for Status {
    fn default() -> Self {
        Status {
            state: AtomicU8::new(0),
            waiting: Mutex::new(None),
            counters: Counters::default(),
        }
    }
}

impl Status {
    pub(crate) fn set_state(&self, s: State) {
        let i = STATES.iter().position(|x| *x == s).unwrap_or(0);
        self.state.store(u8::try_from(i).unwrap_or(0), Relaxed);
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        STATES[usize::from(self.state.load(Relaxed)).min(STATES.len() - 1)]
    }

    /// What the stream waits for while it is not connected, e.g. "connecting to …, attempt
    /// 2, retrying in 0.4 s: connection refused"; `None` once connected.
    pub fn waiting(&self) -> Option<String> {
        self.waiting.lock().clone()
    }

    fn set_waiting(&self, w: Option<String>) {
        *self.waiting.lock() = w;
    }
}

/// Everything a stream needs to run.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub connect: ConnectOptions,
    pub session: Session,
    pub batch_size: usize,
    /// Silence after which the connection counts as dead (`None`: never by this rule).
    pub heartbeat_timeout: Option<Duration>,
    /// Silence after which tickwire pings the server; as long again without any frame and the
    /// connection counts as dead.
    pub ping_timeout: Option<Duration>,
    pub reconnect: Option<BackoffPolicy>,
    pub on_notice: OnNotice,
    /// The most messages a make-before-break successor holds before the switch.
    pub hold_limit: usize,
    pub keep_raw: bool,
    /// `record=`: where the stream's frames, sends and connection boundaries are recorded.
    pub recorder: Option<Arc<Recorder>>,
}

/// A URL as tickwire shows it: any `auth_token`/`apikey` query parameter removed.
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "auth_token" && k != "apikey")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(kept);
    }
    u.to_string()
}

/// Which stream a log record belongs to: set for the whole of a stream's task (its
/// connections, make-before-break successors and reconnects all run inside it), read by
/// whoever turns records into the application's log.
#[derive(Clone, Debug)]
pub struct LogContext {
    /// The stream's process-unique id (also in `tickwire.Stream`'s repr).
    pub stream_id: u64,
    /// The stream's URL as tickwire shows it (no key).
    pub url: Arc<str>,
}

tokio::task_local! {
    static LOG_CONTEXT: LogContext;
}

/// The stream whose task is logging, if the caller runs in one.
pub fn log_context() -> Option<LogContext> {
    LOG_CONTEXT.try_with(Clone::clone).ok()
}

/// Starts the stream's task on `handle`; returns the command channel and the stream's
/// status. `stream_id` tags the task's log records (see [`LogContext`]); `watch`, an inline
/// consumer's readiness set, is told which socket the stream reads.
pub fn spawn(
    handle: &tokio::runtime::Handle,
    config: ClientConfig,
    queue: Arc<Queue>,
    watch: Option<Arc<SocketWatch>>,
    stream_id: u64,
) -> (mpsc::UnboundedSender<Command>, Arc<Status>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(Status::default());
    let context = LogContext {
        stream_id,
        url: redact_url(&config.connect.url).into(),
    };
    let recorder = config.recorder.clone();
    let task_status = status.clone();
    handle.spawn(LOG_CONTEXT.scope(context, async move {
        run(config, queue, rx, task_status, watch).await;
        // Everything the task recorded is in the channel: the writer may finish the file.
        if let Some(r) = recorder {
            r.finish();
        }
    }));
    (tx, status)
}

async fn push_event(queue: &Queue, recv_ns: i64, msg: Msg) -> bool {
    queue.push(vec![Envelope::event(recv_ns, msg)]).await
}

/// Records a record that is no connection machine's input (no monotonic time).
fn record(recorder: Option<&Arc<Recorder>>, conn: u32, wall_ns: i64, event: RecEvent) {
    if let Some(r) = recorder {
        r.send(vec![Record {
            conn,
            at: Stamp {
                wall_ns,
                mono_ns: 0,
            },
            event,
        }]);
    }
}

/// A failed attempt's cause, as the stream's end and the CLI say it.
fn failure(e: &ConnectFailure) -> String {
    match e {
        ConnectFailure::Io(m) if m.to_ascii_lowercase().contains("refused") => {
            "connection refused".into()
        }
        other => other.to_string(),
    }
}

async fn run(
    mut config: ClientConfig,
    queue: Arc<Queue>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: Arc<Status>,
    watch: Option<Arc<SocketWatch>>,
) {
    let out = Sinks {
        queue: &queue,
        status: &status,
        watch: watch.as_deref(),
    };
    let policy = config.reconnect.clone();
    let mut backoff = Backoff::new(policy.clone().unwrap_or_default());
    // Until the first connection is made, this many dials (the first included) are tried.
    let initial = policy.as_ref().map_or(1, |p| p.initial_attempts.max(1));
    let shown_url = redact_url(&config.connect.url);
    let mut attempt: u32 = 0;
    let mut made_once = false;
    let mut failed_initial: u32 = 0;
    let base_url = config.connect.url.clone();
    // Moment order numbers continue across connections; CoinAPI's restart on each.
    let mut msg_numbers = MsgNumberTracker::default();
    loop {
        status.set_state(State::Connecting);
        config.connect.url = config.session.connect_url(&base_url, msg_numbers.last());
        let connected = tokio::select! {
            c = Connection::connect(&config.connect) => c,
            cmd = commands.recv() => match cmd {
                None | Some(Command::Close) => { status.set_state(State::Closed); return }
                // Scope changes before the connection exists only change what the hello says.
                Some(other) => { apply_offline(&mut config.session, other); continue; }
            },
        };
        // Why this attempt failed; `None` after a connection that was made.
        let mut cause: Option<String> = None;
        // The wait a refusal's Retry-After asked for.
        let mut retry_after: Option<Duration> = None;
        // Server-announced restarts retry with the backoff too, but do not count as failures.
        match connected {
            Ok(conn) => {
                let started = Instant::now();
                let out = connection::drive(
                    conn,
                    &mut config,
                    &out,
                    &mut commands,
                    std::mem::take(&mut msg_numbers),
                    &mut backoff,
                    (&shown_url, attempt),
                )
                .await;
                msg_numbers = out.msg_numbers;
                if out.made {
                    made_once = true;
                    status.set_waiting(None);
                    log::info!("connected to {shown_url} (attempt {attempt})");
                }
                let (reason, code) = match &out.end {
                    End::User => {
                        record(
                            config.recorder.as_ref(),
                            out.conn,
                            wall_ns(),
                            RecEvent::Closed {
                                reported: false,
                                reason: "closed by the consumer".into(),
                                code: None,
                            },
                        );
                        status.set_state(State::Closed);
                        return;
                    }
                    End::Reconnect { reason } => (reason.clone(), None),
                    End::Lost { reason, code } | End::Terminal { reason, code, .. } => {
                        (reason.clone(), *code)
                    }
                };
                log::warn!("connection to {shown_url} ended: {reason}");
                let at = wall_ns();
                record(
                    config.recorder.as_ref(),
                    out.conn,
                    at,
                    RecEvent::Closed {
                        reported: out.made,
                        reason: reason.clone(),
                        code,
                    },
                );
                if out.made {
                    push_event(
                        &queue,
                        at,
                        Msg::Disconnected {
                            reason: reason.clone().into(),
                            code,
                        },
                    )
                    .await;
                } else {
                    cause = Some(reason);
                }
                if let End::Terminal { fatal, .. } = out.end {
                    let Fatal::Auth(m) = fatal;
                    status.set_state(State::Closed);
                    queue.finish(StreamEnd::Auth(m));
                    return;
                }
                backoff.on_connection_ended(started.elapsed());
            }
            Err(ConnectFailure::Auth(code)) => {
                record(
                    config.recorder.as_ref(),
                    crate::record::format::NO_CONN,
                    wall_ns(),
                    RecEvent::ConnectFailed {
                        attempt,
                        reason: format!("the server refused the key (HTTP {code})"),
                    },
                );
                status.set_state(State::Closed);
                queue.finish(StreamEnd::Auth(format!(
                    "the server refused the key (HTTP {code}) at {shown_url}"
                )));
                return;
            }
            Err(ConnectFailure::Config(e)) => {
                status.set_state(State::Closed);
                queue.finish(StreamEnd::Connect(e));
                return;
            }
            Err(e) => {
                if let ConnectFailure::Status(_, Some(v)) = &e {
                    retry_after = backoff::retry_after(v, std::time::SystemTime::now());
                }
                cause = Some(failure(&e));
                record(
                    config.recorder.as_ref(),
                    crate::record::format::NO_CONN,
                    wall_ns(),
                    RecEvent::ConnectFailed {
                        attempt,
                        reason: failure(&e),
                    },
                );
            }
        }
        if let Some(c) = &cause {
            if let Some(wait) = retry_after.filter(|w| !made_once && *w > INITIAL_RETRY_AFTER_MAX) {
                status.set_state(State::Closed);
                queue.finish(StreamEnd::Connect(format!(
                    "cannot connect to {shown_url}: {c}, and its Retry-After asks to wait {} s, \
                     over the {} s a first connection waits",
                    wait.as_secs(),
                    INITIAL_RETRY_AFTER_MAX.as_secs()
                )));
                return;
            }
            if !made_once {
                failed_initial += 1;
                if failed_initial >= initial {
                    status.set_state(State::Closed);
                    queue.finish(StreamEnd::Connect(format!(
                        "cannot connect to {shown_url} after {failed_initial} attempt{}: {c}",
                        if failed_initial == 1 { "" } else { "s" }
                    )));
                    return;
                }
            }
        }
        if policy.is_none() {
            status.set_state(State::Closed);
            // No reconnect policy: the server's close ends the stream normally.
            queue.finish(match cause {
                Some(c) => StreamEnd::Connect(format!("cannot connect to {shown_url}: {c}")),
                None => StreamEnd::Finished,
            });
            return;
        }
        let delay = if made_once {
            backoff.next_delay(rand::random::<f64>())
        } else {
            Some(backoff.delay(rand::random::<f64>()))
        };
        let delay = delay.map(|d| backoff.honour(d, retry_after));
        let Some(delay) = delay else {
            status.set_state(State::Closed);
            queue.finish(StreamEnd::Connect(format!(
                "gave up reconnecting to {shown_url} after {} attempts",
                backoff.attempt()
            )));
            return;
        };
        let waiting = format!(
            "connecting to {shown_url}, attempt {}, retrying in {:.1} s{}",
            attempt + 2,
            delay.as_secs_f64(),
            cause.as_ref().map_or(String::new(), |c| format!(": {c}"))
        );
        log::warn!("{waiting}");
        status.set_waiting(Some(waiting));
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => { status.set_state(State::Closed); return }
                    Some(other) => apply_offline(&mut config.session, other),
                },
            }
        }
        attempt = attempt.saturating_add(1);
        Counters::add(&status.counters.reconnects, 1);
    }
}

fn apply_offline(session: &mut Session, cmd: Command) {
    // Validated when the command was made; nothing to send while disconnected.
    let _ = match cmd {
        Command::Subscribe(s) => session.apply(&s, true),
        Command::Unsubscribe(s) => session.apply(&s, false),
        // A new connection sends every book a snapshot anyway.
        Command::Resync { .. } | Command::Refresh | Command::Close => Ok(Vec::new()),
    };
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn redacts_tokens_from_shown_urls() {
        let u = url::Url::parse("wss://paper.moment-api.com/v1/x/?auth_token=SECRET&a=1").unwrap();
        let shown = redact_url(&u);
        assert!(!shown.contains("SECRET"));
        assert!(shown.contains("a=1"));
        let u = url::Url::parse("ws://127.0.0.1:1/v1/?apikey=SECRET").unwrap();
        assert_eq!(redact_url(&u), "ws://127.0.0.1:1/v1/");
    }
}
