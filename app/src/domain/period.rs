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

/// The grain of a reporting period.
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
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Week,
    Month,
    Quarter,
    Year,
    /// Any run of whole days (`2026-10-01..2026-10-31`).
    Range,
}

impl Grain {
    pub fn parse(text: &str) -> Option<Grain> {
        match text.trim() {
            "week" => Some(Grain::Week),
            "month" => Some(Grain::Month),
            "quarter" => Some(Grain::Quarter),
            "year" => Some(Grain::Year),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
            Grain::Range => "range",
        }
    }

    /// Points in a trend at this grain: 12 weeks, 12 months, 8 quarters, 10 years (in
    /// practice every year with data), 12 ranges of the same length.
    pub fn trend_len(self) -> usize {
        match self {
            Grain::Week | Grain::Month | Grain::Range => 12,
            Grain::Quarter => 8,
            Grain::Year => 10,
        }
    }

    /// The word for "this period's predecessor" in a sentence ("week on week").
    pub fn noun(self) -> &'static str {
        match self {
            Grain::Range => "period",
            g => g.key(),
        }
    }
}

/// What a period is compared with.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The period before, of the same length (the week before, the month before...).
    #[default]
    Previous,
    /// The same period a year earlier (52 weeks earlier for a week, so weekdays line up).
    YearAgo,
}

impl Compare {
    pub fn parse(text: &str) -> Result<Compare, PeriodError> {
        match text.trim() {
            "" | "previous" => Ok(Compare::Previous),
            "year_ago" => Ok(Compare::YearAgo),
            other => Err(PeriodError(format!(
                "compare '{other}' is not one of previous, year_ago"
            ))),
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Compare::Previous => "previous",
            Compare::YearAgo => "year_ago",
        }
    }
}

/// Why a period (or a comparison) was refused: a sentence naming the bad part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeriodError(pub String);

/// Longest accepted range, in days (ten years): bounds every read a period implies.
pub const MAX_RANGE_DAYS: i64 = 3660;

