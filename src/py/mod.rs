//! The PyO3 bindings: the only code that touches the interpreter.

mod arrow;
mod batch;
mod errors;
mod logs;
mod messages;
mod replay;
mod simulator;
mod stream;

use std::sync::OnceLock;

use pyo3::prelude::*;

/// The process-wide runtime every stream runs on. One worker by default: a connection task
/// keeps at most one busy, and on the few-core machines tickwire targets a second worker sharing
/// the consumer's CPU only adds wake-ups (10k msg/s paced: 2.6 against 3.2-3.5 CPU s/M, p99
/// 90-101 against 152-201 µs; full speed no worse; BENCHMARKS.md).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| build_runtime("tickwire-io", io_threads()))
}

/// The runtime of tickwire's own servers (simulator, replay load), apart from the streams' so
/// that an in-process server never takes a stream's I/O thread.
pub(crate) fn server_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| build_runtime("tickwire-sim", 2))
}

fn build_runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tickwire: cannot start a runtime")
}

const DEFAULT_IO_THREADS: usize = 1;

/// `TICKWIRE_IO_THREADS` (1-16), else 1; a value out of range is logged and ignored.
fn io_threads() -> usize {
    let Ok(v) = std::env::var("TICKWIRE_IO_THREADS") else {
        return DEFAULT_IO_THREADS;
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=16).contains(&n) => n,
        _ => {
            log::warn!(
                "TICKWIRE_IO_THREADS={v:?} is not a number from 1 to 16; using {DEFAULT_IO_THREADS}"
            );
            DEFAULT_IO_THREADS
        }
    }
}

/// Registers every class, exception and function on `tickwire._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    logs::install();
    errors::register(m)?;
    messages::register(m)?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<arrow::ArrowBatch>()?;
    stream::register(m)?;
    simulator::register(m)?;
    replay::register(m)?;
    Ok(())
}
