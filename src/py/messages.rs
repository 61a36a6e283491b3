//! The Python message and event classes: frozen, attribute names as on the wire, built on the
//! consumer's thread when a batch is first looked into.
//!
//! Every class gets its value behaviour from one mechanism over its field list: `_values()` is
//! the tuple of everything it holds, in declaration order, and pickling (`__reduce__` through
//! the class's `_restore`), `==`, `hash()` and `to_dict()` are all defined over it. A class
//! declared with these macros and registered on the module has all of it, and is part of
//! `tickwire.Message` (see `py::register`).

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

/// Builds a `Name(field=value, ...)` repr from the class's attribute list.
fn repr_of(obj: &Bound<'_, PyAny>, name: &str, fields: &[&str]) -> PyResult<String> {
    if fields.is_empty() {
        // Nothing but the type tells these apart (heartbeat spellings, metadata kinds).
        return Ok(format!("{name}(type={})", obj.getattr("type")?.repr()?));
    }
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

/// The next item of a `_restore` tuple, converted to the field's type.
fn take<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    items: &mut pyo3::types::iter::BoundTupleIterator<'py>,
    class: &str,
) -> PyResult<T> {
    let item = items.next().ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("{class}._restore: too few values"))
    })?;
    item.extract().map_err(Into::into)
}

/// `==` over the value tuples when `other` is the same class; otherwise `NotImplemented`.
fn compare<'py>(
    this: Bound<'py, PyTuple>,
    other: Option<Bound<'py, PyTuple>>,
    op: CompareOp,
) -> PyResult<Py<PyAny>> {
    let py = this.py();
    let Some(other) = other else {
        return Ok(py.NotImplemented());
    };
    let r = match op {
        CompareOp::Eq => this.eq(other)?,
        CompareOp::Ne => this.ne(other)?,
        _ => return Ok(py.NotImplemented()),
    };
    Ok(pyo3::types::PyBool::new(py, r)
        .to_owned()
        .into_any()
        .unbind())
}

/// A hash consistent with `==`: over the values that are hashable (book levels and metadata
/// dicts are lists and dicts, so they are left out; equal messages still hash alike).
fn hash_of(values: &Bound<'_, PyTuple>) -> PyResult<isize> {
    let py = values.py();
    let kept: Vec<Bound<'_, PyAny>> = values
        .iter()
        .filter(|v| !v.is_instance_of::<PyList>() && !v.is_instance_of::<PyDict>())
        .collect();
    PyTuple::new(py, kept)?.hash()
}

/// `to_dict()`: `type`, `recv_ns`, then the fields, then `raw` when the message kept it.
fn dict_of<'py>(
    obj: &Bound<'py, PyAny>,
    fields: &[&str],
    raw: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = obj.py();
    let d = PyDict::new(py);
    for name in ["type", "recv_ns"].iter().chain(fields) {
        d.set_item(*name, obj.getattr(*name)?)?;
    }
    if let Some(raw) = raw {
        d.set_item("raw", raw)?;
    }
    Ok(d)
}

/// The `__reduce__` answer: rebuild through `cls._restore(values)`.
fn reduce<'py>(
    obj: &Bound<'py, PyAny>,
    values: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyTuple>> {
    let restore = obj
        .get_type()
        .getattr(pyo3::intern!(obj.py(), "_restore"))?;
    PyTuple::new(
        obj.py(),
        [restore, PyTuple::new(obj.py(), [values])?.into_any()],
    )
}

/// The methods every class shares. The fields, then `$extra` (held but not shown), are the
/// order `_restore` reads them back; `$dict` is what `to_dict` lists after `type`, `recv_ns`;
/// `$more` are the class's own further methods.
macro_rules! value_methods {
    ($rust:ident, $name:literal, [$($field:ident),*], [$($extra:ident),*],
     dict: [$($dict:expr),*], raw: |$s:ident| $raw:expr, {$($more:tt)*}) => {
        impl $rust {
            fn values_tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
                use pyo3::IntoPyObjectExt;
                PyTuple::new(py, [
                    self.type_.bind(py).clone().into_any(),
                    self.recv_ns.into_bound_py_any(py)?,
                    $((&self.$field).into_bound_py_any(py)?,)*
                    $((&self.$extra).into_bound_py_any(py)?,)*
                ])
            }
        }

        #[pymethods]
        impl $rust {
            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                repr_of(slf.as_any(), $name, &[$(stringify!($field)),*])
            }

            /// Everything the message holds, in declaration order (what pickling stores).
            fn _values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
                self.values_tuple(py)
            }

            /// Rebuilds a message from `_values()` (the unpickling path).
            #[classmethod]
            fn _restore(_cls: &Bound<'_, PyType>, values: &Bound<'_, PyTuple>) -> PyResult<Self> {
                let mut items = values.iter();
                let out = $rust {
                    type_: take(&mut items, $name)?,
                    recv_ns: take(&mut items, $name)?,
                    $($field: take(&mut items, $name)?,)*
                    $($extra: take(&mut items, $name)?,)*
                };
                if items.next().is_some() {
                    return Err(pyo3::exceptions::PyValueError::new_err(
                        concat!($name, "._restore: too many values"),
                    ));
                }
                Ok(out)
            }

            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
                let values = slf.get().values_tuple(slf.py())?;
                reduce(slf.as_any(), values)
            }

            fn __richcmp__<'py>(
                &self,
                other: &Bound<'py, PyAny>,
                op: CompareOp,
            ) -> PyResult<Py<PyAny>> {
                let py = other.py();
                let theirs = match other.cast::<Self>() {
                    Ok(o) => Some(o.get().values_tuple(py)?),
                    Err(_) => None,
                };
                compare(self.values_tuple(py)?, theirs, op)
            }

            fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
                hash_of(&self.values_tuple(py)?)
            }

            /// `type`, `recv_ns`, then the fields (and `raw` when kept), ready for JSON.
            fn to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
                let $s = slf.get();
                dict_of(slf.as_any(), &[$($dict),*], $raw)
            }

            $($more)*
        }
    };
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

        value_methods!($rust, $name, [$($field),*], [raw],
            dict: [$(stringify!($field)),*], raw: |s| s.raw.as_deref(), {});
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

        // `to_dict` adds `fields`, the whole message, after the named fields.
        value_methods!($rust, $name, [$($field),*], [raw, json],
            dict: [$(stringify!($field),)* "fields"], raw: |s| s.raw.as_deref(), {
            /// The whole message as a dict, values as on the wire.
            #[getter]
            fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                py.import(pyo3::intern!(py, "json"))?
                    .getattr(pyo3::intern!(py, "loads"))?
                    .call1((&self.json,))
            }
        });
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

        value_methods!($rust, $name, [$($field),*], [],
            dict: [$(stringify!($field)),*], raw: |_s| None, {});
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
// `tickwire.Metadata` keeps the message's text and parses it into `fields` only when asked,
// so a batch never fails on one message's content.
fields_class!(Metadata, "Metadata", []);
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
event_class!(ParseError, "ParseError", [reason: String, raw: String, count: u64]);
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
