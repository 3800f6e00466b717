//! Business rules: table-driven parameters, status thresholds, triggers, targets and
//! playbooks. The whole [`Rules`] value is sent with every agent request and drives the
//! built-in analyst; `version` is recorded on every insight.

use super::kpi::{Metric, ScoringParams};
use serde::{Deserialize, Serialize};

/// One row of the `business_rules` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleEntry {
    pub key: String,
    /// `parameter`, `threshold` or `trigger`.
    pub kind: String,
    /// `None`: applies to every metric.
    pub metric: Option<String>,
    pub value: f64,
    pub description: String,
}

/// A target for a metric; `site == "*"` is the network-wide default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub metric: String,
    pub site: String,
    /// In display units: percent (0..100) for ratio metrics.
    pub target: f64,
}

/// A diagnosed cause mapped to a next action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Playbook {
    pub key: String,
    /// `reason:<code>`, `dimension:<name>`, `effect:mix` or `data`.
    pub cause: String,
    pub action: String,
    pub owner: String,
    pub priority: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    pub version: i64,
    pub entries: Vec<RuleEntry>,
    pub targets: Vec<Target>,
    pub playbooks: Vec<Playbook>,
}

/// Where a KPI stands against its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A rule value by key, or `default` when the table has no such row.
    pub fn value(&self, key: &str, default: f64) -> f64 {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or(default, |e| e.value)
    }

    pub fn scoring(&self) -> ScoringParams {
        ScoringParams {
            on_time_window_days: self.value("on_time_window_days", 0.0).round() as i64,
            in_full_tolerance: self.value("in_full_tolerance", 0.0).clamp(0.0, 1.0),
        }
    }

    /// A parameter for one metric: the row with that metric, else the row for all metrics
    /// (metric NULL), else `default`. Rows are keyed `name` (all) and `name.metric`.
    pub fn per_metric(&self, name: &str, metric: Metric, default: f64) -> f64 {
        let specific = format!("{name}.{}", metric.key());
        self.entries
            .iter()
            .find(|e| e.key == specific)
            .or_else(|| self.entries.iter().find(|e| e.key == name))
            .map_or(default, |e| e.value)
    }

    /// How sensitive "unusual" is for a metric (`anomaly_z`, `anomaly_two_sided`).
    pub fn anomaly_sensitivity(&self, metric: Metric) -> crate::domain::anomaly::Sensitivity {
        crate::domain::anomaly::Sensitivity {
            z: self.per_metric("anomaly_z", metric, 3.5).max(0.5),
            two_sided: self.per_metric("anomaly_two_sided", metric, 0.0) != 0.0,
        }
    }

    /// Changes below this many points (or two standard errors) are treated as noise.
    pub fn noise_min_pp(&self) -> f64 {
        self.value("noise_min_pp", 0.5)
    }

    /// Target for (site, metric): the site's override, else the network default.
    pub fn target(&self, site: &str, metric: Metric) -> Option<f64> {
        let key = metric.key();
        self.targets
            .iter()
            .find(|t| t.metric == key && t.site == site)
            .or_else(|| {
                self.targets
                    .iter()
                    .find(|t| t.metric == key && t.site == "*")
            })
            .map(|t| t.target)
    }

    /// Status from the thresholds: on target at or above target, at risk within the band.
    pub fn status(&self, metric: Metric, value: Option<f64>, target: Option<f64>) -> Status {
        let (Some(v), Some(t)) = (value, target) else {
            return Status::NoTarget;
        };
        let band = self.value("at_risk_band_pp", 2.0);
        if v >= t - 1e-9 {
            Status::OnTarget
        } else if metric.is_ratio() && v >= t - band {
            Status::AtRisk
        } else {
            Status::OffTarget
        }
    }

    /// The trigger this week-over-week change fires, if any (a drop of at least the rule's
    /// points).
    pub fn trigger(&self, metric: Metric, change: Option<f64>) -> Option<&RuleEntry> {
        let change = change?;
        self.entries.iter().find(|e| {
            e.kind == "trigger" && e.metric.as_deref() == Some(metric.key()) && change <= -e.value
        })
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
            Metric::Otif => format!("{base} Line level; {window}; {tolerance}."),
            Metric::OnTime => format!("{base} Line level; {window}."),
            Metric::InFull => format!("{base} Line level; {tolerance}."),
            Metric::FillRate | Metric::LinesDue => base.to_string(),
        }
    }

    pub fn playbook(&self, cause: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.cause == cause)
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
    };
    let playbook = |key: &str, cause: &str| Playbook {
        key: key.into(),
        cause: cause.into(),
        action: format!("do {key}"),
        owner: "owner".into(),
        priority: "high".into(),
    };
    Rules {
        version: 1,
        entries: vec![
            entry("at_risk_band_pp", "threshold", None, 2.0),
            entry("otif_drop_trigger_pp", "trigger", Some("otif"), 3.0),
            entry("noise_min_pp", "parameter", None, 0.5),
            entry("data_past_due_open_share", "threshold", None, 0.05),
            entry("data_unreasoned_failure_share", "threshold", None, 0.5),
        ],
        targets: vec![
            Target {
                metric: "otif".into(),
                site: "*".into(),
                target: 95.0,
            },
            Target {
                metric: "otif".into(),
                site: "DAL".into(),
                target: 90.0,
            },
        ],
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
        assert_eq!(r.target("DAL", Metric::Otif), Some(90.0));
        assert_eq!(r.target("ATL", Metric::Otif), Some(95.0));
        assert_eq!(r.target("ATL", Metric::LinesDue), None);
    }

    #[test]
    fn status_uses_the_at_risk_band() {
        let r = sample_rules();
        let t = Some(95.0);
        assert_eq!(r.status(Metric::Otif, Some(95.0), t), Status::OnTarget);
        assert_eq!(r.status(Metric::Otif, Some(93.5), t), Status::AtRisk);
        assert_eq!(r.status(Metric::Otif, Some(92.9), t), Status::OffTarget);
        assert_eq!(r.status(Metric::Otif, None, t), Status::NoTarget);
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
        });
        let d = r.definition(Metric::Otif, "OTIF lines over lines due.");
        assert!(
            d.contains("on-time window 1 day(s)") && d.contains("in-full tolerance 0%"),
            "{d}"
        );
        assert_eq!(r.definition(Metric::FillRate, "Units."), "Units.");
    }

    #[test]
    fn trigger_fires_on_a_drop_of_at_least_the_threshold() {
        let r = sample_rules();
        assert!(r.trigger(Metric::Otif, Some(-3.0)).is_some());
        assert!(r.trigger(Metric::Otif, Some(-2.9)).is_none());
        assert!(r.trigger(Metric::OnTime, Some(-10.0)).is_none());
    }
}
