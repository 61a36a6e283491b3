//! Per-(type, key) sequence validation for one connection's lifetime.

use std::collections::HashMap;

use crate::model::Key;

/// What one sequence number means against what came before on its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// The first message of its key on this connection: it sets the baseline.
    First,
    /// Exactly the previous number + 1.
    InOrder,
    /// Numbers were skipped: `expected` was due, `received` came.
    Gap { expected: u64, received: u64 },
    /// At or below the last delivered number: drop it and count it.
    Duplicate,
}

/// Tracks the last sequence number per `(type, key)`.
///
/// Keys are interned per connection, so they are looked up by address (no string hashing,
/// no reference-count traffic per message); the entry keeps its key alive, so an address is
/// never reused while it is in the table.
#[derive(Default, Debug)]
pub struct SequenceTracker {
    last: HashMap<(&'static str, usize), (Key, u64), foldhash::fast::RandomState>,
}

impl SequenceTracker {
    /// Checks `seq` for `(msg_type, key)` and, unless it is a duplicate, records it.
    pub fn check(&mut self, msg_type: &'static str, key: &Key, seq: u64) -> SeqCheck {
        let id = (msg_type, key.as_ptr() as usize);
        match self.last.get_mut(&id) {
            Some((_, last)) => {
                if seq <= *last {
                    SeqCheck::Duplicate
                } else if seq == *last + 1 {
                    *last = seq;
                    SeqCheck::InOrder
                } else {
                    let expected = *last + 1;
                    *last = seq;
                    SeqCheck::Gap {
                        expected,
                        received: seq,
                    }
                }
            }
            None => {
                self.last.insert(id, (key.clone(), seq));
                SeqCheck::First
            }
        }
    }

    /// Forgets one key's baseline: its next number is a `First`.
    pub fn forget(&mut self, msg_type: &'static str, key: &Key) {
        self.last.remove(&(msg_type, key.as_ptr() as usize));
    }

    /// Forgets every baseline (a new connection numbers its streams afresh).
    pub fn reset(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn baseline_order_gap_duplicate() {
        let mut t = SequenceTracker::default();
        let k: Key = Arc::from("BITSTAMP_SPOT_BTC_USD");
        assert_eq!(t.check("trade", &k, 2_323_346), SeqCheck::First);
        assert_eq!(t.check("trade", &k, 2_323_347), SeqCheck::InOrder);
        assert_eq!(
            t.check("trade", &k, 2_323_350),
            SeqCheck::Gap {
                expected: 2_323_348,
                received: 2_323_350
            }
        );
        assert_eq!(t.check("trade", &k, 2_323_350), SeqCheck::Duplicate);
        assert_eq!(t.check("trade", &k, 2_323_349), SeqCheck::Duplicate);
        assert_eq!(t.check("trade", &k, 2_323_351), SeqCheck::InOrder);
    }

    #[test]
    fn keys_and_types_are_independent_and_reset_clears() {
        let mut t = SequenceTracker::default();
        let a: Key = Arc::from("A");
        let b: Key = Arc::from("B");
        assert_eq!(t.check("trade", &a, 5), SeqCheck::First);
        assert_eq!(t.check("quote", &a, 100), SeqCheck::First);
        assert_eq!(t.check("trade", &b, 1), SeqCheck::First);
        assert_eq!(t.check("trade", &a, 6), SeqCheck::InOrder);
        t.reset();
        assert_eq!(t.check("trade", &a, 1), SeqCheck::First);
        // One key re-baselined: a jump on it is a new start, the others keep theirs.
        assert_eq!(t.check("book", &b, 10), SeqCheck::First);
        t.forget("book", &a);
        t.forget("book", &b);
        assert_eq!(t.check("book", &b, 50), SeqCheck::First);
        assert_eq!(t.check("trade", &a, 2), SeqCheck::InOrder);
    }
}
