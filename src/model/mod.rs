//! Typed messages and events: what a frame becomes once parsed, and what tickwire itself reports.
//!
//! Times are `i64` nanoseconds since the Unix epoch (UTC). Keys (symbol ids, index ids) are
//! `Arc<str>` handed out by one interner per connection, so a million trades on one symbol
//! share one allocation.

pub mod time;

use std::sync::Arc;

/// The most of an unparseable frame a `ParseError` keeps (1 KiB), so a flood of large bad
/// frames cannot fill memory through its events.
pub const PARSE_ERROR_RAW_MAX: usize = 1024;

/// The first `PARSE_ERROR_RAW_MAX` bytes of a frame as text (lossy for non-UTF-8 bytes), cut
/// on a character boundary.
pub fn parse_error_raw(bytes: &[u8]) -> Box<str> {
    let cut = bytes.len().min(PARSE_ERROR_RAW_MAX);
    let mut text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    // A replacement character may have grown the text past the cap.
    while text.len() > PARSE_ERROR_RAW_MAX {
        text.pop();
    }
    text.into_boxed_str()
}

/// An interned key string (symbol id, index id, asset id).
pub type Key = Arc<str>;

/// One book level: `(price, size)`.
pub type Level = (f64, f64);

/// A CoinAPI `trade`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trade {
    pub symbol_id: Key,
    pub sequence: u64,
    pub time_exchange: i64,
    pub time_coinapi: i64,
    pub uuid: Box<str>,
    pub price: f64,
    pub size: f64,
    pub taker_side: Key,
}

/// A CoinAPI `quote` (best bid and offer).
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    pub symbol_id: Key,
    pub sequence: u64,
    pub time_exchange: i64,
    pub time_coinapi: i64,
    pub ask_price: f64,
    pub ask_size: f64,
    pub bid_price: f64,
    pub bid_size: f64,
}

/// Which of the L2 book messages a [`Book`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BookKind {
    /// `book`: full depth, snapshot or update.
    Full,
    /// `book5`: top-5 snapshot.
    Top5,
    /// `book20`: top-20 snapshot.
    Top20,
    /// `book50`: top-50 snapshot.
    Top50,
}

impl BookKind {
    /// The wire name.
    pub fn wire(self) -> &'static str {
        match self {
            BookKind::Full => "book",
            BookKind::Top5 => "book5",
            BookKind::Top20 => "book20",
            BookKind::Top50 => "book50",
        }
    }
}

/// A CoinAPI L2 book message (`book`, `book5`, `book20`, `book50`).
#[derive(Clone, Debug, PartialEq)]
pub struct Book {
    pub kind: BookKind,
    pub symbol_id: Key,
    pub sequence: u64,
    pub time_exchange: i64,
    pub time_coinapi: i64,
    /// Always true for the top-N kinds, which are snapshots by definition.
    pub is_snapshot: bool,
    pub asks: Vec<Level>,
    pub bids: Vec<Level>,
}

/// One L3 entry: an order (or an aggregated level when the venue has no ids).
#[derive(Clone, Debug, PartialEq)]
pub struct L3Entry {
    pub id: Option<Box<str>>,
    pub price: f64,
    pub size: f64,
    pub update_type: Option<Key>,
}

/// A CoinAPI `book_l3` message.
#[derive(Clone, Debug, PartialEq)]
pub struct BookL3 {
    pub symbol_id: Key,
    pub sequence: u64,
    pub time_exchange: i64,
    pub time_coinapi: i64,
    pub is_snapshot: bool,
    pub asks: Vec<L3Entry>,
    pub bids: Vec<L3Entry>,
}

/// A CoinAPI `ohlcv` bar. Open/close times and prices are absent for periods without trades.
#[derive(Clone, Debug, PartialEq)]
pub struct Ohlcv {
    pub symbol_id: Key,
    pub sequence: u64,
    pub period_id: Option<Key>,
    pub time_period_start: i64,
    pub time_period_end: i64,
    pub time_open: Option<i64>,
    pub time_close: Option<i64>,
    pub price_open: Option<f64>,
    pub price_high: Option<f64>,
    pub price_low: Option<f64>,
    pub price_close: Option<f64>,
    pub volume_traded: f64,
    pub trades_count: u64,
}

