//! Interned key strings, so repeated symbol ids share one allocation and compare by pointer.

use std::collections::HashSet;

use foldhash::fast::RandomState;
use std::sync::Arc;

use crate::model::Key;

/// Above this many distinct keys the table is cleared: a hostile or buggy server sending a new
/// symbol in every message must not grow memory without bound.
const MAX_KEYS: usize = 1 << 16;

/// A set of interned strings.
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
}
