//! Columnar export: a batch's messages of one type as an Arrow record batch, handed over through
//! the Arrow C Data Interface and the PyCapsule protocol (`__arrow_c_array__`), so pyarrow,
//! polars and others take the columns without a copy and a consumer never loops in Python.
//!
//! The C structs are written out here (the interface is a small, stable ABI) rather than pulling
//! in the arrow crates for it.

use std::ffi::{c_char, c_void, CString};
use std::ptr;

use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

use crate::model::{Envelope, Msg};

/// `struct ArrowSchema` of the Arrow C Data Interface.
#[repr(C)]
pub struct ArrowSchema {
    format: *const c_char,
    name: *const c_char,
    metadata: *const c_char,
    flags: i64,
    n_children: i64,
    children: *mut *mut ArrowSchema,
    dictionary: *mut ArrowSchema,
    release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    private_data: *mut c_void,
}

/// `struct ArrowArray` of the Arrow C Data Interface.
#[repr(C)]
pub struct ArrowArray {
    length: i64,
    null_count: i64,
    offset: i64,
    n_buffers: i64,
    n_children: i64,
    buffers: *mut *const c_void,
    children: *mut *mut ArrowArray,
    dictionary: *mut ArrowArray,
    release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    private_data: *mut c_void,
}

/// Arrow's flag for a nullable field.
const NULLABLE: i64 = 2;

/// One column's values, typed so each buffer is naturally aligned.
#[derive(Clone)]
enum Values {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    /// Booleans, bit-packed on export.
    Bool(Vec<bool>),
    /// UTF-8 strings: offsets and bytes.
    Utf8(Vec<i32>, Vec<u8>),
    /// `list<double>`: offsets and the flattened values (book levels).
    ListF64(Vec<i32>, Vec<f64>),
}

/// A column: values plus an optional validity bitmap (bit set = present).
#[derive(Clone)]
struct Column {
    name: &'static str,
    format: &'static str,
    values: Values,
    validity: Option<Vec<u8>>,
    nulls: i64,
    /// Declared nullable in the schema whether or not this batch has a null, so every batch
    /// of a type has the same schema.
    nullable: bool,
}

impl Column {
    fn new(name: &'static str, format: &'static str, values: Values) -> Self {
        Column {
            name,
            format,
            values,
            validity: None,
            nulls: 0,
            nullable: false,
        }
    }

    fn len(&self) -> usize {
        match &self.values {
            Values::I64(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Utf8(o, _) | Values::ListF64(o, _) => o.len().saturating_sub(1),
        }
    }
}

/// Builders for the column kinds messages need.
struct Strs(Vec<i32>, Vec<u8>);

impl Strs {
    fn new() -> Self {
        Strs(vec![0], Vec::new())
    }

    fn push(&mut self, s: &str) {
        self.1.extend_from_slice(s.as_bytes());
        self.0.push(i32::try_from(self.1.len()).unwrap_or(i32::MAX));
    }

    fn done(self, name: &'static str) -> Column {
        Column::new(name, "u", Values::Utf8(self.0, self.1))
    }
}

/// Nullable values: the values (a default where absent) plus a validity bitmap.
struct Nullable<T> {
    values: Vec<T>,
    validity: Vec<u8>,
    nulls: i64,
}

impl<T: Default> Nullable<T> {
    fn new() -> Self {
        Nullable {
            values: Vec::new(),
            validity: Vec::new(),
            nulls: 0,
        }
    }

    fn push(&mut self, v: Option<T>) {
        let i = self.values.len();
        if i.is_multiple_of(8) {
            self.validity.push(0);
        }
        match v {
            Some(x) => {
                self.values.push(x);
                self.validity[i / 8] |= 1 << (i % 8);
            }
            None => {
                self.values.push(T::default());
                self.nulls += 1;
            }
        }
    }

    fn done(self, name: &'static str, format: &'static str, wrap: fn(Vec<T>) -> Values) -> Column {
        Column {
            name,
            format,
            values: wrap(self.values),
            validity: (self.nulls > 0).then_some(self.validity),
            nulls: self.nulls,
            nullable: true,
        }
    }
}

const TS: &str = "tsn:UTC";

/// One side of a book as two `list<double>` columns (prices, sizes), level by level.
struct Levels {
    offsets: Vec<i32>,
    prices: Vec<f64>,
    sizes: Vec<f64>,
}

impl Levels {
    fn new() -> Self {
        Levels {
            offsets: vec![0],
            prices: Vec::new(),
            sizes: Vec::new(),
        }
    }

