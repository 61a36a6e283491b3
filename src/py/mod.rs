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

/// The process-wide runtime every stream (and the simulator) runs on. Two workers: the machine
/// class tickwire targets has few cores, and one connection task keeps one busy at most.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads())
            .thread_name("tickwire-io")
            .enable_all()
            .build()
            .expect("tickwire: cannot start the I/O runtime")
    })
}

/// `TICKWIRE_IO_THREADS` (1-16), else 2; a value out of range is logged and ignored.
fn io_threads() -> usize {
    let Ok(v) = std::env::var("TICKWIRE_IO_THREADS") else {
        return 2;
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=16).contains(&n) => n,
        _ => {
            log::warn!("TICKWIRE_IO_THREADS={v:?} is not a number from 1 to 16; using 2");
            2
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
