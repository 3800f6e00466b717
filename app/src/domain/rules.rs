//! Business rules: table-driven parameters, status thresholds, anomaly sensitivity, targets,
//! triggers and playbooks. The rules in force ([`Rules::in_force`]) are sent with every agent
//! request and drive the built-in analyst; `version` is recorded on every insight. Every row
//! can be disabled: a disabled row is kept (for the editor) but acts as if absent, except
//! that a disabled threshold switches its check off rather than falling back to a default.
//! Editing and validation live in [`super::rulebook`].

use super::kpi::{Metric, Scale, ScoringParams};
use serde::{Deserialize, Serialize};

/// One row of the `business_rules` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleEntry {
    pub key: String,
    /// `parameter`, `threshold` or `trigger`.
    pub kind: String,
    /// `None`: applies to every metric.
    pub metric: Option<String>,
    pub value: f64,
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A target for a metric; `site == "*"` is the network-wide default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Target {
    pub metric: String,
    pub site: String,
    /// In display units: percent (0..100) for ratio metrics.
    pub target: f64,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// What a trigger watches, evaluated on weekly values.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    /// Down at least `value` week over week (points; percent for volumes). One-sided.
    Drop,
    /// Up at least `value` week over week. One-sided.
    Rise,
    /// Moved at least `value` either way week over week. Two-sided.
    Move,
    /// The value itself below `value` (percent; lines for volumes).
    Below,
    /// The value itself above `value`.
    Above,
    /// At least `value` points (lines for volumes) below the card's target.
    BelowTarget,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::Drop,
        Condition::Rise,
        Condition::Move,
        Condition::Below,
        Condition::Above,
        Condition::BelowTarget,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Condition::Drop => "drop",
            Condition::Rise => "rise",
            Condition::Move => "move",
            Condition::Below => "below",
            Condition::Above => "above",
            Condition::BelowTarget => "below_target",
        }
    }

    pub fn parse(s: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.key() == s)
    }

    /// Week-over-week conditions need the previous week too.
    pub fn is_change(self) -> bool {
        matches!(self, Condition::Drop | Condition::Rise | Condition::Move)
    }

    /// "down 3 pts or more week over week", in the metric's units.
    pub fn describe(self, metric: Metric, value: f64) -> String {
        let average = format!(" {}", metric.change_unit());
        let (change_unit, level_unit) = match metric.scale() {
            Scale::Percent => (" pts", "%"),
            Scale::Count => ("%", " lines"),
            Scale::Average(_) => (average.as_str(), average.as_str()),
        };
        match self {
            Condition::Drop => format!("down {value}{change_unit} or more week over week"),
            Condition::Rise => format!("up {value}{change_unit} or more week over week"),
            Condition::Move => {
                format!("moved {value}{change_unit} or more either way week over week")
            }
            Condition::Below => format!("below {value}{level_unit}"),
            Condition::Above => format!("above {value}{level_unit}"),
            Condition::BelowTarget => {
                let unit = match metric.scale() {
                    Scale::Percent => " pts".to_string(),
                    Scale::Count => " lines".to_string(),
                    Scale::Average(u) => format!(" {u}"),
                };
                // "Below" is the wrong side: above the target when lower is better.
                let side = if metric.higher_is_better() {
                    "below"
                } else {
                    "above"
                };
                format!("{value}{unit} or more {side} target")
            }
        }
    }
}

/// A rule that says a card needs attention (an insight, an alert): a condition on the
/// metric's weekly value that has held for `periods` consecutive weeks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trigger {
    pub key: String,
    pub metric: String,
    pub condition: Condition,
    pub value: f64,
    /// Consecutive weeks, ending with the reported one, the condition must hold (1 = now).
    pub periods: u32,
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Trigger {
    /// Whether the condition holds at the last point of `series` (weekly values oldest
    /// first, display units) for `periods` weeks in a row. Missing weeks break a streak.
    pub fn fires(&self, metric: Metric, series: &[Option<f64>], target: Option<f64>) -> bool {
        let needed = self.periods.max(1) as usize;
        if series.len() < needed + usize::from(self.condition.is_change()) {
            return false;
        }
        (0..needed).all(|back| {
            let i = series.len() - 1 - back;
            let Some(v) = series[i] else { return false };
            let change = || -> Option<f64> {
                let p = series.get(i.checked_sub(1)?).copied().flatten()?;
                if metric.is_ratio() {
                    Some(v - p)
                } else if p > 0.0 {
                    Some(100.0 * (v - p) / p)
                } else {
                    None
                }
            };
            let eps = 1e-9;
            match self.condition {
                Condition::Drop => change().is_some_and(|c| c <= -self.value + eps),
                Condition::Rise => change().is_some_and(|c| c >= self.value - eps),
                Condition::Move => change().is_some_and(|c| c.abs() >= self.value - eps),
                Condition::Below => v < self.value,
                Condition::Above => v > self.value,
                // On the wrong side of the target by at least `value`.
                Condition::BelowTarget => {
                    target.is_some_and(|t| metric.good(t - v) >= self.value - eps)
                }
            }
        })
    }

    pub fn describe(&self) -> String {
        let metric = Metric::parse(&self.metric).unwrap_or(Metric::OTIF);
        let what = self.condition.describe(metric, self.value);
        if self.periods > 1 {
            format!("{what}, {} weeks in a row", self.periods)
        } else {
            what
        }
    }
}

