//! Rust `log` records to the Python logger "tickwire", without the I/O thread ever taking the
//! GIL: records wait in a bounded buffer and are handed to `logging` on the consumer's thread,
//! the next time it calls into a stream. Records that wait while nobody calls in are handed over
//! by one flusher thread, at most every [`FLUSH_EVERY`] and only when records are pending: the
//! one place a tickwire thread other than the consumer's takes the GIL.
//!
//! Each record keeps the time it was made (`created`), the Rust module, file and line, and the
//! stream it belongs to (`stream_id`, `url`; `None` outside a stream). The levels Rust produces
//! follow the `tickwire` logger's effective level (re-read at most every [`FLUSH_EVERY`] when
//! records are handed over, and whenever a stream starts), so DEBUG appears once the
//! application asks for it and costs nothing before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::client::{log_context, wall_ns, LogContext};

/// Records kept while nobody drains them; older ones give way (a flood must not grow memory)
/// and are counted in a warning that precedes the next records handed over.
const KEEP: usize = 1024;

/// The flusher's least interval between two hand-overs, and the level re-read's.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One Rust record as it waits for Python.
struct Record {
    level: log::Level,
    message: String,
    target: String,
    file: Option<String>,
    line: Option<u32>,
    created_ns: i64,
    context: Option<LogContext>,
}

struct Buffer {
    records: VecDeque<Record>,
    /// Records given up since the last hand-over.
    dropped: u64,
}

static PENDING: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Buffer> = Mutex::new(Buffer {
    records: VecDeque::new(),
    dropped: 0,
});
/// Signalled when a record arrives, for the flusher.
static ARRIVED: Condvar = Condvar::new();
/// Wall clock (ns) of the last hand-over or level re-read, by any thread.
static LAST_FLUSH_NS: AtomicI64 = AtomicI64::new(0);
static LAST_LEVEL_NS: AtomicI64 = AtomicI64::new(0);
/// The process (pid) whose flusher thread runs; a forked child starts its own.
static FLUSHER_PID: AtomicU32 = AtomicU32::new(0);
/// Held by the flusher while it is attached to the interpreter; `true` once the interpreter is
/// exiting, after which the flusher never attaches again (attaching during finalisation can
/// crash the interpreter before 3.13).
static GATE: Mutex<bool> = Mutex::new(false);
/// True when our bridge is the process's Rust logger (another one keeps its own levels).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Records handed over in total, for tests and diagnosis.
static DELIVERED: AtomicU64 = AtomicU64::new(0);

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level() && meta.target().starts_with("_core")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let r = Record {
            level: record.level(),
            message: record.args().to_string(),
            target: record.target().to_owned(),
            file: record.file().map(str::to_owned),
            line: record.line(),
            created_ns: wall_ns(),
            context: log_context(),
        };
        {
            let mut q = RECORDS.lock();
            if q.records.len() >= KEEP {
                q.records.pop_front();
                q.dropped += 1;
            }
            q.records.push_back(r);
        }
        PENDING.store(true, Ordering::Release);
        ARRIVED.notify_one();
        ensure_flusher();
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Installs the bridge unless the process already has a Rust logger, reads the `tickwire`
/// logger's level, and stops the flusher before the interpreter exits.
pub fn install(py: Python<'_>) -> PyResult<()> {
    if log::set_logger(&BRIDGE).is_ok() {
        INSTALLED.store(true, Ordering::Release);
        sync_level(py);
    }
    let stop = pyo3::wrap_pyfunction!(stop_flusher, py)?;
    py.import(pyo3::intern!(py, "atexit"))?
        .call_method1(pyo3::intern!(py, "register"), (stop,))?;
    let after_fork = pyo3::wrap_pyfunction!(after_fork_in_child, py)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", after_fork)?;
    py.import(pyo3::intern!(py, "os"))?.call_method(
        pyo3::intern!(py, "register_at_fork"),
        (),
        Some(&kwargs),
    )?;
    Ok(())
}

