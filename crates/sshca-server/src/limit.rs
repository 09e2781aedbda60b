//! Rate limits: a token bucket per key (a qualified identity, or a client
//! address before authentication), refilled at the configured rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets by identity.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `count` requests per `period_secs`, with bursts up to `count`.
    pub fn new(count: u32, period_secs: u64) -> Self {
        Self {
            burst: f64::from(count),
            per_sec: f64::from(count) / period_secs.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has a token left, without taking it; `Err(seconds to
    /// wait)` when empty.
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        let buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some((tokens, at)) = buckets.get(key) else {
            return Ok(());
        };
        let tokens = (tokens + Instant::now().duration_since(*at).as_secs_f64() * self.per_sec)
            .min(self.burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / self.per_sec).ceil() as u64)
        }
    }

    /// Takes one token for `identity`; `Err(seconds to wait)` when empty.
    pub fn check(&self, identity: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(identity) {
            // Drop the buckets that are full again (idle identities).
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets
            .entry(identity.to_owned())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_per_identity() {
        let l = RateLimiter::new(3, 60);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(l.check("b").is_ok());
        assert!(l.peek("a").is_err());
        assert!(l.peek("b").is_ok() && l.peek("c").is_ok());
        // Peeking takes nothing.
        for _ in 0..10 {
            assert!(l.peek("b").is_ok());
        }
        assert!(l.check("b").is_ok() && l.check("b").is_ok());
        assert!(l.peek("b").is_err());
    }
}
