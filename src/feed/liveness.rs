//! The connection clock: every frame refreshes it; silence past the deadline means dead.

use std::time::{Duration, Instant};

/// Liveness of one connection.
#[derive(Clone, Debug)]
pub struct Liveness {
    timeout: Option<Duration>,
    last_frame: Instant,
}

impl Liveness {
    /// `timeout = None` never declares the connection stale.
    pub fn new(timeout: Option<Duration>, now: Instant) -> Self {
        Liveness {
            timeout,
            last_frame: now,
        }
    }

    /// Any frame, data or control, proves the connection alive.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// When the connection becomes stale if nothing arrives before.
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| self.last_frame + t)
    }

    /// `Some(silence)` when the connection has been silent past its timeout at `now`.
    pub fn stale(&self, now: Instant) -> Option<Duration> {
        let silence = now.saturating_duration_since(self.last_frame);
        match self.timeout {
            Some(t) if silence >= t => Some(silence),
            _ => None,
        }
    }

    /// Time since the last frame.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_push_the_deadline() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(Duration::from_secs(3)), t0);
        assert_eq!(l.stale(t0 + Duration::from_millis(2999)), None);
        l.on_frame(t0 + Duration::from_secs(2));
        assert_eq!(l.stale(t0 + Duration::from_secs(4)), None);
        assert_eq!(l.deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            l.stale(t0 + Duration::from_secs(6)),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn no_timeout_never_stale() {
        let t0 = Instant::now();
        let l = Liveness::new(None, t0);
        assert_eq!(l.stale(t0 + Duration::from_secs(3600)), None);
        assert_eq!(l.deadline(), None);
    }
}
