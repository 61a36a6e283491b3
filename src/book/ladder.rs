//! One side of a book: price levels kept sorted in a ring (`VecDeque`), the worst level at
//! the front and the best at the back.
//!
//! Chosen by measurement (benches/book.rs, BENCHMARKS.md "Order books"), against the sorted
//! `Vec` it replaces and a `BTreeMap` side in the same run: most changes land within a few
//! levels of the best (the back: a short linear probe, no search), and on deep books the other
//! common change is at the far end (a level appearing or leaving at the worst price), which a
//! `Vec` paid for by shifting the whole side and a ring does in constant time; an insert in
//! the middle shifts the shorter half. A top-N read walks the back of the ring without copying.

use std::collections::VecDeque;

use crate::model::Level;

/// The levels of one side (bids or asks), best first when read.
///
/// Bound: one entry per distinct price the feed has listed and not removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ladder {
    /// Worst first, best last.
    levels: VecDeque<Level>,
    ask: bool,
}

impl Ladder {
    /// An empty side: asks (lowest price best) or bids (highest price best).
    pub fn new(ask: bool) -> Self {
        Ladder {
            levels: VecDeque::new(),
            ask,
        }
    }

    /// Where `price` is or would be, and whether it is there.
    #[inline]
    fn find(&self, price: f64) -> (usize, bool) {
        // One search per side, each with its sort key compiled in (no per-comparison branch).
        if self.ask {
            self.find_by(price, |p| -p)
        } else {
            self.find_by(price, |p| p)
        }
    }

    #[inline(always)]
    fn find_by(&self, price: f64, key: impl Fn(f64) -> f64) -> (usize, bool) {
        let k = key(price);
        let (front, back) = self.levels.as_slices();
        // Searched from the best end, within its contiguous part: the changed level is
        // usually within a few of it.
        let (tail, off) = if back.is_empty() {
            (front, 0)
        } else {
            (back, front.len())
        };
        let mut i = tail.len();
        let stop = i.saturating_sub(8);
        while i > stop {
            let here = key(tail[i - 1].0);
            if here == k {
                return (off + i - 1, true);
            }
            if here < k {
                return (off + i, false);
            }
            i -= 1;
        }
        // Then the worst end, where deep books change next most often.
        match self.levels.front() {
            None => return (0, false),
            Some(w) if key(w.0) >= k => return (0, w.0 == price),
            Some(_) => {}
        }
        let j = if off > 0 && back.first().is_some_and(|l| key(l.0) >= k) {
            front.partition_point(|l| key(l.0) < k)
        } else {
            off + tail[..i].partition_point(|l| key(l.0) < k)
        };
        (j, self.levels.get(j).is_some_and(|l| l.0 == price))
    }

    /// Sets the size at `price`; a size of 0 removes the level. Returns the previous size.
    pub fn set(&mut self, price: f64, size: f64) -> Option<f64> {
        let (i, found) = self.find(price);
        if found {
            if size == 0.0 {
                self.levels.remove(i).map(|l| l.1)
            } else {
                Some(std::mem::replace(&mut self.levels[i].1, size))
            }
        } else {
            if size != 0.0 {
                self.levels.insert(i, (price, size));
            }
            None
        }
    }

    /// The size at `price`, if listed.
    pub fn get(&self, price: f64) -> Option<f64> {
        match self.find(price) {
            (i, true) => Some(self.levels[i].1),
            _ => None,
        }
    }

