//! Editing the rule book: one edit at a time (create, update, delete, enable, disable a
//! rule, target, trigger or playbook), validated here, in the browser as the user types and
//! again on the server before it is stored. Every stored edit is a new rules version.
//!
//! Built-in rules (the [`CATALOGUE`]) have a kind, a range and a unit; they can be edited
//! and, where a rule is a check rather than a definition, disabled, but not deleted, so a
//! deleted row can never silently fall back to a hidden default. Per-metric overrides
//! (`anomaly_z.otif`) and custom parameters (passed to agents, ignored by the built-in
//! analyst) can be created and deleted.

use super::kpi::Metric;
use super::rules::{Condition, Playbook, RuleEntry, Rules, Target, Trigger};
use serde::{Deserialize, Serialize};

/// One row of the rule book, as edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleItem {
    Rule(RuleEntry),
    Target(Target),
    Trigger(Trigger),
    Playbook(Playbook),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EditOp {
    Create,
    Update,
    Delete,
    Enable,
    Disable,
}

impl EditOp {
    fn past(self) -> &'static str {
        match self {
            EditOp::Create => "created",
            EditOp::Update => "changed",
            EditOp::Delete => "deleted",
            EditOp::Enable => "enabled",
            EditOp::Disable => "disabled",
        }
    }
}

/// One change to the rule book. `expected_version` is the version the editor was looking
/// at: a save against an older version is refused rather than overwriting someone else's
/// change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleEdit {
    pub op: EditOp,
    pub item: RuleItem,
    pub expected_version: i64,
}

/// A validation message tied to the form field it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

fn problem(field: &str, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// A built-in rule: what it is, its allowed range, and what can be done with it.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub key: &'static str,
    pub kind: &'static str,
    pub min: f64,
    pub max: f64,
    pub integer: bool,
    /// Rows keyed `key.<metric>` may override it for one metric.
    pub per_metric: bool,
    /// Checks can be switched off; definitions cannot.
    pub can_disable: bool,
    pub unit: &'static str,
}

const fn known(
    key: &'static str,
    kind: &'static str,
    (min, max): (f64, f64),
    unit: &'static str,
) -> Known {
    Known {
        key,
        kind,
        min,
        max,
        integer: false,
        per_metric: false,
        can_disable: true,
        unit,
    }
}

pub const CATALOGUE: [Known; 11] = [
    Known {
        integer: true,
        can_disable: false,
        ..known("on_time_window_days", "parameter", (0.0, 30.0), "days")
    },
    Known {
        can_disable: false,
        ..known("in_full_tolerance", "parameter", (0.0, 0.5), "share")
    },
    Known {
        can_disable: false,
        ..known("noise_min_pp", "parameter", (0.0, 20.0), "points")
    },
    Known {
        can_disable: false,
        ..known("penalty_share_of_cost", "parameter", (0.0, 1.0), "share")
    },
    // Per KPI too (`at_risk_band_pp.<kpi>`; a catalogue KPI's band is in its own unit).
    Known {
        per_metric: true,
        ..known("at_risk_band_pp", "threshold", (0.1, 50.0), "points")
    },
    known("data_past_due_open_share", "threshold", (0.0, 1.0), "share"),
    known(
        "data_unreasoned_failure_share",
        "threshold",
        (0.0, 1.0),
        "share",
    ),
    known("data_volume_low_share", "threshold", (0.0, 1.0), "share"),
    Known {
        integer: true,
        ..known("data_max_age_days", "threshold", (0.0, 365.0), "days")
    },
    Known {
        per_metric: true,
        ..known("anomaly_z", "sensitivity", (1.0, 10.0), "robust z")
    },
    Known {
        integer: true,
        per_metric: true,
        ..known("anomaly_two_sided", "sensitivity", (0.0, 1.0), "0 or 1")
    },
];

