//! Per-agent rate limiting: a token bucket per sender, refilled continuously.

use std::collections::HashMap;
use std::time::Instant;

/// Token buckets keyed by agent name.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` messages per second on average, bursts of up to `burst`.
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `agent`; false when it is over its rate.
    pub fn allow(&mut self, agent: &str) -> bool {
        let now = Instant::now();
        let (tokens, last) = self
            .buckets
            .entry(agent.to_owned())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(0.0, 3.0);
        assert!(limiter.allow("a") && limiter.allow("a") && limiter.allow("a"));
        assert!(
            !limiter.allow("a"),
            "the fourth in a burst of three is refused"
        );
        assert!(limiter.allow("b"), "buckets are per agent");
    }
}
