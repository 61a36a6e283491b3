//! The Python message and event classes: frozen, attribute names as on the wire, built on the
//! consumer's thread when a batch is first looked into.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// Builds a `Name(field=value, ...)` repr from the class's attribute list.
fn repr_of(obj: &Bound<'_, PyAny>, name: &str, fields: &[&str]) -> PyResult<String> {
    let mut out = format!("{name}(");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(f);
        out.push('=');
        out.push_str(&obj.getattr(*f)?.repr()?.to_cow()?);
    }
    out.push(')');
    Ok(out)
}

/// Declares one frozen message class with its `type`, `recv_ns`, the given fields and a repr.
/// `raw` is the message's wire text when the stream keeps it.
macro_rules! message_class {
    ($rust:ident, $name:literal, [$($field:ident : $ty:ty),* $(,)?]) => {
        #[doc = concat!("`tickwire.", $name, "`")]
        #[pyclass(frozen, get_all, freelist = 4096, module = "tickwire._core", name = $name)]
        pub struct $rust {
            #[pyo3(name = "type")]
            pub type_: Py<PyString>,
            pub recv_ns: i64,
            $(pub $field: $ty,)*
            pub raw: Option<String>,
        }

        #[pymethods]
        impl $rust {
            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                repr_of(slf.as_any(), $name, &[$(stringify!($field)),*])
            }
        }
    };
}

/// Like `message_class!`, for Moment data messages: they also keep the whole message as JSON
/// text and expose it parsed as `fields` (computed on access), since the wire shape is only
/// partly documented and unknown fields must stay reachable.
macro_rules! fields_class {
    ($rust:ident, $name:literal, [$($field:ident : $ty:ty),* $(,)?]) => {
        #[doc = concat!("`tickwire.", $name, "`")]
        #[pyclass(frozen, module = "tickwire._core", name = $name)]
        pub struct $rust {
            #[pyo3(get, name = "type")]
            pub type_: Py<PyString>,
            #[pyo3(get)]
            pub recv_ns: i64,
            $(#[pyo3(get)] pub $field: $ty,)*
            #[pyo3(get)]
            pub raw: Option<String>,
            pub json: String,
        }

        #[pymethods]
        impl $rust {
            /// The whole message as a dict, values as on the wire.
            #[getter]
            fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                py.import(pyo3::intern!(py, "json"))?
                    .getattr(pyo3::intern!(py, "loads"))?
                    .call1((&self.json,))
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                repr_of(slf.as_any(), $name, &[$(stringify!($field)),*])
            }
        }
    };
}

/// Declares one frozen event class (tickwire's own events carry no wire text).
macro_rules! event_class {
    ($rust:ident, $name:literal, [$($field:ident : $ty:ty),* $(,)?]) => {
        #[doc = concat!("`tickwire.", $name, "`")]
        #[pyclass(frozen, get_all, module = "tickwire._core", name = $name)]
        pub struct $rust {
            #[pyo3(name = "type")]
            pub type_: Py<PyString>,
            pub recv_ns: i64,
            $(pub $field: $ty,)*
        }

        #[pymethods]
        impl $rust {
            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                repr_of(slf.as_any(), $name, &[$(stringify!($field)),*])
            }
        }
    };
}

message_class!(Trade, "Trade", [
    symbol_id: Py<PyString>, sequence: u64, time_exchange: i64, time_coinapi: i64,
    uuid: String, price: f64, size: f64, taker_side: Py<PyString>,
]);
message_class!(Quote, "Quote", [
    symbol_id: Py<PyString>, sequence: u64, time_exchange: i64, time_coinapi: i64,
    ask_price: f64, ask_size: f64, bid_price: f64, bid_size: f64,
]);
message_class!(Book, "Book", [
    symbol_id: Py<PyString>, sequence: u64, time_exchange: i64, time_coinapi: i64,
    is_snapshot: bool, asks: Vec<(f64, f64)>, bids: Vec<(f64, f64)>,
]);
message_class!(BookL3, "BookL3", [
    symbol_id: Py<PyString>, sequence: u64, time_exchange: i64, time_coinapi: i64,
    is_snapshot: bool,
    asks: Vec<(Option<String>, f64, f64, Option<String>)>,
    bids: Vec<(Option<String>, f64, f64, Option<String>)>,
]);
message_class!(Ohlcv, "Ohlcv", [
    symbol_id: Py<PyString>, sequence: u64, period_id: Option<Py<PyString>>,
    time_period_start: i64, time_period_end: i64, time_open: Option<i64>, time_close: Option<i64>,
    price_open: Option<f64>, price_high: Option<f64>, price_low: Option<f64>,
    price_close: Option<f64>, volume_traded: f64, trades_count: u64,
]);
message_class!(Exrate, "Exrate", [
    asset_id_base: Py<PyString>, asset_id_quote: Py<PyString>, rate_type: Py<PyString>,
    time: i64, rate: f64,
]);
message_class!(Index, "Index", [
    index_id: Py<PyString>, sequence: u64, time_coinapi: i64, value: f64,
]);
message_class!(Heartbeat, "Heartbeat", []);
message_class!(ReconnectNotice, "ReconnectNotice", [within_seconds: i64, before_time: i64]);
message_class!(ServerError, "ServerError", [message: String, error_type: Option<String>]);
message_class!(Metadata, "Metadata", [fields: Py<PyDict>]);
message_class!(Unknown, "Unknown", []);

