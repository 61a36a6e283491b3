//! Reconnect backoff: exponential growth with a cap and multiplicative jitter.
//!
//! Attempt `n` (0-based) waits `min(max_delay, initial_delay * factor^n) * U(1-jitter, 1+jitter)`;
//! the count restarts after a connection that lived [`Backoff::LIVED`].

use std::time::Duration;

/// The user's reconnect policy, as numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub initial_delay: f64,
    pub max_delay: f64,
    pub factor: f64,
    pub jitter: f64,
    pub max_attempts: Option<u32>,
    /// Dials (the first included) tried before the stream's first connection is made.
    pub initial_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial_delay: 0.1,
            max_delay: 30.0,
            factor: 2.0,
            jitter: 0.2,
            max_attempts: None,
            initial_attempts: 3,
        }
    }
}

/// Backoff state for one stream.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    /// A connection that stayed up this long resets the attempt count.
    pub const LIVED: Duration = Duration::from_secs(10);

    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// Retries used since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next retry, given a uniform sample `u` in `[0, 1)`; `None` once
    /// `max_attempts` retries have been made.
    pub fn next_delay(&mut self, u: f64) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts {
            if self.attempt >= max {
                return None;
            }
        }
        Some(self.delay(u))
    }

    /// The wait before the next retry whatever `max_attempts` says (before the first
    /// connection is made, `initial_attempts` bounds the dials instead).
    pub fn delay(&mut self, u: f64) -> Duration {
        let p = &self.policy;
        let exp = i32::try_from(self.attempt).unwrap_or(i32::MAX);
        let base = (p.initial_delay * p.factor.powi(exp)).min(p.max_delay);
        let scale = 1.0 - p.jitter + 2.0 * p.jitter * u.clamp(0.0, 1.0);
        self.attempt = self.attempt.saturating_add(1);
        // Capped at a day: a policy's numbers must never overflow a timer.
        let secs = (base * scale).clamp(0.0, 86_400.0);
        Duration::from_secs_f64(if secs.is_nan() { 0.0 } else { secs })
    }

    /// Called when a connection ends after living `lived`.
    pub fn on_connection_ended(&mut self, lived: Duration) {
        if lived >= Self::LIVED {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.unwrap().as_secs_f64()
    }

    #[test]
    fn grows_then_caps() {
        let mut b = Backoff::new(BackoffPolicy {
            jitter: 0.0,
            max_delay: 1.0,
            ..BackoffPolicy::default()
        });
        let got: Vec<f64> = (0..6).map(|_| secs(b.next_delay(0.5))).collect();
        let want = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }

    #[test]
    fn first_retry_is_never_zero_and_jitter_is_bounded() {
        let mut lo = Backoff::new(BackoffPolicy::default());
        let mut hi = Backoff::new(BackoffPolicy::default());
        for n in 0..12 {
            let base = (0.1 * 2f64.powi(n)).min(30.0);
            let a = secs(lo.next_delay(0.0));
            let b = secs(hi.next_delay(1.0));
            assert!((a - base * 0.8).abs() < 1e-9 && (b - base * 1.2).abs() < 1e-9);
            assert!(a > 0.0);
        }
    }

    #[test]
    fn absurd_policies_stay_finite() {
        let mut b = Backoff::new(BackoffPolicy {
            initial_delay: 1e300,
            max_delay: f64::INFINITY,
            factor: 1e300,
            ..BackoffPolicy::default()
        });
        for _ in 0..5 {
            assert!(b.next_delay(0.5).unwrap() <= Duration::from_secs(86_400));
        }
    }

    #[test]
    fn resets_after_a_connection_that_lived_and_stops_at_max_attempts() {
        let mut b = Backoff::new(BackoffPolicy {
            jitter: 0.0,
            max_attempts: Some(3),
            ..BackoffPolicy::default()
        });
        b.next_delay(0.5);
        b.next_delay(0.5);
        b.on_connection_ended(Duration::from_secs(1));
        assert_eq!(b.attempt(), 2);
        b.on_connection_ended(Backoff::LIVED);
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay(0.5).is_some());
        assert!(b.next_delay(0.5).is_some());
        assert!(b.next_delay(0.5).is_some());
        assert_eq!(b.next_delay(0.5), None);
    }
}
