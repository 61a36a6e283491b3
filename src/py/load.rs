//! `tickwire._core.LoadServer`: the benchmark's pre-rendered CoinAPI load (see
//! `sim::load`), on the servers' runtime.

use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

use super::server_runtime;
use crate::sim::load::{LoadConfig, LoadServer as Server};

/// `tickwire._core.LoadServer`: serves `messages` pre-rendered trade/quote/book5/index
/// messages over and over, sequence numbers continuing from pass to pass.
#[pyclass(frozen, module = "tickwire._core", name = "LoadServer")]
pub struct LoadServer {
    server: Mutex<Option<Server>>,
    url: String,
}

#[pymethods]
impl LoadServer {
    #[new]
    #[pyo3(signature = (*, host="127.0.0.1", port=0, messages=100_000, symbols=100, seed=0,
        rate=0, compression=false))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the keyword options of LoadServer"
    )]
    fn py_new(
        py: Python<'_>,
        host: &str,
        port: u16,
        messages: usize,
        symbols: usize,
        seed: u64,
        rate: u64,
        compression: bool,
    ) -> PyResult<Self> {
        if !(1..=10_000_000).contains(&messages) {
            return Err(PyValueError::new_err(
                "messages must be between 1 and 10,000,000",
            ));
        }
        let config = LoadConfig {
            messages,
            symbols: symbols.max(1),
            seed,
            rate,
            compression,
        };
        let host = host.to_string();
        let server = py
            .detach(|| Server::start(server_runtime().handle(), &host, port, config))
            .map_err(|e| PyOSError::new_err(format!("load server: {e}")))?;
        Ok(LoadServer {
            url: server.url(),
            server: Mutex::new(Some(server)),
        })
    }

    /// The CoinAPI feed URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// `{connections, messages_sent, payload_bytes, wire_bytes}` so far.
    fn stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let guard = self.server.lock();
        let mut out = std::collections::HashMap::new();
        if let Some(s) = guard.as_ref() {
            let st = s.stats();
            out.insert("connections", st.connections.load(Ordering::Relaxed));
            out.insert("messages_sent", st.messages_sent.load(Ordering::Relaxed));
            out.insert("payload_bytes", st.payload_bytes.load(Ordering::Relaxed));
            out.insert("wire_bytes", st.wire_bytes.load(Ordering::Relaxed));
        }
        out
    }

    /// Stops the server and ends its connections; idempotent.
    fn close(&self, py: Python<'_>) {
        let server = self.server.lock().take();
        if let Some(s) = server {
            py.detach(|| s.shutdown());
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        format!("LoadServer(url={:?})", self.url)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LoadServer>()
}
