//! The seeded, deterministic CoinAPI market generator (sans-I/O: it takes `now` as an argument).
//!
//! One generator per simulator produces [`Event`]s that are broadcast to every connection. An
//! event is pre-rendered as JSON in two parts (`head`, `tail`) so that each connection only
//! inserts its own sequence number between them: the expensive formatting happens once.

use std::sync::Arc;

use crate::sim::fmt::{push_fixed, push_json_str, push_ts, push_u64, push_uuid};

/// A small, fast, seedable PRNG (xoshiro256++ seeded through splitmix64). Written out here so
/// that "same seed => same events" does not depend on a `rand` version's stream.
#[derive(Clone, Debug)]
pub(crate) struct SimRng {
    s: [u64; 4],
}

/// splitmix64 step; also a decent 64-bit mixer for deriving values from identifiers.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *v = mix64(x);
        }
        Self { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let r = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `0..n` (n > 0; 0 gives 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

/// Every message type the simulator records, both protocols. The discriminant is a bit index
/// in scope masks and the `kind` byte of a recorded send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Kind {
    Trade = 0,
    Quote = 1,
    Book = 2,
    Book5 = 3,
    Book20 = 4,
    Book50 = 5,
    BookL3 = 6,
    Ohlcv = 7,
    Exrate = 8,
    Index = 9,
    PriceUpdate = 10,
    OrderUpdate = 11,
    AllocationUpdate = 12,
    SystemUpdate = 13,
    Malformed = 14,
}

impl Kind {
    pub(crate) const ALL: [Kind; 15] = [
        Kind::Trade,
        Kind::Quote,
        Kind::Book,
        Kind::Book5,
        Kind::Book20,
        Kind::Book50,
        Kind::BookL3,
        Kind::Ohlcv,
        Kind::Exrate,
        Kind::Index,
        Kind::PriceUpdate,
        Kind::OrderUpdate,
        Kind::AllocationUpdate,
        Kind::SystemUpdate,
        Kind::Malformed,
    ];

    /// The wire name (`type` / `msg_type`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Trade => "trade",
            Kind::Quote => "quote",
            Kind::Book => "book",
            Kind::Book5 => "book5",
            Kind::Book20 => "book20",
            Kind::Book50 => "book50",
            Kind::BookL3 => "book_l3",
            Kind::Ohlcv => "ohlcv",
            Kind::Exrate => "exrate",
            Kind::Index => "index",
            Kind::PriceUpdate => "price_update",
            Kind::OrderUpdate => "order_update",
            Kind::AllocationUpdate => "allocation_update",
            Kind::SystemUpdate => "system_update",
            Kind::Malformed => "malformed",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Kind {
        Kind::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Kind::Malformed)
    }

    /// Bit in a type mask.
    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// CoinAPI types carrying a per-connection `sequence` (PROTOCOLS.md 1.6).
    pub(crate) fn coinapi_sequenced(self) -> bool {
        matches!(
            self,
            Kind::Trade
                | Kind::Quote
                | Kind::Book
                | Kind::Book5
                | Kind::Book20
                | Kind::Book50
                | Kind::BookL3
                | Kind::Ohlcv
                | Kind::Index
        )
    }

    /// Types keyed by a symbol id.
    pub(crate) fn symbol_based(self) -> bool {
        matches!(
            self,
            Kind::Trade
                | Kind::Quote
                | Kind::Book
                | Kind::Book5
                | Kind::Book20
                | Kind::Book50
                | Kind::BookL3
                | Kind::Ohlcv
        )
    }
}

/// One generated market event, shared (behind an `Arc`) by every connection.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// Generator ordinal (0-based), unique per generator; trade uuids derive from it.
    pub no: u64,
    pub kind: Kind,
    /// Index into the universe table of its kind (symbol, index id, exrate pair, instrument).
    pub key: u32,
    /// Index into the simulator's record key table (what `sent()` reports as `key`).
    pub rec_key: u32,
    /// OHLCV period index into [`PERIODS`].
    pub period: u8,
    /// JSON up to the per-connection insertion (CoinAPI: up to `"sequence":`; Moment prices:
    /// up to the `instrument_id` value; otherwise the whole message).
    pub head: String,
    /// JSON after the insertion (empty when `head` is the whole message).
    pub tail: String,
    /// `book`/`book_l3`: the tail of the snapshot rendering of the state after this event.
    pub snapshot_tail: Option<String>,
    /// `book`/`book_l3`: the book after this event, as the simulator's own truth.
    pub book: Option<Arc<SimBook>>,
    /// `book`/`book_l3`: the previous event number of the same stream for this symbol, so a
    /// connection that did not see that one sends a snapshot instead of an update.
    pub prev: Option<u64>,
    /// A sequence fixed by the generator (Moment `msg_number`), not per connection.
    pub fixed_seq: Option<u64>,
    /// The trade uuid (upper-case UUIDv4 bits), if any.
    pub uuid: Option<u128>,
}

/// One `book_l3` order of the simulator's truth: `(id, price in ticks, size)`.
pub type SimOrder = (u128, i64, i64);

/// The true state of a `book` / `book_l3` book after one event: prices in ticks, sizes in
/// 10^-9 units, as the wire renders them.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBook {
    pub tick: i64,
    pub time_exchange: i64,
    /// Best first. L3: the orders' levels are summed from `l3`.
    pub asks: Vec<(i64, i64)>,
    pub bids: Vec<(i64, i64)>,
    /// `book_l3`: `(id, price ticks, size)` of the bids, then of the asks, best first.
    pub l3: Option<(Vec<SimOrder>, Vec<SimOrder>)>,
}

/// OHLCV periods the generator emits.
pub(crate) const PERIODS: [(&str, i64); 5] = [
    ("1SEC", 1),
    ("1MIN", 60),
    ("5MIN", 300),
    ("1HRS", 3600),
    ("1DAY", 86_400),
];

