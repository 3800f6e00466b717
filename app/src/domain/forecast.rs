//! Forecast and pace for the current, incomplete week: where the KPI stands so far, what
//! rate the rest of the week needs to reach target, and where it will probably land.
//!
//! - So far: the counts of the week's days before the reference date.
//! - Remaining volume: for each day left, the median lines of the same weekday over the
//!   previous [`BASELINE_WEEKS`] weeks.
//! - Needed pace (rates): `(target × (n_so_far + n_left) − ok_so_far) / n_left`.
//! - Forecast (rates): the days left at the rate of the previous weeks; the 80 % interval
//!   adds the binomial noise of the lines left to the week-to-week spread of that rate.
//!   Volumes: so far plus the expected remaining lines, the interval from the spread of the
//!   same days in previous weeks.

use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{fmt_date, Week};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Weeks of history used for remaining volume and the expected rate.
pub const BASELINE_WEEKS: i64 = 4;
/// z of the two-sided 80 % interval.
const Z80: f64 = 1.2816;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pace {
    pub week_label: String,
    pub week_start: String,
    /// Days of the week with data so far (before the reference date), 0..=7.
    pub days_elapsed: i64,
    pub value_so_far: Option<f64>,
    pub numerator_so_far: i64,
    pub denominator_so_far: i64,
    /// Lines (or units, for fill rate) expected in the days left.
    pub expected_remaining: f64,
    pub target: Option<f64>,
    /// The rate the days left need to reach target (percent; rates only). Above 100: out
    /// of reach; at or below 0: already secured.
    pub needed_rate: Option<f64>,
    pub forecast: Option<f64>,
    /// 80 % interval of the forecast.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub summary: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Pace and forecast of `metric` for the week containing `as_of`, from the daily counts
/// (`daily`: at least the current week and the [`BASELINE_WEEKS`] before it). `target` is
/// in display units (percent for rates).
pub fn pace(
    metric: Metric,
    as_of: NaiveDate,
    daily: &BTreeMap<NaiveDate, KpiCounts>,
    target: Option<f64>,
) -> Pace {
    let week = Week::containing(as_of);
    let days: Vec<NaiveDate> = (0..7)
        .map(|i| week.start + chrono::Duration::days(i))
        .collect();
    let (elapsed, left): (Vec<NaiveDate>, Vec<NaiveDate>) = days.iter().partition(|d| **d < as_of);
    let mut so_far = KpiCounts::default();
    for d in &elapsed {
        if let Some(c) = daily.get(d) {
            so_far.add(c);
        }
    }
    let (ok, n) = so_far.fraction(metric);
    // What a day's volume is: the rate's denominator (lines, or units for fill rate), or
    // the count itself for volume metrics.
    let denominator = |c: &KpiCounts| {
        let (a, b) = c.fraction(metric);
        if metric.is_ratio() {
            b as f64
        } else {
            a as f64
        }
    };
    // Expected volume of each day left: the median of the same weekday in previous weeks.
    let history = |d: NaiveDate| -> Vec<KpiCounts> {
        (1..=BASELINE_WEEKS)
            .map(|w| {
                daily
                    .get(&(d - chrono::Duration::weeks(w)))
                    .copied()
                    .unwrap_or_default()
            })
            .collect()
    };
    let expected_remaining: f64 = left
        .iter()
        .map(|d| median(history(*d).iter().map(denominator).collect()))
        .sum();
    // The same days left, in each previous week: their volume and their rate.
    let past_weeks: Vec<KpiCounts> = (1..=BASELINE_WEEKS)
        .map(|w| {
            let mut c = KpiCounts::default();
            for d in &left {
                if let Some(x) = daily.get(&(*d - chrono::Duration::weeks(w))) {
                    c.add(x);
                }
            }
            c
        })
        .collect();
    let (forecast, low, high, needed) = if metric.is_ratio() {
        let rates: Vec<f64> = past_weeks
            .iter()
            .filter(|c| c.fraction(metric).1 > 0)
            .map(|c| {
                let (a, b) = c.fraction(metric);
                a as f64 / b as f64
            })
            .collect();
        let pooled = {
            let (a, b) = past_weeks.iter().fold((0i64, 0i64), |acc, c| {
                let (x, y) = c.fraction(metric);
                (acc.0 + x, acc.1 + y)
            });
            (b > 0).then(|| a as f64 / b as f64)
        };
        let total = n as f64 + expected_remaining;
        // Percent for percentages; an average's own unit (no binomial spread, no bounds).
        let factor = metric.factor();
        let percent = metric.is_percent();
        let needed = target
            .filter(|_| expected_remaining > 0.0)
            .map(|t| (t / factor * total - ok as f64) / expected_remaining * factor);
        match (pooled, total > 0.0) {
            (Some(p), true) => {
                let mean_ok = ok as f64 + p * expected_remaining;
                let binomial = if percent {
                    expected_remaining * p * (1.0 - p)
                } else {
                    0.0
                };
                let var = binomial + (expected_remaining * sd(&rates)).powi(2);
                let half = Z80 * var.sqrt() / total * factor;
                let f = mean_ok / total * factor;
                let (low, high) = if percent {
                    ((f - half).max(0.0), (f + half).min(100.0))
                } else {
                    (f - half, f + half)
                };
                (Some(f), Some(low), Some(high), needed)
            }
            (None, true) if expected_remaining == 0.0 => {
                let f = so_far.value(metric);
                (f, f, f, needed)
            }
            _ => (None, None, None, needed),
        }
    } else {
        let volumes: Vec<f64> = past_weeks.iter().map(denominator).collect();
        let f = ok as f64 + expected_remaining;
        let half = Z80 * sd(&volumes);
        (
            Some(f),
            Some((f - half).max(ok as f64)),
            Some(f + half),
            None,
        )
    };
    let unit = match metric.scale() {
        crate::domain::kpi::Scale::Percent => " %".to_string(),
        crate::domain::kpi::Scale::Count => " lines".to_string(),
        crate::domain::kpi::Scale::Average(u) => format!(" {u}"),
    };
    let fmt = |v: f64| format!("{v:.1}{unit}");
    let summary = match (so_far.value(metric), forecast, low, high) {
        (_, Some(f), Some(l), Some(h)) if left.is_empty() => {
            let _ = (l, h);
            format!("week complete at {}", fmt(f))
        }
        (now, Some(f), Some(l), Some(h)) => {
            // A rate past what the days left can reach (above 100 %, or below 0 when
            // lower is better) puts the target out of reach; one any day meets secures it.
            let ceiling = if metric.is_percent() {
                100.0
            } else {
                f64::INFINITY
            };
            let higher = metric.higher_is_better();
            let unreachable = |p: f64, c: f64| if higher { p > c } else { p < 0.0 };
            let secured = |p: f64, c: f64| if higher { p <= 0.0 } else { p >= c };
            let pace_text = match (needed, target) {
                (Some(p), Some(t)) if unreachable(p, ceiling) => {
                    format!("; {} target is out of reach this week", fmt(t))
                }
                (Some(p), Some(t)) if secured(p, ceiling) => {
                    format!("; {} target is already secured", fmt(t))
                }
                (Some(p), Some(t)) => {
                    format!("; the days left need {} to reach {}", fmt(p), fmt(t))
                }
                _ => String::new(),
            };
            format!(
                "{} so far after {} day{}; forecast {} (80 %: {} to {}){pace_text}",
                now.map(fmt).unwrap_or_else(|| "no data".into()),
                elapsed.len(),
                if elapsed.len() == 1 { "" } else { "s" },
                fmt(f),
                fmt(l),
                fmt(h)
            )
        }
        _ => "not enough history to forecast".into(),
    };
    Pace {
        week_label: week.label(),
        week_start: fmt_date(week.start),
        days_elapsed: elapsed.len() as i64,
        value_so_far: so_far.value(metric),
        numerator_so_far: ok,
        denominator_so_far: n,
        expected_remaining,
        target,
        needed_rate: needed,
        forecast,
        low,
        high,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    /// `lines` a day with `ok` OTIF lines, from `from` for `days` days.
    fn fill(
        daily: &mut BTreeMap<NaiveDate, KpiCounts>,
        from: &str,
        days: i64,
        lines: i64,
        ok: i64,
    ) {
        let from = parse_date(from).unwrap();
        for i in 0..days {
            daily.insert(
                from + chrono::Duration::days(i),
                KpiCounts {
                    lines,
                    otif_lines: ok,
                    on_time_lines: ok,
                    in_full_lines: lines,
                    units_ordered: lines * 10,
                    units_delivered: lines * 10,
                    measures: Default::default(),
                },
            );
        }
    }

    // 2026-11-16 is a Monday; as of Saturday 2026-11-21, 5 days have passed.
    const AS_OF: &str = "2026-11-21";

    #[test]
    fn so_far_needed_pace_and_forecast() {
        let mut daily = BTreeMap::new();
        // Four previous weeks: 100 lines a day at 95 %.
        fill(&mut daily, "2026-10-19", 28, 100, 95);
        // This week so far: 100 lines a day at 90 % for 5 days.
        fill(&mut daily, "2026-11-16", 5, 100, 90);
        let p = pace(Metric::OTIF, parse_date(AS_OF).unwrap(), &daily, Some(95.0));
        assert_eq!(p.days_elapsed, 5);
        assert_eq!((p.numerator_so_far, p.denominator_so_far), (450, 500));
        assert_eq!(p.value_so_far, Some(90.0));
        assert_eq!(p.expected_remaining, 200.0);
        // 95 % of 700 = 665; 450 done; 215 of 200 needed: out of reach.
        assert!((p.needed_rate.unwrap() - 107.5).abs() < 1e-9);
        // 450 + 0.95 × 200 = 640 of 700.
        assert!((p.forecast.unwrap() - 640.0 / 7.0).abs() < 1e-9);
        assert!(p.low.unwrap() < p.forecast.unwrap() && p.forecast.unwrap() < p.high.unwrap());
        assert!(p.summary.contains("out of reach"), "{}", p.summary);
        // A 90 % target: 630 needed, 180 of 200 left = 90 %.
        let p = pace(Metric::OTIF, parse_date(AS_OF).unwrap(), &daily, Some(90.0));
        assert!((p.needed_rate.unwrap() - 90.0).abs() < 1e-9);
        assert!(p.summary.contains("need 90.0 %"), "{}", p.summary);
    }

    #[test]
    fn the_interval_narrows_as_the_week_fills_and_volumes_add_up() {
        let mut daily = BTreeMap::new();
        // Previous weeks vary: 93 %, 97 %, 91 %, 99 %.
        for (w, ok) in [(0, 93), (1, 97), (2, 91), (3, 99)] {
            let start = parse_date("2026-10-19").unwrap() + chrono::Duration::weeks(w);
            fill(&mut daily, &fmt_date(start), 7, 100, ok);
        }
        fill(&mut daily, "2026-11-16", 6, 100, 95);
        let width = |as_of: &str| {
            let p = pace(Metric::OTIF, parse_date(as_of).unwrap(), &daily, Some(95.0));
            p.high.unwrap() - p.low.unwrap()
        };
        assert!(width("2026-11-17") > width("2026-11-20"));
        assert!(width("2026-11-20") > width("2026-11-22"));
        // Volume: 500 so far + 2 days × 100 expected.
        let p = pace(Metric::LINES_DUE, parse_date(AS_OF).unwrap(), &daily, None);
        assert_eq!(p.forecast, Some(700.0));
        assert!(p.needed_rate.is_none());
    }

    #[test]
    fn a_secured_target_and_no_history() {
        let mut daily = BTreeMap::new();
        fill(&mut daily, "2026-10-19", 28, 100, 95);
        fill(&mut daily, "2026-11-16", 5, 100, 100);
        let p = pace(Metric::OTIF, parse_date(AS_OF).unwrap(), &daily, Some(70.0));
        assert!(p.needed_rate.unwrap() <= 0.0);
        assert!(p.summary.contains("already secured"));
        let p = pace(
            Metric::OTIF,
            parse_date(AS_OF).unwrap(),
            &BTreeMap::new(),
            Some(95.0),
        );
        assert_eq!(p.forecast, None);
        assert_eq!(p.summary, "not enough history to forecast");
    }
}
