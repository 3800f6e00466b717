//! Alert evaluation: each card's trigger state is observed when its inputs change (week,
//! value, rules version), the pure state machine in [`crate::domain::alerts`] decides
//! whether people hear about it, and the new state and its notification commit together.
//! State rows are updated by compare-and-set on a revision, so replicas evaluating at
//! the same moment send one notice, not two.

use super::notify::{self, NewNotification};
use super::state::AppState;
use super::{digests, insights::timestamp, kpis, ServiceError};
use crate::domain::alerts::{observe, AlertState, Notice};
use crate::domain::digest::Digest;
use crate::dto::{SiteRow, Tile};
use anyhow::Context;
use sqlx::Row;
use std::collections::HashMap;

struct Stored {
    state: AlertState,
    fingerprint: String,
    revision: i64,
}

/// What the observation depends on: a re-read of unchanged inputs is not an observation.
fn fingerprint(week: &str, tile: &Tile, rules_version: i64) -> String {
    format!(
        "{week}|{:?}|{rules_version}|{}",
        tile.value.map(|v| (v * 1e6).round() as i64),
        tile.trigger.as_deref().unwrap_or("-")
    )
}

async fn stored(state: &AppState) -> Result<HashMap<(String, String), Stored>, ServiceError> {
    let rows = sqlx::query(
        "SELECT site, metric, firing, history, flapping, notified, fingerprint, revision FROM alert_states",
    )
    .fetch_all(&state.db)
    .await
    .context("Failed to read alert states")?;
    let mut out = HashMap::new();
    for r in &rows {
        let read = || -> Result<((String, String), Stored), sqlx::Error> {
            let notified: Option<i64> = r.try_get(5)?;
            Ok((
                (r.try_get(0)?, r.try_get(1)?),
                Stored {
                    state: AlertState {
                        firing: r.try_get::<i64, _>(2)? != 0,
                        history: r.try_get(3)?,
                        flapping: r.try_get::<i64, _>(4)? != 0,
                        notified: notified.map(|n| n != 0),
                    },
                    fingerprint: r.try_get(6)?,
                    revision: r.try_get(7)?,
                },
            ))
        };
        let (k, v) = read().context("Failed to read an alert state")?;
        out.insert(k, v);
    }
    Ok(out)
}

fn title(row: &SiteRow, tile: &Tile, notice: Notice) -> String {
    let what = match notice {
        Notice::Fired => format!("trigger {} fired", tile.trigger.as_deref().unwrap_or("?")),
        Notice::Resolved => "back to normal: no trigger fires".to_string(),
        Notice::Flapping => {
            "keeps flipping between firing and normal; alerts paused until it settles".to_string()
        }
    };
    format!("Opsight alert: {} {} {what}", row.name, tile.name)
}

/// Observes every card once; returns the alert notifications queued.
pub async fn evaluate(state: &AppState) -> Result<Vec<String>, ServiceError> {
    let dashboard = kpis::dashboard(state).await?;
    let mut known = stored(state).await?;
    let policy = state.notifier.alert_policy;
    let now = timestamp(chrono::Utc::now());
    let mut queued = Vec::new();
    for row in std::iter::once(&dashboard.network).chain(&dashboard.sites) {
        for tile in &row.tiles {
            // A week without data says nothing about the trigger (a stopped feed is not
            // "back to normal"): no observation.
            if tile.value.is_none() {
                continue;
            }
            let key = (row.site.clone(), tile.metric.key().to_string());
            let fp = fingerprint(&dashboard.period.label, tile, dashboard.rules_version);
            let before = known.remove(&key);
            if before.as_ref().is_some_and(|b| b.fingerprint == fp) {
                continue;
            }
            let old = before.as_ref().map(|b| b.state.clone()).unwrap_or_default();
            let (next, notice) = observe(&old, tile.trigger.is_some(), policy);
            let mut tx = state
                .db
                .begin()
                .await
                .context("Failed to start a transaction")?;
            // One compare-and-set for a first observation and a later one: the row is
            // written only if it is still at the revision read (0: not there yet).
            let q = sqlx::query(
                "INSERT INTO alert_states (site, metric, firing, history, flapping, notified, \
                 trigger_key, fingerprint, revision, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
                 ON CONFLICT (site, metric) DO UPDATE SET firing = excluded.firing, \
                 history = excluded.history, flapping = excluded.flapping, \
                 notified = excluded.notified, trigger_key = excluded.trigger_key, \
                 fingerprint = excluded.fingerprint, revision = alert_states.revision + 1, \
                 updated_at = excluded.updated_at WHERE alert_states.revision = $10",
            )
            .bind(key.0.clone())
            .bind(key.1.clone())
            .bind(i64::from(next.firing))
            .bind(next.history.clone())
            .bind(i64::from(next.flapping))
            .bind(next.notified.map(i64::from))
            .bind(tile.trigger.clone())
            .bind(fp.clone())
            .bind(now.clone())
            .bind(before.as_ref().map_or(0, |b| b.revision));
            let won = q
                .execute(&mut *tx)
                .await
                .context("Failed to store an alert state")?
                .rows_affected()
                == 1;
            if !won {
                // Another replica observed the same change first.
                let _ = tx.rollback().await;
                continue;
            }
            if let Some(notice) = notice {
                let mut item = digests::item(state, row, tile, row.card(tile.metric));
                if notice == Notice::Resolved {
                    item.trigger = None;
                }
                let d = Digest {
                    id: None,
                    title: title(row, tile, notice),
                    generated_at: now.clone(),
                    as_of: dashboard.as_of.clone(),
                    period: dashboard.period.label.clone(),
                    items: vec![item],
                    more: 0,
                    fine: 0,
                    link: state.notifier.link("/"),
                };
                let id = notify::enqueue(
                    &mut tx,
                    &state.notifier,
                    &NewNotification {
                        kind: "alert",
                        digest: &d,
                        schedule_id: None,
                        generation_ms: None,
                        alert: Some((&key.0, &key.1, notice.key())),
                    },
                )
                .await?;
                tracing::info!(site = %key.0, metric = %key.1, notice = notice.key(), notification = %id, "alert");
                queued.push(id);
            }
            tx.commit().await.context("Failed to store an alert")?;
        }
    }
    if !queued.is_empty() {
        state.notifier.wake.notify_one();
    }
    Ok(queued)
}