pub fn known_rule(key: &str) -> Option<&'static Known> {
    let base = key.split('.').next().unwrap_or(key);
    CATALOGUE.iter().find(|k| k.key == base)
}

pub const KINDS: [&str; 3] = ["parameter", "threshold", "sensitivity"];
pub const PRIORITIES: [&str; 3] = ["high", "medium", "low"];
/// Dimensions the evidence pack breaks a KPI down by (playbook causes `dimension:<name>`).
pub const DIMENSIONS: [&str; 5] = ["site", "carrier", "customer", "category", "sku"];
pub const MAX_DESCRIPTION: usize = 300;
pub const MAX_ACTION: usize = 500;
pub const MAX_OWNER: usize = 80;
pub const MAX_PERIODS: u32 = 12;

fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_key(key: &str, out: &mut Vec<Problem>) {
    if key.is_empty() || key.len() > 64 || !is_slug(key) {
        out.push(problem(
            "key",
            "a key is 1 to 64 characters: lower-case letters, digits and _, starting with a letter",
        ));
    }
}

fn check_text(field: &str, text: &str, max: usize, required: bool, out: &mut Vec<Problem>) {
    let n = text.trim().chars().count();
    if required && n == 0 {
        out.push(problem(field, format!("{field} is required")));
    } else if n > max {
        out.push(problem(
            field,
            format!("{field} is {n} characters; at most {max}"),
        ));
    }
}

fn check_metric(metric: &str, out: &mut Vec<Problem>) -> Option<Metric> {
    let m = Metric::parse(metric);
    if m.is_none() {
        let all: Vec<&str> = Metric::all().iter().map(|m| m.key()).collect();
        out.push(problem(
            "metric",
            format!("unknown KPI '{metric}'; one of {}", all.join(", ")),
        ));
    }
    m
}

/// Whether a playbook cause is one the analysis can name.
pub fn cause_is_valid(cause: &str) -> bool {
    match cause.split_once(':') {
        Some(("reason", code)) => is_slug(code) && code.len() <= 64,
        // Opsight's dimensions, or a name the catalogue may give one.
        Some(("dimension", d)) => {
            DIMENSIONS.contains(&d) || super::catalogue::check_name(d, "dimension").is_ok()
        }
        Some(("effect", "mix")) => true,
        None => cause == "data",
        _ => false,
    }
}

impl RuleItem {
    /// What identifies the row: its key, or metric and site for a target.
    pub fn id(&self) -> String {
        match self {
            RuleItem::Rule(e) => e.key.clone(),
            RuleItem::Target(t) => format!("{}@{}", t.metric, t.site),
            RuleItem::Trigger(t) => t.key.clone(),
            RuleItem::Playbook(p) => p.key.clone(),
        }
    }

    pub fn noun(&self) -> &'static str {
        match self {
            RuleItem::Rule(_) => "rule",
            RuleItem::Target(_) => "target",
            RuleItem::Trigger(_) => "trigger",
            RuleItem::Playbook(_) => "playbook",
        }
    }

    fn label(&self) -> String {
        match self {
            RuleItem::Target(t) => format!(
                "{} target for {}",
                t.metric,
                if t.site == "*" { "all sites" } else { &t.site }
            ),
            other => format!("{} {}", other.noun(), other.id()),
        }
    }

    /// The same row in `rules`, if it exists.
    pub fn find(&self, rules: &Rules) -> Option<RuleItem> {
        match self {
            RuleItem::Rule(e) => rules
                .entries
                .iter()
                .find(|x| x.key == e.key)
                .cloned()
                .map(RuleItem::Rule),
            RuleItem::Target(t) => rules
                .targets
                .iter()
                .find(|x| x.metric == t.metric && x.site == t.site)
                .cloned()
                .map(RuleItem::Target),
            RuleItem::Trigger(t) => rules
                .triggers
                .iter()
                .find(|x| x.key == t.key)
                .cloned()
                .map(RuleItem::Trigger),
            RuleItem::Playbook(p) => rules
                .playbooks
                .iter()
                .find(|x| x.key == p.key)
                .cloned()
                .map(RuleItem::Playbook),
        }
    }

    fn enabled(&self) -> bool {
        match self {
            RuleItem::Rule(e) => e.enabled,
            RuleItem::Target(t) => t.enabled,
            RuleItem::Trigger(t) => t.enabled,
            RuleItem::Playbook(p) => p.enabled,
        }
    }

    fn set_enabled(&mut self, on: bool) {
        match self {
            RuleItem::Rule(e) => e.enabled = on,
            RuleItem::Target(t) => t.enabled = on,
            RuleItem::Trigger(t) => t.enabled = on,
            RuleItem::Playbook(p) => p.enabled = on,
        }
    }
}