/// A diagnosed cause mapped to a next action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Playbook {
    pub key: String,
    /// `reason:<code>`, `dimension:<name>`, `effect:mix` or `data`.
    pub cause: String,
    pub action: String,
    pub owner: String,
    pub priority: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rules {
    pub version: i64,
    pub entries: Vec<RuleEntry>,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    pub playbooks: Vec<Playbook>,
}

/// Where a KPI stands against its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    OnTarget,
    AtRisk,
    OffTarget,
    NoTarget,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::OnTarget => "on target",
            Status::AtRisk => "at risk",
            Status::OffTarget => "off target",
            Status::NoTarget => "no target",
        }
    }
    pub fn css(self) -> &'static str {
        match self {
            Status::OnTarget => "on-target",
            Status::AtRisk => "at-risk",
            Status::OffTarget => "off-target",
            Status::NoTarget => "no-target",
        }
    }
}

impl Rules {
    /// Only what is in force: the rules as agents see them.
    pub fn in_force(&self) -> Rules {
        Rules {
            version: self.version,
            entries: self.entries.iter().filter(|e| e.enabled).cloned().collect(),
            targets: self.targets.iter().filter(|e| e.enabled).cloned().collect(),
            triggers: self
                .triggers
                .iter()
                .filter(|e| e.enabled)
                .cloned()
                .collect(),
            playbooks: self
                .playbooks
                .iter()
                .filter(|e| e.enabled)
                .cloned()
                .collect(),
        }
    }

    fn entry(&self, key: &str) -> Option<&RuleEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// A parameter by key, or `default` when the table has no such row in force.
    pub fn value(&self, key: &str, default: f64) -> f64 {
        self.entry(key)
            .filter(|e| e.enabled)
            .map_or(default, |e| e.value)
    }

    /// A threshold by key: `None` when it is disabled (its check is off), `default` when
    /// the table has no such row (a database from before the rule existed).
    pub fn threshold(&self, key: &str, default: f64) -> Option<f64> {
        match self.entry(key) {
            Some(e) if e.enabled => Some(e.value),
            Some(_) => None,
            None => Some(default),
        }
    }

    pub fn scoring(&self) -> ScoringParams {
        ScoringParams {
            on_time_window_days: self.value("on_time_window_days", 0.0).round() as i64,
            in_full_tolerance: self.value("in_full_tolerance", 0.0).clamp(0.0, 1.0),
        }
    }

    /// A parameter for one metric: the row with that metric, else the row for all metrics
    /// (metric NULL), else `default`. Rows are keyed `name` (all) and `name.metric`.
    /// A disabled per-metric row falls back to the row for all metrics.
    pub fn per_metric(&self, name: &str, metric: Metric, default: f64) -> f64 {
        self.per_metric_row(name, metric)
            .filter(|e| e.enabled)
            .map_or(default, |e| e.value)
    }

    /// The row that decides `name` for `metric`: the metric's own row if enabled, else
    /// the row for all metrics (enabled or not).
    fn per_metric_row(&self, name: &str, metric: Metric) -> Option<&RuleEntry> {
        let specific = format!("{name}.{}", metric.key());
        self.entry(&specific)
            .filter(|e| e.enabled)
            .or_else(|| self.entry(name))
    }

    /// How sensitive "unusual" is for a metric (`anomaly_z`, `anomaly_two_sided`); `None`
    /// when detection is switched off for it (its `anomaly_z` row disabled).
    pub fn anomaly_sensitivity(
        &self,
        metric: Metric,
    ) -> Option<crate::domain::anomaly::Sensitivity> {
        if self
            .per_metric_row("anomaly_z", metric)
            .is_some_and(|e| !e.enabled)
        {
            return None;
        }
        Some(crate::domain::anomaly::Sensitivity {
            z: self.per_metric("anomaly_z", metric, 3.5).max(0.5),
            two_sided: self.per_metric("anomaly_two_sided", metric, 0.0) != 0.0,
        })
    }

