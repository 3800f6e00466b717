//! The state of an insight card, in one place.
//!
//! Two questions are asked about a card's last good insight, and both are answered here:
//!
//! - **Is it stale?** ([`card`], [`mark_model_moved`]): what the card shows. It compares
//!   cheap facts the dashboard already has: the week explained, the KPI value, the rules
//!   version, the model version behind the agent's alias, and whether a later refresh
//!   failed.
//! - **Would a refresh change anything?** ([`same_inputs`]): what a run uses to skip the
//!   agent call. It compares what the agent would be sent: the evidence pack's hash (every
//!   number, not only the value), the rules version, the week, the agent and its model
//!   version. (New feedback on the card also changes the request; the caller checks that
//!   in the database when everything here matches.)

use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{fmt_date, Compare, Period};
use crate::domain::rules::Rules;
use crate::domain::status::AnswerStatus;
use crate::dto::{Card, InsightView, MetricDefinition, Tile};
use std::collections::BTreeMap;

/// The state of a card from its latest good insight and latest failed attempt, given the
/// period shown, the KPI's current value and the rules version in force.
pub fn card(
    site: &str,
    metric: Metric,
    current_value: Option<f64>,
    (period, compare): (Period, Compare),
    rules_version: i64,
    ok: Option<InsightView>,
    failed: Option<InsightView>,
) -> Card {
    let failed_later = failed.filter(|f| ok.as_ref().is_none_or(|o| f.created_at > o.created_at));
    let error = failed_later.as_ref().and_then(|f| f.error.clone());
    let mut reasons = Vec::new();
    if let Some(o) = &ok {
        if o.period_start != fmt_date(period.start) || o.period_label != period.label() {
            reasons.push(format!(
                "explains {}; {} is now complete",
                o.period_label,
                period.label()
            ));
        } else if match (o.value, current_value) {
            (Some(a), Some(b)) => (a - b).abs() > 1e-9,
            (a, b) => a.is_some() != b.is_some(),
        } {
            reasons.push("the data changed since it was generated".to_string());
        } else if o.rules_version != rules_version {
            reasons.push(format!(
                "the business rules changed since it was generated (version {} → {rules_version})",
                o.rules_version
            ));
        }
        if let Some(e) = &error {
            reasons.push(format!("the last refresh failed: {e}"));
        }
    }
    Card {
        site: site.to_string(),
        metric,
        view: crate::dto::PeriodChoice::new(&period.label(), compare.key()),
        insight: ok,
        stale: (!reasons.is_empty()).then(|| reasons.join("; ")),
        error,
    }
}

/// Picks, from a card's insight history (any order), the latest good insight and the
/// latest failed attempt about `period`; when there is none about it, about the latest
/// earlier period (shown stale: its period has moved on). Insights about later periods
/// never stand for an earlier one.
pub fn for_period(
    history: impl IntoIterator<Item = InsightView>,
    period: &Period,
) -> (Option<InsightView>, Option<InsightView>) {
    let start = fmt_date(period.start);
    let (same, earlier): (Vec<InsightView>, Vec<InsightView>) = history
        .into_iter()
        .filter(|i| i.period_start <= start)
        .partition(|i| i.period_start == start);
    if same.is_empty() {
        // The latest earlier period's attempts only.
        let last = earlier.iter().map(|i| i.period_start.clone()).max();
        latest(
            earlier
                .into_iter()
                .filter(|i| Some(&i.period_start) == last.as_ref()),
        )
    } else {
        latest(same)
    }
}

/// Picks, from a card's insight history (any order), the latest good insight and the
/// latest failed attempt.
pub fn latest(
    history: impl IntoIterator<Item = InsightView>,
) -> (Option<InsightView>, Option<InsightView>) {
    let mut ok: Option<InsightView> = None;
    let mut failed: Option<InsightView> = None;
    for i in history {
        let slot = if i.status == AnswerStatus::Ok {
            &mut ok
        } else {
            &mut failed
        };
        if slot
            .as_ref()
            .is_none_or(|s| (&i.created_at, &i.id) > (&s.created_at, &s.id))
        {
            *slot = Some(i);
        }
    }
    (ok, failed)
}

/// Marks a card stale when its insight came from a model version the agent's alias no
/// longer points at. `current` is the agent's current (version, model URI), when known.
pub fn mark_model_moved(card: &mut Card, current: Option<(&str, &str)>) {
    let Some(insight) = &card.insight else { return };
    let (Some(made_by), Some((now, model))) = (&insight.model_version, current) else {
        return;
    };
    if made_by != now {
        let reason =
            format!("made by model version {made_by}; {model} now points to version {now}");
        card.stale = Some(match card.stale.take() {
            Some(s) => format!("{reason}; {s}"),
            None => reason,
        });
    }
}

