//! Order-book micro-benchmarks: L2 updates applied per second and the time to read the top
//! 10 levels, tickwire's ladder (a sorted ring, best level last) against the sorted `Vec` it
//! replaced and a `BTreeMap` side in the same run; and the whole `BookStore::apply` path over batches of `book` messages.
//!
//! The update stream is synthetic and seeded, shaped like the simulator's `book` stream
//! (most changes within the top 10 levels, the touch moving both ways, levels appearing at
//! the far end), on books 50 and 2 000 levels deep per side.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use _core::book::{BookStore, Ladder};
use _core::model::{Book, BookKind, Envelope, Msg};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A snapshot's levels.
type Levels = Vec<(f64, f64)>;
/// Changes as (ask, price, size).
type Changes = Vec<(bool, f64, f64)>;

/// Bid and ask snapshots, then changes applied to a model book, so every removal hits a
/// listed level and the depth stays constant.
fn updates(depth: usize, n: usize) -> (Levels, Levels, Changes) {
    let mut rng = Rng(0x5EED_0B00C);
    let tick = 0.01;
    let px = |t: i64| t as f64 * tick;
    // Integer ticks, best first.
    let mut asks: Vec<i64> = (0..depth as i64).map(|i| 100_001 + i * 2).collect();
    let mut bids: Vec<i64> = (0..depth as i64).map(|i| 100_000 - i * 2).collect();
    let snap = |v: &[i64]| v.iter().map(|&t| (px(t), 1.0)).collect::<Vec<_>>();
    let (snap_b, snap_a) = (snap(&bids), snap(&asks));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ask = rng.below(2) == 0;
        let spread = asks[0] - bids[0];
        let side = if ask { &mut asks } else { &mut bids };
        let dir: i64 = if ask { 1 } else { -1 };
        let r = rng.below(100);
        if r < 62 {
            let top = side.len().min(10) as u64;
            let i = (rng.below(top) * rng.below(top) / top) as usize;
            out.push((ask, px(side[i]), 1.0 + rng.below(2000) as f64 * 0.001));
        } else if r < 81 || spread <= 1 {
            let gone = side.remove(0);
            out.push((ask, px(gone), 0.0));
            let worst = *side.last().unwrap_or(&gone) + dir * (1 + rng.below(3) as i64);
            side.push(worst);
            out.push((ask, px(worst), 1.0));
        } else {
            let best = side[0] - dir;
            side.insert(0, best);
            out.push((ask, px(best), 2.0));
            if let Some(w) = side.pop() {
                out.push((ask, px(w), 0.0));
            }
        }
    }
    out.truncate(n);
    (snap_b, snap_a, out)
}

/// The peer: a side as a `BTreeMap` keyed by the price's ordered bits.
struct TreeSide {
    levels: BTreeMap<i64, f64>,
    ask: bool,
}

fn ord_key(p: f64) -> i64 {
    // Monotone map of non-negative doubles to integers.
    p.to_bits() as i64
}

impl TreeSide {
    fn new(ask: bool, levels: &[(f64, f64)]) -> Self {
        TreeSide {
            levels: levels.iter().map(|&(p, s)| (ord_key(p), s)).collect(),
            ask,
        }
    }
    fn set(&mut self, p: f64, s: f64) {
        if s == 0.0 {
            self.levels.remove(&ord_key(p));
        } else {
            self.levels.insert(ord_key(p), s);
        }
    }
    fn top_sum(&self, n: usize) -> f64 {
        if self.ask {
            self.levels.iter().take(n).map(|(_, s)| *s).sum()
        } else {
            self.levels.iter().rev().take(n).map(|(_, s)| *s).sum()
        }
    }
}

/// The previous ladder, kept here as a peer: a sorted `Vec`, best level last, probed from the
/// best end and binary-searched past 8 levels.
struct VecSide {
    levels: Vec<(f64, f64)>,
    ask: bool,
}

impl VecSide {
    fn new(ask: bool, levels: &[(f64, f64)]) -> Self {
        let mut v = levels.to_vec();
        v.sort_by(|a, b| {
            if ask {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            }
        });
        VecSide { levels: v, ask }
    }
    fn key(&self, p: f64) -> f64 {
        if self.ask {
            -p
        } else {
            p
        }
    }
    fn set(&mut self, p: f64, s: f64) {
        let k = self.key(p);
        let n = self.levels.len();
        let mut i = n;
        let mut at = None;
        while i > 0 && n - i < 8 {
            let here = self.key(self.levels[i - 1].0);
            if here <= k {
                at = Some(if here == k { (i - 1, true) } else { (i, false) });
                break;
            }
            i -= 1;
        }
        let (i, found) = at.unwrap_or_else(|| {
            let i = self.levels[..i].partition_point(|l| self.key(l.0) < k);
            (i, i < n && self.levels[i].0 == p)
        });
        match (found, s == 0.0) {
            (true, true) => {
                self.levels.remove(i);
            }
            (true, false) => self.levels[i].1 = s,
            (false, false) => self.levels.insert(i, (p, s)),
            (false, true) => {}
        }
    }
    fn top_sum(&self, n: usize) -> f64 {
        let from = self.levels.len().saturating_sub(n);
        self.levels[from..].iter().rev().map(|l| l.1).sum()
    }
}

