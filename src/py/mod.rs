//! The PyO3 bindings: the only code that touches the interpreter.

mod arrow;
mod batch;
mod book;
mod errors;
mod load;
mod logs;
mod messages;
mod recording;
mod relay;
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
    logs::install(m.py())?;
    logs::register(m)?;
    runtime::install_fork_hooks();
    errors::register(m)?;
    messages::register(m)?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<arrow::ArrowBatch>()?;
    book::register(m)?;
    stream::register(m)?;
    simulator::register(m)?;
    load::register(m)?;
    recording::register(m)?;
    relay::register(m)?;
    m.add_function(wrap_pyfunction!(io_mode, m)?)?;
    add_message_union(m)
}

/// `Message`: the union of every message and event class, for annotations and `isinstance`.
/// Built from what is registered (the classes with `_restore`, see `messages`), so a class
/// added later is a member by being registered.
fn add_message_union(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let mut union: Option<Bound<'_, PyAny>> = None;
    for (_, value) in m.dict().iter() {
        let is_message =
            value.is_instance_of::<pyo3::types::PyType>() && value.hasattr("_restore")?;
        if is_message {
            union = Some(match union {
                None => value,
                Some(u) => u.call_method1(pyo3::intern!(py, "__or__"), (value,))?,
            });
        }
    }
    if let Some(u) = union {
        m.add("Message", u)?;
    }
    Ok(())
}
