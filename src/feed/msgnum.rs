//! Moment order-stream message numbers: `YYYYMMDD` + a 10-digit counter per UTC day, kept
//! across connections so what a reconnect resends drops what was already delivered.

use super::sequence::SeqCheck;

const DAY: u64 = 10_000_000_000;

/// Tracks the last delivered `msg_number`.
#[derive(Clone, Debug, Default)]
pub struct MsgNumberTracker {
    last: Option<u64>,
}

/// True when `next` directly follows `last`: same day and counter + 1, or a later day's
/// first message.
pub fn follows(last: u64, next: u64) -> bool {
    (next / DAY == last / DAY && next == last + 1)
        || (next / DAY > last / DAY && next.is_multiple_of(DAY))
}

impl MsgNumberTracker {
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Checks `n` and, unless it is a duplicate, records it.
    pub fn check(&mut self, n: u64) -> SeqCheck {
        let Some(last) = self.last else {
            self.last = Some(n);
            return SeqCheck::First;
        };
        if n <= last {
            return SeqCheck::Duplicate;
        }
        self.last = Some(n);
        if follows(last, n) {
            SeqCheck::InOrder
        } else {
            SeqCheck::Gap {
                expected: if n / DAY == last / DAY {
                    last + 1
                } else {
                    (n / DAY) * DAY
                },
                received: n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: u64 = 20_240_501 * DAY;
    const D2: u64 = 20_240_502 * DAY;

    #[test]
    fn contiguity_rollover_gap_and_resend() {
        let mut t = MsgNumberTracker::default();
        assert_eq!(t.check(D1 + 41), SeqCheck::First);
        assert_eq!(t.check(D1 + 42), SeqCheck::InOrder);
        // A resumed stream starts at the last delivered number: dropped.
        assert_eq!(t.check(D1 + 42), SeqCheck::Duplicate);
        assert_eq!(t.check(D1 + 40), SeqCheck::Duplicate);
        assert_eq!(t.check(D2), SeqCheck::InOrder);
        assert_eq!(
            t.check(D2 + 3),
            SeqCheck::Gap {
                expected: D2 + 1,
                received: D2 + 3
            }
        );
        let mut u = MsgNumberTracker::default();
        u.check(D1 + 7);
        assert_eq!(
            u.check(D2 + 5),
            SeqCheck::Gap {
                expected: D2,
                received: D2 + 5
            }
        );
        assert_eq!(t.last(), Some(D2 + 3));
    }
}
