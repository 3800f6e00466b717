//! Building and sending digests: the dashboard's cards that are off target or unusual in a
//! period (the default grain's latest complete one, or the period a request or a schedule
//! names: a monthly digest on the 1st), with their latest insights of that period, ranked
//! by money at stake (when unit costs are known: the penalty on each scope's failed lines
//! in the period, the figure its evidence pack shows), queued to every channel that takes
//! digests. Links open the same view.

use super::Notify;
use crate::domain::access::Reach;
use crate::domain::digest::{self, Digest, DigestItem};
use crate::domain::evidence::NETWORK;
use crate::domain::materiality::at_stake;
use crate::domain::period::{parse_date, Compare};
use crate::domain::rules::Status;
use crate::domain::status::{ChannelKind, NotificationKind};
use crate::dto::{
    Card, DashboardQuery, DigestFormat, DigestQueued, DigestRequest, PeriodChoice, SiteRow, Tile,
};
use crate::ssr::clock;
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, facts, Conn};
use std::collections::HashMap;
use std::time::Instant;

/// Whether a card belongs in a digest.
pub fn needs_attention(t: &Tile) -> bool {
    t.status == Status::OffTarget || t.anomaly.as_ref().is_some_and(|a| a.unusual)
}

impl Notify {
    /// One digest line from a tile, its card and its row; `view` is the link's query
    /// (`?period=2026-11`) and `compare` what the tile's change is against.
    pub fn item(
        &self,
        row: &SiteRow,
        tile: &Tile,
        card: Option<&Card>,
        view: &str,
        compare: Compare,
    ) -> DigestItem {
        let insight = card.and_then(|c| c.insight.as_ref());
        let contract = insight.and_then(|i| i.insight.as_ref());
        DigestItem {
            site: row.site.clone(),
            site_name: row.name.clone(),
            metric: tile.metric.key().to_string(),
            metric_name: tile.name.clone(),
            unit: match tile.metric.unit() {
                "pct" => "%",
                "count" => "lines",
                other => other,
            }
            .to_string(),
            higher_is_better: tile.metric.higher_is_better(),
            value: tile.value,
            target: tile.target,
            change: tile.change,
            compare,
            status: tile.status,
            unusual: tile.anomaly.as_ref().is_some_and(|a| a.unusual),
            anomaly: tile
                .anomaly
                .as_ref()
                .filter(|a| a.unusual)
                .map(|a| a.summary.clone()),
            trigger: tile.trigger.clone(),
            money_at_stake: None,
            headline: contract
                .map(|c| c.headline.clone())
                .or_else(|| insight.map(|i| i.headline.clone())),
            root_cause: contract.and_then(|c| c.root_causes.first()).map(|r| {
                let unit = match tile.metric.change_unit() {
                    "pp" => "pts",
                    other => other,
                };
                format!(
                    "{} {}: {:+.1} {unit} ({})",
                    r.dimension, r.member, r.impact_pp, r.evidence
                )
            }),
            next_action: contract
                .and_then(|c| c.next_actions.first())
                .map(|a| format!("{} ({}, {})", a.action, a.owner, a.priority)),
            stale: card.and_then(|c| c.stale.clone()),
            link: self
                .notifier
                .link(&format!("/kpi/{}/{}{view}", row.site, tile.metric.key())),
        }
    }

