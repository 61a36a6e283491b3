//! Maintained order books (CoinAPI `book` and `book_l3`), sans-I/O: messages in, book state
//! and book events out. No tokio, no pyo3; the consumer side applies a batch with
//! [`BookStore::apply`] just before handing it to Python, so a book reflects exactly the
//! batches already returned.

mod l3;
mod ladder;
mod store;

pub use l3::{L3Book, Order};
pub use ladder::Ladder;
pub use store::{AnyBook, BookStats, BookStore, BookType, RefreshGate, Resync, ResyncLimiter};

use crate::model::Level;

/// An L2 book: two ladders and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Book {
    pub bids: Ladder,
    pub asks: Ladder,
    /// The sequence of the last message applied.
    pub sequence: u64,
    /// `time_exchange` of the last message applied (ns).
    pub time_exchange: i64,
    /// False before the first snapshot, and after a gap, a crossed book or a lost connection
    /// until the next snapshot; the levels are then those it had when it became invalid.
    pub valid: bool,
}

impl Default for L2Book {
    fn default() -> Self {
        L2Book {
            bids: Ladder::new(false),
            asks: Ladder::new(true),
            sequence: 0,
            time_exchange: 0,
            valid: false,
        }
    }
}

/// Sizes that cannot be a level (negative, NaN, infinite) and prices that cannot be one.
pub(crate) fn usable(price: f64, size: f64) -> bool {
    price.is_finite() && size.is_finite() && size >= 0.0
}

impl L2Book {
    /// Replaces both sides; returns how many entries were unusable and skipped.
    pub fn snapshot(&mut self, bids: &[Level], asks: &[Level]) -> u64 {
        let bad = count_bad(bids) + count_bad(asks);
        if bad == 0 {
            self.bids.replace(bids);
            self.asks.replace(asks);
        } else {
            let ok = |v: &[Level]| {
                v.iter()
                    .copied()
                    .filter(|l| usable(l.0, l.1))
                    .collect::<Vec<_>>()
            };
            self.bids.replace(&ok(bids));
            self.asks.replace(&ok(asks));
        }
        bad
    }

    /// Applies changed levels (size 0 removes); returns how many entries were unusable.
    pub fn update(&mut self, bids: &[Level], asks: &[Level]) -> u64 {
        let mut bad = 0;
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for &(p, s) in levels {
                if usable(p, s) {
                    side.set(p, s);
                } else {
                    bad += 1;
                }
            }
        }
        bad
    }

    /// Best bid at or above best ask.
    pub fn crossed(&self) -> bool {
        crossed(&self.bids, &self.asks)
    }

    /// The book as a snapshot's levels: `(bids, asks)`, best first.
    pub fn to_snapshot(&self) -> (Vec<Level>, Vec<Level>) {
        (
            self.bids.iter().copied().collect(),
            self.asks.iter().copied().collect(),
        )
    }
}

fn count_bad(v: &[Level]) -> u64 {
    v.iter().filter(|l| !usable(l.0, l.1)).count() as u64
}

pub(crate) fn crossed(bids: &Ladder, asks: &Ladder) -> bool {
    matches!((bids.best(), asks.best()), (Some(b), Some(a)) if b.0 >= a.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_then_updates_and_crossing() {
        let mut b = L2Book::default();
        b.snapshot(&[(99.0, 1.0), (98.0, 2.0)], &[(101.0, 1.0), (102.0, 2.0)]);
        assert!(!b.crossed());
        b.update(&[(100.0, 5.0), (98.0, 0.0)], &[]);
        assert_eq!(
            b.bids.iter().copied().collect::<Vec<_>>(),
            vec![(100.0, 5.0), (99.0, 1.0)]
        );
        b.update(&[(101.0, 1.0)], &[]);
        assert!(b.crossed(), "a bid at the best ask crosses");
        assert_eq!(b.update(&[(f64::NAN, 1.0), (97.0, -1.0)], &[]), 2);
        assert_eq!(b.bids.len(), 3);
    }
}