    /// Replaces every level from a list in any order (a snapshot); zero sizes are skipped.
    pub fn replace(&mut self, levels: &[Level]) {
        let mut v: Vec<Level> = std::mem::take(&mut self.levels).into();
        v.clear();
        v.extend(levels.iter().copied().filter(|l| l.1 != 0.0));
        let ask = self.ask;
        v.sort_by(|a, b| {
            if ask {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            }
        });
        // A snapshot listing a price twice keeps its last entry, as updates would.
        v.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                *earlier = *later;
                true
            } else {
                false
            }
        });
        self.levels = v.into();
    }

    /// The best level.
    pub fn best(&self) -> Option<Level> {
        self.levels.back().copied()
    }

    /// Levels best first, without copying.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Level> + DoubleEndedIterator {
        self.levels.iter().rev()
    }

    /// The best `n` levels, best first, without copying.
    pub fn top(&self, n: usize) -> impl ExactSizeIterator<Item = &Level> + DoubleEndedIterator {
        let from = self.levels.len().saturating_sub(n);
        self.levels.range(from..).rev()
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn clear(&mut self) {
        self.levels.clear();
    }

    /// True for the ask side.
    pub fn is_ask(&self) -> bool {
        self.ask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_descend_asks_ascend_and_zero_removes() {
        let mut b = Ladder::new(false);
        for (p, s) in [(100.0, 1.0), (102.0, 2.0), (101.0, 3.0), (99.0, 4.0)] {
            b.set(p, s);
        }
        let got: Vec<_> = b.iter().copied().collect();
        assert_eq!(
            got,
            vec![(102.0, 2.0), (101.0, 3.0), (100.0, 1.0), (99.0, 4.0)]
        );
        assert_eq!(b.set(101.0, 0.0), Some(3.0));
        assert_eq!(
            b.set(50.0, 0.0),
            None,
            "removing an absent level is a no-op"
        );
        assert_eq!(b.set(102.0, 7.0), Some(2.0));
        assert_eq!(b.best(), Some((102.0, 7.0)));
        assert_eq!(
            b.top(2).copied().collect::<Vec<_>>(),
            vec![(102.0, 7.0), (100.0, 1.0)]
        );
        assert_eq!(b.top(10).len(), 3);

        let mut a = Ladder::new(true);
        for (p, s) in [(105.0, 1.0), (103.0, 2.0), (104.0, 3.0)] {
            a.set(p, s);
        }
        assert_eq!(a.best(), Some((103.0, 2.0)));
        assert_eq!(
            a.iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![103.0, 104.0, 105.0]
        );
        assert_eq!(a.get(104.0), Some(3.0));
        assert_eq!(a.get(104.5), None);
    }

    #[test]
    fn far_levels_use_the_binary_search() {
        let mut b = Ladder::new(false);
        for i in 0..100 {
            b.set(f64::from(i), 1.0);
        }
        b.set(3.0, 9.0);
        b.set(2.5, 1.0);
        b.set(10.0, 0.0);
        assert_eq!(b.get(3.0), Some(9.0));
        assert_eq!(b.get(2.5), Some(1.0));
        assert_eq!(b.get(10.0), None);
        let prices: Vec<f64> = b.iter().map(|l| l.0).collect();
        let mut sorted = prices.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        assert_eq!(prices, sorted);
        assert_eq!(b.len(), 100);
    }

    #[test]
    fn snapshot_replace_sorts_skips_zero_and_dedups() {
        let mut a = Ladder::new(true);
        a.set(1.0, 1.0);
        a.replace(&[(3.0, 1.0), (2.0, 0.0), (1.5, 2.0), (3.0, 5.0)]);
        assert_eq!(
            a.iter().copied().collect::<Vec<_>>(),
            vec![(1.5, 2.0), (3.0, 5.0)]
        );
    }

    #[test]
    fn agrees_with_a_sorted_map_through_wrapping_inserts_at_both_ends() {
        use std::collections::BTreeMap;
        // xorshift: deterministic, no dependency.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for ask in [false, true] {
            let mut l = Ladder::new(ask);
            let mut m: BTreeMap<i64, f64> = BTreeMap::new();
            for step in 0..20_000 {
                // Prices drift so levels keep appearing at both ends and the ring wraps.
                let centre = 10_000 + (step / 50) as i64;
                let t = centre + rnd(400) as i64 - 200;
                let size = if rnd(3) == 0 {
                    0.0
                } else {
                    1.0 + rnd(9) as f64
                };
                let p = t as f64 * 0.5;
                let before = m.get(&t).copied();
                if size == 0.0 {
                    m.remove(&t);
                } else {
                    m.insert(t, size);
                }
                assert_eq!(l.set(p, size), before);
                if step % 997 == 0 {
                    let want: Vec<Level> = if ask {
                        m.iter().map(|(t, s)| (*t as f64 * 0.5, *s)).collect()
                    } else {
                        m.iter().rev().map(|(t, s)| (*t as f64 * 0.5, *s)).collect()
                    };
                    assert_eq!(l.iter().copied().collect::<Vec<_>>(), want);
                    assert_eq!(
                        l.top(5).copied().collect::<Vec<_>>(),
                        want[..want.len().min(5)]
                    );
                    assert_eq!(l.get(t as f64 * 0.5), m.get(&t).copied());
                }
            }
        }
    }
}