/// One tradable symbol of the universe.
#[derive(Clone, Debug)]
pub(crate) struct SymbolInfo {
    pub id: String,
    pub exchange: String,
    pub base: String,
    pub quote: String,
    /// Reference price in the quote asset, in 10^-9 units.
    pub price_nanos: i64,
    pub tick_nanos: i64,
    pub lot_nanos: i64,
}

/// An index id of the universe.
#[derive(Clone, Debug)]
pub(crate) struct IndexInfo {
    pub id: String,
    pub value_nanos: i64,
}

/// An exchange-rate pair of the universe.
#[derive(Clone, Debug)]
pub(crate) struct ExrateInfo {
    pub base: String,
    pub quote: String,
    pub rate_type: &'static str,
    pub rate_nanos: i64,
}

/// Everything the generator can emit about: fixed by the `symbols` count, not by the seed, so
/// tests can name symbols.
#[derive(Clone, Debug)]
pub(crate) struct Universe {
    pub symbols: Vec<SymbolInfo>,
    pub indexes: Vec<IndexInfo>,
    pub exrates: Vec<ExrateInfo>,
}

/// (asset, reference USD price).
const ASSETS: [(&str, f64); 16] = [
    ("BTC", 65_000.0),
    ("ETH", 3_400.0),
    ("SOL", 150.0),
    ("XRP", 0.52),
    ("ADA", 0.45),
    ("LTC", 82.0),
    ("DOGE", 0.15),
    ("DOT", 7.1),
    ("LINK", 14.2),
    ("AVAX", 35.0),
    ("BNB", 580.0),
    ("TRX", 0.12),
    ("ATOM", 8.4),
    ("XLM", 0.11),
    ("UNI", 9.8),
    ("BCH", 470.0),
];

/// (exchange, symbol type, quote assets listed there).
const EXCHANGES: [(&str, &str, &[&str]); 8] = [
    ("BINANCE", "SPOT", &["USDT", "BTC", "EUR"]),
    ("COINBASE", "SPOT", &["USD", "EUR", "USDT"]),
    ("BITSTAMP", "SPOT", &["USD", "EUR", "USDT"]),
    ("KRAKEN", "SPOT", &["USD", "EUR"]),
    ("BITFINEX", "SPOT", &["USD", "USDT"]),
    ("OKEX", "SPOT", &["USDT", "USDC"]),
    ("GEMINI", "SPOT", &["USD"]),
    ("BINANCEFTS", "PERP", &["USDT"]),
];

/// The head of the symbol list: present whenever `symbols` is large enough, in this order, so
/// the filter rules (prefix vs `$`, base/quote, pairs, exchanges) have known targets.
const CURATED: [(&str, &str, &str, &str); 12] = [
    ("BITSTAMP", "SPOT", "BTC", "USD"),
    ("COINBASE", "SPOT", "ETH", "USD"),
    ("BINANCE", "SPOT", "BTC", "USDT"),
    ("COINBASE", "SPOT", "BTC", "USD"),
    ("BITSTAMP", "SPOT", "BTC", "USDT"),
    ("BINANCE", "SPOT", "ETH", "USDT"),
    ("KRAKEN", "SPOT", "BTC", "EUR"),
    ("BINANCE", "SPOT", "ETH", "BTC"),
    ("BITSTAMP", "SPOT", "ETH", "USD"),
    ("KRAKEN", "SPOT", "XRP", "USD"),
    ("BINANCEFTS", "PERP", "BTC", "USDT"),
    ("COINBASE", "SPOT", "SOL", "USD"),
];

fn usd_price(asset: &str) -> f64 {
    match asset {
        "USD" | "USDT" | "USDC" => 1.0,
        "EUR" => 1.08,
        _ => ASSETS
            .iter()
            .find(|(a, _)| *a == asset)
            .map_or(1.0, |(_, p)| *p),
    }
}

fn pow10(e: i32) -> i64 {
    10i64.pow(e.clamp(0, 18) as u32)
}

fn make_symbol(exchange: &str, stype: &str, base: &str, quote: &str) -> SymbolInfo {
    let base_usd = usd_price(base);
    let price = base_usd / usd_price(quote);
    // About six significant digits of tick, and a lot worth roughly 0.1..1 USD.
    let mag = price.log10().floor() as i32;
    let tick_nanos = pow10(mag - 6 + 9).max(1);
    let lot_nanos = pow10(9 - base_usd.log10().ceil() as i32).max(1);
    let price_nanos = ((price * 1e9) as i64 / tick_nanos).max(10) * tick_nanos;
    SymbolInfo {
        id: format!("{exchange}_{stype}_{base}_{quote}"),
        exchange: exchange.to_owned(),
        base: base.to_owned(),
        quote: quote.to_owned(),
        price_nanos,
        tick_nanos,
        lot_nanos,
    }
}

