//! `tickwire.OrderBook`: a maintained book as Python reads it, and the stream's book side
//! (applying batches, pacing resyncs).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::mpsc;

use super::arrow::{levels_batch, ArrowBatch, LevelRow};
use crate::book::{AnyBook, BookStore, BookType, Ladder, RefreshGate, ResyncLimiter};
use crate::client::Command;
use crate::model::{Envelope, Key, Level, Msg};
use crate::protocol::Session;

/// Where an `OrderBook` reads from.
enum Source {
    /// The stream's store: every read shows the book as of the batches returned so far.
    Live(Arc<Mutex<BookStore>>),
    /// A book of its own (the simulator's true book).
    Fixed(Box<AnyBook>),
}

/// `tickwire.OrderBook`: a maintained `book` / `book_l3` book.
#[pyclass(frozen, module = "tickwire._core", name = "OrderBook")]
pub struct OrderBook {
    source: Source,
    book_type: BookType,
    symbol_id: Key,
}

/// The parts of either book type that reads need.
struct View<'a> {
    bids: &'a Ladder,
    asks: &'a Ladder,
    sequence: u64,
    time_exchange: i64,
    valid: bool,
    book: &'a AnyBook,
}

fn view(b: &AnyBook) -> View<'_> {
    match b {
        AnyBook::L2(x) => View {
            bids: &x.bids,
            asks: &x.asks,
            sequence: x.sequence,
            time_exchange: x.time_exchange,
            valid: x.valid,
            book: b,
        },
        AnyBook::L3(x) => View {
            bids: &x.bids,
            asks: &x.asks,
            sequence: x.sequence,
            time_exchange: x.time_exchange,
            valid: x.valid,
            book: b,
        },
    }
}

fn rows<'a>(
    symbol_id: &'a str,
    book_type: BookType,
    v: &View<'_>,
    depth: usize,
    out: &mut Vec<LevelRow<'a>>,
) {
    for (ask, side) in [(false, v.bids), (true, v.asks)] {
        for (i, &(price, size)) in side.top(depth).enumerate() {
            out.push(LevelRow {
                symbol_id,
                book_type: book_type.wire(),
                ask,
                level: i as u64,
                price,
                size,
                sequence: v.sequence,
                time_exchange: v.time_exchange,
                valid: v.valid,
            });
        }
    }
}

impl OrderBook {
    /// A book of its own, not tied to a stream.
    pub fn fixed(book: AnyBook, symbol_id: Key) -> Self {
        let book_type = match book {
            AnyBook::L2(_) => BookType::L2,
            AnyBook::L3(_) => BookType::L3,
        };
        OrderBook {
            source: Source::Fixed(Box::new(book)),
            book_type,
            symbol_id,
        }
    }

    fn read<R>(&self, f: impl FnOnce(&View<'_>) -> R) -> PyResult<R> {
        match &self.source {
            Source::Fixed(b) => Ok(f(&view(b))),
            Source::Live(store) => {
                let s = store.lock();
                // Books are never removed from a store, so a book handed out stays there.
                let b = s.get(self.book_type, &self.symbol_id).ok_or_else(|| {
                    PyValueError::new_err("tickwire: the book is no longer maintained")
                })?;
                Ok(f(&view(b)))
            }
        }
    }
}

fn list(side: &Ladder, n: usize) -> Vec<Level> {
    side.top(n).copied().collect()
}

#[pymethods]
impl OrderBook {
    /// `(price, size)` bids, best first (a copy).
    #[getter]
    fn bids(&self) -> PyResult<Vec<Level>> {
        self.read(|v| list(v.bids, usize::MAX))
    }

    /// `(price, size)` asks, best first (a copy).
    #[getter]
    fn asks(&self) -> PyResult<Vec<Level>> {
        self.read(|v| list(v.asks, usize::MAX))
    }

    fn best_bid(&self) -> PyResult<Option<Level>> {
        self.read(|v| v.bids.best())
    }

    fn best_ask(&self) -> PyResult<Option<Level>> {
        self.read(|v| v.asks.best())
    }

