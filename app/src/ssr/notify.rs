//! Notifications (digests and alerts) and their deliveries to channels.
//!
//! A notification is stored once with its [`Digest`] (the generic form); each channel
//! that takes it gets a `deliveries` row, rendered at send time as the channel wants it
//! (Slack-compatible JSON, generic JSON, or an HTML e-mail over SMTP). Deliveries are sent
//! by whichever replica claims them (a compare-and-set with a lease, as jobs are), retried
//! with exponential backoff on failure, and end `sent` or `failed` with their last error.
//!
//! Webhook URLs and SMTP passwords are secrets: they live in the configuration only, are
//! never stored, shown or logged (errors are logged without the URL).

use super::agent::Secret;
use super::db::Db;
use super::insights::{new_id, timestamp};
use super::state::AppState;
use super::ServiceError;
use crate::domain::alerts::AlertPolicy;
use crate::domain::digest::{self, Digest};
use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::time::Duration;

/// How a channel wants its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// An incoming webhook taking Slack's `{text, blocks}` (Slack, Mattermost, many bots).
    Slack,
    /// A webhook taking the generic JSON document.
    Json,
    /// An HTML e-mail through the configured SMTP server.
    Email,
}

impl ChannelKind {
    pub fn key(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Json => "json",
            ChannelKind::Email => "email",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// The webhook (secret: Slack's URL is its credential).
    pub url: Option<Secret>,
    /// E-mail recipients.
    pub to: Vec<String>,
    /// Takes digests / alerts.
    pub digests: bool,
    pub alerts: bool,
}

#[derive(Clone, Debug)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// `starttls` (587), `tls` (465) or `none` (a local relay).
    pub security: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

/// Retries: attempt n (1-based) failing waits `base × 4^(n−1)`, capped, up to `max_attempts`.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: i64,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: i64) -> Duration {
        let factor = 4u32.saturating_pow(attempt.clamp(1, 16) as u32 - 1);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Where notifications go and how they behave. Empty by default: nothing is sent.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    pub channels: Vec<Channel>,
    pub smtp: Option<Smtp>,
    /// The dashboard's public address, for links in messages (`https://ops.example.com`).
    pub base_url: Option<String>,
    pub alert_policy: AlertPolicy,
    pub retry: RetryPolicy,
    /// Each send's time limit (10 s when unset).
    pub send_timeout: Option<Duration>,
    /// How often each replica observes alert states (None: only when asked through the API).
    pub alert_every: Option<Duration>,
    /// Wakes this replica's sender when it queued something (others poll).
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Notifier {
    /// A link to a dashboard path, when a base URL is configured.
    pub fn link(&self, path: &str) -> Option<String> {
        self.base_url
            .as_ref()
            .map(|b| format!("{}{path}", b.trim_end_matches('/')))
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Checks the configuration (at start-up): names unique, webhooks http(s), e-mail
    /// channels need recipients and an SMTP server.
    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.channels.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err("a notification channel needs a name".into());
            }
            if self.channels[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("notification channel '{}' is named twice", c.name));
            }
            match c.kind {
                ChannelKind::Slack | ChannelKind::Json => {
                    let ok = c.url.as_ref().is_some_and(|u| {
                        reqwest::Url::parse(u.expose()).is_ok_and(|u| {
                            matches!(u.scheme(), "http" | "https") && u.host().is_some()
                        })
                    });
                    if !ok {
                        return Err(format!(
                            "notification channel '{}' needs a url: an http(s) webhook address",
                            c.name
                        ));
                    }
                }
                ChannelKind::Email => {
                    if c.to.is_empty() || c.to.iter().any(|t| !t.contains('@')) {
                        return Err(format!(
                            "notification channel '{}' needs `to`: one or more e-mail addresses",
                            c.name
                        ));
                    }
                    if self.smtp.is_none() {
                        return Err(format!(
                            "notification channel '{}' sends e-mail: configure [smtp] (host, from)",
                            c.name
                        ));
                    }
                }
            }
        }
        if let Some(s) = &self.smtp {
            if !matches!(s.security.as_str(), "starttls" | "tls" | "none") {
                return Err("smtp.security is starttls, tls or none".into());
            }
            if s.host.trim().is_empty() || !s.from.contains('@') {
                return Err("smtp needs a host and a from address".into());
            }
        }
        if let Some(b) = &self.base_url {
            if !(b.starts_with("http://") || b.starts_with("https://")) {
                return Err(format!(
                    "base_url '{b}' must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }
}

pub use crate::dto::{DeliveryView, NotificationView};

/// What to store: a digest (or an alert, a digest of one card).
pub struct NewNotification<'a> {
    pub kind: &'a str,
    pub digest: &'a Digest,
    pub schedule_id: Option<&'a str>,
    pub generation_ms: Option<f64>,
    /// For alerts: which card and which notice.
    pub alert: Option<(&'a str, &'a str, &'a str)>,
}

/// Stores a notification and one pending delivery per channel that takes its kind, in
/// `tx` (so an alert's state change and its deliveries commit together). Returns its id.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    notify: &Notifier,
    n: &NewNotification<'_>,
) -> anyhow::Result<String> {
    let now = Utc::now();
    let id = new_id(now, if n.kind == "alert" { "alr" } else { "dig" });
    let (site, metric, notice) = match n.alert {
        Some((s, m, k)) => (
            Some(s.to_string()),
            Some(m.to_string()),
            Some(k.to_string()),
        ),
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO notifications (id, kind, created_at, title, schedule_id, site, metric, notice, \
         items, generation_ms, body_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.clone())
    .bind(n.kind.to_string())
    .bind(timestamp(now))
    .bind(n.digest.title.clone())
    .bind(n.schedule_id.map(str::to_string))
    .bind(site)
    .bind(metric)
    .bind(notice)
    .bind((n.digest.items.len() + n.digest.more) as i64)
    .bind(n.generation_ms)
    .bind(
        serde_json::to_string(&Digest {
            id: Some(id.clone()),
            ..n.digest.clone()
        })
        .context("Failed to encode the digest")?,
    )
    .execute(&mut **tx)
    .await
    .context("Failed to store the notification")?;
    for c in notify.channels.iter().filter(|c| {
        if n.kind == "alert" {
            c.alerts
        } else {
            c.digests
        }
    }) {
        sqlx::query(
            "INSERT INTO deliveries (id, notification_id, channel, format, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        )
        .bind(new_id(now, "dlv"))
        .bind(id.clone())
        .bind(c.name.clone())
        .bind(c.kind.key())
        .bind(timestamp(now))
        .execute(&mut **tx)
        .await
        .context("Failed to queue a delivery")?;
    }
    Ok(id)
}

/// The payload a channel gets for a digest: (content type, body).
pub fn render(kind: ChannelKind, d: &Digest) -> (&'static str, String) {
    match kind {
        ChannelKind::Slack => ("application/json", digest::slack(d).to_string()),
        ChannelKind::Json => ("application/json", digest::generic(d).to_string()),
        ChannelKind::Email => ("text/html; charset=utf-8", digest::html(d)),
    }
}

/// Why a send failed: safe to store and show (no URL, no credentials).
async fn send(
    state: &AppState,
    channel: &Channel,
    d: &Digest,
) -> Result<Option<u16>, (Option<u16>, String)> {
    let timeout = state
        .notifier
        .send_timeout
        .unwrap_or(Duration::from_secs(10));
    match channel.kind {
        ChannelKind::Slack | ChannelKind::Json => {
            let url = channel
                .url
                .as_ref()
                .ok_or((None, "no webhook url is configured".to_string()))?;
            let (content_type, body) = render(channel.kind, d);
            let r = state
                .agents
                .http()
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .timeout(timeout)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    let what = if e.is_timeout() {
                        format!("no answer within {} s", timeout.as_secs())
                    } else if e.is_connect() {
                        "the webhook could not be reached".to_string()
                    } else {
                        format!("request failed: {}", e.without_url())
                    };
                    (None, what)
                })?;
            let status = r.status().as_u16();
            if r.status().is_success() {
                Ok(Some(status))
            } else {
                // A short error code helps (Slack answers `invalid_payload`); anything longer
                // is dropped: receivers echo the request path, which is the credential.
                let text = r.text().await.unwrap_or_default();
                Err((Some(status), webhook_error(status, &text)))
            }
        }
        ChannelKind::Email => {
            let smtp = state
                .notifier
                .smtp
                .as_ref()
                .ok_or((None, "no SMTP server is configured".to_string()))?;
            super::mail::send(smtp, &channel.to, &d.title, &digest::html(d), timeout)
                .await
                .map(|_| None)
                .map_err(|e| (None, e))
        }
    }
}

/// Claims and sends every due delivery (at most `limit`); returns how many were tried.
/// A delivery whose sender died mid-send is taken over when its lease expires, or marked
/// failed when that was its last attempt.
pub async fn deliver_due(state: &AppState, limit: i64) -> Result<usize, ServiceError> {
    let now = timestamp(Utc::now());
    let max = state.notifier.retry.max_attempts;
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', lease_until = NULL, \
         last_error = 'the sender stopped during the last attempt' \
         WHERE status = 'sending' AND lease_until < $1 AND attempts >= $2",
    )
    .bind(now.clone())
    .bind(max)
    .execute(&state.db)
    .await
    .context("Failed to close abandoned deliveries")?;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE (status = 'pending' AND next_attempt_at <= $1) \
         OR (status = 'sending' AND lease_until < $1) ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&state.db)
    .await
    .context("Failed to read due deliveries")?;
    let mut tried = 0;
    for id in due {
        if deliver_one(state, &id).await? {
            tried += 1;
        }
    }
    Ok(tried)
}

