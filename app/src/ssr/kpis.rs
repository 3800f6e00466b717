//! The dashboard (all sites × KPIs for the latest complete week) and the KPI detail view.

use super::db;
use super::evidence;
use super::insights::{card, mark_model_moved};
use super::state::AppState;
use super::ServiceError;
use crate::domain::anomaly;
use crate::domain::evidence::{EvidencePack, PeriodRef, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::Week;
use crate::domain::rules::Rules;
use crate::dto::{Dashboard, InsightView, KpiDetail, MetricDefinition, SiteRow, Tile};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};

/// Daily counts of one scope, for anomaly detection.
pub type Daily = BTreeMap<NaiveDate, KpiCounts>;

/// Days of the roll-up anomaly detection reads: the reported week and the weeks it is
/// compared with.
pub fn anomaly_span(week: Week) -> (NaiveDate, NaiveDate) {
    (
        week.start - chrono::Duration::weeks(anomaly::BASELINE_WEEKS as i64),
        week.end(),
    )
}

fn point(metric: Metric, c: &KpiCounts) -> Option<anomaly::Point> {
    // A week or day without lines has no value, for volumes too: 0 lines is "no data",
    // not a quiet period to compare with.
    if c.lines == 0 {
        return None;
    }
    c.value(metric).map(|value| anomaly::Point {
        value,
        n: c.fraction(metric).1,
    })
}

/// Whether the reported week is unusual for `metric` (weekly counts oldest first, ending
/// with the reported week).
pub fn anomaly_of(
    metric: Metric,
    week: Week,
    weekly: &[KpiCounts],
    daily: &Daily,
    rules: &Rules,
) -> Option<anomaly::Anomaly> {
    let sensitivity = rules.anomaly_sensitivity(metric)?;
    let weekly: Vec<Option<anomaly::Point>> = weekly.iter().map(|c| point(metric, c)).collect();
    let days: Vec<(NaiveDate, anomaly::Point)> = daily
        .iter()
        .filter_map(|(d, c)| point(metric, c).map(|p| (*d, p)))
        .collect();
    Some(anomaly::detect(metric, week, &weekly, &days, sensitivity))
}

/// Builds a tile from 12 weeks of counts (oldest first, the last is the reported week).
fn tile(
    metric: Metric,
    defs: &[MetricDefinition],
    site: &str,
    weeks: &[KpiCounts],
    daily: &Daily,
    week: Week,
    rules: &Rules,
) -> Tile {
    let spark: Vec<Option<f64>> = weeks.iter().map(|c| c.value(metric)).collect();
    let current = weeks.last().copied().unwrap_or_default();
    let previous = weeks
        .len()
        .checked_sub(2)
        .map(|i| weeks[i])
        .unwrap_or_default();
    let value = current.value(metric);
    let prev = previous.value(metric);
    let change = value.zip(prev).map(|(a, b)| a - b);
    let target = rules.target(site, metric);
    let (numerator, denominator) = current.fraction(metric);
    Tile {
        metric,
        name: metric.label().to_string(),
        definition: rules.definition(
            metric,
            defs.iter()
                .find(|d| d.metric == metric.key())
                .map_or("", |d| d.definition.as_str()),
        ),
        value,
        previous: prev,
        change,
        target,
        status: rules.status(metric, value, target),
        trigger: rules.trigger(metric, &spark, target).map(|t| t.key.clone()),
        numerator,
        denominator,
        anomaly: anomaly_of(metric, week, weeks, daily, rules),
        spark,
    }
}

type LatestByCard = HashMap<(String, Metric), (Option<InsightView>, Option<InsightView>)>;

#[allow(clippy::too_many_arguments)] // one call per row; a struct would only rename them
fn row(
    site: &str,
    name: &str,
    weeks: &[KpiCounts],
    daily: &Daily,
    defs: &[MetricDefinition],
    rules: &Rules,
    week: Week,
    latest: &mut LatestByCard,
) -> SiteRow {
    let tiles: Vec<Tile> = Metric::ALL
        .iter()
        .map(|m| tile(*m, defs, site, weeks, daily, week, rules))
        .collect();
    let cards = tiles
        .iter()
        .map(|t| {
            let (ok, failed) = latest
                .remove(&(site.to_string(), t.metric))
                .unwrap_or_default();
            card(site, t.metric, t.value, week, rules.version, ok, failed)
        })
        .collect();
    SiteRow {
        site: site.to_string(),
        name: name.to_string(),
        tiles,
        cards,
    }
}

/// Asks MLflow where the agents' aliases point now (cached per agent for 30 s), so cards
/// from a model version the alias has moved away from show as stale. A slow MLflow holds
/// the page up for 2 s at most; the last known versions are used then.
async fn refresh_model_versions(state: &AppState) {
    let lookups = futures::future::join_all(state.agents.all().iter().map(|a| a.model_version()));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), lookups).await;
}

fn mark_models(mut d: Dashboard, state: &AppState) -> Dashboard {
    for row in std::iter::once(&mut d.network).chain(d.sites.iter_mut()) {
        for c in &mut row.cards {
            mark_model_moved(c, &state.agents);
        }
    }
    d
}

/// Daily counts per site and for the network, over [`anomaly_span`].
type DailyBySite = (HashMap<String, Daily>, Daily);

