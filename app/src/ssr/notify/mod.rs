//! Notifications: digests and alerts, and their deliveries to channels.
//!
//! - this module: channels and their configuration ([`Notifier`]), storing a notification
//!   with one delivery per channel that takes it, and sending due deliveries.
//! - [`digests`]: the digest of cards needing attention, ranked by money at stake.
//! - [`alerts`]: each card's trigger state observed; notices on change, flap suppression.
//! - [`mail`]: optional e-mail over SMTP.
//!
//! A notification is stored once with its [`Digest`] (the generic form); each channel
//! that takes it gets a `deliveries` row, rendered at send time as the channel wants it
//! (Slack-compatible JSON, generic JSON, or an HTML e-mail over SMTP). Deliveries are sent
//! by whichever replica claims them (a compare-and-set with a lease, as jobs are), retried
//! with exponential backoff on failure, and end `sent` or `failed` with their last error.
//!
//! Webhook URLs and SMTP passwords are secrets: they live in the configuration only, are
//! never stored, shown or logged (errors are logged without the URL).

pub mod alerts;
pub mod digests;
pub mod mail;

use crate::domain::alerts::AlertPolicy;
use crate::domain::digest::{self, Digest};
use crate::domain::status::{ChannelKind, DeliveryStatus, NotificationKind};
use crate::dto::{ChannelView, NotificationsQuery, NotificationsView};
use crate::ssr::agent::Secret;
use crate::ssr::cards::Cards;
use crate::ssr::clock::{new_id, timestamp};
use crate::ssr::error::ServiceError;
use crate::ssr::store::notifications::{self, Attempted, NewNotification};
use crate::ssr::store::{Conn, Db};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

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

impl Channel {
    /// Whether this channel takes notifications of `kind`.
    pub fn takes(&self, kind: NotificationKind) -> bool {
        match kind {
            NotificationKind::Digest => self.digests,
            NotificationKind::Alert => self.alerts,
        }
    }
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
    /// The CA bundle its TLS trusts beside the built-in roots (the process's).
    pub trust: crate::ssr::trust::Trust,
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

