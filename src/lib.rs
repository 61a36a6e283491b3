//! tickwire's core: a real-time market-data client whose socket, timers, parsing and
//! bookkeeping run in Rust, handing typed message batches to Python.

pub mod book;
pub mod client;
pub mod codec;
pub mod delivery;
pub mod error;
pub mod feed;
pub mod model;
pub mod protocol;
pub mod py;
pub mod sim;
pub mod transport;

use pyo3::prelude::*;

/// The extension module `tickwire._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
