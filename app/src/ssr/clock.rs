//! Time and identity: the reference date services reason about, the timestamps the
//! database stores, and the ids of new rows.

use chrono::{DateTime, NaiveDate, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

/// The reference date: "today" for the dashboard's latest complete week. Fixed with
/// `OPSIGHT_AS_OF` (demos, tests), else today in UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    pub as_of: Option<NaiveDate>,
}

impl Clock {
    pub fn fixed(as_of: NaiveDate) -> Clock {
        Clock { as_of: Some(as_of) }
    }

    pub fn today(&self) -> NaiveDate {
        self.as_of.unwrap_or_else(|| Utc::now().date_naive())
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
