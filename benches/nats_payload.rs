//! The relay's payload encoding, chosen by measurement: each candidate's relay CPU per message
//! (making the payload from the message the relay's stream already decoded, and its raw text),
//! the consumer's CPU per message (payload to typed message), and bytes per message, over the
//! codec bench's 10k-frame live mix (70% trade, 20% quote, 5% book5, 5% index).
//!
//! Candidates, each after tickwire's version byte and venue byte:
//! - `json`: the venue's JSON text as received (payload version 1);
//! - `json_deflate1`: that text, raw deflate level 1 per message (zlib-rs, as the WebSocket
//!   side uses), inflated then decoded by the consumer;
//! - `json_zstd1`, `json_zstd3`: that text, zstd level 1 / 3 per message;
//! - `binary`: the decoded fields in a compact binary form (below), read straight back into the
//!   typed message with no JSON on the consumer's side.
//!
//! The binary form is a measurement prototype covering the mix's four types only: a type tag,
//! the key (length-prefixed, interned when read, as the JSON decoder does), the sequence as a
//! LEB128 varint, times as i64 and numbers as f64 little-endian, a canonical trade uuid as 16
//! bytes (its case in the tag), the taker side as one byte, book levels as (f64, f64).
//!
//! `cargo bench --bench nats_payload`; bytes per message are printed before the timings.

use std::hint::black_box;

use _core::codec::{CoinApiDecoder, Interner};
use _core::model::{Book, BookKind, Index, Msg, Quote, Trade};
use _core::relay::wire::{self, Venue};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/frames.rs"]
mod frames;

/// One candidate payload format: what the relay writes and what the consumer reads back.
trait Format {
    fn name(&self) -> &'static str;
    /// The payload for `msg` (decoded from `raw`), into `out` (cleared first).
    fn encode(&mut self, msg: &Msg, raw: &str, out: &mut Vec<u8>);
    /// The typed message back.
    fn decode(&mut self, payload: &[u8]) -> Msg;
}

struct Json {
    decoder: CoinApiDecoder,
}

impl Format for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&mut self, _msg: &Msg, raw: &str, out: &mut Vec<u8>) {
        // What the relay runs: `wire::encode`, one allocation per payload.
        *out = wire::encode(Venue::CoinApi, raw);
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        let (_, json) = wire::decode(payload).expect("version 1");
        self.decoder.decode(json).expect("valid frame")
    }
}

struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
    text: Vec<u8>,
    decoder: CoinApiDecoder,
}

impl Format for Deflate {
    fn name(&self) -> &'static str {
        "json_deflate1"
    }

    fn encode(&mut self, _msg: &Msg, raw: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[wire::VERSION, Venue::CoinApi as u8]);
        out.reserve(raw.len() + 64);
        self.compress.reset();
        self.compress
            .compress_vec(raw.as_bytes(), out, flate2::FlushCompress::Finish)
            .expect("deflate");
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        self.text.clear();
        self.text.reserve(4096);
        self.decompress.reset(false);
        self.decompress
            .decompress_vec(
                &payload[2..],
                &mut self.text,
                flate2::FlushDecompress::Finish,
            )
            .expect("inflate");
        self.decoder.decode(&self.text).expect("valid frame")
    }
}

struct Zstd {
    name: &'static str,
    compress: zstd::bulk::Compressor<'static>,
    decompress: zstd::bulk::Decompressor<'static>,
    text: Vec<u8>,
    decoder: CoinApiDecoder,
}

impl Format for Zstd {
    fn name(&self) -> &'static str {
        self.name
    }

    fn encode(&mut self, _msg: &Msg, raw: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[wire::VERSION, Venue::CoinApi as u8]);
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let at = out.len();
        out.resize(out.capacity(), 0);
        let n = self
            .compress
            .compress_to_buffer(raw.as_bytes(), &mut out[at..])
            .expect("zstd");
        out.truncate(at + n);
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        self.text.resize(8192, 0);
        let n = self
            .decompress
            .decompress_to_buffer(&payload[2..], &mut self.text)
            .expect("unzstd");
        self.decoder.decode(&self.text[..n]).expect("valid frame")
    }
}

#[derive(Default)]
struct Binary {
    keys: Interner,
}

const SIDES: [&str; 5] = ["BUY", "SELL", "BUY_ESTIMATED", "SELL_ESTIMATED", "UNKNOWN"];

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

