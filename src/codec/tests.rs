//! Table-driven tests of [`CoinApiDecoder`]: recorded frames from `tests/data/coinapi/` and
//! hand-made bad input, one line per case (`name: ok|err => input, expected`).
//!
//! Every case is decoded twice, by a fresh decoder and by one that has already decoded other
//! frames, and must give exactly the expected [`Msg`] (every field; times as exact ns) or a
//! [`DecodeError`] whose text contains the expected fragment (`|` separates accepted
//! alternatives). A panic fails the case. The `bug_` cases pin decoder bugs that were fixed:
//! they state the correct behaviour and pass, so a regression fails them.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use simd_json::{OwnedValue, StaticNode};

use super::{CoinApiDecoder, DecodeError};
use crate::model::{
    Book, BookKind, BookL3, Exrate, Index, Key, L3Entry, Level, Msg, Ohlcv, Quote, ReconnectNotice,
    ServerError, Trade, Unknown,
};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The recorded frames. Relative to the manifest so tests run from any working directory (and
/// from a scratch crate whose `tests` links to this crate's).
const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/coinapi");

/// Reads the recorded frame `tests/data/coinapi/<name>`: the one way these tests load fixtures.
fn file(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURE_DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn text(name: &str) -> String {
    String::from_utf8(file(name)).expect("fixtures are UTF-8")
}

/// `name` with its only occurrence of `from` replaced by the bytes `to`.
fn edit(name: &str, from: &str, to: impl AsRef<[u8]>) -> Vec<u8> {
    let bytes = file(name);
    let from = from.as_bytes();
    let hits: Vec<usize> = (0..=bytes.len().saturating_sub(from.len()))
        .filter(|&i| bytes[i..].starts_with(from))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{name}: {:?} must occur once",
        String::from_utf8_lossy(from)
    );
    let mut out = bytes[..hits[0]].to_vec();
    out.extend_from_slice(to.as_ref());
    out.extend_from_slice(&bytes[hits[0] + from.len()..]);
    out
}

/// Byte range of the value of the top-level member `field` in a pretty-printed fixture (each
/// member starts a line; arrays and objects may span lines; no brackets inside strings).
fn value_span(t: &str, name: &str, field: &str) -> (usize, usize) {
    let key = format!("\n  \"{field}\": ");
    assert_eq!(
        t.matches(&key).count(),
        1,
        "{name}: `{field}` must occur once"
    );
    let start = t.find(&key).expect("counted above") + key.len();
    let mut depth = 0i32;
    for (i, c) in t[start..].char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' | '\n' if depth == 0 => return (start, start + i),
            _ => {}
        }
        if depth < 0 {
            // The closing brace of the whole object: `field` was the last member.
            return (start, start + t[start..start + i].trim_end().len());
        }
    }
    panic!("{name}: `{field}` has no end")
}

/// `name` with the value of `field` replaced by the JSON text `token`.
fn set(name: &str, field: &str, token: &str) -> Vec<u8> {
    let t = text(name);
    let (start, end) = value_span(&t, name, field);
    format!("{}{token}{}", &t[..start], &t[end..]).into_bytes()
}

/// `name` without the member `field` (its line removed, commas kept valid).
fn unset(name: &str, field: &str) -> Vec<u8> {
    let t = text(name);
    let (start, end) = value_span(&t, name, field);
    let line_start = t[..start].rfind('\n').expect("not on the first line");
    let mut head = t[..line_start].to_string();
    if t[end..].starts_with(',') {
        format!("{head}{}", &t[end + 1..]).into_bytes()
    } else {
        // It was the last member: the previous one loses its comma.
        assert_eq!(head.pop(), Some(','));
        format!("{head}{}", &t[end..]).into_bytes()
    }
}

/// The first `n` bytes of `name`.
fn cut(name: &str, n: usize) -> Vec<u8> {
    file(name)[..n].to_vec()
}

