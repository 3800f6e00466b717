//! The settings page's view of the configured agents: kind, endpoint, roles, model
//! version, health and breaker state. Never the token, only whether one is set.

use super::agent::resilience::BreakerState;
use super::agent::AgentClient;
use super::state::AppState;
use crate::dto::AgentStatus;

fn status(agent: &AgentClient, roles: Vec<&'static str>) -> AgentStatus {
    let p = agent.profile();
    let h = agent.health();
    AgentStatus {
        name: p.name.clone(),
        kind: p.kind.key().into(),
        endpoint: p.label(),
        roles: roles.into_iter().map(str::to_string).collect(),
        model: p.model.as_ref().map(|m| m.uri()),
        model_version: agent.cached_model_version(),
        reachable: h.reachable,
        latency_ms: h.latency_ms,
        checked_at: h.checked_at,
        last_error: h.last_error,
        last_error_at: h.last_error_at,
        breaker: match agent.breaker_state() {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
        .into(),
        token_configured: p.token.is_some(),
        max_concurrency: p.max_concurrency,
        timeout_secs: p.timeout.as_secs(),
    }
}

/// Every agent's status; with `check`, health checks and alias lookups run first (all
/// agents at once, each bounded by its 5 s check timeout).
pub async fn agents(state: &AppState, check: bool) -> Vec<AgentStatus> {
    if check {
        check_all(state).await;
    }
    state
        .agents
        .all()
        .iter()
        .map(|a| status(a, state.agents.roles(a.name())))
        .collect()
}

/// Health checks and alias resolution for every agent, concurrently.
pub async fn check_all(state: &AppState) {
    futures::future::join_all(state.agents.all().iter().map(|a| async move {
        a.check_health().await;
        a.model_version().await;
    }))
    .await;
}
