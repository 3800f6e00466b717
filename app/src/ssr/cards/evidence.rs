//! Loads the inputs of an evidence pack through the store's fact seam and builds it.

use crate::domain::card::{definition, Daily};
use crate::domain::evidence::{build_evidence, EvidenceInput, EvidencePack, Focus, Scope, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{Compare, Period, Week};
use crate::domain::rules::Rules;
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, facts, Db};
use chrono::{Duration, NaiveDate};
use sha2::{Digest, Sha256};

/// Resolves a site code (or `network`) to its display name, or `NotFound`.
pub async fn site_name(db: &Db, site: &str) -> Result<String, ServiceError> {
    if site == NETWORK {
        return Ok("the network".to_string());
    }
    facts::site(db, site)
        .await?
        .map(|s| s.name)
        .ok_or_else(|| ServiceError::NotFound(format!("unknown site '{site}'")))
}

/// A metric key, or `NotFound` naming it.
pub fn parse_metric(metric: &str) -> Result<Metric, ServiceError> {
    Metric::parse(metric)
        .ok_or_else(|| ServiceError::NotFound(format!("unknown metric '{metric}'")))
}

/// A page's or request's `filter` (`lane:L2`), or `BadRequest` saying how it is wrong.
pub fn parse_focus(filter: Option<&str>) -> Result<Option<Focus>, ServiceError> {
    filter
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| Focus::parse(f).map_err(ServiceError::BadRequest))
        .transpose()
}

/// The site filter of a scope: `None` for the network (every site).
pub fn site_filter(site: &str) -> Option<&str> {
    (site != NETWORK).then_some(site)
}

/// The evidence pack for (site, metric) in the latest complete week before `as_of`,
/// against the week before.
pub async fn load(
    db: &Db,
    rules: &Rules,
    site: &str,
    metric: Metric,
    as_of: NaiveDate,
) -> Result<EvidencePack, ServiceError> {
    let period = Period::week(Week::latest_complete(as_of));
    load_period(db, rules, site, metric, period, Compare::Previous, as_of).await
}

/// The evidence pack for (site, metric) in `period` against the period `compare` names,
/// summed from the metric store (never from raw lines): the period's and the compared
/// period's breakdowns, the daily totals over the trend, the latest delivery.
pub async fn load_period(
    db: &Db,
    rules: &Rules,
    site: &str,
    metric: Metric,
    period: Period,
    compare: Compare,
    as_of: NaiveDate,
) -> Result<EvidencePack, ServiceError> {
    load_focused(db, rules, site, metric, (period, compare), as_of, None).await
}

/// [`load_period`], for one member of a dimension when `focus` names one: its value,
/// trend, checks and anomaly (no split by other dimensions: the store has none).
#[tracing::instrument(skip_all, fields(site = %site, metric = %metric.key(), period = %period))]
pub async fn load_focused(
    db: &Db,
    rules: &Rules,
    site: &str,
    metric: Metric,
    (period, compare): (Period, Compare),
    as_of: NaiveDate,
    focus: Option<&Focus>,
) -> Result<EvidencePack, ServiceError> {
    let site_name = site_name(db, site).await?;
    let previous = period.compared(compare);
    let filter = site_filter(site);
    let member = focus.map(|f| (f.dimension.as_str(), f.member.as_str()));
    let (current, prior) = match member {
        None => (
            facts::breakdown(db, filter, period.start, period.end).await?,
            facts::breakdown(db, filter, previous.start, previous.end).await?,
        ),
        Some(m) => (
            facts::member_breakdown(db, filter, m, period.start, period.end).await?,
            facts::member_breakdown(db, filter, m, previous.start, previous.end).await?,
        ),
    };
    let trend = period.trend();
    // Daily totals over the trend (and the anomaly baseline for a week), summed over the
    // scope's sites by the database.
    let week = period.as_week();
    let from = match week {
        Some(w) => trend[0].start.min(crate::domain::anomaly::span(w).0),
        None => trend[0].start,
    };
    let days = match member {
        None => facts::day_totals(db, filter, from, period.end).await?,
        Some(m) => facts::member_day_totals(db, filter, m, from, period.end).await?,
    };
    let series: Vec<(Period, KpiCounts)> = trend
        .iter()
        .map(|p| {
            let mut c = KpiCounts::default();
            for (_, t) in days.iter().filter(|(d, _)| p.contains(*d)) {
                c.add(&t.counts);
            }
            (*p, c)
        })
        .collect();
    let past_due_open = days
        .iter()
        .filter(|(d, _)| period.contains(*d) && *d < as_of)
        .map(|(_, t)| t.open_lines)
        .sum();
    let latest =
        facts::latest_data_date(db, filter, period.start - Duration::days(28), as_of).await?;
    let definitions = store::rules::metric_definitions(db).await?;
    let mut pack = build_evidence(EvidenceInput {
        scope: Scope {
            site: site.to_string(),
            site_name,
            metric,
            metric_name: metric.label().to_string(),
            definition: definition(rules, metric, &definitions),
            unit: metric.unit().to_string(),
            focus: focus.map(Focus::label),
        },
        period,
        previous,
        as_of,
        current: &current,
        prior: &prior,
        past_due_open,
        series: &series,
        latest_data_date: latest,
        rules,
    });
    let costs = facts::cost_book(db).await?;
    if !costs.is_empty() {
        pack.materiality = Some(crate::domain::materiality::at_stake(&current, rules));
    }
    // Anomaly detection compares a week with the same weekdays and the weeks before; other
    // grains have too little history for it (a year has a handful of predecessors).
    pack.anomaly = crate::domain::anomaly::not_judged(metric, period.grain, rules);
    if let Some(week) = week {
        let weekly: Vec<KpiCounts> = series.iter().map(|(_, c)| *c).collect();
        let (from, to) = crate::domain::anomaly::span(week);
        let daily: Daily = days
            .iter()
            .filter(|(d, _)| *d >= from && *d <= to)
            .map(|(d, t)| (*d, t.counts))
            .collect();
        pack.anomaly = crate::domain::anomaly::of_counts(metric, week, &weekly, &daily, rules);
    }
    Ok(pack)
}

/// SHA-256 of the pack's JSON: equal evidence, equal hash (the pack is deterministic).
///
/// What only the reference date changes is left out (`as_of`, days since the latest data),
/// so a card whose evidence is the same on Tuesday as on Monday hashes the same and a daily
/// schedule does not call the agent again for it. The request sent still carries them.
pub fn hash(pack: &EvidencePack) -> String {
    let mut content = pack.clone();
    content.as_of = String::new();
    content.data_checks.days_since_latest_data = None;
    let json = serde_json::to_vec(&content).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
