//! The relay's payload encoding, chosen by measurement: each candidate's relay CPU per message
//! (making the payload from the message the relay's stream already decoded, and its raw text),
//! the consumer's CPU per message (payload to typed message), and bytes per message, over the
//! codec bench's 10k-frame live mix (70% trade, 20% quote, 5% book5, 5% index).
//!
//! Candidates, each after tickwire's version byte and venue byte:
//! - `json`: the venue's JSON text as received (payload version 1, and version 2's form for
//!   types without a binary record);
//! - `json_deflate1`: that text, raw deflate level 1 per message (zlib-rs, as the WebSocket
//!   side uses), inflated then decoded by the consumer;
//! - `json_zstd1`, `json_zstd3`: that text, zstd level 1 / 3 per message;
//! - `binary`: the decoded fields in the compact binary form of `src/relay/binary.rs`, read
//!   straight back into the typed message with no JSON on the consumer's side (payload
//!   version 2, what the relay writes for these four types; measured first as a prototype here,
//!   adopted on these numbers).
//!
//! `cargo bench --bench nats_payload`; bytes per message are printed before the timings.

use std::hint::black_box;

use _core::codec::{CoinApiDecoder, Interner};
use _core::model::Msg;
use _core::relay::binary;
use _core::relay::wire::{self, Body, Venue};
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
        // What the relay writes for types without a binary form: one allocation per payload.
        *out = wire::encode_json(Venue::CoinApi, raw);
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        match wire::decode(payload).expect("version 2") {
            (_, Body::Json(json)) => self.decoder.decode(json).expect("valid frame"),
            (_, Body::Binary(_)) => panic!("a JSON payload"),
        }
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
        out.extend_from_slice(&[wire::VERSION_JSON, Venue::CoinApi as u8]);
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
        out.extend_from_slice(&[wire::VERSION_JSON, Venue::CoinApi as u8]);
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

/// Payload version 2 as the relay writes it: binary records for the mix's four types.
#[derive(Default)]
struct Binary {
    keys: Interner,
}

impl Format for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn encode(&mut self, msg: &Msg, raw: &str, out: &mut Vec<u8>) {
        *out = wire::encode(Venue::CoinApi, msg, raw);
    }

    fn decode(&mut self, payload: &[u8]) -> Msg {
        match wire::decode(payload).expect("version 2") {
            (_, Body::Binary(record)) => binary::read(record, &mut self.keys).expect("record"),
            (_, Body::Json(_)) => panic!("the mix's types all have a binary form"),
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