/// A canonical 36-character uuid as 16 bytes, and whether its letters are upper-case.
fn uuid_bytes(s: &str) -> Option<([u8; 16], bool)> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let (mut upper, mut lower) = (false, false);
    let mut hi: Option<u8> = None;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => {
                upper = true;
                c - b'A' + 10
            }
            b'a'..=b'f' => {
                lower = true;
                c - b'a' + 10
            }
            _ => return None,
        };
        match hi.take() {
            None => hi = Some(v),
            Some(h) => {
                out[n] = h << 4 | v;
                n += 1;
            }
        }
    }
    (!(upper && lower)).then_some((out, upper))
}

fn uuid_text(b: &[u8], upper: bool) -> Box<str> {
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(hex[usize::from(x >> 4)] as char);
        s.push(hex[usize::from(x & 15)] as char);
    }
    s.into_boxed_str()
}

/// A cursor over a binary payload (the prototype trusts its input: it reads what it wrote).
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0[0];
        self.0 = &self.0[1..];
        v
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }

    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8();
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn str(&mut self) -> &str {
        let n = usize::from(self.u8());
        std::str::from_utf8(self.bytes(n)).expect("utf-8")
    }
}

impl Format for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn encode(&mut self, msg: &Msg, _raw: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[wire::VERSION, Venue::CoinApi as u8]);
        match msg {
            Msg::Trade(t) => {
                let uuid = uuid_bytes(&t.uuid);
                out.push(match uuid {
                    Some((_, true)) => 1,
                    Some((_, false)) => 2,
                    None => 3,
                });
                put_str(out, &t.symbol_id);
                put_varint(out, t.sequence);
                out.extend_from_slice(&t.time_exchange.to_le_bytes());
                out.extend_from_slice(&t.time_coinapi.to_le_bytes());
                match uuid {
                    Some((b, _)) => out.extend_from_slice(&b),
                    None => put_str(out, &t.uuid),
                }
                out.extend_from_slice(&t.price.to_le_bytes());
                out.extend_from_slice(&t.size.to_le_bytes());
                let side = SIDES.iter().position(|s| **s == *t.taker_side);
                out.push(side.map_or(255, |i| i as u8));
            }
            Msg::Quote(q) => {
                out.push(4);
                put_str(out, &q.symbol_id);
                put_varint(out, q.sequence);
                out.extend_from_slice(&q.time_exchange.to_le_bytes());
                out.extend_from_slice(&q.time_coinapi.to_le_bytes());
                for v in [q.ask_price, q.ask_size, q.bid_price, q.bid_size] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Msg::Book(b) => {
                out.push(5);
                out.push(b.kind as u8);
                out.push(u8::from(b.is_snapshot));
                put_str(out, &b.symbol_id);
                put_varint(out, b.sequence);
                out.extend_from_slice(&b.time_exchange.to_le_bytes());
                out.extend_from_slice(&b.time_coinapi.to_le_bytes());
                for side in [&b.asks, &b.bids] {
                    put_varint(out, side.len() as u64);
                    for (p, s) in side {
                        out.extend_from_slice(&p.to_le_bytes());
                        out.extend_from_slice(&s.to_le_bytes());
                    }
                }
            }
            Msg::Index(i) => {
                out.push(6);
                put_str(out, &i.index_id);
                put_varint(out, i.sequence);
                out.extend_from_slice(&i.time_coinapi.to_le_bytes());
                out.extend_from_slice(&i.value.to_le_bytes());
            }
            other => panic!("the prototype covers the mix's types, not {other:?}"),
        }
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        let mut r = Reader(&payload[2..]);
        match r.u8() {
            tag @ 1..=3 => {
                let symbol_id = self.keys.intern(r.str());
                let sequence = r.varint();
                let (time_exchange, time_coinapi) = (r.i64(), r.i64());
                let uuid = if tag == 3 {
                    r.str().into()
                } else {
                    uuid_text(r.bytes(16), tag == 1)
                };
                let (price, size) = (r.f64(), r.f64());
                let side = SIDES.get(usize::from(r.u8())).copied().unwrap_or("UNKNOWN");
                Msg::Trade(Trade {
                    symbol_id,
                    sequence,
                    time_exchange,
                    time_coinapi,
                    uuid,
                    price,
                    size,
                    taker_side: self.keys.intern(side),
                })
            }
            4 => Msg::Quote(Quote {
                symbol_id: self.keys.intern(r.str()),
                sequence: r.varint(),
                time_exchange: r.i64(),
                time_coinapi: r.i64(),
                ask_price: r.f64(),
                ask_size: r.f64(),
                bid_price: r.f64(),
                bid_size: r.f64(),
            }),
            5 => {
                let kind = match r.u8() {
                    0 => BookKind::Full,
                    1 => BookKind::Top5,
                    2 => BookKind::Top20,
                    _ => BookKind::Top50,
                };
                let is_snapshot = r.u8() != 0;
                let symbol_id = self.keys.intern(r.str());
                let sequence = r.varint();
                let (time_exchange, time_coinapi) = (r.i64(), r.i64());
                let side = |r: &mut Reader<'_>| {
                    let n = r.varint() as usize;
                    (0..n).map(|_| (r.f64(), r.f64())).collect::<Vec<_>>()
                };
                let asks = side(&mut r);
                let bids = side(&mut r);
                Msg::Book(Book {
                    kind,
                    symbol_id,
                    sequence,
                    time_exchange,
                    time_coinapi,
                    is_snapshot,
                    asks,
                    bids,
                })
            }
            _ => Msg::Index(Index {
                index_id: self.keys.intern(r.str()),
                sequence: r.varint(),
                time_coinapi: r.i64(),
                value: r.f64(),
            }),
        }
    }
}

