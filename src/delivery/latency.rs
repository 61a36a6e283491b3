//! Socket-read-to-consumer latency, recorded by the consumer as it takes each batch.

/// Socket-read-to-consumer latency in microseconds, log-linear buckets (16 per power of two),
/// so recording costs a few instructions per message and quantiles stay within ~5%.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max_us: f64,
}

const SUB: u32 = 16;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; (64 * SUB) as usize],
            total: 0,
            max_us: 0.0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(ns: u64) -> usize {
        if ns < u64::from(SUB) {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros();
        let sub = (ns >> (exp - 4)) & u64::from(SUB - 1);
        ((exp - 3) * SUB) as usize + sub as usize
    }

    fn lower_bound_ns(bucket: usize) -> f64 {
        let b = bucket as u32;
        if b < SUB {
            return f64::from(b);
        }
        let exp = b / SUB + 3;
        let sub = u64::from(b % SUB);
        ((u64::from(SUB) + sub) << (exp - 4)) as f64
    }

    /// Records one latency in nanoseconds (negative clock steps count as zero).
    pub fn record_ns(&mut self, ns: i64) {
        let ns = ns.max(0) as u64;
        let last = self.counts.len() - 1;
        self.counts[Self::bucket(ns).min(last)] += 1;
        self.total += 1;
        let us = ns as f64 / 1000.0;
        if us > self.max_us {
            self.max_us = us;
        }
    }

    /// The `q` quantile (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (Self::lower_bound_ns(i) / 1000.0).min(self.max_us);
            }
        }
        self.max_us
    }

    pub fn max_us(&self) -> f64 {
        self.max_us
    }

    pub fn count(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_bucket_precision() {
        let mut h = LatencyHistogram::default();
        for us in 1..=1000 {
            h.record_ns(us * 1000);
        }
        let p50 = h.quantile_us(0.5);
        let p99 = h.quantile_us(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
        assert_eq!(h.max_us(), 1000.0);
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn tiny_and_empty() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_us(0.5), 0.0);
        h.record_ns(-5);
        h.record_ns(3);
        assert!(h.quantile_us(1.0) <= 0.003 + 1e-12);
    }
}
