//! CoinAPI side of the simulator (sans-I/O): parsing `hello`/`subscribe`/`unsubscribe`, the
//! scope they build, the filter rules of PROTOCOLS.md 1.4, and per-connection rendering
//! (sequence counters, book snapshots).
//!
//! Scope semantics, as this simulator implements them:
//! - `hello` replaces the whole scope; `subscribe` adds values to each listed dimension;
//!   `unsubscribe` removes them. A `subscribe` on an empty scope behaves like `hello`.
//! - A filter dimension never given (or given as an empty list in `hello`) does not restrict.
//!   Adding values to an unrestricted dimension leaves it unrestricted; removing the last value
//!   from a restricted dimension makes it match nothing. When an `unsubscribe` empties the data
//!   types (and index ids), the scope resets entirely.
//! - Filters combine as a cross product (every type x every matching symbol x every period).

use std::collections::BTreeSet;
use std::sync::Arc;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::sim::conn::{Ctrl, LinkScope};
use crate::sim::fmt::{push_json_str, push_u64};
use crate::sim::market::{mix64, Event, Kind, Universe, PERIODS};

/// The client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Hello,
    Subscribe,
    Unsubscribe,
}

/// A parsed client request (PROTOCOLS.md 1.4). Absent fields are `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Request {
    pub op: Option<Op>,
    pub apikey: Option<String>,
    pub heartbeat: Option<bool>,
    pub data_types: Option<Vec<String>>,
    pub symbols: Option<Vec<String>>,
    pub assets: Option<Vec<String>>,
    pub exchanges: Option<Vec<String>>,
    pub periods: Option<Vec<String>>,
    pub index_ids: Option<Vec<String>>,
}

/// Data types a client may name. The metadata and legacy ones are accepted but produce no
/// data in this simulator.
const DATA_TYPES: [&str; 15] = [
    "trade", "quote", "book", "book5", "book20", "book50", "book_l3", "ohlcv", "exrate", "index",
    "asset", "exchange", "symbol", "volume", "ticker",
];

fn kind_of(data_type: &str) -> Option<Kind> {
    Some(match data_type {
        "trade" => Kind::Trade,
        "quote" => Kind::Quote,
        "book" => Kind::Book,
        "book5" => Kind::Book5,
        "book20" => Kind::Book20,
        "book50" => Kind::Book50,
        "book_l3" => Kind::BookL3,
        "ohlcv" => Kind::Ohlcv,
        "exrate" => Kind::Exrate,
        "index" => Kind::Index,
        _ => return None,
    })
}

fn str_list(v: &BorrowedValue<'_>, field: &str) -> Result<Option<Vec<String>>, String> {
    match v.get(field) {
        None => Ok(None),
        Some(x) if x.is_null() => Ok(None),
        Some(x) => {
            let arr = x
                .as_array()
                .ok_or_else(|| format!("Field '{field}' must be an array of strings."))?;
            arr.iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("Field '{field}' must be an array of strings."))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
    }
}

/// Parses one client text frame.
///
/// # Errors
/// The text of the `error` message to send (the connection is then closed).
pub(crate) fn parse_request(text: &str) -> Result<Request, String> {
    let mut bytes = text.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).map_err(|_| "Invalid JSON message.")?;
    if v.as_object().is_none() {
        return Err("Message must be a JSON object.".into());
    }
    let op = match v.get("type").and_then(|t| t.as_str()) {
        Some("hello") => Op::Hello,
        Some("subscribe") => Op::Subscribe,
        Some("unsubscribe") => Op::Unsubscribe,
        Some(other) => return Err(format!("Unsupported message type: {other}")),
        None => return Err("Missing message type.".into()),
    };
    let apikey = match v.get("apikey") {
        None => None,
        Some(x) if x.is_null() => None,
        Some(x) => Some(
            x.as_str()
                .ok_or("Field 'apikey' must be a string.")?
                .to_owned(),
        ),
    };
    let heartbeat = match v.get("heartbeat") {
        None => None,
        Some(x) if x.is_null() => None,
        Some(x) => Some(x.as_bool().ok_or("Field 'heartbeat' must be a boolean.")?),
    };
    for field in [
        "subscribe_update_limit_ms_quote",
        "subscribe_update_limit_ms_book_snapshot",
        "subscribe_update_limit_ms_exrate",
        "subscribe_update_limit_ms_index",
    ] {
        // Accepted and ignored, but type-checked like the real server would.
        if let Some(x) = v.get(field) {
            if !x.is_null() && x.as_u64().is_none() {
                return Err(format!("Field '{field}' must be a non-negative integer."));
            }
        }
    }
    let data_types = str_list(&v, "subscribe_data_type")?;
    if let Some(types) = &data_types {
        if let Some(bad) = types.iter().find(|t| !DATA_TYPES.contains(&t.as_str())) {
            return Err(format!("Unknown data type: {bad}"));
        }
    }
    Ok(Request {
        op: Some(op),
        apikey,
        heartbeat,
        data_types,
        symbols: str_list(&v, "subscribe_filter_symbol_id")?,
        assets: str_list(&v, "subscribe_filter_asset_id")?,
        exchanges: str_list(&v, "subscribe_filter_exchange_id")?,
        periods: str_list(&v, "subscribe_filter_period_id")?,
        index_ids: str_list(&v, "subscribe_filter_index_id")?,
    })
}

