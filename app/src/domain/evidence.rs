//! The evidence pack: everything an insight may say, computed deterministically for one
//! (site or network, metric, week). Every number an insight card shows comes from here.
//!
//! Contributions use an exact shift-share split. For a ratio KPI `R = Σ wᵢ·rᵢ` (wᵢ = a
//! segment's share of the denominator, rᵢ = its own rate), each segment's part of the
//! change `R₁ − R₀` is
//!
//! - **mix**  = (w₁ − w₀) · (r̄ᵢ − R̄): its share of volume moved, valued at how much better
//!   or worse than average it performs (r̄, R̄ are midpoint averages of both periods), and
//! - **rate** = (r₁ − r₀) · w̄ᵢ: its own performance moved, weighted by its average share.
//!
//! The midpoint weights leave no interaction term, so the segment terms add up to the
//! total change exactly (up to floating-point rounding), a pure mix shift has zero rate
//! effect and a pure rate change zero mix effect. A segment absent from one period takes
//! its other period's rate, so its whole effect is mix.

use super::kpi::{KpiCounts, Metric};
use super::period::{fmt_date, Period, Week};
use super::rules::{Rules, Status};
use super::tally::Breakdown;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Segments shown per dimension; the rest are folded into one "other" segment so the
/// terms still add up.
pub const MAX_SEGMENTS: usize = 12;
/// Site key of the whole-network view.
pub const NETWORK: &str = "network";

/// One order line, as the analysis needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct LineFact {
    pub site: String,
    pub customer: String,
    pub carrier: String,
    pub sku: String,
    pub category: String,
    pub ordered_qty: i64,
    pub delivered_qty: i64,
    pub due_date: NaiveDate,
    pub delivered_date: Option<NaiveDate>,
    pub reason_code: Option<String>,
    /// The catalogue's dimensions and fields the line has: (name, value), by name.
    pub attrs: Vec<(String, String)>,
}

impl LineFact {
    /// The value of one of the catalogue's dimensions or fields, when the line has it.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the pack is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scope {
    /// A site code, or [`NETWORK`].
    pub site: String,
    pub site_name: String,
    pub metric: Metric,
    pub metric_name: String,
    pub definition: String,
    /// `pct` (values in percent, changes in percentage points), `count`, or an
    /// average's unit.
    pub unit: String,
    /// The one member of a dimension the pack is about ("lane = L2"), when filtered: its
    /// lines only, with no split by other dimensions (the store keeps no cross-tabs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<String>,
}

/// A filter to one member of a dimension: `lane:L2`, `carrier:RoadRunner Freight`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Focus {
    pub dimension: String,
    pub member: String,
}

impl Focus {
    /// Parses `dimension:member` (the member may hold colons); the error says how.
    pub fn parse(text: &str) -> Result<Focus, String> {
        let (dimension, member) = text
            .split_once(':')
            .ok_or_else(|| format!("filter '{text}' is not dimension:member (lane:L2)"))?;
        let dimension = dimension.trim();
        let own = ["carrier", "customer", "category", "reason"];
        if !own.contains(&dimension)
            && super::catalogue::check_name(dimension, "dimension").is_err()
        {
            return Err(format!("filter: '{dimension}' is not a dimension"));
        }
        if member.chars().count() > 200 || member.chars().any(char::is_control) {
            return Err("filter: the member is longer than 200 characters".into());
        }
        Ok(Focus {
            dimension: dimension.to_string(),
            member: member.trim().to_string(),
        })
    }

