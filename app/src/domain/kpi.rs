//! The KPI catalogue and line-level scoring.
//!
//! Ratio KPIs are kept as a numerator and a denominator ([`KpiCounts`]) and only divided at
//! the end, so any aggregate (a week, a site, the network) is exact.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

/// The KPIs Opsight tracks. Stored and sent as their snake_case key.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Otif,
    OnTime,
    InFull,
    FillRate,
    LinesDue,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Otif,
        Metric::OnTime,
        Metric::InFull,
        Metric::FillRate,
        Metric::LinesDue,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Metric::Otif => "otif",
            Metric::OnTime => "on_time",
            Metric::InFull => "in_full",
            Metric::FillRate => "fill_rate",
            Metric::LinesDue => "lines_due",
        }
    }

    pub fn parse(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::Otif => "OTIF",
            Metric::OnTime => "On-time",
            Metric::InFull => "In-full",
            Metric::FillRate => "Fill rate",
            Metric::LinesDue => "Lines due",
        }
    }

    /// Ratio metrics are shown in percent and move in percentage points; `LinesDue` is a count.
    pub fn is_ratio(self) -> bool {
        !matches!(self, Metric::LinesDue)
    }
}

/// Rule parameters that change how a line is scored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScoringParams {
    /// Days after the due date that still count as on time (0 = on or before the due date).
    pub on_time_window_days: i64,
    /// Share of the ordered quantity that may be missing and still count as in full (0..1).
    pub in_full_tolerance: f64,
}

impl Default for ScoringParams {
    fn default() -> Self {
        ScoringParams {
            on_time_window_days: 0,
            in_full_tolerance: 0.0,
        }
    }
}

/// How one order line scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineScore {
    pub on_time: bool,
    pub in_full: bool,
}

impl LineScore {
    pub fn otif(self) -> bool {
        self.on_time && self.in_full
    }
}

/// Scores one line. An undelivered line (no `delivered_date`) is not on time; in-full is
/// judged on the recorded `delivered_qty` (0 for a line that has not shipped).
pub fn score_line(
    params: ScoringParams,
    ordered_qty: i64,
    delivered_qty: i64,
    due_date: NaiveDate,
    delivered_date: Option<NaiveDate>,
) -> LineScore {
    let on_time =
        delivered_date.is_some_and(|d| d <= due_date + Duration::days(params.on_time_window_days));
    // Compare in integers where possible: qty >= ordered * (1 - tol).
    let required = ordered_qty as f64 * (1.0 - params.in_full_tolerance);
    let in_full = delivered_qty as f64 >= required - 1e-9;
    LineScore { on_time, in_full }
}

/// Exact counts behind every KPI for a set of lines.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct KpiCounts {
    pub lines: i64,
    pub otif_lines: i64,
    pub on_time_lines: i64,
    pub in_full_lines: i64,
    pub units_ordered: i64,
    pub units_delivered: i64,
}

impl KpiCounts {
    pub fn add_line(&mut self, score: LineScore, ordered_qty: i64, delivered_qty: i64) {
        self.lines += 1;
        self.otif_lines += i64::from(score.otif());
        self.on_time_lines += i64::from(score.on_time);
        self.in_full_lines += i64::from(score.in_full);
        self.units_ordered += ordered_qty;
        self.units_delivered += delivered_qty;
    }

    pub fn add(&mut self, other: &KpiCounts) {
        self.lines += other.lines;
        self.otif_lines += other.otif_lines;
        self.on_time_lines += other.on_time_lines;
        self.in_full_lines += other.in_full_lines;
        self.units_ordered += other.units_ordered;
        self.units_delivered += other.units_delivered;
    }

    /// (numerator, denominator) of a metric. For `LinesDue` the denominator is 1.
    pub fn fraction(&self, metric: Metric) -> (i64, i64) {
        match metric {
            Metric::Otif => (self.otif_lines, self.lines),
            Metric::OnTime => (self.on_time_lines, self.lines),
            Metric::InFull => (self.in_full_lines, self.lines),
            Metric::FillRate => (self.units_delivered, self.units_ordered),
            Metric::LinesDue => (self.lines, 1),
        }
    }

    /// The metric's value in display units: percent (0..100) for ratios, a count for volume.
    /// `None` when the denominator is empty (no lines due).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let (num, den) = self.fraction(metric);
        display_value(metric, num, den)
    }
}

/// Value in display units from a numerator and denominator (`None` on an empty denominator
/// for ratios).
pub fn display_value(metric: Metric, num: i64, den: i64) -> Option<f64> {
    if metric.is_ratio() {
        (den > 0).then(|| 100.0 * num as f64 / den as f64)
    } else {
        Some(num as f64)
    }
}

