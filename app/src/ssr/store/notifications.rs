//! Notifications (digests and alerts), their deliveries to channels, and each card's
//! alert state. Deliveries are claimed like jobs (a compare-and-set with a lease) and
//! fenced by claimant and attempt.

use super::{decode, Ctx, Exec, Result};
use crate::domain::alerts::AlertState;
use crate::domain::status::{ChannelKind, DeliveryStatus, NotificationKind};
use crate::dto::{DeliveryView, NotificationView};
use std::collections::HashMap;

/// A notification to store.
pub struct NewNotification<'a> {
    pub id: &'a str,
    pub kind: NotificationKind,
    pub created_at: &'a str,
    pub title: &'a str,
    pub schedule_id: Option<&'a str>,
    /// Alerts: (site, metric, notice).
    pub alert: Option<(&'a str, &'a str, &'a str)>,
    pub items: i64,
    pub generation_ms: Option<f64>,
    pub body_json: &'a str,
}

pub async fn insert<'e>(ex: impl Exec<'e>, n: &NewNotification<'_>) -> Result<()> {
    let (site, metric, notice) = match n.alert {
        Some((s, m, k)) => (Some(s), Some(m), Some(k)),
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO notifications (id, kind, created_at, title, schedule_id, site, metric, notice, \
         items, generation_ms, body_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(n.id.to_string())
    .bind(n.kind.as_str())
    .bind(n.created_at.to_string())
    .bind(n.title.to_string())
    .bind(n.schedule_id.map(str::to_string))
    .bind(site.map(str::to_string))
    .bind(metric.map(str::to_string))
    .bind(notice.map(str::to_string))
    .bind(n.items)
    .bind(n.generation_ms)
    .bind(n.body_json.to_string())
    .execute(ex)
    .await
    .ctx("Failed to store the notification")?;
    Ok(())
}

/// Queues one delivery of a notification to a channel, due at once.
pub async fn insert_delivery<'e>(
    ex: impl Exec<'e>,
    id: &str,
    notification_id: &str,
    channel: &str,
    format: ChannelKind,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (id, notification_id, channel, format, status, attempts, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(id.to_string())
    .bind(notification_id.to_string())
    .bind(channel.to_string())
    .bind(format.as_str())
    .bind(DeliveryStatus::Pending.as_str())
    .bind(now.to_string())
    .execute(ex)
    .await
    .ctx("Failed to queue a delivery")?;
    Ok(())
}

/// Marks deliveries whose sender died during their last allowed attempt as failed.
pub async fn close_abandoned<'e>(ex: impl Exec<'e>, now: &str, max_attempts: i64) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = $3, lease_until = NULL, \
         last_error = 'the sender stopped during the last attempt' \
         WHERE status = $4 AND lease_until < $1 AND attempts >= $2",
    )
    .bind(now.to_string())
    .bind(max_attempts)
    .bind(DeliveryStatus::Failed.as_str())
    .bind(DeliveryStatus::Sending.as_str())
    .execute(ex)
    .await
    .ctx("Failed to close abandoned deliveries")?;
    Ok(())
}

/// Deliveries due now (pending and due, or sending under an expired lease), oldest first.
pub async fn due<'e>(ex: impl Exec<'e>, now: &str, limit: i64) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE (status = $3 AND next_attempt_at <= $1) \
         OR (status = $4 AND lease_until < $1) ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now.to_string())
    .bind(limit)
    .bind(DeliveryStatus::Pending.as_str())
    .bind(DeliveryStatus::Sending.as_str())
    .fetch_all(ex)
    .await
    .ctx("Failed to read due deliveries")
}

/// Claims a due delivery for `replica` until `lease_until`, counting the attempt; false
/// when it is not due (any more) or another replica holds it.
pub async fn claim_delivery<'e>(
    ex: impl Exec<'e>,
    id: &str,
    replica: &str,
    lease_until: &str,
    now: &str,
    max_attempts: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = $6, attempts = attempts + 1, claimed_by = $2, \
         lease_until = $3 WHERE id = $1 AND ((status = $7 AND next_attempt_at <= $4) \
         OR (status = $6 AND lease_until < $4 AND attempts < $5))",
    )
    .bind(id.to_string())
    .bind(replica.to_string())
    .bind(lease_until.to_string())
    .bind(now.to_string())
    .bind(max_attempts)
    .bind(DeliveryStatus::Sending.as_str())
    .bind(DeliveryStatus::Pending.as_str())
    .execute(ex)
    .await
    .ctx("Failed to claim a delivery")?;
    Ok(r.rows_affected() == 1)
}

/// A claimed delivery: its channel, the attempt number and the notification's body.
#[derive(sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub channel: String,
    pub attempts: i64,
    pub body_json: String,
}

pub async fn claimed<'e>(ex: impl Exec<'e>, id: &str) -> Result<ClaimedDelivery> {
    sqlx::query_as(
        "SELECT d.channel, d.attempts, n.body_json FROM deliveries d \
         JOIN notifications n ON n.id = d.notification_id WHERE d.id = $1",
    )
    .bind(id.to_string())
    .fetch_one(ex)
    .await
    .ctx("Failed to read a delivery")
}

/// How an attempt ended.
pub struct Attempted<'a> {
    pub status: DeliveryStatus,
    pub next_attempt_at: &'a str,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub sent_at: Option<&'a str>,
}