    /// "lane = L2", for people.
    pub fn label(&self) -> String {
        format!("{} = {}", self.dimension, self.member)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeriodRef {
    pub start: String,
    pub end: String,
    pub label: String,
}

impl From<Period> for PeriodRef {
    fn from(p: Period) -> Self {
        PeriodRef {
            start: fmt_date(p.start),
            end: fmt_date(p.end),
            label: p.label(),
        }
    }
}

impl From<Week> for PeriodRef {
    fn from(w: Week) -> Self {
        Period::week(w).into()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SeriesPoint {
    pub period_start: String,
    pub label: String,
    pub value: Option<f64>,
    pub numerator: i64,
    pub denominator: i64,
}

/// OTIF failures split by process cause.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OtifTree {
    pub lines: i64,
    pub otif_lines: i64,
    pub failures: i64,
    /// Late but complete.
    pub late_only: i64,
    /// On time but short.
    pub short_only: i64,
    pub late_and_short: i64,
    /// Failures by reason code (`unspecified` when the line has none), most first.
    pub by_reason: Vec<ReasonCount>,
}

/// The change of a line-level rate (OTIF, on time, in full) split over the branches its
/// failing lines fall in, in points: the branches' points add up to the change exactly;
/// the reason codes under each branch add up to the branch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TreeChange {
    /// Late but in full (not part of in-full's change).
    pub late_only_pp: f64,
    /// On time but short (not part of on-time's change).
    pub short_only_pp: f64,
    pub late_and_short_pp: f64,
    /// Reason codes under the branch they fail, largest part first.
    pub reasons: Vec<ReasonPoints>,
}

impl TreeChange {
    /// A reason code's part of the change over every branch, in points.
    pub fn reason_points(&self, reason: &str) -> Option<f64> {
        let parts: Vec<f64> = self
            .reasons
            .iter()
            .filter(|r| r.reason == reason)
            .map(|r| r.points)
            .collect();
        (!parts.is_empty()).then(|| parts.iter().sum())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasonPoints {
    /// The reason code, `unspecified` for failures without one.
    pub reason: String,
    /// `late_only`, `short_only` or `late_and_short`.
    pub branch: String,
    /// Its part of the change, in points (negative: it pulled the rate down).
    pub points: f64,
    pub failures: i64,
    pub previous_failures: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasonCount {
    pub reason: String,
    pub failures: i64,
    /// Share of all failures, percent.
    pub share_pct: f64,
}

/// One segment's part of the change, in points (pp for ratio metrics, lines for counts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Segment {
    pub member: String,
    pub previous_value: Option<f64>,
    pub value: Option<f64>,
    /// Share of the denominator, percent.
    pub previous_share_pct: f64,
    pub share_pct: f64,
    pub previous_denominator: i64,
    pub denominator: i64,
    pub mix: f64,
    pub rate: f64,
    pub total: f64,
    /// The segment's part of each failure branch's points (OTIF, on time, in full): its
    /// lines on the branch over all lines due, so the segments' parts add up to the
    /// branch's points in the KPI tree. How the analyst tells a late carrier's
    /// `carrier_late` from short picks everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchPoints>,
}

/// Points on one failure branch (`late_only`, `short_only`, `late_and_short`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BranchPoints {
    pub branch: String,
    pub points: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DimensionContribution {
    pub dimension: String,
    /// Largest absolute contribution first.
    pub segments: Vec<Segment>,
    pub mix_total: f64,
    pub rate_total: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataChecks {
    /// Latest delivered_date in the scope's data, any period.
    pub latest_data_date: Option<String>,
    pub days_since_latest_data: Option<i64>,
    pub lines_due: i64,
    /// Lines due in the period with no delivered_date as of the reference date.
    pub past_due_open: i64,
    pub past_due_open_share_pct: f64,
    pub failures: i64,
    pub failures_without_reason: i64,
    pub failures_without_reason_share_pct: f64,
    /// Median lines due per week over the previous 8 weeks (None without history).
    #[serde(default)]
    pub usual_lines_due: Option<f64>,
    /// Human-readable reasons the data is suspect, from the rules' thresholds.
    pub suspect_reasons: Vec<String>,
}

impl DataChecks {
    pub fn suspect(&self) -> bool {
        !self.suspect_reasons.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Noise {
    /// Standard error of the change, in points.
    pub standard_error: f64,
    /// The change is larger than max(noise_min_pp, 2 standard errors).
    pub significant: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvidencePack {
    pub scope: Scope,
    pub as_of: String,
    pub period: PeriodRef,
    pub previous_period: PeriodRef,
    pub value: Option<f64>,
    pub previous_value: Option<f64>,
    /// `value − previous_value`, in points.
    pub change: Option<f64>,
    pub target: Option<f64>,
    /// `value − target`, in points (negative = below target).
    pub target_gap: Option<f64>,
    pub status: Status,
    pub higher_is_better: bool,
    /// Key of the rule trigger the change fires, if any.
    pub trigger: Option<String>,
    pub numerator: i64,
    pub denominator: i64,
    pub previous_numerator: i64,
    pub previous_denominator: i64,
    /// The trend at the period's grain (12 weeks, 12 months, 8 quarters...), oldest first,
    /// ending with `period`.
    pub series: Vec<SeriesPoint>,
    pub otif_tree: OtifTree,
    pub previous_otif_tree: OtifTree,
    /// The change split over the failure branches and their reason codes (OTIF, on time
    /// and in full, when both periods have lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_change: Option<TreeChange>,
    pub contributions: Vec<DimensionContribution>,
    pub data_checks: DataChecks,
    pub noise: Noise,
    pub rules_version: i64,
    /// Whether the week (or one of its days) is unusual against the same weekday and the
    /// previous weeks; set by the loader, which has the daily roll-up.
    #[serde(default)]
    pub anomaly: Option<crate::domain::anomaly::Anomaly>,
    /// Money at stake on the week's failed lines, when unit costs are configured; set by
    /// the loader.
    #[serde(default)]
    pub materiality: Option<crate::domain::materiality::Materiality>,
}

/// Everything [`build_evidence`] reads. The caller loads it from the metric store; the
/// function does no I/O.
pub struct EvidenceInput<'a> {
    pub scope: Scope,
    pub period: Period,
    /// The period it is compared with (the one before, or a year ago).
    pub previous: Period,
    pub as_of: NaiveDate,
    /// The scope's lines due in `period`, tallied (with a `site` dimension for the network).
    pub current: &'a Breakdown,
    /// The same for `previous`.
    pub prior: &'a Breakdown,
    /// Lines due in `period` before `as_of` with no delivered date.
    pub past_due_open: i64,
    /// The trend, oldest first, ending with `period` (see [`Period::trend`]).
    pub series: &'a [(Period, KpiCounts)],
    pub latest_data_date: Option<NaiveDate>,
    pub rules: &'a Rules,
}

/// Builds the evidence pack. Pure and deterministic: equal inputs give equal packs (and
/// equal hashes), segment order included.
pub fn build_evidence(input: EvidenceInput<'_>) -> EvidencePack {
    let EvidenceInput {
        scope,
        period,
        previous,
        as_of,
        current,
        prior,
        past_due_open,
        series,
        latest_data_date,
        rules,
    } = input;
    let metric = scope.metric;
    let cur = current.total.counts;
    let prev = prior.total.counts;
    let tree = otif_tree(current);
    let prev_tree = otif_tree(prior);
    let failures_without_reason = current.total.unreasoned_failures;
    // Opsight's dimensions, then the catalogue's in the order of their names (a
    // catalogue's dimension is in the breakdown whenever a line of either period had it).
    let mut dimensions: Vec<&str> = if scope.site == NETWORK {
        vec!["site", "carrier", "customer", "category"]
    } else {
        vec!["carrier", "customer", "category"]
    };
    let own = [
        "site",
        "carrier",
        "customer",
        "category",
        "reason",
        super::tally::DELIVERED_ON,
    ];
    // Only those that count something of this KPI (a source of another KPI's counts
    // brings dimensions of its own).
    let counts_here = |d: &str| {
        current.members(d).chain(prior.members(d)).any(|(_, t)| {
            let (n, d) = t.counts.fraction(metric);
            if metric.is_ratio() {
                d != 0
            } else {
                n != 0
            }
        })
    };
    let mut extra: Vec<&str> = current
        .dimensions
        .keys()
        .chain(prior.dimensions.keys())
        .map(String::as_str)
        .filter(|d| !own.contains(d) && counts_here(d))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    dimensions.extend(extra);

    let (num, den) = cur.fraction(metric);
    let (pnum, pden) = prev.fraction(metric);
    let value = cur.value(metric);
    let previous_value = prev.value(metric);
    let change = value.zip(previous_value).map(|(v, p)| v - p);
    let target = rules.target(&scope.site, metric);
    let target_gap = value.zip(target).map(|(v, t)| v - t);

    let contributions = dimensions
        .iter()
        .map(|dim| {
            // Every member of either period, in member order (deterministic).
            let mut members: BTreeMap<&str, (KpiCounts, KpiCounts)> = BTreeMap::new();
            for (m, t) in prior.members(dim) {
                members.entry(m).or_default().0 = t.counts;
            }
            for (m, t) in current.members(dim) {
                members.entry(m).or_default().1 = t.counts;
            }
            let inputs: Vec<SegmentInput> = members
                .into_iter()
                .map(|(member, (p, c))| SegmentInput {
                    member: member.to_string(),
                    previous: p.fraction(metric),
                    current: c.fraction(metric),
                })
                .collect();
            let mut c = contribution(dim, metric, &inputs);
            segment_branches(metric, current, prior, &mut c);
            c
        })
        .collect();

    let series = series_points(metric, series);
    // The volume the data checks judge: lines due, or a catalogue KPI's own volume (its
    // denominator, or its count), which a source may return without any line.
    let lines_due = if metric.is_built_in() {
        cur.lines
    } else if metric.is_ratio() {
        den
    } else {
        num
    };
    let share = |n: i64, d: i64| {
        if d > 0 {
            100.0 * n as f64 / d as f64
        } else {
            0.0
        }
    };
    let mut data_checks = DataChecks {
        latest_data_date: latest_data_date.map(fmt_date),
        days_since_latest_data: latest_data_date.map(|d| (as_of - d).num_days()),
        lines_due,
        past_due_open,
        past_due_open_share_pct: share(past_due_open, cur.lines),
        failures: tree.failures,
        failures_without_reason,
        failures_without_reason_share_pct: share(failures_without_reason, tree.failures),
        usual_lines_due: {
            // The previous 8 periods of the series (the last point is the reported one).
            let mut previous: Vec<f64> = series
                .iter()
                .rev()
                .skip(1)
                .take(8)
                .filter(|p| p.denominator > 0)
                .map(|p| {
                    if metric.is_ratio() {
                        p.denominator as f64
                    } else {
                        p.numerator as f64
                    }
                })
                .collect();
            previous.sort_by(f64::total_cmp);
            (previous.len() >= 4 && metric != Metric::FILL_RATE)
                .then(|| previous[previous.len() / 2])
        },
        suspect_reasons: Vec::new(),
    };
    data_checks.suspect_reasons = suspect_reasons(&data_checks, rules, period.grain.noun(), metric);

    let noise = noise(
        metric,
        (pnum, pden),
        (num, den),
        change,
        rules.noise_min_pp(),
    );
    EvidencePack {
        as_of: fmt_date(as_of),
        period: period.into(),
        previous_period: previous.into(),
        value,
        previous_value,
        change,
        target,
        target_gap,
        status: rules.status(metric, value, target),
        higher_is_better: metric.higher_is_better(),
        trigger: rules
            .trigger(
                metric,
                &trend(&series, previous, previous_value, value),
                target,
            )
            .map(|t| t.key.clone()),
        numerator: num,
        denominator: den,
        previous_numerator: pnum,
        previous_denominator: pden,
        series,
        otif_tree: tree,
        previous_otif_tree: prev_tree,
        tree_change: tree_change(metric, current, prior),
        contributions,
        data_checks,
        noise,
        rules_version: rules.version,
        anomaly: None,
        materiality: None,
        scope,
    }
}

/// The branches a metric's failing lines fall in: OTIF fails on all three; on time on
/// the late ones; in full on the short ones.
fn branches(metric: Metric) -> &'static [&'static str] {
    match metric {
        Metric::OTIF => &["late_only", "short_only", "late_and_short"],
        Metric::ON_TIME => &["late_only", "late_and_short"],
        Metric::IN_FULL => &["short_only", "late_and_short"],
        _ => &[],
    }
}

/// Each segment's part of each failure branch's points (see [`Segment::branches`]); the
/// folded "other" segment gets the rest of each branch.
fn segment_branches(
    metric: Metric,
    current: &Breakdown,
    prior: &Breakdown,
    c: &mut DimensionContribution,
) {
    let branches = branches(metric);
    let (n1, n0) = (current.total.counts.lines, prior.total.counts.lines);
    if branches.is_empty() || n1 <= 0 || n0 <= 0 {
        return;
    }
    let points = |b1: i64, b0: i64| -100.0 * (b1 as f64 / n1 as f64 - b0 as f64 / n0 as f64);
    let mut tallies: BTreeMap<&str, (super::tally::Tally, super::tally::Tally)> = BTreeMap::new();
    for (m, t) in prior.members(&c.dimension) {
        tallies.entry(m).or_default().1 = *t;
    }
    for (m, t) in current.members(&c.dimension) {
        tallies.entry(m).or_default().0 = *t;
    }
    let mut named: BTreeMap<&str, f64> = BTreeMap::new();
    for seg in c
        .segments
        .iter_mut()
        .filter(|s| !s.member.starts_with("other ("))
    {
        let (t1, t0) = tallies
            .get(seg.member.as_str())
            .copied()
            .unwrap_or_default();
        seg.branches = branches
            .iter()
            .map(|b| {
                let p = points(in_branch(&t1, b), in_branch(&t0, b));
                *named.entry(b).or_default() += p;
                BranchPoints {
                    branch: b.to_string(),
                    points: p,
                }
            })
            .collect();
    }
    for seg in c
        .segments
        .iter_mut()
        .filter(|s| s.member.starts_with("other ("))
    {
        seg.branches = branches
            .iter()
            .map(|b| BranchPoints {
                branch: b.to_string(),
                points: points(in_branch(&current.total, b), in_branch(&prior.total, b))
                    - named.get(b).copied().unwrap_or_default(),
            })
            .collect();
    }
}

/// Lines of a tally in one failure branch.
fn in_branch(t: &super::tally::Tally, branch: &str) -> i64 {
    match branch {
        "late_only" => t.late_only(),
        "short_only" => t.short_only(),
        _ => t.late_and_short(),
    }
}

/// The change of `metric` split over its failure branches and their reason codes (see
/// [`TreeChange`]): a branch's points are `−100 × (b₁/n₁ − b₀/n₀)` for its lines `b` of
/// all lines due `n`, so they add up to the rate's change exactly, and so do the reason
/// codes' (they partition the lines).
fn tree_change(metric: Metric, current: &Breakdown, prior: &Breakdown) -> Option<TreeChange> {
    let branches = branches(metric);
    let (n1, n0) = (current.total.counts.lines, prior.total.counts.lines);
    if branches.is_empty() || n1 <= 0 || n0 <= 0 {
        return None;
    }
    let points = |b1: i64, b0: i64| -100.0 * (b1 as f64 / n1 as f64 - b0 as f64 / n0 as f64);
    let mut out = TreeChange::default();
    for branch in branches {
        let p = points(
            in_branch(&current.total, branch),
            in_branch(&prior.total, branch),
        );
        match *branch {
            "late_only" => out.late_only_pp = p,
            "short_only" => out.short_only_pp = p,
            _ => out.late_and_short_pp = p,
        }
    }
    let mut members: BTreeMap<&str, (super::tally::Tally, super::tally::Tally)> = BTreeMap::new();
    for (m, t) in prior.members("reason") {
        members.entry(m).or_default().1 = *t;
    }
    for (m, t) in current.members("reason") {
        members.entry(m).or_default().0 = *t;
    }
    for (reason, (c, p)) in members {
        for branch in branches {
            let (f1, f0) = (in_branch(&c, branch), in_branch(&p, branch));
            if f1 == 0 && f0 == 0 {
                continue;
            }
            out.reasons.push(ReasonPoints {
                reason: if reason.is_empty() {
                    "unspecified".into()
                } else {
                    reason.to_string()
                },
                branch: branch.to_string(),
                points: points(f1, f0),
                failures: f1,
                previous_failures: f0,
            });
        }
    }
    out.reasons.sort_by(|a, b| {
        b.points
            .abs()
            .total_cmp(&a.points.abs())
            .then_with(|| (&a.reason, &a.branch).cmp(&(&b.reason, &b.branch)))
    });
    Some(out)
}

/// OTIF failures of a breakdown split by process cause and by reason code.
fn otif_tree(b: &Breakdown) -> OtifTree {
    let t = &b.total;
    let reasons: BTreeMap<String, i64> = b
        .members("reason")
        .filter(|(_, t)| t.failures() > 0)
        .map(|(r, t)| {
            let key = if r.is_empty() { "unspecified" } else { r };
            (key.to_string(), t.failures())
        })
        .fold(BTreeMap::new(), |mut acc, (k, n)| {
            *acc.entry(k).or_default() += n;
            acc
        });
    OtifTree {
        lines: t.counts.lines,
        otif_lines: t.counts.otif_lines,
        failures: t.failures(),
        late_only: t.late_only(),
        short_only: t.short_only(),
        late_and_short: t.late_and_short(),
        by_reason: reason_counts(reasons, t.failures()),
    }
}

fn reason_counts(reasons: BTreeMap<String, i64>, failures: i64) -> Vec<ReasonCount> {
    let mut out: Vec<ReasonCount> = reasons
        .into_iter()
        .map(|(reason, n)| ReasonCount {
            reason,
            failures: n,
            share_pct: if failures > 0 {
                100.0 * n as f64 / failures as f64
            } else {
                0.0
            },
        })
        .collect();
    out.sort_by(|a, b| {
        b.failures
            .cmp(&a.failures)
            .then_with(|| a.reason.cmp(&b.reason))
    });
    out
}

/// Values for triggers: the series, with the reported period taken from the pack's own
/// exact figures, and the one before it too when it is the compared period.
fn trend(
    series: &[SeriesPoint],
    previous: Period,
    previous_value: Option<f64>,
    current: Option<f64>,
) -> Vec<Option<f64>> {
    let mut t: Vec<Option<f64>> = series.iter().map(|p| p.value).collect();
    let n = t.len();
    if n >= 2 && series[n - 2].period_start == fmt_date(previous.start) {
        t[n - 2] = previous_value;
    }
    if let Some(last) = t.last_mut() {
        *last = current;
    }
    t
}

fn series_points(metric: Metric, series: &[(Period, KpiCounts)]) -> Vec<SeriesPoint> {
    series
        .iter()
        .map(|(p, counts)| {
            let (numerator, denominator) = counts.fraction(metric);
            SeriesPoint {
                period_start: fmt_date(p.start),
                label: p.label(),
                value: counts.value(metric),
                numerator,
                denominator,
            }
        })
        .collect()
}

fn suspect_reasons(checks: &DataChecks, rules: &Rules, noun: &str, metric: Metric) -> Vec<String> {
    let mut out = Vec::new();
    // A disabled threshold switches its check off.
    let open_limit = rules
        .threshold("data_past_due_open_share", 0.05)
        .map(|v| 100.0 * v);
    if let Some(open_limit) =
        open_limit.filter(|l| checks.lines_due > 0 && checks.past_due_open_share_pct > *l)
    {
        out.push(format!(
            "{} of {} lines due ({:.1}%) have no delivered date (limit {:.1}%)",
            checks.past_due_open, checks.lines_due, checks.past_due_open_share_pct, open_limit
        ));
    }
    // Freshness: deliveries are recorded daily; a gap means a feed stopped.
    if let (Some(max_age), Some(days), Some(latest)) = (
        rules.threshold("data_max_age_days", 3.0),
        checks.days_since_latest_data,
        &checks.latest_data_date,
    ) {
        if days as f64 > max_age {
            out.push(format!(
                "no delivery recorded for {days} days (latest {latest}; limit {max_age:.0}): the data may be stale"
            ));
        }
    }
    // Volume far below the usual: more likely a partial load than a quiet week. (Surges
    // are left to the analysis: they are usually real.)
    if let (Some(low), Some(usual)) = (
        rules.threshold("data_volume_low_share", 0.5),
        checks.usual_lines_due.filter(|u| *u >= 20.0),
    ) {
        if (checks.lines_due as f64) < low * usual {
            out.push(format!(
                "only {} lines due vs about {usual:.0} in a usual {noun} ({:.0}%; limit {:.0}%): a partial data load?",
                checks.lines_due,
                100.0 * checks.lines_due as f64 / usual,
                100.0 * low
            ));
        }
    }
    let reason_limit = rules
        .threshold("data_unreasoned_failure_share", 0.5)
        .map(|v| 100.0 * v);
    // Only meaningful once there are enough failures to judge coding discipline, and for
    // the KPIs reason codes explain (OTIF's family, not a catalogue KPI).
    if let Some(reason_limit) = reason_limit.filter(|l| {
        metric.is_built_in()
            && checks.failures >= 20
            && checks.failures_without_reason_share_pct > *l
    }) {
        out.push(format!(
            "{:.0}% of failures have no reason code (limit {:.0}%)",
            checks.failures_without_reason_share_pct, reason_limit
        ));
    }
    out
}

fn noise(
    metric: Metric,
    (pnum, pden): (i64, i64),
    (num, den): (i64, i64),
    change: Option<f64>,
    min_pp: f64,
) -> Noise {
    let standard_error = if let super::kpi::Scale::Average(_) = metric.scale() {
        // The store keeps sums, not squares: an average's sampling noise is unknown, and
        // only `noise_min` (in its unit) separates noise from a move.
        0.0
    } else if metric.is_ratio() {
        let var = |n: i64, d: i64| {
            if d == 0 {
                0.0
            } else {
                let p = (n as f64 / d as f64).clamp(0.0, 1.0);
                p * (1.0 - p) / d as f64
            }
        };
        100.0 * (var(pnum, pden) + var(num, den)).sqrt()
    } else {
        // Poisson counts: var(n₁ − n₀) = n₁ + n₀ (a catalogue count may sum negative
        // amounts: no noise below zero).
        ((pnum + num).max(0) as f64).sqrt()
    };
    let threshold = if metric.is_ratio() {
        min_pp.max(2.0 * standard_error)
    } else {
        2.0 * standard_error
    };
    let significant = change.is_some_and(|c| c.abs() > threshold);
    Noise {
        standard_error,
        significant,
    }
}

/// One segment's (numerator, denominator) in each period.
#[derive(Clone, Debug)]
pub struct SegmentInput {
    pub member: String,
    pub previous: (i64, i64),
    pub current: (i64, i64),
}

/// Splits the change of `metric` across segments into mix and rate terms (see the module
/// docs). Count metrics have no rate to mix: each segment's term is its own change in
/// volume, reported as `rate`.
pub fn contribution(
    dimension: &str,
    metric: Metric,
    inputs: &[SegmentInput],
) -> DimensionContribution {
    let total_prev: i64 = inputs.iter().map(|s| s.previous.1).sum();
    let total_cur: i64 = inputs.iter().map(|s| s.current.1).sum();
    let mut segments: Vec<Segment> = if !metric.is_ratio() {
        inputs
            .iter()
            .map(|s| {
                let (p, c) = (s.previous.0 as f64, s.current.0 as f64);
                Segment {
                    member: s.member.clone(),
                    previous_value: Some(p),
                    value: Some(c),
                    previous_share_pct: pct(s.previous.0, total_prev.max(1)),
                    share_pct: pct(s.current.0, total_cur.max(1)),
                    previous_denominator: s.previous.0,
                    denominator: s.current.0,
                    mix: 0.0,
                    rate: c - p,
                    total: c - p,
                    branches: Vec::new(),
                }
            })
            .collect()
    } else if total_prev == 0 || total_cur == 0 {
        // No change is defined without both periods.
        Vec::new()
    } else {
        let (w_prev, w_cur) = (total_prev as f64, total_cur as f64);
        // Percent for percentages, the unit itself for averages.
        let factor = metric.factor();
        let rate = |(n, d): (i64, i64)| (d > 0).then(|| n as f64 / d as f64);
        let big_r0: f64 = inputs.iter().map(|s| s.previous.0 as f64).sum::<f64>() / w_prev;
        let big_r1: f64 = inputs.iter().map(|s| s.current.0 as f64).sum::<f64>() / w_cur;
        let r_bar_total = (big_r0 + big_r1) / 2.0;
        inputs
            .iter()
            .map(|s| {
                let w0 = s.previous.1 as f64 / w_prev;
                let w1 = s.current.1 as f64 / w_cur;
                let (r0, r1) = match (rate(s.previous), rate(s.current)) {
                    (Some(a), Some(b)) => (a, b),
                    (Some(a), None) => (a, a),
                    (None, Some(b)) => (b, b),
                    (None, None) => (0.0, 0.0),
                };
                let mix = factor * (w1 - w0) * ((r0 + r1) / 2.0 - r_bar_total);
                let rate_term = factor * (r1 - r0) * (w0 + w1) / 2.0;
                Segment {
                    member: s.member.clone(),
                    previous_value: rate(s.previous).map(|r| factor * r),
                    value: rate(s.current).map(|r| factor * r),
                    previous_share_pct: 100.0 * w0,
                    share_pct: 100.0 * w1,
                    previous_denominator: s.previous.1,
                    denominator: s.current.1,
                    mix,
                    rate: rate_term,
                    total: mix + rate_term,
                    branches: Vec::new(),
                }
            })
            .collect()
    };
    segments.sort_by(|a, b| {
        b.total
            .abs()
            .total_cmp(&a.total.abs())
            .then_with(|| a.member.cmp(&b.member))
    });
    if segments.len() > MAX_SEGMENTS {
        let rest = segments.split_off(MAX_SEGMENTS - 1);
        let n = rest.len();
        let fold = rest.into_iter().fold(
            Segment {
                member: format!("other ({n})"),
                previous_value: None,
                value: None,
                previous_share_pct: 0.0,
                share_pct: 0.0,
                previous_denominator: 0,
                denominator: 0,
                mix: 0.0,
                rate: 0.0,
                total: 0.0,
                branches: Vec::new(),
            },
            |mut acc, s| {
                acc.previous_share_pct += s.previous_share_pct;
                acc.share_pct += s.share_pct;
                acc.previous_denominator += s.previous_denominator;
                acc.denominator += s.denominator;
                acc.mix += s.mix;
                acc.rate += s.rate;
                acc.total += s.total;
                acc
            },
        );
        segments.push(fold);
    }
    DimensionContribution {
        dimension: dimension.to_string(),
        mix_total: segments.iter().map(|s| s.mix).sum(),
        rate_total: segments.iter().map(|s| s.rate).sum(),
        segments,
    }
}

fn pct(n: i64, d: i64) -> f64 {
    100.0 * n as f64 / d as f64
}

impl EvidencePack {
    /// Segments across all dimensions, largest absolute contribution first. A dimension
    /// with a single member only mirrors the total, so it explains nothing and is skipped.
    pub fn top_segments(&self) -> Vec<(&str, &Segment)> {
        let mut all: Vec<(&str, &Segment)> = self
            .contributions
            .iter()
            .filter(|d| d.segments.len() > 1)
            .flat_map(|d| d.segments.iter().map(move |s| (d.dimension.as_str(), s)))
            .filter(|(_, s)| !s.member.starts_with("other ("))
            .collect();
        all.sort_by(|a, b| {
            b.1.total
                .abs()
                .total_cmp(&a.1.total.abs())
                .then_with(|| a.1.member.cmp(&b.1.member))
        });
        all
    }

    pub fn segment(&self, dimension: &str, member: &str) -> Option<&Segment> {
        self.contributions
            .iter()
            .find(|d| d.dimension == dimension)?
            .segments
            .iter()
            .find(|s| s.member == member)
    }

    /// Failures with this reason code in the period before (0 when it had none).
    pub fn previous_failures(&self, reason: &str) -> i64 {
        self.previous_otif_tree
            .by_reason
            .iter()
            .find(|r| r.reason == reason)
            .map_or(0, |r| r.failures)
    }

    /// A plain-language summary for the agent's user message (the full pack travels in
    /// `custom_inputs`).
    pub fn summary(&self) -> String {
        let m = self.scope.metric;
        let fmt = |v: Option<f64>| super::kpi::format_value(m, v);
        let mut out = format!(
            "{} at {} for {} ({} to {}): {} vs {} the week before ({}); target {} ({}).\n",
            self.scope.metric_name,
            self.scope.site_name,
            self.period.label,
            self.period.start,
            self.period.end,
            fmt(self.value),
            fmt(self.previous_value),
            super::kpi::format_change(m, self.change),
            fmt(self.target),
            self.status.label(),
        );
        out.push_str(&format!(
            "Change is {} (standard error {:.2} points).\n",
            if self.noise.significant {
                "beyond noise"
            } else {
                "within noise"
            },
            self.noise.standard_error
        ));
        let t = &self.otif_tree;
        out.push_str(&format!(
            "OTIF failures this week: {} of {} lines (late only {}, short only {}, both {}). Reasons: {}.\n",
            t.failures,
            t.lines,
            t.late_only,
            t.short_only,
            t.late_and_short,
            t.by_reason
                .iter()
                .take(5)
                .map(|r| format!("{} {}", r.reason, r.failures))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str("Largest contributions to the change (points, mix / rate):\n");
        for (dim, s) in self.top_segments().into_iter().take(6) {
            out.push_str(&format!(
                "- {dim} {}: {:+.2} (mix {:+.2}, rate {:+.2}); value {} -> {}, share {:.1}% -> {:.1}%\n",
                s.member,
                s.total,
                s.mix,
                s.rate,
                fmt(s.previous_value),
                fmt(s.value),
                s.previous_share_pct,
                s.share_pct
            ));
        }
        let d = &self.data_checks;
        out.push_str(&format!(
            "Data checks: latest data {}, {} lines past due without a delivered date, {:.0}% of failures without a reason code.",
            d.latest_data_date.as_deref().unwrap_or("none"),
            d.past_due_open,
            d.failures_without_reason_share_pct
        ));
        if d.suspect() {
            out.push_str(&format!(" Data suspect: {}.", d.suspect_reasons.join("; ")));
        }
        out
    }
}

#[cfg(test)]
impl Scope {
    /// Test support: OTIF at `site`.
    pub(crate) fn otif_for_tests(site: &str, site_name: &str) -> Scope {
        Scope {
            site: site.into(),
            site_name: site_name.into(),
            metric: Metric::OTIF,
            metric_name: "OTIF".into(),
            definition: String::new(),
            unit: "%".into(),
            focus: None,
        }
    }
}

/// Test support: a pack for `week` built from raw lines, tallied the way the metric store
/// tallies them (network scopes get the `site` dimension), with the series from `weekly`.
#[cfg(test)]
pub(crate) fn pack_from_lines(
    scope: Scope,
    week: Week,
    as_of: NaiveDate,
    lines: &[LineFact],
    weekly: &[(Week, KpiCounts)],
    latest_data_date: Option<NaiveDate>,
    rules: &Rules,
) -> EvidencePack {
    use super::materiality::CostBook;
    let period = Period::week(week);
    let previous = period.previous();
    let network = scope.site == NETWORK;
    let scorer = super::tally::Scorer::new(rules.scoring(), CostBook::default());
    let tally = |p: Period| {
        let mut b = Breakdown::default();
        for l in lines.iter().filter(|l| p.contains(l.due_date)) {
            b.add_line(l, &scorer);
            if network {
                let t = super::tally::Tally::of_line(l, &scorer);
                b.add("site", &l.site, &t);
            }
        }
        b
    };
    let series: Vec<(Period, KpiCounts)> = period
        .trend()
        .into_iter()
        .map(|p| {
            let c = weekly.iter().filter(|(w, _)| w.start == p.start).fold(
                KpiCounts::default(),
                |mut acc, (_, c)| {
                    acc.add(c);
                    acc
                },
            );
            (p, c)
        })
        .collect();
    build_evidence(EvidenceInput {
        scope,
        period,
        previous,
        as_of,
        current: &tally(period),
        prior: &tally(previous),
        past_due_open: lines
            .iter()
            .filter(|l| {
                period.contains(l.due_date) && l.delivered_date.is_none() && l.due_date < as_of
            })
            .count() as i64,
        series: &series,
        latest_data_date,
        rules,
    })
}

/// Test support: DAL, where RoadRunner goes from on time to half late while FastFreight
/// stays on time (OTIF −25 pp, the carrier's rate effect).
#[cfg(test)]
pub(crate) fn late_carrier_pack() -> EvidencePack {
    use super::period::parse_date;
    use super::rules::sample_rules;
    let rules = sample_rules();
    let week = Week::latest_complete(parse_date("2026-11-21").unwrap());
    let mut lines = Vec::new();
    for (i, carrier) in ["RoadRunner", "FastFreight"].iter().enumerate() {
        for n in 0..200 {
            for (w, late) in [(week.previous(), false), (week, i == 0 && n % 2 == 0)] {
                let due = w.start + chrono::Days::new((n % 5) as u64);
                lines.push(LineFact {
                    site: "DAL".into(),
                    customer: format!("C{}", n % 3),
                    carrier: carrier.to_string(),
                    sku: "SKU-1".into(),
                    category: "Grocery".into(),
                    ordered_qty: 10,
                    delivered_qty: 10,
                    due_date: due,
                    delivered_date: Some(if late {
                        due + chrono::Days::new(3)
                    } else {
                        due
                    }),
                    reason_code: late.then(|| "carrier_late".to_string()),
                    attrs: Vec::new(),
                });
            }
        }
    }
    pack_from_lines(
        Scope::otif_for_tests("DAL", "Dallas"),
        week,
        parse_date("2026-11-21").unwrap(),
        &lines,
        &[],
        Some(parse_date("2026-11-20").unwrap()),
        &rules,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;
    use crate::domain::rules::sample_rules;

    fn seg(member: &str, previous: (i64, i64), current: (i64, i64)) -> SegmentInput {
        SegmentInput {
            member: member.into(),
            previous,
            current,
        }
    }

    fn total_change(inputs: &[SegmentInput]) -> f64 {
        let sum = |f: fn(&SegmentInput) -> (i64, i64)| {
            inputs
                .iter()
                .map(f)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let (n0, d0) = sum(|s| s.previous);
        let (n1, d1) = sum(|s| s.current);
        100.0 * (n1 as f64 / d1 as f64 - n0 as f64 / d0 as f64)
    }

    #[test]
    fn segment_terms_sum_to_the_total_change() {
        let inputs = vec![
            seg("A", (90, 100), (150, 200)),
            seg("B", (45, 50), (20, 25)),
            seg("C", (0, 0), (7, 10)),
            seg("D", (30, 40), (0, 0)),
        ];
        let c = contribution("carrier", Metric::OTIF, &inputs);
        let sum: f64 = c.segments.iter().map(|s| s.total).sum();
        assert!(
            (sum - total_change(&inputs)).abs() < 1e-9,
            "{sum} vs {}",
            total_change(&inputs)
        );
        assert!((c.mix_total + c.rate_total - sum).abs() < 1e-9);
    }

    #[test]
    fn pure_mix_shift_has_zero_rate_effect() {
        // Both carriers keep their rates; volume moves to the worse one.
        let inputs = vec![
            seg("good", (98, 100), (49, 50)),
            seg("bad", (40, 50), (80, 100)),
        ];
        let c = contribution("carrier", Metric::OTIF, &inputs);
        assert!(c.rate_total.abs() < 1e-12);
        assert!(c.segments.iter().all(|s| s.rate.abs() < 1e-12));
        assert!((c.mix_total - total_change(&inputs)).abs() < 1e-9);
        assert!(c.mix_total < 0.0);
    }

    #[test]
    fn pure_rate_change_has_zero_mix_effect() {
        let inputs = vec![seg("a", (90, 100), (80, 100)), seg("b", (45, 50), (45, 50))];
        let c = contribution("carrier", Metric::OTIF, &inputs);
        assert!(c.mix_total.abs() < 1e-12);
        let a = c.segments.iter().find(|s| s.member == "a").unwrap();
        assert!((a.rate - total_change(&inputs)).abs() < 1e-9);
    }

    #[test]
    fn long_tails_fold_into_other_and_still_add_up() {
        let inputs: Vec<SegmentInput> = (0..30)
            .map(|i| seg(&format!("m{i:02}"), (50 + i, 100), (40 + 2 * i, 100 + i)))
            .collect();
        let c = contribution("customer", Metric::OTIF, &inputs);
        assert_eq!(c.segments.len(), MAX_SEGMENTS);
        assert!(c.segments.last().unwrap().member.starts_with("other ("));
        let sum: f64 = c.segments.iter().map(|s| s.total).sum();
        assert!((sum - total_change(&inputs)).abs() < 1e-9);
    }

    #[test]
    fn volume_contributions_are_line_count_changes() {
        let inputs = vec![seg("a", (100, 1), (130, 1)), seg("b", (50, 1), (40, 1))];
        let c = contribution("site", Metric::LINES_DUE, &inputs);
        let sum: f64 = c.segments.iter().map(|s| s.total).sum();
        assert_eq!(sum, 20.0);
        assert_eq!(c.segments[0].member, "a");
    }

    fn line(
        carrier: &str,
        due: &str,
        delivered: Option<&str>,
        ordered: i64,
        got: i64,
        reason: Option<&str>,
    ) -> LineFact {
        LineFact {
            site: "DAL".into(),
            customer: "Cust".into(),
            carrier: carrier.into(),
            sku: "SKU-1".into(),
            category: "Food".into(),
            ordered_qty: ordered,
            delivered_qty: got,
            due_date: parse_date(due).unwrap(),
            delivered_date: delivered.map(|d| parse_date(d).unwrap()),
            reason_code: reason.map(Into::into),
            attrs: Vec::new(),
        }
    }

    #[test]
    fn evidence_pack_has_tree_checks_and_exact_values() {
        let rules = sample_rules();
        let week = Week::containing(parse_date("2026-11-09").unwrap());
        let lines = vec![
            // previous week: both OTIF
            line("X", "2026-11-03", Some("2026-11-03"), 10, 10, None),
            line("Y", "2026-11-04", Some("2026-11-04"), 10, 10, None),
            // current week: one OTIF, one late, one short, one open (late + short)
            line("X", "2026-11-10", Some("2026-11-10"), 10, 10, None),
            line(
                "X",
                "2026-11-10",
                Some("2026-11-12"),
                10,
                10,
                Some("carrier_late"),
            ),
            line(
                "Y",
                "2026-11-11",
                Some("2026-11-11"),
                10,
                6,
                Some("stockout"),
            ),
            line("Y", "2026-11-12", None, 10, 0, None),
            // outside both weeks: ignored
            line("Y", "2026-10-01", None, 10, 0, None),
        ];
        // Eight earlier weeks of 100 lines each: a usual week, against this week's 4.
        let usual_weeks: Vec<(Week, KpiCounts)> = (2..10)
            .map(|n| {
                let mut w = week;
                for _ in 0..n {
                    w = w.previous();
                }
                (
                    w,
                    KpiCounts {
                        lines: 100,
                        otif_lines: 95,
                        on_time_lines: 96,
                        in_full_lines: 98,
                        units_ordered: 1000,
                        units_delivered: 990,
                        measures: Default::default(),
                    },
                )
            })
            .collect();
        let pack = pack_from_lines(
            Scope::otif_for_tests("DAL", "Dallas"),
            week,
            parse_date("2026-11-20").unwrap(),
            &lines,
            &usual_weeks,
            parse_date("2026-11-12"),
            &rules,
        );
        assert_eq!((pack.numerator, pack.denominator), (1, 4));
        assert_eq!(pack.value, Some(25.0));
        assert_eq!(pack.previous_value, Some(100.0));
        assert_eq!(pack.change, Some(-75.0));
        assert_eq!(pack.target_gap, Some(25.0 - 90.0));
        assert_eq!(pack.status, Status::OffTarget);
        assert_eq!(pack.trigger.as_deref(), Some("otif_drop_trigger_pp"));
        let t = &pack.otif_tree;
        assert_eq!(
            (t.failures, t.late_only, t.short_only, t.late_and_short),
            (3, 1, 1, 1)
        );
        assert_eq!(t.by_reason[0].reason, "carrier_late");
        assert_eq!(pack.data_checks.past_due_open, 1);
        assert_eq!(pack.data_checks.failures_without_reason, 1);
        assert_eq!(pack.data_checks.days_since_latest_data, Some(8));
        // The data-quality guard: a stopped feed and a partial load are both named.
        let reasons = pack.data_checks.suspect_reasons.join(" | ");
        assert!(
            reasons.contains("no delivery recorded for 8 days (latest 2026-11-12"),
            "{reasons}"
        );
        assert_eq!(pack.data_checks.usual_lines_due, Some(100.0));
        assert!(
            reasons.contains("only 4 lines due vs about 100 in a usual week"),
            "{reasons}"
        );
        assert_eq!(pack.series.len(), 12);
        for dim in &pack.contributions {
            let sum: f64 = dim.segments.iter().map(|s| s.total).sum();
            assert!((sum - -75.0).abs() < 1e-9, "{}: {sum}", dim.dimension);
        }
        // Deterministic: the same input gives byte-identical JSON.
        let again = serde_json::to_string(&pack).unwrap();
        assert_eq!(again, serde_json::to_string(&pack.clone()).unwrap());
    }
}