    /// The digest of a period as of now (and how long it took to build, in ms), of the
    /// sites within `reach` (the sum of a limited reach's sites is left out: it has no
    /// page to link to).
    #[tracing::instrument(skip_all)]
    pub async fn build_digest(
        &self,
        view: &PeriodChoice,
        reach: &Reach,
    ) -> Result<(Digest, f64), ServiceError> {
        let started = Instant::now();
        let mut dashboard = self
            .cards
            .dashboard(DashboardQuery { view: view.clone() }, reach)
            .await?;
        if !reach.is_all() {
            dashboard.network.tiles.clear();
        }
        // Links open the period reported, pinned: a link to "the latest month" would open
        // another month once this one is over.
        let query = PeriodChoice::new(&dashboard.period.label, dashboard.compare.key()).query();
        let mut items = Vec::new();
        let mut fine = 0;
        for row in std::iter::once(&dashboard.network).chain(&dashboard.sites) {
            for tile in &row.tiles {
                if needs_attention(tile) {
                    let card = row.card(tile.metric);
                    items.push(self.item(row, tile, card, &query, dashboard.compare));
                } else {
                    fine += 1;
                }
            }
        }
        // Money at stake is the penalty on a scope's failed lines in the period (the same
        // figure the card's evidence pack shows), summed from the metric store once per
        // scope.
        let costs = facts::cost_book(&self.db).await?;
        let span = parse_date(&dashboard.period.start).zip(parse_date(&dashboard.period.end));
        if let Some((from, to)) = span.filter(|_| !items.is_empty() && !costs.is_empty()) {
            let rules = store::rules::load(&self.db).await?;
            let mut by_site: HashMap<String, f64> = HashMap::new();
            for i in &mut items {
                if !by_site.contains_key(&i.site) {
                    let filter = (i.site != NETWORK).then_some(i.site.as_str());
                    let b = facts::breakdown(&self.db, filter, from, to).await?;
                    by_site.insert(i.site.clone(), at_stake(&b, &rules).at_stake);
                }
                i.money_at_stake = by_site.get(&i.site).copied();
            }
        }
        digest::rank(&mut items);
        let mut d = Digest {
            id: None,
            title: format!("Opsight digest {}", dashboard.period.label),
            generated_at: clock::now(),
            as_of: dashboard.as_of.clone(),
            period: dashboard.period.label.clone(),
            items,
            more: 0,
            fine,
            link: self.notifier.link(&format!("/{query}")),
        };
        digest::truncate(&mut d);
        Ok((d, started.elapsed().as_secs_f64() * 1000.0))
    }

    /// Stores a built digest and its deliveries on `conn` (the caller's transaction);
    /// returns the notification id.
    pub async fn queue_digest(
        &self,
        conn: &mut Conn,
        d: &Digest,
        generation_ms: f64,
        schedule_id: Option<&str>,
    ) -> Result<String, ServiceError> {
        let id = self
            .enqueue(
                conn,
                NotificationKind::Digest,
                d,
                schedule_id,
                Some(generation_ms),
                None,
            )
            .await?;
        tracing::info!(notification = %id, items = d.items.len() + d.more, generation_ms, "digest queued");
        Ok(id)
    }

    /// Builds a digest of the period asked for now and queues it to every digest channel.
    /// Digests go to shared channels: of every site (the operation table keeps principals
    /// limited to some sites from sending one).
    pub async fn send_digest(&self, input: DigestRequest) -> Result<DigestQueued, ServiceError> {
        let (d, ms) = self.build_digest(&input.view, &Reach::All).await?;
        let mut tx = store::begin(&self.db).await?;
        let id = self.queue_digest(&mut tx, &d, ms, None).await?;
        store::commit(tx).await?;
        self.wake();
        Ok(DigestQueued {
            notification_id: id,
        })
    }

    /// The digest as of now, rendered as a channel of `format` would get it (nothing is
    /// stored or sent): (content type, body).
    pub async fn preview_digest(
        &self,
        format: DigestFormat,
        reach: &Reach,
    ) -> Result<(&'static str, String), ServiceError> {
        let kind =
            ChannelKind::parse(format.format.as_deref().unwrap_or("json")).map_err(|_| {
                ServiceError::BadRequest(format!(
                    "format '{}' is slack, json or email",
                    format.format.unwrap_or_default()
                ))
            })?;
        let (digest, _) = self.build_digest(&format.view, reach).await?;
        Ok(super::render(kind, &digest))
    }
}