async fn deliver_one(state: &AppState, id: &str) -> Result<bool, ServiceError> {
    // The lease starts at the claim (not at the batch's start) and outlasts one send.
    let now = Utc::now();
    let timeout = state
        .notifier
        .send_timeout
        .unwrap_or(Duration::from_secs(10));
    let lease =
        now + chrono::Duration::from_std(timeout * 2 + Duration::from_secs(5)).unwrap_or_default();
    let claimed = sqlx::query(
        "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_by = $2, \
         lease_until = $3 WHERE id = $1 AND ((status = 'pending' AND next_attempt_at <= $4) \
         OR (status = 'sending' AND lease_until < $4 AND attempts < $5))",
    )
    .bind(id.to_string())
    .bind(state.jobs.replica.to_string())
    .bind(timestamp(lease))
    .bind(timestamp(now))
    .bind(state.notifier.retry.max_attempts)
    .execute(&state.db)
    .await
    .context("Failed to claim a delivery")?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT d.channel, d.attempts, n.body_json, n.kind FROM deliveries d \
         JOIN notifications n ON n.id = d.notification_id WHERE d.id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&state.db)
    .await
    .context("Failed to read a delivery")?;
    let channel: String = row.try_get(0).context("delivery channel")?;
    let attempts: i64 = row.try_get(1).context("delivery attempts")?;
    let body: String = row.try_get(2).context("notification body")?;
    let outcome = match (
        state.notifier.channel(&channel),
        serde_json::from_str::<Digest>(&body),
    ) {
        (None, _) => Err((None, format!("channel '{channel}' is no longer configured"))),
        (_, Err(e)) => Err((None, format!("the stored notification is unreadable: {e}"))),
        (Some(c), Ok(d)) => send(state, c, &d).await,
    };
    let done = timestamp(Utc::now());
    let policy = state.notifier.retry;
    let (status, next, http_status, error) = match outcome {
        Ok(code) => ("sent", done.clone(), code, None),
        Err((code, e)) => {
            let gone = channel_gone(state, &channel);
            if attempts >= policy.max_attempts || gone {
                tracing::warn!(delivery = %id, channel = %channel, attempts, error = %e, "delivery failed for good");
                ("failed", done.clone(), code, Some(e))
            } else {
                let wait = policy.backoff(attempts);
                tracing::info!(delivery = %id, channel = %channel, attempts, retry_in_s = wait.as_secs_f64(), error = %e, "delivery failed; will retry");
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                ("pending", timestamp(at), code, Some(e))
            }
        }
    };
    // Fenced by claimant and attempt: a sender that lost its lease cannot overwrite.
    sqlx::query(
        "UPDATE deliveries SET status = $3, next_attempt_at = $4, http_status = $5, last_error = $6, \
         sent_at = $7, lease_until = NULL WHERE id = $1 AND claimed_by = $2 AND attempts = $8",
    )
    .bind(id.to_string())
    .bind(state.jobs.replica.to_string())
    .bind(status)
    .bind(next)
    .bind(http_status.map(i64::from))
    .bind(error)
    .bind((status == "sent").then_some(done))
    .bind(attempts)
    .execute(&state.db)
    .await
    .context("Failed to record a delivery")?;
    Ok(true)
}

