//! The L3 book: orders by id, and levels that aggregate them.
//!
//! `update_type` as tickwire reads it (PROTOCOLS.md 1.5): `ADD` adds an order, `UPDATE` sets
//! its price and size, `SUBTRACT` and `MATCH` (a trade) reduce it to the size given (the size
//! left; 0 removes it), `DELETE` removes it. An entry without an id is an aggregated level
//! (venues that only have L2): its size is the level's, 0 removes it. An entry with an id and
//! no (or an unknown) `update_type` sets the order, like `UPDATE`.

use std::collections::HashMap;

use super::{crossed, usable, Ladder};
use crate::model::L3Entry;

/// One resting order.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub ask: bool,
    pub price: f64,
    pub size: f64,
    /// Arrival order, for listing orders of one level first-come first.
    pub arrival: u64,
}

/// What sits at one price: the number of orders there and the id-less (aggregated) size.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Slot {
    orders: u32,
    anonymous: f64,
}

/// Orders by id plus the levels they make.
///
/// Bound: one entry per live order id and one per listed price, as the feed has them.
#[derive(Clone, Debug, PartialEq)]
pub struct L3Book {
    pub bids: Ladder,
    pub asks: Ladder,
    orders: HashMap<Box<str>, Order, foldhash::fast::RandomState>,
    slots: HashMap<(bool, u64), Slot, foldhash::fast::RandomState>,
    arrivals: u64,
    pub sequence: u64,
    pub time_exchange: i64,
    pub valid: bool,
}

impl Default for L3Book {
    fn default() -> Self {
        L3Book {
            bids: Ladder::new(false),
            asks: Ladder::new(true),
            orders: HashMap::default(),
            slots: HashMap::default(),
            arrivals: 0,
            sequence: 0,
            time_exchange: 0,
            valid: false,
        }
    }
}

/// Prices are looked up by their bits; -0.0 and 0.0 are one price.
fn bits(p: f64) -> u64 {
    if p == 0.0 {
        0
    } else {
        p.to_bits()
    }
}

impl L3Book {
    fn side(&mut self, ask: bool) -> &mut Ladder {
        if ask {
            &mut self.asks
        } else {
            &mut self.bids
        }
    }

    /// Adds `delta` to the level at `price` and `orders` to its order count; the level goes
    /// once it holds neither orders nor an aggregated size.
    fn adjust(&mut self, ask: bool, price: f64, delta: f64, orders: i64, anonymous: Option<f64>) {
        let slot = self.slots.entry((ask, bits(price))).or_default();
        slot.orders = (i64::from(slot.orders) + orders).clamp(0, i64::from(u32::MAX)) as u32;
        let mut delta = delta;
        if let Some(a) = anonymous {
            delta += a - slot.anonymous;
            slot.anonymous = a;
        }
        let (left, anon) = (slot.orders, slot.anonymous);
        if left == 0 && anon == 0.0 {
            self.slots.remove(&(ask, bits(price)));
            self.side(ask).set(price, 0.0);
            return;
        }
        let side = self.side(ask);
        // Sums of decimal sizes drift in binary: with no order left the level is exactly its
        // aggregated size, and a level with orders never reads as empty.
        let total = if left == 0 {
            anon
        } else {
            (side.get(price).unwrap_or(0.0) + delta).max(f64::MIN_POSITIVE)
        };
        side.set(price, total);
    }

    fn remove_order(&mut self, id: &str) {
        if let Some(o) = self.orders.remove(id) {
            self.adjust(o.ask, o.price, -o.size, -1, None);
        }
    }

    fn put_order(&mut self, id: &str, ask: bool, price: f64, size: f64) {
        if size == 0.0 {
            self.remove_order(id);
            return;
        }
        match self.orders.get_mut(id) {
            Some(o) if o.ask == ask && o.price == price => {
                let delta = size - o.size;
                o.size = size;
                self.adjust(ask, price, delta, 0, None);
            }
            Some(_) => {
                self.remove_order(id);
                self.put_order(id, ask, price, size);
            }
            None => {
                self.arrivals += 1;
                self.orders.insert(
                    id.into(),
                    Order {
                        ask,
                        price,
                        size,
                        arrival: self.arrivals,
                    },
                );
                self.adjust(ask, price, size, 1, None);
            }
        }
    }

    fn entry(&mut self, ask: bool, e: &L3Entry, snapshot: bool) -> bool {
        if !usable(e.price, e.size) {
            return false;
        }
        let Some(id) = e.id.as_deref() else {
            self.adjust(ask, e.price, 0.0, 0, Some(e.size));
            return true;
        };
        let kind = if snapshot {
            None
        } else {
            e.update_type.as_deref()
        };
        match kind {
            Some("DELETE") => self.remove_order(id),
            Some("SUBTRACT" | "MATCH") => {
                // A reduction never adds an order nor grows one.
                let known = self.orders.get(id).map(|o| o.size);
                match known {
                    Some(s) if e.size <= s => self.put_order(id, ask, e.price, e.size),
                    Some(_) => return false,
                    None if e.size == 0.0 => {}
                    None => return false,
                }
            }
            _ => self.put_order(id, ask, e.price, e.size),
        }
        true
    }

    /// Replaces the book; returns how many entries were unusable and skipped.
    pub fn snapshot(&mut self, bids: &[L3Entry], asks: &[L3Entry]) -> u64 {
        self.bids.clear();
        self.asks.clear();
        self.orders.clear();
        self.slots.clear();
        self.apply(bids, asks, true)
    }

    /// Applies changed entries; returns how many were unusable (skipped).
    pub fn update(&mut self, bids: &[L3Entry], asks: &[L3Entry]) -> u64 {
        self.apply(bids, asks, false)
    }

