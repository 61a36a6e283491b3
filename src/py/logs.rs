//! Rust `log` records to the Python logger "tickwire", without the I/O thread ever taking the
//! GIL: records wait in a bounded buffer and are handed to `logging` on the consumer's thread,
//! the next time it calls into the stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use pyo3::prelude::*;

/// Records kept while nobody drains them; older ones give way (a flood must not grow memory).
const KEEP: usize = 1024;

static PENDING: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<VecDeque<(log::Level, String)>> = Mutex::new(VecDeque::new());

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Info && meta.target().starts_with("_core")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut q = RECORDS.lock();
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back((record.level(), record.args().to_string()));
        PENDING.store(true, Ordering::Release);
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Installs the bridge unless the process already has a Rust logger.
pub fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Hands waiting records to `logging.getLogger("tickwire")`; cheap when there are none.
pub fn flush(py: Python<'_>) {
    if !PENDING.swap(false, Ordering::Acquire) {
        return;
    }
    let records: Vec<_> = RECORDS.lock().drain(..).collect();
    let Ok(logger) = py
        .import(pyo3::intern!(py, "logging"))
        .and_then(|l| l.call_method1(pyo3::intern!(py, "getLogger"), ("tickwire",)))
    else {
        return;
    };
    for (level, message) in records {
        let py_level = match level {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug | log::Level::Trace => 10,
        };
        // A failing handler is the application's business; tickwire must not raise from it.
        let _ = logger.call_method1(pyo3::intern!(py, "log"), (py_level, message));
    }
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
