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
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/frames.rs"]
mod frames;

use frames::{mix, Gen};

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