/// A connection's subscription scope (see the module docs for the merge rules).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Scope {
    pub types: BTreeSet<String>,
    pub symbols: Option<Vec<String>>,
    pub assets: Option<Vec<String>>,
    pub exchanges: Option<Vec<String>>,
    pub periods: Option<Vec<String>>,
    pub index_ids: Option<Vec<String>>,
    pub heartbeat: bool,
}

fn non_empty(v: &Option<Vec<String>>) -> Option<Vec<String>> {
    v.as_ref().filter(|l| !l.is_empty()).cloned()
}

fn add(dim: &mut Option<Vec<String>>, more: &Option<Vec<String>>) {
    if let (Some(cur), Some(more)) = (dim.as_mut(), more.as_ref()) {
        for m in more {
            if !cur.contains(m) {
                cur.push(m.clone());
            }
        }
    }
}

fn remove(dim: &mut Option<Vec<String>>, less: &Option<Vec<String>>) {
    if let (Some(cur), Some(less)) = (dim.as_mut(), less.as_ref()) {
        cur.retain(|c| !less.contains(c));
    }
}

impl Scope {
    /// True when nothing is subscribed.
    pub(crate) fn is_empty(&self) -> bool {
        self.types.is_empty() && self.index_ids.as_ref().is_none_or(Vec::is_empty)
    }

    /// Applies a request to the scope.
    ///
    /// # Errors
    /// The `error` text when the request cannot set a scope (no data type in a `hello`).
    pub(crate) fn apply(&mut self, req: &Request) -> Result<(), String> {
        let op = req.op.unwrap_or(Op::Hello);
        let fresh = op == Op::Hello || (op == Op::Subscribe && self.is_empty());
        if fresh {
            let has_types = req.data_types.as_ref().is_some_and(|t| !t.is_empty());
            let has_index = req.index_ids.as_ref().is_some_and(|t| !t.is_empty());
            if !has_types && !has_index {
                return Err("subscribe_data_type is required.".into());
            }
            let heartbeat = match op {
                Op::Hello => req.heartbeat.unwrap_or(false),
                _ => req.heartbeat.unwrap_or(self.heartbeat),
            };
            *self = Scope {
                types: req.data_types.iter().flatten().cloned().collect(),
                symbols: non_empty(&req.symbols),
                assets: non_empty(&req.assets),
                exchanges: non_empty(&req.exchanges),
                periods: non_empty(&req.periods),
                index_ids: non_empty(&req.index_ids),
                heartbeat,
            };
            return Ok(());
        }
        match op {
            Op::Subscribe => {
                self.types.extend(req.data_types.iter().flatten().cloned());
                add(&mut self.symbols, &req.symbols);
                add(&mut self.assets, &req.assets);
                add(&mut self.exchanges, &req.exchanges);
                add(&mut self.periods, &req.periods);
                match (&mut self.index_ids, non_empty(&req.index_ids)) {
                    (None, Some(ids)) => self.index_ids = Some(ids),
                    (Some(_), more @ Some(_)) => add(&mut self.index_ids, &more),
                    _ => {}
                }
                if let Some(h) = req.heartbeat {
                    self.heartbeat = h;
                }
            }
            Op::Unsubscribe | Op::Hello => {
                for t in req.data_types.iter().flatten() {
                    self.types.remove(t);
                }
                remove(&mut self.symbols, &req.symbols);
                remove(&mut self.assets, &req.assets);
                remove(&mut self.exchanges, &req.exchanges);
                remove(&mut self.periods, &req.periods);
                remove(&mut self.index_ids, &req.index_ids);
                if self.is_empty() {
                    *self = Scope {
                        heartbeat: self.heartbeat,
                        ..Scope::default()
                    };
                }
            }
        }
        Ok(())
    }