impl Universe {
    /// The universe for `symbols` symbols (at least one).
    pub(crate) fn new(symbols: usize) -> Self {
        let want = symbols.max(1);
        let mut out: Vec<SymbolInfo> = Vec::with_capacity(want);
        let mut seen = std::collections::HashSet::new();
        let mut push = |out: &mut Vec<SymbolInfo>, s: SymbolInfo| {
            if out.len() < want && seen.insert(s.id.clone()) {
                out.push(s);
            }
        };
        for (e, t, b, q) in CURATED {
            push(&mut out, make_symbol(e, t, b, q));
        }
        for (base, _) in ASSETS {
            for (ex, stype, quotes) in EXCHANGES {
                for q in quotes {
                    if *q != base {
                        push(&mut out, make_symbol(ex, stype, base, q));
                    }
                }
            }
        }
        // Beyond the real-looking combinations: synthetic assets, still well formed.
        let mut n = 0usize;
        while out.len() < want {
            let base = format!("XT{n:04}");
            let (ex, stype, quotes) = EXCHANGES[n % EXCHANGES.len()];
            push(&mut out, make_symbol(ex, stype, &base, quotes[0]));
            n += 1;
        }
        let indexes = [
            ("IDX_REFRATE_PRIMKT_BTC_USD", 65_012.0),
            ("IDX_REFRATE_PRIMKT_ETH_USD", 3_401.5),
            ("IDX_REFRATE_VWAP_BTC", 64_990.0),
            ("IDX_REFRATE_VWAP_ETH", 3_399.0),
            ("IDX_REFRATE_PRIMKT_SOL_USD", 150.2),
        ]
        .iter()
        .map(|(id, v)| IndexInfo {
            id: (*id).to_owned(),
            value_nanos: (v * 1e9) as i64,
        })
        .collect();
        let exrates = [
            ("BTC", "USD", "BASE_QUOTE_ISOLATED"),
            ("ETH", "USD", "BASE_QUOTE_ISOLATED"),
            ("BTC", "EUR", "BASE_ALL_CROSSES_TO_REF"),
            ("ETH", "BTC", "BASE_AND_QUOTE_TO_REF"),
            ("SOL", "USD", "BASE_QUOTE_ISOLATED"),
            ("XRP", "USD", "BASE_ALL_CROSSES_TO_REF"),
            ("USDT", "USD", "BASE_QUOTE_ISOLATED"),
        ]
        .iter()
        .map(|(b, q, t)| ExrateInfo {
            base: (*b).to_owned(),
            quote: (*q).to_owned(),
            rate_type: t,
            rate_nanos: (usd_price(b) / usd_price(q) * 1e9) as i64,
        })
        .collect();
        Self {
            symbols: out,
            indexes,
            exrates,
        }
    }

    /// The record key table: symbol ids, then index ids, then exrate pairs as `BASE/QUOTE`.
    pub(crate) fn keys(&self) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = self.symbols.iter().map(|s| s.id.as_str().into()).collect();
        keys.extend(self.indexes.iter().map(|i| i.id.as_str().into()));
        keys.extend(
            self.exrates
                .iter()
                .map(|e| format!("{}/{}", e.base, e.quote).into()),
        );
        keys
    }

    fn rec_key(&self, kind: Kind, key: usize) -> u32 {
        let k = match kind {
            Kind::Index => self.symbols.len() + key,
            Kind::Exrate => self.symbols.len() + self.indexes.len() + key,
            _ => key,
        };
        u32::try_from(k).unwrap_or(u32::MAX)
    }
}

/// A price level: (price in ticks, size in 10^-9 units).
type Level = (i64, i64);

const DEPTH: usize = 50;

/// An L2 book on a tick grid. Asks ascend, bids descend (best first).
#[derive(Clone, Debug)]
struct Book {
    asks: Vec<Level>,
    bids: Vec<Level>,
    tick: i64,
    lot: i64,
}

/// A changed level: (is_ask, ticks, new size; 0 = removed).
type Change = (bool, i64, i64);

impl Book {
    fn new(sym: &SymbolInfo, rng: &mut SimRng) -> Self {
        let mid = sym.price_nanos / sym.tick_nanos;
        let mut b = Book {
            asks: Vec::with_capacity(DEPTH + 1),
            bids: Vec::with_capacity(DEPTH + 1),
            tick: sym.tick_nanos,
            lot: sym.lot_nanos,
        };
        let mut a = mid + 1 + rng.below(2) as i64;
        let mut bid = mid - rng.below(2) as i64;
        for _ in 0..DEPTH {
            b.asks.push((a, b.rand_size(rng)));
            b.bids.push((bid.max(1), b.rand_size(rng)));
            a += 1 + rng.below(3) as i64;
            bid -= 1 + rng.below(3) as i64;
        }
        b.bids.retain(|l| l.0 > 0);
        b
    }

    fn rand_size(&self, rng: &mut SimRng) -> i64 {
        // Mostly small orders with an occasional large one.
        let lots = if rng.chance(0.1) {
            rng.range(2_000, 50_000)
        } else {
            rng.range(1, 2_000)
        };
        lots as i64 * self.lot
    }

    fn side(&mut self, ask: bool) -> &mut Vec<Level> {
        if ask {
            &mut self.asks
        } else {
            &mut self.bids
        }
    }

    /// Appends a new worst level on a side so depth stays at `DEPTH`.
    fn refill(&mut self, ask: bool, rng: &mut SimRng, changes: &mut Vec<Change>) {
        while self.side(ask).len() < DEPTH {
            let size = self.rand_size(rng);
            let gap = 1 + rng.below(3) as i64;
            let side = self.side(ask);
            let px = match side.last() {
                Some(l) if ask => l.0 + gap,
                Some(l) => l.0 - gap,
                None => return,
            };
            if px <= 0 {
                return;
            }
            side.push((px, size));
            changes.push((ask, px, size));
        }
    }

    /// One random book change; returns the changed levels through `changes`.
    fn mutate(&mut self, rng: &mut SimRng, changes: &mut Vec<Change>) {
        let ask = rng.chance(0.5);
        let r = rng.below(100);
        let spread = match (self.asks.first(), self.bids.first()) {
            (Some(a), Some(b)) => a.0 - b.0,
            _ => 0,
        };
        if r < 62 {
            // Size change near the top.
            let size = self.rand_size(rng);
            let side = self.side(ask);
            if side.is_empty() {
                return;
            }
            let top = side.len().min(10) as u64;
            let i = (rng.below(top) * rng.below(top) / top.max(1)) as usize;
            side[i].1 = size;
            changes.push((ask, side[i].0, size));
        } else if r < 81 || spread <= 1 {
            // The best level goes away: the price moves away from the spread.
            let side = self.side(ask);
            if side.len() > 1 {
                let (px, _) = side.remove(0);
                changes.push((ask, px, 0));
                self.refill(ask, rng, changes);
            }
        } else {
            // A new best level inside the spread; the worst level drops off.
            let size = self.rand_size(rng);
            let (Some(best_a), Some(best_b)) = (self.asks.first(), self.bids.first()) else {
                return;
            };
            let px = if ask { best_a.0 - 1 } else { best_b.0 + 1 };
            let side = self.side(ask);
            side.insert(0, (px, size));
            changes.push((ask, px, size));
            if side.len() > DEPTH {
                if let Some((wpx, _)) = side.pop() {
                    changes.push((ask, wpx, 0));
                }
            }
        }
    }

