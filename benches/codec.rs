//! Codec micro-benchmarks: tickwire's CoinAPI decoder against serde_json on the same frames,
//! fed from memory (no socket).
//!
//! `coinapi_mix` decodes 10k realistic frames in the live mix (70% trade, 20% quote, 5% book5,
//! 5% index; ~277 bytes on average, the documented trade example being 270 bytes compact);
//! `coinapi_type` does one type at a time. Throughput is in
//! decimal bytes so criterion prints GB/s; ns/msg is the time per iteration divided by the
//! frames in it. Every decode first copies its frame into one reused buffer, because simd-json
//! parses in place; serde_json gets the same copy so both sides pay for it.
//!
//! `tickwire` is the client's decoder (the schema-aware fast path, falling back to the
//! general decoder); `tickwire_general` the general decoder alone (simd-json into a tape), as
//! the client ran before the fast path. Every frame of the mix takes the fast path (checked
//! before measuring).
//!
//! The serde_json peer here builds a `serde_json::Value`. A typed-struct peer needs
//! `serde = { features = ["derive"] }` among the dev-dependencies.

use std::hint::black_box;

use _core::codec::CoinApiDecoder;
use _core::model::time::format_ns;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A tiny deterministic generator (xorshift64): the same frames on every run.
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

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Symbols with a plausible price each.
const SYMBOLS: [(&str, f64); 12] = [
    ("BITSTAMP_SPOT_BTC_USD", 63_850.0),
    ("COINBASE_SPOT_BTC_USD", 63_852.0),
    ("COINBASE_SPOT_ETH_USD", 2_875.1),
    ("BINANCE_SPOT_BTC_USDT", 63_849.5),
    ("BINANCE_SPOT_ETH_USDT", 2_874.9),
    ("BINANCE_SPOT_SOL_USDT", 141.37),
    ("KRAKEN_SPOT_BTC_EUR", 59_612.0),
    ("KRAKEN_SPOT_ETH_EUR", 2_684.2),
    ("BITFINEX_SPOT_XRP_USD", 0.5213),
    ("OKEX_PERP_BTC_USDT", 63_861.0),
    ("BYBITSPOT_SPOT_DOGE_USDT", 0.1368),
    ("BITMEX_PERP_BTC_USD", 63_870.5),
];

const INDEXES: [(&str, f64); 4] = [
    ("IDX_REFRATE_PRIMKT_BTC_USD", 63_851.2),
    ("IDX_REFRATE_PRIMKT_ETH_USD", 2_875.0),
    ("IDX_REFRATE_VWAP_BTC_USD", 63_848.9),
    ("IDX_REFRATE_VWAP_ETH_EUR", 2_684.0),
];

/// Most venues report the aggressor; estimated sides are the minority.
const SIDES: [&str; 8] = [
    "BUY",
    "SELL",
    "BUY",
    "SELL",
    "BUY",
    "SELL",
    "BUY_ESTIMATED",
    "SELL_ESTIMATED",
];

/// 2024-05-01T14:30:00Z
const T0: i64 = 1_714_573_800_000_000_000;

/// Frames as CoinAPI writes them: compact JSON, 7-digit timestamps, 9-decimal prices.
struct Gen {
    rng: Rng,
    seq: u64,
    now: i64,
}

impl Gen {
    fn new() -> Self {
        Gen {
            rng: Rng(0x5EED_C0FF_EE15_600D),
            seq: 1_000_000,
            now: T0,
        }
    }

    /// Advances the clock a little and returns (time_exchange, time_coinapi) as text.
    fn times(&mut self) -> (String, String) {
        self.now += 100 * (1 + self.rng.below(20_000) as i64);
        let lag = 100 * (1 + self.rng.below(50_000) as i64);
        (format_ns(self.now, 7), format_ns(self.now + lag, 7))
    }

