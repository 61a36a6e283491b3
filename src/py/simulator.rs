//! `tickwire.Simulator` and `tickwire.Faults`: the bundled server, run on the servers' runtime.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::server_runtime;
use crate::record::ReadError;
use crate::sim::recorded::{RecordedConfig, RecordedServer, StartError};
use crate::sim::{Faults as SimFaults, HeartbeatSpelling, SimConfig, SimProtocol, SimServer};

/// `tickwire.Faults`: what the simulator breaks, and when.
#[pyclass(frozen, get_all, module = "tickwire._core", name = "Faults")]
#[derive(Clone)]
pub struct Faults {
    pub gap_every: Option<u64>,
    pub duplicate_every: Option<u64>,
    pub malformed_every: Option<u64>,
    pub disconnect_after_s: Option<f64>,
    pub stall_after_s: Option<f64>,
    pub stall_s: Option<f64>,
    pub reconnect_notice_after_s: Option<f64>,
    pub reconnect_within_s: f64,
    pub error_after_s: Option<f64>,
    pub book_drop_every: Option<u64>,
    pub book_cross_every: Option<u64>,
    pub book_snapshot_every: Option<u64>,
}

#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the keyword options of tickwire.Faults"
)]
#[pymethods]
impl Faults {
    #[new]
    #[pyo3(signature = (*, gap_every=None, duplicate_every=None, malformed_every=None,
        disconnect_after_s=None, stall_after_s=None, stall_s=None, reconnect_notice_after_s=None,
        reconnect_within_s=10.0, error_after_s=None, book_drop_every=None,
        book_cross_every=None, book_snapshot_every=None))]
    fn py_new(
        gap_every: Option<u64>,
        duplicate_every: Option<u64>,
        malformed_every: Option<u64>,
        disconnect_after_s: Option<f64>,
        stall_after_s: Option<f64>,
        stall_s: Option<f64>,
        reconnect_notice_after_s: Option<f64>,
        reconnect_within_s: f64,
        error_after_s: Option<f64>,
        book_drop_every: Option<u64>,
        book_cross_every: Option<u64>,
        book_snapshot_every: Option<u64>,
    ) -> PyResult<Self> {
        for (name, v) in [
            ("gap_every", gap_every),
            ("duplicate_every", duplicate_every),
            ("malformed_every", malformed_every),
            ("book_drop_every", book_drop_every),
            ("book_cross_every", book_cross_every),
            ("book_snapshot_every", book_snapshot_every),
        ] {
            if v == Some(0) {
                return Err(PyValueError::new_err(format!("{name} must be >= 1")));
            }
        }
        for (name, v) in [
            ("disconnect_after_s", disconnect_after_s),
            ("stall_after_s", stall_after_s),
            ("stall_s", stall_s),
            ("reconnect_notice_after_s", reconnect_notice_after_s),
            ("reconnect_within_s", Some(reconnect_within_s)),
            ("error_after_s", error_after_s),
        ] {
            if v.is_some_and(|s| !(s.is_finite() && (0.0..=86_400.0).contains(&s))) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be between 0 and 86400 seconds"
                )));
            }
        }
        Ok(Faults {
            gap_every,
            duplicate_every,
            malformed_every,
            disconnect_after_s,
            stall_after_s,
            stall_s,
            reconnect_notice_after_s,
            reconnect_within_s,
            error_after_s,
            book_drop_every,
            book_cross_every,
            book_snapshot_every,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Faults(gap_every={:?}, duplicate_every={:?}, malformed_every={:?}, \
             disconnect_after_s={:?}, stall_after_s={:?}, stall_s={:?}, \
             reconnect_notice_after_s={:?}, reconnect_within_s={}, error_after_s={:?}, \
             book_drop_every={:?}, book_cross_every={:?}, book_snapshot_every={:?})",
            self.gap_every,
            self.duplicate_every,
            self.malformed_every,
            self.disconnect_after_s,
            self.stall_after_s,
            self.stall_s,
            self.reconnect_notice_after_s,
            self.reconnect_within_s,
            self.error_after_s,
            self.book_drop_every,
            self.book_cross_every,
            self.book_snapshot_every
        )
    }
}

