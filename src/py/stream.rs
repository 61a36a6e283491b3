//! `StreamCore`: one running stream as Python sees it. The public `tickwire.Stream` (Python)
//! wraps it with iteration and context-manager sugar; waits here release the GIL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::mpsc;

use super::batch::{Batch, KeyCache};
use super::book::{book_type_of, Books, OrderBook};
use super::io;
use super::runtime::InlineIo;
use crate::client::{self, wall_ns, ClientConfig, Command, OnNotice};
use crate::delivery::{LatencyHistogram, Overflow, Pop, Queue, StreamEnd};
use crate::error::Error;
use crate::feed::backoff::BackoffPolicy;
use crate::protocol::coinapi::{CoinApiSession, Scope};
use crate::protocol::moment::{MomentSession, MomentStream};
use crate::protocol::{ScopeChange, Session};
use crate::transport::ConnectOptions;

/// Sync waits wake this often to let Ctrl-C through.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The running stream behind `tickwire.Stream`.
#[pyclass(frozen, module = "tickwire._core", name = "StreamCore")]
pub struct StreamCore {
    /// A copy of the session, kept in step with the scope changes sent, to validate them and
    /// to tell which books can be resynchronised by resubscribing.
    session: Arc<Mutex<Session>>,
    /// `books=True`: the maintained books.
    books: Option<Arc<Books>>,
    queue: Arc<Queue>,
    commands: mpsc::UnboundedSender<Command>,
    /// The connection's state, written by the stream's task.
    status: Arc<client::Status>,
    keys: Arc<Mutex<KeyCache>>,
    latency: Mutex<LatencyHistogram>,
    /// Consumer clock minus the server's `time_coinapi`, for messages that carry one.
    lag: Mutex<LatencyHistogram>,
    /// How long a wait spins before it sleeps (`busy_poll`); zero: never spins.
    busy_poll: Duration,
    /// The process's fork generation when the stream was made: another one means this is a
    /// forked child's copy, whose queue, locks and task belong to the parent's runtime.
    generation: u64,
    /// Process-unique, in order of creation; tags the stream's log records.
    id: u64,
    /// The URL as tickwire shows it (no key).
    shown_url: String,
    /// `record=`: the recording, finished before `close()` returns.
    recorder: Option<Arc<crate::record::Recorder>>,
    /// How long `close()` waits for the recording to be finished.
    close_wait: Duration,
}

/// The next stream's id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `tickwire.Stats`: a snapshot of a stream's counters.
#[pyclass(frozen, get_all, module = "tickwire._core", name = "Stats")]
pub struct Stats {
    pub messages: u64,
    pub bytes: u64,
    pub batches: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub dropped: u64,
    pub parse_errors: u64,
    pub reconnects: u64,
    /// `books=True`: book updates not applied (before their book's first snapshot, or while
    /// it was invalid).
    pub book_updates_dropped: u64,
    /// Seconds since the last frame, `None` before the first.
    pub last_frame_age_s: Option<f64>,
    /// Socket read to consumer, microseconds: `{"p50", "p99", "max"}`.
    pub latency_us: Py<PyDict>,
    /// Envelopes (messages and events) waiting in the queue now.
    pub queue_depth: u64,
    /// The most envelopes the queue held at once.
    pub queue_high_water: u64,
    /// When the consumer took a message minus its `time_coinapi`, microseconds: `{"p50",
    /// "p99"}` (zero before the first such message; clock skew between the server and this
    /// machine is included, negative values count as zero).
    pub lag_us: Py<PyDict>,
}

/// The attributes `Stats`' repr shows, in order.
const STATS_SHOWN: &[&str] = &[
    "messages",
    "bytes",
    "batches",
    "gaps",
    "duplicates",
    "dropped",
    "parse_errors",
    "reconnects",
    "last_frame_age_s",
    "latency_us",
    "queue_depth",
    "queue_high_water",
    "lag_us",
];

#[pymethods]
impl Stats {
    /// Every counter, the last frame's age (ms precision) and the latency quantiles.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let mut parts = Vec::with_capacity(STATS_SHOWN.len());
        for name in STATS_SHOWN {
            let shown = match slf.getattr(*name)?.extract::<Option<f64>>() {
                // Floats (the age) to the millisecond; a full repr would be noise.
                Ok(Some(v)) if *name == "last_frame_age_s" => format!("{v:.3}"),
                _ => slf.getattr(*name)?.repr()?.to_string(),
            };
            parts.push(format!("{name}={shown}"));
        }
        Ok(format!("Stats({})", parts.join(", ")))
    }
}

