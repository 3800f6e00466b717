//! Is a KPI move *unusual*, not only below target? A seasonality-aware robust z-score.
//!
//! Days are compared with the same weekday of the previous [`BASELINE_WEEKS`] weeks
//! (DCs have strong weekday patterns: Monday backlogs, thin weekends), the week with the
//! previous weeks. The score is `(actual − median) / (1.4826 × MAD)`, the robust z: one
//! outlier in the baseline cannot hide the next. The scale has a floor so a perfectly flat
//! history does not make every wobble "unusual". By default only bad moves count
//! (one-sided); the sensitivity (|z| threshold) comes from the rules, per metric.

use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::Week;
use crate::domain::rules::Rules;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Weeks of history each value is compared with.
pub const BASELINE_WEEKS: usize = 8;
/// Fewer baseline points than this: no verdict.
pub const MIN_BASELINE: usize = 4;
/// A day's rate on fewer lines than this is too noisy to judge.
pub const MIN_DAY_LINES: i64 = 20;

/// A value and what it was measured on: lines (or units, for fill rate) for rates; for
/// volumes `n` is unused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub value: f64,
    pub n: i64,
}

/// How sensitive detection is for one metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sensitivity {
    /// |robust z| at or above this is unusual (3.5 is the usual outlier cut-off).
    pub z: f64,
    /// Flag moves in both directions, not only bad ones.
    pub two_sided: bool,
}

impl Default for Sensitivity {
    fn default() -> Self {
        Sensitivity {
            z: 3.5,
            two_sided: false,
        }
    }
}

/// One value scored against its baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scored {
    /// The day (for daily scores) or the week's Monday.
    pub date: String,
    pub actual: f64,
    /// The baseline median.
    pub expected: f64,
    pub z: f64,
}

/// The verdict for a card's reported week.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Anomaly {
    /// The week's value, or one of its days, is unusual in the flagged direction.
    pub unusual: bool,
    /// The week against the previous weeks (None without enough history).
    pub week: Option<Scored>,
    /// The week's days that are unusual against the same weekday of previous weeks.
    pub unusual_days: Vec<Scored>,
    pub sensitivity: Sensitivity,
    /// One line for people: "unusual: 81.2 % vs 93.0 % expected (z −5.1)".
    pub summary: String,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Robust z of `value` against `baseline` (None with fewer than [`MIN_BASELINE`] points).