    /// Precomputes the per-key decisions against the universe.
    pub(crate) fn compile(&self, u: &Universe) -> CompiledScope {
        let mut types = 0u32;
        for t in &self.types {
            if let Some(k) = kind_of(t) {
                types |= k.bit();
            }
        }
        let sym_ok = u
            .symbols
            .iter()
            .map(|s| {
                self.symbols
                    .as_ref()
                    .is_none_or(|f| symbol_filter_matches(f, &s.id))
                    && self
                        .exchanges
                        .as_ref()
                        .is_none_or(|f| f.iter().any(|e| *e == s.exchange))
                    && self
                        .assets
                        .as_ref()
                        .is_none_or(|f| asset_filter_matches(f, &s.base, &s.quote))
            })
            .collect();
        let mut period_ok = [false; PERIODS.len()];
        for (i, (name, _)) in PERIODS.iter().enumerate() {
            period_ok[i] = self
                .periods
                .as_ref()
                .is_none_or(|f| f.iter().any(|p| p == name));
        }
        let index_on = types & Kind::Index.bit() != 0 || self.index_ids.is_some();
        let index_ok = u
            .indexes
            .iter()
            .map(|i| index_on && self.index_ids.as_ref().is_none_or(|f| f.contains(&i.id)))
            .collect();
        let exrate_on = types & Kind::Exrate.bit() != 0;
        let exrate_ok = u
            .exrates
            .iter()
            .map(|e| {
                exrate_on
                    && self
                        .assets
                        .as_ref()
                        .is_some_and(|f| asset_filter_matches(f, &e.base, &e.quote))
            })
            .collect();
        CompiledScope {
            types,
            sym_ok,
            period_ok,
            index_ok,
            exrate_ok,
            heartbeat: self.heartbeat,
            nonempty: !self.is_empty(),
        }
    }
}

/// Symbol filter: prefix match; a trailing `$` makes the entry an exact match.
pub(crate) fn symbol_filter_matches(filters: &[String], symbol_id: &str) -> bool {
    filters.iter().any(|f| match f.strip_suffix('$') {
        Some(exact) => symbol_id == exact,
        None => symbol_id.starts_with(f.as_str()),
    })
}

/// Asset filter: an entry matches the base or the quote asset; `BASE/QUOTE` matches the pair.
pub(crate) fn asset_filter_matches(filters: &[String], base: &str, quote: &str) -> bool {
    filters.iter().any(|f| match f.split_once('/') {
        Some((b, q)) => b == base && q == quote,
        None => f == base || f == quote,
    })
}

/// A scope resolved against the universe: O(1) per-event decisions.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledScope {
    types: u32,
    sym_ok: Vec<bool>,
    period_ok: [bool; PERIODS.len()],
    index_ok: Vec<bool>,
    exrate_ok: Vec<bool>,
    pub heartbeat: bool,
    pub nonempty: bool,
}

impl CompiledScope {
    /// Whether this scope receives `kind` (a symbol-based type) for symbol index `sym`.
    pub(crate) fn matches_symbol(&self, kind: Kind, sym: usize) -> bool {
        self.types & kind.bit() != 0 && self.sym_ok.get(sym).copied().unwrap_or(false)
    }

