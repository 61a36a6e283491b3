//! Frames for the differential checks of the fast decoder against the general one: valid
//! messages of both venues with random values, member orders, extra and repeated members and
//! spacing, and byte-level mutations of them. Shared by the property test (`cargo test`) and
//! the `decoder_diff` fuzz target, which includes this file; it uses only `std`.

/// A tiny deterministic generator (xorshift64), so every case reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// A generator that never sticks at zero.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// 1 to `max` random digits.
    fn some_digits(&mut self, max: u64) -> String {
        let n = 1 + self.below(max);
        self.digits(n)
    }

    fn digits(&mut self, n: u64) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// A JSON number token: mostly what feeds send, often the edges of the exact fast path.
fn number(r: &mut Rng) -> String {
    match r.below(20) {
        0 => r
            .pick(&["0", "-0", "0.0", "-0.0", "1e0", "0e5", "-0e-3"])
            .to_string(),
        1 => r
            .pick(&[
                "9007199254740991",
                "9007199254740992",
                "9007199254740993",
                "9007199254740991.0",
                "9007199254740993.0",
                "18446744073709551615",
                "18446744073709551616",
                "-9223372036854775808",
                "99999999999999999",
                "999999999999999999",
                "12345678901234567.5",
                "1e22",
                "1e23",
                "1.5e-22",
                "4.9e-324",
                "1e400",
                "-1e400",
                "1e-400",
                "2.2250738585072011e-308",
                "0.1e1",
                "01",
                "1.",
                ".5",
                "1e",
                "+1",
                "--1",
                "1.5E+3",
                "NaN",
            ])
            .to_string(),
        2..=4 => format!("{}", r.below(1_000_000)),
        5 => format!("-{}", 1 + r.below(1_000_000)),
        6 => {
            let d = 1 + r.below(22);
            let s = r.digits(d);
            let s = s.trim_start_matches('0');
            if s.is_empty() {
                "0".into()
            } else {
                s.into()
            }
        }
        7 => {
            // A decimal with an exponent.
            let int = 1 + r.below(999);
            let frac = r.some_digits(10);
            let e = r.below(60) as i64 - 30;
            let sign = if r.one_in(2) { "-" } else { "" };
            let ech = if r.one_in(2) { "e" } else { "E" };
            format!("{sign}{int}.{frac}{ech}{e}")
        }
        _ => {
            // Prices and sizes as feeds write them: up to 9 decimals, 1 to 20 digits in all.
            let int = match r.below(4) {
                0 => "0".to_string(),
                1 => format!("{}", r.below(100)),
                2 => format!("{}", r.below(100_000)),
                _ => format!("{}", r.below(10_000_000_000)),
            };
            let frac = r.some_digits(12);
            let sign = if r.one_in(30) { "-" } else { "" };
            format!("{sign}{int}.{frac}")
        }
    }
}

fn time(r: &mut Rng) -> String {
    if r.one_in(25) {
        return r
            .pick(&[
                "2017-02-30T00:00:00.0000000Z",
                "2024-02-29T23:59:60.9999999Z",
                "2023-02-29T00:00:00Z",
                "2024-05-01",
                "2024-05-01T14:30:00.123+01:00",
                "2024-05-01T14:30:00.1234567",
                "2024-05-01 14:30:00Z",
                "2024-13-01T00:00:00Z",
                "2024-05-01T24:00:00Z",
                "9999-12-31T23:59:59.9999999Z",
                "2262-04-12T00:00:00Z",
                "0001-01-01T00:00:00Z",
                "",
                "2024-05-01T14:30:00.Z",
            ])
            .to_string();
    }
    let year = 2000 + r.below(40);
    let month = 1 + r.below(12);
    let day = 1 + r.below(28);
    let frac = match r.below(6) {
        0 => String::new(),
        1 => format!(".{}", r.some_digits(12)),
        2 => format!(".{}", r.digits(9)),
        _ => format!(".{}", r.digits(7)),
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        r.below(24),
        r.below(60),
        r.below(60)
    )
}

fn string(r: &mut Rng, plain: &[&str]) -> String {
    match r.below(40) {
        0 => "\"BTC\\u005fUSD\"".into(),
        1 => "\"caf\u{e9}\"".into(),
        2 => "\"tab\\there\"".into(),
        3 => "\"\"".into(),
        4 => "\"ctl\u{1}\"".into(),
        _ => format!("\"{}\"", r.pick(plain)),
    }
}

const SYMBOLS: [&str; 6] = [
    "BITSTAMP_SPOT_BTC_USD",
    "COINBASE_SPOT_ETH_USD",
    "BINANCE_SPOT_BTC_USDT",
    "KRAKEN_SPOT_ETH_EUR",
    "IDX_REFRATE_PRIMKT_BTC_USD",
    "912810SS8",
];

/// A sequence-like value: mostly valid, sometimes at or past 2**53, negative or a float.
fn sequence(r: &mut Rng) -> String {
    match r.below(12) {
        0 => number(r),
        1 => r
            .pick(&[
                "9007199254740992",
                "9007199254740993",
                "18446744073709551615",
                "0",
                "-1",
                "1.0",
            ])
            .to_string(),
        _ => format!("{}", r.below(10_000_000_000)),
    }
}