    /// Money at stake on a line that fails OTIF, as a share of its cost of goods
    /// (`penalty_share_of_cost`, 3 % by default, within 0..1).
    pub fn penalty_share(&self) -> f64 {
        self.value("penalty_share_of_cost", 0.03).clamp(0.0, 1.0)
    }

    /// Changes below this many points (or two standard errors) are treated as noise.
    pub fn noise_min_pp(&self) -> f64 {
        self.value("noise_min_pp", 0.5)
    }

    /// Target for (site, metric): the site's override, else the network default.
    pub fn target(&self, site: &str, metric: Metric) -> Option<f64> {
        let key = metric.key();
        let find = |site: &str| {
            self.targets
                .iter()
                .find(|t| t.enabled && t.metric == key && t.site == site)
        };
        find(site).or_else(|| find("*")).map(|t| t.target)
    }

    /// Status from the thresholds: on target at or past the target on its good side (at
    /// or above it, or at or below it when lower is better), at risk within the band on
    /// the other side. The band is the metric's own (`at_risk_band_pp.<metric>`, a
    /// catalogue KPI's in its unit) or everyone's (`at_risk_band_pp`, 2 pp, for
    /// percentages only); a disabled band means no "at risk".
    pub fn status(&self, metric: Metric, value: Option<f64>, target: Option<f64>) -> Status {
        let (Some(v), Some(t)) = (value, target) else {
            return Status::NoTarget;
        };
        let own = format!("at_risk_band_pp.{}", metric.key());
        let band = match self.entry(&own) {
            Some(e) if e.enabled => e.value,
            Some(_) => 0.0,
            None if metric.is_percent() => self.threshold("at_risk_band_pp", 2.0).unwrap_or(0.0),
            None => 0.0,
        };
        // How far on the good side of the target the value is.
        let margin = metric.good(v - t);
        if margin >= -1e-9 {
            Status::OnTarget
        } else if band > 0.0 && margin >= -band {
            Status::AtRisk
        } else {
            Status::OffTarget
        }
    }

    /// The first trigger in force that fires on this weekly series (oldest first, ending
    /// with the reported week, display units) against the card's target.
    pub fn trigger(
        &self,
        metric: Metric,
        series: &[Option<f64>],
        target: Option<f64>,
    ) -> Option<&Trigger> {
        self.triggers
            .iter()
            .filter(|t| t.enabled && t.metric == metric.key())
            .find(|t| t.fires(metric, series, target))
    }

    /// A KPI's definition with the parameters in force, so two numbers defined differently
    /// are never compared unknowingly (OTIF has no standard definition).
    pub fn definition(&self, metric: Metric, base: &str) -> String {
        let p = self.scoring();
        let window = format!(
            "on-time window {} day(s) after the due date",
            p.on_time_window_days
        );
        let tolerance = format!("in-full tolerance {}%", p.in_full_tolerance * 100.0);
        match metric {
            Metric::OTIF => format!("{base} Line level; {window}; {tolerance}."),
            Metric::ON_TIME => format!("{base} Line level; {window}."),
            Metric::IN_FULL => format!("{base} Line level; {tolerance}."),
            _ => base.to_string(),
        }
    }

    pub fn playbook(&self, cause: &str) -> Option<&Playbook> {
        self.playbooks
            .iter()
            .find(|p| p.enabled && p.cause == cause)
    }
}