    /// Whether this scope receives the event.
    pub(crate) fn matches(&self, ev: &Event) -> bool {
        let key = ev.key as usize;
        match ev.kind {
            Kind::Exrate => {
                self.types & Kind::Exrate.bit() != 0
                    && self.exrate_ok.get(key).copied().unwrap_or(false)
            }
            Kind::Index => self.index_ok.get(key).copied().unwrap_or(false),
            k if k.symbol_based() => {
                self.types & k.bit() != 0
                    && self.sym_ok.get(key).copied().unwrap_or(false)
                    && (k != Kind::Ohlcv
                        || self
                            .period_ok
                            .get(usize::from(ev.period))
                            .copied()
                            .unwrap_or(false))
            }
            _ => false,
        }
    }
}

/// `{"type":"error","message":...}`.
pub(crate) fn error_json(message: &str) -> String {
    let mut s = String::from("{\"type\":\"error\",\"message\":");
    push_json_str(&mut s, message);
    s.push('}');
    s
}

/// The reading half of a CoinAPI connection: turns client frames into control actions.
pub(crate) struct Session {
    scope: Scope,
    universe: Arc<Universe>,
    /// The configured key, when the upgrade did not already prove it.
    need_key: Option<String>,
    closed: bool,
}

impl Session {
    /// `need_key`: `Some(key)` when the key must still arrive in the first request's `apikey`.
    pub(crate) fn new(universe: Arc<Universe>, need_key: Option<String>) -> Self {
        Self {
            scope: Scope::default(),
            universe,
            need_key,
            closed: false,
        }
    }

    /// Handles one client text frame.
    pub(crate) fn on_text(&mut self, text: &str) -> Vec<Ctrl> {
        if self.closed {
            return Vec::new();
        }
        let req = match parse_request(text) {
            Ok(r) => r,
            Err(e) => return self.fail(&e),
        };
        if let Some(key) = &self.need_key {
            if req.apikey.as_deref() != Some(key.as_str()) {
                return self.fail("Invalid API key");
            }
            self.need_key = None;
        }
        if let Err(e) = self.scope.apply(&req) {
            return self.fail(&e);
        }
        let compiled = self.scope.compile(&self.universe);
        vec![Ctrl::Install {
            heartbeat: Some(compiled.heartbeat),
            nonempty: compiled.nonempty,
            scope: LinkScope::Coin(Arc::new(compiled)),
            reply: None,
        }]
    }

    /// Binary frames are not part of the protocol.
    pub(crate) fn on_binary(&mut self) -> Vec<Ctrl> {
        self.fail("Binary messages are not supported.")
    }

    fn fail(&mut self, message: &str) -> Vec<Ctrl> {
        self.closed = true;
        vec![Ctrl::ErrorClose(error_json(message))]
    }
}

/// Per-connection rendering state: sequence counters per (type, key) and which book streams
/// this connection has seen, so it starts each with a snapshot.
pub(crate) struct Renderer {
    salt: u64,
    nkeys: usize,
    next_seq: Vec<u64>,
    book_last: Vec<Option<u64>>,
    l3_last: Vec<Option<u64>>,
}

impl Renderer {
    /// `salt` makes the starting sequence numbers differ between connections.
    pub(crate) fn new(universe: &Universe, salt: u64) -> Self {
        let nkeys = universe.symbols.len().max(universe.indexes.len());
        Self {
            salt,
            nkeys,
            next_seq: vec![0; nkeys * 10],
            book_last: vec![None; universe.symbols.len()],
            l3_last: vec![None; universe.symbols.len()],
        }
    }

    /// Renders `ev` into `out` (cleared first); `gap` skips one sequence number first.
    /// Returns the sequence number sent, if the type has one.
    #[cfg(test)]
    pub(crate) fn render(&mut self, ev: &Event, gap: bool, out: &mut String) -> Option<u64> {
        self.render_as(ev, gap, false, out)
    }

    fn book_last(&mut self, ev: &Event) -> Option<&mut Option<u64>> {
        match ev.kind {
            Kind::Book => self.book_last.get_mut(ev.key as usize),
            Kind::BookL3 => self.l3_last.get_mut(ev.key as usize),
            _ => None,
        }
    }

    /// Whether `ev` (a `book`/`book_l3` event) would go out as an update on this connection.
    pub(crate) fn continues(&mut self, ev: &Event) -> bool {
        let prev = ev.prev;
        self.book_last(ev)
            .is_some_and(|last| last.is_some() && *last == prev)
    }