/// Formats a value in display units: `93.4%` or `1,234`.
pub fn format_value(metric: Metric, value: Option<f64>) -> String {
    match value {
        None => "–".to_string(),
        Some(v) if metric.is_ratio() => format!("{v:.1}%"),
        Some(v) => group_thousands(v.round() as i64),
    }
}

/// Formats a change: `+1.2 pp` / `−3.4 pp` for ratios, `+120` lines for counts.
pub fn format_change(metric: Metric, change: Option<f64>) -> String {
    match change {
        None => "–".to_string(),
        Some(c) if metric.is_ratio() => format!("{} pp", signed(c, 1)),
        Some(c) => {
            let n = c.round() as i64;
            let sign = if n > 0 {
                "+"
            } else if n < 0 {
                "−"
            } else {
                "±"
            };
            format!("{sign}{}", group_thousands(n.abs()))
        }
    }
}

/// `+1.2`, `−0.4`, `±0.0` with a real minus sign.
pub fn signed(v: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, v.abs());
    let zero = text.chars().all(|c| c == '0' || c == '.');
    let sign = if zero {
        "±"
    } else if v > 0.0 {
        "+"
    } else {
        "−"
    };
    format!("{sign}{text}")
}

fn group_thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn undelivered_line_is_late_and_short() {
        let s = score_line(ScoringParams::default(), 10, 0, d("2026-11-10"), None);
        assert_eq!(
            s,
            LineScore {
                on_time: false,
                in_full: false
            }
        );
    }

    #[test]
    fn partial_delivery_is_on_time_but_not_in_full() {
        let s = score_line(
            ScoringParams::default(),
            10,
            9,
            d("2026-11-10"),
            Some(d("2026-11-09")),
        );
        assert!(s.on_time && !s.in_full && !s.otif());
    }

    #[test]
    fn on_time_window_boundary_is_inclusive() {
        let p = ScoringParams {
            on_time_window_days: 1,
            in_full_tolerance: 0.0,
        };
        assert!(score_line(p, 5, 5, d("2026-11-10"), Some(d("2026-11-11"))).on_time);
        assert!(!score_line(p, 5, 5, d("2026-11-10"), Some(d("2026-11-12"))).on_time);
        let strict = ScoringParams::default();
        assert!(score_line(strict, 5, 5, d("2026-11-10"), Some(d("2026-11-10"))).otif());
        assert!(!score_line(strict, 5, 5, d("2026-11-10"), Some(d("2026-11-11"))).on_time);
    }

    #[test]
    fn tolerance_allows_small_shortfalls_only() {
        let p = ScoringParams {
            on_time_window_days: 0,
            in_full_tolerance: 0.05,
        };
        // 95 of 100 is exactly at the tolerance: in full.
        assert!(score_line(p, 100, 95, d("2026-11-10"), Some(d("2026-11-10"))).in_full);
        assert!(!score_line(p, 100, 94, d("2026-11-10"), Some(d("2026-11-10"))).in_full);
        // Over-delivery is in full.
        assert!(score_line(ScoringParams::default(), 10, 12, d("2026-11-10"), None).in_full);
    }

    #[test]
    fn empty_period_has_no_ratio_value_but_zero_volume() {
        let c = KpiCounts::default();
        assert_eq!(c.value(Metric::Otif), None);
        assert_eq!(c.value(Metric::FillRate), None);
        assert_eq!(c.value(Metric::LinesDue), Some(0.0));
    }

    #[test]
    fn aggregates_are_exact_sums_of_parts() {
        let p = ScoringParams::default();
        let mut a = KpiCounts::default();
        let mut b = KpiCounts::default();
        a.add_line(
            score_line(p, 10, 10, d("2026-11-10"), Some(d("2026-11-10"))),
            10,
            10,
        );
        a.add_line(
            score_line(p, 10, 5, d("2026-11-10"), Some(d("2026-11-12"))),
            10,
            5,
        );
        b.add_line(
            score_line(p, 4, 4, d("2026-11-11"), Some(d("2026-11-11"))),
            4,
            4,
        );
        let mut total = a;
        total.add(&b);
        assert_eq!(total.lines, 3);
        assert_eq!(total.fraction(Metric::Otif), (2, 3));
        assert_eq!(total.fraction(Metric::FillRate), (19, 24));
        assert!((total.value(Metric::Otif).unwrap() - 200.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn formats_values_and_changes() {
        assert_eq!(format_value(Metric::Otif, Some(93.44)), "93.4%");
        assert_eq!(format_value(Metric::LinesDue, Some(12345.0)), "12,345");
        assert_eq!(format_change(Metric::Otif, Some(-3.21)), "−3.2 pp");
        assert_eq!(format_change(Metric::Otif, Some(0.01)), "±0.0 pp");
        assert_eq!(format_change(Metric::LinesDue, Some(1200.0)), "+1,200");
        assert_eq!(Metric::parse("fill_rate"), Some(Metric::FillRate));
        assert_eq!(Metric::parse("nope"), None);
    }
}
