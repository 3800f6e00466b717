//! The read models of cards: the dashboard (every site × KPI for a period, the latest
//! complete week by default), the KPI page, the evidence pack as JSON, insight lists and
//! the lineage page.

use super::evidence::{self, parse_metric, site_filter};
use super::{within, Cards};
use crate::domain::access::Reach;
use crate::domain::card::{card, for_period, mark_model_moved, tile, tile_from_pack, Daily};
use crate::domain::evidence::{EvidencePack, PeriodRef, NETWORK};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{fmt_date, Compare, Lens, Period, Week};
use crate::dto::{
    Card, Dashboard, DashboardQuery, EvidenceQuery, InsightView, InsightsQuery, KpiDetail,
    KpiQuery, LineagePage, SiteRow, StaleSource, Tile,
};
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, facts, insights};
use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every tile of a dashboard (the network's first, then each site's): what depends only on
/// the data, the rules and the period, so it is cached by their versions.
#[derive(Debug)]
pub struct Tiles {
    pub period: Period,
    pub previous: Period,
    pub rows: Vec<(String, String, Vec<Tile>)>,
    pub rules_version: i64,
}

/// Cache key of [`Tiles`]: the store's data version, the rules version, the period, the
/// comparison, the reference date and the sites of a limited reach.
type TilesKey = (i64, i64, Period, Compare, NaiveDate, Option<Vec<String>>);

/// The dashboards' tiles by key; a handful of views at most are kept (the cache is
/// cleared when it grows past [`TILES_KEPT`]).
pub type TilesCache = Arc<Mutex<HashMap<TilesKey, Arc<Tiles>>>>;
const TILES_KEPT: usize = 16;

/// (latest good, latest failed) insight per card.
type LatestByCard = HashMap<(String, Metric), (Option<InsightView>, Option<InsightView>)>;