    fn push(&mut self, levels: &[crate::model::Level]) {
        for &(p, q) in levels {
            self.prices.push(p);
            self.sizes.push(q);
        }
        self.offsets
            .push(i32::try_from(self.prices.len()).unwrap_or(i32::MAX));
    }

    fn done(self, prices: &'static str, sizes: &'static str) -> [Column; 2] {
        [
            Column::new(
                prices,
                "+l",
                Values::ListF64(self.offsets.clone(), self.prices),
            ),
            Column::new(sizes, "+l", Values::ListF64(self.offsets, self.sizes)),
        ]
    }
}

/// The columns of one message type, in a fixed order.
#[derive(Clone)]
pub struct Table {
    columns: Vec<Column>,
    len: usize,
}

macro_rules! col {
    ($items:expr, $name:literal, $fmt:expr, $variant:ident, |$m:ident| $get:expr) => {
        Column::new(
            $name,
            $fmt,
            Values::$variant($items.iter().map(|($m, _)| $get).collect()),
        )
    };
}

fn recv<T>(items: &[(T, i64)]) -> Column {
    Column::new(
        "recv_ns",
        TS,
        Values::I64(items.iter().map(|(_, r)| *r).collect()),
    )
}

/// The table of one L2 book kind: keys, times, the best level of each side (null when the side
/// is empty) and every level as `list<double>` columns.
fn book_table(books: &[(&crate::model::Book, i64)]) -> Table {
    let mut sym = Strs::new();
    let mut best: [Nullable<f64>; 4] = std::array::from_fn(|_| Nullable::new());
    let mut asks = Levels::new();
    let mut bids = Levels::new();
    for (b, _) in books {
        sym.push(&b.symbol_id);
        let (ask, bid) = (b.asks.first(), b.bids.first());
        best[0].push(ask.map(|l| l.0));
        best[1].push(ask.map(|l| l.1));
        best[2].push(bid.map(|l| l.0));
        best[3].push(bid.map(|l| l.1));
        asks.push(&b.asks);
        bids.push(&b.bids);
    }
    let mut columns = vec![
        sym.done("symbol_id"),
        col!(books, "sequence", "L", U64, |b| b.sequence),
        col!(books, "time_exchange", TS, I64, |b| b.time_exchange),
        col!(books, "time_coinapi", TS, I64, |b| b.time_coinapi),
        col!(books, "is_snapshot", "b", Bool, |b| b.is_snapshot),
    ];
    columns.extend(
        best.into_iter()
            .zip(["ask_price", "ask_size", "bid_price", "bid_size"])
            .map(|(c, n)| c.done(n, "g", Values::F64)),
    );
    columns.extend(asks.done("ask_prices", "ask_sizes"));
    columns.extend(bids.done("bid_prices", "bid_sizes"));
    columns.push(recv(books));
    Table::new(columns)
}

/// Splits a batch into one table per columnar type (`trade`, `quote`, the L2 book kinds
/// `book`/`book5`/`book20`/`book50`, `index`, `exrate`, `price_update`). Other messages and
/// events are left to the object API.
pub fn tables(items: &[Envelope]) -> Vec<(&'static str, Table)> {
    let mut books: [Vec<(&crate::model::Book, i64)>; 4] = Default::default();
    let mut trades = Vec::new();
    let mut quotes = Vec::new();
    let mut index = Vec::new();
    let mut exrates = Vec::new();
    let mut prices = Vec::new();
    for e in items {
        match &e.msg {
            Msg::Trade(t) => trades.push((t, e.recv_ns)),
            Msg::Quote(q) => quotes.push((q, e.recv_ns)),
            Msg::Index(i) => index.push((i, e.recv_ns)),
            Msg::Exrate(x) => exrates.push((x, e.recv_ns)),
            Msg::PriceUpdate(p) => prices.push((&**p, e.recv_ns)),
            Msg::Book(b) => books[b.kind as usize].push((b, e.recv_ns)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !trades.is_empty() {
        let mut sym = Strs::new();
        let mut uuid = Strs::new();
        let mut side = Strs::new();
        for (t, _) in &trades {
            sym.push(&t.symbol_id);
            uuid.push(&t.uuid);
            side.push(&t.taker_side);
        }
        out.push((
            "trade",
            Table::new(vec![
                sym.done("symbol_id"),
                col!(trades, "sequence", "L", U64, |t| t.sequence),
                col!(trades, "time_exchange", TS, I64, |t| t.time_exchange),
                col!(trades, "time_coinapi", TS, I64, |t| t.time_coinapi),
                uuid.done("uuid"),
                col!(trades, "price", "g", F64, |t| t.price),
                col!(trades, "size", "g", F64, |t| t.size),
                side.done("taker_side"),
                recv(&trades),
            ]),
        ));
    }
    if !quotes.is_empty() {
        let mut sym = Strs::new();
        for (q, _) in &quotes {
            sym.push(&q.symbol_id);
        }
        out.push((
            "quote",
            Table::new(vec![
                sym.done("symbol_id"),
                col!(quotes, "sequence", "L", U64, |q| q.sequence),
                col!(quotes, "time_exchange", TS, I64, |q| q.time_exchange),
                col!(quotes, "time_coinapi", TS, I64, |q| q.time_coinapi),
                col!(quotes, "ask_price", "g", F64, |q| q.ask_price),
                col!(quotes, "ask_size", "g", F64, |q| q.ask_size),
                col!(quotes, "bid_price", "g", F64, |q| q.bid_price),
                col!(quotes, "bid_size", "g", F64, |q| q.bid_size),
                recv(&quotes),
            ]),
        ));
    }
    if !index.is_empty() {
        let mut id = Strs::new();
        for (i, _) in &index {
            id.push(&i.index_id);
        }
        out.push((
            "index",
            Table::new(vec![
                id.done("index_id"),
                col!(index, "sequence", "L", U64, |i| i.sequence),
                col!(index, "time_coinapi", TS, I64, |i| i.time_coinapi),
                col!(index, "value", "g", F64, |i| i.value),
                recv(&index),
            ]),
        ));
    }
    if !exrates.is_empty() {
        let (mut base, mut quote, mut kind) = (Strs::new(), Strs::new(), Strs::new());
        for (x, _) in &exrates {
            base.push(&x.asset_id_base);
            quote.push(&x.asset_id_quote);
            kind.push(&x.rate_type);
        }
        out.push((
            "exrate",
            Table::new(vec![
                base.done("asset_id_base"),
                quote.done("asset_id_quote"),
                kind.done("rate_type"),
                col!(exrates, "time", TS, I64, |x| x.time),
                col!(exrates, "rate", "g", F64, |x| x.rate),
                recv(&exrates),
            ]),
        ));
    }
    if !prices.is_empty() {
        let mut id = Strs::new();
        let mut ts = Nullable::<i64>::new();
        let mut cols: Vec<Nullable<f64>> = (0..7).map(|_| Nullable::new()).collect();
        for (p, _) in &prices {
            id.push(&p.instrument_id);
            ts.push(p.timestamp);
            for (c, v) in cols.iter_mut().zip([
                p.price,
                p.yield_to_worst,
                p.yield_to_maturity,
                p.bid_price,
                p.bid_size,
                p.ask_price,
                p.ask_size,
            ]) {
                c.push(v);
            }
        }
        let names = [
            "price",
            "yield_to_worst",
            "yield_to_maturity",
            "bid_price",
            "bid_size",
            "ask_price",
            "ask_size",
        ];
        let mut columns = vec![
            id.done("instrument_id"),
            ts.done("timestamp", TS, Values::I64),
        ];
        columns.extend(
            cols.into_iter()
                .zip(names)
                .map(|(c, n)| c.done(n, "g", Values::F64)),
        );
        columns.push(recv(&prices));
        out.push(("price_update", Table::new(columns)));
    }
    for kind in books.iter().filter_map(|b| b.first()).map(|(b, _)| b.kind) {
        out.push((kind.wire(), book_table(&books[kind as usize])));
    }
    out
}

impl Table {
    fn new(columns: Vec<Column>) -> Self {
        let len = columns.first().map_or(0, Column::len);
        Table { columns, len }
    }

    /// The record batch as a struct-typed schema and array (caller owns both; each has its
    /// release callback set).
    fn export(&self) -> (ArrowSchema, ArrowArray) {
        let schema_children: Vec<*mut ArrowSchema> = self
            .columns
            .iter()
            .map(|c| {
                let children = match c.values {
                    Values::ListF64(..) => {
                        vec![Box::into_raw(Box::new(schema("g", "item", 0, Vec::new())))]
                    }
                    _ => Vec::new(),
                };
                Box::into_raw(Box::new(schema(
                    c.format,
                    c.name,
                    if c.nullable { NULLABLE } else { 0 },
                    children,
                )))
            })
            .collect();
        let array_children: Vec<*mut ArrowArray> = self
            .columns
            .iter()
            .map(|c| Box::into_raw(Box::new(column_array(c.clone()))))
            .collect();
        let len = i64::try_from(self.len).unwrap_or(i64::MAX);
        (
            schema("+s", "", 0, schema_children),
            array(len, 0, vec![Buffer::None], array_children),
        )
    }
}

/// What keeps a schema's strings and children alive until its release.
struct SchemaPrivate {
    _format: CString,
    _name: CString,
    children: Box<[*mut ArrowSchema]>,
}

fn schema(format: &str, name: &str, flags: i64, children: Vec<*mut ArrowSchema>) -> ArrowSchema {
    let format = CString::new(format).unwrap_or_default();
    let name = CString::new(name).unwrap_or_default();
    let mut private = Box::new(SchemaPrivate {
        children: children.into_boxed_slice(),
        _format: format,
        _name: name,
    });
    ArrowSchema {
        format: private._format.as_ptr(),
        name: private._name.as_ptr(),
        metadata: ptr::null(),
        flags,
        n_children: private.children.len() as i64,
        children: private.children.as_mut_ptr(),
        dictionary: ptr::null_mut(),
        release: Some(release_schema),
        private_data: Box::into_raw(private).cast(),
    }
}

unsafe extern "C" fn release_schema(s: *mut ArrowSchema) {
    // SAFETY: called by the consumer on a schema this module produced, at most once while
    // `release` is set; children were boxed by `schema` and are owned by their parent.
    unsafe {
        let Some(s) = s.as_mut() else { return };
        if s.release.is_none() {
            return;
        }
        let private = Box::from_raw(s.private_data.cast::<SchemaPrivate>());
        for &child in private.children.iter() {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        s.release = None;
    }
}

/// One buffer of an array.
enum Buffer {
    None,
    Bytes(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
}

impl Buffer {
    fn ptr(&self) -> *const c_void {
        match self {
            Buffer::None => ptr::null(),
            Buffer::Bytes(v) => v.as_ptr().cast(),
            Buffer::I32(v) => v.as_ptr().cast(),
            Buffer::I64(v) => v.as_ptr().cast(),
            Buffer::U64(v) => v.as_ptr().cast(),
            Buffer::F64(v) => v.as_ptr().cast(),
        }
    }
}

struct ArrayPrivate {
    _buffers: Vec<Buffer>,
    pointers: Box<[*const c_void]>,
    children: Box<[*mut ArrowArray]>,
}

fn array(
    length: i64,
    null_count: i64,
    buffers: Vec<Buffer>,
    children: Vec<*mut ArrowArray>,
) -> ArrowArray {
    let pointers: Box<[*const c_void]> = buffers.iter().map(Buffer::ptr).collect();
    let mut private = Box::new(ArrayPrivate {
        _buffers: buffers,
        pointers,
        children: children.into_boxed_slice(),
    });
    ArrowArray {
        length,
        null_count,
        offset: 0,
        n_buffers: private.pointers.len() as i64,
        n_children: private.children.len() as i64,
        buffers: private.pointers.as_mut_ptr(),
        children: private.children.as_mut_ptr(),
        dictionary: ptr::null_mut(),
        release: Some(release_array),
        private_data: Box::into_raw(private).cast(),
    }
}

fn column_array(c: Column) -> ArrowArray {
    let len = i64::try_from(c.len()).unwrap_or(i64::MAX);
    let validity = c.validity.map_or(Buffer::None, Buffer::Bytes);
    let mut children = Vec::new();
    let buffers = match c.values {
        Values::I64(v) => vec![validity, Buffer::I64(v)],
        Values::U64(v) => vec![validity, Buffer::U64(v)],
        Values::F64(v) => vec![validity, Buffer::F64(v)],
        Values::Bool(v) => {
            let mut bits = vec![0u8; v.len().div_ceil(8)];
            for (i, _) in v.iter().enumerate().filter(|(_, b)| **b) {
                bits[i / 8] |= 1 << (i % 8);
            }
            vec![validity, Buffer::Bytes(bits)]
        }
        Values::Utf8(offsets, data) => vec![validity, Buffer::I32(offsets), Buffer::Bytes(data)],
        Values::ListF64(offsets, values) => {
            let n = i64::try_from(values.len()).unwrap_or(i64::MAX);
            children.push(Box::into_raw(Box::new(array(
                n,
                0,
                vec![Buffer::None, Buffer::F64(values)],
                Vec::new(),
            ))));
            vec![validity, Buffer::I32(offsets)]
        }
    };
    array(len, c.nulls, buffers, children)
}

unsafe extern "C" fn release_array(a: *mut ArrowArray) {
    // SAFETY: as `release_schema`, for arrays.
    unsafe {
        let Some(a) = a.as_mut() else { return };
        if a.release.is_none() {
            return;
        }
        let private = Box::from_raw(a.private_data.cast::<ArrayPrivate>());
        for &child in private.children.iter() {
            if let Some(release) = (*child).release {
                release(child);
            }
            drop(Box::from_raw(child));
        }
        a.release = None;
    }
}

/// A schema or array inside a capsule; released on drop unless the consumer moved it out
/// (moving sets the source's `release` to null, per the interface).
#[repr(transparent)]
struct Owned<T: Release>(T);

// SAFETY: the structs own their buffers outright; nothing in them is thread-bound.
unsafe impl<T: Release> Send for Owned<T> {}

trait Release {
    fn release(&mut self);
}

impl Release for ArrowSchema {
    fn release(&mut self) {
        if let Some(r) = self.release {
            // SAFETY: our own producer-side release on our own struct.
            unsafe { r(self) };
        }
    }
}

impl Release for ArrowArray {
    fn release(&mut self) {
        if let Some(r) = self.release {
            // SAFETY: as above.
            unsafe { r(self) };
        }
    }
}

impl<T: Release> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// `tickwire.ArrowBatch`: one message type's columns, exported on demand through
/// `__arrow_c_array__` (e.g. `pyarrow.record_batch(t)`, `polars.DataFrame(t)`).
#[pyclass(frozen, module = "tickwire._core", name = "ArrowBatch")]
pub struct ArrowBatch {
    table: Table,
}

#[pymethods]
impl ArrowBatch {
    fn __len__(&self) -> usize {
        self.table.len
    }

    /// The column names, in order.
    #[getter]
    fn column_names(&self) -> Vec<&'static str> {
        self.table.columns.iter().map(|c| c.name).collect()
    }

    /// The Arrow C Data Interface export: `(schema capsule, array capsule)`.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        // A requested schema is a hint the interface lets a producer ignore.
        let _ = requested_schema;
        let (schema, array) = self.table.export();
        let schema = PyCapsule::new_with_value(py, Owned(schema), c"arrow_schema")?;
        let array = PyCapsule::new_with_value(py, Owned(array), c"arrow_array")?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }

    /// The schema alone, for consumers that ask for it first.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let (schema, array) = self.table.export();
        drop(Owned(array));
        PyCapsule::new_with_value(py, Owned(schema), c"arrow_schema")
    }

    fn __repr__(&self) -> String {
        format!(
            "ArrowBatch(len={}, columns={:?})",
            self.table.len,
            self.column_names()
        )
    }
}

/// `batch.to_arrow()`: `{type: ArrowBatch}` for the columnar types present in the batch.
pub fn to_arrow<'py>(py: Python<'py>, items: &[Envelope]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (name, table) in tables(items) {
        out.set_item(name, Py::new(py, ArrowBatch { table })?)?;
    }
    Ok(out)
}

/// One level of a maintained book, as `OrderBook.to_arrow` lists it.
pub struct LevelRow<'a> {
    pub symbol_id: &'a str,
    pub book_type: &'static str,
    pub ask: bool,
    /// 0 for the best level of its side.
    pub level: u64,
    pub price: f64,
    pub size: f64,
    pub sequence: u64,
    pub time_exchange: i64,
    pub valid: bool,
}

/// Maintained book levels as one record batch, one row per level.
pub fn levels_batch(rows: &[LevelRow<'_>]) -> ArrowBatch {
    let mut sym = Strs::new();
    let mut kind = Strs::new();
    let mut side = Strs::new();
    for r in rows {
        sym.push(r.symbol_id);
        kind.push(r.book_type);
        side.push(if r.ask { "ask" } else { "bid" });
    }
    let col = |name, format, values| Column::new(name, format, values);
    ArrowBatch {
        table: Table::new(vec![
            sym.done("symbol_id"),
            kind.done("type"),
            side.done("side"),
            col(
                "level",
                "L",
                Values::U64(rows.iter().map(|r| r.level).collect()),
            ),
            col(
                "price",
                "g",
                Values::F64(rows.iter().map(|r| r.price).collect()),
            ),
            col(
                "size",
                "g",
                Values::F64(rows.iter().map(|r| r.size).collect()),
            ),
            col(
                "sequence",
                "L",
                Values::U64(rows.iter().map(|r| r.sequence).collect()),
            ),
            col(
                "time_exchange",
                TS,
                Values::I64(rows.iter().map(|r| r.time_exchange).collect()),
            ),
            col(
                "valid",
                "b",
                Values::Bool(rows.iter().map(|r| r.valid).collect()),
            ),
        ]),
    }
}