/// A CoinAPI `exrate` (VWAP-24H exchange rate); it carries no sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Exrate {
    pub asset_id_base: Key,
    pub asset_id_quote: Key,
    pub rate_type: Key,
    pub time: i64,
    pub rate: f64,
}

/// A CoinAPI Indexes API `index` value.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    pub index_id: Key,
    pub sequence: u64,
    pub time_coinapi: i64,
    pub value: f64,
}

/// A CoinAPI `reconnect` notice: the server will close this connection before `before_time`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectNotice {
    pub within_seconds: i64,
    pub before_time: i64,
}

/// A server `error` message (CoinAPI `message`; Moment `msg` and `error_type`).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    pub message: Box<str>,
    pub error_type: Option<Box<str>>,
}

/// A CoinAPI metadata message (`asset`, `exchange`, `symbol`): the frame's own text, so every
/// value stays exactly as on the wire (28-digit decimals included).
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub kind: Key,
    pub json: Box<str>,
}

/// A message whose `type` tickwire does not know; never an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Unknown {
    pub kind: Box<str>,
    pub raw: Box<str>,
}

/// A Moment `price_update`. Prices are % of par; absent sides (no quotes) are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceUpdate {
    pub instrument_id: Key,
    pub isin: Option<Key>,
    pub cusip: Option<Key>,
    pub timestamp: Option<i64>,
    pub price: Option<f64>,
    pub yield_to_worst: Option<f64>,
    pub yield_to_maturity: Option<f64>,
    pub bid_price: Option<f64>,
    pub bid_size: Option<f64>,
    pub ask_price: Option<f64>,
    pub ask_size: Option<f64>,
    /// The whole message as JSON text, so fields tickwire does not model stay reachable.
    pub json: Box<str>,
}

/// Which Moment order-stream message an [`OrderEvent`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEventKind {
    Order,
    Allocation,
    System,
}

impl OrderEventKind {
    pub fn wire(self) -> &'static str {
        match self {
            OrderEventKind::Order => "order_update",
            OrderEventKind::Allocation => "allocation_update",
            OrderEventKind::System => "system_update",
        }
    }
}

/// A Moment order-stream event (`order_update`, `allocation_update`, `system_update`).
/// Order fields are read from a nested `order` object or from the message itself.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderEvent {
    pub kind: OrderEventKind,
    /// `YYYYMMDD` followed by a 10-digit per-day counter, as one integer.
    pub msg_number: u64,
    pub event_type: Key,
    pub order_id: Option<Box<str>>,
    pub status: Option<Key>,
    pub side: Option<Key>,
    /// The order's own `type` (e.g. `limit`).
    pub order_type: Option<Key>,
    pub cusip: Option<Key>,
    pub isin: Option<Key>,
    pub limit_price: Option<f64>,
    pub filled_amount: Option<f64>,
    pub filled_avg_price: Option<f64>,
    /// The whole message as JSON text (nested objects such as `amount` included).
    pub json: Box<str>,
}

/// A sequence jump: `received` arrived where `expected` was due.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub msg_type: &'static str,
    pub key: Key,
    pub expected: u64,
    pub received: u64,
}

/// Everything a stream can hand to its consumer, data and events alike, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    Trade(Trade),
    Quote(Quote),
    Book(Book),
    BookL3(Box<BookL3>),
    // Large, rarer variants are boxed so every envelope stays small to move.
    Ohlcv(Box<Ohlcv>),
    Exrate(Exrate),
    Index(Index),
    Heartbeat,
    Reconnect(ReconnectNotice),
    Error(ServerError),
    Metadata(Metadata),
    Unknown(Unknown),
    PriceUpdate(Box<PriceUpdate>),
    OrderEvent(Box<OrderEvent>),
    /// Moment's `success` control message (the welcome: `msg` = "connected").
    Success {
        msg: Box<str>,
    },
    /// Moment's answer to a (un)subscribe request.
    Subscription {
        instrument_id: Option<Box<str>>,
        msg: Box<str>,
    },
    /// A connection was established (`attempt` counts from 0 for the first connection).
    Connected {
        url: Box<str>,
        attempt: u32,
    },
    /// The connection ended; `code` is the WebSocket close code when the server sent one.
    Disconnected {
        reason: Box<str>,
        code: Option<u16>,
    },
    Gap(Gap),
    /// The connection was silent past the liveness deadline.
    Stale {
        silence_s: f64,
    },
    /// Messages dropped by the overflow policy.
    Dropped {
        count: u64,
        reason: Box<str>,
    },
    /// A make-before-break switch completed.
    Switched {
        held: u64,
        overlap_dropped: u64,
    },
    /// A frame that could not be parsed; `raw` is its text (lossy for non-UTF-8 bytes, at most
    /// [`PARSE_ERROR_RAW_MAX`] bytes). `count` frames in a row failed: the queue folds a run of
    /// them into its first one's `reason` and `raw`.
    ParseError {
        reason: Box<str>,
        raw: Box<str>,
        count: u64,
    },
    /// A maintained book (`books=True`) became invalid: `reason` is "gap", "crossed",
    /// "disconnected" or "switch"; `book_type` is "book" or "book_l3".
    BookReset {
        book_type: &'static str,
        symbol_id: Key,
        reason: &'static str,
    },
    /// A maintained book became valid from the snapshot just before this event.
    BookSynced {
        book_type: &'static str,
        symbol_id: Key,
    },
}