fn overflow_of(name: &str) -> Result<Overflow, Error> {
    match name {
        "block" => Ok(Overflow::Block),
        "drop_oldest" => Ok(Overflow::DropOldest),
        "conflate" => Ok(Overflow::Conflate),
        other => Err(Error::Config(format!(
            "overflow must be \"block\", \"drop_oldest\" or \"conflate\", not {other:?}"
        ))),
    }
}

fn seconds(name: &str, v: Option<f64>) -> Result<Option<Duration>, Error> {
    match v {
        None => Ok(None),
        // A year at most: longer is "never" in practice, and deadlines must not overflow.
        Some(s) if s.is_finite() && s > 0.0 => {
            Ok(Some(Duration::from_secs_f64(s.min(365.0 * 86_400.0))))
        }
        Some(s) => Err(Error::Config(format!(
            "{name} must be a positive number of seconds, not {s}"
        ))),
    }
}

/// A caller's wait in seconds as a duration that cannot overflow a deadline (NaN and negative
/// mean no wait; more than a year means a year).
fn bounded(seconds: f64) -> Duration {
    if seconds.is_nan() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(seconds.clamp(0.0, 365.0 * 86_400.0))
}

fn end_to_err(end: &StreamEnd) -> PyErr {
    Error::from_end(end).unwrap_or(Error::Closed).into()
}

/// The next batch within `slice`: read by this thread itself when the I/O runs inline, else
/// handed over by the I/O thread. Call without the GIL.
fn wait_for_batch(q: &Queue, slice: Duration) -> Pop {
    let Some(inline) = io().inline() else {
        return q.pop(Some(slice));
    };
    if let Some(pop) = q.try_pop() {
        return pop;
    }
    inline.wait(async {
        tokio::time::timeout(slice, q.pop_async())
            .await
            .unwrap_or(Pop::Empty)
    })
}

/// Drives the inline runtime without sleeping until a batch is ready or `more` says stop:
/// each yield polls the I/O driver without a timeout and runs the tasks it woke (the socket
/// read, parsing, queueing). Call without the GIL.
fn run_until_ready(inline: InlineIo<'_>, q: &Queue, mut more: impl FnMut() -> bool) {
    inline.wait(async {
        while !q.has_ready() && more() {
            tokio::task::yield_now().await;
        }
    });
}

/// The server's own stamp of a CoinAPI message, for `lag_us`.
fn time_coinapi(msg: &crate::model::Msg) -> Option<i64> {
    use crate::model::Msg;
    match msg {
        Msg::Trade(m) => Some(m.time_coinapi),
        Msg::Quote(m) => Some(m.time_coinapi),
        Msg::Book(m) => Some(m.time_coinapi),
        Msg::BookL3(m) => Some(m.time_coinapi),
        Msg::Index(m) => Some(m.time_coinapi),
        _ => None,
    }
}