/// Every problem with `edit` against the current rule book (empty: it may be saved).
/// `sites` are the known site codes, for targets.
pub fn check(rules: &Rules, edit: &RuleEdit, sites: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    if edit.expected_version != rules.version {
        out.push(problem(
            "version",
            format!(
                "the rules changed since you opened them (now version {}, you edited version {}); reload and try again",
                rules.version, edit.expected_version
            ),
        ));
        return out;
    }
    let existing = edit.item.find(rules);
    match (edit.op, &existing) {
        (EditOp::Create, Some(_)) => {
            let field = if matches!(edit.item, RuleItem::Target(_)) {
                "site"
            } else {
                "key"
            };
            out.push(problem(
                field,
                format!("{} already exists", edit.item.label()),
            ));
            return out;
        }
        (EditOp::Create, None) => {}
        (_, None) => {
            out.push(problem("key", format!("there is no {}", edit.item.label())));
            return out;
        }
        _ => {}
    }
    match edit.op {
        EditOp::Create | EditOp::Update => check_fields(&edit.item, sites, &mut out),
        EditOp::Delete => {
            if let RuleItem::Rule(e) = &edit.item {
                if let Some(k) = known_rule(&e.key).filter(|_| !e.key.contains('.')) {
                    out.push(problem(
                        "key",
                        if k.can_disable {
                            format!("{} is built in: disable it instead", k.key)
                        } else {
                            format!(
                                "{} is built in and defines the KPIs: edit its value instead",
                                k.key
                            )
                        },
                    ));
                }
            }
        }
        EditOp::Disable => {
            if let RuleItem::Rule(e) = &edit.item {
                if known_rule(&e.key).is_some_and(|k| !k.can_disable) {
                    out.push(problem(
                        "key",
                        format!(
                            "{} defines the KPIs and cannot be disabled: edit its value instead",
                            e.key
                        ),
                    ));
                }
            }
        }
        EditOp::Enable => {}
    }
    // One playbook in force per cause: otherwise which action applies would be arbitrary.
    let enabling = match edit.op {
        EditOp::Enable => true,
        EditOp::Create | EditOp::Update => edit.item.enabled(),
        _ => false,
    };
    if let (true, RuleItem::Playbook(p)) = (enabling, &edit.item) {
        let cause = existing
            .as_ref()
            .filter(|_| edit.op == EditOp::Enable)
            .and_then(|e| match e {
                RuleItem::Playbook(x) => Some(x.cause.clone()),
                _ => None,
            })
            .unwrap_or_else(|| p.cause.clone());
        if let Some(other) = rules
            .playbooks
            .iter()
            .find(|x| x.enabled && x.cause == cause && x.key != p.key)
        {
            out.push(problem(
                "cause",
                format!(
                    "playbook {} already covers {cause}: disable it first, or edit it",
                    other.key
                ),
            ));
        }
    }
    out
}

