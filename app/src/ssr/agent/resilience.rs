//! Retries and the circuit breaker. Both take the time from the caller so they test
//! without sleeping.
//!
//! Retries happen only where a repeat cannot double work the agent already did: the
//! connection failed, the agent asked us to come back (429, with `Retry-After`), or a proxy
//! in front of it gave up (502/503/504). A timeout on our side is never retried: the agent
//! may still be computing (MLflow keeps running after its own 504 too, but the proxy case
//! is common enough that the issue asks for it).

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time, ±25% jitter.
    pub base: Duration,
    /// No single wait is longer than this (a larger `Retry-After` is cut to it).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// What a failed attempt was, as far as retrying goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Failure {
    Connect,
    /// HTTP status and the `Retry-After` seconds when given.
    Status(u16, Option<u64>),
    Other,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (1-based `attempt` just failed), or `None` when
    /// this failure must not be retried or the attempts are used up.
    pub fn delay(&self, attempt: u32, failure: Failure, jitter_seed: u64) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        let retry_after = match failure {
            Failure::Connect => None,
            Failure::Status(429, after) => after.map(Duration::from_secs),
            Failure::Status(502..=504, _) => None,
            _ => return None,
        };
        let exp = self.base.saturating_mul(1 << (attempt - 1).min(16));
        // ±25% jitter from a cheap per-call seed, so replicas do not retry in lockstep.
        let spread = exp.as_millis() as u64 / 2;
        let jitter = if spread == 0 {
            0
        } else {
            splitmix(jitter_seed) % (spread + 1)
        };
        let backoff =
            exp.saturating_sub(Duration::from_millis(spread / 2)) + Duration::from_millis(jitter);
        Some(retry_after.unwrap_or(backoff).min(self.max_delay))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub use crate::domain::status::BreakerState;

/// A per-agent circuit breaker: `threshold` consecutive failures open it for `cool_down`;
/// then one trial call decides.
#[derive(Debug)]
pub struct Breaker {
    pub threshold: u32,
    pub cool_down: Duration,
    failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold,
            cool_down,
            failures: 0,
            open_until: None,
            trial_in_flight: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a call go out now? `Err(wait)` when the breaker is open (or a trial is running).
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(self.open_until.map_or(Duration::ZERO, |t| t - now)),
            BreakerState::HalfOpen if self.trial_in_flight => Err(Duration::from_secs(1)),
            BreakerState::HalfOpen => {
                self.trial_in_flight = true;
                Ok(())
            }
        }
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial_in_flight = false;
    }

    pub fn failure(&mut self, now: Instant) {
        self.failures += 1;
        let trial_failed = self.trial_in_flight;
        self.trial_in_flight = false;
        if trial_failed || self.failures >= self.threshold {
            self.open_until = Some(now + self.cool_down);
        }
    }

    /// A call that was admitted but ended without a verdict on the agent (cancelled,
    /// rejected as our fault): let the next call be the trial.
    pub fn release(&mut self) {
        self.trial_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_safe_failures_with_growing_jittered_delays() {
        let p = RetryPolicy::default();
        let d1 = p.delay(1, Failure::Connect, 1).unwrap();
        let d2 = p.delay(2, Failure::Status(503, None), 1).unwrap();
        assert!((150..=250).contains(&d1.as_millis()), "{d1:?}");
        assert!((300..=500).contains(&d2.as_millis()), "{d2:?}");
        assert_eq!(p.delay(3, Failure::Connect, 1), None, "attempts used up");
        assert_eq!(p.delay(1, Failure::Status(500, None), 1), None);
        assert_eq!(p.delay(1, Failure::Status(400, None), 1), None);
        assert_eq!(p.delay(1, Failure::Other, 1), None);
        assert_eq!(
            p.delay(1, Failure::Status(429, Some(2)), 1),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay(1, Failure::Status(429, Some(3600)), 1),
            Some(p.max_delay),
            "a huge Retry-After is capped"
        );
        let spread: std::collections::HashSet<u128> = (0..20)
            .map(|s| p.delay(1, Failure::Connect, s).unwrap().as_millis())
            .collect();
        assert!(spread.len() > 5, "jitter varies: {spread:?}");
    }

    #[test]
    fn breaker_opens_fails_fast_and_recovers_through_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert!(b.admit(t0).is_ok());
            b.failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(b.admit(t0 + Duration::from_secs(10)).is_err());
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.admit(later).is_ok(), "one trial");
        assert!(b.admit(later).is_err(), "only one");
        b.failure(later);
        assert_eq!(b.state(later), BreakerState::Open, "a failed trial reopens");
        let again = later + Duration::from_secs(31);
        assert!(b.admit(again).is_ok());
        b.success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.admit(again).is_ok());
    }
}