fn bench_sides(c: &mut Criterion) {
    const N: usize = 100_000;
    for depth in [50usize, 2000] {
        let (bids, asks, ups) = updates(depth, N);
        let mut g = c.benchmark_group(format!("l2_updates_depth{depth}"));
        g.throughput(Throughput::Elements(N as u64));
        g.bench_function("ladder", |b| {
            b.iter_batched(
                || {
                    let mut s = (Ladder::new(false), Ladder::new(true));
                    s.0.replace(&bids);
                    s.1.replace(&asks);
                    s
                },
                |mut s| {
                    for &(ask, p, sz) in &ups {
                        if ask { &mut s.1 } else { &mut s.0 }.set(p, sz);
                    }
                    s
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_function("vec", |b| {
            b.iter_batched(
                || (VecSide::new(false, &bids), VecSide::new(true, &asks)),
                |mut s| {
                    for &(ask, p, sz) in &ups {
                        if ask { &mut s.1 } else { &mut s.0 }.set(p, sz);
                    }
                    s
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_function("btreemap", |b| {
            b.iter_batched(
                || (TreeSide::new(false, &bids), TreeSide::new(true, &asks)),
                |mut s| {
                    for &(ask, p, sz) in &ups {
                        if ask { &mut s.1 } else { &mut s.0 }.set(p, sz);
                    }
                    s
                },
                BatchSize::LargeInput,
            );
        });
        g.finish();

        let mut g = c.benchmark_group(format!("top10_read_depth{depth}"));
        let mut ladder = Ladder::new(false);
        ladder.replace(&bids);
        let tree = TreeSide::new(false, &bids);
        let vec = VecSide::new(false, &bids);
        g.bench_function("ladder", |b| {
            b.iter(|| black_box(&ladder).top(10).map(|l| l.1).sum::<f64>());
        });
        g.bench_function("vec", |b| b.iter(|| black_box(&vec).top_sum(10)));
        g.bench_function("btreemap", |b| b.iter(|| black_box(&tree).top_sum(10)));
        g.finish();
    }
}

/// `BookStore::apply` over batches of decoded `book` updates (one to three levels each, as
/// the simulator sends), 20 symbols: the whole consumer-side cost of `books=True`.
fn bench_store(c: &mut Criterion) {
    const MSGS: usize = 20_000;
    let (bids, asks, ups) = updates(50, MSGS * 2);
    let syms: Vec<Arc<str>> = (0..20)
        .map(|i| Arc::from(format!("EX_SPOT_A{i}_USD")))
        .collect();
    let msg = |sym: &Arc<str>, seq: u64, snap: bool, b: Vec<(f64, f64)>, a: Vec<(f64, f64)>| {
        Envelope::event(
            0,
            Msg::Book(Book {
                kind: BookKind::Full,
                symbol_id: sym.clone(),
                sequence: seq,
                time_exchange: 0,
                time_coinapi: 0,
                is_snapshot: snap,
                asks: a,
                bids: b,
            }),
        )
    };
    let mut batch: Vec<Envelope> = syms
        .iter()
        .map(|s| msg(s, 0, true, bids.clone(), asks.clone()))
        .collect();
    // Each symbol repeats the same stream, so every symbol's book stays consistent.
    let per_sym = MSGS / syms.len();
    for k in 0..per_sym {
        for s in &syms {
            let (ask, p, sz) = ups[k * 2];
            let (ask2, p2, sz2) = ups[k * 2 + 1];
            let (mut b, mut a) = (Vec::new(), Vec::new());
            for (is_ask, p, sz) in [(ask, p, sz), (ask2, p2, sz2)] {
                if is_ask { &mut a } else { &mut b }.push((p, sz));
            }
            batch.push(msg(s, k as u64 + 1, false, b, a));
        }
    }
    let mut g = c.benchmark_group("book_store_apply");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("20_symbols_batches_of_1024", |b| {
        b.iter_batched(
            || {
                let chunks: Vec<Vec<Envelope>> = batch.chunks(1024).map(<[_]>::to_vec).collect();
                (BookStore::new(), chunks)
            },
            |(mut store, chunks)| {
                for mut c in chunks {
                    store.apply(&mut c);
                    black_box(&c);
                }
                store
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench_sides, bench_store);
criterion_main!(benches);
