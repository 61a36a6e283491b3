//! The PyO3 bindings: the only code that touches the interpreter.

mod arrow;
mod batch;
mod book;
mod errors;
mod logs;
mod messages;
mod replay;
mod runtime;
mod simulator;
mod stream;

use pyo3::prelude::*;

pub(crate) use book::OrderBook;
pub(crate) use runtime::{io, server_runtime};

/// How this process runs its streams' I/O: `"inline"` or `"threads"` (`TICKWIRE_IO`).
#[pyfunction]
fn io_mode() -> &'static str {
    io().mode()
}

/// Registers every class, exception and function on `tickwire._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    logs::install();
    errors::register(m)?;
    messages::register(m)?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<arrow::ArrowBatch>()?;
    book::register(m)?;
    stream::register(m)?;
    simulator::register(m)?;
    replay::register(m)?;
    m.add_function(wrap_pyfunction!(io_mode, m)?)?;
    Ok(())
}