    /// The top `n` levels of each side: `(bids, asks)`, best first; reads only those levels.
    fn depth(&self, n: usize) -> PyResult<(Vec<Level>, Vec<Level>)> {
        self.read(|v| (list(v.bids, n), list(v.asks, n)))
    }

    /// `book_l3` only: `[(id, side, price, size), ...]`, side "bid" or "ask"; bids best
    /// first, then asks best first, first-come first within a level.
    fn orders(&self) -> PyResult<Vec<(String, &'static str, f64, f64)>> {
        self.read(|v| match v.book {
            AnyBook::L3(b) => Ok(b
                .orders()
                .into_iter()
                .map(|(id, o)| {
                    (
                        id.to_owned(),
                        if o.ask { "ask" } else { "bid" },
                        o.price,
                        o.size,
                    )
                })
                .collect()),
            AnyBook::L2(_) => Err(PyTypeError::new_err(
                "orders() is for book_l3 books; this is a book (L2) book",
            )),
        })?
    }

    #[getter]
    fn symbol_id(&self) -> &str {
        &self.symbol_id
    }

    /// "book" or "book_l3".
    #[getter]
    #[pyo3(name = "type")]
    fn py_type(&self) -> &'static str {
        self.book_type.wire()
    }

    /// The sequence of the last message applied.
    #[getter]
    fn sequence(&self) -> PyResult<u64> {
        self.read(|v| v.sequence)
    }

    /// `time_exchange` (ns) of the last message applied.
    #[getter]
    fn time_exchange(&self) -> PyResult<i64> {
        self.read(|v| v.time_exchange)
    }

    /// False after a gap, a crossed book or a lost connection, until the next snapshot; the
    /// levels are then those the book had when it became invalid.
    #[getter]
    fn valid(&self) -> PyResult<bool> {
        self.read(|v| v.valid)
    }

    /// The top `depth` levels of each side as an `ArrowBatch`, one row per level.
    #[pyo3(signature = (depth=10))]
    fn to_arrow(&self, depth: usize) -> PyResult<ArrowBatch> {
        let sym = self.symbol_id.clone();
        self.read(|v| {
            let mut out = Vec::new();
            rows(&sym, self.book_type, v, depth, &mut out);
            levels_batch(&out)
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        let level = |l: Option<Level>| {
            l.map_or_else(|| "None".to_owned(), |(p, s)| format!("({p:?}, {s:?})"))
        };
        self.read(|v| {
            format!(
                "OrderBook(symbol_id='{}', type='{}', valid={}, sequence={}, bids={}, asks={}, \
                 best_bid={}, best_ask={})",
                &*self.symbol_id,
                self.book_type.wire(),
                if v.valid { "True" } else { "False" },
                v.sequence,
                v.bids.len(),
                v.asks.len(),
                level(v.bids.best()),
                level(v.asks.best())
            )
        })
    }
}

/// The book side of a stream with `books=True`.
pub struct Books {
    store: Arc<Mutex<BookStore>>,
    limiter: Mutex<ResyncLimiter>,
    refresh: Mutex<Refresh>,
}

/// Books of a filtered scope waiting for a refresh (a successor connection's snapshots),
/// and its pacing. Bound: one entry per book.
#[derive(Default)]
struct Refresh {
    gate: RefreshGate,
    books: std::collections::HashSet<(BookType, Key), foldhash::fast::RandomState>,
}

/// The book type named by `type=`.
pub fn book_type_of(name: &str) -> PyResult<BookType> {
    BookType::from_wire(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "type must be \"book\" or \"book_l3\" (book5/20/50 are snapshots and not \
             maintained), not {name:?}"
        ))
    })
}

/// Whether `symbol_id` is in the CoinAPI scope as an exact `SYMBOL$` entry for `book_type`:
/// only then can it be taken out and back in without touching other symbols.
fn exact_in_scope(session: &Session, book_type: BookType, symbol_id: &str) -> bool {
    let Session::CoinApi(s) = session else {
        return false;
    };
    let scope = s.scope();
    scope.data_types.iter().any(|t| t == book_type.wire())
        && scope
            .symbols
            .iter()
            .any(|f| f.strip_suffix('$') == Some(symbol_id))
}

