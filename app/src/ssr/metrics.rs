//! Prometheus metrics for `GET /metrics`, in the text exposition format: HTTP latency by
//! route, agent call latency and errors by agent, circuit state per agent, the job and
//! delivery queues, and refresh run durations. Counters live in this process (Prometheus
//! scrapes every replica); queue depths and run durations are read from the shared
//! database at scrape time, so every replica reports the same fleet-wide figures.

use super::agent::resilience::BreakerState;
use super::state::AppState;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let set = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(out, "{name}_sum{set} {}", self.sum);
        let _ = writeln!(out, "{name}_count{set} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    /// (method, route, status) → latency.
    http: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    /// agent → call latency (retries included).
    agent: Mutex<BTreeMap<String, Histogram>>,
    /// (agent, error kind) → failed calls.
    agent_errors: Mutex<BTreeMap<(String, String), u64>>,
    /// Agent calls refused by the rate limits: [per user, global].
    rate_limited: Mutex<[u64; 2]>,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

/// One HTTP request: `route` is the matched route pattern (`/api/v1/runs/{id}`), never
/// the raw path, so label values stay few.
pub fn observe_http(method: &str, route: &str, status: u16, secs: f64) {
    if let Ok(mut m) = registry().http.lock() {
        m.entry((method.to_string(), route.to_string(), status))
            .or_default()
            .observe(secs);
    }
}

/// One agent call, and its error kind if it failed (`timeout`, `crashed`, …).
pub fn observe_agent(agent: &str, secs: f64, error: Option<&str>) {
    if let Ok(mut m) = registry().agent.lock() {
        m.entry(agent.to_string()).or_default().observe(secs);
    }
    if let Some(kind) = error {
        if let Ok(mut m) = registry().agent_errors.lock() {
            *m.entry((agent.to_string(), kind.to_string())).or_default() += 1;
        }
    }
}

/// One agent call refused by a rate limit (`global`: the replica's, else the user's).
pub fn count_rate_limited(global: bool) {
    if let Ok(mut m) = registry().rate_limited.lock() {
        m[usize::from(global)] += 1;
    }
}

/// Label values are escaped as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text.
pub async fn render(state: &AppState) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP opsight_http_request_duration_seconds HTTP request latency by matched route.\n",
    );
    out.push_str("# TYPE opsight_http_request_duration_seconds histogram\n");
    if let Ok(m) = registry().http.lock() {
        for ((method, route, status), h) in m.iter() {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                label(method),
                label(route)
            );
            h.render(&mut out, "opsight_http_request_duration_seconds", &labels);
        }
    }
    out.push_str(
        "# HELP opsight_agent_call_duration_seconds Agent call latency, retries included.\n",
    );
    out.push_str("# TYPE opsight_agent_call_duration_seconds histogram\n");
    if let Ok(m) = registry().agent.lock() {
        for (agent, h) in m.iter() {
            h.render(
                &mut out,
                "opsight_agent_call_duration_seconds",
                &format!("agent=\"{}\"", label(agent)),
            );
        }
    }
    out.push_str("# HELP opsight_agent_call_errors_total Failed agent calls by error kind.\n");
    out.push_str("# TYPE opsight_agent_call_errors_total counter\n");
    if let Ok(m) = registry().agent_errors.lock() {
        for ((agent, kind), n) in m.iter() {
            let _ = writeln!(
                out,
                "opsight_agent_call_errors_total{{agent=\"{}\",kind=\"{}\"}} {n}",
                label(agent),
                label(kind)
            );
        }
    }
    out.push_str("# HELP opsight_rate_limited_total Agent calls refused with 429, by limit.\n");
    out.push_str("# TYPE opsight_rate_limited_total counter\n");
    if let Ok(m) = registry().rate_limited.lock() {
        let _ = writeln!(out, "opsight_rate_limited_total{{limit=\"user\"}} {}", m[0]);
        let _ = writeln!(
            out,
            "opsight_rate_limited_total{{limit=\"global\"}} {}",
            m[1]
        );
    }
    out.push_str("# HELP opsight_agent_circuit_state Circuit breaker per agent: 0 closed, 1 half-open, 2 open.\n");
    out.push_str("# TYPE opsight_agent_circuit_state gauge\n");
    for a in state.agents.all().iter() {
        let v = match a.breaker_state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        let _ = writeln!(
            out,
            "opsight_agent_circuit_state{{agent=\"{}\"}} {v}",
            label(a.name())
        );
    }
    // Fleet-wide, from the shared database.
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&state.db)
            .await
            .map_err(|e| tracing::warn!(error = %e, "metrics query failed"))
            .ok()
    };
    out.push_str("# HELP opsight_jobs Refresh jobs by state (all replicas).\n");
    out.push_str("# TYPE opsight_jobs gauge\n");
    for (state_name, sql) in [
        (
            "queued",
            "SELECT COUNT(*) FROM refresh_jobs WHERE status = 'queued'",
        ),
        (
            "running",
            "SELECT COUNT(*) FROM refresh_jobs WHERE status = 'running'",
        ),
    ] {
        if let Some(n) = count(sql).await {
            let _ = writeln!(out, "opsight_jobs{{state=\"{state_name}\"}} {n}");
        }
    }
    out.push_str("# HELP opsight_deliveries Notification deliveries by state (all replicas).\n");
    out.push_str("# TYPE opsight_deliveries gauge\n");
    for (state_name, sql) in [
        (
            "pending",
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')",
        ),
        (
            "failed",
            "SELECT COUNT(*) FROM deliveries WHERE status = 'failed'",
        ),
    ] {
        if let Some(n) = count(sql).await {
            let _ = writeln!(out, "opsight_deliveries{{state=\"{state_name}\"}} {n}");
        }
    }
    // Runs finished in the last 24 h: their durations as a histogram over that window.
    let since = super::insights::timestamp(chrono::Utc::now() - chrono::Duration::hours(24));
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT created_at, finished_at FROM refresh_runs WHERE status = 'finished' AND finished_at >= $1",
    )
    .bind(since)
    .fetch_all(&state.db)
    .await
    .unwrap_or_default();
    let mut runs = Histogram::default();
    for (start, end) in rows {
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        if let (Some(a), Some(b)) = (parse(&start), end.as_deref().and_then(parse)) {
            runs.observe(((b - a).num_milliseconds().max(0) as f64) / 1000.0);
        }
    }
    out.push_str("# HELP opsight_run_duration_seconds Refresh runs finished in the last 24 h, by duration (all replicas).\n");
    out.push_str("# TYPE opsight_run_duration_seconds histogram\n");
    runs.render(&mut out, "opsight_run_duration_seconds", "");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::default();
        for s in [0.003, 0.02, 0.02, 40.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.025\"} 3\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"30\"} 3\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_count{a=\"b\"} 4\n"));
        let mut empty = String::new();
        Histogram::default().render(&mut empty, "y", "");
        assert!(empty.contains("y_bucket{le=\"+Inf\"} 0\n") && empty.contains("y_sum 0\n"));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