    fn symbol(&mut self) -> (&'static str, f64) {
        let (s, p) = SYMBOLS[self.rng.below(SYMBOLS.len() as u64) as usize];
        (s, p * (1.0 + (self.rng.unit() - 0.5) * 0.002))
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.rng.next(), self.rng.next());
        format!(
            "{:08X}-{:04X}-4{:03X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFF,
            0x8000 | (b >> 48) & 0x3FFF,
            b & 0xFFFF_FFFF_FFFF
        )
    }

    fn trade(&mut self) -> String {
        let (sym, price) = self.symbol();
        let (tex, tca) = self.times();
        self.seq += 1;
        let seq = self.seq;
        let uuid = self.uuid();
        let size = self.rng.unit() * 2.0;
        let side = SIDES[self.rng.below(SIDES.len() as u64) as usize];
        format!(
            r#"{{"type":"trade","symbol_id":"{sym}","sequence":{seq},"time_exchange":"{tex}","time_coinapi":"{tca}","uuid":"{uuid}","price":{price:.9},"size":{size:.9},"taker_side":"{side}"}}"#
        )
    }

    fn quote(&mut self) -> String {
        let (sym, mid) = self.symbol();
        let (tex, tca) = self.times();
        self.seq += 1;
        format!(
            r#"{{"type":"quote","symbol_id":"{sym}","sequence":{},"time_exchange":"{tex}","time_coinapi":"{tca}","ask_price":{:.9},"ask_size":{:.9},"bid_price":{:.9},"bid_size":{:.9}}}"#,
            self.seq,
            mid * 1.0001,
            self.rng.unit() * 5.0,
            mid * 0.9999,
            self.rng.unit() * 5.0,
        )
    }

    fn book5(&mut self) -> String {
        let (sym, mid) = self.symbol();
        let (tex, tca) = self.times();
        self.seq += 1;
        let tick = mid * 0.0001;
        let mut side = |sign: f64| {
            (1..=5)
                .map(|i| {
                    format!(
                        r#"{{"price":{:.2},"size":{:.8}}}"#,
                        mid + sign * tick * f64::from(i),
                        self.rng.unit() * 3.0
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let (asks, bids) = (side(1.0), side(-1.0));
        format!(
            r#"{{"type":"book5","symbol_id":"{sym}","sequence":{},"time_exchange":"{tex}","time_coinapi":"{tca}","asks":[{asks}],"bids":[{bids}]}}"#,
            self.seq
        )
    }

    fn index(&mut self) -> String {
        let (id, v) = INDEXES[self.rng.below(INDEXES.len() as u64) as usize];
        let (_, tca) = self.times();
        self.seq += 1;
        format!(
            r#"{{"type":"index","index_id":"{id}","sequence":{},"time_coinapi":"{tca}","value":{:.5}}}"#,
            self.seq,
            v * (1.0 + (self.rng.unit() - 0.5) * 0.001)
        )
    }
}

/// `n` frames in the live mix: 70% trade, 20% quote, 5% book5, 5% index.
fn mix(n: usize) -> Vec<Vec<u8>> {
    let mut g = Gen::new();
    (0..n)
        .map(|_| match g.rng.below(100) {
            0..70 => g.trade(),
            70..90 => g.quote(),
            90..95 => g.book5(),
            _ => g.index(),
        })
        .map(String::into_bytes)
        .collect()
}

/// Makes one frame of some type.
type Maker = fn(&mut Gen) -> String;

/// The per-type benches: each type of the mix alone.
const KINDS: [(&str, Maker); 4] = [
    ("trade", Gen::trade),
    ("quote", Gen::quote),
    ("book5", Gen::book5),
    ("index", Gen::index),
];

/// `n` frames of one type.
fn only(n: usize, make: Maker) -> Vec<Vec<u8>> {
    let mut g = Gen::new();
    (0..n).map(|_| make(&mut g).into_bytes()).collect()
}

fn total_bytes(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// Decodes every frame with one reused decoder (the fast path, then the general decoder for
/// what it declines: what the client runs).
fn run_tickwire(d: &mut CoinApiDecoder, buf: &mut Vec<u8>, frames: &[Vec<u8>]) {
    for f in frames {
        buf.clear();
        buf.extend_from_slice(f);
        // An error would make the comparison meaningless; the frames are all valid.
        black_box(d.decode(buf).expect("valid frame"));
    }
}

/// The general decoder alone (simd-json tape), the client's decoder before the fast path.
fn run_tickwire_general(d: &mut CoinApiDecoder, buf: &mut Vec<u8>, frames: &[Vec<u8>]) {
    for f in frames {
        buf.clear();
        buf.extend_from_slice(f);
        black_box(d.decode_general(buf).expect("valid frame"));
    }
}

/// Parses every frame into a `serde_json::Value` (a DOM, as the tape is).
fn run_serde_value(buf: &mut Vec<u8>, frames: &[Vec<u8>]) {
    for f in frames {
        buf.clear();
        buf.extend_from_slice(f);
        let v: serde_json::Value = serde_json::from_slice(buf).expect("valid frame");
        black_box(v);
    }
}

fn add_peers(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    frames: &[Vec<u8>],
) {
    group.throughput(Throughput::BytesDecimal(total_bytes(frames)));
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut d = CoinApiDecoder::default();
    group.bench_with_input(BenchmarkId::new("tickwire", name), frames, |b, fr| {
        b.iter(|| run_tickwire(&mut d, &mut buf, fr));
    });
    let mut g = CoinApiDecoder::default();
    group.bench_with_input(
        BenchmarkId::new("tickwire_general", name),
        frames,
        |b, fr| {
            b.iter(|| run_tickwire_general(&mut g, &mut buf, fr));
        },
    );
    group.bench_with_input(
        BenchmarkId::new("serde_json_value", name),
        frames,
        |b, fr| {
            b.iter(|| run_serde_value(&mut buf, fr));
        },
    );
}

fn coinapi_mix(c: &mut Criterion) {
    let frames = mix(10_000);
    eprintln!(
        "coinapi_mix: {} frames, {} bytes, {:.1} bytes/frame",
        frames.len(),
        total_bytes(&frames),
        total_bytes(&frames) as f64 / frames.len() as f64
    );
    let mut d = CoinApiDecoder::default();
    let fast = frames.iter().filter(|f| d.decode_fast(f).is_some()).count();
    assert_eq!(
        fast,
        frames.len(),
        "every frame of the mix takes the fast path"
    );
    let mut group = c.benchmark_group("coinapi_mix");
    add_peers(&mut group, "10k", &frames);
    group.finish();
}

fn coinapi_type(c: &mut Criterion) {
    let mut group = c.benchmark_group("coinapi_type");

    for (name, make) in KINDS {
        let frames = only(1_000, make);
        eprintln!(
            "coinapi_type/{name}: {} frames, {:.1} bytes/frame",
            frames.len(),
            total_bytes(&frames) as f64 / frames.len() as f64
        );
        add_peers(&mut group, name, &frames);
    }
    group.finish();
}

criterion_group!(benches, coinapi_mix, coinapi_type);
criterion_main!(benches);
