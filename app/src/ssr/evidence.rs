//! Loads the inputs of an evidence pack from the database and builds it.

use super::db::{self, Db};
use super::ServiceError;
use crate::domain::evidence::{build_evidence, EvidenceInput, EvidencePack, Scope, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::Week;
use crate::domain::rules::Rules;
use chrono::{Duration, NaiveDate};
use sha2::{Digest, Sha256};

/// Resolves a site code (or `network`) to its display name, or `NotFound`.
pub async fn site_name(db: &Db, site: &str) -> Result<String, ServiceError> {
    if site == NETWORK {
        return Ok("the network".to_string());
    }
    db::sites(db)
        .await?
        .into_iter()
        .find(|s| s.code == site)
        .map(|s| s.name)
        .ok_or_else(|| ServiceError::NotFound(format!("unknown site '{site}'")))
}

pub fn parse_metric(metric: &str) -> Result<Metric, ServiceError> {
    Metric::parse(metric)
        .ok_or_else(|| ServiceError::NotFound(format!("unknown metric '{metric}'")))
}

/// The evidence pack for (site, metric) in the latest complete week before `as_of`.
pub async fn load(
    db: &Db,
    rules: &Rules,
    site: &str,
    metric: Metric,
    as_of: NaiveDate,
) -> Result<EvidencePack, ServiceError> {
    let site_name = site_name(db, site).await?;
    let week = Week::latest_complete(as_of);
    let site_filter = (site != NETWORK).then_some(site);
    let lines = db::line_facts(db, site_filter, week.previous().start, week.end()).await?;
    let weekly: Vec<(Week, _)> = db::weekly_counts(db, site_filter, week.trailing(12)[0], week)
        .await?
        .into_iter()
        .map(|(_, w, c)| (w, c))
        .collect();
    let latest =
        db::latest_data_date(db, site_filter, week.start - Duration::days(28), as_of).await?;
    let definitions = db::metric_definitions(db).await?;
    let definition = rules.definition(
        metric,
        definitions
            .iter()
            .find(|d| d.metric == metric.key())
            .map_or("", |d| d.definition.as_str()),
    );
    let (from, to) = super::kpis::anomaly_span(week);
    let mut daily = super::kpis::Daily::new();
    for (_, day, c) in db::daily_counts(db, site_filter, from, to).await? {
        daily.entry(day).or_default().add(&c);
    }
    let mut pack = build_evidence(EvidenceInput {
        scope: Scope {
            site: site.to_string(),
            site_name,
            metric,
            metric_name: metric.label().to_string(),
            definition,
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
    let costs = db::cost_book(db).await?;
    if !costs.is_empty() {
        pack.materiality = Some(crate::domain::materiality::materiality(
            &lines,
            week,
            rules.scoring(),
            &costs,
            rules.value("penalty_share_of_cost", 0.03).clamp(0.0, 1.0),
            site == NETWORK,
        ));
    }
    pack.anomaly = super::kpis::anomaly_of(metric, week, &weekly_counts, &daily, rules);
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
