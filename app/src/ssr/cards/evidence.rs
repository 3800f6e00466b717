//! Loads the inputs of an evidence pack through the store's fact seam and builds it.

use crate::domain::card::{definition, Daily};
use crate::domain::evidence::{build_evidence, EvidenceInput, EvidencePack, Scope, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::Week;
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

/// The site filter of a scope: `None` for the network (every site).
pub fn site_filter(site: &str) -> Option<&str> {
    (site != NETWORK).then_some(site)
}

/// The evidence pack for (site, metric) in the latest complete week before `as_of`.
#[tracing::instrument(skip_all, fields(site = %site, metric = %metric.key()))]
pub async fn load(
    db: &Db,
    rules: &Rules,
    site: &str,
    metric: Metric,
    as_of: NaiveDate,
) -> Result<EvidencePack, ServiceError> {
    let site_name = site_name(db, site).await?;
    let week = Week::latest_complete(as_of);
    let filter = site_filter(site);
    let lines = facts::line_facts(db, filter, week.previous().start, week.end()).await?;
    let weekly: Vec<(Week, KpiCounts)> =
        facts::weekly_counts(db, filter, week.trailing(12)[0], week)
            .await?
            .into_iter()
            .map(|(_, w, c)| (w, c))
            .collect();
    let latest =
        facts::latest_data_date(db, filter, week.start - Duration::days(28), as_of).await?;
    let definitions = store::rules::metric_definitions(db).await?;
    let (from, to) = crate::domain::anomaly::span(week);
    let mut daily = Daily::new();
    for (_, day, c) in facts::daily_counts(db, filter, from, to).await? {
        daily.entry(day).or_default().add(&c);
    }
    let mut pack = build_evidence(EvidenceInput {
        scope: Scope {
            site: site.to_string(),
            site_name,
            metric,
            metric_name: metric.label().to_string(),
            definition: definition(rules, metric, &definitions),
            unit: if metric.is_ratio() { "pct" } else { "count" }.to_string(),
        },
        week,
        as_of,
        lines: &lines,
        weekly: &weekly,
        latest_data_date: latest,
        rules,
    });
    // The series' counts, as the tiles have them (numerator and denominator per week).
    let weekly_counts: Vec<KpiCounts> = week
        .trailing(12)
        .iter()
        .map(|w| {
            weekly
                .iter()
                .filter(|(x, _)| x == w)
                .fold(KpiCounts::default(), |mut acc, (_, c)| {
                    acc.add(c);
                    acc
                })
        })
        .collect();
    let costs = facts::cost_book(db).await?;
    if !costs.is_empty() {
        pack.materiality = Some(crate::domain::materiality::at_stake(
            &lines,
            week,
            rules,
            &costs,
            site == NETWORK,
        ));
    }
    pack.anomaly = crate::domain::anomaly::of_counts(metric, week, &weekly_counts, &daily, rules);
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
