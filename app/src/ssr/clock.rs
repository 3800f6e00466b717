//! Time and identity: the reference date services reason about, the timestamps the
//! database stores, and the ids of new rows.

use crate::domain::period::{self, Compare, Grain, Period, PeriodError};
use crate::dto::PeriodChoice;
use chrono::{DateTime, NaiveDate, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

/// The reference date and the default grain: what "the latest complete period" means for
/// a page, a run or a digest that names no period. The date is fixed with `OPSIGHT_AS_OF`
/// (demos, tests), else today in UTC; the grain is `OPSIGHT_DEFAULT_PERIOD` (`week` unless
/// set: a network with a few hundred lines a month reads months).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub as_of: Option<NaiveDate>,
    pub grain: Grain,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            as_of: None,
            grain: Grain::Week,
        }
    }
}

impl Clock {
    pub fn fixed(as_of: NaiveDate) -> Clock {
        Clock {
            as_of: Some(as_of),
            ..Clock::default()
        }
    }

    /// This clock seen from another day (a schedule's tick in its own time zone).
    pub fn on(self, day: NaiveDate) -> Clock {
        Clock {
            as_of: Some(day),
            ..self
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.as_of.unwrap_or_else(|| Utc::now().date_naive())
    }

    /// The latest complete period of the default grain, compared with the one before.
    pub fn default_view(&self) -> (Period, Compare) {
        (
            Period::latest_complete(self.grain, self.today()),
            Compare::Previous,
        )
    }

    /// A period choice (text from a query or a body) resolved against this clock: the
    /// default grain's latest complete period when none is named; a 400 naming the
    /// parameter when it does not parse.
    pub fn resolve(&self, choice: &PeriodChoice) -> Result<(Period, Compare), PeriodError> {
        period::resolve(
            choice.period.as_deref(),
            choice.compare.as_deref(),
            self.today(),
            self.grain,
        )
    }
}

/// Timestamps are fixed-width RFC 3339 UTC (microseconds), so text order is time order.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// [`timestamp`] of now.
pub fn now() -> String {
    timestamp(Utc::now())
}

/// A stored timestamp read back (`None` when it is not RFC 3339).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A sortable, unique-enough id: a prefix, creation time in microseconds, process id,
/// counter.
pub fn new_id(now: DateTime<Utc>, prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{:x}{:05x}{:04x}",
        now.timestamp_micros(),
        std::process::id() & 0xfffff,
        n & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_time_and_read_back() {
        let a = Utc::now();
        let b = a + chrono::Duration::microseconds(1);
        assert!(timestamp(a) < timestamp(b));
        assert_eq!(
            parse_timestamp(&timestamp(a)).map(timestamp),
            Some(timestamp(a))
        );
        assert_ne!(new_id(a, "x"), new_id(a, "x"));
    }
}
