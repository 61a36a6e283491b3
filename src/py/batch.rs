//! `tickwire.Batch`: the messages of one hand-off, turned into Python objects once, on first
//! look, on the consumer's thread.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::exceptions::PyIndexError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use super::messages as m;
use crate::model::{Envelope, Key, Msg, OrderEvent, OrderEventKind};

/// Python strings for interned keys, shared by all batches of a stream, so a symbol id is
/// one Python object however many messages carry it.
#[derive(Default)]
pub struct KeyCache {
    strings: HashMap<Key, Py<PyString>, foldhash::fast::RandomState>,
}

/// Above this many keys the cache starts over (bounded memory under hostile input).
const MAX_CACHED: usize = 1 << 16;

impl KeyCache {
    fn get(&mut self, py: Python<'_>, k: &Key) -> Py<PyString> {
        if let Some(s) = self.strings.get(k) {
            return s.clone_ref(py);
        }
        if self.strings.len() >= MAX_CACHED {
            self.strings.clear();
        }
        let s = PyString::new(py, k).unbind();
        self.strings.insert(k.clone(), s.clone_ref(py));
        s
    }
}

fn s(py: Python<'_>, text: &Bound<'_, PyString>) -> Py<PyString> {
    let _ = py;
    text.clone().unbind()
}