/// `head`, `depth` nested arrays, `tail`.
fn nested(head: &str, depth: usize, tail: &str) -> Vec<u8> {
    format!("{head}{}{}{tail}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

fn stamped(ts: &str) -> Vec<u8> {
    set("trade.json", "time_exchange", &format!("\"{ts}\""))
}

fn with_price(token: &str) -> Vec<u8> {
    set("trade.json", "price", token)
}

fn with_sequence(token: &str) -> Vec<u8> {
    set("trade.json", "sequence", token)
}

// ---------------------------------------------------------------------------------------------
// Expected messages: the documented examples, field by field
// ---------------------------------------------------------------------------------------------

/// 2013-09-28T22:40:50.0000000Z
const T_EX: i64 = 1_380_408_050_000_000_000;
/// 2017-03-18T22:42:21.3763342Z
const T_CA: i64 = 1_489_876_941_376_334_200;

fn k(s: &str) -> Key {
    Arc::from(s)
}

/// The f64 nearest to a decimal token, by Rust's correctly rounded parser.
fn num(token: &str) -> f64 {
    token.parse().expect("a decimal token")
}

fn trade_doc() -> Trade {
    Trade {
        symbol_id: k("BITSTAMP_SPOT_BTC_USD"),
        sequence: 2_323_346,
        time_exchange: T_EX,
        time_coinapi: T_CA,
        uuid: "770C7A3B-7258-4441-8182-83740F3E2457".into(),
        price: 770.0,
        size: 0.05,
        taker_side: k("BUY"),
    }
}

fn trade_at(time_exchange: i64) -> Msg {
    Msg::Trade(Trade {
        time_exchange,
        ..trade_doc()
    })
}

fn trade_priced(price: f64) -> Msg {
    Msg::Trade(Trade {
        price,
        ..trade_doc()
    })
}

fn trade_seq(sequence: u64) -> Msg {
    Msg::Trade(Trade {
        sequence,
        ..trade_doc()
    })
}

fn trade_side(taker_side: &str) -> Msg {
    Msg::Trade(Trade {
        taker_side: k(taker_side),
        ..trade_doc()
    })
}

fn quote_doc() -> Quote {
    Quote {
        symbol_id: k("BITSTAMP_SPOT_BTC_USD"),
        sequence: 2_323_346,
        time_exchange: T_EX,
        time_coinapi: T_CA,
        ask_price: 770.0,
        ask_size: 3252.0,
        bid_price: 760.0,
        bid_size: 124.0,
    }
}

fn book_snapshot() -> Book {
    Book {
        kind: BookKind::Full,
        symbol_id: k("BITSTAMP_SPOT_BTC_USD"),
        sequence: 2_323_346,
        time_exchange: T_EX,
        time_coinapi: T_CA,
        is_snapshot: true,
        asks: vec![(456.35, 123.0), (456.36, 0.5), (456.40, 12.25)],
        bids: vec![(456.10, 7.0), (455.98, 0.001)],
    }
}

fn book_update() -> Book {
    Book {
        kind: BookKind::Full,
        symbol_id: k("BITSTAMP_SPOT_BTC_USD"),
        sequence: 2_323_347,
        time_exchange: 1_380_408_050_012_000_000,
        time_coinapi: 1_489_876_941_389_120_700,
        is_snapshot: false,
        asks: vec![(456.35, 0.0)],
        bids: vec![],
    }
}

fn book5() -> Book {
    Book {
        kind: BookKind::Top5,
        symbol_id: k("COINBASE_SPOT_ETH_USD"),
        sequence: 88_015,
        time_exchange: 1_714_573_800_011_234_000,
        time_coinapi: 1_714_573_800_015_700_100,
        is_snapshot: true,
        asks: vec![
            (2875.12, 1.2),
            (2875.13, 0.04),
            (2875.20, 3.5),
            (2875.31, 10.0),
            (2875.50, 0.0005),
        ],
        bids: vec![
            (2875.11, 2.75),
            (2875.05, 0.1),
            (2874.99, 8.0),
            (2874.50, 1.001),
            (2874.01, 25.5),
        ],
    }
}

/// The sizes cycled through by the `book20`/`book50` fixtures.
const LADDER_SIZES: [&str; 7] = [
    "0.01200000",
    "1.5",
    "0.00034100",
    "12",
    "0.25000000",
    "3.10010000",
    "0.5",
];

/// `n` levels from `first_cents`, `step_cents` apart, as the `book20`/`book50` fixtures hold them.
fn ladder(first_cents: i64, step_cents: i64, n: usize) -> Vec<Level> {
    (0..n)
        .map(|i| {
            let c = first_cents + step_cents * i as i64;
            (
                num(&format!("{}.{:02}", c / 100, c % 100)),
                num(LADDER_SIZES[i % LADDER_SIZES.len()]),
            )
        })
        .collect()
}

fn book20() -> Book {
    Book {
        kind: BookKind::Top20,
        symbol_id: k("BINANCE_SPOT_BTC_USDT"),
        sequence: 410,
        time_exchange: 1_714_573_800_100_000_000,
        time_coinapi: 1_714_573_800_104_331_800,
        is_snapshot: true,
        asks: ladder(6_385_051, 1, 20),
        bids: ladder(6_385_050, -1, 20),
    }
}

fn book50() -> Book {
    Book {
        kind: BookKind::Top50,
        symbol_id: k("KRAKEN_SPOT_ETH_EUR"),
        sequence: 97,
        time_exchange: 1_714_573_801_000_000_000,
        time_coinapi: 1_714_573_801_006_127_400,
        is_snapshot: true,
        asks: ladder(287_512, 3, 50),
        bids: ladder(287_505, -2, 50),
    }
}

fn l3(id: Option<&str>, price: f64, size: f64, update_type: Option<&str>) -> L3Entry {
    L3Entry {
        id: id.map(Into::into),
        price,
        size,
        update_type: update_type.map(k),
    }
}

const ID_A: &str = "3c5e789c-4c84-448a-9c5d-50532ea1ccbb";
const ID_B: &str = "c64a76ba-5107-4c1b-b788-271ee88df318";
const ID_C: &str = "100d5004-f4e0-4e92-a571-392403d5b073";
const ID_D: &str = "0889cf06-4a9d-4519-98e6-fac5dcb7afbf";
const ID_E: &str = "5b1cb0d4-8e0f-4f2e-9b41-2f7c7d0b9a11";

fn l3_update() -> BookL3 {
    BookL3 {
        symbol_id: k("COINBASE_SPOT_BCH_USD"),
        sequence: 1023,
        time_exchange: 1_598_524_115_611_113_000,
        time_coinapi: 1_598_524_115_676_646_100,
        is_snapshot: false,
        asks: vec![
            l3(Some(ID_A), 272.89, 1.0, Some("ADD")),
            l3(Some(ID_B), 272.9, 18.0, Some("UPDATE")),
        ],
        bids: vec![
            l3(Some(ID_C), 272.83, 0.0, Some("DELETE")),
            l3(Some(ID_D), 272.83, 0.64185083, Some("MATCH")),
            l3(Some(ID_E), 272.80, 3.5, Some("SUBTRACT")),
        ],
    }
}

fn l3_snapshot() -> BookL3 {
    BookL3 {
        sequence: 1,
        is_snapshot: true,
        asks: vec![
            l3(Some(ID_A), 272.89, 1.0, None),
            l3(Some(ID_B), 272.9, 18.0, None),
        ],
        bids: vec![
            l3(Some(ID_C), 272.83, 18.0, None),
            // `"id": null` and no `id` at all: aggregated levels from a venue without order ids.
            l3(None, 272.7, 4.2, None),
            l3(None, 272.6, 1.1, None),
        ],
        ..l3_update()
    }
}

fn ohlcv() -> Ohlcv {
    Ohlcv {
        symbol_id: k("BITSTAMP_SPOT_XRP_USD"),
        sequence: 511,
        period_id: Some(k("1MIN")),
        time_period_start: 1_560_266_760_000_000_000,
        time_period_end: 1_560_266_820_000_000_000,
        time_open: Some(1_560_266_771_473_000_000),
        time_close: Some(1_560_266_815_589_000_000),
        price_open: Some(0.3865),
        price_high: Some(0.3866),
        price_low: Some(0.3861),
        price_close: Some(0.3864),
        volume_traded: 1500.31419084,
        trades_count: 5,
    }
}

fn ohlcv_empty() -> Ohlcv {
    Ohlcv {
        sequence: 512,
        period_id: Some(k("1SEC")),
        time_period_end: 1_560_266_761_000_000_000,
        time_open: None,
        time_close: None,
        price_open: None,
        price_high: None,
        price_low: None,
        price_close: None,
        volume_traded: 0.0,
        trades_count: 0,
        ..ohlcv()
    }
}

fn exrate() -> Exrate {
    Exrate {
        asset_id_base: k("BTC"),
        asset_id_quote: k("USD"),
        rate_type: k("BASE_ALL_CROSSES_TO_REF"),
        time: 1_560_266_760_000_000_000,
        rate: 10065.0319541,
    }
}

fn index() -> Index {
    Index {
        index_id: k("IDX_REFRATE_PRIMKT_BTC_USD"),
        sequence: 12,
        time_coinapi: 1_714_573_800_000_000_000,
        value: 1085.72276,
    }
}

fn reconnect() -> ReconnectNotice {
    ReconnectNotice {
        within_seconds: 10,
        before_time: 1_596_741_549_703_542_900,
    }
}

fn server_error(message: &str) -> Msg {
    Msg::Error(ServerError {
        message: message.into(),
        error_type: None,
    })
}

/// An `Unknown` whose `raw` is exactly `input` (for compact frames, where re-encoding and
/// keeping the text agree).
fn unknown_verbatim(kind: &str, input: &[u8]) -> Msg {
    Msg::Unknown(Unknown {
        kind: kind.into(),
        raw: std::str::from_utf8(input).expect("UTF-8").into(),
    })
}

// ---------------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------------

/// What a case must produce.
enum Expect {
    /// Exactly this message.
    Msg(Msg),
    /// A `Metadata` (`meta: true`) or `Unknown` of this kind whose JSON text holds exactly the
    /// values of `same_as`: same members, strings, integer-vs-float kind, and every number the
    /// nearest f64 of its wire token. Formatting is not pinned.
    Json {
        meta: bool,
        kind: &'static str,
        same_as: Vec<u8>,
    },
    /// A `DecodeError` whose text contains one of the `|`-separated fragments.
    Err(&'static str),
}

impl From<Msg> for Expect {
    fn from(m: Msg) -> Self {
        Expect::Msg(m)
    }
}

fn meta(kind: &'static str, same_as: Vec<u8>) -> Expect {
    Expect::Json {
        meta: true,
        kind,
        same_as,
    }
}

fn unknown(kind: &'static str, same_as: Vec<u8>) -> Expect {
    Expect::Json {
        meta: false,
        kind,
        same_as,
    }
}

fn parse_owned(bytes: &[u8]) -> OwnedValue {
    simd_json::to_owned_value(&mut bytes.to_vec())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Exact JSON equality: floats bit for bit, integers by value, no int/float mixing.
fn same_value(a: &OwnedValue, b: &OwnedValue, at: &str) -> Result<(), String> {
    let differ = || Err(format!("at {at}: {a:?} != {b:?}"));
    match (a, b) {
        (OwnedValue::Static(x), OwnedValue::Static(y)) => {
            let int = |n: &StaticNode| match *n {
                StaticNode::I64(i) => Some(i128::from(i)),
                StaticNode::U64(u) => Some(i128::from(u)),
                _ => None,
            };
            let equal = match (x, y) {
                (StaticNode::F64(p), StaticNode::F64(q)) => p.to_bits() == q.to_bits(),
                (StaticNode::Null, StaticNode::Null) => true,
                (StaticNode::Bool(p), StaticNode::Bool(q)) => p == q,
                _ => int(x).is_some() && int(x) == int(y),
            };
            if equal {
                Ok(())
            } else {
                differ()
            }
        }
        (OwnedValue::String(x), OwnedValue::String(y)) if x == y => Ok(()),
        (OwnedValue::Array(x), OwnedValue::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y.iter())
            .enumerate()
            .try_for_each(|(i, (p, q))| same_value(p, q, &format!("{at}[{i}]"))),
        (OwnedValue::Object(x), OwnedValue::Object(y)) if x.len() == y.len() => {
            x.iter().try_for_each(|(key, p)| match y.get(key) {
                Some(q) => same_value(p, q, &format!("{at}.{key}")),
                None => Err(format!("at {at}: member `{key}` missing")),
            })
        }
        _ => differ(),
    }
}

fn decode_guarded(
    d: &mut CoinApiDecoder,
    frame: &[u8],
) -> Result<Result<Msg, DecodeError>, String> {
    let buf = frame.to_vec();
    catch_unwind(AssertUnwindSafe(|| d.decode(&buf))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default()
    })
}

fn verdict(want: &Expect, got: &Result<Msg, DecodeError>) -> Result<(), String> {
    match (want, got) {
        (Expect::Msg(w), Ok(g)) if w == g => Ok(()),
        (Expect::Err(frags), Err(DecodeError(text))) => {
            if frags.split('|').any(|f| text.contains(f)) {
                Ok(())
            } else {
                Err(format!("error {text:?} does not contain {frags:?}"))
            }
        }
        (
            Expect::Json {
                meta,
                kind,
                same_as,
            },
            Ok(g),
        ) => {
            let (got_kind, json) = match (meta, g) {
                (true, Msg::Metadata(m)) => (&*m.kind, &*m.json),
                (false, Msg::Unknown(u)) => (&*u.kind, &*u.raw),
                _ => return Err(format!("got {g:?}")),
            };
            if got_kind != *kind {
                return Err(format!("kind {got_kind:?}, want {kind:?}"));
            }
            same_value(&parse_owned(json.as_bytes()), &parse_owned(same_as), "$")
        }
        (Expect::Msg(w), g) => Err(format!("want {w:?}\n got {g:?}")),
        (Expect::Err(frags), Ok(g)) => {
            Err(format!("want an error containing {frags:?}, got {g:?}"))
        }
        (Expect::Json { kind, .. }, Err(e)) => Err(format!("want a {kind} message, got {e:?}")),
    }
}

/// A decoder that has already been through a large frame and a failed one.
fn used_decoder() -> CoinApiDecoder {
    let mut d = CoinApiDecoder::default();
    assert!(d.decode(&file("book50.json")).is_ok());
    assert!(d.decode(b"{\"type\":\"trade\",").is_err());
    d
}

fn check(name: &str, frame: Vec<u8>, want: Expect) {
    // The fast path and the general decoder agree on every case.
    super::tests_fast::assert_identical(&mut CoinApiDecoder::default(), &frame);
    for (which, mut d) in [
        ("fresh", CoinApiDecoder::default()),
        ("reused", used_decoder()),
    ] {
        match decode_guarded(&mut d, &frame) {
            Err(panic) => panic!("{name} ({which} decoder) panicked: {panic}"),
            Ok(got) => {
                if let Err(why) = verdict(&want, &got) {
                    panic!(
                        "{name} ({which} decoder): {why}\ninput: {}",
                        String::from_utf8_lossy(&frame)
                    );
                }
            }
        }
    }
}

fn frame(input: impl AsRef<[u8]>) -> Vec<u8> {
    input.as_ref().to_vec()
}

/// One test per line: `case!(name: ok => input, expected message);` or
/// `case!(name: err => input, "fragment of the error text");`, optionally preceded by
/// attributes (`#[ignore = "…"]`).
macro_rules! case {
    ($(#[$attr:meta])* $name:ident: ok => $input:expr, $want:expr) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            check(stringify!($name), frame($input), Expect::from($want));
        }
    };
    ($(#[$attr:meta])* $name:ident: err => $input:expr, $want:expr) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            check(stringify!($name), frame($input), Expect::Err($want));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Every message type, from the documented examples (corrected to valid JSON)
// ---------------------------------------------------------------------------------------------

case!(trade: ok => file("trade.json"), Msg::Trade(trade_doc()));
case!(quote: ok => file("quote.json"), Msg::Quote(quote_doc()));
case!(book_snapshot_full: ok => file("book_snapshot.json"), Msg::Book(book_snapshot()));
case!(book_update_full: ok => file("book_update.json"), Msg::Book(book_update()));
case!(book5_top: ok => file("book5.json"), Msg::Book(book5()));
case!(book20_top: ok => file("book20.json"), Msg::Book(book20()));
case!(book50_top: ok => file("book50.json"), Msg::Book(book50()));
case!(book_l3_update_with_ids_and_update_types: ok => file("book_l3_update.json"), Msg::BookL3(Box::new(l3_update())));
case!(book_l3_snapshot_without_update_type: ok => file("book_l3_snapshot.json"), Msg::BookL3(Box::new(l3_snapshot())));
case!(ohlcv_bar: ok => file("ohlcv.json"), Msg::Ohlcv(Box::new(ohlcv())));
case!(ohlcv_without_trades_has_null_times_and_prices: ok => file("ohlcv_empty.json"), Msg::Ohlcv(Box::new(ohlcv_empty())));
case!(exrate_vwap: ok => file("exrate.json"), Msg::Exrate(exrate()));
case!(index_value: ok => file("index.json"), Msg::Index(index()));
case!(reconnect_notice: ok => file("reconnect.json"), Msg::Reconnect(reconnect()));
case!(error_invalid_key: ok => file("error.json"), server_error("Invalid API key"));
case!(error_slow_consumer: ok => file("error_buffer.json"), server_error("Reached maximum allowed buffered messages for this connection."));
case!(heartbeat_indexes_spelling: ok => file("heartbeat.json"), Msg::Heartbeat);
case!(heartbeat_market_data_spelling: ok => file("hearbeat.json"), Msg::Heartbeat);
case!(asset_crypto_28_digit_price: ok => file("asset_btc.json"), meta("asset", file("asset_btc.json")));
case!(asset_fiat_date_only: ok => file("asset_usd.json"), meta("asset", file("asset_usd.json")));
case!(exchange_date_only_data_start: ok => file("exchange.json"), meta("exchange", file("exchange.json")));
case!(symbol_perpetual: ok => file("symbol.json"), meta("symbol", file("symbol.json")));
case!(legacy_volume_is_unknown: ok => file("volume.json"), unknown("volume", file("volume.json")));

// ---------------------------------------------------------------------------------------------
// Documented variants and optional fields
// ---------------------------------------------------------------------------------------------

case!(trade_compact_frame: ok => br#"{"type":"trade","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":2323346,"time_exchange":"2013-09-28T22:40:50.0000000Z","time_coinapi":"2017-03-18T22:42:21.3763342Z","uuid":"770C7A3B-7258-4441-8182-83740F3E2457","price":770.000000000,"size":0.050000000,"taker_side":"BUY"}"#, Msg::Trade(trade_doc()));
case!(trade_members_in_other_order: ok => br#"{"taker_side":"BUY","size":0.05,"price":770,"uuid":"770C7A3B-7258-4441-8182-83740F3E2457","time_coinapi":"2017-03-18T22:42:21.3763342Z","time_exchange":"2013-09-28T22:40:50.0000000Z","sequence":2323346,"symbol_id":"BITSTAMP_SPOT_BTC_USD","type":"trade"}"#, Msg::Trade(trade_doc()));
case!(trade_extra_members_ignored: ok => edit("trade.json", "\"size\"", "\"new_field\": {\"a\": [1, 2.5, null]},\n  \"size\""), Msg::Trade(trade_doc()));
case!(trade_type_with_escape: ok => edit("trade.json", "\"trade\"", "\"tr\\u0061de\""), Msg::Trade(trade_doc()));
case!(trade_symbol_with_escape: ok => edit("trade.json", "BTC_USD", "BTC\\u005fUSD"), Msg::Trade(trade_doc()));
case!(trade_taker_side_sell_estimated: ok => set("trade.json", "taker_side", "\"SELL_ESTIMATED\""), trade_side("SELL_ESTIMATED"));
case!(trade_taker_side_missing_is_unknown: ok => unset("trade.json", "taker_side"), trade_side("UNKNOWN"));
case!(trade_taker_side_null_is_unknown: ok => set("trade.json", "taker_side", "null"), trade_side("UNKNOWN"));
case!(trade_size_zero_marks_a_price_point: ok => set("trade.json", "size", "0"), Msg::Trade(Trade { size: 0.0, ..trade_doc() }));
case!(trade_uuid_lower_case_kept: ok => set("trade.json", "uuid", "\"770c7a3b-7258-4441-8182-83740f3e2457\""), Msg::Trade(Trade { uuid: "770c7a3b-7258-4441-8182-83740f3e2457".into(), ..trade_doc() }));
case!(trade_trailing_newline_and_spaces: ok => [file("trade.json"), b" \r\n\t ".to_vec()].concat(), Msg::Trade(trade_doc()));
case!(quote_zero_sizes_mean_unknown: ok => br#"{"type":"quote","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":2323346,"time_exchange":"2013-09-28T22:40:50.0000000Z","time_coinapi":"2017-03-18T22:42:21.3763342Z","ask_price":770.0,"ask_size":0,"bid_price":760,"bid_size":0.0}"#, Msg::Quote(Quote { ask_size: 0.0, bid_size: 0.0, ..quote_doc() }));
case!(book_sides_omitted_are_empty: ok => unset("book_update.json", "asks"), Msg::Book(Book { asks: vec![], ..book_update() }));
case!(book_side_null_is_empty: ok => set("book_update.json", "bids", "null"), Msg::Book(book_update()));
case!(book5_ignores_is_snapshot: ok => edit("book5.json", "\"asks\"", "\"is_snapshot\": false,\n  \"asks\""), Msg::Book(book5()));
case!(book_l3_update_type_null: ok => edit("book_l3_update.json", "\"update_type\": \"ADD\"", "\"update_type\": null"), Msg::BookL3(Box::new(BookL3 { asks: vec![l3(Some(ID_A), 272.89, 1.0, None), l3(Some(ID_B), 272.9, 18.0, Some("UPDATE"))], ..l3_update() })));
case!(exrate_without_rate_type: ok => unset("exrate.json", "rate_type"), Msg::Exrate(Exrate { rate_type: k(""), ..exrate() }));
case!(reconnect_negative_within_seconds: ok => set("reconnect.json", "within_seconds", "-10"), Msg::Reconnect(ReconnectNotice { within_seconds: -10, ..reconnect() }));
case!(error_without_message: ok => br#"{"type":"error"}"#, server_error(""));
case!(error_message_null: ok => br#"{"type":"error","message":null}"#, server_error(""));
case!(error_message_escapes_and_unicode: ok => r#"{"type":"error","message":"Cl\u00e9 \"API\" invalide \u2013 \u043a\u043b\u044e\u0447\nretry: no \ud83d\ude00"}"#, server_error("Clé \"API\" invalide – ключ\nretry: no 😀"));
case!(error_message_raw_utf8: ok => r#"{"type":"error","message":"Clé API invalide – ключ"}"#, server_error("Clé API invalide – ключ"));
case!(heartbeat_with_extra_members: ok => br#"{"type":"hearbeat","time":"2024-05-01T14:30:00Z"}"#, Msg::Heartbeat);
case!(metadata_minimal: ok => br#"{"type":"symbol"}"#, meta("symbol", b"{\"type\":\"symbol\"}".to_vec()));

// ---------------------------------------------------------------------------------------------
// Unknown types: never an error
// ---------------------------------------------------------------------------------------------

case!(unknown_ticker: ok => br#"{"type":"ticker","symbol_id":"X","price":1.5,"n":[1,-2,{"a":null}]}"#, unknown_verbatim("ticker", br#"{"type":"ticker","symbol_id":"X","price":1.5,"n":[1,-2,{"a":null}]}"#));
case!(unknown_type_case_sensitive: ok => br#"{"type":"Trade"}"#, unknown_verbatim("Trade", br#"{"type":"Trade"}"#));
case!(unknown_empty_type: ok => br#"{"type":""}"#, unknown_verbatim("", br#"{"type":""}"#));
case!(unknown_pretty_printed: ok => "{\n  \"type\": \"count\",\n  \"n\": 2.50,\n  \"s\": \"\\u00e9\\/\"\n}", unknown("count", r#"{"type":"count","n":2.5,"s":"é/"}"#.into()));
case!(unknown_escapes_survive_reencoding: ok => br#"{"type":"zzz","s":"q\"b\\s\u0001\t\u2028","k\"ey":[true,false,null,-0.5,1e-7]}"#, unknown("zzz", br#"{"type":"zzz","s":"q\"b\\s\u0001\t\u2028","k\"ey":[true,false,null,-0.5,1e-7]}"#.to_vec()));

// ---------------------------------------------------------------------------------------------
// Timestamps: exact ns for 0..12 fractional digits; everything else an error
// ---------------------------------------------------------------------------------------------

case!(time_frac_0: ok => stamped("2013-09-28T22:40:50Z"), trade_at(T_EX));
case!(time_frac_1: ok => stamped("2013-09-28T22:40:50.1Z"), trade_at(T_EX + 100_000_000));
case!(time_frac_3: ok => stamped("2013-09-28T22:40:50.123Z"), trade_at(T_EX + 123_000_000));
case!(time_frac_6: ok => stamped("2013-09-28T22:40:50.123456Z"), trade_at(T_EX + 123_456_000));
case!(time_frac_7: ok => stamped("2013-09-28T22:40:50.1234567Z"), trade_at(T_EX + 123_456_700));
case!(time_frac_9: ok => stamped("2013-09-28T22:40:50.123456789Z"), trade_at(T_EX + 123_456_789));
case!(time_frac_12_truncated: ok => stamped("2013-09-28T22:40:50.123456789987Z"), trade_at(T_EX + 123_456_789));
case!(time_frac_7_all_nines: ok => stamped("2013-09-28T22:40:50.9999999Z"), trade_at(T_EX + 999_999_900));
case!(time_offset_plus: ok => stamped("2013-09-28T23:40:50.0000000+01:00"), trade_at(T_EX));
case!(time_offset_minus_half_hour: ok => stamped("2013-09-28T17:10:50.0000000-05:30"), trade_at(T_EX));
case!(time_lower_case_t_and_z: ok => stamped("2013-09-28t22:40:50.0000000z"), trade_at(T_EX));
case!(time_space_separator: ok => stamped("2013-09-28 22:40:50.0000000Z"), trade_at(T_EX));
case!(time_date_only: ok => stamped("2013-09-28"), trade_at(1_380_326_400_000_000_000));
case!(time_epoch: ok => stamped("1970-01-01T00:00:00.0000000Z"), trade_at(0));
case!(time_before_epoch: ok => stamped("1969-12-31T23:59:59.9000000Z"), trade_at(-100_000_000));
case!(time_leap_second: ok => stamped("2016-12-31T23:59:60Z"), trade_at(1_483_228_800_000_000_000));
case!(time_latest_i64_ns: ok => stamped("2262-04-11T23:47:16.854775807Z"), trade_at(i64::MAX));
case!(time_past_i64_ns: err => stamped("2262-04-11T23:47:16.854775808Z"), "trade: field `time_exchange` is not an ISO-8601 timestamp");
case!(time_year_9999: err => stamped("9999-12-31T23:59:59.9999999Z"), "trade: field `time_exchange` is not an ISO-8601 timestamp");
case!(time_without_zone: err => stamped("2013-09-28T22:40:50.0000000"), "is not an ISO-8601 timestamp");
case!(time_empty_fraction: err => stamped("2013-09-28T22:40:50.Z"), "is not an ISO-8601 timestamp");
case!(time_without_seconds: err => stamped("2013-09-28T22:40Z"), "is not an ISO-8601 timestamp");
case!(time_month_13: err => stamped("2013-13-28T22:40:50.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_day_0: err => stamped("2013-09-00T22:40:50.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_day_32: err => stamped("2013-01-32T22:40:50.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_hour_24: err => stamped("2013-09-28T24:00:00.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_minute_60: err => stamped("2013-09-28T22:60:50.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_one_digit_month: err => stamped("2013-9-28T22:40:50.0000000Z"), "is not an ISO-8601 timestamp");
case!(time_short_offset: err => stamped("2013-09-28T23:40:50.0000000+01"), "is not an ISO-8601 timestamp");
case!(time_trailing_junk: err => stamped("2013-09-28T22:40:50.0000000Z "), "is not an ISO-8601 timestamp");
case!(time_double_zone: err => stamped("2013-09-28T22:40:50.0000000ZZ"), "is not an ISO-8601 timestamp");
case!(time_empty_string: err => stamped(""), "is not an ISO-8601 timestamp");
case!(time_words: err => stamped("yesterday"), "is not an ISO-8601 timestamp");
case!(time_non_ascii_digits: err => stamped("２０１３-09-28T22:40:50Z"), "is not an ISO-8601 timestamp");
case!(time_unix_number: err => set("trade.json", "time_exchange", "1380408050"), "trade: field `time_exchange` is not a timestamp string");
case!(time_bool: err => set("trade.json", "time_coinapi", "true"), "trade: field `time_coinapi` is not a timestamp string");
case!(time_null_is_missing: err => set("trade.json", "time_coinapi", "null"), "trade: missing field `time_coinapi`");
case!(ohlcv_period_start_without_seconds: err => set("ohlcv.json", "time_period_start", "\"2019-06-11T15:26Z\""), "ohlcv: field `time_period_start` is not an ISO-8601 timestamp");
case!(ohlcv_time_open_bad: err => set("ohlcv.json", "time_open", "\"15:26:11\""), "ohlcv: field `time_open` is not an ISO-8601 timestamp");
case!(reconnect_before_time_bad: err => set("reconnect.json", "before_time", "\"in 10 seconds\""), "reconnect: field `before_time` is not an ISO-8601 timestamp");
case!(exrate_time_missing: err => unset("exrate.json", "time"), "exrate: missing field `time`");

// ---------------------------------------------------------------------------------------------
// Numbers: integers and 9-decimal prices, 28-digit decimals to the nearest f64, out of range
// ---------------------------------------------------------------------------------------------

case!(price_integer: ok => with_price("3252"), trade_priced(3252.0));
case!(price_exponent: ok => with_price("7.7E2"), trade_priced(770.0));
case!(price_28_digits: ok => with_price("770.1234567890123456789012345"), trade_priced(num("770.1234567890123456789012345")));
case!(price_28_digit_fraction: ok => with_price("0.1234567890123456789012345678"), trade_priced(num("0.1234567890123456789012345678")));
case!(price_tiny: ok => with_price("0.0000000000000000000000000001"), trade_priced(1e-28));
case!(price_halfway_rounds_to_even: ok => with_price("9007199254740993.0"), trade_priced(9_007_199_254_740_992.0));
case!(price_largest_finite: ok => with_price("1.7976931348623157e308"), trade_priced(f64::MAX));
case!(price_underflow_is_zero: ok => with_price("1e-400"), trade_priced(0.0));
case!(price_negative_kept: ok => with_price("-1.5"), trade_priced(-1.5));
case!(price_beyond_f64: err => with_price("1e400"), "invalid JSON|not a finite number");
case!(price_beyond_f64_negative: err => with_price("-1e400"), "invalid JSON|not a finite number");
case!(price_just_beyond_f64: err => with_price("1.7976931348623159e308"), "invalid JSON|not a finite number");
case!(price_nan: err => with_price("NaN"), "invalid JSON");
case!(price_infinity: err => with_price("Infinity"), "invalid JSON");
case!(price_leading_zero: err => with_price("0770"), "invalid JSON");
case!(price_leading_plus: err => with_price("+770"), "invalid JSON");
case!(price_bare_fraction: err => with_price(".5"), "invalid JSON");
case!(price_trailing_dot: err => with_price("770."), "invalid JSON");
case!(price_as_string: err => with_price("\"770.000000000\""), "trade: field `price` is not a finite number");
case!(price_as_bool: err => with_price("true"), "trade: field `price` is not a finite number");
case!(price_as_array: err => with_price("[770]"), "trade: field `price` is not a finite number");
case!(price_null_is_missing: err => with_price("null"), "trade: missing field `price`");
case!(sequence_zero: ok => with_sequence("0"), trade_seq(0));
case!(sequence_beyond_u64: err => with_sequence("18446744073709551616"), "invalid JSON|trade: field `sequence` is not an unsigned integer");
case!(sequence_negative: err => with_sequence("-1"), "trade: field `sequence` is not an unsigned integer");
case!(sequence_float: err => with_sequence("2323346.0"), "trade: field `sequence` is not an unsigned integer");
case!(sequence_exponent: err => with_sequence("2.323346e6"), "trade: field `sequence` is not an unsigned integer");
case!(sequence_as_string: err => with_sequence("\"2323346\""), "trade: field `sequence` is not an unsigned integer");
case!(within_seconds_float: err => set("reconnect.json", "within_seconds", "10.5"), "reconnect: field `within_seconds` is not an integer");
case!(within_seconds_beyond_i64: err => set("reconnect.json", "within_seconds", "18446744073709551615"), "reconnect: field `within_seconds` is not an integer");
case!(trades_count_float: err => set("ohlcv.json", "trades_count", "5.0"), "ohlcv: field `trades_count` is not an unsigned integer");

// ---------------------------------------------------------------------------------------------
// Valid JSON of the wrong shape
// ---------------------------------------------------------------------------------------------

case!(trade_missing_symbol: err => unset("trade.json", "symbol_id"), "trade: missing field `symbol_id`");
case!(trade_missing_sequence: err => unset("trade.json", "sequence"), "trade: missing field `sequence`");
case!(trade_missing_uuid: err => unset("trade.json", "uuid"), "trade: missing field `uuid`");
case!(trade_missing_size: err => unset("trade.json", "size"), "trade: missing field `size`");
case!(trade_symbol_is_number: err => set("trade.json", "symbol_id", "42"), "trade: field `symbol_id` is not a string");
case!(trade_uuid_is_object: err => set("trade.json", "uuid", "{}"), "trade: field `uuid` is not a string");
case!(trade_taker_side_is_number: err => set("trade.json", "taker_side", "1"), "trade: field `taker_side` is not a string");
case!(trade_only_type: err => br#"{"type":"trade"}"#, "trade: missing field");
case!(quote_missing_bid_size: err => unset("quote.json", "bid_size"), "quote: missing field `bid_size`");
case!(quote_ask_price_string: err => set("quote.json", "ask_price", "\"770\""), "quote: field `ask_price` is not a finite number");
case!(book_missing_is_snapshot: err => unset("book_update.json", "is_snapshot"), "book: missing field `is_snapshot`");
case!(book_is_snapshot_as_number: err => set("book_update.json", "is_snapshot", "1"), "book: field `is_snapshot` is not a boolean");
case!(book_asks_not_array: err => set("book_update.json", "bids", "{}"), "book: field `bids` is not an array");
case!(book_level_as_pair: err => set("book_update.json", "bids", "[[456.1, 7]]"), "book: `bids` entry is not an object");
case!(book_level_price_string: err => edit("book_snapshot.json", "456.36", "\"456.36\""), "book: field `price` is not a finite number");
case!(book_level_missing_size: err => edit("book_snapshot.json", ", \"size\": 7}", "}"), "book: missing field `size`");
case!(book5_missing_sequence: err => unset("book5.json", "sequence"), "book: missing field `sequence`");
case!(book_l3_missing_is_snapshot: err => unset("book_l3_snapshot.json", "is_snapshot"), "book_l3: missing field `is_snapshot`");
case!(book_l3_id_is_number: err => edit("book_l3_update.json", &format!("\"{ID_E}\""), "12345"), "book_l3: field `id` is not a string");
case!(book_l3_update_type_is_number: err => edit("book_l3_update.json", "\"MATCH\"", "4"), "book_l3: field `update_type` is not a string");
case!(ohlcv_missing_period_id_as_in_docs_example: ok => unset("ohlcv.json", "period_id"), Msg::Ohlcv(Box::new(Ohlcv { period_id: None, ..ohlcv() })));
case!(ohlcv_volume_null: err => set("ohlcv.json", "volume_traded", "null"), "ohlcv: missing field `volume_traded`");
case!(ohlcv_price_high_string: err => set("ohlcv.json", "price_high", "\"0.3866\""), "ohlcv: field `price_high` is not a finite number");
case!(exrate_missing_rate: err => unset("exrate.json", "rate"), "exrate: missing field `rate`");
case!(index_without_sequence_as_in_one_docs_version: err => unset("index.json", "sequence"), "index: missing field `sequence`");
case!(index_value_string: err => set("index.json", "value", "\"1085.72276\""), "index: field `value` is not a finite number");
case!(reconnect_missing_before_time: err => unset("reconnect.json", "before_time"), "reconnect: missing field `before_time`");
case!(error_message_number: err => br#"{"type":"error","message":5}"#, "error: field `message` is not a string");

// ---------------------------------------------------------------------------------------------
// Not a message: empty, malformed JSON, not an object, no usable `type`
// ---------------------------------------------------------------------------------------------

case!(empty_frame: err => b"", "empty frame");
case!(whitespace_only: err => b" \n\t ", "invalid JSON");
case!(truncated_mid_member: err => cut("trade.json", 120), "invalid JSON");
case!(truncated_before_closing_brace: err => cut("trade.json", 306), "invalid JSON");
case!(unterminated_string: err => br#"{"type":"trade"#, "invalid JSON");
case!(trailing_garbage: err => [file("heartbeat.json"), b" x".to_vec()].concat(), "invalid JSON");
case!(two_objects_in_one_frame: err => br#"{"type":"heartbeat"}{"type":"heartbeat"}"#, "invalid JSON");
case!(trailing_nul: err => b"{\"type\":\"heartbeat\"}\0", "invalid JSON");
case!(leading_garbage: err => br#"x{"type":"heartbeat"}"#, "invalid JSON");
case!(missing_comma_as_in_docs_l3_example: err => edit("book_l3_update.json", "\"type\": \"book_l3\",", "\"type\": \"book_l3\""), "invalid JSON");
case!(trailing_comma_as_in_docs_reconnect_example: err => edit("reconnect.json", "7035429Z\"", "7035429Z\","), "invalid JSON");
case!(cut_marker_as_in_docs_book_example: err => edit("book_snapshot.json", "{\"price\": 456.40, \"size\": 12.25}", "... cut ..."), "invalid JSON");
case!(single_quotes: err => b"{'type':'heartbeat'}", "invalid JSON");
case!(comment: err => b"{\"type\":\"heartbeat\" /* hi */}", "invalid JSON");
case!(utf8_bom: err => b"\xef\xbb\xbf{\"type\":\"heartbeat\"}", "invalid JSON");
case!(top_level_array: err => br#"[{"type":"heartbeat"}]"#, "not a JSON object");
case!(top_level_string: err => br#""heartbeat""#, "not a JSON object");
case!(top_level_number: err => b"42", "not a JSON object");
case!(top_level_null: err => b"null", "not a JSON object");
case!(top_level_bool: err => b"true", "not a JSON object");
case!(empty_object: err => b"{}", "missing field `type`");
case!(type_missing: err => unset("trade.json", "type"), "missing field `type`");
case!(type_misspelt_key: err => br#"{"Type":"heartbeat"}"#, "missing field `type`");
case!(type_number: err => br#"{"type":1}"#, "field `type` is not a string");
case!(type_null: err => br#"{"type":null}"#, "field `type` is not a string");
case!(type_array: err => br#"{"type":["trade"]}"#, "field `type` is not a string");
case!(type_object: err => br#"{"type":{"name":"trade"}}"#, "field `type` is not a string");

// ---------------------------------------------------------------------------------------------
// Bytes that are not UTF-8, and nesting
// ---------------------------------------------------------------------------------------------

case!(non_utf8_in_symbol: err => edit("trade.json", "BTC_USD", b"BTC_\xff\xfe"), "invalid JSON");
case!(non_utf8_in_unknown_type: err => b"{\"type\":\"zzz\",\"s\":\"\xc3\x28\"}", "invalid JSON");
case!(non_utf8_overlong_slash: err => b"{\"type\":\"error\",\"message\":\"\xc0\xaf\"}", "invalid JSON");
case!(non_utf8_surrogate_bytes: err => b"{\"type\":\"error\",\"message\":\"\xed\xa0\x80\"}", "invalid JSON");
case!(non_utf8_after_object: err => b"{\"type\":\"heartbeat\"}\xff", "invalid JSON");
case!(lone_surrogate_escape: err => br#"{"type":"error","message":"\ud800"}"#, "invalid JSON");
case!(nested_1000_in_unknown: ok => nested("{\"type\":\"zzz\",\"a\":", 1000, "}"), unknown_verbatim("zzz", &nested("{\"type\":\"zzz\",\"a\":", 1000, "}")));
case!(nested_500_in_ignored_trade_member: ok => edit("trade.json", "\"size\"", [nested("\"deep\": ", 500, ",\n  "), b"\"size\"".to_vec()].concat()), Msg::Trade(trade_doc()));
case!(nested_100k_arrays: err => nested("{\"type\":\"zzz\",\"a\":", 100_000, "}"), "invalid JSON");
case!(nested_100k_objects: err => format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)), "invalid JSON");
case!(nested_unclosed_100k: err => "[".repeat(100_000), "invalid JSON");
case!(nested_book_level: err => set("book_update.json", "bids", "[[[[[]]]]]"), "book: `bids` entry is not an object");

// ---------------------------------------------------------------------------------------------
// Sequences above 2**53 are errors, never baselines (a baseline of 2**64-1 would make every
// later message of the symbol a duplicate); both decoders, pretty and compact frames
// ---------------------------------------------------------------------------------------------

case!(sequence_2_pow_53_is_kept: ok => with_sequence("9007199254740992"), trade_seq(9_007_199_254_740_992));
case!(sequence_2_pow_53_plus_1: err => with_sequence("9007199254740993"), "trade: field `sequence` is above 2**53");
case!(sequence_u64_max: err => with_sequence("18446744073709551615"), "trade: field `sequence` is above 2**53");
case!(sequence_u64_max_compact: err => br#"{"type":"trade","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":18446744073709551615,"time_exchange":"2013-09-28T22:40:50.0000000Z","time_coinapi":"2017-03-18T22:42:21.3763342Z","uuid":"770C7A3B-7258-4441-8182-83740F3E2457","price":770,"size":0.05,"taker_side":"BUY"}"#, "trade: field `sequence` is above 2**53");
case!(quote_sequence_above_2_pow_53: err => set("quote.json", "sequence", "9007199254740993"), "quote: field `sequence` is above 2**53");
case!(book_sequence_above_2_pow_53: err => set("book5.json", "sequence", "10000000000000000"), "book: field `sequence` is above 2**53");
case!(book_l3_sequence_above_2_pow_53: err => set("book_l3_update.json", "sequence", "9007199254740993"), "book_l3: field `sequence` is above 2**53");
case!(ohlcv_sequence_above_2_pow_53: err => set("ohlcv.json", "sequence", "9007199254740993"), "ohlcv: field `sequence` is above 2**53");
case!(index_sequence_above_2_pow_53: err => set("index.json", "sequence", "9007199254740993"), "index: field `sequence` is above 2**53");
case!(index_sequence_compact_above_2_pow_53: err => br#"{"type":"index","index_id":"I","sequence":9007199254740993,"time_coinapi":"2024-05-01T14:30:00Z","value":1.5}"#, "index: field `sequence` is above 2**53");

// ---------------------------------------------------------------------------------------------
// Fixed decoder bugs: the correct behaviour, checked so that none comes back
// ---------------------------------------------------------------------------------------------

case!(bug_date_only_year_9999: err => stamped("9999-12-31"), "is not an ISO-8601 timestamp");
case!(bug_date_only_2262_04_12: err => stamped("2262-04-12"), "is not an ISO-8601 timestamp");
case!(bug_date_only_year_1: err => stamped("0001-01-01"), "is not an ISO-8601 timestamp");
case!(bug_february_30: err => stamped("2017-02-30T00:00:00.0000000Z"), "is not an ISO-8601 timestamp");
case!(bug_april_31: err => stamped("2017-04-31T00:00:00.0000000Z"), "is not an ISO-8601 timestamp");
case!(bug_offset_99_99: err => stamped("2013-09-28T22:40:50.0000000+99:99"), "is not an ISO-8601 timestamp");
case!(bug_integer_price_beyond_u64: ok => with_price("18446744073709551616"), trade_priced(18_446_744_073_709_551_616.0));

/// Metadata is documented as "kept as JSON text so that every value stays exactly as on the
/// wire", but the decoder re-encodes the parsed tape, so 28-digit decimals come back as
/// the shortest f64 text.
#[test]
fn bug_metadata_keeps_wire_decimals() {
    let got = CoinApiDecoder::default().decode(&file("asset_btc.json"));
    let Ok(Msg::Metadata(m)) = got else {
        panic!("{got:?}")
    };
    assert!(
        m.json.contains("63852.61450318524539812647104"),
        "{}",
        m.json
    );
}

// ---------------------------------------------------------------------------------------------
// Properties over many frames
// ---------------------------------------------------------------------------------------------

/// A tiny deterministic generator (xorshift64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Decimals of 1 to 30 significant digits, with and without exponents, decode to the f64
/// Rust's own (correctly rounded) parser gives.
#[test]
fn decimals_decode_to_nearest_f64() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut d = CoinApiDecoder::default();
    let hard = [
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "4.9e-324",
        "0.1",
        "0.3",
        "9007199254740993.000000000000000000001",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "63852.61450318524539812647104",
    ];
    let generated = (0..20_000).map(|i| {
        let digits: String = (0..1 + rng.below(30))
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let point = rng.below(digits.len() as u64) as usize + 1;
        let int = digits[..point].trim_start_matches('0');
        let mut s = format!(
            "{}.{}",
            if int.is_empty() { "0" } else { int },
            &digits[point..]
        );
        if s.ends_with('.') {
            s.push('0');
        }
        if i % 3 == 0 {
            s.push_str(&format!("e{}", rng.below(60) as i64 - 30));
        }
        s
    });
    let mut bad = Vec::new();
    for token in hard.iter().map(|s| (*s).to_string()).chain(generated) {
        let frame = format!(
            r#"{{"type":"index","index_id":"I","sequence":1,"time_coinapi":"2024-05-01T14:30:00Z","value":{token}}}"#
        )
        .into_bytes();
        match d.decode(&frame) {
            Ok(Msg::Index(ix)) if ix.value.to_bits() == num(&token).to_bits() => {}
            other => bad.push(format!("{token}: {other:?} (want {:e})", num(&token))),
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches, first: {:#?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
}

const FIXTURES: [&str; 23] = [
    "trade.json",
    "quote.json",
    "book_snapshot.json",
    "book_update.json",
    "book5.json",
    "book20.json",
    "book50.json",
    "book_l3_update.json",
    "book_l3_snapshot.json",
    "ohlcv.json",
    "ohlcv_empty.json",
    "exrate.json",
    "index.json",
    "reconnect.json",
    "error.json",
    "error_buffer.json",
    "heartbeat.json",
    "hearbeat.json",
    "asset_btc.json",
    "asset_usd.json",
    "exchange.json",
    "symbol.json",
    "volume.json",
];

/// The table above covers every fixture, and every fixture is listed here.
#[test]
fn fixture_list_is_complete() {
    let mut on_disk: Vec<String> = std::fs::read_dir(FIXTURE_DIR)
        .expect("fixture dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|s| (*s).to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// Every proper prefix of every fixture is an error (and nothing panics).
#[test]
fn every_truncation_is_an_error() {
    let mut d = CoinApiDecoder::default();
    for name in FIXTURES {
        let full = file(name);
        let end = full.iter().rposition(|&b| b == b'}').expect("an object");
        for n in 0..=end {
            match decode_guarded(&mut d, &full[..n]) {
                Ok(Err(_)) => {}
                other => panic!("{name} cut at {n}: {other:?}"),
            }
        }
        assert!(d.decode(&full.clone()).is_ok(), "{name} whole");
    }
}

/// Single-byte corruptions anywhere in any fixture give a message or an error, never a panic.
#[test]
fn byte_corruptions_never_panic() {
    let mut d = CoinApiDecoder::default();
    let mut panics = Vec::new();
    for name in FIXTURES {
        let full = file(name);
        for i in 0..full.len() {
            for b in [b'"', b'{', b']', b',', b'\\', b'9', b'-', b'.', 0x00, 0xff] {
                let mut f = full.clone();
                f[i] = b;
                if let Err(p) = decode_guarded(&mut d, &f) {
                    panics.push(format!("{name}[{i}] = {b:#04x}: {p}"));
                }
            }
        }
    }
    assert!(panics.is_empty(), "{panics:#?}");
}

/// One decoder through 10 000 mixed frames (every type, several symbols, bad frames and
/// oversized books in between) gives what a fresh decoder gives for each frame, and hands out
/// one shared allocation per distinct key.
#[test]
fn decoder_reuse_over_10k_mixed_frames() {
    let symbols = [
        "BITSTAMP_SPOT_BTC_USD",
        "COINBASE_SPOT_ETH_USD",
        "BINANCE_SPOT_BTC_USDT",
        "KRAKEN_SPOT_ETH_EUR",
        "BITMEX_PERP_BTC_USD",
    ];
    let keyed = [
        "trade.json",
        "quote.json",
        "book_snapshot.json",
        "book_update.json",
        "book5.json",
        "book20.json",
        "book50.json",
        "book_l3_update.json",
        "book_l3_snapshot.json",
        "ohlcv.json",
        "ohlcv_empty.json",
    ];
    let other = [
        "exrate.json",
        "index.json",
        "reconnect.json",
        "error.json",
        "heartbeat.json",
        "hearbeat.json",
        "asset_btc.json",
        "exchange.json",
        "symbol.json",
        "volume.json",
    ];
    let big_book = format!(
        r#"{{"type":"book","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":1,"time_exchange":"2024-05-01T14:30:00.0000000Z","time_coinapi":"2024-05-01T14:30:00.0000001Z","is_snapshot":true,"asks":[{}],"bids":[]}}"#,
        (0..20_000)
            .map(|i| format!(r#"{{"price":{}.5,"size":0.001}}"#, 100 + i))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut rng = Rng(42);
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let f = match i {
            _ if i % 997 == 0 => big_book.clone().into_bytes(),
            _ if i % 53 == 0 => cut("trade.json", rng.below(300) as usize),
            _ if i % 59 == 0 => b"[1,2,3]".to_vec(),
            _ if i % 7 == 0 => file(other[rng.below(other.len() as u64) as usize]),
            _ => {
                let name = keyed[rng.below(keyed.len() as u64) as usize];
                let sym = symbols[rng.below(symbols.len() as u64) as usize];
                let t = String::from_utf8(set(name, "sequence", &i.to_string())).expect("UTF-8");
                let (start, end) = value_span(&t, name, "symbol_id");
                format!("{}\"{sym}\"{}", &t[..start], &t[end..]).into_bytes()
            }
        };
        frames.push(f);
    }

    let mut shared = CoinApiDecoder::default();
    let mut first_seen: HashMap<String, Key> = HashMap::new();
    let mut seen = |key: &Key| {
        let first = first_seen
            .entry(key.to_string())
            .or_insert_with(|| key.clone());
        assert!(Arc::ptr_eq(first, key), "{key} not shared");
    };
    let (mut ok, mut err) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        let got = shared.decode(&f.clone());
        let want = CoinApiDecoder::default().decode(&f.clone());
        assert_eq!(got, want, "frame {i}");
        match &got {
            Ok(m) => {
                ok += 1;
                match m {
                    Msg::Trade(t) => {
                        seen(&t.symbol_id);
                        seen(&t.taker_side);
                    }
                    Msg::Quote(q) => seen(&q.symbol_id),
                    Msg::Book(b) => seen(&b.symbol_id),
                    Msg::BookL3(b) => {
                        seen(&b.symbol_id);
                        b.asks
                            .iter()
                            .chain(&b.bids)
                            .filter_map(|e| e.update_type.as_ref())
                            .for_each(&mut seen);
                    }
                    Msg::Ohlcv(o) => {
                        seen(&o.symbol_id);
                        if let Some(p) = &o.period_id {
                            seen(p);
                        }
                    }
                    Msg::Exrate(x) => {
                        seen(&x.asset_id_base);
                        seen(&x.asset_id_quote);
                        seen(&x.rate_type);
                    }
                    Msg::Index(x) => seen(&x.index_id),
                    Msg::Metadata(x) => seen(&x.kind),
                    _ => {}
                }
            }
            Err(_) => err += 1,
        }
    }
    assert!(err > 200 && ok > 9_000, "ok {ok}, err {err}");
    // All five symbols were met, each held in one allocation across trades, quotes, books...
    for s in symbols {
        assert!(first_seen.contains_key(s), "{s}");
    }
    // ...which a different decoder does not share: pointer equality means interning, not luck.
    let Ok(Msg::Trade(t)) = CoinApiDecoder::default().decode(&file("trade.json")) else {
        panic!("trade")
    };
    assert!(!Arc::ptr_eq(
        &t.symbol_id,
        &first_seen["BITSTAMP_SPOT_BTC_USD"]
    ));
}

/// The metadata values the docs call out keep their JSON kinds: `type_is_crypto` an integer
/// 0/1 (not a bool or 1.0), date-only `data_start` a string, `price_usd` the nearest f64.
#[test]
fn metadata_values_keep_their_json_kinds() {
    let fields = |name: &str| {
        let Ok(Msg::Metadata(m)) = CoinApiDecoder::default().decode(&file(name)) else {
            panic!("{name}")
        };
        let OwnedValue::Object(o) = parse_owned(m.json.as_bytes()) else {
            panic!("{name}")
        };
        *o
    };
    let btc = fields("asset_btc.json");
    assert!(matches!(
        btc["type_is_crypto"],
        OwnedValue::Static(StaticNode::I64(1) | StaticNode::U64(1))
    ));
    let OwnedValue::Static(StaticNode::F64(p)) = btc["price_usd"] else {
        panic!("price_usd")
    };
    assert_eq!(p.to_bits(), num("63852.61450318524539812647104").to_bits());
    let usd = fields("asset_usd.json");
    assert!(matches!(
        usd["type_is_crypto"],
        OwnedValue::Static(StaticNode::I64(0) | StaticNode::U64(0))
    ));
    assert!(matches!(&usd["data_start"], OwnedValue::String(s) if s == "2010-07-17"));
    let bitstamp = fields("exchange.json");
    assert!(matches!(&bitstamp["data_start"], OwnedValue::String(s) if s == "2014-11-22"));
}