impl From<&Faults> for SimFaults {
    fn from(f: &Faults) -> Self {
        SimFaults {
            gap_every: f.gap_every,
            duplicate_every: f.duplicate_every,
            malformed_every: f.malformed_every,
            disconnect_after_s: f.disconnect_after_s,
            stall_after_s: f.stall_after_s,
            stall_s: f.stall_s,
            reconnect_notice_after_s: f.reconnect_notice_after_s,
            reconnect_within_s: f.reconnect_within_s,
            error_after_s: f.error_after_s,
            book_drop_every: f.book_drop_every,
            book_cross_every: f.book_cross_every,
            book_snapshot_every: f.book_snapshot_every,
        }
    }
}

/// The simulator's book as the client's book type, exact as the wire renders it: every value
/// is a decimal with 9 places (an integer of 10^-9 units, below 2^53), which division by
/// 10^9 rounds exactly as parsing the decimal does.
fn true_book(sequence: u64, b: &crate::sim::SimBook) -> crate::book::AnyBook {
    use crate::book::{AnyBook, L2Book, L3Book};
    let units = |n: i64| n as f64 / 1e9;
    let levels = |v: &[(i64, i64)]| {
        v.iter()
            .map(|&(px, size)| (units(px * b.tick), units(size)))
            .collect::<Vec<_>>()
    };
    let (bids, asks) = (levels(&b.bids), levels(&b.asks));
    match &b.l3 {
        None => {
            let mut x = L2Book::default();
            x.snapshot(&bids, &asks);
            x.sequence = sequence;
            x.time_exchange = b.time_exchange;
            x.valid = true;
            AnyBook::L2(x)
        }
        Some((bid_orders, ask_orders)) => {
            let entries = |v: &[(u128, i64, i64)]| {
                v.iter()
                    .map(|&(id, px, size)| {
                        let mut s = String::with_capacity(36);
                        crate::sim::fmt::push_uuid(&mut s, id, false);
                        crate::model::L3Entry {
                            id: Some(s.into()),
                            price: units(px * b.tick),
                            size: units(size),
                            update_type: None,
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let mut x = L3Book::default();
            x.snapshot(&entries(bid_orders), &entries(ask_orders));
            // Levels summed in integers, so they are exact rather than float sums.
            x.bids.replace(&bids);
            x.asks.replace(&asks);
            x.sequence = sequence;
            x.time_exchange = b.time_exchange;
            x.valid = true;
            AnyBook::L3(x)
        }
    }
}

/// `tickwire.SimStats`: what the simulator has done so far.
#[pyclass(frozen, get_all, module = "tickwire._core", name = "SimStats")]
pub struct SimStats {
    pub connections: u64,
    pub open_connections: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub generated: u64,
    pub finished: bool,
    pub pong_timeouts: u64,
}

#[pymethods]
impl SimStats {
    fn __repr__(&self) -> String {
        format!(
            "SimStats(connections={}, open_connections={}, messages_sent={}, bytes_sent={}, \
             generated={}, finished={}, pong_timeouts={})",
            self.connections,
            self.open_connections,
            self.messages_sent,
            self.bytes_sent,
            self.generated,
            self.finished,
            self.pong_timeouts
        )
    }
}

/// `tickwire.Simulator`: a CoinAPI or Moment server on a loopback port.
#[pyclass(frozen, module = "tickwire._core", name = "Simulator")]
pub struct Simulator {
    server: Mutex<Option<SimServer>>,
    /// With `replay=`: the recording's server instead of `server`.
    recorded: Mutex<Option<RecordedServer>>,
    url: String,
    port: u16,
    host: String,
    protocol: String,
    prices_url: Option<String>,
    orders_url: Option<String>,
}

type Sent = Vec<Vec<(String, Option<String>, Option<u64>, Option<String>)>>;

#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the keyword options of tickwire.Simulator"
)]
#[pymethods]
impl Simulator {
    #[new]
    #[pyo3(signature = (protocol="coinapi", *, host="127.0.0.1", port=0, rate=10_000, symbols=100,
        seed=0, total=None, ping_interval=None, heartbeat_spelling="heartbeat", api_key=None,
        faults=None, pong_grace=5.0, record=true, spin_pacing=false, generate=None, replay=None,
        speed=None))]
    fn py_new(
        py: Python<'_>,
        protocol: &str,
        host: &str,
        port: u16,
        rate: u64,
        symbols: usize,
        seed: u64,
        total: Option<u64>,
        ping_interval: Option<f64>,
        heartbeat_spelling: &str,
        api_key: Option<String>,
        faults: Option<Bound<'_, Faults>>,
        pong_grace: f64,
        record: bool,
        spin_pacing: bool,
        generate: Option<Vec<String>>,
        replay: Option<Bound<'_, PyAny>>,
        speed: Option<f64>,
    ) -> PyResult<Self> {
        if let Some(replay) = replay {
            if faults.is_some() {
                return Err(PyValueError::new_err(
                    "faults do not apply to a replay: it serves what was recorded",
                ));
            }
            return Self::serve_recording(py, &replay, speed, host, port);
        }
        if speed.is_some() {
            return Err(PyValueError::new_err("speed applies only with replay="));
        }
        let sim_protocol = match protocol {
            "coinapi" => SimProtocol::CoinApi,
            "moment" => SimProtocol::Moment,
            other => {
                return Err(PyValueError::new_err(format!(
                    "protocol must be \"coinapi\" or \"moment\", not {other:?}"
                )))
            }
        };
        let spelling = match heartbeat_spelling {
            "heartbeat" => HeartbeatSpelling::Heartbeat,
            "hearbeat" => HeartbeatSpelling::Hearbeat,
            other => {
                return Err(PyValueError::new_err(format!(
                    "heartbeat_spelling must be \"heartbeat\" or \"hearbeat\", not {other:?}"
                )))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(PyValueError::new_err(format!(
                    "{name} must be > 0 and at most a day, in seconds"
                )))
            }
        };
        let config = SimConfig {
            protocol: sim_protocol,
            rate,
            symbols: symbols.max(1),
            seed,
            total,
            ping_interval: ping_interval
                .map(|v| positive("ping_interval", v))
                .transpose()?,
            pong_grace: positive("pong_grace", pong_grace)?,
            heartbeat_spelling: spelling,
            api_key,
            faults: faults
                .as_ref()
                .map(|f| SimFaults::from(f.get()))
                .unwrap_or_default(),
            record,
            spin_pacing,
            generate,
        };
        let host_owned = host.to_string();
        let server = py
            .detach(|| SimServer::start(server_runtime().handle(), &host_owned, port, config))
            .map_err(|e| PyOSError::new_err(format!("simulator: {e}")))?;
        Ok(Simulator {
            url: server.url(),
            port: server.local_addr().port(),
            host: server.local_addr().ip().to_string(),
            protocol: protocol.to_string(),
            prices_url: server.url_for("prices"),
            orders_url: server.url_for("orders"),
            server: Mutex::new(Some(server)),
            recorded: Mutex::new(None),
        })
    }

    /// The CoinAPI feed URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    #[getter]
    fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The Moment stream URL for `"prices"` or `"orders"`.
    fn url_for(&self, stream: &str) -> PyResult<String> {
        match stream {
            "prices" => self.prices_url.clone(),
            "orders" => self.orders_url.clone(),
            _ => None,
        }
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "no {stream:?} stream on a {} simulator",
                self.protocol
            ))
        })
    }

    /// Per connection, in accept order: `(type, key, sequence, uuid)` of every data message.
    fn sent(&self, py: Python<'_>) -> Sent {
        let guard = self.server.lock();
        let Some(server) = guard.as_ref() else {
            return Vec::new();
        };
        let records = py.detach(|| server.sent());
        records
            .into_iter()
            .map(|conn| {
                conn.into_iter()
                    .map(|r| (r.msg_type, r.key, r.seq, r.uuid))
                    .collect()
            })
            .collect()
    }

    /// The simulator's own `book` / `book_l3` book of `symbol_id` as of a message it sent:
    /// on `connection` (accept order, as `sent()`; default the last connection that sent
    /// it), at `sequence` (that connection's number; default its last message). `None` if
    /// no such message was sent (or recording is off).
    #[pyo3(signature = (symbol_id, r#type="book", *, connection=None, sequence=None))]
    fn book(
        &self,
        symbol_id: &str,
        r#type: &str,
        connection: Option<usize>,
        sequence: Option<u64>,
    ) -> PyResult<Option<super::OrderBook>> {
        let l3 = match r#type {
            "book" => false,
            "book_l3" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "type must be \"book\" or \"book_l3\", not {other:?}"
                )))
            }
        };
        let guard = self.server.lock();
        let Some(server) = guard.as_ref() else {
            return Ok(None);
        };
        Ok(server
            .book(symbol_id, l3, connection, sequence)
            .map(|(seq, b)| super::OrderBook::fixed(true_book(seq, &b), symbol_id.into())))
    }

    fn stats(&self) -> SimStats {
        if let Some(r) = self.recorded.lock().as_ref() {
            let s = r.stats();
            let open = s.open_connections.load(Ordering::Relaxed);
            let messages = s.messages_sent.load(Ordering::Relaxed);
            return SimStats {
                connections: s.connections.load(Ordering::Relaxed),
                open_connections: open,
                messages_sent: messages,
                bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
                generated: messages,
                finished: s.exhausted.load(Ordering::Relaxed),
                pong_timeouts: 0,
            };
        }
        let guard = self.server.lock();
        let s = guard.as_ref().map(SimServer::stats).unwrap_or_default();
        SimStats {
            connections: s.connections,
            open_connections: s.open_connections,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            generated: s.generated,
            finished: s.finished,
            pong_timeouts: s.pong_timeouts,
        }
    }

    /// Stops the server and closes its connections; idempotent.
    fn close(&self, py: Python<'_>) {
        let server = self.server.lock().take();
        if let Some(s) = server {
            py.detach(|| s.shutdown());
        }
        if let Some(r) = self.recorded.lock().take() {
            r.shutdown();
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
        format!(
            "Simulator(protocol={:?}, url={:?})",
            self.protocol, self.url
        )
    }
}