/// "the webhook answered HTTP 400: invalid_payload"; the body only when it is a short
/// code (letters, digits, `_`, `-`, `.`, spaces), never free text that may quote the URL.
fn webhook_error(status: u16, body: &str) -> String {
    let code = body.trim();
    let safe = !code.is_empty()
        && code.len() <= 40
        && !code.contains('/')
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if safe {
        format!("the webhook answered HTTP {status}: {code}")
    } else {
        format!("the webhook answered HTTP {status}")
    }
}

fn channel_gone(state: &AppState, name: &str) -> bool {
    state.notifier.channel(name).is_none()
}

/// Recent notifications with their deliveries, newest first.
pub async fn list(db: &Db, limit: i64) -> Result<Vec<NotificationView>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, kind, created_at, title, items, generation_ms, site, metric, notice FROM notifications \
         ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    .context("Failed to read notifications")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0).context("notification id")?;
        out.push(NotificationView {
            deliveries: deliveries(db, &id).await?,
            id,
            kind: r.try_get(1).context("kind")?,
            created_at: r.try_get(2).context("created_at")?,
            title: r.try_get(3).context("title")?,
            items: r.try_get(4).context("items")?,
            generation_ms: r.try_get(5).context("generation_ms")?,
            site: r.try_get(6).context("site")?,
            metric: r.try_get(7).context("metric")?,
            notice: r.try_get(8).context("notice")?,
        });
    }
    Ok(out)
}