impl StreamCore {
    /// The stream's queue, for a relay that takes its batches in Rust instead of Python.
    pub(crate) fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// A stream whose queue another task fills (the `Nats` feed): `commands` reach that task.
    pub(crate) fn fed(
        queue: Arc<Queue>,
        commands: mpsc::UnboundedSender<Command>,
        shown_url: String,
    ) -> Self {
        // Its task reports no connection machine's state: the feed is open once made.
        let status = Arc::new(client::Status::default());
        status.set_state(crate::feed::machine::State::Open);
        StreamCore {
            session: Arc::new(Mutex::new(Session::CoinApi(CoinApiSession::new(
                Scope::default(),
            )))),
            books: None,
            status,
            queue,
            commands,
            keys: Arc::new(Mutex::new(KeyCache::default())),
            latency: Mutex::new(LatencyHistogram::default()),
            lag: Mutex::new(LatencyHistogram::default()),
            busy_poll: Duration::ZERO,
            generation: super::runtime::fork_generation(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shown_url,
            recorder: None,
            close_wait: Duration::ZERO,
        }
    }

    fn record_latency(&self, items: &[crate::model::Envelope]) {
        let now = wall_ns();
        let mut h = self.latency.lock();
        for e in items {
            h.record_ns(now - e.recv_ns);
        }
        drop(h);
        let mut lag = self.lag.lock();
        for e in items {
            if let Some(t) = time_coinapi(&e.msg) {
                lag.record_ns(now.saturating_sub(t));
            }
        }
    }

    /// With `busy_poll`, spins (GIL released) up to it, or up to `timeout` if shorter.
    fn spin(&self, py: Python<'_>, timeout: Option<Duration>) -> Option<Pop> {
        if self.busy_poll.is_zero() {
            return None;
        }
        let limit = timeout.map_or(self.busy_poll, |t| t.min(self.busy_poll));
        let q = &self.queue;
        let Some(inline) = io().inline() else {
            return py.detach(|| q.spin_pop(limit));
        };
        // Inline, nobody else fills the queue: spin on the socket instead.
        py.detach(|| {
            let until = std::time::Instant::now() + limit;
            run_until_ready(inline, q, || std::time::Instant::now() < until);
            q.try_pop()
        })
    }

    /// Turns a pop into the Python-level answer: a batch, `True` (nothing yet) or `False`
    /// (ended normally); failures raise.
    fn answer(&self, py: Python<'_>, pop: Pop) -> PyResult<Py<PyAny>> {
        super::logs::flush(py);
        match pop {
            Pop::Batch(mut items) => {
                if let Some(b) = &self.books {
                    b.apply(&mut items, &self.session, &self.commands);
                }
                self.record_latency(&items);
                Ok(Py::new(py, Batch::new(items, self.keys.clone()))?.into_any())
            }
            Pop::Empty => Ok(true.into_pyobject(py)?.to_owned().into_any().unbind()),
            Pop::End(StreamEnd::Finished) => {
                Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())
            }
            Pop::End(end) => Err(end_to_err(&end)),
        }
    }

    /// A scope change from keyword lists, checked against the venue (and the order stream,
    /// which has no subscriptions) before anything is sent.
    fn change(
        &self,
        lists: [Vec<String>; 6],
        instruments: Vec<String>,
        all: bool,
    ) -> PyResult<ScopeChange> {
        let [data_types, symbols, assets, exchanges, periods, index_ids] = lists;
        let coinapi_given = [
            &data_types,
            &symbols,
            &assets,
            &exchanges,
            &periods,
            &index_ids,
        ]
        .iter()
        .any(|l| !l.is_empty());
        let change = if coinapi_given
            || (instruments.is_empty()
                && !all
                && matches!(*self.session.lock(), Session::CoinApi(_)))
        {
            if !instruments.is_empty() || all {
                return Err(Error::Config("instruments=/all= are Moment keywords".into()).into());
            }
            ScopeChange::CoinApi(Scope {
                data_types,
                symbols,
                assets,
                exchanges,
                periods,
                index_ids,
                ..Scope::default()
            })
        } else {
            ScopeChange::Instruments {
                ids: instruments,
                all,
            }
        };
        // Validate on a scratch copy: the task keeps the real session.
        self.session
            .lock()
            .clone()
            .apply(&change, true)
            .map_err(Error::Config)?;
        Ok(change)
    }

    fn check_connected(&self) -> PyResult<bool> {
        Python::attach(super::logs::flush);
        match self.queue.early_end() {
            Some(StreamEnd::Finished) | None => Ok(true),
            Some(end) => Err(end_to_err(&end)),
        }
    }

    /// Whether this is a forked child's copy of a parent's stream.
    fn inherited(&self) -> bool {
        self.generation != super::runtime::fork_generation()
    }

    /// Refuses a stream made before `fork()`: its locks may be held by threads that did not
    /// come along, and its task runs in the parent only.
    fn usable(&self) -> PyResult<()> {
        if self.inherited() {
            return Err(super::errors::StreamClosed::new_err(
                "the stream was created before fork: streams do not cross os.fork(); \
                 connect again in the child",
            ));
        }
        Ok(())
    }