impl Simulator {
    /// `Simulator(replay=...)`: serves the recording's connections (`sim::recorded`).
    fn serve_recording(
        py: Python<'_>,
        replay: &Bound<'_, PyAny>,
        speed: Option<f64>,
        host: &str,
        port: u16,
    ) -> PyResult<Self> {
        let paths: Vec<PathBuf> = match replay.extract::<PathBuf>() {
            Ok(p) => vec![p],
            Err(_) => replay.extract::<Vec<PathBuf>>().map_err(|_| {
                PyTypeError::new_err("replay must be a path or a list of paths to .twr files")
            })?,
        };
        if speed.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            return Err(PyValueError::new_err(
                "speed must be a finite number > 0, or None (as fast as possible)",
            ));
        }
        let host_owned = host.to_string();
        let config = RecordedConfig { paths, speed };
        let server = py
            .detach(|| RecordedServer::start(server_runtime().handle(), &host_owned, port, config))
            .map_err(|e| match e {
                StartError::Io(e) => PyOSError::new_err(format!("simulator: {e}")),
                StartError::Recording(ReadError::Io { ref path, .. })
                    if !Path::new(path).exists() =>
                {
                    PyFileNotFoundError::new_err(e.to_string())
                }
                StartError::Recording(ReadError::Io { .. }) => PyOSError::new_err(e.to_string()),
                other => PyValueError::new_err(other.to_string()),
            })?;
        let url = server.url();
        let moment = server.venue() == "moment";
        Ok(Simulator {
            port: server.local_addr().port(),
            host: server.local_addr().ip().to_string(),
            protocol: server.venue().to_string(),
            // Any path is served the same; these are the ones a Moment client expects.
            prices_url: moment.then(|| format!("{url}data/price-stream/")),
            orders_url: moment.then(|| format!("{url}trading/order-stream/")),
            url,
            server: Mutex::new(None),
            recorded: Mutex::new(Some(server)),
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Faults>()?;
    m.add_class::<SimStats>()?;
    m.add_class::<Simulator>()?;
    Ok(())
}