fn check_fields(item: &RuleItem, sites: &[String], out: &mut Vec<Problem>) {
    match item {
        RuleItem::Rule(e) => check_rule(e, out),
        RuleItem::Target(t) => {
            let metric = check_metric(&t.metric, out);
            if t.site != "*" && !sites.contains(&t.site) {
                out.push(problem(
                    "site",
                    format!("unknown site '{}'; a site code or * for all sites", t.site),
                ));
            }
            let percent = metric.is_none_or(Metric::is_percent);
            let average = metric.is_some_and(|m| m.is_ratio() && !m.is_percent());
            // 0 % is a target only where lower is better.
            let floor_ok =
                |t: f64| t > 0.0 || (t == 0.0 && metric.is_some_and(|m| !m.higher_is_better()));
            if !t.target.is_finite() || t.target.abs() > 1.0e12 {
                out.push(problem("target", "a target is a number"));
            } else if percent && !(floor_ok(t.target) && t.target <= 100.0) {
                out.push(problem(
                    "target",
                    "a target is a percentage above 0 and at most 100",
                ));
            } else if !percent && !average && t.target < 0.0 {
                out.push(problem("target", "a volume target is 0 lines or more"));
            }
        }
        RuleItem::Trigger(t) => {
            check_key(&t.key, out);
            let metric = check_metric(&t.metric, out);
            // Percentages are bounded by 100; an average's unit is its own.
            let ratio = metric.is_none_or(Metric::is_percent);
            let average = metric.is_some_and(|m| m.is_ratio() && !m.is_percent());
            let v = t.value;
            let ok = v.is_finite()
                && (average && v.abs() <= 1.0e12 && (v > 0.0 || !t.condition.is_change())
                    || !average
                        && match t.condition {
                            Condition::Drop | Condition::Rise | Condition::Move => {
                                v > 0.0 && v <= if ratio { 100.0 } else { 1000.0 }
                            }
                            Condition::Below | Condition::Above => {
                                v >= 0.0 && (!ratio || v <= 100.0)
                            }
                            Condition::BelowTarget => v >= 0.0 && (!ratio || v <= 100.0),
                        });
            if !ok {
                out.push(problem(
                    "value",
                    match (t.condition.is_change(), ratio) {
                        (true, true) => "a change is more than 0 and at most 100 points",
                        (true, false) => "a volume change is more than 0 and at most 1000 %",
                        (false, true) => "a level is 0 to 100 %",
                        (false, false) => "a volume level is 0 lines or more",
                    },
                ));
            }
            // The dashboard holds 12 weeks; a week-over-week streak also needs the week
            // before its first.
            let max = if t.condition.is_change() {
                MAX_PERIODS - 1
            } else {
                MAX_PERIODS
            };
            if t.periods == 0 || t.periods > max {
                out.push(problem(
                    "periods",
                    format!("consecutive weeks is 1 to {max} for this condition"),
                ));
            }
            check_text("description", &t.description, MAX_DESCRIPTION, false, out);
        }
        RuleItem::Playbook(p) => {
            check_key(&p.key, out);
            if !cause_is_valid(&p.cause) {
                out.push(problem(
                    "cause",
                    format!(
                        "a cause is reason:<code>, dimension:<{}>, effect:mix or data",
                        DIMENSIONS.join("|")
                    ),
                ));
            }
            check_text("action", &p.action, MAX_ACTION, true, out);
            check_text("owner", &p.owner, MAX_OWNER, true, out);
            if !PRIORITIES.contains(&p.priority.as_str()) {
                out.push(problem("priority", "priority is high, medium or low"));
            }
        }
    }
}

