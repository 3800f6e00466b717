//! The read models of cards: the dashboard (every site × KPI for the latest complete
//! week), the KPI page, insight lists and the lineage page.

use super::evidence::{self, parse_metric, site_filter};
use super::Cards;
use crate::domain::card::{card, latest, mark_model_moved, tile, tile_from_pack, Daily};
use crate::domain::evidence::{PeriodRef, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{fmt_date, Week};
use crate::domain::rules::Rules;
use crate::dto::{
    Card, Dashboard, InsightView, InsightsQuery, KpiDetail, KpiQuery, LineagePage,
    MetricDefinition, SiteRow,
};
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, facts, insights};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Daily counts per site and for the network, over the anomaly span.
type DailyBySite = (HashMap<String, Daily>, Daily);

/// The dashboard's daily roll-up and the hash of the weekly counts it was read with.
pub type DailyCache = Arc<Mutex<Option<(u64, Arc<DailyBySite>)>>>;

/// (latest good, latest failed) insight per card.
type LatestByCard = HashMap<(String, Metric), (Option<InsightView>, Option<InsightView>)>;

/// One dashboard row: a site's (or the network's) tiles and cards.
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
    let tiles: Vec<_> = Metric::ALL
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

impl Cards {
    /// Asks MLflow where the agents' aliases point now (cached per agent for 30 s), so
    /// cards from a model version the alias has moved away from show as stale. A slow
    /// MLflow holds the page up for 2 s at most; the last known versions are used then.
    async fn refresh_model_versions(&self) {
        let lookups =
            futures::future::join_all(self.agents.all().iter().map(|a| a.model_version()));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), lookups).await;
    }

    /// Marks a card stale when its agent's alias moved away from the insight's version.
    fn mark_model(&self, c: &mut Card) {
        let agent = c
            .insight
            .as_ref()
            .and_then(|i| self.agents.get(&i.agent))
            .cloned();
        let current = agent.as_ref().and_then(|a| {
            let version = a.cached_model_version()?;
            let model = a
                .profile()
                .model
                .as_ref()
                .map(|m| m.uri())
                .unwrap_or_default();
            Some((version, model))
        });
        mark_model_moved(c, current.as_ref().map(|(v, m)| (v.as_str(), m.as_str())));
    }

    /// The daily roll-up the dashboard's anomaly verdicts read, cached while the weekly
    /// counts stay the same (almost any change to the lines alters them; a line moved to
    /// another day of the same week with the same outcome is the exception): reading ~750
    /// rows through sqlx `Any` costs a few milliseconds per dashboard, the verdicts
    /// themselves 0.3 ms. Rules are not part of the key: the verdicts are recomputed every
    /// time.
    async fn daily_by_site(
        &self,
        week: Week,
        weekly: &[(String, Week, KpiCounts)],
    ) -> Result<Arc<DailyBySite>, ServiceError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        week.start.hash(&mut h);
        for (site, w, c) in weekly {
            (site, w.start).hash(&mut h);
            (c.lines, c.otif_lines, c.on_time_lines, c.in_full_lines).hash(&mut h);
            (c.units_ordered, c.units_delivered).hash(&mut h);
        }
        let key = h.finish();
        if let Some((k, v)) = self.daily.lock().ok().and_then(|c| c.clone()) {
            if k == key {
                return Ok(v);
            }
        }
        let (from, to) = crate::domain::anomaly::span(week);
        let mut per_site: HashMap<String, Daily> = HashMap::new();
        let mut network = Daily::new();
        for (site, day, c) in facts::daily_counts(&self.db, None, from, to).await? {
            per_site
                .entry(site)
                .or_default()
                .entry(day)
                .or_default()
                .add(&c);
            network.entry(day).or_default().add(&c);
        }
        let value = Arc::new((per_site, network));
        if let Ok(mut c) = self.daily.lock() {
            *c = Some((key, value.clone()));
        }
        Ok(value)
    }

    /// Every site and KPI for the latest complete week, with each card's latest insight.
    #[tracing::instrument(skip_all)]
    pub async fn dashboard(&self) -> Result<Dashboard, ServiceError> {
        self.refresh_model_versions().await;
        let as_of = self.clock.today();
        let week = Week::latest_complete(as_of);
        let span = week.trailing(12);
        let rules = store::rules::load(&self.db).await?;
        let defs = store::rules::metric_definitions(&self.db).await?;
        let sites = facts::sites(&self.db).await?;
        let counts = facts::weekly_counts(&self.db, None, span[0], week).await?;
        let mut by_card: HashMap<(String, Metric), Vec<InsightView>> = HashMap::new();
        for i in insights::latest_per_card(&self.db).await? {
            by_card
                .entry((i.site.clone(), i.metric))
                .or_default()
                .push(i);
        }
        let mut latest_by_card: LatestByCard =
            by_card.into_iter().map(|(k, v)| (k, latest(v))).collect();
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
        let daily = self.daily_by_site(week, &counts).await?;
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
                    &mut latest_by_card,
                )
            })
            .collect();
        let mut dashboard = Dashboard {
            as_of: fmt_date(as_of),
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
                &mut latest_by_card,
            ),
            sites: site_rows,
            rules_version: rules.version,
        };
        let cards: Vec<&mut Card> = std::iter::once(&mut dashboard.network)
            .chain(dashboard.sites.iter_mut())
            .flat_map(|row| row.cards.iter_mut())
            .collect();
        let mut insights: Vec<&mut InsightView> = Vec::new();
        for c in cards {
            self.mark_model(c);
            if let Some(i) = c.insight.as_mut() {
                insights.push(i);
            }
        }
        self.attach_actions(&mut insights).await?;
        Ok(dashboard)
    }

    /// The KPI page of one card: its tile and evidence pack, its card and insight history,
    /// and the current week's pace.
    #[tracing::instrument(skip_all, fields(site = %q.site, metric = %q.metric))]
    pub async fn kpi_detail(&self, q: KpiQuery) -> Result<KpiDetail, ServiceError> {
        let metric = parse_metric(&q.metric)?;
        let site = q.site.as_str();
        let rules = store::rules::load(&self.db).await?;
        let as_of = self.clock.today();
        let pack = evidence::load(&self.db, &rules, site, metric, as_of).await?;
        let history = insights::list(&self.db, Some(site), Some(metric), 20).await?;
        let (ok, failed) = latest(history.iter().cloned());
        let week = Week::latest_complete(as_of);
        self.refresh_model_versions().await;
        let mut card = card(site, metric, pack.value, week, rules.version, ok, failed);
        self.mark_model(&mut card);
        if let Some(i) = card.insight.as_mut() {
            self.attach_actions(&mut [i]).await?;
        }
        // The current week and the weeks its forecast learns from.
        let this_week = Week::containing(as_of);
        let mut daily = Daily::new();
        let from =
            this_week.start - chrono::Duration::weeks(crate::domain::forecast::BASELINE_WEEKS);
        for (_, day, c) in
            facts::daily_counts(&self.db, site_filter(site), from, this_week.end()).await?
        {
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

    /// Insight attempts, latest first, for one card, a site, or all.
    pub async fn insights(&self, q: InsightsQuery) -> Result<Vec<InsightView>, ServiceError> {
        let limit = q.limit();
        let site = q.site.filter(|s| !s.is_empty());
        if let Some(site) = &site {
            evidence::site_name(&self.db, site).await?;
        }
        let metric = match q.metric.filter(|m| !m.is_empty()) {
            Some(m) => Some(parse_metric(&m)?),
            None => None,
        };
        Ok(insights::list(&self.db, site.as_deref(), metric, limit).await?)
    }

    /// The agent call behind an insight or a conversation turn, with the insight it made
    /// (if any) and that insight's feedback.
    pub async fn lineage(&self, id: &str) -> Result<LineagePage, ServiceError> {
        let lineage = insights::lineage(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no lineage for this id".into()))?;
        Ok(LineagePage {
            lineage,
            insight: insights::get(&self.db, id).await?,
            feedback: insights::feedback_for(&self.db, id).await?,
        })
    }
}