/// A reporting period: whole days from `start` to `end` (inclusive) at a grain. A week is
/// an ISO week (Monday to Sunday), a quarter three calendar months.
///
/// Written as text everywhere (query strings, JSON, card keys): `2026-W46`, `2026-11`,
/// `2026-Q4`, `2026`, `2026-10-01..2026-10-31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub grain: Grain,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    pub fn week(w: Week) -> Period {
        Period {
            grain: Grain::Week,
            start: w.start,
            end: w.end(),
        }
    }

    /// The month starting on the first of `year-month` (`month` 1..=12).
    fn month(year: i32, month: u32) -> Option<Period> {
        let start = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        Some(Period {
            grain: Grain::Month,
            start,
            end: next - Duration::days(1),
        })
    }

    fn quarter(year: i32, q: u32) -> Option<Period> {
        let first = Period::month(year, 3 * q - 2)?;
        let last = Period::month(year, 3 * q)?;
        Some(Period {
            grain: Grain::Quarter,
            start: first.start,
            end: last.end,
        })
    }

    fn year(year: i32) -> Option<Period> {
        Some(Period {
            grain: Grain::Year,
            start: NaiveDate::from_ymd_opt(year, 1, 1)?,
            end: NaiveDate::from_ymd_opt(year, 12, 31)?,
        })
    }

    /// The period of `grain` that contains `day` (a range grain gives that one day).
    pub fn containing(grain: Grain, day: NaiveDate) -> Period {
        let found = match grain {
            Grain::Week => Some(Period::week(Week::containing(day))),
            Grain::Month => Period::month(day.year(), day.month()),
            Grain::Quarter => Period::quarter(day.year(), (day.month() - 1) / 3 + 1),
            Grain::Year => Period::year(day.year()),
            Grain::Range => None,
        };
        found.unwrap_or(Period {
            grain: Grain::Range,
            start: day,
            end: day,
        })
    }

    /// The latest period of `grain` that has fully ended before `as_of` (the day `as_of`
    /// itself is not complete). The dashboard's default is the latest complete week.
    pub fn latest_complete(grain: Grain, as_of: NaiveDate) -> Period {
        let yesterday = as_of - Duration::days(1);
        let p = Period::containing(grain, yesterday);
        if p.end <= yesterday {
            p
        } else {
            p.previous()
        }
    }

    /// Parses `2026-W46`, `2026-11`, `2026-Q4`, `2026` or `2026-10-01..2026-10-31`.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let t = text.trim();
        let bad = |why: &str| PeriodError(format!("period '{t}' {why}"));
        if t.is_empty() {
            return Err(bad(
                "is empty: use 2026-W46, 2026-11, 2026-Q4, 2026 or 2026-10-01..2026-10-31",
            ));
        }
        if let Some((a, b)) = t.split_once("..") {
            let start =
                parse_date(a).ok_or_else(|| bad("does not start with a date (YYYY-MM-DD)"))?;
            let end = parse_date(b).ok_or_else(|| bad("does not end with a date (YYYY-MM-DD)"))?;
            if end < start {
                return Err(bad("ends before it starts"));
            }
            if (end - start).num_days() + 1 > MAX_RANGE_DAYS {
                return Err(bad(&format!("is longer than {MAX_RANGE_DAYS} days")));
            }
            return Ok(Period {
                grain: Grain::Range,
                start,
                end,
            });
        }
        let year = |y: &str| -> Result<i32, PeriodError> {
            match y.parse::<i32>() {
                Ok(n) if (1900..=9998).contains(&n) && y.len() == 4 => Ok(n),
                _ => Err(bad("does not start with a four-digit year")),
            }
        };
        if let Some((y, w)) = t.split_once("-W") {
            let y = year(y)?;
            let n: u32 = w.parse().map_err(|_| bad("has no week number after -W"))?;
            let monday = NaiveDate::from_isoywd_opt(y, n, chrono::Weekday::Mon)
                .ok_or_else(|| bad(&format!("names week {n}, which {y} does not have")))?;
            return Ok(Period::week(Week { start: monday }));
        }
        if let Some((y, q)) = t.split_once("-Q") {
            let y = year(y)?;
            return match q.parse::<u32>() {
                Ok(n @ 1..=4) => Period::quarter(y, n).ok_or_else(|| bad("is out of range")),
                _ => Err(bad("has a quarter other than Q1..Q4")),
            };
        }
        if let Some((y, m)) = t.split_once('-') {
            let y = year(y)?;
            return match m.parse::<u32>() {
                Ok(n @ 1..=12) if m.len() == 2 => {
                    Period::month(y, n).ok_or_else(|| bad("is out of range"))
                }
                _ => Err(bad("has a month other than 01..12")),
            };
        }
        Period::year(year(t)?).ok_or_else(|| bad("is out of range"))
    }

    /// Its text form, also its key: `2026-W46`, `2026-11`, `2026-Q4`, `2026`,
    /// `2026-10-01..2026-10-31`.
    pub fn label(&self) -> String {
        match self.grain {
            Grain::Week => Week { start: self.start }.label(),
            Grain::Month => self.start.format("%Y-%m").to_string(),
            Grain::Quarter => format!(
                "{}-Q{}",
                self.start.year(),
                (self.start.month() - 1) / 3 + 1
            ),
            Grain::Year => self.start.year().to_string(),
            Grain::Range => format!("{}..{}", fmt_date(self.start), fmt_date(self.end)),
        }
    }

    /// Number of days, at least 1.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        day >= self.start && day <= self.end
    }

    /// Whether every day of it is before `as_of`.
    pub fn is_complete(&self, as_of: NaiveDate) -> bool {
        self.end < as_of
    }

    /// The period before, of the same grain (a range: as many days, just before).
    pub fn previous(&self) -> Period {
        let day_before = self.start - Duration::days(1);
        match self.grain {
            Grain::Range => Period {
                grain: Grain::Range,
                start: self.start - Duration::days(self.days()),
                end: day_before,
            },
            g => Period::containing(g, day_before),
        }
    }

    /// The same period a year earlier: 52 weeks before for a week (so weekdays line up),
    /// the same month, quarter or year before, a range shifted by a calendar year (29
    /// February becomes the 28th).
    pub fn year_ago(&self) -> Period {
        let shift = |d: NaiveDate| {
            d.with_year(d.year() - 1)
                .or_else(|| NaiveDate::from_ymd_opt(d.year() - 1, d.month(), 28))
                .unwrap_or(d)
        };
        match self.grain {
            Grain::Week => Period::week(Week {
                start: self.start - Duration::weeks(52),
            }),
            Grain::Range => Period {
                grain: Grain::Range,
                start: shift(self.start),
                end: shift(self.end),
            },
            g => Period::containing(g, shift(self.start)),
        }
    }

    /// The period it is compared with.
    pub fn compared(&self, compare: Compare) -> Period {
        match compare {
            Compare::Previous => self.previous(),
            Compare::YearAgo => self.year_ago(),
        }
    }

    /// `n` periods ending with this one, oldest first (the trend).
    pub fn trailing(&self, n: usize) -> Vec<Period> {
        let mut out: Vec<Period> = std::iter::successors(Some(*self), |p| Some(p.previous()))
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// The trend at this grain (see [`Grain::trend_len`]).
    pub fn trend(&self) -> Vec<Period> {
        self.trailing(self.grain.trend_len())
    }

    /// The ISO week, when it is one.
    pub fn as_week(&self) -> Option<Week> {
        (self.grain == Grain::Week).then_some(Week { start: self.start })
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Period {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Period".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A reporting period: ISO week 2026-W46, month 2026-11, quarter 2026-Q4, year 2026, or a range 2026-10-01..2026-10-31.",
            "examples": ["2026-W46", "2026-11", "2026-Q4", "2026", "2026-10-01..2026-10-31"]
        })
    }
}

