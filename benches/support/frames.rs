//! CoinAPI frames for the benches, fed from memory: a deterministic generator of the live mix
//! (shared by `codec` and `nats_payload`, so both measure the same frames).

use _core::model::time::format_ns;

/// A tiny deterministic generator (xorshift64): the same frames on every run.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
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
pub struct Gen {
    pub rng: Rng,
    seq: u64,
    now: i64,
}

impl Gen {
    pub fn new() -> Self {
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

    pub fn trade(&mut self) -> String {
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

    pub fn quote(&mut self) -> String {
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

    pub fn book5(&mut self) -> String {
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

    pub fn index(&mut self) -> String {
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
pub fn mix(n: usize) -> Vec<Vec<u8>> {
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