fn formats() -> Vec<Box<dyn Format>> {
    let zstd = |name, level| -> Box<dyn Format> {
        Box::new(Zstd {
            name,
            compress: zstd::bulk::Compressor::new(level).expect("zstd level"),
            decompress: zstd::bulk::Decompressor::new().expect("zstd"),
            text: Vec::new(),
            decoder: CoinApiDecoder::default(),
        })
    };
    vec![
        Box::new(Json {
            decoder: CoinApiDecoder::default(),
        }),
        Box::new(Deflate {
            compress: flate2::Compress::new(flate2::Compression::new(1), false),
            decompress: flate2::Decompress::new(false),
            text: Vec::new(),
            decoder: CoinApiDecoder::default(),
        }),
        zstd("json_zstd1", 1),
        zstd("json_zstd3", 3),
        Box::new(Binary::default()),
    ]
}

/// The mix, decoded as the relay's stream holds it: (raw text, message).
fn relayed(n: usize) -> Vec<(String, Msg)> {
    let mut d = CoinApiDecoder::default();
    frames::mix(n)
        .into_iter()
        .map(|f| {
            let raw = String::from_utf8(f).expect("utf-8");
            let msg = d.decode(raw.as_bytes()).expect("valid frame");
            (raw, msg)
        })
        .collect()
}

fn nats_payload(c: &mut Criterion) {
    let messages = relayed(10_000);
    let raw_bytes: usize = messages.iter().map(|(r, _)| r.len()).sum();
    let mut payloads: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for mut f in formats() {
        let mut out = Vec::new();
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|(raw, msg)| {
                f.encode(msg, raw, &mut out);
                out.clone()
            })
            .collect();
        // Every candidate gives back the very message the relay read.
        for ((_, msg), p) in messages.iter().zip(&encoded) {
            assert_eq!(&f.decode(p), msg, "{}", f.name());
        }
        let bytes: usize = encoded.iter().map(Vec::len).sum();
        println!(
            "{:<14} {:>6.1} bytes/msg ({:.2}x the JSON text's {:.1})",
            f.name(),
            bytes as f64 / messages.len() as f64,
            bytes as f64 / raw_bytes as f64,
            raw_bytes as f64 / messages.len() as f64
        );
        payloads.push((f.name().to_owned(), encoded));
    }

    let mut group = c.benchmark_group("nats_payload_relay");
    group.throughput(Throughput::Elements(messages.len() as u64));
    for mut f in formats() {
        let mut out = Vec::new();
        group.bench_function(BenchmarkId::from_parameter(f.name()), |b| {
            b.iter(|| {
                for (raw, msg) in &messages {
                    f.encode(msg, raw, &mut out);
                    black_box(&out);
                }
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("nats_payload_consumer");
    group.throughput(Throughput::Elements(messages.len() as u64));
    for (mut f, (_, encoded)) in formats().into_iter().zip(&payloads) {
        group.bench_function(BenchmarkId::from_parameter(f.name()), |b| {
            b.iter(|| {
                for p in encoded {
                    black_box(f.decode(p));
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, nats_payload);
criterion_main!(benches);