/// How a card looks at its KPI: the grain of its period and what it compares with. Cards
/// of different lenses (a weekly and a monthly one) live side by side, each with its own
/// history and staleness; within a lens the period moves on as time does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lens {
    pub grain: Grain,
    pub compare: Compare,
}

impl Lens {
    /// The default: the latest complete week against the week before.
    pub const WEEKLY: Lens = Lens {
        grain: Grain::Week,
        compare: Compare::Previous,
    };

    pub fn of(period: &Period, compare: Compare) -> Lens {
        Lens {
            grain: period.grain,
            compare,
        }
    }

    /// Stored and sent as `week`, `month`, `week/year_ago`, `range/year_ago`...
    pub fn key(&self) -> String {
        match self.compare {
            Compare::Previous => self.grain.key().to_string(),
            c => format!("{}/{}", self.grain.key(), c.key()),
        }
    }

    pub fn parse(key: &str) -> Option<Lens> {
        let (grain, compare) = key.split_once('/').unwrap_or((key, "previous"));
        let grain = match grain {
            "range" => Grain::Range,
            g => Grain::parse(g)?,
        };
        Some(Lens {
            grain,
            compare: Compare::parse(compare).ok()?,
        })
    }
}

/// Resolves what a page, a card or a run is about: `period` (a period such as `2026-11`,
/// or a grain word such as `month` for its latest complete period; absent or empty for
/// the latest complete week) and `compare` (`previous` by default, or `year_ago`). The
/// error names the parameter, so it can be shown as is.
pub fn resolve(
    period: Option<&str>,
    compare: Option<&str>,
    as_of: NaiveDate,
    default: Grain,
) -> Result<(Period, Compare), PeriodError> {
    let period = match period.map(str::trim).filter(|p| !p.is_empty()) {
        None => Period::latest_complete(default, as_of),
        Some(text) => match Grain::parse(text) {
            Some(grain) => Period::latest_complete(grain, as_of),
            None => Period::parse(text).map_err(|e| PeriodError(format!("period: {e}")))?,
        },
    };
    let compare = Compare::parse(compare.unwrap_or_default())
        .map_err(|e| PeriodError(format!("compare: {e}")))?;
    Ok((period, compare))
}