fields_class!(PriceUpdate, "PriceUpdate", [
    instrument_id: Py<PyString>, isin: Option<Py<PyString>>, cusip: Option<Py<PyString>>,
    timestamp: Option<i64>, price: Option<f64>, yield_to_worst: Option<f64>,
    yield_to_maturity: Option<f64>, bid_price: Option<f64>, bid_size: Option<f64>,
    ask_price: Option<f64>, ask_size: Option<f64>,
]);
fields_class!(OrderUpdate, "OrderUpdate", [
    msg_number: u64, event_type: Py<PyString>, order_id: Option<String>,
    status: Option<Py<PyString>>, side: Option<Py<PyString>>, order_type: Option<Py<PyString>>,
    cusip: Option<Py<PyString>>, isin: Option<Py<PyString>>, limit_price: Option<f64>,
    filled_amount: Option<f64>, filled_avg_price: Option<f64>,
]);
fields_class!(AllocationUpdate, "AllocationUpdate", [
    msg_number: u64, event_type: Py<PyString>, order_id: Option<String>,
    status: Option<Py<PyString>>, side: Option<Py<PyString>>, order_type: Option<Py<PyString>>,
    cusip: Option<Py<PyString>>, isin: Option<Py<PyString>>, limit_price: Option<f64>,
    filled_amount: Option<f64>, filled_avg_price: Option<f64>,
]);
fields_class!(SystemUpdate, "SystemUpdate", [
    msg_number: u64, event_type: Py<PyString>, order_id: Option<String>,
    status: Option<Py<PyString>>, side: Option<Py<PyString>>, order_type: Option<Py<PyString>>,
    cusip: Option<Py<PyString>>, isin: Option<Py<PyString>>, limit_price: Option<f64>,
    filled_amount: Option<f64>, filled_avg_price: Option<f64>,
]);
message_class!(Success, "Success", [msg: String]);
message_class!(Subscription, "Subscription", [instrument_id: Option<String>, msg: String]);

event_class!(Connected, "Connected", [url: String, attempt: u32]);
event_class!(Disconnected, "Disconnected", [reason: String, code: Option<u16>]);
event_class!(Gap, "Gap", [msg_type: Py<PyString>, key: Py<PyString>, expected: u64, received: u64]);
event_class!(Stale, "Stale", [silence_s: f64]);
event_class!(Dropped, "Dropped", [count: u64, reason: String]);
event_class!(Switched, "Switched", [held: u64, overlap_dropped: u64]);
event_class!(ParseError, "ParseError", [reason: String, raw: String]);
event_class!(BookReset, "BookReset", [
    symbol_id: Py<PyString>, reason: Py<PyString>, book_type: Py<PyString>,
]);
event_class!(BookSynced, "BookSynced", [symbol_id: Py<PyString>, book_type: Py<PyString>]);

/// Every class, for module registration.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Trade>()?;
    m.add_class::<Quote>()?;
    m.add_class::<Book>()?;
    m.add_class::<BookL3>()?;
    m.add_class::<Ohlcv>()?;
    m.add_class::<Exrate>()?;
    m.add_class::<Index>()?;
    m.add_class::<Heartbeat>()?;
    m.add_class::<ReconnectNotice>()?;
    m.add_class::<ServerError>()?;
    m.add_class::<Metadata>()?;
    m.add_class::<Unknown>()?;
    m.add_class::<PriceUpdate>()?;
    m.add_class::<OrderUpdate>()?;
    m.add_class::<AllocationUpdate>()?;
    m.add_class::<SystemUpdate>()?;
    m.add_class::<Success>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<Connected>()?;
    m.add_class::<Disconnected>()?;
    m.add_class::<Gap>()?;
    m.add_class::<Stale>()?;
    m.add_class::<Dropped>()?;
    m.add_class::<Switched>()?;
    m.add_class::<ParseError>()?;
    m.add_class::<BookReset>()?;
    m.add_class::<BookSynced>()?;
    Ok(())
}