    /// A trade against the best level of the side the taker hits; returns (ticks, size).
    fn trade(&mut self, buy: bool, rng: &mut SimRng, changes: &mut Vec<Change>) -> (i64, i64) {
        let lot = self.lot;
        let side = self.side(buy);
        let Some(best) = side.first_mut() else {
            return (0, 0);
        };
        let max_lots = (best.1 / lot).max(1) as u64;
        let lots = if rng.chance(0.7) {
            rng.range(1, max_lots.min(20))
        } else {
            rng.range(1, max_lots)
        };
        let size = lots as i64 * lot;
        let px = best.0;
        best.1 -= size;
        if best.1 <= 0 {
            side.remove(0);
            changes.push((buy, px, 0));
            self.refill(buy, rng, changes);
        } else {
            changes.push((buy, px, best.1));
        }
        (px, size)
    }
}

fn push_levels(out: &mut String, levels: &[Level], tick: i64) {
    out.push('[');
    for (i, (px, size)) in levels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"price\":");
        push_fixed(out, px * tick, 9);
        out.push_str(",\"size\":");
        push_fixed(out, *size, 9);
        out.push('}');
    }
    out.push(']');
}

/// An L3 order.
#[derive(Clone, Debug)]
struct L3Order {
    id: u128,
    px: i64,
    size: i64,
}

#[derive(Clone, Debug)]
struct L3Book {
    asks: Vec<L3Order>,
    bids: Vec<L3Order>,
}

const L3_UPDATE_TYPES: [&str; 5] = ["ADD", "UPDATE", "SUBTRACT", "DELETE", "MATCH"];

/// Mutable per-symbol state.
#[derive(Clone, Debug)]
struct SymState {
    /// The book behind quotes, trades and book5/20/50 (changes on every event of the symbol).
    main: Book,
    /// The full-depth `book` stream's book (changes only on `book` events, so its updates are
    /// small deltas).
    l2: Book,
    l3: Option<L3Book>,
    last_book: Option<u64>,
    last_l3: Option<u64>,
}

/// Relative frequencies (per 10 000) when everything is subscribed: roughly 70 % trade,
/// 20 % quote, 5 % book5, 5 % index, the other types rare.
const MIX: [(Kind, u64); 10] = [
    (Kind::Trade, 6_930),
    (Kind::Quote, 1_950),
    (Kind::Book5, 500),
    (Kind::Index, 450),
    (Kind::Book, 50),
    (Kind::Book20, 10),
    (Kind::Book50, 10),
    (Kind::BookL3, 40),
    (Kind::Ohlcv, 40),
    (Kind::Exrate, 20),
];

/// The market generator.
pub(crate) struct Market {
    seed: u64,
    rng: SimRng,
    universe: Arc<Universe>,
    syms: Vec<SymState>,
    index_vals: Vec<i64>,
    exrate_vals: Vec<i64>,
    next_no: u64,
    changes: Vec<Change>,
    /// The kinds generated, with their weights (a subset of `MIX`).
    mix: Vec<(Kind, u64)>,
}

/// The trade uuid of event `no` under `seed`.
pub(crate) fn trade_uuid(seed: u64, no: u64) -> u128 {
    let hi = mix64(seed ^ mix64(no));
    let lo = mix64(hi ^ no.rotate_left(17) ^ 0x5EED);
    (u128::from(hi) << 64) | u128::from(lo)
}

impl Market {
    pub(crate) fn new(seed: u64, universe: Arc<Universe>) -> Self {
        let mut rng = SimRng::new(seed);
        let syms = universe
            .symbols
            .iter()
            .map(|s| {
                let main = Book::new(s, &mut rng);
                SymState {
                    l2: main.clone(),
                    main,
                    l3: None,
                    last_book: None,
                    last_l3: None,
                }
            })
            .collect();
        let index_vals = universe.indexes.iter().map(|i| i.value_nanos).collect();
        let exrate_vals = universe.exrates.iter().map(|e| e.rate_nanos).collect();
        Self {
            seed,
            rng,
            universe,
            syms,
            index_vals,
            exrate_vals,
            next_no: 0,
            changes: Vec::new(),
            mix: MIX.to_vec(),
        }
    }

    /// Generates only the kinds named (wire names); unknown names are ignored, and if none
    /// is left the whole mix stays.
    pub(crate) fn only(&mut self, types: &[String]) {
        let mix: Vec<(Kind, u64)> = MIX
            .iter()
            .copied()
            .filter(|(k, _)| types.iter().any(|t| t == k.name()))
            .collect();
        if !mix.is_empty() {
            self.mix = mix;
        }
    }

