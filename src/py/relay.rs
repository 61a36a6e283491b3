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

/// A relay running on the I/O runtime: takes each shard's stream's batches and publishes them.
#[pyclass(frozen, module = "tickwire._core", name = "RelayCore")]
pub struct RelayCore {
    relay: Relay,
    /// One per shard, in the relay's shard order.
    streams: Vec<Py<StreamCore>>,
}

#[pymethods]
impl RelayCore {
    /// Relays `streams` (one per shard, each opened with `keep_raw=True`; nothing else may
    /// read them) to the JetStream stream `name` at `url`, with at most `window` publishes per
    /// shard awaiting acks.
    #[new]
    #[pyo3(signature = (streams, url, name, venue, window=4096))]
    fn py_new(
        streams: Vec<Py<StreamCore>>,
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
        if streams.is_empty() {
            return Err(Error::Config("a relay needs at least one stream".into()).into());
        }
        let queues = streams.iter().map(|s| s.get().queue()).collect();
        let config = RelayConfig {
            url,
            stream: name,
            venue,
            window,
        };
        let relay = spawn_relay(io().handle(), config, queues);
        Ok(RelayCore { relay, streams })
    }

    /// The relay's counters summed over its shards: published, bytes, acked, deduplicated, retried,
    /// in_flight, and `lag` (envelopes waiting in the relayed streams' queues); `ready` once
    /// the stream exists; `shards`, how many.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shards: Vec<Counters> = (0..self.streams.len()).map(|i| self.counters(i)).collect();
        let mut total = Counters {
            ready: true,
            ..Counters::default()
        };
        for c in &shards {
            total.add(c);
        }
        let d = total.to_dict(py)?;
        d.set_item("shards", shards.len())?;
        Ok(d)
    }

    /// [`RelayCore::stats`] for each shard, in shard order.
    fn shard_stats<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        (0..self.streams.len())
            .map(|i| self.counters(i).to_dict(py))
            .collect()
    }

    /// Stops taking messages and waits up to `timeout` seconds for the acks in flight; true
    /// when the relay ended within it. The relayed stream is closed after.
    #[pyo3(signature = (timeout=10.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> bool {
        self.relay.stop();
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let ended = py.detach(|| self.relay.wait(wait));
        // The client tasks see their closed queues and end their connections.
        for stream in &self.streams {
            stream.get().queue().close();
        }
        ended
    }
}

impl RelayCore {
    fn counters(&self, shard: usize) -> Counters {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let s = &self.relay.shards[shard];
        Counters {
            published: s.published.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            acked: s.acked.load(Relaxed),
            deduplicated: s.deduplicated.load(Relaxed),
            retried: s.retried.load(Relaxed),
            in_flight: s.in_flight.load(Relaxed),
            lag: self.streams[shard].get().queue().stats().depth as u64,
            ready: s.ready.load(Acquire),
        }
    }
}

/// One reading of a shard's counters (or their sum).
#[derive(Default)]
struct Counters {
    published: u64,
    bytes: u64,
    acked: u64,
    deduplicated: u64,
    retried: u64,
    in_flight: u64,
    lag: u64,
    ready: bool,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.published += other.published;
        self.bytes += other.bytes;
        self.acked += other.acked;
        self.deduplicated += other.deduplicated;
        self.retried += other.retried;
        self.in_flight += other.in_flight;
        self.lag += other.lag;
        self.ready &= other.ready;
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("published", self.published)?;
        d.set_item("bytes", self.bytes)?;
        d.set_item("acked", self.acked)?;
        d.set_item("deduplicated", self.deduplicated)?;
        d.set_item("retried", self.retried)?;
        d.set_item("in_flight", self.in_flight)?;
        d.set_item("lag", self.lag)?;
        d.set_item("ready", self.ready)?;
        Ok(d)
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