    fn books(&self) -> PyResult<&Books> {
        self.books.as_deref().ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(
                "books are maintained only for streams made with books=True",
            )
        })
    }

    fn send(&self, cmd: Command) -> PyResult<()> {
        if self.queue.is_closed_by_user() {
            return Err(Error::Closed.into());
        }
        // A send fails only when the task has ended; the stream's end then says why.
        let _ = self.commands.send(cmd);
        Ok(())
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the keyword options of tickwire.connect"
)]
#[pymethods]
impl StreamCore {
    #[new]
    #[pyo3(signature = (url, *, protocol, headers, moment_stream, instruments, subscribe_all,
        start_msg_number, data_types, symbols, assets, exchanges, periods,
        index_ids, heartbeat, update_limit_ms_quote, update_limit_ms_book_snapshot,
        update_limit_ms_exrate, update_limit_ms_index, batch_size, queue_size, overflow,
        heartbeat_timeout, ping_timeout, connect_timeout, reconnect, compression,
        max_message_size, ca_file, keep_raw, busy_poll=0.0,
        queue_bytes=crate::delivery::queue::DEFAULT_MAX_BYTES, write_timeout=10.0,
        close_timeout=2.0, initial_attempts=3, books=false, record=None))]
    fn py_new(
        url: &str,
        protocol: &str,
        headers: Vec<(String, String)>,
        moment_stream: Option<String>,
        instruments: Vec<String>,
        subscribe_all: bool,
        start_msg_number: Option<u64>,
        data_types: Vec<String>,
        symbols: Vec<String>,
        assets: Vec<String>,
        exchanges: Vec<String>,
        periods: Vec<String>,
        index_ids: Vec<String>,
        heartbeat: bool,
        update_limit_ms_quote: Option<u64>,
        update_limit_ms_book_snapshot: Option<u64>,
        update_limit_ms_exrate: Option<u64>,
        update_limit_ms_index: Option<u64>,
        batch_size: usize,
        queue_size: usize,
        overflow: &str,
        heartbeat_timeout: Option<f64>,
        ping_timeout: Option<f64>,
        connect_timeout: f64,
        reconnect: Option<(String, f64, f64, f64, f64, Option<u32>)>,
        compression: bool,
        max_message_size: usize,
        ca_file: Option<PathBuf>,
        keep_raw: bool,
        busy_poll: f64,
        queue_bytes: usize,
        write_timeout: f64,
        close_timeout: f64,
        initial_attempts: u32,
        books: bool,
        record: Option<(PathBuf, Option<f64>, Option<f64>)>,
    ) -> PyResult<Self> {
        let busy_poll = match busy_poll {
            0.0 => Duration::ZERO,
            s if (0.0..=1.0).contains(&s) => Duration::from_secs_f64(s),
            s => {
                return Err(Error::Config(format!(
                    "busy_poll must be between 0 and 1 second, not {s}"
                ))
                .into())
            }
        };
        let url = url::Url::parse(url)
            .map_err(|e| Error::Config(format!("invalid url: {e}")))
            .and_then(|u| match u.scheme() {
                "ws" | "wss" => Ok(u),
                s => Err(Error::Config(format!(
                    "url scheme must be ws or wss, not {s}"
                ))),
            })?;
        if batch_size == 0 || queue_size == 0 || queue_bytes == 0 {
            return Err(Error::Config(
                "batch_size, queue_size and queue_bytes must be positive".into(),
            )
            .into());
        }
        let overflow = overflow_of(overflow)?;
        let scope = Scope {
            data_types,
            symbols,
            assets,
            exchanges,
            periods,
            index_ids,
            heartbeat,
            update_limit_ms_quote,
            update_limit_ms_book_snapshot,
            update_limit_ms_exrate,
            update_limit_ms_index,
        };
        let session = match (protocol, moment_stream.as_deref()) {
            ("coinapi", _) => Session::CoinApi(CoinApiSession::new(scope)),
            ("moment", Some("prices")) => Session::Moment(MomentSession::new(
                MomentStream::Prices,
                instruments,
                subscribe_all,
                None,
            )),
            ("moment", Some("orders")) => Session::Moment(MomentSession::new(
                MomentStream::Orders,
                Vec::new(),
                false,
                start_msg_number,
            )),
            (p, s) => {
                return Err(Error::Config(format!(
                    "unknown protocol/stream {p:?}/{s:?}: expected coinapi, or moment with \
                     \"prices\" or \"orders\""
                ))
                .into())
            }
        };
        // Automatic liveness: CoinAPI heartbeats come after 1 s of silence, so 3 s of silence
        // means a dead connection; Moment pings every 30 s, so 45 s without any frame does.
        // Without either, only our own pings (`ping_timeout`) tell.
        let heartbeat_timeout = match (heartbeat_timeout, &session) {
            (None, Session::CoinApi(_)) if heartbeat => Some(Duration::from_secs(3)),
            (None, Session::Moment(_)) => Some(Duration::from_secs(45)),
            (None, _) => None,
            (Some(s), _) => seconds("heartbeat_timeout", Some(s))?,
        };
        let on_notice = match reconnect.as_ref().map(|r| r.0.as_str()) {
            None | Some("wait_for_close") => OnNotice::WaitForClose,
            Some("make_before_break") => OnNotice::MakeBeforeBreak,
            Some("immediate") => OnNotice::Immediate,
            Some(other) => return Err(Error::Config(format!("unknown on_notice {other:?}")).into()),
        };
        let reconnect = reconnect.map(
            |(_, initial_delay, max_delay, factor, jitter, max_attempts)| BackoffPolicy {
                initial_delay,
                max_delay,
                factor,
                jitter,
                max_attempts,
                initial_attempts,
            },
        );
        let config = ClientConfig {
            connect: ConnectOptions {
                url,
                headers,
                compression,
                max_message_size,
                connect_timeout: seconds("connect_timeout", Some(connect_timeout))?
                    .unwrap_or(Duration::from_secs(10)),
                write_timeout: seconds("write_timeout", Some(write_timeout))?
                    .unwrap_or(Duration::from_secs(10)),
                close_timeout: seconds("close_timeout", Some(close_timeout))?
                    .unwrap_or(Duration::from_secs(2)),
                ca_file,
            },
            session: session.clone(),
            batch_size,
            heartbeat_timeout,
            ping_timeout: seconds("ping_timeout", ping_timeout)?,
            reconnect,
            on_notice,
            hold_limit: queue_size,
            keep_raw,
            recorder: None,
        };
        let mut config = config;
        if let Some((path, rotate_mb, rotate_s)) = record {
            let rotation = crate::record::Rotation {
                max_bytes: match rotate_mb {
                    None => None,
                    Some(mb) if mb.is_finite() && mb > 0.0 => Some((mb * 1_048_576.0) as u64),
                    Some(mb) => {
                        return Err(Error::Config(format!(
                            "rotate_mb must be a positive number, not {mb}"
                        ))
                        .into())
                    }
                },
                max_age: seconds("rotate_s", rotate_s)?,
            };
            let meta = crate::record::recorder::meta_for(
                &config.session,
                &client::redact_url(&config.connect.url),
            );
            let recorder = crate::record::Recorder::start(&path, rotation, meta)
                .map_err(|e| Error::Config(format!("cannot record to {}: {e}", path.display())))?;
            config.recorder = Some(recorder);
        }
        let recorder = config.recorder.clone();
        let close_wait = config.connect.close_timeout + Duration::from_secs(2);
        let wake = if io().inline().is_some() {
            crate::delivery::wake::WakePipe::with_socket_watch()
        } else {
            crate::delivery::wake::WakePipe::new()
        }
        .map_err(|e| Error::Config(format!("cannot create the wake-up pipe: {e}")))?;
        let queue =
            Queue::with_max_bytes(queue_size, queue_bytes, batch_size, overflow, Some(wake));
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shown_url = client::redact_url(&config.connect.url);
        // The application may have set the `tickwire` logger's level since the last look.
        Python::attach(super::logs::sync_level);
        let (commands, status) = client::spawn(io().handle(), config, queue.clone(), id);
        Ok(StreamCore {
            session: Arc::new(Mutex::new(session)),
            books: books.then(|| Arc::new(Books::new())),
            queue,
            commands,
            status,
            keys: Arc::new(Mutex::new(KeyCache::default())),
            latency: Mutex::new(LatencyHistogram::default()),
            lag: Mutex::new(LatencyHistogram::default()),
            busy_poll,
            generation: super::runtime::fork_generation(),
            id,
            shown_url,
            recorder,
            close_wait,
        })
    }

    /// The stream's process-unique id (its log records carry it as `stream_id`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The URL as tickwire shows it (no key).
    #[getter]
    fn url(&self) -> &str {
        &self.shown_url
    }

    /// Waits up to `timeout` seconds (`None`: forever) for a batch, without the GIL.
    /// Returns a `Batch`, `True` when nothing came in time, `False` at the end of the stream.
    #[pyo3(signature = (timeout=None))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        self.usable()?;
        let wait = timeout.map(bounded);
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        if let Some(pop) = self.spin(py, wait) {
            return self.answer(py, pop);
        }
        loop {
            let slice = match deadline {
                None => SIGNAL_SLICE,
                Some(d) => d
                    .saturating_duration_since(std::time::Instant::now())
                    .min(SIGNAL_SLICE),
            };
            let q = &self.queue;
            let pop = py.detach(|| wait_for_batch(q, slice));
            match pop {
                Pop::Empty => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                        return self.answer(py, Pop::Empty);
                    }
                }
                other => return self.answer(py, other),
            }
        }
    }

    /// A batch if one is ready; otherwise arms the wake-up fd and returns `True`
    /// (`False` at the end of the stream).
    fn poll_or_arm(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.usable()?;
        if let Some(pop) = self.spin(py, None) {
            return self.answer(py, pop);
        }
        if let Some(inline) = io().inline() {
            // Data arrived since the last look: read it on this thread, a few driver polls at
            // most (the loop must not block). Otherwise nothing new is there to read, and the
            // loop may sleep until the next edge.
            let q = &self.queue;
            if q.wants_inline_read() {
                let mut polls = 0;
                py.detach(|| {
                    run_until_ready(inline, q, || {
                        polls += 1;
                        polls <= 4
                    });
                });
            }
        }
        let pop = self.queue.pop_or_arm();
        self.answer(py, pop)
    }

    /// An awaitable of the next batch through pyo3-async-runtimes (the comparison build only:
    /// the I/O runtime takes the GIL to complete an asyncio future for every batch).
    #[cfg(feature = "async-runtimes")]
    fn next_batch_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.usable()?;
        static BRIDGED: std::sync::Once = std::sync::Once::new();
        // Ignored error: the bridge was already given a runtime, which can only be ours.
        BRIDGED.call_once(|| {
            let _ = pyo3_async_runtimes::tokio::init_with_runtime(io().runtime());
        });
        let queue = self.queue.clone();
        let keys = self.keys.clone();
        let (books, session, commands) = (
            self.books.clone(),
            self.session.clone(),
            self.commands.clone(),
        );
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let pop = queue.pop_async().await;
            Python::attach(|py| match pop {
                Pop::Batch(mut items) => {
                    if let Some(b) = &books {
                        b.apply(&mut items, &session, &commands);
                    }
                    Ok(Py::new(py, Batch::new(items, keys))?.into_any())
                }
                Pop::End(StreamEnd::Finished) | Pop::Empty => {
                    Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())
                }
                Pop::End(end) => Err(end_to_err(&end)),
            })
        })
    }

    /// Waits (without the GIL) until the first connection attempt settled; raises its failure.
    fn wait_connected(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        self.usable()?;
        let deadline = std::time::Instant::now() + bounded(timeout);
        loop {
            let q = &self.queue;
            let slice = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(SIGNAL_SLICE);
            if py.detach(|| q.wait_settled(slice)) {
                return self.check_connected();
            }
            py.check_signals()?;
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// True once settled (raising an early failure); otherwise arms the wake-up fd.
    fn connected_or_arm(&self) -> PyResult<bool> {
        self.usable()?;
        if self.queue.settled_or_arm() {
            return self.check_connected();
        }
        Ok(false)
    }

    /// The connection's state: "connecting", "open", "probing", "holding", "switching",
    /// "closing" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        self.status.state().name()
    }

    /// What the stream is waiting for while it is not connected (the attempt, the delay and
    /// the last cause), or `None`.
    #[getter]
    fn waiting(&self) -> Option<String> {
        self.status.waiting()
    }

    /// The fd an asyncio loop watches for wake-ups.
    #[getter]
    fn wake_fd(&self) -> i32 {
        self.queue.wake_fd().unwrap_or(-1)
    }

    fn stats(&self, py: Python<'_>) -> PyResult<Stats> {
        self.usable()?;
        super::logs::flush(py);
        let s = self.queue.stats.snapshot();
        let h = self.latency.lock().clone();
        let lat = PyDict::new(py);
        lat.set_item("p50", h.quantile_us(0.5))?;
        lat.set_item("p99", h.quantile_us(0.99))?;
        lat.set_item("max", h.max_us())?;
        let g = self.lag.lock().clone();
        let lag = PyDict::new(py);
        lag.set_item("p50", g.quantile_us(0.5))?;
        lag.set_item("p99", g.quantile_us(0.99))?;
        let (depth, high_water, _) = self.queue.depth();
        Ok(Stats {
            messages: s.messages,
            bytes: s.bytes,
            batches: s.batches,
            gaps: s.gaps,
            duplicates: s.duplicates,
            dropped: s.dropped,
            parse_errors: s.parse_errors,
            reconnects: s.reconnects,
            book_updates_dropped: self.books.as_ref().map_or(0, |b| b.dropped_updates()),
            last_frame_age_s: (s.last_frame_ns > 0)
                .then(|| (wall_ns() - s.last_frame_ns) as f64 / 1e9),
            latency_us: lat.unbind(),
            queue_depth: depth as u64,
            queue_high_water: high_water as u64,
            lag_us: lag.unbind(),
        })
    }

    /// Adds to (`add=True`) or removes from the subscription: CoinAPI takes the hello's list
    /// fields, Moment prices take `instruments` (CUSIP or ISIN) or `all=True`.
    #[pyo3(signature = (add, *, data_types=vec![], symbols=vec![], assets=vec![],
        exchanges=vec![], periods=vec![], index_ids=vec![], instruments=vec![], all=false))]
    fn change_scope(
        &self,
        add: bool,
        data_types: Vec<String>,
        symbols: Vec<String>,
        assets: Vec<String>,
        exchanges: Vec<String>,
        periods: Vec<String>,
        index_ids: Vec<String>,
        instruments: Vec<String>,
        all: bool,
    ) -> PyResult<()> {
        self.usable()?;
        let change = self.change(
            [data_types, symbols, assets, exchanges, periods, index_ids],
            instruments,
            all,
        )?;
        // The mirror follows what the task will apply, in the same order.
        let _ = self.session.lock().apply(&change, add);
        self.send(if add {
            Command::Subscribe(change)
        } else {
            Command::Unsubscribe(change)
        })
    }

    /// The maintained book of `symbol_id` (`books=True`): `None` before its first snapshot.
    #[pyo3(signature = (symbol_id, r#type="book"))]
    fn book(&self, symbol_id: &str, r#type: &str) -> PyResult<Option<OrderBook>> {
        let t = book_type_of(r#type)?;
        Ok(self.books()?.book(symbol_id, t))
    }

    /// The top `depth` levels of every maintained book, one row per level.
    #[pyo3(signature = (depth=10))]
    fn books_to_arrow(&self, depth: usize) -> PyResult<super::arrow::ArrowBatch> {
        Ok(self.books()?.to_arrow(depth))
    }

    /// Closes the connection and discards what is queued; idempotent. With `record=`, returns
    /// once the recording is complete (its last block and index written), at most
    /// `close_timeout` + 2 s.
    fn close(&self, py: Python<'_>) {
        if self.inherited() {
            // The parent's to close; the child's copy of the socket is closed already.
            return;
        }
        self.queue.close();
        let _ = self.commands.send(Command::Close);
        if let Some(r) = &self.recorder {
            let wait = self.close_wait;
            if py.detach(|| r.wait_finished(wait)).is_none() {
                log::warn!(
                    "the recording of {} was not finished within {:.1} s of close()",
                    self.shown_url,
                    wait.as_secs_f64()
                );
            }
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        // An inherited stream was not closed by the user; using it raises on its own.
        !self.inherited() && self.queue.is_closed_by_user()
    }
}

impl Drop for StreamCore {
    fn drop(&mut self) {
        if self.inherited() {
            // Closing the queue or the command channel would take locks and wake a task of
            // the parent's runtime (its scheduler state is in this process too, possibly
            // locked by a thread that did not come along): leave both alone, leaked.
            let (queue, commands) = (self.queue.clone(), self.commands.clone());
            std::mem::forget(queue);
            std::mem::forget(commands);
            return;
        }
        self.queue.close();
        let _ = self.commands.send(Command::Close);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StreamCore>()?;
    m.add_class::<Stats>()?;
    Ok(())
}
