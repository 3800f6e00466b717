//! The KPI catalogue and line-level scoring.
//!
//! Ratio KPIs are kept as a numerator and a denominator ([`KpiCounts`]) and only divided at
//! the end, so any aggregate (a week, a site, the network) is exact.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

/// A KPI: one of Opsight's own ([`Metric::BUILT_IN`]) or one the team's catalogue defines
/// ([`super::catalogue`]). Stored and sent as its key. Catalogue KPIs are registered once
/// per process (and in the browser, from the page) with [`Metric::register`]; a key that
/// is neither built in nor registered does not parse, so input cannot grow the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Metric(&'static str);

/// How a KPI's value is shown and how it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// numerator / denominator, in percent; changes in percentage points.
    Percent,
    /// The numerator alone (lines); changes in lines, triggers in percent.
    Count,
    /// numerator / denominator in a unit ("days"); changes in that unit.
    Average(&'static str),
}

/// A catalogue KPI as the process knows it.
#[derive(Clone, Copy, Debug)]
struct Registered {
    key: &'static str,
    label: &'static str,
    scale: Scale,
    higher_is_better: bool,
    /// Its numerator and denominator in [`KpiCounts::measures`].
    slot: usize,
}

static REGISTRY: std::sync::RwLock<Vec<Registered>> = std::sync::RwLock::new(Vec::new());

fn registry() -> std::sync::RwLockReadGuard<'static, Vec<Registered>> {
    REGISTRY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A string kept for the life of the process: registered keys, labels and units are
/// few (a catalogue holds at most [`super::catalogue::MAX_KPIS`]) and live as long.
fn keep(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

impl Metric {
    pub const OTIF: Metric = Metric("otif");
    pub const ON_TIME: Metric = Metric("on_time");
    pub const IN_FULL: Metric = Metric("in_full");
    pub const FILL_RATE: Metric = Metric("fill_rate");
    pub const LINES_DUE: Metric = Metric("lines_due");

    /// Opsight's own KPIs, in the order they are shown.
    pub const BUILT_IN: [Metric; 5] = [
        Metric::OTIF,
        Metric::ON_TIME,
        Metric::IN_FULL,
        Metric::FILL_RATE,
        Metric::LINES_DUE,
    ];

    /// Every KPI: the built-in ones, then the catalogue's in slot order.
    pub fn all() -> Vec<Metric> {
        let mut custom: Vec<Registered> = registry().clone();
        custom.sort_by_key(|r| r.slot);
        Metric::BUILT_IN
            .into_iter()
            .chain(custom.into_iter().map(|r| Metric(r.key)))
            .collect()
    }

    /// Makes a catalogue KPI known under its key, in `slot` of the metric store's
    /// measures (a key registered again takes the new definition).
    pub fn register(def: &super::catalogue::KpiDef, slot: usize) -> Metric {
        let mut reg = REGISTRY
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scale = |old: Option<Scale>| match &def.unit {
            super::catalogue::Unit::Pct => Scale::Percent,
            super::catalogue::Unit::Count => Scale::Count,
            super::catalogue::Unit::Average(w) => match old {
                Some(Scale::Average(o)) if o == w => Scale::Average(o),
                _ => Scale::Average(keep(w)),
            },
        };
        if let Some(r) = reg.iter_mut().find(|r| r.key == def.key) {
            if r.label != def.name {
                r.label = keep(&def.name);
            }
            r.scale = scale(Some(r.scale));
            r.higher_is_better = def.higher_is_better;
            r.slot = slot;
            return Metric(r.key);
        }
        let r = Registered {
            key: keep(&def.key),
            label: keep(&def.name),
            scale: scale(None),
            higher_is_better: def.higher_is_better,
            slot,
        };
        reg.push(r);
        Metric(r.key)
    }

    fn registered(self) -> Option<Registered> {
        registry().iter().find(|r| r.key == self.0).copied()
    }

    pub fn key(self) -> &'static str {
        self.0
    }

    pub fn parse(key: &str) -> Option<Metric> {
        if let Some(m) = Metric::BUILT_IN.into_iter().find(|m| m.0 == key) {
            return Some(m);
        }
        registry()
            .iter()
            .find(|r| r.key == key)
            .map(|r| Metric(r.key))
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::OTIF => "OTIF",
            Metric::ON_TIME => "On-time",
            Metric::IN_FULL => "In-full",
            Metric::FILL_RATE => "Fill rate",
            Metric::LINES_DUE => "Lines due",
            _ => self.registered().map_or(self.0, |r| r.label),
        }
    }

    /// Whether it is one of the catalogue's (its counts in [`KpiCounts::measures`]).
    pub fn is_built_in(self) -> bool {
        Metric::BUILT_IN.contains(&self)
    }

    pub fn scale(self) -> Scale {
        match self {
            Metric::LINES_DUE => Scale::Count,
            m if m.is_built_in() => Scale::Percent,
            m => m.registered().map_or(Scale::Percent, |r| r.scale),
        }
    }

    /// Its value is a rate (numerator over denominator: percent or an average), which a
    /// mix of segments explains; a count is not.
    pub fn is_ratio(self) -> bool {
        !matches!(self.scale(), Scale::Count)
    }

    /// Shown in percent (and moving in percentage points).
    pub fn is_percent(self) -> bool {
        matches!(self.scale(), Scale::Percent)
    }

    /// Whether a higher value is better (every built-in KPI's is; a catalogue KPI says).
    pub fn higher_is_better(self) -> bool {
        self.is_built_in() || self.registered().is_none_or(|r| r.higher_is_better)
    }

    /// Display units per unit of the fraction: 100 for percentages, 1 otherwise.
    pub fn factor(self) -> f64 {
        match self.scale() {
            Scale::Percent => 100.0,
            _ => 1.0,
        }
    }

    /// The unit's key as packs and requests carry it: `pct`, `count` or its word.
    pub fn unit(self) -> &'static str {
        match self.scale() {
            Scale::Percent => "pct",
            Scale::Count => "count",
            Scale::Average(w) => w,
        }
    }

    /// A move's unit for people: `pp`, `lines` or the average's unit.
    pub fn change_unit(self) -> &'static str {
        match self.scale() {
            Scale::Percent => "pp",
            Scale::Count => "lines",
            Scale::Average(w) => w,
        }
    }

    /// `change` made "better is positive": as it is when higher is better, negated when
    /// lower is.
    pub fn good(self, change: f64) -> f64 {
        if self.higher_is_better() {
            change
        } else {
            -change
        }
    }

    fn slot(self) -> Option<usize> {
        if self.is_built_in() {
            return None;
        }
        self.registered().map(|r| r.slot)
    }

    /// Where it is in the order KPIs are shown.
    fn rank(self) -> (usize, &'static str) {
        match Metric::BUILT_IN.iter().position(|m| *m == self) {
            Some(i) => (i, self.0),
            None => (
                Metric::BUILT_IN.len() + self.slot().unwrap_or(usize::MAX / 2),
                self.0,
            ),
        }
    }
}