/// `floor` is the smallest scale used, in the value's units.
pub fn robust_z(value: f64, baseline: &[f64], floor: f64) -> Option<(f64, f64)> {
    if baseline.len() < MIN_BASELINE {
        return None;
    }
    let mut sorted: Vec<f64> = baseline.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.len() < MIN_BASELINE {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let med = median(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let scale = (1.4826 * median(&deviations)).max(floor);
    Some(((value - med) / scale, med))
}

/// The smallest scale, in the value's units: the sampling noise of a rate measured on `n`
/// lines at the expected level (binomial; the level is kept `margin` away from 0 and 100 %
/// so a history of perfect days still allows for failures), at least 1 point; for volumes,
/// Poisson noise or 5 % of the expected level. Days use a wider margin (5 %) than weeks
/// (1 %): each week has seven of them, so each day's verdict must be more conservative.
fn floor(metric: Metric, expected: f64, n: i64, margin: f64) -> f64 {
    if let crate::domain::kpi::Scale::Average(_) = metric.scale() {
        // An average's spread is not known from sums: 5 % of its level, at least 0.1.
        return (expected.abs() * 0.05).max(0.1);
    }
    if metric.is_ratio() {
        let p = (expected / 100.0).clamp(margin, 1.0 - margin);
        (100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()).max(1.0)
    } else {
        (expected.abs() * 0.05).max(expected.abs().sqrt()).max(1.0)
    }
}

/// Margins of the binomial noise floor (see [`floor`]).
const WEEK_MARGIN: f64 = 0.01;
const DAY_MARGIN: f64 = 0.05;

/// Robust z of a point against its baseline values, with the noise floor.
fn score(metric: Metric, point: Point, baseline: &[f64], margin: f64) -> Option<(f64, f64)> {
    let (_, expected) = robust_z(point.value, baseline, f64::MIN_POSITIVE)?;
    robust_z(
        point.value,
        baseline,
        floor(metric, expected, point.n, margin),
    )
}

/// Whether `z` is a flagged move: in the bad direction (down, or up when lower is
/// better; volumes are usually configured two-sided) unless two-sided.
fn flagged(metric: Metric, z: f64, s: Sensitivity) -> bool {
    if s.two_sided {
        z.abs() >= s.z
    } else {
        metric.good(z) <= -s.z
    }
}

/// Days of the roll-up anomaly detection reads: the reported week and the weeks it is
/// compared with.
pub fn span(week: Week) -> (NaiveDate, NaiveDate) {
    (
        week.start - chrono::Duration::weeks(BASELINE_WEEKS as i64),
        week.end(),
    )
}

fn point(metric: Metric, c: &KpiCounts) -> Option<Point> {
    // A week or day without lines has no value, for volumes too: 0 lines is "no data",
    // not a quiet period to compare with.
    // (A catalogue KPI's own volume: a source may return its counts without lines.)
    let volume = if metric.is_built_in() {
        c.lines
    } else {
        let (n, d) = c.fraction(metric);
        if metric.is_ratio() {
            d
        } else {
            n.abs()
        }
    };
    if volume == 0 {
        return None;
    }
    c.value(metric).map(|value| Point {
        value,
        n: c.fraction(metric).1,
    })
}

/// Whether the reported week is unusual for `metric`, from counts: weekly (oldest first,
/// ending with the reported week) and daily (over [`span`]). `None` when the rules switch
/// detection off for the metric.
pub fn of_counts(
    metric: Metric,
    week: Week,
    weekly: &[KpiCounts],
    daily: &std::collections::BTreeMap<NaiveDate, KpiCounts>,
    rules: &Rules,
) -> Option<Anomaly> {
    let sensitivity = rules.anomaly_sensitivity(metric)?;
    let weekly: Vec<Option<Point>> = weekly.iter().map(|c| point(metric, c)).collect();
    let days: Vec<(NaiveDate, Point)> = daily
        .iter()
        .filter_map(|(d, c)| point(metric, c).map(|p| (*d, p)))
        .collect();
    Some(detect(metric, week, &weekly, &days, sensitivity))
}

/// The verdict for a period that is not a week: not judged, and it says why (a month,
/// a quarter or a year has too few predecessors for a robust baseline). `None` when the
/// rules switch detection off for the metric.
pub fn not_judged(
    metric: Metric,
    grain: crate::domain::period::Grain,
    rules: &Rules,
) -> Option<Anomaly> {
    let sensitivity = rules.anomaly_sensitivity(metric)?;
    Some(Anomaly {
        unusual: false,
        week: None,
        unusual_days: vec![],
        sensitivity,
        summary: format!(
            "not judged: a {g} has too few earlier {g}s to judge what is usual (weeks are judged against the {BASELINE_WEEKS} before them)",
            g = grain.noun()
        ),
    })
}

/// Scores a card's reported `week`: its weekly value against the previous weeks
/// (`weekly`, oldest first, ending with the reported week) and each of its days against the
/// same weekday of the previous weeks (`daily`: (day, value) for every day with data).
pub fn detect(
    metric: Metric,
    week: Week,
    weekly: &[Option<Point>],
    daily: &[(NaiveDate, Point)],
    s: Sensitivity,
) -> Anomaly {
    let week_score = weekly.split_last().and_then(|(last, before)| {
        let point = (*last)?;
        let baseline: Vec<f64> = before
            .iter()
            .rev()
            .take(BASELINE_WEEKS)
            .filter_map(|v| v.map(|p| p.value))
            .collect();
        score(metric, point, &baseline, WEEK_MARGIN).map(|(z, expected)| Scored {
            date: crate::domain::period::fmt_date(week.start),
            actual: point.value,
            expected,
            z,
        })
    });
    let mut unusual_days = Vec::new();
    let judged = |p: &Point| !metric.is_ratio() || p.n >= MIN_DAY_LINES;
    for (day, point) in daily.iter().filter(|(d, p)| week.contains(*d) && judged(p)) {
        let baseline: Vec<f64> = (1..=BASELINE_WEEKS as i64)
            .filter_map(|w| {
                let same = *day - chrono::Duration::weeks(w);
                daily
                    .iter()
                    .find(|(d, p)| *d == same && judged(p))
                    .map(|(_, p)| p.value)
            })
            .collect();
        if let Some((z, expected)) = score(metric, *point, &baseline, DAY_MARGIN) {
            if flagged(metric, z, s) {
                unusual_days.push(Scored {
                    date: crate::domain::period::fmt_date(*day),
                    actual: point.value,
                    expected,
                    z,
                });
            }
        }
    }
    let week_flagged = week_score.as_ref().is_some_and(|w| flagged(metric, w.z, s));
    let unit = match metric.scale() {
        crate::domain::kpi::Scale::Percent => " %".to_string(),
        crate::domain::kpi::Scale::Count => " lines".to_string(),
        crate::domain::kpi::Scale::Average(u) => format!(" {u}"),
    };
    let summary = match (&week_score, week_flagged, unusual_days.len()) {
        (Some(w), true, _) => format!(
            "unusual: {:.1}{unit} vs {:.1}{unit} expected from the previous weeks (robust z {:+.1})",
            w.actual, w.expected, w.z
        ),
        (_, false, n) if n > 0 => {
            let d = &unusual_days[0];
            let weekday = crate::domain::period::parse_date(&d.date)
                .map(|x| format!("{:?}", x.weekday()))
                .unwrap_or_default();
            format!(
                "unusual day{}: {weekday} {} at {:.1}{unit} vs {:.1}{unit} on recent {weekday}s (robust z {:+.1})",
                if n > 1 { "s" } else { "" },
                d.date,
                d.actual,
                d.expected,
                d.z
            )
        }
        (Some(w), false, _) => format!("usual: robust z {:+.1} against the previous weeks", w.z),
        (None, _, _) => "not enough history to judge".to_string(),
    };
    Anomaly {
        unusual: week_flagged || !unusual_days.is_empty(),
        week: week_score,
        unusual_days,
        sensitivity: s,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    /// 9 weeks of daily OTIF with a strong weekly pattern (weekends 10 points lower) and
    /// small deterministic wiggles; the last week is the reported one.
    /// 2,000 lines a day: sampling noise well under a point.
    const N: i64 = 2000;

    fn seasonal(start: &str, weeks: i64) -> Vec<(NaiveDate, Point)> {
        let start = parse_date(start).unwrap();
        (0..weeks * 7)
            .map(|i| {
                let day = start + chrono::Duration::days(i);
                let weekend = matches!(day.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
                let wiggle = ((i * 37 % 11) as f64 - 5.0) * 0.15;
                let value = if weekend { 84.0 } else { 94.0 } + wiggle;
                (day, Point { value, n: N })
            })
            .collect()
    }

    fn weekly(daily: &[(NaiveDate, Point)]) -> Vec<Option<Point>> {
        daily
            .chunks(7)
            .map(|w| {
                Some(Point {
                    value: w.iter().map(|(_, p)| p.value).sum::<f64>() / 7.0,
                    n: N * 7,
                })
            })
            .collect()
    }

    // 2026-09-14 is a Monday; 9 weeks end with the week of 2026-11-09.
    const START: &str = "2026-09-14";

    fn reported() -> Week {
        Week::containing(parse_date("2026-11-09").unwrap())
    }

    #[test]
    fn weekly_seasonality_is_not_flagged() {
        let daily = seasonal(START, 9);
        let a = detect(
            Metric::OTIF,
            reported(),
            &weekly(&daily),
            &daily,
            Sensitivity::default(),
        );
        assert!(!a.unusual, "{a:?}");
        assert!(a.unusual_days.is_empty());
        // A naive z against all recent days would call every weekend unusual.
        let all: Vec<f64> = daily[..56].iter().map(|(_, p)| p.value).collect();
        let (z, _) = robust_z(84.0, &all, 1.0).unwrap();
        assert!(z < -3.5, "without seasonality weekends look unusual ({z})");
    }

    #[test]
    fn an_injected_drop_is_found_on_its_day() {
        let mut daily = seasonal(START, 9);
        // Wednesday 2026-11-11 collapses to 70 %.
        let i = daily
            .iter()
            .position(|(d, _)| *d == parse_date("2026-11-11").unwrap())
            .unwrap();
        daily[i].1.value = 70.0;
        let a = detect(
            Metric::OTIF,
            reported(),
            &weekly(&daily),
            &daily,
            Sensitivity::default(),
        );
        assert!(a.unusual);
        assert_eq!(a.unusual_days.len(), 1, "{a:?}");
        assert_eq!(a.unusual_days[0].date, "2026-11-11");
        assert!(a.unusual_days[0].z < -3.5);
        assert!((a.unusual_days[0].expected - 94.0).abs() < 1.0);
        assert!(a.summary.contains("Wed 2026-11-11"), "{}", a.summary);
    }

    #[test]
    fn one_sided_by_default_two_sided_on_request() {
        let mut daily = seasonal(START, 9);
        let i = daily
            .iter()
            .position(|(d, _)| *d == parse_date("2026-11-14").unwrap())
            .unwrap();
        // A Saturday far better than usual.
        daily[i].1.value = 99.0;
        let a = detect(
            Metric::OTIF,
            reported(),
            &weekly(&daily),
            &daily,
            Sensitivity::default(),
        );
        assert!(!a.unusual, "a good move is not flagged by default");
        let two = Sensitivity {
            two_sided: true,
            ..Default::default()
        };
        let a = detect(Metric::OTIF, reported(), &weekly(&daily), &daily, two);
        assert!(a.unusual && a.unusual_days[0].z > 3.5);
    }

    #[test]
    fn sensitivity_and_short_history() {
        let mut daily = seasonal(START, 9);
        let i = daily.len() - 5;
        daily[i].1.value -= 4.0; // a moderate dip
        let strict = Sensitivity {
            z: 2.0,
            two_sided: false,
        };
        let lax = Sensitivity {
            z: 6.0,
            two_sided: false,
        };
        assert!(detect(Metric::OTIF, reported(), &weekly(&daily), &daily, strict).unusual);
        assert!(!detect(Metric::OTIF, reported(), &weekly(&daily), &daily, lax).unusual);
        // Three weeks of history: no verdict at all.
        let short = &daily[daily.len() - 21..];
        let a = detect(Metric::OTIF, reported(), &weekly(short), short, strict);
        assert!(!a.unusual && a.week.is_none());
        assert_eq!(a.summary, "not enough history to judge");
    }

    #[test]
    fn small_days_are_not_judged_and_noise_scales_with_lines() {
        let mut daily = seasonal(START, 9);
        let i = daily.len() - 1;
        // Sunday: 3 lines, one failed (66.7 %) — noise, not news.
        daily[i].1 = Point { value: 66.7, n: 3 };
        let a = detect(
            Metric::OTIF,
            reported(),
            &weekly(&daily),
            &daily,
            Sensitivity::default(),
        );
        assert!(a.unusual_days.is_empty(), "{a:?}");
        // A 5-point drop on 40 lines is within binomial noise; on 2,000 lines it is not.
        let baseline = [95.0, 95.2, 94.8, 95.1, 94.9, 95.0, 95.3, 94.7];
        let (z_small, _) = score(
            Metric::OTIF,
            Point { value: 90.0, n: 40 },
            &baseline,
            DAY_MARGIN,
        )
        .unwrap();
        let (z_big, _) = score(
            Metric::OTIF,
            Point {
                value: 90.0,
                n: 2000,
            },
            &baseline,
            DAY_MARGIN,
        )
        .unwrap();
        assert!(z_small > -3.5 && z_big < -3.5, "{z_small} {z_big}");
    }

    #[test]
    fn robust_to_one_outlier_in_the_baseline() {
        // One bad week in the history does not make the next bad week look normal.
        let baseline = [94.0, 93.8, 94.2, 60.0, 94.1, 93.9, 94.0, 94.3];
        let (z, expected) = robust_z(85.0, &baseline, 1.0).unwrap();
        assert!((expected - 94.0).abs() < 0.2);
        assert!(z < -3.5, "{z}");
    }
}