/// Any value, for members the decoders ignore and for wrong-kind edits.
fn any(r: &mut Rng, depth: u32) -> String {
    match r.below(if depth > 3 { 5 } else { 7 }) {
        0 => number(r),
        1 => string(r, &SYMBOLS),
        2 => r.pick(&["true", "false", "null"]).to_string(),
        3 => "\"q\\\"b\\\\s\\u00e9\"".to_string(),
        4 => format!("\"{}\"", time(r)),
        5 => {
            let n = r.below(4);
            let items: Vec<String> = (0..n).map(|_| any(r, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let n = r.below(4);
            let items: Vec<String> = (0..n)
                .map(|i| format!("\"k{i}\":{}", any(r, depth + 1)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// The value of a member, usually of its right kind.
fn value(r: &mut Rng, kind: Kind) -> String {
    if r.one_in(80) {
        return any(r, 0);
    }
    match kind {
        Kind::Str(plain) => string(r, plain),
        Kind::OptStr(plain) => {
            if r.one_in(6) {
                "null".into()
            } else {
                string(r, plain)
            }
        }
        Kind::Seq => sequence(r),
        Kind::Time => format!("\"{}\"", time(r)),
        Kind::OptTime => {
            if r.one_in(6) {
                "null".into()
            } else {
                format!("\"{}\"", time(r))
            }
        }
        Kind::Num => number(r),
        Kind::OptNum => {
            if r.one_in(5) {
                "null".into()
            } else {
                number(r)
            }
        }
        Kind::Bool => r.pick(&["true", "false"]).to_string(),
        Kind::Levels => {
            let n = match r.below(4) {
                0 => 0,
                1 => 1 + r.below(3),
                _ => 5 + r.below(20),
            };
            let lv: Vec<String> = (0..n)
                .map(|_| {
                    let (p, s) = (number(r), number(r));
                    match r.below(12) {
                        0 => format!("{{\"size\":{s},\"price\":{p}}}"),
                        1 => format!("{{\"price\":{p},\"size\":{s},\"n\":{}}}", any(r, 2)),
                        2 => format!("{{\"price\":{p}}}"),
                        _ => format!("{{\"price\":{p},\"size\":{s}}}"),
                    }
                })
                .collect();
            if r.one_in(15) {
                "null".into()
            } else {
                format!("[{}]", lv.join(","))
            }
        }
        Kind::MsgNumber => match r.below(10) {
            0 => format!(
                "{}{}",
                r.pick(&["20240501", "20240230", "99999999", "00000000", "20241301"]),
                r.digits(10)
            ),
            1 => r
                .pick(&[
                    "\"9999999999999999999\"",
                    "\"1\"",
                    "202405010000000042",
                    "\"\"",
                    "\"20240501x\"",
                ])
                .to_string(),
            _ => format!("\"202405{:02}{}\"", 1 + r.below(31), r.digits(10)),
        },
        Kind::Amount => match r.below(6) {
            0 => "null".into(),
            1 => number(r),
            2 => "{}".into(),
            3 => format!("{{\"par\":{},\"x\":1}}", number(r)),
            _ => format!("{{\"par\":{}}}", number(r)),
        },
        Kind::Order => {
            if r.one_in(10) {
                "null".into()
            } else {
                let members = order_members();
                object_body(r, None, &members)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str(&'static [&'static str]),
    OptStr(&'static [&'static str]),
    Seq,
    Time,
    OptTime,
    Num,
    OptNum,
    Bool,
    Levels,
    MsgNumber,
    Amount,
    Order,
}

type Member = (&'static str, Kind);

const SIDES: &[&str] = &["BUY", "SELL", "BUY_ESTIMATED", "SELL_ESTIMATED", "UNKNOWN"];
const SYMS: &[&str] = &SYMBOLS;
const WORDS: &[&str] = &[
    "limit",
    "buy",
    "sell",
    "filled",
    "execution",
    "new",
    "mo_1",
    "x",
];

fn order_members() -> Vec<Member> {
    vec![
        ("id", Kind::OptStr(WORDS)),
        ("order_id", Kind::OptStr(WORDS)),
        ("status", Kind::OptStr(WORDS)),
        ("side", Kind::OptStr(WORDS)),
        ("type", Kind::OptStr(WORDS)),
        ("cusip", Kind::OptStr(SYMS)),
        ("isin", Kind::OptStr(SYMS)),
        ("limit_price", Kind::OptNum),
        ("amount", Kind::Amount),
        ("filled_amount", Kind::Amount),
        ("filled_avg_price", Kind::OptNum),
        ("created_at", Kind::Time),
    ]
}

/// `{...}` with `head` (the type member) usually first, the members shuffled, some left out,
/// repeated or joined by extra ones.
fn object_body(r: &mut Rng, head: Option<String>, members: &[Member]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for &(name, kind) in members {
        if r.one_in(40) {
            continue;
        }
        parts.push(format!("\"{name}\":{}", value(r, kind)));
        if r.one_in(60) {
            parts.push(format!("\"{name}\":{}", value(r, kind)));
        }
    }
    if r.one_in(6) {
        parts.push(format!("\"extra\":{}", any(r, 1)));
    }
    if r.one_in(3) {
        for i in (1..parts.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            parts.swap(i, j);
        }
    }
    if let Some(h) = head {
        if r.one_in(20) {
            let at = r.below(parts.len() as u64 + 1) as usize;
            parts.insert(at, h);
        } else {
            parts.insert(0, h);
        }
    }
    let sep = if r.one_in(30) { ", " } else { "," };
    format!("{{{}}}", parts.join(sep))
}

/// A frame of CoinAPI (`moment == false`) or Moment.
pub fn frame(r: &mut Rng, moment: bool) -> Vec<u8> {
    let (tkey, kind, members): (&str, &str, Vec<Member>) = if moment {
        match r.below(4) {
            0 => (
                "msg_type",
                "price_update",
                vec![
                    ("instrument_id", Kind::OptStr(SYMS)),
                    ("isin", Kind::OptStr(SYMS)),
                    ("cusip", Kind::OptStr(SYMS)),
                    ("timestamp", Kind::OptTime),
                    ("price", Kind::OptNum),
                    ("yield_to_worst", Kind::OptNum),
                    ("yield_to_maturity", Kind::OptNum),
                    ("bid_price", Kind::OptNum),
                    ("bid_size", Kind::OptNum),
                    ("ask_price", Kind::OptNum),
                    ("ask_size", Kind::OptNum),
                ],
            ),
            k => {
                let kind = ["order_update", "allocation_update", "system_update"][k as usize - 1];
                let mut m = vec![
                    ("msg_number", Kind::MsgNumber),
                    ("event_type", Kind::OptStr(WORDS)),
                    ("event", Kind::OptStr(WORDS)),
                ];
                if r.one_in(2) {
                    m.push(("order", Kind::Order));
                } else {
                    m.extend(order_members());
                }
                ("msg_type", kind, m)
            }
        }
    } else {
        let head: Vec<Member> = vec![
            ("symbol_id", Kind::Str(SYMS)),
            ("sequence", Kind::Seq),
            ("time_exchange", Kind::Time),
            ("time_coinapi", Kind::Time),
        ];
        match r.below(9) {
            0..=3 => {
                let mut m = head;
                m.extend([
                    ("uuid", Kind::Str(WORDS)),
                    ("price", Kind::Num),
                    ("size", Kind::Num),
                    ("taker_side", Kind::OptStr(SIDES)),
                ]);
                ("type", "trade", m)
            }
            4 => {
                let mut m = head;
                m.extend([
                    ("ask_price", Kind::Num),
                    ("ask_size", Kind::Num),
                    ("bid_price", Kind::Num),
                    ("bid_size", Kind::Num),
                ]);
                ("type", "quote", m)
            }
            5 | 6 => {
                let kind = *r.pick(&["book", "book5", "book20", "book50", "book_l3"]);
                let mut m = head;
                if kind == "book" || r.one_in(10) {
                    m.push(("is_snapshot", Kind::Bool));
                }
                m.extend([("asks", Kind::Levels), ("bids", Kind::Levels)]);
                ("type", kind, m)
            }
            7 => (
                "type",
                "index",
                vec![
                    ("index_id", Kind::Str(SYMS)),
                    ("sequence", Kind::Seq),
                    ("time_coinapi", Kind::Time),
                    ("value", Kind::Num),
                ],
            ),
            _ => (
                "type",
                *r.pick(&["hearbeat", "heartbeat", "exrate", "ohlcv", "error", "zzz"]),
                vec![("time", Kind::Time)],
            ),
        }
    };
    let head = format!("\"{tkey}\":\"{kind}\"");
    object_body(r, Some(head), &members).into_bytes()
}

/// Bytes that make or break JSON.
const SPECIAL: &[u8] = b"\"{}[],:\\-.0159eE tnfu\x00\xff\xc3";

/// One to three byte-level edits: overwrite, insert, delete, truncate, repeat a range.
pub fn mutate(r: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..1 + r.below(3) {
        if f.is_empty() {
            f.push(*r.pick(SPECIAL));
            continue;
        }
        let at = r.below(f.len() as u64) as usize;
        match r.below(6) {
            0 => f[at] = *r.pick(SPECIAL),
            1 => f.insert(at, *r.pick(SPECIAL)),
            2 => {
                let n = (1 + r.below(8) as usize).min(f.len() - at);
                f.drain(at..at + n);
            }
            3 => f.truncate(at),
            4 => {
                let n = (1 + r.below(16) as usize).min(f.len() - at);
                let piece = f[at..at + n].to_vec();
                let to = r.below(f.len() as u64) as usize;
                f.splice(to..to, piece);
            }
            _ => {
                if f[at].is_ascii_digit() {
                    f[at] = b'0' + r.below(10) as u8;
                } else {
                    f[at] = r.below(256) as u8;
                }
            }
        }
    }
}