    /// Generates the next event at wall time `now_ns`.
    pub(crate) fn next_event(&mut self, now_ns: i64) -> Event {
        let no = self.next_no;
        self.next_no += 1;
        let total: u64 = self.mix.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.below(total);
        let mut kind = Kind::Trade;
        for &(k, w) in &self.mix {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        match kind {
            Kind::Index => self.index_event(no, now_ns),
            Kind::Exrate => self.exrate_event(no, now_ns),
            _ => {
                let sym = self.rng.below(self.syms.len() as u64) as usize;
                self.symbol_event(no, kind, sym, now_ns)
            }
        }
    }

    fn head(kind: Kind, id_field: &str, id: &str, seq: bool) -> String {
        let mut h = String::with_capacity(320);
        h.push_str("{\"type\":\"");
        h.push_str(kind.name());
        h.push_str("\",\"");
        h.push_str(id_field);
        h.push_str("\":");
        push_json_str(&mut h, id);
        if seq {
            h.push_str(",\"sequence\":");
        }
        h
    }

    fn times(&mut self, out: &mut String, now_ns: i64) -> i64 {
        // Exchange time precedes CoinAPI receive time by a little network latency.
        let lat = self.rng.range(300_000, 40_000_000) as i64;
        // The wire keeps 100 ns (7 digits): the truth is what the wire says.
        let exchange = (now_ns - lat).div_euclid(100) * 100;
        out.push_str(",\"time_exchange\":\"");
        push_ts(out, now_ns - lat, 7);
        out.push_str("\",\"time_coinapi\":\"");
        push_ts(out, now_ns, 7);
        out.push('"');
        exchange
    }

    fn event(&self, no: u64, kind: Kind, key: usize, head: String, tail: String) -> Event {
        Event {
            no,
            kind,
            key: u32::try_from(key).unwrap_or(u32::MAX),
            rec_key: self.universe.rec_key(kind, key),
            period: 0,
            head,
            tail,
            snapshot_tail: None,
            book: None,
            prev: None,
            fixed_seq: None,
            uuid: None,
        }
    }

    fn index_event(&mut self, no: u64, now_ns: i64) -> Event {
        let i = self.rng.below(self.index_vals.len() as u64) as usize;
        let v = &mut self.index_vals[i];
        let step = (*v / 20_000).max(1);
        *v = (*v + (self.rng.below(2001) as i64 - 1000) * step / 1000).max(1);
        let value = *v;
        let head = Self::head(Kind::Index, "index_id", &self.universe.indexes[i].id, true);
        let mut tail = String::with_capacity(96);
        tail.push_str(",\"time_coinapi\":\"");
        push_ts(&mut tail, now_ns, 7);
        tail.push_str("\",\"value\":");
        push_fixed(&mut tail, value, 5);
        tail.push('}');
        self.event(no, Kind::Index, i, head, tail)
    }

    fn exrate_event(&mut self, no: u64, now_ns: i64) -> Event {
        let i = self.rng.below(self.exrate_vals.len() as u64) as usize;
        let v = &mut self.exrate_vals[i];
        let step = (*v / 50_000).max(1);
        *v = (*v + (self.rng.below(2001) as i64 - 1000) * step / 1000).max(1);
        let rate = *v;
        let info = &self.universe.exrates[i];
        let mut head = String::with_capacity(200);
        head.push_str("{\"type\":\"exrate\",\"asset_id_base\":");
        push_json_str(&mut head, &info.base);
        head.push_str(",\"asset_id_quote\":");
        push_json_str(&mut head, &info.quote);
        head.push_str(",\"rate_type\":\"");
        head.push_str(info.rate_type);
        head.push_str("\",\"time\":\"");
        push_ts(&mut head, now_ns, 7);
        head.push_str("\",\"rate\":");
        push_fixed(&mut head, rate, 9);
        head.push('}');
        self.event(no, Kind::Exrate, i, head, String::new())
    }

    fn symbol_event(&mut self, no: u64, kind: Kind, s: usize, now_ns: i64) -> Event {
        let head = Self::head(kind, "symbol_id", &self.universe.symbols[s].id, true);
        let mut tail = String::with_capacity(if matches!(kind, Kind::Book5) {
            900
        } else {
            240
        });
        let time_exchange = self.times(&mut tail, now_ns);
        let mut book = None;
        let mut changes = std::mem::take(&mut self.changes);
        changes.clear();
        let mut ev_uuid = None;
        let mut snapshot_tail = None;
        let mut prev = None;
        let mut period = 0u8;
        let tick = self.syms[s].main.tick;
        match kind {
            Kind::Trade => {
                let r = self.rng.below(100);
                let (buy, side) = match r {
                    0..=44 => (true, "BUY"),
                    45..=89 => (false, "SELL"),
                    90..=94 => (true, "BUY_ESTIMATED"),
                    95..=98 => (false, "SELL_ESTIMATED"),
                    _ => (self.rng.chance(0.5), "UNKNOWN"),
                };
                let (px, size) = self.syms[s].main.trade(buy, &mut self.rng, &mut changes);
                let uuid = trade_uuid(self.seed, no);
                ev_uuid = Some(uuid);
                tail.push_str(",\"uuid\":\"");
                push_uuid(&mut tail, uuid, true);
                tail.push_str("\",\"price\":");
                push_fixed(&mut tail, px * tick, 9);
                tail.push_str(",\"size\":");
                push_fixed(&mut tail, size, 9);
                tail.push_str(",\"taker_side\":\"");
                tail.push_str(side);
                tail.push('"');
            }
            Kind::Quote => {
                let b = &mut self.syms[s].main;
                b.mutate(&mut self.rng, &mut changes);
                let (a, bd) = (b.asks.first().copied(), b.bids.first().copied());
                let (a, bd) = (a.unwrap_or((0, 0)), bd.unwrap_or((0, 0)));
                tail.push_str(",\"ask_price\":");
                push_fixed(&mut tail, a.0 * tick, 9);
                tail.push_str(",\"ask_size\":");
                push_fixed(&mut tail, a.1, 9);
                tail.push_str(",\"bid_price\":");
                push_fixed(&mut tail, bd.0 * tick, 9);
                tail.push_str(",\"bid_size\":");
                push_fixed(&mut tail, bd.1, 9);
            }
            Kind::Book5 | Kind::Book20 | Kind::Book50 => {
                let n = match kind {
                    Kind::Book5 => 5,
                    Kind::Book20 => 20,
                    _ => 50,
                };
                let b = &mut self.syms[s].main;
                b.mutate(&mut self.rng, &mut changes);
                tail.push_str(",\"asks\":");
                push_levels(&mut tail, &b.asks[..n.min(b.asks.len())], tick);
                tail.push_str(",\"bids\":");
                push_levels(&mut tail, &b.bids[..n.min(b.bids.len())], tick);
            }
            Kind::Book => {
                let st = &mut self.syms[s];
                let ops = 1 + self.rng.below(3);
                for _ in 0..ops {
                    st.l2.mutate(&mut self.rng, &mut changes);
                }
                // Collapse repeated changes of a level to its final size, keep first-seen order.
                let mut asks: Vec<Level> = Vec::new();
                let mut bids: Vec<Level> = Vec::new();
                for &(ask, px, size) in &changes {
                    let v = if ask { &mut asks } else { &mut bids };
                    match v.iter_mut().find(|l| l.0 == px) {
                        Some(l) => l.1 = size,
                        None => v.push((px, size)),
                    }
                }
                asks.sort_by_key(|l| l.0);
                bids.sort_by_key(|l| std::cmp::Reverse(l.0));
                let mut snap = tail.clone();
                tail.push_str(",\"is_snapshot\":false,\"asks\":");
                push_levels(&mut tail, &asks, tick);
                tail.push_str(",\"bids\":");
                push_levels(&mut tail, &bids, tick);
                tail.push('}');
                snap.push_str(",\"is_snapshot\":true,\"asks\":");
                push_levels(&mut snap, &st.l2.asks, tick);
                snap.push_str(",\"bids\":");
                push_levels(&mut snap, &st.l2.bids, tick);
                snap.push('}');
                snapshot_tail = Some(snap);
                prev = st.last_book.replace(no);
                book = Some(Arc::new(SimBook {
                    tick,
                    time_exchange,
                    asks: st.l2.asks.clone(),
                    bids: st.l2.bids.clone(),
                    l3: None,
                }));
            }
            Kind::BookL3 => {
                let (snap, upd) = self.l3_event(s, tick);
                let mut snap_tail = tail.clone();
                tail.push_str(&upd);
                snap_tail.push_str(&snap);
                snapshot_tail = Some(snap_tail);
                prev = self.syms[s].last_l3.replace(no);
                if let Some(l3) = &self.syms[s].l3 {
                    let orders =
                        |v: &[L3Order]| v.iter().map(|o| (o.id, o.px, o.size)).collect::<Vec<_>>();
                    let levels = |v: &[L3Order]| {
                        let mut out: Vec<(i64, i64)> = Vec::new();
                        for o in v {
                            match out.last_mut() {
                                Some(l) if l.0 == o.px => l.1 += o.size,
                                _ => out.push((o.px, o.size)),
                            }
                        }
                        out
                    };
                    book = Some(Arc::new(SimBook {
                        tick,
                        time_exchange,
                        asks: levels(&l3.asks),
                        bids: levels(&l3.bids),
                        l3: Some((orders(&l3.bids), orders(&l3.asks))),
                    }));
                }
            }
            Kind::Ohlcv => {
                let p = self.rng.below(PERIODS.len() as u64) as usize;
                period = p as u8;
                self.ohlcv_tail(&mut tail, s, p, now_ns);
            }
            _ => {}
        }
        self.changes = changes;
        if !matches!(kind, Kind::Book | Kind::BookL3) {
            tail.push('}');
        }
        let mut ev = self.event(no, kind, s, head, tail);
        ev.uuid = ev_uuid;
        ev.snapshot_tail = snapshot_tail;
        ev.book = book;
        ev.prev = prev;
        ev.period = period;
        ev
    }

    fn ohlcv_tail(&mut self, tail: &mut String, s: usize, p: usize, now_ns: i64) {
        let b = &self.syms[s].main;
        let tick = b.tick;
        let mid = match (b.asks.first(), b.bids.first()) {
            (Some(a), Some(bd)) => (a.0 + bd.0) / 2,
            _ => 1,
        };
        let lot = b.lot;
        let (name, secs) = PERIODS[p];
        let len = secs * 1_000_000_000;
        let start = now_ns.div_euclid(len) * len;
        let spread = (mid / 500).max(2) as u64;
        let mut px = || (mid + self.rng.below(spread) as i64 - spread as i64 / 2).max(1);
        let (o, c, x, y) = (px(), px(), px(), px());
        let high = o.max(c).max(x).max(y);
        let low = o.min(c).min(x).min(y);
        let elapsed = (now_ns - start).max(1) as u64;
        let t_open = start + self.rng.below(elapsed / 2 + 1) as i64;
        let t_close = t_open + self.rng.below((now_ns - t_open).max(1) as u64) as i64;
        let trades = self.rng.range(1, 500);
        let volume = (trades * self.rng.range(1, 400)) as i64 * lot;
        tail.push_str(",\"period_id\":\"");
        tail.push_str(name);
        tail.push_str("\",\"time_period_start\":\"");
        push_ts(tail, start, 7);
        tail.push_str("\",\"time_period_end\":\"");
        push_ts(tail, start + len, 7);
        tail.push_str("\",\"time_open\":\"");
        push_ts(tail, t_open, 7);
        tail.push_str("\",\"time_close\":\"");
        push_ts(tail, t_close, 7);
        tail.push('"');
        for (field, v) in [
            ("price_open", o),
            ("price_high", high),
            ("price_low", low),
            ("price_close", c),
        ] {
            tail.push_str(",\"");
            tail.push_str(field);
            tail.push_str("\":");
            push_fixed(tail, v * tick, 9);
        }
        tail.push_str(",\"volume_traded\":");
        push_fixed(tail, volume, 9);
        tail.push_str(",\"trades_count\":");
        push_u64(tail, trades);
    }

    /// One `book_l3` step for symbol `s`; returns (snapshot tail, update tail), both closed.
    fn l3_event(&mut self, s: usize, tick: i64) -> (String, String) {
        let rng = &mut self.rng;
        let st = &mut self.syms[s];
        let l3 = st.l3.get_or_insert_with(|| {
            let mk = |levels: &[Level], rng: &mut SimRng| {
                levels
                    .iter()
                    .take(8)
                    .map(|&(px, size)| L3Order {
                        id: rng.u128(),
                        px,
                        size: size.max(st.main.lot),
                    })
                    .collect::<Vec<_>>()
            };
            L3Book {
                asks: mk(&st.main.asks, rng),
                bids: mk(&st.main.bids, rng),
            }
        });
        let lot = st.main.lot;
        let mut upd: Vec<(bool, L3Order, &'static str)> = Vec::new();
        let ops = 1 + rng.below(3);
        for _ in 0..ops {
            let ask = rng.chance(0.5);
            let side = if ask { &mut l3.asks } else { &mut l3.bids };
            let op = if side.len() < 3 {
                0
            } else {
                rng.below(L3_UPDATE_TYPES.len() as u64) as usize
            };
            match op {
                0 => {
                    let best = side.first().map_or(1, |o| o.px);
                    let off = rng.below(4) as i64;
                    let px = if ask { best + off } else { (best - off).max(1) };
                    let o = L3Order {
                        id: rng.u128(),
                        px,
                        size: rng.range(1, 500) as i64 * lot,
                    };
                    let pos = side
                        .iter()
                        .position(|x| if ask { x.px > px } else { x.px < px })
                        .unwrap_or(side.len());
                    side.insert(pos, o.clone());
                    upd.push((ask, o, "ADD"));
                }
                1 => {
                    let i = rng.below(side.len() as u64) as usize;
                    side[i].size = rng.range(1, 500) as i64 * lot;
                    upd.push((ask, side[i].clone(), "UPDATE"));
                }
                2 | 4 => {
                    // SUBTRACT anywhere, MATCH (a trade) at the best order; size = what remains.
                    let i = if op == 4 {
                        0
                    } else {
                        rng.below(side.len() as u64) as usize
                    };
                    let cut = rng.range(1, (side[i].size / lot).max(1) as u64) as i64 * lot;
                    side[i].size -= cut;
                    let kind = L3_UPDATE_TYPES[op];
                    if side[i].size <= 0 {
                        let mut o = side.remove(i);
                        o.size = 0;
                        upd.push((ask, o, kind));
                    } else {
                        upd.push((ask, side[i].clone(), kind));
                    }
                }
                _ => {
                    let i = rng.below(side.len() as u64) as usize;
                    let mut o = side.remove(i);
                    o.size = 0;
                    upd.push((ask, o, "DELETE"));
                }
            }
        }
        let entry = |out: &mut String, o: &L3Order, t: Option<&str>| {
            out.push_str("{\"id\":\"");
            push_uuid(out, o.id, false);
            out.push_str("\",\"price\":");
            push_fixed(out, o.px * tick, 9);
            out.push_str(",\"size\":");
            push_fixed(out, o.size, 9);
            if let Some(t) = t {
                out.push_str(",\"update_type\":\"");
                out.push_str(t);
                out.push('"');
            }
            out.push('}');
        };
        let mut u = String::from(",\"is_snapshot\":false");
        for (ask, name) in [(true, "asks"), (false, "bids")] {
            u.push_str(",\"");
            u.push_str(name);
            u.push_str("\":[");
            let mut first = true;
            for (_, o, t) in upd.iter().filter(|x| x.0 == ask) {
                if !first {
                    u.push(',');
                }
                first = false;
                entry(&mut u, o, Some(t));
            }
            u.push(']');
        }
        u.push('}');
        let mut snap = String::from(",\"is_snapshot\":true");
        for (side, name) in [(&l3.asks, "asks"), (&l3.bids, "bids")] {
            snap.push_str(",\"");
            snap.push_str(name);
            snap.push_str("\":[");
            for (i, o) in side.iter().enumerate() {
                if i > 0 {
                    snap.push(',');
                }
                entry(&mut snap, o, None);
            }
            snap.push(']');
        }
        snap.push('}');
        (snap, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> simd_json::OwnedValue {
        let mut b = s.as_bytes().to_vec();
        simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    fn full(ev: &Event, seq: u64, snapshot: bool) -> String {
        let mut s = ev.head.clone();
        if ev.kind.coinapi_sequenced() {
            s.push_str(&seq.to_string());
        }
        if snapshot {
            s.push_str(ev.snapshot_tail.as_deref().unwrap_or(""));
        } else {
            s.push_str(&ev.tail);
        }
        s
    }

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let mut c = SimRng::new(8);
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        let mut r = SimRng::new(1);
        let mut hist = [0u32; 10];
        for _ in 0..10_000 {
            hist[r.below(10) as usize] += 1;
        }
        assert!(hist.iter().all(|&h| (800..1200).contains(&h)), "{hist:?}");
    }

    #[test]
    fn universe_has_the_named_targets() {
        let u = Universe::new(100);
        assert_eq!(u.symbols.len(), 100);
        let ids: Vec<&str> = u.symbols.iter().map(|s| s.id.as_str()).collect();
        for want in [
            "BINANCE_SPOT_BTC_USDT",
            "COINBASE_SPOT_ETH_USD",
            "BITSTAMP_SPOT_BTC_USD",
            "BITSTAMP_SPOT_BTC_USDT",
            "BINANCEFTS_PERP_BTC_USDT",
        ] {
            assert!(ids.contains(&want), "{want}");
        }
        let mut uniq = ids.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), 100);
        assert_eq!(Universe::new(1).symbols.len(), 1);
        assert_eq!(Universe::new(2000).symbols.len(), 2000);
        let btc = &u.symbols[0];
        assert_eq!(btc.id, "BITSTAMP_SPOT_BTC_USD");
        assert_eq!(btc.tick_nanos, 10_000_000); // 0.01 USD
    }

    #[test]
    fn same_seed_same_events() {
        let u = Arc::new(Universe::new(100));
        let mut a = Market::new(42, u.clone());
        let mut b = Market::new(42, u.clone());
        let mut c = Market::new(43, u);
        let t = 1_714_573_800_000_000_000;
        let ea: Vec<Event> = (0..3000).map(|i| a.next_event(t + i)).collect();
        let eb: Vec<Event> = (0..3000).map(|i| b.next_event(t + i)).collect();
        let ec: Vec<Event> = (0..3000).map(|i| c.next_event(t + i)).collect();
        assert_eq!(ea, eb);
        assert_ne!(ea, ec);
    }

    #[test]
    fn every_event_is_valid_json_and_the_mix_is_right() {
        let u = Arc::new(Universe::new(100));
        let mut m = Market::new(1, u);
        let t = 1_714_573_800_123_456_789;
        let n = 40_000;
        let mut counts = std::collections::HashMap::new();
        let mut bytes = 0usize;
        for i in 0..n {
            let ev = m.next_event(t + i * 1000);
            *counts.entry(ev.kind).or_insert(0u32) += 1;
            let s = full(&ev, 1234, false);
            bytes += s.len();
            let v = parse(&s);
            use simd_json::prelude::*;
            assert_eq!(v.get_str("type"), Some(ev.kind.name()));
            if ev.kind.coinapi_sequenced() {
                assert_eq!(v.get_u64("sequence"), Some(1234), "{s}");
            } else {
                assert!(v.get("sequence").is_none());
            }
            if let Some(snap) = &ev.snapshot_tail {
                let s = full(&ev, 9, true);
                let v = parse(&s);
                assert_eq!(v.get_bool("is_snapshot"), Some(true));
                assert!(snap.len() > 10);
            }
            if ev.kind == Kind::Trade {
                let id = v.get_str("uuid").unwrap_or_default();
                assert_eq!(id.len(), 36);
                assert_eq!(&id[14..15], "4");
                assert_eq!(id, id.to_uppercase());
                assert!(s.contains(".0000000Z") || s.contains('Z'));
            }
        }
        let pct = |k: Kind| f64::from(*counts.get(&k).unwrap_or(&0)) * 100.0 / n as f64;
        assert!((66.0..74.0).contains(&pct(Kind::Trade)), "{counts:?}");
        assert!((17.0..23.0).contains(&pct(Kind::Quote)), "{counts:?}");
        assert!((3.5..6.5).contains(&pct(Kind::Book5)), "{counts:?}");
        assert!((3.0..6.0).contains(&pct(Kind::Index)), "{counts:?}");
        for k in [
            Kind::Book,
            Kind::Book20,
            Kind::Book50,
            Kind::BookL3,
            Kind::Ohlcv,
            Kind::Exrate,
        ] {
            assert!(counts.get(&k).copied().unwrap_or(0) > 0, "{k:?} missing");
        }
        let avg = bytes / n as usize;
        assert!((200..330).contains(&avg), "average size {avg}");
    }

    #[test]
    fn a_restricted_mix_generates_only_its_kinds_with_their_truth() {
        let u = Arc::new(Universe::new(10));
        let mut m = Market::new(4, u);
        m.only(&[
            "book".to_owned(),
            "book_l3".to_owned(),
            "nonsense".to_owned(),
        ]);
        let mut kinds = std::collections::HashSet::new();
        for i in 0..2000 {
            let ev = m.next_event(1_700_000_000_000_000_000 + i);
            kinds.insert(ev.kind);
            let book = ev.book.as_ref().expect("book events carry their truth");
            assert_eq!(book.l3.is_some(), ev.kind == Kind::BookL3);
            if let (Kind::Book, Some(b), Some(a)) = (ev.kind, book.bids.first(), book.asks.first())
            {
                assert!(b.0 < a.0, "the true L2 book never crosses");
            }
        }
        assert_eq!(kinds.len(), 2);
        let mut all = Market::new(4, Arc::new(Universe::new(10)));
        all.only(&["nonsense".to_owned()]);
        assert!((0..500).any(|i| all.next_event(i).kind == Kind::Trade));
    }

    #[test]
    fn trade_shape_and_prices() {
        let u = Arc::new(Universe::new(100));
        let mut m = Market::new(3, u);
        let ev = loop {
            let ev = m.next_event(1_489_876_941_376_334_200);
            if ev.kind == Kind::Trade && ev.key == 0 {
                break ev;
            }
        };
        let s = full(&ev, 2_323_346, false);
        assert!(
            s.starts_with(
                "{\"type\":\"trade\",\"symbol_id\":\"BITSTAMP_SPOT_BTC_USD\",\"sequence\":2323346,\"time_exchange\":\"2017-03-18T22:42:21."
            ),
            "{s}"
        );
        assert!(s.contains("\"time_coinapi\":\"2017-03-18T22:42:21.3763342Z\""));
        use simd_json::prelude::*;
        let v = parse(&s);
        let px = v.get_f64("price").unwrap_or_default();
        assert!((60_000.0..70_000.0).contains(&px), "{px}");
        let raw = s.split("\"price\":").nth(1).unwrap_or_default();
        let digits = raw.split(',').next().unwrap_or_default();
        assert_eq!(digits.split('.').nth(1).map(str::len), Some(9), "{s}");
    }

    #[test]
    fn book_updates_apply_to_the_snapshot() {
        // Applying updates on top of the first snapshot reproduces every later snapshot.
        use simd_json::prelude::*;
        let u = Arc::new(Universe::new(3));
        let mut m = Market::new(9, u);
        type Side = Vec<(f64, f64)>;
        let mut state: Option<(Side, Side)> = None;
        let mut checked = 0;
        let levels = |v: &simd_json::OwnedValue, side: &str| -> Vec<(f64, f64)> {
            v.get_array(side)
                .map(|a| {
                    a.iter()
                        .map(|l| {
                            (
                                l.get_f64("price").unwrap_or_default(),
                                l.get_f64("size").unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        for i in 0..200_000 {
            let ev = m.next_event(1_700_000_000_000_000_000 + i);
            if ev.kind != Kind::Book || ev.key != 0 {
                continue;
            }
            let snap = parse(&full(&ev, 1, true));
            let upd = parse(&full(&ev, 1, false));
            if let Some((asks, bids)) = &mut state {
                for (book, side, asc) in [(asks, "asks", true), (bids, "bids", false)] {
                    for (px, size) in levels(&upd, side) {
                        book.retain(|l| (l.0 - px).abs() > 1e-9);
                        if size > 0.0 {
                            book.push((px, size));
                        }
                    }
                    book.sort_by(|a, b| {
                        if asc {
                            a.0.total_cmp(&b.0)
                        } else {
                            b.0.total_cmp(&a.0)
                        }
                    });
                    assert_eq!(*book, levels(&snap, side));
                }
                checked += 1;
            } else {
                state = Some((levels(&snap, "asks"), levels(&snap, "bids")));
            }
        }
        assert!(checked > 10, "{checked}");
    }
}
