//! Operating Opsight: the agents' status and health checks, liveness and readiness, and
//! the Prometheus scrape.
//!
//! The scrape joins this process's own counters ([`crate::ssr::metrics`]: Prometheus
//! scrapes every replica) with figures read from the shared database at scrape time (job
//! and delivery queues, run durations), which every replica reports alike.

use crate::domain::status::{DeliveryStatus, JobStatus};
use crate::dto::{AgentStatus, AgentsQuery};
use crate::ssr::agent::{AgentClient, Agents};
use crate::ssr::error::{chain, ServiceError};
use crate::ssr::metrics::{self, label};
use crate::ssr::store::{self, notifications, runs, Db};
use std::fmt::Write;

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
        breaker: agent.breaker_state(),
        token_configured: p.token.is_some(),
        max_concurrency: p.max_concurrency,
        timeout_secs: p.timeout.as_secs(),
    }
}

/// Every agent's status (never a token, only whether one is set); with `check`, health
/// checks and alias lookups run first (all agents at once, each bounded by its 5 s check
/// timeout).
pub async fn agents(agents: &Agents, q: AgentsQuery) -> Vec<AgentStatus> {
    if q.check.unwrap_or(false) {
        check_all(agents).await;
    }
    agents
        .all()
        .iter()
        .map(|a| status(a, agents.roles(a.name())))
        .collect()
}

/// Health checks and alias resolution for every agent, concurrently.
pub async fn check_all(agents: &Agents) {
    futures::future::join_all(agents.all().iter().map(|a| async move {
        a.check_health().await;
        a.model_version().await;
    }))
    .await;
}

/// Liveness: the database answers.
pub async fn live(db: &Db) -> Result<(), ServiceError> {
    Ok(store::ping(db).await?)
}

/// Readiness: the migrations this build expects that the database lacks (empty: ready).
pub async fn pending_migrations(db: &Db) -> Result<Vec<String>, ServiceError> {
    Ok(store::pending_migrations(db).await?)
}

/// The `/metrics` text: this process's counters, the agents' circuits, and the
/// fleet-wide figures from the database (a failed query leaves its series out and is
/// logged).
pub async fn metrics_text(db: &Db, agents: &Agents) -> String {
    let mut out = String::new();
    let (open, idle, max) = store::pool_figures(db);
    metrics::render_local(&mut out, metrics::PoolFigures { open, idle, max });
    out.push_str("# HELP opsight_agent_circuit_state Circuit breaker per agent: 0 closed, 1 half-open, 2 open.\n");
    out.push_str("# TYPE opsight_agent_circuit_state gauge\n");
    for a in agents.all().iter() {
        let v = match a.breaker_state() {
            crate::domain::status::BreakerState::Closed => 0,
            crate::domain::status::BreakerState::HalfOpen => 1,
            crate::domain::status::BreakerState::Open => 2,
        };
        let _ = writeln!(
            out,
            "opsight_agent_circuit_state{{agent=\"{}\"}} {v}",
            label(a.name())
        );
    }
    let logged = |r: Result<i64, store::StoreError>| {
        r.map_err(|e| tracing::warn!(error = %chain(&e), "metrics query failed"))
            .ok()
    };
    out.push_str("# HELP opsight_jobs Refresh jobs by state (all replicas).\n");
    out.push_str("# TYPE opsight_jobs gauge\n");
    for s in [JobStatus::Queued, JobStatus::Running] {
        if let Some(n) = logged(runs::count_jobs(db, s).await) {
            let _ = writeln!(out, "opsight_jobs{{state=\"{s}\"}} {n}");
        }
    }
    out.push_str("# HELP opsight_deliveries Notification deliveries by state (all replicas).\n");
    out.push_str("# TYPE opsight_deliveries gauge\n");
    for (name, states) in [
        (
            "pending",
            &[DeliveryStatus::Pending, DeliveryStatus::Sending][..],
        ),
        ("failed", &[DeliveryStatus::Failed][..]),
    ] {
        if let Some(n) = logged(notifications::count_deliveries(db, states).await) {
            let _ = writeln!(out, "opsight_deliveries{{state=\"{name}\"}} {n}");
        }
    }
    out
}