#[cfg(test)]
pub(crate) fn sample_rules() -> Rules {
    let entry = |key: &str, kind: &str, metric: Option<&str>, value: f64| RuleEntry {
        key: key.into(),
        kind: kind.into(),
        metric: metric.map(Into::into),
        value,
        description: String::new(),
        enabled: true,
    };
    let playbook = |key: &str, cause: &str| Playbook {
        key: key.into(),
        cause: cause.into(),
        action: format!("do {key}"),
        owner: "owner".into(),
        priority: "high".into(),
        enabled: true,
    };
    Rules {
        version: 1,
        entries: vec![
            entry("at_risk_band_pp", "threshold", None, 2.0),
            entry("noise_min_pp", "parameter", None, 0.5),
            entry("data_past_due_open_share", "threshold", None, 0.05),
            entry("data_unreasoned_failure_share", "threshold", None, 0.5),
        ],
        targets: vec![
            Target {
                metric: "otif".into(),
                site: "*".into(),
                target: 95.0,
                enabled: true,
            },
            Target {
                metric: "otif".into(),
                site: "DAL".into(),
                target: 90.0,
                enabled: true,
            },
        ],
        triggers: vec![Trigger {
            key: "otif_drop_trigger_pp".into(),
            metric: "otif".into(),
            condition: Condition::Drop,
            value: 3.0,
            periods: 1,
            description: String::new(),
            enabled: true,
        }],
        playbooks: vec![
            playbook("carrier_late", "reason:carrier_late"),
            playbook("stockout", "reason:stockout"),
            playbook("carrier_dimension", "dimension:carrier"),
            playbook("category_dimension", "dimension:category"),
            playbook("site_dimension", "dimension:site"),
            playbook("data_quality", "data"),
            playbook("mix_shift", "effect:mix"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_target_overrides_network_default() {
        let r = sample_rules();
        assert_eq!(r.target("DAL", Metric::OTIF), Some(90.0));
        assert_eq!(r.target("ATL", Metric::OTIF), Some(95.0));
        assert_eq!(r.target("ATL", Metric::LINES_DUE), None);
    }

    #[test]
    fn status_uses_the_at_risk_band() {
        let r = sample_rules();
        let t = Some(95.0);
        assert_eq!(r.status(Metric::OTIF, Some(95.0), t), Status::OnTarget);
        assert_eq!(r.status(Metric::OTIF, Some(93.5), t), Status::AtRisk);
        assert_eq!(r.status(Metric::OTIF, Some(92.9), t), Status::OffTarget);
        assert_eq!(r.status(Metric::OTIF, None, t), Status::NoTarget);
    }

    #[test]
    fn definitions_name_the_parameters_in_force() {
        let mut r = sample_rules();
        r.entries.push(RuleEntry {
            key: "on_time_window_days".into(),
            kind: "parameter".into(),
            metric: None,
            value: 1.0,
            description: String::new(),
            enabled: true,
        });
        let d = r.definition(Metric::OTIF, "OTIF lines over lines due.");
        assert!(
            d.contains("on-time window 1 day(s)") && d.contains("in-full tolerance 0%"),
            "{d}"
        );
        assert_eq!(r.definition(Metric::FILL_RATE, "Units."), "Units.");
    }

    fn series(values: &[f64]) -> Vec<Option<f64>> {
        values.iter().copied().map(Some).collect()
    }

    #[test]
    fn trigger_fires_on_a_drop_of_at_least_the_threshold() {
        let r = sample_rules();
        let t = Some(95.0);
        assert!(r.trigger(Metric::OTIF, &series(&[96.0, 93.0]), t).is_some());
        assert!(r.trigger(Metric::OTIF, &series(&[96.0, 93.1]), t).is_none());
        assert!(
            r.trigger(Metric::OTIF, &series(&[93.0]), t).is_none(),
            "no previous week"
        );
        assert!(r
            .trigger(Metric::ON_TIME, &series(&[99.0, 80.0]), t)
            .is_none());
    }

    fn trigger(condition: Condition, value: f64, periods: u32) -> Trigger {
        Trigger {
            key: "t".into(),
            metric: "otif".into(),
            condition,
            value,
            periods,
            description: String::new(),
            enabled: true,
        }
    }

    #[test]
    fn consecutive_periods_need_an_unbroken_streak() {
        let below = trigger(Condition::BelowTarget, 2.0, 3);
        let t = Some(95.0);
        assert!(below.fires(Metric::OTIF, &series(&[96.0, 92.0, 93.0, 90.0]), t));
        assert!(!below.fires(Metric::OTIF, &series(&[92.0, 96.0, 93.0, 90.0]), t));
        let gap = vec![Some(92.0), None, Some(92.0), Some(92.0)];
        assert!(
            !below.fires(Metric::OTIF, &gap, t),
            "a missing week breaks it"
        );
        assert!(!below.fires(Metric::OTIF, &series(&[92.0, 92.0, 92.0]), None));
        // Three drops in a row need four weeks.
        let falling = trigger(Condition::Drop, 1.0, 3);
        assert!(falling.fires(Metric::OTIF, &series(&[98.0, 97.0, 96.0, 95.0]), t));
        assert!(!falling.fires(Metric::OTIF, &series(&[97.0, 96.0, 95.0]), t));
    }

    #[test]
    fn one_sided_conditions_ignore_the_other_direction() {
        let s_up = series(&[90.0, 95.0]);
        let s_down = series(&[95.0, 90.0]);
        let t = None;
        assert!(!trigger(Condition::Drop, 3.0, 1).fires(Metric::OTIF, &s_up, t));
        assert!(trigger(Condition::Rise, 3.0, 1).fires(Metric::OTIF, &s_up, t));
        assert!(!trigger(Condition::Rise, 3.0, 1).fires(Metric::OTIF, &s_down, t));
        let moved = trigger(Condition::Move, 3.0, 1);
        assert!(moved.fires(Metric::OTIF, &s_up, t) && moved.fires(Metric::OTIF, &s_down, t));
        // Volumes move in percent of the previous week.
        let surge = Trigger {
            metric: "lines_due".into(),
            ..trigger(Condition::Rise, 20.0, 1)
        };
        assert!(surge.fires(Metric::LINES_DUE, &series(&[1000.0, 1200.0]), None));
        assert!(!surge.fires(Metric::LINES_DUE, &series(&[1000.0, 1190.0]), None));
    }

    #[test]
    fn disabled_rows_act_as_absent_and_disabled_thresholds_switch_off() {
        let mut r = sample_rules();
        r.triggers[0].enabled = false;
        assert!(r
            .trigger(Metric::OTIF, &series(&[96.0, 90.0]), None)
            .is_none());
        r.targets[1].enabled = false; // DAL's own target off: the network's applies
        assert_eq!(r.target("DAL", Metric::OTIF), Some(95.0));
        r.entries[0].enabled = false; // no at-risk band
        assert_eq!(
            r.status(Metric::OTIF, Some(94.0), Some(95.0)),
            Status::OffTarget
        );
        r.playbooks[0].enabled = false;
        assert!(r.playbook("reason:carrier_late").is_none());
        assert_eq!(r.in_force().playbooks.len(), r.playbooks.len() - 1);
        assert!(r.anomaly_sensitivity(Metric::OTIF).is_some());
        r.entries.push(RuleEntry {
            key: "anomaly_z".into(),
            kind: "sensitivity".into(),
            metric: None,
            value: 3.0,
            description: String::new(),
            enabled: false,
        });
        assert!(r.anomaly_sensitivity(Metric::OTIF).is_none());
        r.entries.push(RuleEntry {
            key: "anomaly_z.otif".into(),
            kind: "sensitivity".into(),
            metric: Some("otif".into()),
            value: 5.0,
            description: String::new(),
            enabled: true,
        });
        assert_eq!(r.anomaly_sensitivity(Metric::OTIF).map(|s| s.z), Some(5.0));
        assert!(r.anomaly_sensitivity(Metric::FILL_RATE).is_none());
    }

    #[test]
    fn a_kpi_where_lower_is_better_is_on_target_below_it_and_at_risk_just_above() {
        use crate::domain::catalogue::{KpiDef, Unit};
        let def = KpiDef {
            key: "rules_test_late_putaway".into(),
            name: "Late put-away".into(),
            description: String::new(),
            unit: Unit::Pct,
            higher_is_better: false,
            numerator: "1".into(),
            denominator: None,
            target: None,
            at_risk: None,
        };
        let m = Metric::register(&def, 0);
        let mut rules = sample_rules();
        rules.entries.push(RuleEntry {
            key: "at_risk_band_pp.rules_test_late_putaway".into(),
            kind: "threshold".into(),
            metric: Some(def.key.clone()),
            value: 3.0,
            description: String::new(),
            enabled: true,
        });
        let t = Some(5.0);
        assert_eq!(rules.status(m, Some(4.0), t), Status::OnTarget);
        assert_eq!(rules.status(m, Some(5.0), t), Status::OnTarget);
        assert_eq!(rules.status(m, Some(7.5), t), Status::AtRisk);
        assert_eq!(rules.status(m, Some(8.5), t), Status::OffTarget);
        // Higher is better: the mirror image, with the global 2 pp band.
        assert_eq!(
            rules.status(Metric::OTIF, Some(94.0), Some(95.0)),
            Status::AtRisk
        );
        assert_eq!(
            rules.status(Metric::OTIF, Some(96.0), Some(95.0)),
            Status::OnTarget
        );
        // "Below target" is the wrong side of it: above, when lower is better.
        let trigger = Trigger {
            key: "t".into(),
            metric: def.key.clone(),
            condition: Condition::BelowTarget,
            value: 2.0,
            periods: 1,
            description: String::new(),
            enabled: true,
        };
        assert!(trigger.fires(m, &[Some(8.0)], t));
        assert!(!trigger.fires(m, &[Some(6.0)], t));
        assert!(!trigger.fires(m, &[Some(1.0)], t));
        assert_eq!(
            Condition::BelowTarget.describe(m, 2.0),
            "2 pts or more above target"
        );
    }
}