fn object(py: Python<'_>, e: &Envelope, keys: &mut KeyCache) -> PyResult<Py<PyAny>> {
    let recv_ns = e.recv_ns;
    let raw = e.raw.as_deref().map(String::from);
    // The two commonest types are built from references; the rest from a clone (envelopes stay
    // in the batch for `to_arrow`; interned keys clone as reference counts).
    match &e.msg {
        Msg::Trade(t) => {
            return Ok(Py::new(
                py,
                m::Trade {
                    type_: s(py, intern!(py, "trade")),
                    recv_ns,
                    symbol_id: keys.get(py, &t.symbol_id),
                    sequence: t.sequence,
                    time_exchange: t.time_exchange,
                    time_coinapi: t.time_coinapi,
                    uuid: String::from(&*t.uuid),
                    price: t.price,
                    size: t.size,
                    taker_side: keys.get(py, &t.taker_side),
                    raw,
                },
            )?
            .into_any())
        }
        Msg::Quote(q) => {
            return Ok(Py::new(
                py,
                m::Quote {
                    type_: s(py, intern!(py, "quote")),
                    recv_ns,
                    symbol_id: keys.get(py, &q.symbol_id),
                    sequence: q.sequence,
                    time_exchange: q.time_exchange,
                    time_coinapi: q.time_coinapi,
                    ask_price: q.ask_price,
                    ask_size: q.ask_size,
                    bid_price: q.bid_price,
                    bid_size: q.bid_size,
                    raw,
                },
            )?
            .into_any())
        }
        _ => {}
    }
    let obj: Py<PyAny> = match e.msg.clone() {
        // Built from references above; kept as an error, never a panic across the FFI line.
        Msg::Trade(_) | Msg::Quote(_) => {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "tickwire: trade/quote reached the cloning path",
            ))
        }
        Msg::Book(b) => Py::new(
            py,
            m::Book {
                type_: PyString::intern(py, b.kind.wire()).unbind(),
                recv_ns,
                symbol_id: keys.get(py, &b.symbol_id),
                sequence: b.sequence,
                time_exchange: b.time_exchange,
                time_coinapi: b.time_coinapi,
                is_snapshot: b.is_snapshot,
                asks: b.asks,
                bids: b.bids,
                raw,
            },
        )?
        .into_any(),
        Msg::BookL3(b) => {
            let side = |v: Vec<crate::model::L3Entry>| {
                v.into_iter()
                    .map(|x| {
                        (
                            x.id.map(String::from),
                            x.price,
                            x.size,
                            x.update_type.map(|u| u.to_string()),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            Py::new(
                py,
                m::BookL3 {
                    type_: s(py, intern!(py, "book_l3")),
                    recv_ns,
                    symbol_id: keys.get(py, &b.symbol_id),
                    sequence: b.sequence,
                    time_exchange: b.time_exchange,
                    time_coinapi: b.time_coinapi,
                    is_snapshot: b.is_snapshot,
                    asks: side(b.asks),
                    bids: side(b.bids),
                    raw,
                },
            )?
            .into_any()
        }
        Msg::Ohlcv(o) => Py::new(
            py,
            m::Ohlcv {
                type_: s(py, intern!(py, "ohlcv")),
                recv_ns,
                symbol_id: keys.get(py, &o.symbol_id),
                sequence: o.sequence,
                period_id: o.period_id.as_ref().map(|k| keys.get(py, k)),
                time_period_start: o.time_period_start,
                time_period_end: o.time_period_end,
                time_open: o.time_open,
                time_close: o.time_close,
                price_open: o.price_open,
                price_high: o.price_high,
                price_low: o.price_low,
                price_close: o.price_close,
                volume_traded: o.volume_traded,
                trades_count: o.trades_count,
                raw,
            },
        )?
        .into_any(),
        Msg::Exrate(x) => Py::new(
            py,
            m::Exrate {
                type_: s(py, intern!(py, "exrate")),
                recv_ns,
                asset_id_base: keys.get(py, &x.asset_id_base),
                asset_id_quote: keys.get(py, &x.asset_id_quote),
                rate_type: keys.get(py, &x.rate_type),
                time: x.time,
                rate: x.rate,
                raw,
            },
        )?
        .into_any(),
        Msg::Index(x) => Py::new(
            py,
            m::Index {
                type_: s(py, intern!(py, "index")),
                recv_ns,
                index_id: keys.get(py, &x.index_id),
                sequence: x.sequence,
                time_coinapi: x.time_coinapi,
                value: x.value,
                raw,
            },
        )?
        .into_any(),
        Msg::Heartbeat => Py::new(
            py,
            m::Heartbeat {
                type_: s(py, intern!(py, "heartbeat")),
                recv_ns,
                raw,
            },
        )?
        .into_any(),
        Msg::Reconnect(r) => Py::new(
            py,
            m::ReconnectNotice {
                type_: s(py, intern!(py, "reconnect")),
                recv_ns,
                within_seconds: r.within_seconds,
                before_time: r.before_time,
                raw,
            },
        )?
        .into_any(),
        Msg::Error(x) => Py::new(
            py,
            m::ServerError {
                type_: s(py, intern!(py, "error")),
                recv_ns,
                message: x.message.into(),
                error_type: x.error_type.map(String::from),
                raw,
            },
        )?
        .into_any(),
        Msg::Metadata(x) => Py::new(
            py,
            m::Metadata {
                type_: keys.get(py, &x.kind),
                recv_ns,
                raw,
                json: x.json.into(),
            },
        )?
        .into_any(),
        Msg::Unknown(u) => Py::new(
            py,
            m::Unknown {
                type_: PyString::new(py, &u.kind).unbind(),
                recv_ns,
                raw: Some(raw.unwrap_or_else(|| u.raw.into())),
            },
        )?
        .into_any(),
        Msg::PriceUpdate(p) => Py::new(
            py,
            m::PriceUpdate {
                type_: s(py, intern!(py, "price_update")),
                recv_ns,
                instrument_id: keys.get(py, &p.instrument_id),
                isin: p.isin.as_ref().map(|k| keys.get(py, k)),
                cusip: p.cusip.as_ref().map(|k| keys.get(py, k)),
                timestamp: p.timestamp,
                price: p.price,
                yield_to_worst: p.yield_to_worst,
                yield_to_maturity: p.yield_to_maturity,
                bid_price: p.bid_price,
                bid_size: p.bid_size,
                ask_price: p.ask_price,
                ask_size: p.ask_size,
                raw,
                json: p.json.into(),
            },
        )?
        .into_any(),
        Msg::OrderEvent(o) => order_event(py, *o, recv_ns, raw, keys)?,
        Msg::Success { msg } => Py::new(
            py,
            m::Success {
                type_: s(py, intern!(py, "success")),
                recv_ns,
                msg: msg.into(),
                raw,
            },
        )?
        .into_any(),
        Msg::Subscription { instrument_id, msg } => Py::new(
            py,
            m::Subscription {
                type_: s(py, intern!(py, "subscription")),
                recv_ns,
                instrument_id: instrument_id.map(String::from),
                msg: msg.into(),
                raw,
            },
        )?
        .into_any(),
        Msg::Connected { url, attempt } => Py::new(
            py,
            m::Connected {
                type_: s(py, intern!(py, "connected")),
                recv_ns,
                url: url.into(),
                attempt,
            },
        )?
        .into_any(),
        Msg::Disconnected { reason, code } => Py::new(
            py,
            m::Disconnected {
                type_: s(py, intern!(py, "disconnected")),
                recv_ns,
                reason: reason.into(),
                code,
            },
        )?
        .into_any(),
        Msg::Gap(g) => Py::new(
            py,
            m::Gap {
                type_: s(py, intern!(py, "gap")),
                recv_ns,
                msg_type: PyString::intern(py, g.msg_type).unbind(),
                key: keys.get(py, &g.key),
                expected: g.expected,
                received: g.received,
            },
        )?
        .into_any(),
        Msg::Stale { silence_s } => Py::new(
            py,
            m::Stale {
                type_: s(py, intern!(py, "stale")),
                recv_ns,
                silence_s,
            },
        )?
        .into_any(),
        Msg::Dropped { count, reason } => Py::new(
            py,
            m::Dropped {
                type_: s(py, intern!(py, "dropped")),
                recv_ns,
                count,
                reason: reason.into(),
            },
        )?
        .into_any(),
        Msg::Switched {
            held,
            overlap_dropped,
        } => Py::new(
            py,
            m::Switched {
                type_: s(py, intern!(py, "switched")),
                recv_ns,
                held,
                overlap_dropped,
            },
        )?
        .into_any(),
        Msg::BookReset {
            book_type,
            symbol_id,
            reason,
        } => Py::new(
            py,
            m::BookReset {
                type_: s(py, intern!(py, "book_reset")),
                recv_ns,
                symbol_id: keys.get(py, &symbol_id),
                reason: PyString::intern(py, reason).unbind(),
                book_type: PyString::intern(py, book_type).unbind(),
            },
        )?
        .into_any(),
        Msg::BookSynced {
            book_type,
            symbol_id,
        } => Py::new(
            py,
            m::BookSynced {
                type_: s(py, intern!(py, "book_synced")),
                recv_ns,
                symbol_id: keys.get(py, &symbol_id),
                book_type: PyString::intern(py, book_type).unbind(),
            },
        )?
        .into_any(),
        Msg::ParseError { reason, raw, count } => Py::new(
            py,
            m::ParseError {
                type_: s(py, intern!(py, "parse_error")),
                recv_ns,
                reason: reason.into(),
                raw: raw.into(),
                count,
            },
        )?
        .into_any(),
    };
    Ok(obj)
}

/// Builds one of the three order-stream classes; they share every field.
fn order_event(
    py: Python<'_>,
    o: OrderEvent,
    recv_ns: i64,
    raw: Option<String>,
    keys: &mut KeyCache,
) -> PyResult<Py<PyAny>> {
    macro_rules! build {
        ($class:ident) => {
            Py::new(
                py,
                m::$class {
                    type_: PyString::intern(py, o.kind.wire()).unbind(),
                    recv_ns,
                    msg_number: o.msg_number,
                    event_type: keys.get(py, &o.event_type),
                    order_id: o.order_id.map(String::from),
                    status: o.status.as_ref().map(|k| keys.get(py, k)),
                    side: o.side.as_ref().map(|k| keys.get(py, k)),
                    order_type: o.order_type.as_ref().map(|k| keys.get(py, k)),
                    cusip: o.cusip.as_ref().map(|k| keys.get(py, k)),
                    isin: o.isin.as_ref().map(|k| keys.get(py, k)),
                    limit_price: o.limit_price,
                    filled_amount: o.filled_amount,
                    filled_avg_price: o.filled_avg_price,
                    raw,
                    json: o.json.into(),
                },
            )?
            .into_any()
        };
    }
    Ok(match o.kind {
        OrderEventKind::Order => build!(OrderUpdate),
        OrderEventKind::Allocation => build!(AllocationUpdate),
        OrderEventKind::System => build!(SystemUpdate),
    })
}

/// One batch of messages and events, in arrival order.
#[pyclass(frozen, module = "tickwire._core", name = "Batch")]
pub struct Batch {
    items: Vec<Envelope>,
    len: usize,
    first_recv_ns: i64,
    keys: Arc<Mutex<KeyCache>>,
    objects: OnceLock<Py<PyList>>,
}

impl Batch {
    pub fn new(items: Vec<Envelope>, keys: Arc<Mutex<KeyCache>>) -> Self {
        Batch {
            len: items.len(),
            first_recv_ns: items.first().map_or(0, |e| e.recv_ns),
            items,
            keys,
            objects: OnceLock::new(),
        }
    }

    fn objects<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyList>> {
        if let Some(l) = self.objects.get() {
            return Ok(l.bind(py));
        }
        let mut keys = self.keys.lock();
        let objects = self
            .items
            .iter()
            .map(|e| object(py, e, &mut keys))
            .collect::<PyResult<Vec<_>>>()?;
        let list = PyList::new(py, objects)?;
        let _ = self.objects.set(list.unbind());
        Ok(self
            .objects
            .get()
            .map(|l| l.bind(py))
            .expect("set just above"))
    }
}

#[pymethods]
impl Batch {
    fn __len__(&self) -> usize {
        self.len
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.objects(py)?.as_any().try_iter()?.into_any())
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let n = self.len as isize;
        let i = if index < 0 { index + n } else { index };
        if i < 0 || i >= n {
            return Err(PyIndexError::new_err("batch index out of range"));
        }
        self.objects(py)?.get_item(i as usize)
    }

    /// Receive time (ns) of the batch's first frame.
    #[getter]
    fn recv_ns(&self) -> i64 {
        self.first_recv_ns
    }

    fn __repr__(&self) -> String {
        format!("Batch(len={}, recv_ns={})", self.len, self.first_recv_ns)
    }

    /// The batch's trades, quotes, index values, exchange rates and prices as columns:
    /// `{type: ArrowBatch}`, each exporting an Arrow record batch through
    /// `__arrow_c_array__` (e.g. `pyarrow.record_batch(b["trade"])`). Other messages and events
    /// are only in the object view.
    fn to_arrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        super::arrow::to_arrow(py, &self.items)
    }
}