    /// The sequence slot of `ev`, started if new.
    fn next_seq(&mut self, ev: &Event) -> Option<&mut u64> {
        let slot = ev.kind as usize * self.nkeys + ev.key as usize;
        let salt = self.salt;
        let next = self.next_seq.get_mut(slot)?;
        if *next == 0 {
            // A random-looking start per key and connection, as the real feed's counters are.
            *next = 1000 + mix64(salt ^ mix64(slot as u64)) % 9_000_000;
        }
        Some(next)
    }

    /// Loses `ev` (a book update): its number is used and the book moves on without it.
    pub(crate) fn skip(&mut self, ev: &Event) {
        if let Some(next) = self.next_seq(ev) {
            *next += 1;
        }
        if let Some(last) = self.book_last(ev) {
            *last = Some(ev.no);
        }
    }

    /// Renders a bogus update of `ev`'s book, with a number of its own, that crosses it: a
    /// bid at the best ask. `None` when the book has no ask.
    pub(crate) fn render_cross(&mut self, ev: &Event, out: &mut String) -> Option<u64> {
        let book = ev.book.as_ref()?;
        let &(px, _) = book.asks.first()?;
        let times = ev.tail.split(",\"is_snapshot\"").next()?.to_owned();
        let next = self.next_seq(ev)?;
        let seq = *next;
        *next += 1;
        out.clear();
        out.push_str(&ev.head);
        push_u64(out, seq);
        out.push_str(&times);
        out.push_str(",\"is_snapshot\":false,\"asks\":[],\"bids\":[{");
        if ev.kind == Kind::BookL3 {
            out.push_str("\"id\":\"");
            crate::sim::fmt::push_uuid(out, u128::from(ev.no) << 64 | 0xC055, false);
            out.push_str("\",");
        }
        out.push_str("\"price\":");
        crate::sim::fmt::push_fixed(out, px * book.tick, 9);
        out.push_str(",\"size\":1.000000000");
        if ev.kind == Kind::BookL3 {
            out.push_str(",\"update_type\":\"ADD\"");
        }
        out.push_str("}]}");
        Some(seq)
    }

    /// A scope change: a book stream the connection newly receives starts with a snapshot,
    /// as a fresh subscription does.
    pub(crate) fn rescope(&mut self, old: Option<&CompiledScope>, new: &CompiledScope) {
        for (kind, last) in [
            (Kind::Book, &mut self.book_last),
            (Kind::BookL3, &mut self.l3_last),
        ] {
            for (i, l) in last.iter_mut().enumerate() {
                if !old.is_some_and(|o| o.matches_symbol(kind, i)) && new.matches_symbol(kind, i) {
                    *l = None;
                }
            }
        }
    }

