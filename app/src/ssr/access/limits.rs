//! Rate limits on everything that calls an agent (refreshes, questions, runs): a token
//! bucket per principal and one for the whole replica. A bucket holds up to its
//! per-minute allowance and refills continuously, so a burst of the full allowance is
//! allowed, then one call every 60/allowance seconds.
//!
//! Limits are per replica (in memory): with N replicas behind a balancer the global
//! allowance is N times the configured one. A refused call costs nothing: neither bucket
//! is charged unless both have room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Agent calls per minute: per principal and for the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub per_user: u32,
    pub global: u32,
}

impl Default for Allowance {
    fn default() -> Self {
        Allowance {
            per_user: 30,
            global: 300,
        }
    }
}

/// A token bucket: holds up to `capacity` tokens and refills `capacity` per `window`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    /// When it was last refilled (last charged or checked).
    pub(super) at: Instant,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Bucket {
    pub(super) fn full(capacity: u32, now: Instant) -> Self {
        Bucket {
            tokens: capacity as f64,
            at: now,
        }
    }

    /// Refills to `now` at `capacity` a minute; returns how long until one token is
    /// available (zero: now).
    fn refill(&mut self, capacity: u32, now: Instant) -> Duration {
        self.refill_over(capacity, MINUTE, now)
    }

    /// Refills to `now` at `capacity` per `window`; returns how long until one token is
    /// available (zero: now).
    pub(super) fn refill_over(
        &mut self,
        capacity: u32,
        window: Duration,
        now: Instant,
    ) -> Duration {
        let rate = capacity as f64 / window.as_secs_f64().max(1e-3);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity as f64);
        self.at = now;
        if self.tokens >= 1.0 || rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }
}

/// Which limit refused a call, and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub global: bool,
    pub retry_after: Duration,
    pub allowance: u32,
}

impl Refused {
    /// The message users see with the 429.
    pub fn message(&self) -> String {
        let secs = self.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        if self.global {
            format!(
                "Opsight is at its limit of {} agent calls a minute for everyone; try again in {secs} s",
                self.allowance
            )
        } else {
            format!(
                "you have reached your limit of {} agent calls a minute; try again in {secs} s",
                self.allowance
            )
        }
    }
}

#[derive(Debug)]
pub struct RateLimits {
    pub allowance: Allowance,
    users: Mutex<HashMap<String, Bucket>>,
    global: Mutex<Option<Bucket>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(Allowance::default())
    }
}

/// Buckets kept before full (idle) ones are dropped.
const MAX_TRACKED: usize = 10_000;

impl RateLimits {
    pub fn new(allowance: Allowance) -> Self {
        RateLimits {
            allowance,
            users: Mutex::new(HashMap::new()),
            global: Mutex::new(None),
        }
    }

    /// Charges one agent call to `who` and to the replica, or says which limit refuses it.
    pub fn charge(&self, who: &str, now: Instant) -> Result<(), Refused> {
        let a = self.allowance;
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_TRACKED && !users.contains_key(who) {
            users.retain(|_, b| {
                let mut b = *b;
                b.refill(a.per_user, now);
                b.tokens < a.per_user as f64
            });
        }
        let user = users
            .entry(who.to_string())
            .or_insert_with(|| Bucket::full(a.per_user, now));
        let wait = user.refill(a.per_user, now);
        if !wait.is_zero() {
            return Err(Refused {
                global: false,
                retry_after: wait,
                allowance: a.per_user,
            });
        }
        let all = global.get_or_insert_with(|| Bucket::full(a.global, now));
        let wait = all.refill(a.global, now);
        if !wait.is_zero() {
            return Err(Refused {
                global: true,
                retry_after: wait,
                allowance: a.global,
            });
        }
        user.tokens -= 1.0;
        all.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let limits = RateLimits::new(Allowance {
            per_user: 6,
            global: 100,
        });
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(limits.charge("alice", t0).is_ok());
        }
        let refused = limits.charge("alice", t0).unwrap_err();
        assert!(!refused.global);
        assert_eq!(refused.retry_after, Duration::from_secs(10));
        assert!(
            refused.message().contains("limit of 6"),
            "{}",
            refused.message()
        );
        // Another user is not affected.
        assert!(limits.charge("bob", t0).is_ok());
        // 10 s later (6 a minute) one more call is allowed, and only one.
        let t1 = t0 + Duration::from_secs(10);
        assert!(limits.charge("alice", t1).is_ok());
        assert!(limits.charge("alice", t1).is_err());
    }

    #[test]
    fn the_global_limit_holds_across_users_and_refusals_cost_nothing() {
        let limits = RateLimits::new(Allowance {
            per_user: 2,
            global: 3,
        });
        let t0 = Instant::now();
        assert!(limits.charge("a", t0).is_ok());
        assert!(limits.charge("a", t0).is_ok());
        assert!(limits.charge("a", t0).is_err(), "a's own limit");
        assert!(limits.charge("b", t0).is_ok());
        let refused = limits.charge("c", t0).unwrap_err();
        assert!(refused.global, "the replica's limit");
        assert!(refused.message().contains("for everyone"));
        // c was not charged: once the global bucket refills, c still has its two calls.
        let later = t0 + Duration::from_secs(60);
        assert!(limits.charge("c", later).is_ok());
        assert!(limits.charge("c", later).is_ok());
    }
}
