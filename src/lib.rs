//! tickwire's core: a real-time market-data client whose socket, timers, parsing and
//! bookkeeping run in Rust, handing typed message batches to Python.

pub mod book;
pub mod client;
pub mod codec;
pub mod delivery;
pub mod error;
pub mod feed;
/// The fuzz targets' bodies (`fuzz/`), also run by `cargo test`.
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod protocol;
#[cfg(feature = "python")]
pub mod py;
pub mod record;
pub mod relay;
pub mod sim;
pub mod transport;

/// The extension module `tickwire._core`.
#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    py::register(m)
}