/// The cards of one dashboard row, from the latest insights of the lens.
fn cards_of(
    site: &str,
    tiles: &[Tile],
    period: Period,
    compare: Compare,
    rules_version: i64,
    latest: &mut LatestByCard,
) -> Vec<Card> {
    tiles
        .iter()
        .map(|t| {
            let (ok, failed) = latest
                .remove(&(site.to_string(), t.metric))
                .unwrap_or_default();
            card(
                site,
                t.metric,
                t.value,
                (period, compare),
                rules_version,
                ok,
                failed,
            )
        })
        .collect()
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

    /// The tiles of every site and the network for a period, from the metric store:
    /// daily totals per site over the trend (and a week's anomaly baseline), bucketed into
    /// the trend's periods, and the compared period's totals. Cached by the store's data
    /// version and the rules version, so a dashboard costs a few small reads while the data
    /// and rules stay the same. A limited `reach` gets its sites' rows only, and its first
    /// row is the sum of those sites instead of the whole network.
    async fn tiles(
        &self,
        period: Period,
        compare: Compare,
        reach: &Reach,
    ) -> Result<Arc<Tiles>, ServiceError> {
        let as_of = self.clock.today();
        let data_version = facts::store_state(&self.db).await?.data_version;
        let rules_version = store::rules::version(&self.db).await?;
        let key = (
            data_version,
            rules_version,
            period,
            compare,
            as_of,
            reach.sites(),
        );
        if let Some(t) = self.tiles.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(t);
        }
        let rules = store::rules::load(&self.db).await?;
        let defs = store::rules::metric_definitions(&self.db).await?;
        let metrics = facts::metrics(&self.db).await?;
        let mut sites = facts::sites(&self.db).await?;
        sites.retain(|s| reach.sees(&s.code));
        let trend = period.trend();
        let previous = period.compared(compare);
        let week = period.as_week();
        let from = match week {
            Some(w) => trend[0].start.min(crate::domain::anomaly::span(w).0),
            None => trend[0].start,
        };
        let mut series: HashMap<String, Vec<KpiCounts>> = HashMap::new();
        let mut daily: HashMap<String, Daily> = HashMap::new();
        let mut network = vec![KpiCounts::default(); trend.len()];
        let mut network_daily = Daily::new();
        for (site, day, c) in facts::daily_counts(&self.db, None, from, period.end).await? {
            if !reach.sees(&site) {
                continue;
            }
            if let Some(i) = trend.iter().position(|p| p.contains(day)) {
                series
                    .entry(site.clone())
                    .or_insert_with(|| vec![KpiCounts::default(); trend.len()])[i]
                    .add(&c);
                network[i].add(&c);
            }
            if week.is_some() {
                daily
                    .entry(site)
                    .or_default()
                    .entry(day)
                    .or_default()
                    .add(&c);
                network_daily.entry(day).or_default().add(&c);
            }
        }
        // The compared period: the trend's previous point, or read on its own (a year ago).
        let mut prior: HashMap<String, KpiCounts> = HashMap::new();
        let mut network_prior = KpiCounts::default();
        match trend.iter().position(|p| *p == previous) {
            Some(i) => {
                for (site, s) in &series {
                    prior.insert(site.clone(), s[i]);
                }
                network_prior = network[i];
            }
            None => {
                for (site, _, c) in
                    facts::daily_counts(&self.db, None, previous.start, previous.end).await?
                {
                    if !reach.sees(&site) {
                        continue;
                    }
                    prior.entry(site).or_default().add(&c);
                    network_prior.add(&c);
                }
            }
        }
        let empty = vec![KpiCounts::default(); trend.len()];
        let none = KpiCounts::default();
        let no_days = Daily::new();
        let row_tiles = |site: &str, s: &[KpiCounts], p: &KpiCounts, d: &Daily| -> Vec<Tile> {
            metrics
                .iter()
                .map(|m| tile(*m, &defs, site, s, p, d, period, &rules))
                .collect()
        };
        let mut rows = vec![(
            NETWORK.to_string(),
            "Network".to_string(),
            row_tiles(NETWORK, &network, &network_prior, &network_daily),
        )];
        for s in &sites {
            rows.push((
                s.code.clone(),
                s.name.clone(),
                row_tiles(
                    &s.code,
                    series.get(&s.code).unwrap_or(&empty),
                    prior.get(&s.code).unwrap_or(&none),
                    daily.get(&s.code).unwrap_or(&no_days),
                ),
            ));
        }
        let tiles = Arc::new(Tiles {
            period,
            previous,
            rows,
            rules_version: rules.version,
        });
        if let Ok(mut c) = self.tiles.lock() {
            if c.len() >= TILES_KEPT {
                c.clear();
            }
            c.insert(key, tiles.clone());
        }
        Ok(tiles)
    }

    /// Every site and KPI for a period (the default grain's latest complete one when none is named), with each
    /// card's latest insight of that lens. A limited `reach` sees its sites, and the sum of
    /// them in place of the network (with no network insight: those are about every site).
    #[tracing::instrument(skip_all)]
    pub async fn dashboard(
        &self,
        q: DashboardQuery,
        reach: &Reach,
    ) -> Result<Dashboard, ServiceError> {
        self.refresh_model_versions().await;
        let as_of = self.clock.today();
        let (period, compare) = self.clock.resolve(&q.view)?;
        let tiles = self.tiles(period, compare, reach).await?;
        let lens = Lens::of(&period, compare);
        let mut by_card: HashMap<(String, Metric), Vec<InsightView>> = HashMap::new();
        for i in insights::latest_per_card(&self.db, lens, &period).await? {
            by_card
                .entry((i.site.clone(), i.metric))
                .or_default()
                .push(i);
        }
        let mut latest_by_card: LatestByCard = by_card
            .into_iter()
            .map(|(k, v)| (k, for_period(v, &period)))
            .collect();
        let mut rows: Vec<SiteRow> = tiles
            .rows
            .iter()
            .map(|(site, name, t)| SiteRow {
                site: site.clone(),
                name: name.clone(),
                cards: cards_of(
                    site,
                    t,
                    period,
                    compare,
                    tiles.rules_version,
                    &mut latest_by_card,
                ),
                tiles: t.clone(),
            })
            .collect();
        let mut network = rows.remove(0);
        if let Some(sites) = reach.sites() {
            network.site = String::new();
            network.name = format!("Your sites ({})", sites.join(", "));
            network.cards.clear();
        }
        let mut dashboard = Dashboard {
            reach: reach.sites(),
            as_of: fmt_date(as_of),
            period: PeriodRef::from(period),
            previous_period: PeriodRef::from(tiles.previous),
            compare,
            network,
            sites: rows,
            rules_version: tiles.rules_version,
            // Data sources are every site's (names, errors): not for a limited reach.
            stale_sources: if reach.is_all() {
                self.stale_sources().await?
            } else {
                Vec::new()
            },
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

    /// The configured sources whose last sync failed: the figures hold their last good data.
    async fn stale_sources(&self) -> Result<Vec<StaleSource>, ServiceError> {
        if self.sources.is_empty() {
            return Ok(Vec::new());
        }
        let now = chrono::Utc::now();
        Ok(store::sources::states(&self.db)
            .await?
            .into_iter()
            .filter(|s| self.sources.contains(&s.name))
            .filter_map(|s| {
                let error = s.last_error?;
                let age_hours = s
                    .last_success_at
                    .as_deref()
                    .and_then(crate::ssr::clock::parse_timestamp)
                    .map(|t| ((now - t).num_minutes().max(0) as f64 / 6.0).round() / 10.0);
                Some(StaleSource {
                    name: s.name,
                    error,
                    last_success_at: s.last_success_at,
                    age_hours,
                })
            })
            .collect())
    }

    /// One evidence pack as JSON: the numbers behind a card, for other apps.
    pub async fn evidence(
        &self,
        q: EvidenceQuery,
        reach: &Reach,
    ) -> Result<EvidencePack, ServiceError> {
        within(reach, &q.site)?;
        let metric = parse_metric(&q.metric)?;
        let as_of = self.clock.today();
        let (period, compare) = self.clock.resolve(&q.view)?;
        let focus = evidence::parse_focus(q.filter.as_deref())?;
        let rules = store::rules::load(&self.db).await?;
        let view = (period, compare);
        evidence::load_focused(
            &self.db,
            &rules,
            &q.site,
            metric,
            view,
            as_of,
            focus.as_ref(),
        )
        .await
    }

    /// The KPI page of one card: its tile and evidence pack, its card and insight history,
    /// and the current week's pace.
    #[tracing::instrument(skip_all, fields(site = %q.site, metric = %q.metric))]
    pub async fn kpi_detail(&self, q: KpiQuery, reach: &Reach) -> Result<KpiDetail, ServiceError> {
        within(reach, &q.site)?;
        let metric = parse_metric(&q.metric)?;
        let site = q.site.as_str();
        let rules = store::rules::load(&self.db).await?;
        let as_of = self.clock.today();
        let (period, compare) = self.clock.resolve(&q.view)?;
        let focus = evidence::parse_focus(q.filter.as_deref())?;
        let view = (period, compare);
        let pack =
            evidence::load_focused(&self.db, &rules, site, metric, view, as_of, focus.as_ref())
                .await?;
        let lens = Lens::of(&period, compare);
        let history = insights::list(&self.db, Some(site), Some(metric), Some(lens), 20).await?;
        let (ok, failed) = for_period(history.iter().cloned(), &period);
        self.refresh_model_versions().await;
        let mut card = card(
            site,
            metric,
            pack.value,
            (period, compare),
            rules.version,
            ok,
            failed,
        );
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
    /// A limited `reach` gets its sites' insights only.
    pub async fn insights(
        &self,
        q: InsightsQuery,
        reach: &Reach,
    ) -> Result<Vec<InsightView>, ServiceError> {
        let limit = q.limit();
        let site = q.site.filter(|s| !s.is_empty());
        if let Some(site) = &site {
            within(reach, site)?;
            evidence::site_name(&self.db, site).await?;
        }
        let metric = match q.metric.filter(|m| !m.is_empty()) {
            Some(m) => Some(parse_metric(&m)?),
            None => None,
        };
        Ok(match (reach.sites(), site) {
            (Some(among), None) => insights::list_among(&self.db, &among, metric, limit).await?,
            (_, site) => insights::list(&self.db, site.as_deref(), metric, None, limit).await?,
        })
    }

    /// The agent call behind an insight or a conversation turn, with the insight it made
    /// (if any) and that insight's feedback.
    pub async fn lineage(&self, id: &str, reach: &Reach) -> Result<LineagePage, ServiceError> {
        self.check_reach(reach, id).await?;
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