    /// [`Renderer::render`], sending a book update as a snapshot when `snapshot` is set.
    pub(crate) fn render_as(
        &mut self,
        ev: &Event,
        gap: bool,
        snapshot: bool,
        out: &mut String,
    ) -> Option<u64> {
        out.clear();
        out.push_str(&ev.head);
        if !ev.kind.coinapi_sequenced() {
            out.push_str(&ev.tail);
            return None;
        }
        let next = self.next_seq(ev)?;
        if gap {
            *next += 1;
        }
        let seq = *next;
        *next += 1;
        push_u64(out, seq);
        let last = match ev.kind {
            Kind::Book => self.book_last.get_mut(ev.key as usize),
            Kind::BookL3 => self.l3_last.get_mut(ev.key as usize),
            _ => None,
        };
        match (last, &ev.snapshot_tail) {
            (Some(last), Some(snap)) => {
                let continues = !snapshot && last.is_some() && *last == ev.prev;
                *last = Some(ev.no);
                out.push_str(if continues { &ev.tail } else { snap });
            }
            _ => out.push_str(&ev.tail),
        }
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::market::Market;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn scope_for(text: &str) -> Scope {
        let mut s = Scope::default();
        s.apply(&parse_request(text).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        s
    }

    #[test]
    fn symbol_filter_prefix_and_exact() {
        let f = l(&["BITSTAMP_SPOT_BTC_USD$", "COINBASE_"]);
        assert!(symbol_filter_matches(&f, "BITSTAMP_SPOT_BTC_USD"));
        assert!(!symbol_filter_matches(&f, "BITSTAMP_SPOT_BTC_USDT"));
        assert!(symbol_filter_matches(&f, "COINBASE_SPOT_ETH_USD"));
        assert!(!symbol_filter_matches(&f, "BINANCE_SPOT_BTC_USDT"));
        let f = l(&["BITSTAMP_SPOT_BTC_USD"]);
        assert!(symbol_filter_matches(&f, "BITSTAMP_SPOT_BTC_USDT"));
        assert!(!symbol_filter_matches(&[], "X"));
    }

    #[test]
    fn asset_filter_base_quote_and_pair() {
        assert!(asset_filter_matches(&l(&["BTC"]), "BTC", "USD"));
        assert!(asset_filter_matches(&l(&["BTC"]), "ETH", "BTC"));
        assert!(!asset_filter_matches(&l(&["BTC"]), "ETH", "USD"));
        assert!(asset_filter_matches(&l(&["BTC/USD"]), "BTC", "USD"));
        assert!(!asset_filter_matches(&l(&["BTC/USD"]), "BTC", "USDT"));
        assert!(!asset_filter_matches(&l(&["BTC/USD"]), "USD", "BTC"));
    }

    #[test]
    fn parse_errors() {
        for (text, want) in [
            ("not json", "Invalid JSON message."),
            ("[1]", "Message must be a JSON object."),
            ("{}", "Missing message type."),
            (r#"{"type":"bye"}"#, "Unsupported message type: bye"),
            (
                r#"{"type":"hello","subscribe_data_type":"trade"}"#,
                "Field 'subscribe_data_type' must be an array of strings.",
            ),
            (
                r#"{"type":"hello","subscribe_data_type":["tick"]}"#,
                "Unknown data type: tick",
            ),
            (
                r#"{"type":"hello","heartbeat":"yes"}"#,
                "Field 'heartbeat' must be a boolean.",
            ),
            (
                r#"{"type":"hello","subscribe_update_limit_ms_quote":-1}"#,
                "Field 'subscribe_update_limit_ms_quote' must be a non-negative integer.",
            ),
        ] {
            assert_eq!(parse_request(text).err().as_deref(), Some(want), "{text}");
        }
        let r = parse_request(
            r#"{"type":"hello","apikey":"k","heartbeat":true,"subscribe_data_type":["trade"],
                "subscribe_filter_symbol_id":["A$"],"subscribe_update_limit_ms_quote":100}"#,
        )
        .unwrap_or_default();
        assert_eq!(r.op, Some(Op::Hello));
        assert_eq!(r.apikey.as_deref(), Some("k"));
        assert_eq!(r.heartbeat, Some(true));
        assert_eq!(r.symbols, Some(l(&["A$"])));
        let mut s = Scope::default();
        assert_eq!(
            s.apply(&parse_request(r#"{"type":"hello","heartbeat":true}"#).unwrap_or_default()),
            Err("subscribe_data_type is required.".into())
        );
    }

    #[test]
    fn hello_replaces_subscribe_adds_unsubscribe_removes() {
        let mut s = scope_for(
            r#"{"type":"hello","heartbeat":true,"subscribe_data_type":["trade"],"subscribe_filter_symbol_id":["A"]}"#,
        );
        assert!(s.heartbeat);
        let sub = parse_request(
            r#"{"type":"subscribe","subscribe_data_type":["quote"],"subscribe_filter_symbol_id":["B","A"]}"#,
        )
        .unwrap_or_default();
        assert_eq!(s.apply(&sub), Ok(()));
        assert_eq!(
            s.types,
            ["quote", "trade"].iter().map(|x| (*x).to_owned()).collect()
        );
        assert_eq!(s.symbols, Some(l(&["A", "B"])));
        assert!(s.heartbeat);
        let unsub = parse_request(
            r#"{"type":"unsubscribe","subscribe_data_type":["trade"],"subscribe_filter_symbol_id":["A"]}"#,
        )
        .unwrap_or_default();
        assert_eq!(s.apply(&unsub), Ok(()));
        assert_eq!(s.symbols, Some(l(&["B"])));
        let hello = parse_request(r#"{"type":"hello","subscribe_data_type":["book5"]}"#)
            .unwrap_or_default();
        assert_eq!(s.apply(&hello), Ok(()));
        assert_eq!(s.symbols, None);
        assert!(!s.heartbeat);
        // Removing every type empties the scope; a later subscribe starts fresh.
        let unsub = parse_request(r#"{"type":"unsubscribe","subscribe_data_type":["book5"]}"#)
            .unwrap_or_default();
        assert_eq!(s.apply(&unsub), Ok(()));
        assert!(s.is_empty());
        let sub = parse_request(
            r#"{"type":"subscribe","subscribe_data_type":["trade"],"subscribe_filter_asset_id":["ETH"]}"#,
        )
        .unwrap_or_default();
        assert_eq!(s.apply(&sub), Ok(()));
        assert_eq!(s.assets, Some(l(&["ETH"])));
        // Unsubscribing the last asset of a restricted dimension matches nothing.
        let unsub = parse_request(r#"{"type":"unsubscribe","subscribe_filter_asset_id":["ETH"]}"#)
            .unwrap_or_default();
        assert_eq!(s.apply(&unsub), Ok(()));
        let u = Universe::new(100);
        assert!(!s.compile(&u).sym_ok.iter().any(|b| *b));
    }

    fn ev(kind: Kind, key: usize, period: u8) -> Event {
        Event {
            no: 0,
            kind,
            key: key as u32,
            rec_key: 0,
            period,
            head: String::new(),
            tail: String::new(),
            snapshot_tail: None,
            book: None,
            prev: None,
            fixed_seq: None,
            uuid: None,
        }
    }

    fn sym(u: &Universe, id: &str) -> usize {
        u.symbols
            .iter()
            .position(|s| s.id == id)
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn compiled_filter_rules() {
        let u = Universe::new(100);
        let btc_usd = sym(&u, "BITSTAMP_SPOT_BTC_USD");
        let btc_usdt = sym(&u, "BITSTAMP_SPOT_BTC_USDT");
        let eth_cb = sym(&u, "COINBASE_SPOT_ETH_USD");
        let eth_btc = sym(&u, "BINANCE_SPOT_ETH_BTC");

        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["trade"],"subscribe_filter_symbol_id":["BITSTAMP_SPOT_BTC_USD$","COINBASE_"]}"#).compile(&u);
        assert!(c.matches(&ev(Kind::Trade, btc_usd, 0)));
        assert!(!c.matches(&ev(Kind::Trade, btc_usdt, 0)));
        assert!(c.matches(&ev(Kind::Trade, eth_cb, 0)));
        assert!(!c.matches(&ev(Kind::Quote, btc_usd, 0)));
        assert!(!c.matches(&ev(Kind::Index, 0, 0)));

        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["quote"],"subscribe_filter_asset_id":["BTC"]}"#).compile(&u);
        assert!(c.matches(&ev(Kind::Quote, btc_usd, 0)));
        assert!(c.matches(&ev(Kind::Quote, eth_btc, 0)));
        assert!(!c.matches(&ev(Kind::Quote, eth_cb, 0)));

        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["quote"],"subscribe_filter_asset_id":["BTC/USD"],"subscribe_filter_exchange_id":["BITSTAMP"]}"#).compile(&u);
        assert!(c.matches(&ev(Kind::Quote, btc_usd, 0)));
        assert!(!c.matches(&ev(Kind::Quote, btc_usdt, 0)));
        assert!(!c.matches(&ev(Kind::Quote, sym(&u, "COINBASE_SPOT_BTC_USD"), 0)));

        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["ohlcv"],"subscribe_filter_period_id":["1MIN"]}"#).compile(&u);
        assert!(c.matches(&ev(Kind::Ohlcv, btc_usd, 1)));
        assert!(!c.matches(&ev(Kind::Ohlcv, btc_usd, 0)));

        // exrate needs an asset filter.
        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["exrate"]}"#).compile(&u);
        assert!(!(0..u.exrates.len()).any(|i| c.matches(&ev(Kind::Exrate, i, 0))));
        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["exrate"],"subscribe_filter_asset_id":["ETH"]}"#).compile(&u);
        let hits: Vec<String> = (0..u.exrates.len())
            .filter(|&i| c.matches(&ev(Kind::Exrate, i, 0)))
            .map(|i| format!("{}/{}", u.exrates[i].base, u.exrates[i].quote))
            .collect();
        assert_eq!(hits, l(&["ETH/USD", "ETH/BTC"]));

        // Index subscriptions: index ids alone, or the `index` type for all of them.
        let c = scope_for(
            r#"{"type":"hello","subscribe_filter_index_id":["IDX_REFRATE_PRIMKT_ETH_USD"]}"#,
        )
        .compile(&u);
        assert!(c.nonempty);
        assert!(c.matches(&ev(Kind::Index, 1, 0)));
        assert!(!c.matches(&ev(Kind::Index, 0, 0)));
        assert!(!c.matches(&ev(Kind::Trade, btc_usd, 0)));
        let c = scope_for(r#"{"type":"hello","subscribe_data_type":["index"]}"#).compile(&u);
        assert!((0..u.indexes.len()).all(|i| c.matches(&ev(Kind::Index, i, 0))));

        // Empty filter lists restrict nothing.
        let c = scope_for(
            r#"{"type":"hello","subscribe_data_type":["trade"],"subscribe_filter_symbol_id":[]}"#,
        )
        .compile(&u);
        assert!((0..u.symbols.len()).all(|i| c.matches(&ev(Kind::Trade, i, 0))));
    }

    #[test]
    fn session_auth_and_errors() {
        let u = Arc::new(Universe::new(10));
        let mut s = Session::new(u.clone(), Some("k1".into()));
        let out = s.on_text(r#"{"type":"hello","apikey":"nope","subscribe_data_type":["trade"]}"#);
        assert!(
            matches!(&out[..], [Ctrl::ErrorClose(t)] if t == r#"{"type":"error","message":"Invalid API key"}"#)
        );
        assert!(s.on_text(r#"{"type":"hello"}"#).is_empty());
        let mut s = Session::new(u.clone(), Some("k1".into()));
        let out = s.on_text(r#"{"type":"hello","apikey":"k1","subscribe_data_type":["trade"]}"#);
        assert!(matches!(&out[..], [Ctrl::Install { nonempty: true, .. }]));
        let mut s = Session::new(u, None);
        let out = s.on_text(r#"{"type":"hello","heartbeat":true}"#);
        assert!(
            matches!(&out[..], [Ctrl::ErrorClose(t)] if t.contains("subscribe_data_type is required"))
        );
    }

    #[test]
    fn renderer_sequences_and_snapshots() {
        let u = Arc::new(Universe::new(2));
        let mut m = Market::new(5, u.clone());
        let mut r1 = Renderer::new(&u, 1);
        let mut r2 = Renderer::new(&u, 2);
        // r3 misses a stretch of events (as after an unsubscribe): books restart with snapshots.
        let mut r3 = Renderer::new(&u, 3);
        let mut out = String::new();
        let mut last: std::collections::HashMap<(Kind, u32), u64> = Default::default();
        let mut seen = std::collections::HashSet::new();
        let mut seen3 = std::collections::HashSet::new();
        let mut books = 0;
        for i in 0..40_000 {
            let ev = m.next_event(1_700_000_000_000_000_000 + i);
            let s1 = r1.render(&ev, false, &mut out);
            let is_book = matches!(ev.kind, Kind::Book | Kind::BookL3);
            if is_book {
                let snap = out.contains("\"is_snapshot\":true");
                assert_eq!(snap, seen.insert((ev.kind, ev.key)), "{out}");
                books += 1;
            }
            if !(10_000..20_000).contains(&i) {
                r3.render(&ev, false, &mut out);
                if i == 20_000 {
                    seen3.clear();
                }
                if is_book {
                    let snap = out.contains("\"is_snapshot\":true");
                    assert_eq!(snap, seen3.insert((ev.kind, ev.key)), "{i} {out}");
                }
            }
            let s2 = r2.render(&ev, i == 5, &mut out);
            match (s1, s2) {
                (Some(a), Some(b)) => {
                    assert!(a >= 1000 && b >= 1000);
                    if let Some(prev) = last.insert((ev.kind, ev.key), a) {
                        assert_eq!(a, prev + 1);
                    }
                }
                (None, None) => assert_eq!(ev.kind, Kind::Exrate),
                _ => panic!("mismatch"),
            }
        }
        assert!(books > 2);
    }
}
