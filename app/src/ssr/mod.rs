//! Server-only code, compiled with the `ssr` feature (the one gate in this crate).
//!
//! - [`accounts`]: users (Argon2id), sessions, API tokens, and who is asking.
//! - [`audit`]: the audit log of rule, schedule, agent, user and token changes.
//! - [`limits`]: rate limits on agent calls, per principal and per replica.
//! - [`db`]: the pool, migrations and every SQL statement (portable SQLite/PostgreSQL).
//! - [`crontab`]: crontab expressions (5 fields, Sunday 0/7) in a time zone, DST as cron does.
//! - [`agent`]: agent profiles and kinds, the ResponsesAgent client (one shared
//!   `reqwest::Client`, breaker, retries, streaming), MLflow REST (aliases, assessments).
//! - [`analyst_server`]: the built-in analyst's protocol handling (request in, reply out).
//! - [`evidence`]: loads what an evidence pack needs and builds it.
//! - [`ask`]: pack → agent → grounding check → lineage, shared by cards and questions.
//! - [`kpis`]: the dashboard and KPI detail views.
//! - [`insights`]: refreshing an insight on demand and card state (stale, error).
//! - [`conversations`]: streamed "why is this down?" questions and follow-ups.
//! - [`runs`]: refresh runs: a scope becomes one job per card, claimed under leases by
//!   any replica, unchanged cards skipped, results fenced so a job yields one insight.
//! - [`schedules`]: cron schedules in the database and their ticks (exactly once across
//!   replicas; catch-up or skip after downtime).
//! - [`actions`]: next actions acknowledged/assigned/done/dismissed, recovery after done,
//!   and the card feedback sent with its next agent request.
//! - [`feedback`]: thumbs up/down, forwarded to MLflow as assessments.
//! - [`settings`]: the agents' status for the settings page.
//! - [`rulebook`]: stores rule-book edits: validated, one version each (compare-and-set).
//! - [`digests`]: the digest of cards needing attention, ranked by money at stake.
//! - [`alerts`]: trigger state observed per card; notices on change, flap suppression.
//! - [`notify`]: channels, notifications and their deliveries (claimed, retried).
//! - [`mail`]: optional e-mail over SMTP.
//! - [`metrics`]: Prometheus metrics (HTTP, agents, queues, runs) for `GET /metrics`.
//! - [`costs`]: unit costs for materiality (CSV import and API), all or nothing.
//! - [`import`]: CSV import of order lines, all-or-nothing.
//! - [`seed`]: the demo network generator.
//! - [`state`]: `AppState`, what every request and server function gets.

pub mod accounts;
pub mod actions;
pub mod agent;
pub mod alerts;
pub mod analyst_server;
pub mod ask;
pub mod audit;
pub mod conversations;
pub mod costs;
pub mod crontab;
pub mod db;
pub mod digests;
pub mod evidence;
pub mod feedback;
pub mod import;
pub mod insights;
pub mod kpis;
pub mod limits;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod rulebook;
pub mod runs;
pub mod schedules;
pub mod seed;
pub mod settings;
pub mod state;

use crate::error::AppError;

/// The error of the services, shared by the server functions, the JSON API and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the insight could not be refreshed: {0}")]
    Agent(#[from] agent::AgentError),
    /// A run job's lease expired and another replica took it over; this result was
    /// discarded so the job yields one insight.
    #[error("the job was taken over by another replica; this result was discarded")]
    Superseded,
    /// Someone else changed the thing first (e.g. the rules version moved on).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    /// Logs internal causes once, with their chain, and returns the safe user-facing error.
    pub fn into_app_error(self) -> AppError {
        match self {
            ServiceError::NotFound(m) => AppError::NotFound(m),
            ServiceError::BadRequest(m) => AppError::BadRequest(m),
            e @ ServiceError::Agent(_) => AppError::Agent(e.to_string()),
            e @ ServiceError::Superseded => AppError::BadRequest(e.to_string()),
            ServiceError::Conflict(m) => AppError::Conflict(m),
            ServiceError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                AppError::Internal
            }
        }
    }
}

impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        e.into_app_error()
    }
}