/// What a refresh would send the agent now, for [`same_inputs`].
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub evidence_hash: &'a str,
    pub rules_version: i64,
    pub period: Period,
    pub agent: &'a str,
    pub model_version: Option<&'a str>,
}

/// Whether the last good insight was made from the same inputs (so a run may skip the
/// agent call, unless the card got new feedback since).
pub fn same_inputs(last: &InsightView, now: &Inputs<'_>) -> bool {
    last.evidence_hash == now.evidence_hash
        && last.rules_version == now.rules_version
        && last.period_start == fmt_date(now.period.start)
        && last.period_label == now.period.label()
        && last.agent == now.agent
        && last.model_version.as_deref() == now.model_version
}

/// Daily counts of one scope (anomaly detection, the week's pace).
pub type Daily = BTreeMap<chrono::NaiveDate, KpiCounts>;

/// A tile from the trend's counts (oldest first, the last is the reported period) and the
/// compared period's counts. Anomaly verdicts are given for weeks (`daily` covers their
/// baseline); other grains have too little history.
#[allow(clippy::too_many_arguments)] // the tile's inputs, each read once
pub fn tile(
    metric: Metric,
    definitions: &[MetricDefinition],
    site: &str,
    series: &[KpiCounts],
    previous: &KpiCounts,
    daily: &Daily,
    period: Period,
    rules: &Rules,
) -> Tile {
    let spark: Vec<Option<f64>> = series.iter().map(|c| c.value(metric)).collect();
    let current = series.last().copied().unwrap_or_default();
    let value = current.value(metric);
    let prev = previous.value(metric);
    let change = value.zip(prev).map(|(a, b)| a - b);
    let target = rules.target(site, metric);
    let (numerator, denominator) = current.fraction(metric);
    Tile {
        metric,
        name: metric.label().to_string(),
        definition: definition(rules, metric, definitions),
        value,
        previous: prev,
        change,
        target,
        status: rules.status(metric, value, target),
        trigger: rules.trigger(metric, &spark, target).map(|t| t.key.clone()),
        numerator,
        denominator,
        anomaly: match period.as_week() {
            Some(w) => crate::domain::anomaly::of_counts(metric, w, series, daily, rules),
            None => crate::domain::anomaly::not_judged(metric, period.grain, rules),
        },
        spark,
    }
}

/// The tile of an evidence pack (the KPI page shows the same numbers as its pack).
pub fn tile_from_pack(pack: &crate::domain::evidence::EvidencePack) -> Tile {
    Tile {
        metric: pack.scope.metric,
        name: pack.scope.metric_name.clone(),
        definition: pack.scope.definition.clone(),
        value: pack.value,
        previous: pack.previous_value,
        change: pack.change,
        target: pack.target,
        status: pack.status,
        trigger: pack.trigger.clone(),
        numerator: pack.numerator,
        denominator: pack.denominator,
        spark: pack.series.iter().map(|p| p.value).collect(),
        anomaly: pack.anomaly.clone(),
    }
}