fn check_rule(e: &RuleEntry, out: &mut Vec<Problem>) {
    let (base, suffix) = match e.key.split_once('.') {
        Some((b, s)) => (b, Some(s)),
        None => (e.key.as_str(), None),
    };
    check_key(base, out);
    if !KINDS.contains(&e.kind.as_str()) {
        out.push(problem(
            "kind",
            "kind is parameter, threshold or sensitivity",
        ));
    }
    check_text("description", &e.description, MAX_DESCRIPTION, false, out);
    if !e.value.is_finite() {
        out.push(problem("value", "value must be a number"));
    }
    let Some(k) = known_rule(base) else {
        // Custom rules mean nothing to Opsight itself: they are context for agents.
        if suffix.is_some() {
            out.push(problem(
                "key",
                format!("only built-in rules have per-KPI versions; '{base}' is not one"),
            ));
        }
        if e.kind != "parameter" {
            out.push(problem(
                "kind",
                "a custom rule is a parameter: it is passed to agents, and Opsight's own checks do not read it",
            ));
        }
        if e.metric
            .as_deref()
            .is_some_and(|m| Metric::parse(m).is_none())
        {
            check_metric(e.metric.as_deref().unwrap_or_default(), out);
        }
        check_text("description", &e.description, MAX_DESCRIPTION, true, out);
        return;
    };
    if e.kind != k.kind {
        out.push(problem("kind", format!("{} is a {}", k.key, k.kind)));
    }
    if !e.enabled && !k.can_disable && !e.key.contains('.') {
        out.push(problem(
            "enabled",
            format!("{} defines the KPIs and cannot be disabled", k.key),
        ));
    }
    match suffix {
        Some(_) if !k.per_metric => out.push(problem(
            "key",
            format!("{} applies to all KPIs; it has no per-KPI version", k.key),
        )),
        Some(m) => {
            if Metric::parse(m).is_none() {
                check_metric(m, out);
            } else if e.metric.as_deref() != Some(m) {
                out.push(problem(
                    "metric",
                    format!("{} applies to {m}: set the KPI to {m}", e.key),
                ));
            }
        }
        None => {
            if e.metric.is_some() {
                out.push(problem(
                    "metric",
                    format!(
                        "{} applies to all KPIs; for one KPI create {}.<kpi>",
                        k.key, k.key
                    ),
                ));
            }
        }
    }
    // A catalogue KPI's band is in its own unit (days, lines): zero or more.
    let own_unit = k.key == "at_risk_band_pp"
        && suffix
            .and_then(Metric::parse)
            .is_some_and(|m| !m.is_built_in() && !m.is_percent());
    let in_range = if own_unit {
        e.value >= 0.0 && e.value <= 1.0e12
    } else {
        e.value >= k.min && e.value <= k.max && (!k.integer || e.value.fract() == 0.0)
    };
    if e.value.is_finite() && !in_range {
        out.push(problem(
            "value",
            format!(
                "{} is {}from {} to {} ({})",
                k.key,
                if k.integer { "a whole number " } else { "" },
                k.min,
                k.max,
                k.unit
            ),
        ));
    }
}

