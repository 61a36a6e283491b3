//! `RelayCore` and `nats_stream`: the bindings of the NATS relay and the `Nats` feed.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::io;
use super::stream::StreamCore;
use crate::delivery::{Overflow, Queue};
use crate::error::Error;
use crate::relay::consume::{self, ConsumeConfig, Start};
use crate::relay::wire::Venue;
use crate::relay::{spawn_relay, Relay, RelayConfig};

/// A relay running on the I/O runtime: takes a stream's batches and publishes them.
#[pyclass(frozen, module = "tickwire._core", name = "RelayCore")]
pub struct RelayCore {
    relay: Relay,
    stream: Py<StreamCore>,
}

#[pymethods]
impl RelayCore {
    /// Relays `stream` (opened with `keep_raw=True`; nothing else may read it) to the
    /// JetStream stream `name` at `url`, with at most `window` publishes awaiting acks.
    #[new]
    #[pyo3(signature = (stream, url, name, venue, window=4096))]
    fn py_new(
        stream: Py<StreamCore>,
        url: String,
        name: String,
        venue: &str,
        window: usize,
    ) -> PyResult<Self> {
        let venue = match venue {
            "coinapi" => Venue::CoinApi,
            "moment" => Venue::Moment,
            other => {
                return Err(Error::Config(format!(
                    "venue must be coinapi or moment, not {other:?}"
                ))
                .into())
            }
        };
        if window == 0 {
            return Err(Error::Config("window must be positive".into()).into());
        }
        let queue = stream.get().queue();
        let config = RelayConfig {
            url,
            stream: name,
            venue,
            window,
        };
        let relay = spawn_relay(io().handle(), config, queue);
        Ok(RelayCore { relay, stream })
    }

    /// The relay's counters: published, acked, deduplicated, retried, in_flight, and `lag`
    /// (envelopes waiting in the relayed stream's queue); `ready` once the stream exists.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.relay.stats;
        let d = PyDict::new(py);
        d.set_item("published", s.published.load(Relaxed))?;
        d.set_item("acked", s.acked.load(Relaxed))?;
        d.set_item("deduplicated", s.deduplicated.load(Relaxed))?;
        d.set_item("retried", s.retried.load(Relaxed))?;
        d.set_item("in_flight", s.in_flight.load(Relaxed))?;
        d.set_item("lag", self.stream.get().queue().stats().depth)?;
        d.set_item("ready", s.ready.load(std::sync::atomic::Ordering::Acquire))?;
        Ok(d)
    }

    /// Stops taking messages and waits up to `timeout` seconds for the acks in flight; true
    /// when the relay ended within it. The relayed stream is closed after.
    #[pyo3(signature = (timeout=10.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> bool {
        self.relay.stop();
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let ended = py.detach(|| self.relay.wait(wait));
        // The client task sees the closed queue and ends its connection.
        self.stream.get().queue().close();
        ended
    }
}

/// A `StreamCore` fed by JetStream consumers instead of a venue connection. `start`: `"all"`,
/// `"new"` or a stream sequence.
#[pyfunction]
#[pyo3(signature = (url, *, stream, subjects, durable, start, batch_size, queue_size,
    overflow, connect_timeout))]
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors tickwire.Nats and connect's options"
)]
fn nats_stream(
    url: String,
    stream: String,
    subjects: Vec<String>,
    durable: Option<String>,
    start: &Bound<'_, PyAny>,
    batch_size: usize,
    queue_size: usize,
    overflow: &str,
    connect_timeout: f64,
) -> PyResult<StreamCore> {
    let start = if let Ok(seq) = start.extract::<u64>() {
        if seq == 0 {
            return Err(Error::Config("a start sequence counts from 1".into()).into());
        }
        Start::Sequence(seq)
    } else {
        match start.extract::<String>()?.as_str() {
            "all" => Start::All,
            "new" => Start::New,
            other => {
                return Err(Error::Config(format!(
                    "start must be \"all\", \"new\" or a stream sequence, not {other:?}"
                ))
                .into())
            }
        }
    };
    let overflow = match overflow {
        "block" => Overflow::Block,
        "drop_oldest" => Overflow::DropOldest,
        "conflate" => Overflow::Conflate,
        other => {
            return Err(Error::Config(format!(
                "overflow must be \"block\", \"drop_oldest\" or \"conflate\", not {other:?}"
            ))
            .into())
        }
    };
    if batch_size == 0 || queue_size == 0 {
        return Err(Error::Config("batch_size and queue_size must be positive".into()).into());
    }
    if !(connect_timeout.is_finite() && connect_timeout > 0.0) {
        return Err(Error::Config("connect_timeout must be positive".into()).into());
    }
    let (wake, watch) = super::runtime::wake_ups()
        .map_err(|e| Error::Config(format!("cannot create the wake-up pipe: {e}")))?;
    let queue = Queue::with_max_bytes(
        queue_size,
        crate::delivery::queue::DEFAULT_MAX_BYTES,
        batch_size,
        overflow,
        Some(wake),
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shown = format!("{url} ({stream})");
    let config = ConsumeConfig {
        url,
        stream,
        subjects,
        durable,
        start,
        batch_size,
        connect_timeout: Duration::from_secs_f64(connect_timeout.min(3600.0)),
    };
    consume::spawn(io().handle(), config, queue.clone(), rx);
    Ok(StreamCore::fed(
        queue,
        watch,
        tx,
        shown,
        Arc::new(crate::client::Status::default()),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RelayCore>()?;
    m.add_function(wrap_pyfunction!(nats_stream, m)?)?;
    Ok(())
}
