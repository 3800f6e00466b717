//! Reporting periods. A line belongs to the period of its `due_date`; periods are ISO
//! weeks (Monday to Sunday). The dashboard shows the latest *complete* week, relative to a
//! reference date (`as_of`: today, or `OPSIGHT_AS_OF` when replaying history).

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

/// One ISO week, identified by its Monday.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct Week {
    pub start: NaiveDate,
}

impl Week {
    /// The week containing `day`.
    pub fn containing(day: NaiveDate) -> Week {
        let offset = i64::from(day.weekday().num_days_from_monday());
        Week {
            start: day - Duration::days(offset),
        }
    }

    /// The latest week that has fully ended before `as_of` (the day `as_of` itself is not
    /// complete, so a Sunday `as_of` still points at the week before).
    pub fn latest_complete(as_of: NaiveDate) -> Week {
        Week::containing(as_of).previous()
    }

    /// Sunday, the last day of the week (inclusive).
    pub fn end(self) -> NaiveDate {
        self.start + Duration::days(6)
    }

    pub fn previous(self) -> Week {
        Week {
            start: self.start - Duration::days(7),
        }
    }

    pub fn next(self) -> Week {
        Week {
            start: self.start + Duration::days(7),
        }
    }

    /// `n` weeks ending with this one, oldest first.
    pub fn trailing(self, n: usize) -> Vec<Week> {
        let mut weeks: Vec<Week> = std::iter::successors(Some(self), |w| Some(w.previous()))
            .take(n)
            .collect();
        weeks.reverse();
        weeks
    }

    /// ISO label such as `2026-W46`.
    pub fn label(self) -> String {
        let iso = self.start.iso_week();
        format!("{}-W{:02}", iso.year(), iso.week())
    }

    pub fn contains(self, day: NaiveDate) -> bool {
        day >= self.start && day <= self.end()
    }
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// Formats a date as `YYYY-MM-DD`, the storage format (it sorts as text).
pub fn fmt_date(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn latest_complete_week_is_the_week_before_the_reference_week() {
        // 2026-11-21 is a Saturday; its week starts Monday 2026-11-16.
        assert_eq!(Week::containing(d("2026-11-21")).start, d("2026-11-16"));
        assert_eq!(
            Week::latest_complete(d("2026-11-21")).start,
            d("2026-11-09")
        );
        // A Monday reference: the week just ended is complete.
        assert_eq!(
            Week::latest_complete(d("2026-11-23")).start,
            d("2026-11-16")
        );
        // A Sunday reference: that day is not over, so its week is not complete.
        assert_eq!(
            Week::latest_complete(d("2026-11-22")).start,
            d("2026-11-09")
        );
    }

    #[test]
    fn weeks_have_iso_labels_and_bounds() {
        let w = Week::containing(d("2026-01-01"));
        assert_eq!(w.start, d("2025-12-29"));
        assert_eq!(w.label(), "2026-W01");
        assert_eq!(w.end(), d("2026-01-04"));
        assert!(w.contains(d("2026-01-04")) && !w.contains(d("2026-01-05")));
        let t = w.trailing(3);
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], w);
        assert_eq!(t[0].next(), t[1]);
    }
}