impl Books {
    pub fn new() -> Self {
        Books {
            store: Arc::new(Mutex::new(BookStore::new())),
            limiter: Mutex::new(ResyncLimiter::default()),
            refresh: Mutex::new(Refresh::default()),
        }
    }

    /// Maintains the books from one batch about to be handed to Python, puts the book
    /// events into it, and asks for the resyncs whose turn has come.
    pub fn apply(
        &self,
        items: &mut Vec<Envelope>,
        session: &Mutex<Session>,
        commands: &mpsc::UnboundedSender<Command>,
    ) {
        let mut store = self.store.lock();
        store.apply(items);
        let asked = store.take_resyncs();
        let session = session.lock();
        // Filtered scopes cannot drop one symbol (CoinAPI filters combine as a cross
        // product): such books are refreshed through a successor connection instead.
        let (asked, filtered): (Vec<_>, Vec<_>) = asked
            .into_iter()
            .partition(|r| exact_in_scope(&session, r.book_type, &r.symbol_id));
        let coinapi = matches!(&*session, Session::CoinApi(_));
        self.refresh_filtered(items, filtered, coinapi, &store, commands);
        let due = self.limiter.lock().due(Instant::now(), asked, |r| {
            !store.is_valid(r.book_type, &r.symbol_id)
                && exact_in_scope(&session, r.book_type, &r.symbol_id)
        });
        for r in due {
            log::info!(
                "resynchronising the {} book of {} (out of the scope and back in)",
                r.book_type.wire(),
                r.symbol_id
            );
            // A send fails only when the task has ended; nothing is left to resync then.
            let _ = commands.send(Command::Resync {
                symbol_id: r.symbol_id.to_string(),
                book_type: r.book_type.wire(),
            });
        }
    }

    /// Asks for a refresh when a book of the filtered scope is invalid and the gate allows.
    fn refresh_filtered(
        &self,
        items: &[Envelope],
        filtered: Vec<crate::book::Resync>,
        coinapi: bool,
        store: &BookStore,
        commands: &mpsc::UnboundedSender<Command>,
    ) {
        let mut r = self.refresh.lock();
        for e in items {
            match e.msg {
                Msg::Switched { .. } | Msg::Connected { .. } => r.gate.completed(),
                // The next connection starts every book with a snapshot of its own.
                Msg::Disconnected { .. } => r.books.clear(),
                _ => {}
            }
        }
        if coinapi {
            r.books
                .extend(filtered.into_iter().map(|x| (x.book_type, x.symbol_id)));
        }
        r.books.retain(|(t, k)| !store.is_valid(*t, k));
        let needed = !r.books.is_empty();
        if r.gate.due(Instant::now(), needed) {
            log::info!(
                "refreshing {} book(s) of a filtered scope through a new connection (next \
                 refresh in {:.1} s at the earliest)",
                r.books.len(),
                r.gate.interval().as_secs_f64()
            );
            // A send fails only when the task has ended; nothing is left to refresh then.
            let _ = commands.send(Command::Refresh);
        }
    }

    pub fn dropped_updates(&self) -> u64 {
        self.store.lock().stats.updates_dropped
    }

    /// The live book of `symbol_id`, if a snapshot for it ever arrived.
    pub fn book(&self, symbol_id: &str, book_type: BookType) -> Option<OrderBook> {
        let store = self.store.lock();
        store.get(book_type, symbol_id)?;
        Some(OrderBook {
            source: Source::Live(self.store.clone()),
            book_type,
            symbol_id: Key::from(symbol_id),
        })
    }

    /// The top `depth` levels of every book, one row per level.
    pub fn to_arrow(&self, depth: usize) -> ArrowBatch {
        let store = self.store.lock();
        let all = store.all();
        let mut out = Vec::new();
        for (t, k, b) in &all {
            rows(k, *t, &view(b), depth, &mut out);
        }
        levels_batch(&out)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderBook>()?;
    Ok(())
}