/// The rule book after `edit` (already checked), and a one-line summary of the change.
pub fn apply(rules: &Rules, edit: &RuleEdit) -> (Rules, String) {
    let mut next = rules.clone();
    next.version = rules.version + 1;
    let before = edit.item.find(rules);
    let mut item = match edit.op {
        EditOp::Enable | EditOp::Disable => before.clone().unwrap_or_else(|| edit.item.clone()),
        _ => edit.item.clone(),
    };
    match edit.op {
        EditOp::Enable => item.set_enabled(true),
        EditOp::Disable => item.set_enabled(false),
        _ => {}
    }
    let delete = edit.op == EditOp::Delete;
    fn put<T: Clone>(rows: &mut Vec<T>, same: impl Fn(&T) -> bool, row: Option<T>) {
        match (rows.iter().position(same), row) {
            (Some(i), Some(r)) => rows[i] = r,
            (Some(i), None) => {
                rows.remove(i);
            }
            (None, Some(r)) => rows.push(r),
            (None, None) => {}
        }
    }
    match &item {
        RuleItem::Rule(e) => put(
            &mut next.entries,
            |x| x.key == e.key,
            (!delete).then(|| e.clone()),
        ),
        RuleItem::Target(t) => put(
            &mut next.targets,
            |x| x.metric == t.metric && x.site == t.site,
            (!delete).then(|| t.clone()),
        ),
        RuleItem::Trigger(t) => put(
            &mut next.triggers,
            |x| x.key == t.key,
            (!delete).then(|| t.clone()),
        ),
        RuleItem::Playbook(p) => put(
            &mut next.playbooks,
            |x| x.key == p.key,
            (!delete).then(|| p.clone()),
        ),
    }
    let what = match (&before, &item, edit.op) {
        (Some(RuleItem::Rule(a)), RuleItem::Rule(b), EditOp::Update) if a.value != b.value => {
            format!(": {} → {}", a.value, b.value)
        }
        (Some(RuleItem::Target(a)), RuleItem::Target(b), EditOp::Update)
            if a.target != b.target =>
        {
            format!(": {} → {}", a.target, b.target)
        }
        (_, RuleItem::Trigger(t), EditOp::Create | EditOp::Update) => {
            format!(" ({} {})", t.metric, t.describe())
        }
        (_, RuleItem::Playbook(p), EditOp::Create | EditOp::Update) => {
            format!(" ({} → {}, {})", p.cause, p.owner, p.priority)
        }
        _ => String::new(),
    };
    let summary = format!("{} {}{what}", edit.op.past(), item.label());
    (next, summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::sample_rules;

    fn edit(op: EditOp, item: RuleItem) -> RuleEdit {
        RuleEdit {
            op,
            item,
            expected_version: 1,
        }
    }

    fn sites() -> Vec<String> {
        vec!["DAL".into(), "ATL".into()]
    }

    /// The fields with problems, sorted.
    fn fields(p: &[Problem]) -> Vec<&str> {
        let mut f: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        f.sort_unstable();
        f
    }

    fn rule(key: &str, kind: &str, metric: Option<&str>, value: f64) -> RuleItem {
        RuleItem::Rule(RuleEntry {
            key: key.into(),
            kind: kind.into(),
            metric: metric.map(Into::into),
            value,
            description: "why".into(),
            enabled: true,
        })
    }

    #[test]
    fn built_in_rules_keep_their_kind_range_and_scope() {
        let r = sample_rules();
        let ok = edit(
            EditOp::Update,
            rule("at_risk_band_pp", "threshold", None, 3.0),
        );
        assert!(check(&r, &ok, &sites()).is_empty());
        let p = check(
            &r,
            &edit(
                EditOp::Update,
                rule("at_risk_band_pp", "threshold", None, 80.0),
            ),
            &sites(),
        );
        assert_eq!(fields(&p), ["value"]);
        assert!(p[0].message.contains("0.1 to 50"), "{p:?}");
        let p = check(
            &r,
            &edit(
                EditOp::Update,
                rule("at_risk_band_pp", "parameter", Some("otif"), f64::NAN),
            ),
            &sites(),
        );
        assert_eq!(fields(&p), ["kind", "metric", "value"], "{p:?}");
    }

    #[test]
    fn per_kpi_overrides_name_their_kpi() {
        let r = sample_rules();
        let good = edit(
            EditOp::Create,
            rule("anomaly_z.otif", "sensitivity", Some("otif"), 5.0),
        );
        assert!(check(&r, &good, &sites()).is_empty());
        let wrong_metric = edit(
            EditOp::Create,
            rule("anomaly_z.otif", "sensitivity", Some("fill_rate"), 5.0),
        );
        assert_eq!(fields(&check(&r, &wrong_metric, &sites())), ["metric"]);
        // A KPI's own at-risk band (a catalogue KPI's comes from its definition).
        let band = edit(
            EditOp::Create,
            rule("at_risk_band_pp.otif", "threshold", Some("otif"), 1.0),
        );
        assert!(check(&r, &band, &sites()).is_empty());
        let no_override = edit(
            EditOp::Create,
            rule("noise_min_pp.otif", "parameter", Some("otif"), 1.0),
        );
        assert_eq!(fields(&check(&r, &no_override, &sites())), ["key"]);
        let bad_kpi = edit(
            EditOp::Create,
            rule("anomaly_z.otf", "sensitivity", Some("otf"), 5.0),
        );
        assert!(check(&r, &bad_kpi, &sites())[0]
            .message
            .contains("unknown KPI 'otf'"));
    }

    #[test]
    fn built_ins_cannot_be_deleted_and_definitions_cannot_be_disabled() {
        let mut r = sample_rules();
        r.entries.push(RuleEntry {
            key: "on_time_window_days".into(),
            kind: "parameter".into(),
            metric: None,
            value: 0.0,
            description: String::new(),
            enabled: true,
        });
        let del = check(
            &r,
            &edit(
                EditOp::Delete,
                rule("at_risk_band_pp", "threshold", None, 2.0),
            ),
            &sites(),
        );
        assert!(del[0].message.contains("disable it instead"), "{del:?}");
        let off = check(
            &r,
            &edit(
                EditOp::Disable,
                rule("on_time_window_days", "parameter", None, 0.0),
            ),
            &sites(),
        );
        assert!(off[0].message.contains("cannot be disabled"), "{off:?}");
        assert!(check(
            &r,
            &edit(
                EditOp::Disable,
                rule("at_risk_band_pp", "threshold", None, 2.0)
            ),
            &sites()
        )
        .is_empty());
    }

    #[test]
    fn custom_rules_are_described_parameters() {
        let r = sample_rules();
        let mut custom = rule("peak_season", "parameter", None, 1.0);
        assert!(check(&r, &edit(EditOp::Create, custom.clone()), &sites()).is_empty());
        if let RuleItem::Rule(e) = &mut custom {
            e.kind = "threshold".into();
            e.description = " ".into();
        }
        assert_eq!(
            fields(&check(&r, &edit(EditOp::Create, custom), &sites())),
            ["description", "kind"]
        );
        let bad_key = rule("Peak Season", "parameter", None, 1.0);
        assert_eq!(
            fields(&check(&r, &edit(EditOp::Create, bad_key), &sites())),
            ["key"]
        );
    }

    #[test]
    fn create_update_and_version_conflicts() {
        let r = sample_rules();
        let dup = check(
            &r,
            &edit(
                EditOp::Create,
                rule("at_risk_band_pp", "threshold", None, 2.0),
            ),
            &sites(),
        );
        assert!(dup[0].message.contains("already exists"));
        let missing = check(
            &r,
            &edit(EditOp::Update, rule("nope", "parameter", None, 2.0)),
            &sites(),
        );
        assert!(missing[0].message.contains("there is no rule nope"));
        let stale = RuleEdit {
            expected_version: 0,
            ..edit(
                EditOp::Update,
                rule("at_risk_band_pp", "threshold", None, 2.0),
            )
        };
        assert_eq!(fields(&check(&r, &stale, &sites())), ["version"]);
    }

    #[test]
    fn targets_need_a_known_site_and_a_percentage() {
        let r = sample_rules();
        let t = |site: &str, target: f64| {
            RuleItem::Target(Target {
                metric: "otif".into(),
                site: site.into(),
                target,
                enabled: true,
            })
        };
        assert!(check(&r, &edit(EditOp::Create, t("ATL", 96.0)), &sites()).is_empty());
        assert_eq!(
            fields(&check(&r, &edit(EditOp::Create, t("XXX", 96.0)), &sites())),
            ["site"]
        );
        assert_eq!(
            fields(&check(&r, &edit(EditOp::Create, t("ATL", 120.0)), &sites())),
            ["target"]
        );
        assert!(
            check(&r, &edit(EditOp::Create, t("DAL", 96.0)), &sites())[0]
                .message
                .contains("otif target for DAL already exists")
        );
    }

    #[test]
    fn triggers_check_value_streak_and_metric() {
        let r = sample_rules();
        let t = |condition, value, periods| {
            RuleItem::Trigger(Trigger {
                key: "otif_below_3w".into(),
                metric: "otif".into(),
                condition,
                value,
                periods,
                description: String::new(),
                enabled: true,
            })
        };
        assert!(check(
            &r,
            &edit(EditOp::Create, t(Condition::BelowTarget, 1.0, 3)),
            &sites()
        )
        .is_empty());
        assert_eq!(
            fields(&check(
                &r,
                &edit(EditOp::Create, t(Condition::Drop, 0.0, 0)),
                &sites()
            )),
            ["periods", "value"]
        );
        assert_eq!(
            fields(&check(
                &r,
                &edit(EditOp::Create, t(Condition::Below, 140.0, 13)),
                &sites()
            )),
            ["periods", "value"]
        );
    }

    #[test]
    fn one_playbook_in_force_per_cause() {
        let mut r = sample_rules();
        let pb = |key: &str, cause: &str| Playbook {
            key: key.into(),
            cause: cause.into(),
            action: "Call the carrier".into(),
            owner: "Transport".into(),
            priority: "high".into(),
            enabled: true,
        };
        let p = check(
            &r,
            &edit(
                EditOp::Create,
                RuleItem::Playbook(pb("late2", "reason:carrier_late")),
            ),
            &sites(),
        );
        assert!(
            p[0].message
                .contains("playbook carrier_late already covers"),
            "{p:?}"
        );
        // Disabled, the old one no longer blocks, and it cannot come back while the new one is on.
        r.playbooks[0].enabled = false;
        let new = edit(
            EditOp::Create,
            RuleItem::Playbook(pb("late2", "reason:carrier_late")),
        );
        assert!(check(&r, &new, &sites()).is_empty());
        let (r2, summary) = apply(&r, &new);
        assert_eq!(r2.version, 2);
        assert!(
            summary.starts_with("created playbook late2 (reason:carrier_late → Transport, high)"),
            "{summary}"
        );
        let back = RuleEdit {
            expected_version: 2,
            ..edit(
                EditOp::Enable,
                RuleItem::Playbook(pb("carrier_late", "reason:carrier_late")),
            )
        };
        assert_eq!(fields(&check(&r2, &back, &sites())), ["cause"]);
        let bad = pb("x", "weather");
        let p = check(
            &r,
            &edit(
                EditOp::Create,
                RuleItem::Playbook(Playbook {
                    priority: "urgent".into(),
                    owner: String::new(),
                    ..bad
                }),
            ),
            &sites(),
        );
        assert_eq!(fields(&p), ["cause", "owner", "priority"]);
    }

    #[test]
    fn apply_updates_enables_and_deletes() {
        let r = sample_rules();
        let (r2, s) = apply(
            &r,
            &edit(
                EditOp::Update,
                rule("at_risk_band_pp", "threshold", None, 3.0),
            ),
        );
        assert_eq!(r2.value("at_risk_band_pp", 0.0), 3.0);
        assert_eq!(s, "changed rule at_risk_band_pp: 2 → 3");
        // Disabling keeps the stored value whatever the form sent.
        let (r3, s) = apply(
            &r2,
            &edit(
                EditOp::Disable,
                rule("at_risk_band_pp", "threshold", None, 99.0),
            ),
        );
        let row = r3
            .entries
            .iter()
            .find(|e| e.key == "at_risk_band_pp")
            .unwrap();
        assert!(!row.enabled && row.value == 3.0);
        assert_eq!(s, "disabled rule at_risk_band_pp");
        let trigger = r.triggers[0].clone();
        let (r4, s) = apply(&r, &edit(EditOp::Delete, RuleItem::Trigger(trigger)));
        assert!(r4.triggers.is_empty());
        assert_eq!(s, "deleted trigger otif_drop_trigger_pp");
    }
}