/// A registered KPI as the page carries it to the browser.
#[derive(Serialize, Deserialize)]
struct PageKpi {
    key: String,
    name: String,
    unit: String,
    higher_is_better: bool,
    slot: usize,
}

/// The catalogue's KPIs registered here, as JSON for the page (safe inside a `<script>`).
pub fn registered_for_page() -> String {
    let kpis: Vec<PageKpi> = registry()
        .iter()
        .map(|r| PageKpi {
            key: r.key.to_string(),
            name: r.label.to_string(),
            // From the entry itself: the lock is held (no second read of it).
            unit: match r.scale {
                Scale::Percent => "pct".to_string(),
                Scale::Count => "count".to_string(),
                Scale::Average(u) => u.to_string(),
            },
            higher_is_better: r.higher_is_better,
            slot: r.slot,
        })
        .collect();
    serde_json::to_string(&kpis)
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c")
}

/// Registers the KPIs a page carries ([`registered_for_page`]); text that is not such a
/// list registers nothing.
pub fn register_from_page(text: &str) {
    let kpis: Vec<PageKpi> = serde_json::from_str(text).unwrap_or_default();
    for k in kpis {
        let def = super::catalogue::KpiDef {
            key: k.key,
            name: k.name,
            description: String::new(),
            unit: super::catalogue::Unit::parse(&k.unit),
            higher_is_better: k.higher_is_better,
            numerator: String::new(),
            denominator: None,
            target: None,
            at_risk: None,
        };
        if super::catalogue::check_name(&def.key, "KPI").is_ok()
            && k.slot < super::catalogue::MAX_KPIS
        {
            Metric::register(&def, k.slot);
        }
    }
}

impl PartialOrd for Metric {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Metric {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Metric::parse(&key).ok_or_else(|| serde::de::Error::custom(format!("'{key}' is not a KPI")))
    }
}

impl schemars::JsonSchema for Metric {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Metric".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Built when the API's description is made, after the catalogue is registered.
        let keys: Vec<&str> = Metric::all().into_iter().map(Metric::key).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "A KPI's key: a built-in KPI's or one the catalogue defines",
            "enum": keys
        })
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

