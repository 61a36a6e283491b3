//! The connection's counters, written by the stream's task alone and read by whoever shows
//! the stream's stats; relaxed atomics: they are statistics, not synchronisation. (What the
//! queue drops and hands out, it counts itself: `delivery::QueueStats`.)

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Live counters of one stream's connections.
#[derive(Default, Debug)]
pub struct Counters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    pub parse_errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Wall clock (ns) of the last frame read; 0 before the first.
    pub last_frame_ns: AtomicI64,
}

/// A plain copy of [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub messages: u64,
    pub bytes: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub parse_errors: u64,
    pub reconnects: u64,
    pub last_frame_ns: i64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            parse_errors: self.parse_errors.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            last_frame_ns: self.last_frame_ns.load(Relaxed),
        }
    }
}