/// Years Opsight accepts anywhere (dates and periods): keeps every date written as ten
/// characters (so text order is date order) and date arithmetic (ten years of trend back,
/// a window forward) far from chrono's limits.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=9998;

/// Parses a `YYYY-MM-DD` date: exactly that shape (`2026-1-5`, `26-11-01` and `+10000-01-01`
/// are refused), a year in [`YEARS`].
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim().as_bytes();
    if t.len() != 10 || t[4] != b'-' || t[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &t[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = i32::try_from(num(0..4)?)
        .ok()
        .filter(|y| YEARS.contains(y))?;
    NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?)
}

/// Formats a date as `YYYY-MM-DD`, the storage format (it sorts as text).
pub fn fmt_date(day: NaiveDate) -> String {
    // Digits by hand, not `format!`: this runs several times per imported line, and the
    // formatting machinery was a tenth of an import's instructions in a profile.
    let (year, month, dom) = (day.year(), day.month(), day.day());
    if !(0..=9999).contains(&year) {
        return format!("{year:04}-{month:02}-{dom:02}");
    }
    let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
    let y = year as u32;
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        '-',
        digit(month / 10),
        digit(month),
        '-',
        digit(dom / 10),
        digit(dom),
    ]
    .iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn dates_are_written_as_iso_days_whatever_the_year() {
        for (y, m, dd) in [
            (2026, 11, 21),
            (1, 1, 1),
            (999, 12, 31),
            (1900, 2, 28),
            (9999, 12, 31),
            (0, 6, 9),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, dd).unwrap();
            assert_eq!(fmt_date(day), day.format("%Y-%m-%d").to_string(), "{day:?}");
        }
        assert_eq!(fmt_date(d("2026-01-05")), "2026-01-05");
        // Outside four digits (never imported: dates are validated as YYYY-MM-DD).
        let far = NaiveDate::from_ymd_opt(10000, 1, 1).unwrap();
        assert_eq!(fmt_date(far), "10000-01-01");
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

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    #[test]
    fn periods_parse_label_and_bound_every_grain() {
        let w = p("2026-W46");
        assert_eq!(
            (w.grain, w.start, w.end),
            (Grain::Week, d("2026-11-09"), d("2026-11-15"))
        );
        let m = p("2026-02");
        assert_eq!(
            (m.start, m.end, m.days()),
            (d("2026-02-01"), d("2026-02-28"), 28)
        );
        let q = p("2026-Q4");
        assert_eq!((q.start, q.end), (d("2026-10-01"), d("2026-12-31")));
        let y = p("2024");
        assert_eq!(
            (y.start, y.end, y.days()),
            (d("2024-01-01"), d("2024-12-31"), 366)
        );
        let r = p("2026-10-01..2026-10-31");
        assert_eq!((r.grain, r.days()), (Grain::Range, 31));
        for text in [
            "2026-W46",
            "2026-02",
            "2026-Q4",
            "2024",
            "2026-10-01..2026-10-31",
            "2020-W53",
        ] {
            assert_eq!(p(text).label(), text);
            let json = serde_json::to_string(&p(text)).unwrap();
            assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), p(text));
        }
    }

    #[test]
    fn bad_periods_say_what_is_wrong() {
        let err = |s: &str| Period::parse(s).unwrap_err().to_string();
        assert!(
            err("2026-W54").contains("week 54, which 2026 does not have"),
            "{}",
            err("2026-W54")
        );
        assert!(err("2025-W53").contains("2025 does not have"));
        assert!(Period::parse("2026-W53").is_ok(), "2026 has 53 ISO weeks");
        assert!(err("2026-13").contains("month other than 01..12"));
        assert!(err("2026-Q5").contains("Q1..Q4"));
        assert!(err("").contains("is empty"));
        assert!(err("2026-10-31..2026-10-01").contains("ends before it starts"));
        assert!(err("2026-10-01..").contains("does not end with a date"));
        assert!(err("26-11").contains("four-digit year"));
        assert!(err("2000-01-01..2026-01-01").contains("longer than"));
        assert!(err("next week").contains("four-digit year"));
        // Extreme or loose dates in a range are refused, never a panic further on.
        assert!(err("-262143-01-01..-262143-01-01").contains("does not start with a date"));
        assert!(err("1899-12-31..1900-01-05").contains("does not start with a date"));
        for text in [
            "1900-01-01..1900-01-07",
            "9998-12-25..9998-12-31",
            "1900",
            "9998-Q4",
        ] {
            let p = p(text);
            let _ = (p.trend(), p.year_ago().trend(), p.previous().previous());
        }
        assert_eq!(parse_date("2026-1-05"), None);
        assert_eq!(parse_date("26-11-01"), None);
        assert_eq!(parse_date("+10000-01-01"), None);
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date(" 2026-02-28 "), Some(d("2026-02-28")));
    }

    #[test]
    fn previous_and_year_ago_keep_the_grain() {
        assert_eq!(p("2026-W01").previous().label(), "2025-W52");
        assert_eq!(p("2026-03").previous().label(), "2026-02");
        assert_eq!(p("2026-01").previous().label(), "2025-12");
        assert_eq!(p("2026-Q1").previous().label(), "2025-Q4");
        assert_eq!(p("2026").previous().label(), "2025");
        assert_eq!(
            p("2026-10-01..2026-10-31").previous().label(),
            "2026-08-31..2026-09-30"
        );
        assert_eq!(p("2026-W46").year_ago().label(), "2025-W46");
        assert_eq!(
            p("2026-W46").year_ago().start.weekday(),
            chrono::Weekday::Mon
        );
        assert_eq!(p("2026-11").year_ago().label(), "2025-11");
        assert_eq!(
            p("2024-02-29..2024-03-01").year_ago().label(),
            "2023-02-28..2023-03-01"
        );
        assert_eq!(p("2026-11").compared(Compare::Previous).label(), "2026-10");
        let trend = p("2026-Q4").trend();
        assert_eq!(
            (trend.len(), trend[0].label(), trend[7].label()),
            (8, "2025-Q1".to_string(), "2026-Q4".to_string())
        );
        assert_eq!(p("2026-11").trend().len(), 12);
    }

    #[test]
    fn latest_complete_period_of_each_grain() {
        let as_of = d("2026-11-21");
        assert_eq!(
            Period::latest_complete(Grain::Week, as_of).label(),
            "2026-W46"
        );
        assert_eq!(
            Period::latest_complete(Grain::Month, as_of).label(),
            "2026-10"
        );
        assert_eq!(
            Period::latest_complete(Grain::Quarter, as_of).label(),
            "2026-Q3"
        );
        assert_eq!(Period::latest_complete(Grain::Year, as_of).label(), "2025");
        // The first of the month: the month before has just ended.
        assert_eq!(
            Period::latest_complete(Grain::Month, d("2026-12-01")).label(),
            "2026-11"
        );
        assert_eq!(
            Period::latest_complete(Grain::Week, as_of),
            Period::week(Week::latest_complete(as_of))
        );
        assert_eq!(Compare::parse("year_ago"), Ok(Compare::YearAgo));
        let (p, c) = resolve(Some("month"), None, as_of, Grain::Week).unwrap();
        assert_eq!((p.label(), c), ("2026-10".to_string(), Compare::Previous));
        let (p, c) = resolve(Some(" "), Some("year_ago"), as_of, Grain::Week).unwrap();
        assert_eq!((p.label(), c), ("2026-W46".to_string(), Compare::YearAgo));
        for lens in [
            Lens::WEEKLY,
            Lens {
                grain: Grain::Range,
                compare: Compare::YearAgo,
            },
        ] {
            assert_eq!(Lens::parse(&lens.key()), Some(lens));
        }
        assert_eq!(Lens::WEEKLY.key(), "week");
        let e = resolve(Some("2026-W54"), None, as_of, Grain::Week)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("period: period '2026-W54'"), "{e}");
        let e = resolve(None, Some("yesterday"), as_of, Grain::Week)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("compare: "), "{e}");
        assert!(Compare::parse("last_year")
            .unwrap_err()
            .to_string()
            .contains("previous, year_ago"));
    }
}
