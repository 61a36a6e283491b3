//! Fault schedules (sans-I/O): which data message gets a gap, a duplicate or a malformed twin,
//! and when the time-based faults fire.

use std::time::{Duration, Instant};

use crate::sim::Faults;

/// What to do with one data message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageFaults {
    /// Skip one sequence number before this message (the skipped number is never sent).
    pub gap: bool,
    /// Send the message twice.
    pub duplicate: bool,
    /// Send a broken (truncated) copy of the message just before it, as an extra frame.
    pub malformed: bool,
}

/// What to do with one `book`/`book_l3` update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum BookFault {
    #[default]
    None,
    /// Do not send it; skip its sequence number.
    Drop,
    /// Send a crossing update first.
    Cross,
    /// Send it as a snapshot.
    Snapshot,
}

/// Count-based faults, counted in one connection's data messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct CountFaults {
    n: u64,
    /// `book`/`book_l3` updates counted so far.
    books: u64,
    book_drop: Option<u64>,
    book_cross: Option<u64>,
    book_snapshot: Option<u64>,
    gap: Option<u64>,
    duplicate: Option<u64>,
    malformed: Option<u64>,
}

fn every(n: u64, every: Option<u64>) -> bool {
    every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
}

impl CountFaults {
    pub(crate) fn new(f: &Faults) -> Self {
        Self {
            n: 0,
            books: 0,
            book_drop: f.book_drop_every,
            book_cross: f.book_cross_every,
            book_snapshot: f.book_snapshot_every,
            gap: f.gap_every,
            duplicate: f.duplicate_every,
            malformed: f.malformed_every,
        }
    }

    /// The fault for the next `book`/`book_l3` update (drop first, then cross, then
    /// snapshot, when one update is due for more than one).
    pub(crate) fn next_book(&mut self) -> BookFault {
        self.books += 1;
        let n = self.books;
        if every(n, self.book_drop) {
            BookFault::Drop
        } else if every(n, self.book_cross) {
            BookFault::Cross
        } else if every(n, self.book_snapshot) {
            BookFault::Snapshot
        } else {
            BookFault::None
        }
    }

    /// The faults for the next data message.
    pub(crate) fn next(&mut self) -> MessageFaults {
        self.n += 1;
        MessageFaults {
            gap: every(self.n, self.gap),
            duplicate: every(self.n, self.duplicate),
            malformed: every(self.n, self.malformed),
        }
    }
}

/// A time-based fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Timed {
    /// Close the TCP connection without a close frame.
    Disconnect,
    /// Send and read nothing for this long (`None`: until the client leaves).
    Stall(Option<Duration>),
    /// Send a `reconnect` notice announcing a close within this many seconds.
    ReconnectNotice(f64),
    /// The close announced by a reconnect notice.
    ReconnectClose,
    /// Send an `error` message, then close.
    Error,
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// The time-based faults of one connection, relative to its start (first subscription).
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultPlan {
    pending: Vec<(Duration, Timed)>,
    t0: Option<Instant>,
}

impl FaultPlan {
    /// Time-based faults only apply to the simulator's first connection (`first`), so that a
    /// reconnecting client lands on a healthy server.
    pub(crate) fn new(f: &Faults, first: bool) -> Self {
        let mut pending = Vec::new();
        if first {
            if let Some(s) = f.disconnect_after_s {
                pending.push((secs(s), Timed::Disconnect));
            }
            if let Some(s) = f.stall_after_s {
                pending.push((secs(s), Timed::Stall(f.stall_s.map(secs))));
            }
            if let Some(s) = f.reconnect_notice_after_s {
                pending.push((
                    secs(s),
                    Timed::ReconnectNotice(f.reconnect_within_s.max(0.0)),
                ));
            }
            if let Some(s) = f.error_after_s {
                pending.push((secs(s), Timed::Error));
            }
        }
        // Stable sort: equal offsets keep the order above.
        pending.sort_by_key(|p| p.0);
        Self { pending, t0: None }
    }

    /// Starts the clock (idempotent).
    pub(crate) fn start(&mut self, now: Instant) {
        if self.t0.is_none() {
            self.t0 = Some(now);
        }
    }

    /// When the next fault is due, once started.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let t0 = self.t0?;
        self.pending.first().map(|p| t0 + p.0)
    }

    /// When the next `Disconnect` is due (it may interrupt a blocked write).
    pub(crate) fn disconnect_due(&self) -> Option<Instant> {
        let t0 = self.t0?;
        self.pending
            .iter()
            .find(|p| p.1 == Timed::Disconnect)
            .map(|p| t0 + p.0)
    }

    /// Takes the next fault if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timed> {
        if self.next_due()? <= now {
            Some(self.pending.remove(0).1)
        } else {
            None
        }
    }

    /// Schedules a fault at an absolute time (the close after a reconnect notice).
    pub(crate) fn push_at(&mut self, at: Instant, fault: Timed) {
        let t0 = *self.t0.get_or_insert(at);
        let off = at.saturating_duration_since(t0);
        let pos = self.pending.partition_point(|p| p.0 <= off);
        self.pending.insert(pos, (off, fault));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_faults() {
        let mut c = CountFaults::new(&Faults {
            gap_every: Some(3),
            duplicate_every: Some(2),
            malformed_every: Some(0),
            ..Faults::default()
        });
        let v: Vec<MessageFaults> = (0..6).map(|_| c.next()).collect();
        assert_eq!(
            v.iter().map(|m| m.gap).collect::<Vec<_>>(),
            [false, false, true, false, false, true]
        );
        assert_eq!(
            v.iter().map(|m| m.duplicate).collect::<Vec<_>>(),
            [false, true, false, true, false, true]
        );
        assert!(v.iter().all(|m| !m.malformed));
    }

    #[test]
    fn plan_orders_and_pops() {
        let f = Faults {
            disconnect_after_s: Some(3.0),
            stall_after_s: Some(1.0),
            stall_s: Some(0.5),
            reconnect_notice_after_s: Some(2.0),
            reconnect_within_s: 10.0,
            error_after_s: None,
            ..Faults::default()
        };
        assert_eq!(FaultPlan::new(&f, false).next_due(), None);
        let mut p = FaultPlan::new(&f, true);
        assert_eq!(p.next_due(), None, "not started");
        let t0 = Instant::now();
        p.start(t0);
        assert_eq!(p.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(p.disconnect_due(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(p.pop_due(t0), None);
        assert_eq!(
            p.pop_due(t0 + Duration::from_secs(1)),
            Some(Timed::Stall(Some(Duration::from_millis(500))))
        );
        assert_eq!(p.pop_due(t0 + Duration::from_millis(1999)), None);
        assert_eq!(
            p.pop_due(t0 + Duration::from_millis(2000)),
            Some(Timed::ReconnectNotice(10.0))
        );
        p.push_at(t0 + Duration::from_millis(2600), Timed::ReconnectClose);
        assert_eq!(
            p.pop_due(t0 + Duration::from_secs(10)),
            Some(Timed::ReconnectClose)
        );
        assert_eq!(
            p.pop_due(t0 + Duration::from_secs(10)),
            Some(Timed::Disconnect)
        );
        assert_eq!(p.next_due(), None);
    }
}
