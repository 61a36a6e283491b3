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

type Table = HashMap<Key, u64, foldhash::fast::RandomState>;

/// Tracks the last sequence number per `(type, key)`, exactly, for any number of keys.
///
/// Keys are compared by value (the string), never by the address of an interned copy: the
/// interner may start over under a flood of new keys, and a re-interned symbol must still find
/// its baseline. One table per message type (a connection carries a handful of types), each
/// mapping the key to its last number.
///
/// Memory is bounded by the keys seen on this connection and released by [`reset`] (a new
/// connection) or drop: per tracked key, one table slot (a 16-byte `Arc<str>` handle, the
/// 8-byte number and 1 control byte, at a load factor between 7/16 and 7/8), plus the key's
/// own allocation (16 bytes of counts and the text) once the interner no longer shares it.
/// Measured at 300,000 trade symbols of 26 bytes (`scale_tests::memory_per_key_at_300k`,
/// counting allocated bytes): **44 bytes per key for the table** (13.1 MB) and 42 more per key
/// whose text only the tracker still holds, so at most about 90 bytes per key, or 27 MB for a
/// 300,000-symbol connection.
///
/// [`reset`]: SequenceTracker::reset
#[derive(Default, Debug)]
pub struct SequenceTracker {
    tables: Vec<(&'static str, Table)>,
}

impl SequenceTracker {
    fn table(&mut self, msg_type: &'static str) -> &mut Table {
        // Types are static wire names; comparing the text (not the pointer) keeps this exact
        // even if two copies of a name exist.
        let at = match self.tables.iter().position(|(t, _)| *t == msg_type) {
            Some(i) => i,
            None => {
                self.tables.push((msg_type, Table::default()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }

    /// Checks `seq` for `(msg_type, key)` and, unless it is a duplicate, records it.
    pub fn check(&mut self, msg_type: &'static str, key: &Key, seq: u64) -> SeqCheck {
        let table = self.table(msg_type);
        match table.get_mut(&**key) {
            Some(last) => {
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
                table.insert(key.clone(), seq);
                SeqCheck::First
            }
        }
    }

    /// Keys tracked, all types together.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|(_, t)| t.len()).sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets one key's baseline: its next number is a `First`.
    pub fn forget(&mut self, msg_type: &'static str, key: &Key) {
        if let Some((_, table)) = self.tables.iter_mut().find(|(t, _)| *t == msg_type) {
            table.remove(&**key);
        }
    }

    /// Forgets every baseline and frees the tables (a new connection numbers its streams
    /// afresh, and may carry far fewer keys).
    pub fn reset(&mut self) {
        self.tables = Vec::new();
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

#[cfg(test)]
mod scale_tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::Arc;

    /// Counts the bytes allocated and freed on the current thread, so a test measures its own
    /// allocations while other tests run on other threads.
    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
    // const-initialised thread-local, which never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
            // SAFETY: the caller's layout, passed through.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
            // SAFETY: `p` came from `alloc` with this layout.
            unsafe { System.dealloc(p, l) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    fn live() -> isize {
        LIVE.with(Cell::get)
    }

    fn symbol(i: usize) -> String {
        format!("EXCHANGE{:03}_SPOT_{i:06}_USD", i % 997)
    }

    /// Past 65,536 keys (where the interner starts over) a re-interned key still finds its
    /// baseline: a repeat is a duplicate and a jump reports the right `expected`.
    #[test]
    fn exact_past_the_interner_bound() {
        let mut t = SequenceTracker::default();
        let n = 300_000;
        for i in 0..n {
            assert_eq!(t.check("trade", &Arc::from(symbol(i)), 5), SeqCheck::First);
        }
        for i in 0..n {
            // A fresh allocation of the same text, as after the interner was cleared.
            let k: Key = Arc::from(symbol(i));
            assert_eq!(t.check("trade", &k, 5), SeqCheck::Duplicate, "{i}");
            assert_eq!(t.check("trade", &k, 6), SeqCheck::InOrder, "{i}");
            assert_eq!(
                t.check("trade", &k, 10),
                SeqCheck::Gap {
                    expected: 7,
                    received: 10
                }
            );
        }
        assert_eq!(t.len(), n);
        t.reset();
        assert!(t.is_empty());
    }

    /// The figure stated on [`SequenceTracker`]: bytes per tracked key at 300,000 symbols, the
    /// keys' text held elsewhere (the interner) and not.
    #[test]
    fn memory_per_key_at_300k() {
        let n = 300_000;
        let keys: Vec<Key> = (0..n).map(|i| Arc::from(symbol(i))).collect();
        let before = live();
        let mut t = SequenceTracker::default();
        for k in &keys {
            t.check("trade", k, 1);
        }
        let table = (live() - before) as f64 / n as f64;
        // Dropping the caller's copies frees only their Vec: the tracker still holds the text.
        drop(keys);
        let held = live();
        t.reset();
        let freed = (held - live()) as f64 / n as f64;
        let text = freed - table;
        eprintln!("sequence tracker: {table:.1} B/key (table) + {text:.1} B/key (key text)");
        assert!(table <= 64.0, "{table} B per key");
        assert!(text <= 64.0, "{text} B per key");
        assert!(live() <= before, "reset frees everything it held");
    }
}