/// A KPI's definition as the rules state it (with the stored text as the base).
pub fn definition(rules: &Rules, metric: Metric, definitions: &[MetricDefinition]) -> String {
    rules.definition(
        metric,
        definitions
            .iter()
            .find(|d| d.metric == metric.key())
            .map_or("", |d| d.definition.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::{parse_date, Week};

    fn view(
        id: &str,
        created_at: &str,
        period_start: &str,
        value: f64,
        rules_version: i64,
        error: Option<&str>,
    ) -> InsightView {
        InsightView {
            id: id.into(),
            site: "DAL".into(),
            metric: Metric::OTIF,
            lens: "week".into(),
            period_start: period_start.into(),
            period_label: Week::containing(parse_date(period_start).unwrap()).label(),
            created_at: created_at.into(),
            agent: "a".into(),
            value: Some(value),
            headline: "h".into(),
            narrative: String::new(),
            insight: None,
            evidence_hash: String::new(),
            rules_version,
            latency_ms: 1,
            status: if error.is_some() {
                AnswerStatus::Error
            } else {
                AnswerStatus::Ok
            },
            error: error.map(Into::into),
            agent_kind: None,
            model_version: None,
            trace_id: None,
            grounding: vec![],
            claims: vec![],
            actions: vec![],
        }
    }

    fn week() -> Period {
        Period::week(Week::containing(parse_date("2026-11-09").unwrap()))
    }

    const T10: &str = "2026-11-20T10:00:00.000000Z";

    #[test]
    fn a_current_insight_is_not_stale() {
        let ok = view("1", T10, "2026-11-09", 90.0, 1, None);
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            Some(ok),
            None,
        );
        assert_eq!((c.stale, c.error), (None, None));
    }

    #[test]
    fn stale_reasons_week_data_rules_and_failed_refresh() {
        let old_week = view(
            "1",
            "2026-11-10T10:00:00.000000Z",
            "2026-11-02",
            90.0,
            1,
            None,
        );
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            Some(old_week),
            None,
        );
        assert!(c.stale.unwrap().contains("2026-W46 is now complete"));

        let ok = view("1", T10, "2026-11-09", 90.0, 1, None);
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(88.0),
            (week(), Compare::Previous),
            1,
            Some(ok.clone()),
            None,
        );
        assert!(c.stale.unwrap().contains("data changed"));

        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            2,
            Some(ok.clone()),
            None,
        );
        assert!(c.stale.unwrap().contains("rules changed"));

        let failed = view(
            "2",
            "2026-11-20T11:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("the agent could not be reached"),
        );
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            Some(ok.clone()),
            Some(failed),
        );
        assert_eq!(c.insight.unwrap().id, "1", "the last good insight stays");
        assert!(c
            .stale
            .unwrap()
            .contains("last refresh failed: the agent could not be reached"));
        assert_eq!(c.error.as_deref(), Some("the agent could not be reached"));

        // A failure older than the good insight no longer matters.
        let earlier = view(
            "0",
            "2026-11-20T09:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("x"),
        );
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            Some(ok),
            Some(earlier),
        );
        assert_eq!((c.stale, c.error), (None, None));
    }

    #[test]
    fn a_card_without_insight_shows_the_failure() {
        let failed = view(
            "2",
            "2026-11-20T11:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("boom"),
        );
        let c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            None,
            Some(failed),
        );
        assert!(c.insight.is_none() && c.stale.is_none());
        assert_eq!(c.error.as_deref(), Some("boom"));
    }

    #[test]
    fn a_moved_alias_makes_the_card_stale_and_latest_picks_by_status() {
        let mut ok = view("1", T10, "2026-11-09", 90.0, 1, None);
        ok.model_version = Some("1".into());
        let mut c = card(
            "DAL",
            Metric::OTIF,
            Some(90.0),
            (week(), Compare::Previous),
            1,
            Some(ok.clone()),
            None,
        );
        mark_model_moved(&mut c, Some(("1", "models:/a@prod")));
        assert_eq!(c.stale, None);
        mark_model_moved(&mut c, Some(("2", "models:/a@prod")));
        assert!(c
            .stale
            .unwrap()
            .contains("models:/a@prod now points to version 2"));

        let failed = view(
            "2",
            "2026-11-20T11:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("x"),
        );
        let older = view(
            "0",
            "2026-11-19T11:00:00.000000Z",
            "2026-11-09",
            80.0,
            1,
            None,
        );
        let (o, f) = latest([older, failed, ok]);
        assert_eq!(
            (o.unwrap().id, f.unwrap().id),
            ("1".to_string(), "2".to_string())
        );
    }

    #[test]
    fn same_inputs_compares_what_the_agent_would_be_sent() {
        let mut last = view("1", T10, "2026-11-09", 90.0, 3, None);
        last.evidence_hash = "h".into();
        let now = Inputs {
            evidence_hash: "h",
            rules_version: 3,
            period: week(),
            agent: "a",
            model_version: None,
        };
        assert!(same_inputs(&last, &now));
        assert!(!same_inputs(
            &last,
            &Inputs {
                evidence_hash: "g",
                ..now
            }
        ));
        assert!(!same_inputs(
            &last,
            &Inputs {
                rules_version: 4,
                ..now
            }
        ));
        assert!(!same_inputs(
            &last,
            &Inputs {
                model_version: Some("2"),
                ..now
            }
        ));
    }

    #[test]
    fn a_card_shows_its_own_periods_insight_else_the_last_earlier_one() {
        let w45 = view(
            "1",
            "2026-11-10T10:00:00.000000Z",
            "2026-11-02",
            90.0,
            1,
            None,
        );
        let w46 = view(
            "2",
            "2026-11-17T10:00:00.000000Z",
            "2026-11-09",
            91.0,
            1,
            None,
        );
        // Refreshed later, about an earlier week.
        let w44_late = view(
            "3",
            "2026-11-19T10:00:00.000000Z",
            "2026-10-26",
            92.0,
            1,
            None,
        );
        let all = vec![w45.clone(), w46.clone(), w44_late.clone()];
        let (ok, _) = for_period(all.clone(), &week());
        assert_eq!(
            ok.unwrap().id,
            "2",
            "the week's own insight, not the newest row"
        );
        let w45_period = Period::week(Week::containing(parse_date("2026-11-02").unwrap()));
        let (ok, _) = for_period(all.clone(), &w45_period);
        assert_eq!(
            ok.unwrap().id,
            "1",
            "a past week never shows a later week's insight"
        );
        let w47 = Period::week(Week::containing(parse_date("2026-11-16").unwrap()));
        let (ok, _) = for_period(all, &w47);
        assert_eq!(ok.unwrap().id, "2", "the latest earlier week, shown stale");
    }
}
