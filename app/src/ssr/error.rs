//! `ServiceError`: what the services return, and its one mapping to the safe
//! [`AppError`] both transports (server functions and the JSON API) send, with one HTTP
//! status per kind ([`AppError::status_code`]).
//!
//! Internal causes are logged once, where the error leaves through a transport (this
//! conversion), with their whole cause chain; users see a generic message.

use super::agent::AgentError;
use super::store::StoreError;
use crate::domain::scope::ScopeError;
use crate::error::AppError;

/// The error of the services, shared by the server functions, the JSON API, the job
/// worker and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An unknown site, metric, insight, run, schedule, user… (404).
    #[error("{0}")]
    NotFound(String),
    /// The input is wrong; the message says how (400).
    #[error("{0}")]
    BadRequest(String),
    /// The agent could not produce an insight; the message is safe to show (502).
    #[error("the insight could not be refreshed: {0}")]
    Agent(#[from] AgentError),
    /// A run job's lease expired and another replica took it over; this result was
    /// discarded so the job yields one insight (409: the race was lost).
    #[error("the job was taken over by another replica; this result was discarded")]
    Superseded,
    /// Someone else changed the thing first, e.g. the rules version moved on (409).
    #[error("{0}")]
    Conflict(String),
    /// Signed in, but this is outside what the principal may see (a site beyond its
    /// reach); the message says what it covers (403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many of something at once or too fast (sign-ins, password hashing); the
    /// message says when to retry (429).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Internal(anyhow::Error::new(e))
    }
}

impl From<ScopeError> for ServiceError {
    fn from(e: ScopeError) -> Self {
        match e {
            ScopeError::Invalid(m) => ServiceError::BadRequest(m),
            ScopeError::UnknownMetric(m) => ServiceError::NotFound(m),
        }
    }
}

/// A period or comparison that does not parse: the request's fault, named.
impl From<crate::domain::period::PeriodError> for ServiceError {
    fn from(e: crate::domain::period::PeriodError) -> Self {
        ServiceError::BadRequest(e.to_string())
    }
}

impl From<ServiceError> for AppError {
    /// The safe form. Internal causes are logged here, once, with their chain; agent
    /// failures as warnings.
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => AppError::NotFound(m),
            ServiceError::BadRequest(m) => AppError::BadRequest(m),
            e @ ServiceError::Agent(_) => {
                // The agent's failure, not ours: a warning, with the safe text only (agent
                // error bodies echo requests).
                tracing::warn!(error = %e, detail = ?e, "agent call failed");
                AppError::Agent(e.to_string())
            }
            e @ ServiceError::Superseded => AppError::Conflict(e.to_string()),
            ServiceError::Conflict(m) => AppError::Conflict(m),
            ServiceError::Busy(m) => AppError::RateLimited(m),
            ServiceError::Forbidden(m) => AppError::Forbidden(m),
            ServiceError::Internal(e) => {
                tracing::error!(error = %chain(e.as_ref()), "internal error");
                AppError::Internal
            }
        }
    }
}

/// An error and its causes on one line: "Failed to read runs: error returned from
/// database: no such table: refresh_runs". For logs (one line per event, JSON or not).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        // Transparent wrappers repeat their source's text.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_name_every_cause_once() {
        let e = anyhow::anyhow!("no such table").context("Failed to read runs");
        assert_eq!(chain(e.as_ref()), "Failed to read runs: no such table");
    }

    #[test]
    fn one_status_per_kind() {
        let status = |e: ServiceError| AppError::from(e).status_code();
        assert_eq!(status(ServiceError::NotFound("x".into())), 404);
        assert_eq!(status(ServiceError::BadRequest("x".into())), 400);
        assert_eq!(status(ServiceError::Superseded), 409);
        assert_eq!(status(ServiceError::Busy("x".into())), 429);
        assert_eq!(status(ServiceError::Forbidden("x".into())), 403);
        assert_eq!(status(ServiceError::Conflict("x".into())), 409);
        assert_eq!(status(ServiceError::Agent(AgentError::Connect)), 502);
        assert_eq!(status(anyhow::anyhow!("boom").into()), 500);
        assert_eq!(status(ScopeError::UnknownMetric("m".into()).into()), 404);
    }
}
