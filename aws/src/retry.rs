//! Exponential backoff with full jitter, bounded.
//!
//! Full jitter (a uniform delay in `0..=min(cap, base·2^n)`) spreads the retries of many
//! concurrent callers that failed together (a throttled shard, a reset connection pool), which
//! plain exponential backoff would send back in lockstep.

use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Ceiling of the first delay.
    pub base: Duration,
    /// Ceiling of every delay.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Eight attempts over at most ~13 s: a throttled shard recovers within a second or two,
    /// and a Lambda invocation has minutes, not hours.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random delay after failed attempt `attempt`: uniform in `0..=ceiling(attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(fastrand::u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_delays_stay_below() {
        let p = RetryPolicy {
            max_attempts: 40,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        let ceilings: Vec<_> = (1..=8).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.ceiling(40), p.cap, "no overflow on large attempt counts");
        for a in 1..=40 {
            assert!(p.delay(a) <= p.ceiling(a));
        }
        // Jitter: delays are not all equal.
        let ds: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3)).collect();
        assert!(ds.len() > 1);
    }
}