/// The daily roll-up the dashboard's anomaly verdicts read, cached per database while the
/// weekly counts stay the same (almost any change to the lines alters them; a line moved
/// to another day of the same week with the same outcome is the exception): reading ~750 rows
/// through sqlx `Any` costs a few milliseconds per dashboard, the verdicts themselves
/// 0.3 ms. Rules are not part of the key: the verdicts are recomputed every time.
async fn daily_by_site(
    state: &AppState,
    week: Week,
    weekly: &[(String, Week, KpiCounts)],
) -> Result<std::sync::Arc<DailyBySite>, ServiceError> {
    use std::hash::{Hash, Hasher};
    type Cache = std::sync::Mutex<Option<(u64, std::sync::Arc<DailyBySite>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state
        .db
        .connect_options()
        .database_url
        .as_str()
        .hash(&mut h);
    week.start.hash(&mut h);
    for (site, w, c) in weekly {
        (site, w.start).hash(&mut h);
        (c.lines, c.otif_lines, c.on_time_lines, c.in_full_lines).hash(&mut h);
        (c.units_ordered, c.units_delivered).hash(&mut h);
    }
    let key = h.finish();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((k, v)) = cache.lock().ok().and_then(|c| c.clone()) {
        if k == key {
            return Ok(v);
        }
    }
    let (from, to) = anomaly_span(week);
    let mut per_site: HashMap<String, Daily> = HashMap::new();
    let mut network = Daily::new();
    for (site, day, c) in db::daily_counts(&state.db, None, from, to).await? {
        per_site
            .entry(site)
            .or_default()
            .entry(day)
            .or_default()
            .add(&c);
        network.entry(day).or_default().add(&c);
    }
    let value = std::sync::Arc::new((per_site, network));
    if let Ok(mut c) = cache.lock() {
        *c = Some((key, value.clone()));
    }
    Ok(value)
}

pub async fn dashboard(state: &AppState) -> Result<Dashboard, ServiceError> {
    refresh_model_versions(state).await;
    let as_of = state.today();
    let week = Week::latest_complete(as_of);
    let span = week.trailing(12);
    let rules = db::rules(&state.db).await?;
    let defs = db::metric_definitions(&state.db).await?;
    let sites = db::sites(&state.db).await?;
    let counts = db::weekly_counts(&state.db, None, span[0], week).await?;
    let mut latest: LatestByCard = HashMap::new();
    for i in db::latest_insights(&state.db).await? {
        let entry = latest.entry((i.site.clone(), i.metric)).or_default();
        if i.status == "ok" {
            entry.0 = Some(i);
        } else {
            entry.1 = Some(i);
        }
    }
    let index: HashMap<Week, usize> = span.iter().enumerate().map(|(i, w)| (*w, i)).collect();
    let mut network = vec![KpiCounts::default(); span.len()];
    let mut per_site: HashMap<String, Vec<KpiCounts>> = HashMap::new();
    for (site, w, c) in &counts {
        if let Some(&i) = index.get(w) {
            per_site
                .entry(site.clone())
                .or_insert_with(|| vec![KpiCounts::default(); span.len()])[i]
                .add(c);
            network[i].add(c);
        }
    }
    let empty = vec![KpiCounts::default(); span.len()];
    let daily = daily_by_site(state, week, &counts).await?;
    let (per_site_daily, network_daily) = (&daily.0, &daily.1);
    let no_days = Daily::new();
    let site_rows = sites
        .iter()
        .map(|s| {
            row(
                &s.code,
                &s.name,
                per_site.get(&s.code).unwrap_or(&empty),
                per_site_daily.get(&s.code).unwrap_or(&no_days),
                &defs,
                &rules,
                week,
                &mut latest,
            )
        })
        .collect();
    let dashboard = Dashboard {
        as_of: crate::domain::period::fmt_date(as_of),
        period: PeriodRef::from(week),
        previous_period: PeriodRef::from(week.previous()),
        network: row(
            NETWORK,
            "Network",
            &network,
            network_daily,
            &defs,
            &rules,
            week,
            &mut latest,
        ),
        sites: site_rows,
        rules_version: rules.version,
    };
    let mut dashboard = dashboard;
    {
        let mut insights: Vec<&mut InsightView> = std::iter::once(&mut dashboard.network)
            .chain(dashboard.sites.iter_mut())
            .flat_map(|row| row.cards.iter_mut())
            .filter_map(|c| c.insight.as_mut())
            .collect();
        super::actions::attach(state, &mut insights).await?;
    }
    Ok(mark_models(dashboard, state))
}

fn tile_from_pack(pack: &EvidencePack) -> Tile {
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

pub async fn detail(state: &AppState, site: &str, metric: &str) -> Result<KpiDetail, ServiceError> {
    let metric = evidence::parse_metric(metric)?;
    let rules = db::rules(&state.db).await?;
    let as_of = state.today();
    let pack = evidence::load(&state.db, &rules, site, metric, as_of).await?;
    let history = db::insights(&state.db, Some(site), Some(metric), 20).await?;
    let ok = history.iter().find(|i| i.status == "ok").cloned();
    let failed = history.iter().find(|i| i.status != "ok").cloned();
    let week = Week::latest_complete(as_of);
    refresh_model_versions(state).await;
    let mut card = card(site, metric, pack.value, week, rules.version, ok, failed);
    mark_model_moved(&mut card, &state.agents);
    if let Some(i) = card.insight.as_mut() {
        super::actions::attach(state, &mut [i]).await?;
    }
    // The current week and the weeks its forecast learns from.
    let this_week = Week::containing(as_of);
    let mut daily = Daily::new();
    let from = this_week.start - chrono::Duration::weeks(crate::domain::forecast::BASELINE_WEEKS);
    let site_filter = (site != NETWORK).then_some(site);
    for (_, day, c) in db::daily_counts(&state.db, site_filter, from, this_week.end()).await? {
        daily.entry(day).or_default().add(&c);
    }
    let pace = crate::domain::forecast::pace(metric, as_of, &daily, rules.target(site, metric));
    Ok(KpiDetail {
        tile: tile_from_pack(&pack),
        card,
        evidence: pack,
        history,
        pace: Some(pace),
    })
}
