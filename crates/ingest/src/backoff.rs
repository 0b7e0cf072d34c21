//! Reconnect delays: exponential with full jitter, so many clients that lost
//! the same relay do not reconnect in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// A uniformly random delay in `[0, min(cap, base * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(random_unit())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number in [0, 1): a randomly keyed hash of the clock and a counter,
/// which is randomness enough for jitter without another dependency.
fn random_unit() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_ceiling_and_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..10u32 {
            let ceiling =
                Duration::from_millis(100 * (1u64 << attempt)).min(Duration::from_secs(1));
            assert!(b.next_delay() <= ceiling);
        }
        let samples: Vec<u64> = (0..8).map(|_| (random_unit() * 1e9) as u64).collect();
        let mut distinct = samples.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), samples.len(), "{samples:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
