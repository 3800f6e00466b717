//! Building and sending digests: the dashboard's cards that are off target or unusual,
//! with their latest insights, ranked by money at stake (when unit costs are known: the
//! penalty on each scope's failed lines that week, as in its evidence pack), queued to
//! every channel that takes digests.

use super::notify::{self, NewNotification};
use super::state::AppState;
use super::{db, kpis, ServiceError};
use crate::domain::digest::{self, Digest, DigestItem};
use crate::domain::evidence::{LineFact, NETWORK};
use crate::domain::materiality::materiality;
use crate::domain::period::Week;
use crate::domain::rules::Status;
use crate::dto::{Card, Dashboard, SiteRow, Tile};
use anyhow::Context;
use std::collections::HashMap;
use std::time::Instant;

/// Whether a card belongs in a digest.
pub fn needs_attention(t: &Tile) -> bool {
    t.status == Status::OffTarget || t.anomaly.as_ref().is_some_and(|a| a.unusual)
}

/// One digest line from a tile, its card and its row.
pub fn item(state: &AppState, row: &SiteRow, tile: &Tile, card: Option<&Card>) -> DigestItem {
    let insight = card.and_then(|c| c.insight.as_ref());
    let contract = insight.and_then(|i| i.insight.as_ref());
    DigestItem {
        site: row.site.clone(),
        site_name: row.name.clone(),
        metric: tile.metric.key().to_string(),
        metric_name: tile.name.clone(),
        unit: if tile.metric.is_ratio() { "%" } else { "lines" }.to_string(),
        value: tile.value,
        target: tile.target,
        change: tile.change,
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
            format!(
                "{} {}: {:+.1} pts ({})",
                r.dimension, r.member, r.impact_pp, r.evidence
            )
        }),
        next_action: contract
            .and_then(|c| c.next_actions.first())
            .map(|a| format!("{} ({}, {})", a.action, a.owner, a.priority)),
        stale: card.and_then(|c| c.stale.clone()),
        link: state
            .notifier
            .link(&format!("/kpi/{}/{}", row.site, tile.metric.key())),
    }
}

fn rows(d: &Dashboard) -> impl Iterator<Item = &SiteRow> {
    std::iter::once(&d.network).chain(&d.sites)
}

/// The digest as of now (and how long it took to build, in ms).
pub async fn build(state: &AppState) -> Result<(Digest, f64), ServiceError> {
    let started = Instant::now();
    let dashboard = kpis::dashboard(state).await?;
    let mut items = Vec::new();
    let mut fine = 0;
    for row in rows(&dashboard) {
        for tile in &row.tiles {
            if needs_attention(tile) {
                items.push(item(state, row, tile, row.card(tile.metric)));
            } else {
                fine += 1;
            }
        }
    }
    // Money at stake is the penalty on a scope's failed lines that week (the same figure
    // the card's evidence pack shows): one read of the week's lines serves every card.
    let costs = db::cost_book(&state.db).await?;
    if !items.is_empty() && !costs.is_empty() {
        let rules = db::rules(&state.db).await?;
        let week = Week::latest_complete(state.today());
        let lines = db::line_facts(&state.db, None, week.start, week.end()).await?;
        let penalty = rules.value("penalty_share_of_cost", 0.03).clamp(0.0, 1.0);
        let mut by_site: HashMap<String, f64> = HashMap::new();
        for i in &mut items {
            let money = by_site.entry(i.site.clone()).or_insert_with(|| {
                let at_stake = |scope: &[LineFact], network: bool| {
                    materiality(scope, week, rules.scoring(), &costs, penalty, network).at_stake
                };
                if i.site == NETWORK {
                    at_stake(&lines, true)
                } else {
                    let site: Vec<LineFact> =
                        lines.iter().filter(|l| l.site == i.site).cloned().collect();
                    at_stake(&site, false)
                }
            });
            i.money_at_stake = Some(*money);
        }
    }
    digest::rank(&mut items);
    let mut d = Digest {
        id: None,
        title: format!("Opsight digest {}", dashboard.period.label),
        generated_at: super::insights::timestamp(chrono::Utc::now()),
        as_of: dashboard.as_of.clone(),
        period: dashboard.period.label.clone(),
        items,
        more: 0,
        fine,
        link: state.notifier.link("/"),
    };
    digest::truncate(&mut d);
    Ok((d, started.elapsed().as_secs_f64() * 1000.0))
}

/// Stores a built digest and its deliveries in `tx`; returns the notification id.
pub async fn queue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    state: &AppState,
    d: &Digest,
    generation_ms: f64,
    schedule_id: Option<&str>,
) -> Result<String, ServiceError> {
    let id = notify::enqueue(
        tx,
        &state.notifier,
        &NewNotification {
            kind: "digest",
            digest: d,
            schedule_id,
            generation_ms: Some(generation_ms),
            alert: None,
        },
    )
    .await?;
    tracing::info!(notification = %id, items = d.items.len() + d.more, generation_ms, "digest queued");
    Ok(id)
}

/// Builds a digest now and queues it to every digest channel; returns the notification id.
pub async fn send(state: &AppState) -> Result<String, ServiceError> {
    let (d, ms) = build(state).await?;
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    let id = queue(&mut tx, state, &d, ms, None).await?;
    tx.commit().await.context("Failed to store the digest")?;
    state.notifier.wake.notify_one();
    Ok(id)
}