/// Records an attempt, fenced by claimant and attempt number: a sender that lost its
/// lease cannot overwrite the one that took over.
pub async fn record_attempt<'e>(
    ex: impl Exec<'e>,
    id: &str,
    replica: &str,
    attempts: i64,
    a: &Attempted<'_>,
) -> Result<()> {
    sqlx::query(
        "UPDATE deliveries SET status = $3, next_attempt_at = $4, http_status = $5, last_error = $6, \
         sent_at = $7, lease_until = NULL WHERE id = $1 AND claimed_by = $2 AND attempts = $8",
    )
    .bind(id.to_string())
    .bind(replica.to_string())
    .bind(a.status.as_str())
    .bind(a.next_attempt_at.to_string())
    .bind(a.http_status.map(i64::from))
    .bind(a.error.map(str::to_string))
    .bind(a.sent_at.map(str::to_string))
    .bind(attempts)
    .execute(ex)
    .await
    .ctx("Failed to record a delivery")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: String,
    kind: String,
    created_at: String,
    title: String,
    items: i64,
    generation_ms: Option<f64>,
    site: Option<String>,
    metric: Option<String>,
    notice: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    channel: String,
    format: String,
    status: String,
    attempts: i64,
    next_attempt_at: String,
    http_status: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<String>,
}

impl DeliveryRow {
    fn into_view(self) -> Result<DeliveryView> {
        Ok(DeliveryView {
            format: decode("deliveries.format", ChannelKind::parse(&self.format))?,
            status: decode("deliveries.status", DeliveryStatus::parse(&self.status))?,
            id: self.id,
            channel: self.channel,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            http_status: self.http_status,
            last_error: self.last_error,
            sent_at: self.sent_at,
        })
    }
}

/// Recent notifications with their deliveries, newest first.
pub async fn list<'e>(ex: impl Exec<'e> + Copy, limit: i64) -> Result<Vec<NotificationView>> {
    let rows: Vec<NotificationRow> = sqlx::query_as(
        "SELECT id, kind, created_at, title, items, generation_ms, site, metric, notice FROM notifications \
         ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read notifications")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(NotificationView {
            deliveries: deliveries(ex, &r.id).await?,
            kind: decode("notifications.kind", NotificationKind::parse(&r.kind))?,
            id: r.id,
            created_at: r.created_at,
            title: r.title,
            items: r.items,
            generation_ms: r.generation_ms,
            site: r.site,
            metric: r.metric,
            notice: r.notice,
        });
    }
    Ok(out)
}

pub async fn deliveries<'e>(ex: impl Exec<'e>, notification: &str) -> Result<Vec<DeliveryView>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT id, channel, format, status, attempts, next_attempt_at, http_status, last_error, sent_at \
         FROM deliveries WHERE notification_id = $1 ORDER BY channel",
    )
    .bind(notification.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read deliveries")?;
    rows.into_iter().map(DeliveryRow::into_view).collect()
}

/// A stored notification's body (its digest, JSON).
pub async fn body<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT body_json FROM notifications WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(ex)
        .await
        .ctx("Failed to read the notification")
}

/// Deliveries in these states, across every replica (for `/metrics`).
pub async fn count_deliveries<'e>(ex: impl Exec<'e>, states: &[DeliveryStatus]) -> Result<i64> {
    let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries WHERE status IN ({})",
        super::list(states.len(), 1)
    )));
    for s in states {
        q = q.bind(s.as_str());
    }
    q.fetch_one(ex).await.ctx("Failed to count deliveries")
}

/// A card's alert state as last observed.
pub struct StoredAlert {
    pub state: AlertState,
    /// What the observation depended on: unchanged inputs are not a new observation.
    pub fingerprint: String,
    /// The compare-and-set token.
    pub revision: i64,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    site: String,
    metric: String,
    firing: i64,
    history: String,
    flapping: i64,
    notified: Option<i64>,
    fingerprint: String,
    revision: i64,
}

/// Every card's alert state, by (site, metric key).
pub async fn alert_states<'e>(ex: impl Exec<'e>) -> Result<HashMap<(String, String), StoredAlert>> {
    let rows: Vec<AlertRow> = sqlx::query_as(
        "SELECT site, metric, firing, history, flapping, notified, fingerprint, revision FROM alert_states",
    )
    .fetch_all(ex)
    .await
    .ctx("Failed to read alert states")?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.site, r.metric),
                StoredAlert {
                    state: AlertState {
                        firing: r.firing != 0,
                        history: r.history,
                        flapping: r.flapping != 0,
                        notified: r.notified.map(|n| n != 0),
                    },
                    fingerprint: r.fingerprint,
                    revision: r.revision,
                },
            )
        })
        .collect())
}

/// Writes a card's new alert state if it is still at `revision` (0: no row yet): one
/// compare-and-set for a first observation and a later one. False when another replica
/// observed the change first.
#[allow(clippy::too_many_arguments)] // one row's columns
pub async fn set_alert_state<'e>(
    ex: impl Exec<'e>,
    site: &str,
    metric: &str,
    next: &AlertState,
    trigger_key: Option<&str>,
    fingerprint: &str,
    revision: i64,
    now: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO alert_states (site, metric, firing, history, flapping, notified, \
         trigger_key, fingerprint, revision, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
         ON CONFLICT (site, metric) DO UPDATE SET firing = excluded.firing, \
         history = excluded.history, flapping = excluded.flapping, \
         notified = excluded.notified, trigger_key = excluded.trigger_key, \
         fingerprint = excluded.fingerprint, revision = alert_states.revision + 1, \
         updated_at = excluded.updated_at WHERE alert_states.revision = $10",
    )
    .bind(site.to_string())
    .bind(metric.to_string())
    .bind(i64::from(next.firing))
    .bind(next.history.clone())
    .bind(i64::from(next.flapping))
    .bind(next.notified.map(i64::from))
    .bind(trigger_key.map(str::to_string))
    .bind(fingerprint.to_string())
    .bind(now.to_string())
    .bind(revision)
    .execute(ex)
    .await
    .ctx("Failed to store an alert state")?;
    Ok(r.rows_affected() == 1)
}
