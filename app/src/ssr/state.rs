//! What every request, server function and CLI command works with.

use super::agent::Agents;
use super::conversations::LiveTurns;
use super::db::Db;
use super::runs::JobQueue;
use axum::extract::FromRef;
use chrono::NaiveDate;
use leptos::config::LeptosOptions;

#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub agents: Agents,
    /// Questions being answered by this process.
    pub live: LiveTurns,
    /// This replica's identity in job claims, and its worker's wake-up.
    pub jobs: JobQueue,
    /// Where digests and alerts go (no channels: nothing is sent).
    pub notifier: std::sync::Arc<super::notify::Notifier>,
    /// Fixed reference date (`OPSIGHT_AS_OF`), or `None` for today (UTC).
    pub as_of: Option<NaiveDate>,
    pub leptos_options: LeptosOptions,
    /// How requests are authenticated (sessions, proxy, anonymous role).
    pub auth: std::sync::Arc<super::accounts::AuthSettings>,
    /// Agent-call rate limits of this replica.
    pub limits: std::sync::Arc<super::limits::RateLimits>,
}

impl AppState {
    /// The reference date: "today" for the dashboard's latest complete week.
    pub fn today(&self) -> NaiveDate {
        self.as_of
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The state from the Leptos context, inside a server function.
pub fn from_context() -> Result<AppState, crate::error::AppError> {
    leptos::prelude::use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        crate::error::AppError::Internal
    })
}
