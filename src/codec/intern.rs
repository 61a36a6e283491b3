//! Interned key strings, so repeated symbol ids share one allocation and compare by pointer.

use std::collections::HashSet;

use foldhash::fast::RandomState;
use std::sync::Arc;

use crate::model::Key;

/// Above this many distinct keys the table is cleared: a hostile or buggy server sending a new
/// symbol in every message must not grow memory without bound. Nothing relies on a key's
/// address staying the same (sequence tracking compares text), so clearing costs only the
/// re-allocation of keys still in use. The bound sits above a full CoinAPI market (some
/// 300,000 symbols), so such a subscription never starts over: at most about 60 MB (a 16-byte
/// slot and the key's allocation, ~40 bytes for a typical symbol id, per key).
const MAX_KEYS: usize = 1 << 20;

/// A set of interned strings, one per connection's decoder (released with it).
#[derive(Default, Debug)]
pub struct Interner {
    keys: HashSet<Arc<str>, RandomState>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Key {
        if let Some(k) = self.keys.get(s) {
            return k.clone();
        }
        if self.keys.len() >= MAX_KEYS {
            self.keys.clear();
        }
        let k: Key = Arc::from(s);
        self.keys.insert(k.clone());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_allocation() {
        let mut i = Interner::default();
        let a = i.intern("BITSTAMP_SPOT_BTC_USD");
        let b = i.intern("BITSTAMP_SPOT_BTC_USD");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.intern("X")));
    }

    #[test]
    fn starts_over_past_its_bound_and_keeps_the_text() {
        let mut i = Interner::default();
        let first = i.intern("K0");
        for n in 1..=MAX_KEYS {
            i.intern(&format!("K{n}"));
        }
        assert!(i.keys.len() <= MAX_KEYS);
        let again = i.intern("K0");
        assert_eq!(first, again);
        assert!(
            !Arc::ptr_eq(&first, &again),
            "a fresh copy once the table started over"
        );
    }
}