    fn send_timeout(&self) -> Duration {
        self.send_timeout.unwrap_or(Duration::from_secs(10))
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

/// The payload a channel gets for a digest: (content type, body).
pub fn render(kind: ChannelKind, d: &Digest) -> (&'static str, String) {
    match kind {
        ChannelKind::Slack => ("application/json", digest::slack(d).to_string()),
        ChannelKind::Json => ("application/json", digest::generic(d).to_string()),
        ChannelKind::Email => ("text/html; charset=utf-8", digest::html(d)),
    }
}

/// The notifications capability.
#[derive(Clone, Debug)]
pub struct Notify {
    db: Db,
    cards: Cards,
    notifier: Arc<Notifier>,
    /// The shared HTTP client (webhooks).
    http: reqwest::Client,
    /// This replica's name in delivery claims.
    replica: Arc<str>,
    /// Wakes this replica's sender when it queued something (others poll).
    wake: Arc<tokio::sync::Notify>,
}

impl Notify {
    pub fn new(
        db: Db,
        cards: Cards,
        notifier: Notifier,
        http: reqwest::Client,
        replica: Arc<str>,
    ) -> Notify {
        Notify {
            db,
            cards,
            notifier: Arc::new(notifier),
            http,
            replica,
            wake: Default::default(),
        }
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Wakes this replica's sender (something was queued here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when something is queued on this replica.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Stores a notification and one pending delivery per channel that takes its kind, on
    /// `conn` (the caller's transaction: an alert's state change and its deliveries commit
    /// together). Returns its id.
    pub async fn enqueue(
        &self,
        conn: &mut Conn,
        kind: NotificationKind,
        d: &Digest,
        schedule_id: Option<&str>,
        generation_ms: Option<f64>,
        alert: Option<(&str, &str, &str)>,
    ) -> Result<String, ServiceError> {
        let now = Utc::now();
        let id = new_id(
            now,
            match kind {
                NotificationKind::Alert => "alr",
                NotificationKind::Digest => "dig",
            },
        );
        let created_at = timestamp(now);
        let body = serde_json::to_string(&Digest {
            id: Some(id.clone()),
            ..d.clone()
        })
        .map_err(|e| anyhow::anyhow!("Failed to encode the digest: {e}"))?;
        notifications::insert(
            &mut *conn,
            &NewNotification {
                id: &id,
                kind,
                created_at: &created_at,
                title: &d.title,
                schedule_id,
                alert,
                items: (d.items.len() + d.more) as i64,
                generation_ms,
                body_json: &body,
            },
        )
        .await?;
        for c in self.notifier.channels.iter().filter(|c| c.takes(kind)) {
            notifications::insert_delivery(
                &mut *conn,
                &new_id(now, "dlv"),
                &id,
                &c.name,
                c.kind,
                &created_at,
            )
            .await?;
        }
        Ok(id)
    }

    /// Claims and sends every due delivery (at most `limit`); returns how many were tried.
    /// A delivery whose sender died mid-send is taken over when its lease expires, or
    /// marked failed when that was its last attempt.
    pub async fn deliver_due(&self, limit: i64) -> Result<usize, ServiceError> {
        let now = timestamp(Utc::now());
        let max = self.notifier.retry.max_attempts;
        notifications::close_abandoned(&self.db, &now, max).await?;
        let mut tried = 0;
        for id in notifications::due(&self.db, &now, limit).await? {
            if self.deliver_one(&id).await? {
                tried += 1;
            }
        }
        Ok(tried)
    }

    #[tracing::instrument(skip_all, fields(delivery = %id))]
    async fn deliver_one(&self, id: &str) -> Result<bool, ServiceError> {
        // The lease starts at the claim (not at the batch's start) and outlasts one send.
        let now = Utc::now();
        let timeout = self.notifier.send_timeout();
        let lease = now
            + chrono::Duration::from_std(timeout * 2 + Duration::from_secs(5)).unwrap_or_default();
        let claimed = notifications::claim_delivery(
            &self.db,
            id,
            &self.replica,
            &timestamp(lease),
            &timestamp(now),
            self.notifier.retry.max_attempts,
        )
        .await?;
        if !claimed {
            return Ok(false);
        }
        let d = notifications::claimed(&self.db, id).await?;
        let channel = self.notifier.channel(&d.channel);
        let outcome = match (channel, serde_json::from_str::<Digest>(&d.body_json)) {
            (None, _) => Err((
                None,
                format!("channel '{}' is no longer configured", d.channel),
            )),
            (_, Err(e)) => Err((None, format!("the stored notification is unreadable: {e}"))),
            (Some(c), Ok(digest)) => self.send(c, &digest).await,
        };
        let done = timestamp(Utc::now());
        let policy = self.notifier.retry;
        let attempts = d.attempts;
        let (status, next, http_status, error) = match outcome {
            Ok(code) => (DeliveryStatus::Sent, done.clone(), code, None),
            Err((code, e)) => {
                if attempts >= policy.max_attempts || channel.is_none() {
                    tracing::warn!(channel = %d.channel, attempts, error = %e, "delivery failed for good");
                    (DeliveryStatus::Failed, done.clone(), code, Some(e))
                } else {
                    let wait = policy.backoff(attempts);
                    tracing::info!(channel = %d.channel, attempts, retry_in_s = wait.as_secs_f64(), error = %e, "delivery failed; will retry");
                    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    (DeliveryStatus::Pending, timestamp(at), code, Some(e))
                }
            }
        };
        notifications::record_attempt(
            &self.db,
            id,
            &self.replica,
            attempts,
            &Attempted {
                status,
                next_attempt_at: &next,
                http_status,
                error: error.as_deref(),
                sent_at: (status == DeliveryStatus::Sent).then_some(done.as_str()),
            },
        )
        .await?;
        Ok(true)
    }

    /// Sends one digest to one channel. The error is safe to store and show (no URL, no
    /// credentials): (HTTP status if any, why).
    async fn send(
        &self,
        channel: &Channel,
        d: &Digest,
    ) -> Result<Option<u16>, (Option<u16>, String)> {
        let timeout = self.notifier.send_timeout();
        match channel.kind {
            ChannelKind::Slack | ChannelKind::Json => {
                let url = channel
                    .url
                    .as_ref()
                    .ok_or((None, "no webhook url is configured".to_string()))?;
                let (content_type, body) = render(channel.kind, d);
                let r = self
                    .http
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
                    // A short error code helps (Slack answers `invalid_payload`); anything
                    // longer is dropped: receivers echo the request path, which is the
                    // credential.
                    let text = r.text().await.unwrap_or_default();
                    Err((Some(status), webhook_error(status, &text)))
                }
            }
            ChannelKind::Email => {
                let smtp = self
                    .notifier
                    .smtp
                    .as_ref()
                    .ok_or((None, "no SMTP server is configured".to_string()))?;
                mail::send(smtp, &channel.to, &d.title, &digest::html(d), timeout)
                    .await
                    .map(|_| None)
                    .map_err(|e| (None, e))
            }
        }
    }

    /// The notifications page and API: the channels (names and kinds only, never their
    /// addresses) and recent digests and alerts with their deliveries.
    pub async fn notifications(
        &self,
        q: NotificationsQuery,
    ) -> Result<NotificationsView, ServiceError> {
        Ok(NotificationsView {
            channels: self
                .notifier
                .channels
                .iter()
                .map(|c| ChannelView {
                    name: c.name.clone(),
                    kind: c.kind,
                    digests: c.digests,
                    alerts: c.alerts,
                })
                .collect(),
            notifications: notifications::list(&self.db, q.limit()).await?,
        })
    }

    /// A stored notification's digest (for previews: the e-mail body, the payloads).
    pub async fn digest_of(&self, id: &str) -> Result<Digest, ServiceError> {
        let body = notifications::body(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no notification '{id}'")))?;
        Ok(serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("Failed to decode the notification: {e}"))?)
    }

    /// A stored notification as an HTML e-mail body.
    pub async fn email(&self, id: &str) -> Result<String, ServiceError> {
        Ok(digest::html(&self.digest_of(id).await?))
    }
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