/// Numerator and denominator of each catalogue KPI, by its slot.
pub type Measures = [[i64; 2]; super::catalogue::MAX_KPIS];

fn no_measures(m: &Measures) -> bool {
    m.iter().all(|[n, d]| *n == 0 && *d == 0)
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
    /// The catalogue KPIs' numerators and denominators, by slot (sums of whole numbers).
    #[serde(default, skip_serializing_if = "no_measures")]
    pub measures: Measures,
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
        for (m, o) in self.measures.iter_mut().zip(&other.measures) {
            m[0] = m[0].saturating_add(o[0]);
            m[1] = m[1].saturating_add(o[1]);
        }
    }

    /// These counts taken away.
    pub fn negated(&self) -> KpiCounts {
        KpiCounts {
            lines: -self.lines,
            otif_lines: -self.otif_lines,
            on_time_lines: -self.on_time_lines,
            in_full_lines: -self.in_full_lines,
            units_ordered: -self.units_ordered,
            units_delivered: -self.units_delivered,
            measures: self.measures.map(|[n, d]| [-n, -d]),
        }
    }

    /// (numerator, denominator) of a metric. For counts the denominator is 1.
    pub fn fraction(&self, metric: Metric) -> (i64, i64) {
        match metric {
            Metric::OTIF => (self.otif_lines, self.lines),
            Metric::ON_TIME => (self.on_time_lines, self.lines),
            Metric::IN_FULL => (self.in_full_lines, self.lines),
            Metric::FILL_RATE => (self.units_delivered, self.units_ordered),
            Metric::LINES_DUE => (self.lines, 1),
            m => {
                let [n, d] = m
                    .slot()
                    .and_then(|s| self.measures.get(s).copied())
                    .unwrap_or_default();
                if m.is_ratio() {
                    (n, d)
                } else {
                    (n, 1)
                }
            }
        }
    }

    /// The metric's value in display units: percent (0..100), a count, or an average.
    /// `None` when the denominator is empty (no lines due).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let (num, den) = self.fraction(metric);
        display_value(metric, num, den)
    }
}

/// Value in display units from a numerator and denominator (`None` on an empty denominator
/// for ratios).
pub fn display_value(metric: Metric, num: i64, den: i64) -> Option<f64> {
    match metric.scale() {
        Scale::Percent => (den > 0).then(|| 100.0 * num as f64 / den as f64),
        Scale::Average(_) => (den > 0).then(|| num as f64 / den as f64),
        Scale::Count => Some(num as f64),
    }
}

/// Formats a value in display units: `93.4%`, `1,234` or `2.4 days`.
pub fn format_value(metric: Metric, value: Option<f64>) -> String {
    match (value, metric.scale()) {
        (None, _) => "–".to_string(),
        (Some(v), Scale::Percent) => format!("{v:.1}%"),
        (Some(v), Scale::Count) => group_thousands(v.round() as i64),
        (Some(v), Scale::Average(unit)) => format!("{v:.1} {unit}"),
    }
}

/// Formats a change: `+1.2 pp` / `−3.4 pp` for percentages, `+120` lines for counts,
/// `+0.4 days` for averages.
pub fn format_change(metric: Metric, change: Option<f64>) -> String {
    match (change, metric.scale()) {
        (None, _) => "–".to_string(),
        (Some(c), Scale::Percent) => format!("{} pp", signed(c, 1)),
        (Some(c), Scale::Average(unit)) => format!("{} {unit}", signed(c, 1)),
        (Some(c), Scale::Count) => {
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
        assert_eq!(c.value(Metric::OTIF), None);
        assert_eq!(c.value(Metric::FILL_RATE), None);
        assert_eq!(c.value(Metric::LINES_DUE), Some(0.0));
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
        assert_eq!(total.fraction(Metric::OTIF), (2, 3));
        assert_eq!(total.fraction(Metric::FILL_RATE), (19, 24));
        assert!((total.value(Metric::OTIF).unwrap() - 200.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn formats_values_and_changes() {
        assert_eq!(format_value(Metric::OTIF, Some(93.44)), "93.4%");
        assert_eq!(format_value(Metric::LINES_DUE, Some(12345.0)), "12,345");
        assert_eq!(format_change(Metric::OTIF, Some(-3.21)), "−3.2 pp");
        assert_eq!(format_change(Metric::OTIF, Some(0.01)), "±0.0 pp");
        assert_eq!(format_change(Metric::LINES_DUE, Some(1200.0)), "+1,200");
        assert_eq!(Metric::parse("fill_rate"), Some(Metric::FILL_RATE));
        assert_eq!(Metric::parse("nope"), None);
    }
}