/// At interpreter exit: no hand-over from the flusher after this returns.
#[pyfunction]
fn stop_flusher(py: Python<'_>) {
    // The flusher may hold the gate while it waits for the GIL: release the GIL to take it.
    py.detach(|| *GATE.lock() = true);
}

/// In a forked child only the forking thread exists: locks that the parent's flusher or I/O
/// threads held at the fork would never be released, so they are released here (the standard
/// after-fork reset), and the child's first record starts its own flusher.
#[pyfunction]
fn after_fork_in_child() {
    // SAFETY: in the child no other thread exists, so no holder of these locks can be inside
    // its critical section any more; the buffer's contents stay valid (every critical section
    // leaves the deque consistent before any other operation).
    unsafe {
        if GATE.is_locked() {
            GATE.force_unlock();
        }
        if RECORDS.is_locked() {
            RECORDS.force_unlock();
        }
    }
}

/// Starts the flusher thread once per process.
fn ensure_flusher() {
    let pid = std::process::id();
    let seen = FLUSHER_PID.load(Ordering::Acquire);
    if seen == pid
        || FLUSHER_PID
            .compare_exchange(seen, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    let started = std::thread::Builder::new()
        .name("tickwire-log".into())
        .spawn(flusher);
    if started.is_err() {
        // Without a thread, records still reach Python on the consumer's next call.
        FLUSHER_PID.store(0, Ordering::Release);
    }
}

fn flusher() {
    loop {
        {
            let mut q = RECORDS.lock();
            while q.records.is_empty() && q.dropped == 0 {
                ARRIVED.wait(&mut q);
            }
        }
        let since = wall_ns() - LAST_FLUSH_NS.load(Ordering::Acquire);
        let every = FLUSH_EVERY.as_nanos() as i64;
        if since < every {
            // Recently handed over (by a consumer or by us): wait out the interval, then look
            // again; a consumer may have taken the records meanwhile.
            std::thread::sleep(Duration::from_nanos((every - since) as u64));
            continue;
        }
        let gate = GATE.lock();
        if *gate {
            return;
        }
        if Python::try_attach(flush).is_none() {
            return;
        }
        drop(gate);
    }
}

fn python_level(level: log::Level) -> i32 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

/// Sets the level Rust records are made at from the `tickwire` logger's effective level.
pub fn sync_level(py: Python<'_>) {
    if !INSTALLED.load(Ordering::Acquire) {
        return;
    }
    LAST_LEVEL_NS.store(wall_ns(), Ordering::Release);
    let Ok(level) = tickwire_logger(py)
        .and_then(|l| l.call_method0(pyo3::intern!(py, "getEffectiveLevel")))
        .and_then(|l| l.extract::<i32>())
    else {
        return;
    };
    log::set_max_level(match level {
        i32::MIN..=5 => log::LevelFilter::Trace,
        6..=10 => log::LevelFilter::Debug,
        11..=20 => log::LevelFilter::Info,
        21..=30 => log::LevelFilter::Warn,
        31..=50 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
}

fn tickwire_logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import(pyo3::intern!(py, "logging"))?
        .call_method1(pyo3::intern!(py, "getLogger"), ("tickwire",))
}

/// Hands waiting records to `logging.getLogger("tickwire")`; cheap when there are none.
pub fn flush(py: Python<'_>) {
    let now = wall_ns();
    if now - LAST_LEVEL_NS.load(Ordering::Acquire) >= FLUSH_EVERY.as_nanos() as i64 {
        sync_level(py);
    }
    if !PENDING.swap(false, Ordering::Acquire) {
        return;
    }
    LAST_FLUSH_NS.store(now, Ordering::Release);
    let (records, dropped) = {
        let mut q = RECORDS.lock();
        let dropped = std::mem::take(&mut q.dropped);
        (q.records.drain(..).collect::<Vec<_>>(), dropped)
    };
    // A failing handler is the application's business; tickwire must not raise from it.
    let _ = hand_over(py, records, dropped);
}

fn hand_over(py: Python<'_>, records: Vec<Record>, dropped: u64) -> PyResult<()> {
    let logger = tickwire_logger(py)?;
    if dropped > 0 {
        let first = records.first().map_or_else(wall_ns, |r| r.created_ns);
        let note = Record {
            level: log::Level::Warn,
            message: format!(
                "{dropped} tickwire log records were dropped: more than {KEEP} waited to be \
                 handed to Python"
            ),
            target: "_core::py::logs".into(),
            file: Some(file!().into()),
            line: Some(line!()),
            created_ns: first,
            context: None,
        };
        emit(py, &logger, note, Some(dropped))?;
    }
    for r in records {
        emit(py, &logger, r, None)?;
    }
    Ok(())
}

/// One `logging.LogRecord`, made with the record's own time and context, then handled.
fn emit(
    py: Python<'_>,
    logger: &Bound<'_, PyAny>,
    r: Record,
    dropped: Option<u64>,
) -> PyResult<()> {
    let level = python_level(r.level);
    if !logger
        .call_method1(pyo3::intern!(py, "isEnabledFor"), (level,))?
        .is_truthy()?
    {
        return Ok(());
    }
    let extra = PyDict::new(py);
    extra.set_item("stream_id", r.context.as_ref().map(|c| c.stream_id))?;
    extra.set_item("url", r.context.as_ref().map(|c| &*c.url))?;
    extra.set_item("rust_target", &r.target)?;
    extra.set_item("dropped", dropped.unwrap_or(0))?;
    let record = logger.call_method1(
        pyo3::intern!(py, "makeRecord"),
        (
            logger.getattr(pyo3::intern!(py, "name"))?,
            level,
            r.file.as_deref().unwrap_or("<rust>"),
            r.line.unwrap_or(0),
            r.message,
            pyo3::types::PyTuple::empty(py),
            py.None(),
            py.None(),
            extra,
        ),
    )?;
    // The record's time is when Rust made it, not when it reached Python.
    let created = r.created_ns as f64 / 1e9;
    record.setattr(pyo3::intern!(py, "created"), created)?;
    record.setattr(
        pyo3::intern!(py, "msecs"),
        (r.created_ns.rem_euclid(1_000_000_000) / 1_000_000) as f64,
    )?;
    let start: f64 = py
        .import(pyo3::intern!(py, "logging"))?
        .getattr(pyo3::intern!(py, "_startTime"))?
        .extract()
        .unwrap_or(created);
    record.setattr(
        pyo3::intern!(py, "relativeCreated"),
        (created - start) * 1000.0,
    )?;
    logger.call_method1(pyo3::intern!(py, "handle"), (record,))?;
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `tickwire._core._log_state()`: (records handed over so far, records waiting), for tests.
#[pyfunction]
fn _log_state() -> (u64, usize) {
    (
        DELIVERED.load(Ordering::Relaxed),
        RECORDS.lock().records.len(),
    )
}

/// `tickwire._core._log_test(level, message, count)`: makes `count` Rust records at once, as a
/// burst on the I/O side would (for tests of levels, times and the buffer bound).
#[pyfunction]
#[pyo3(signature = (level, message, count=1))]
fn _log_test(level: &str, message: &str, count: usize) -> PyResult<()> {
    let level = match level {
        "error" => log::Level::Error,
        "warn" => log::Level::Warn,
        "info" => log::Level::Info,
        "debug" => log::Level::Debug,
        "trace" => log::Level::Trace,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown level {other:?}"
            )))
        }
    };
    for i in 0..count {
        log::log!(level, "{message} {i}");
    }
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(pyo3::wrap_pyfunction!(_log_state, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(_log_test, m)?)?;
    Ok(())
}

/// Takes the buffer's lock across a fork (see `runtime::install_fork_hooks`), so a child never
/// inherits it held by a thread that did not come along.
pub fn before_fork() {
    std::mem::forget(RECORDS.lock());
}

/// Releases the lock [`before_fork`] took, in the parent and in the child.
pub fn after_fork() {
    // SAFETY: `before_fork` locked it on this thread and forgot the guard.
    unsafe { RECORDS.force_unlock() };
}