pub async fn deliveries(db: &Db, notification: &str) -> Result<Vec<DeliveryView>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, channel, format, status, attempts, next_attempt_at, http_status, last_error, sent_at \
         FROM deliveries WHERE notification_id = $1 ORDER BY channel",
    )
    .bind(notification.to_string())
    .fetch_all(db)
    .await
    .context("Failed to read deliveries")?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryView {
                id: r.try_get(0)?,
                channel: r.try_get(1)?,
                format: r.try_get(2)?,
                status: r.try_get(3)?,
                attempts: r.try_get(4)?,
                next_attempt_at: r.try_get(5)?,
                http_status: r.try_get(6)?,
                last_error: r.try_get(7)?,
                sent_at: r.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| {
            ServiceError::Internal(anyhow::Error::new(e).context("Failed to read deliveries"))
        })
}

/// The notifications page.
pub async fn page(state: &AppState) -> Result<crate::dto::NotificationsView, ServiceError> {
    Ok(crate::dto::NotificationsView {
        channels: state
            .notifier
            .channels
            .iter()
            .map(|c| crate::dto::ChannelView {
                name: c.name.clone(),
                kind: c.kind.key().to_string(),
                digests: c.digests,
                alerts: c.alerts,
            })
            .collect(),
        notifications: list(&state.db, 50).await?,
    })
}

/// A stored notification's digest (for previews: the e-mail body, the payloads).
pub async fn digest_of(db: &Db, id: &str) -> Result<Digest, ServiceError> {
    let body: Option<String> =
        sqlx::query_scalar("SELECT body_json FROM notifications WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(db)
            .await
            .context("Failed to read the notification")?;
    let body = body.ok_or_else(|| ServiceError::NotFound(format!("no notification '{id}'")))?;
    Ok(serde_json::from_str(&body).context("Failed to decode the notification")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_errors_keep_codes_and_drop_echoed_paths() {
        assert_eq!(
            webhook_error(400, "invalid_payload\n"),
            "the webhook answered HTTP 400: invalid_payload"
        );
        assert_eq!(
            webhook_error(404, "Cannot POST /hooks/T0/B0/secret"),
            "the webhook answered HTTP 404"
        );
        assert_eq!(
            webhook_error(500, &"x".repeat(80)),
            "the webhook answered HTTP 500"
        );
        assert_eq!(webhook_error(502, ""), "the webhook answered HTTP 502");
    }

    #[test]
    fn backoff_grows_fourfold_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(30));
        assert_eq!(p.backoff(2), Duration::from_secs(120));
        assert_eq!(p.backoff(3), Duration::from_secs(480));
        assert_eq!(p.backoff(5), Duration::from_secs(3600));
        assert_eq!(p.backoff(99), Duration::from_secs(3600));
    }

    fn hook(name: &str, url: &str) -> Channel {
        Channel {
            name: name.into(),
            kind: ChannelKind::Slack,
            url: Some(Secret::new(url)),
            to: vec![],
            digests: true,
            alerts: true,
        }
    }

    #[test]
    fn configuration_is_checked() {
        let mut n = Notifier {
            channels: vec![hook("ops", "https://hooks.example.com/T/B/x")],
            ..Notifier::default()
        };
        assert!(n.validate().is_ok());
        n.channels.push(hook("ops", "https://x.example.com"));
        assert!(n.validate().unwrap_err().contains("named twice"));
        n.channels[1] = hook("b", "ftp://x");
        assert!(n.validate().unwrap_err().contains("http(s) webhook"));
        n.channels[1] = Channel {
            kind: ChannelKind::Email,
            to: vec!["ops@example.com".into()],
            url: None,
            ..hook("mail", "")
        };
        assert!(n.validate().unwrap_err().contains("configure [smtp]"));
        // Secrets never print.
        assert!(!format!("{:?}", n.channels[0]).contains("hooks.example.com"));
    }
}
