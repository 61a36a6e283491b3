//! Reconnect backoff: exponential growth with a cap and multiplicative jitter.
//!
//! Attempt `n` (0-based) waits `min(max_delay, initial_delay * factor^n) * U(1-jitter, 1+jitter)`;
//! the count restarts after a connection that lived [`Backoff::LIVED`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

    /// The wait before the next dial once the server asked for `retry_after` (HTTP 429/503):
    /// at least that long, but never past `max_delay`, so a server cannot park the stream.
    pub fn honour(&self, delay: Duration, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::try_from_secs_f64(self.policy.max_delay.clamp(0.0, 86_400.0))
            .unwrap_or(Duration::ZERO);
        retry_after.map_or(delay, |r| delay.max(r.min(cap)))
    }
}

/// Before a stream's first connection, a server asking to wait longer than this raises instead
/// of leaving the caller blocked without a word.
pub const INITIAL_RETRY_AFTER_MAX: Duration = Duration::from_secs(10);

/// What a `Retry-After` header value (RFC 9110 10.2.3) asks for at `now`: delay-seconds or an
/// IMF-fixdate (a date already past means no wait). `None` for anything else, which the
/// caller then ignores; the obsolete RFC 850 and asctime date forms are not read.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Longer than a day is as good as a day: the wait is capped by max_delay anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX).min(86_400),
        ));
    }
    let at = imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now).min(86_400)))
}

/// Seconds since the Unix epoch of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, rest) = s.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let num = |t: &str, len: usize| -> Option<u64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
    };
    let (day, year) = (num(day, 2)?, num(year, 4)?);
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, sec] = hms[..] else { return None };
    let (h, m, sec) = (num(h, 2)?, num(m, 2)?, num(sec, 2)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm, years from March).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
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

    #[test]
    fn retry_after_reads_seconds_and_dates_against_the_given_now() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:57 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:00 GMT", UNIX_EPOCH),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(
                "Tue, 29 Feb 2000 00:00:10 GMT",
                UNIX_EPOCH + Duration::from_secs(951_782_400)
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(86_400))
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_max_delay() {
        let b = Backoff::new(BackoffPolicy {
            max_delay: 5.0,
            ..BackoffPolicy::default()
        });
        let ms = Duration::from_millis;
        assert_eq!(b.honour(ms(100), None), ms(100));
        assert_eq!(b.honour(ms(100), Some(ms(2000))), ms(2000));
        assert_eq!(b.honour(ms(3000), Some(ms(2000))), ms(3000));
        assert_eq!(b.honour(ms(100), Some(ms(60_000))), ms(5000));
    }
}