    fn apply(&mut self, bids: &[L3Entry], asks: &[L3Entry], snapshot: bool) -> u64 {
        let mut bad = 0;
        for (ask, entries) in [(false, bids), (true, asks)] {
            for e in entries {
                if !self.entry(ask, e, snapshot) {
                    bad += 1;
                }
            }
        }
        bad
    }

    pub fn crossed(&self) -> bool {
        crossed(&self.bids, &self.asks)
    }

    /// Live orders: `(id, order)`, bids best first then asks best first, first-come first
    /// within a level.
    pub fn orders(&self) -> Vec<(&str, &Order)> {
        let mut v: Vec<(&str, &Order)> = self.orders.iter().map(|(k, o)| (&**k, o)).collect();
        v.sort_by(|(_, a), (_, b)| {
            a.ask.cmp(&b.ask).then_with(|| {
                let by_price = if a.ask {
                    a.price.total_cmp(&b.price)
                } else {
                    b.price.total_cmp(&a.price)
                };
                by_price.then(a.arrival.cmp(&b.arrival))
            })
        });
        v
    }

    /// The book as a snapshot's entries: `(bids, asks)`, each side's orders best first and
    /// first-come first within a level, then its aggregated (id-less) levels. Applied as a
    /// snapshot, they give this book back, arrival order included.
    pub fn to_snapshot(&self) -> (Vec<L3Entry>, Vec<L3Entry>) {
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for (id, o) in self.orders() {
            let side = if o.ask { &mut asks } else { &mut bids };
            side.push(L3Entry {
                id: Some(id.into()),
                price: o.price,
                size: o.size,
                update_type: None,
            });
        }
        let mut anonymous: Vec<(bool, f64, f64)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.anonymous != 0.0)
            .map(|(&(ask, b), s)| (ask, f64::from_bits(b), s.anonymous))
            .collect();
        anonymous.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (ask, price, size) in anonymous {
            let side = if ask { &mut asks } else { &mut bids };
            side.push(L3Entry {
                id: None,
                price,
                size,
                update_type: None,
            });
        }
        (bids, asks)
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn e(id: Option<&str>, price: f64, size: f64, t: Option<&str>) -> L3Entry {
        L3Entry {
            id: id.map(Into::into),
            price,
            size,
            update_type: t.map(Arc::from),
        }
    }

    #[test]
    fn orders_aggregate_into_levels() {
        let mut b = L3Book::default();
        b.snapshot(
            &[e(Some("a"), 99.0, 1.0, None), e(Some("b"), 99.0, 2.0, None)],
            &[e(Some("c"), 101.0, 1.5, None)],
        );
        assert_eq!(b.bids.best(), Some((99.0, 3.0)));
        b.update(&[e(Some("d"), 100.0, 4.0, Some("ADD"))], &[]);
        assert_eq!(b.bids.best(), Some((100.0, 4.0)));
        b.update(&[e(Some("a"), 99.0, 0.25, Some("SUBTRACT"))], &[]);
        assert_eq!(b.bids.get(99.0), Some(2.25));
        b.update(&[e(Some("b"), 99.0, 0.0, Some("MATCH"))], &[]);
        assert_eq!(b.bids.get(99.0), Some(0.25));
        b.update(&[e(Some("a"), 99.0, 0.0, Some("DELETE"))], &[]);
        assert_eq!(b.bids.get(99.0), None, "no order left: the level goes");
        b.update(&[e(Some("d"), 98.0, 4.0, Some("UPDATE"))], &[]);
        assert_eq!(b.bids.get(100.0), None, "an update may move an order");
        assert_eq!(b.bids.get(98.0), Some(4.0));
        let ids: Vec<&str> = b.orders().iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec!["d", "c"]);
        assert!(!b.crossed());
        b.update(&[], &[e(Some("x"), 97.0, 1.0, Some("ADD"))]);
        assert!(b.crossed());
    }

    #[test]
    fn entries_without_id_are_aggregated_levels() {
        let mut b = L3Book::default();
        b.snapshot(&[e(None, 10.0, 5.0, None)], &[e(None, 11.0, 1.0, None)]);
        b.update(
            &[
                e(None, 10.0, 3.0, None),
                e(Some("o"), 10.0, 1.0, Some("ADD")),
            ],
            &[],
        );
        assert_eq!(b.bids.get(10.0), Some(4.0));
        b.update(&[e(None, 10.0, 0.0, None)], &[]);
        assert_eq!(b.bids.get(10.0), Some(1.0));
        b.update(&[e(Some("o"), 10.0, 0.0, Some("DELETE"))], &[]);
        assert!(b.bids.is_empty());
        assert_eq!(b.order_count(), 0);
    }

    #[test]
    fn bad_reductions_are_refused() {
        let mut b = L3Book::default();
        b.snapshot(&[e(Some("a"), 10.0, 1.0, None)], &[]);
        // Growing through SUBTRACT, or reducing an unknown order, is not a reduction.
        assert_eq!(
            b.update(&[e(Some("a"), 10.0, 2.0, Some("SUBTRACT"))], &[]),
            1
        );
        assert_eq!(b.update(&[e(Some("z"), 10.0, 2.0, Some("MATCH"))], &[]), 1);
        assert_eq!(b.update(&[e(Some("z"), 10.0, 0.0, Some("DELETE"))], &[]), 0);
        assert_eq!(b.bids.get(10.0), Some(1.0));
        assert_eq!(
            b.update(&[e(Some("a"), f64::NAN, 1.0, Some("ADD"))], &[]),
            1
        );
    }
}