impl Msg {
    /// The `.type` a consumer sees: the wire type, or the lower-case event name.
    pub fn type_name(&self) -> &str {
        match self {
            Msg::Trade(_) => "trade",
            Msg::Quote(_) => "quote",
            Msg::Book(b) => b.kind.wire(),
            Msg::BookL3(_) => "book_l3",
            Msg::Ohlcv(_) => "ohlcv",
            Msg::Exrate(_) => "exrate",
            Msg::Index(_) => "index",
            Msg::Heartbeat => "heartbeat",
            Msg::Reconnect(_) => "reconnect",
            Msg::Error(_) => "error",
            Msg::Metadata(m) => &m.kind,
            Msg::Unknown(u) => &u.kind,
            Msg::PriceUpdate(_) => "price_update",
            Msg::OrderEvent(o) => o.kind.wire(),
            Msg::Success { .. } => "success",
            Msg::Subscription { .. } => "subscription",
            Msg::Connected { .. } => "connected",
            Msg::Disconnected { .. } => "disconnected",
            Msg::Gap(_) => "gap",
            Msg::Stale { .. } => "stale",
            Msg::Dropped { .. } => "dropped",
            Msg::Switched { .. } => "switched",
            Msg::ParseError { .. } => "parse_error",
            Msg::BookReset { .. } => "book_reset",
            Msg::BookSynced { .. } => "book_synced",
        }
    }

    /// True for a `book` or `book_l3` snapshot (the message that (re)starts a maintained book).
    pub fn is_book_snapshot(&self) -> bool {
        match self {
            Msg::Book(b) => b.is_snapshot,
            Msg::BookL3(b) => b.is_snapshot,
            _ => false,
        }
    }

    /// The sequence key of a sequenced data message: `(type, key, sequence)`.
    pub fn sequence_key(&self) -> Option<(&'static str, &Key, u64)> {
        match self {
            Msg::Trade(m) => Some(("trade", &m.symbol_id, m.sequence)),
            Msg::Quote(m) => Some(("quote", &m.symbol_id, m.sequence)),
            Msg::Book(m) => Some((m.kind.wire(), &m.symbol_id, m.sequence)),
            Msg::BookL3(m) => Some(("book_l3", &m.symbol_id, m.sequence)),
            Msg::Ohlcv(m) => Some(("ohlcv", &m.symbol_id, m.sequence)),
            Msg::Index(m) => Some(("index", &m.index_id, m.sequence)),
            _ => None,
        }
    }

    /// True for messages that come from the server (as opposed to tickwire's own events).
    pub fn is_data(&self) -> bool {
        !matches!(
            self,
            Msg::Connected { .. }
                | Msg::Disconnected { .. }
                | Msg::Gap(_)
                | Msg::Stale { .. }
                | Msg::Dropped { .. }
                | Msg::Switched { .. }
                | Msg::ParseError { .. }
                | Msg::BookReset { .. }
                | Msg::BookSynced { .. }
        )
    }
}

/// A message with its receive stamp and, when asked for, its raw text.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Wall clock (ns since the epoch) when the frame was read from the socket.
    pub recv_ns: i64,
    pub raw: Option<Box<str>>,
    pub msg: Msg,
}

impl Envelope {
    /// An event stamped now-ish by the caller.
    pub fn event(recv_ns: i64, msg: Msg) -> Self {
        Envelope {
            recv_ns,
            raw: None,
            msg,
        }
    }
}
