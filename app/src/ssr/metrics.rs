//! This process's Prometheus counters and histograms (HTTP latency by route, agent call
//! latency and errors by agent, refresh-run durations, rate-limit and sign-in refusals),
//! its process figures (RSS, open connections, the database pool), and the text
//! exposition format. Counters and histograms are cumulative from the process's start
//! and never decrease (Prometheus's `rate()` relies on it); a restart resets them, which
//! `rate()` detects.
//! A leaf: anything may record here; [`crate::ssr::ops`] assembles the scrape with the
//! fleet-wide figures read from the database.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
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
    /// Refresh runs this process closed, by duration (created to last job's end).
    runs: Mutex<Histogram>,
    /// Sign-ins refused with 429, by limit (`account`, `address`, `busy`).
    sign_ins_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// HTTP connections open now.
    connections: std::sync::atomic::AtomicI64,
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

/// One refresh run closed by this process, `secs` from its creation to its last job's end.
pub fn observe_run(secs: f64) {
    if let Ok(mut h) = registry().runs.lock() {
        h.observe(secs);
    }
}

/// One sign-in refused with 429 by `limit` (`account`, `address` or `busy`).
pub fn count_sign_in_refused(limit: &'static str) {
    if let Ok(mut m) = registry().sign_ins_refused.lock() {
        *m.entry(limit).or_default() += 1;
    }
}

/// An HTTP connection opened (`+1`) or closed (`-1`).
pub fn connections_changed(delta: i64) {
    registry()
        .connections
        .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
}

/// The database pool's connections: (open, idle, maximum).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolFigures {
    pub open: u32,
    pub idle: usize,
    pub max: u32,
}

/// Label values are escaped as the exposition format requires.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text of this process's counters, histograms and process figures.
pub fn render_local(out: &mut String, pool: PoolFigures) {
    render_process(out, pool);
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
            h.render(out, "opsight_http_request_duration_seconds", &labels);
        }
    }
    out.push_str(
        "# HELP opsight_agent_call_duration_seconds Agent call latency, retries included.\n",
    );
    out.push_str("# TYPE opsight_agent_call_duration_seconds histogram\n");
    if let Ok(m) = registry().agent.lock() {
        for (agent, h) in m.iter() {
            h.render(
                out,
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
    out.push_str("# HELP opsight_sign_in_refused_total Sign-ins refused with 429 by limit (busy: any password hash, also of a new or changed password, that found no slot).\n");
    out.push_str("# TYPE opsight_sign_in_refused_total counter\n");
    if let Ok(m) = registry().sign_ins_refused.lock() {
        for limit in ["account", "address", "busy"] {
            let n = m.get(limit).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "opsight_sign_in_refused_total{{limit=\"{limit}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP opsight_run_duration_seconds Refresh runs closed by this process, creation to last job's end.\n");
    out.push_str("# TYPE opsight_run_duration_seconds histogram\n");
    if let Ok(h) = registry().runs.lock() {
        h.render(out, "opsight_run_duration_seconds", "");
    }
}

/// Process figures: resident memory, open file descriptors, HTTP connections and the
/// database pool. RSS and descriptors are read from `/proc/self` (Linux); elsewhere those
/// two series are left out.
fn render_process(out: &mut String, pool: PoolFigures) {
    if let Some(rss) = resident_bytes() {
        out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
        out.push_str("# TYPE process_resident_memory_bytes gauge\n");
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str("# HELP process_open_fds Open file descriptors.\n");
        out.push_str("# TYPE process_open_fds gauge\n");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    out.push_str("# HELP opsight_http_connections HTTP connections open now.\n");
    out.push_str("# TYPE opsight_http_connections gauge\n");
    let open = registry()
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "opsight_http_connections {open}");
    out.push_str("# HELP opsight_db_pool_connections Database pool connections, by state.\n");
    out.push_str("# TYPE opsight_db_pool_connections gauge\n");
    let busy = (pool.open as usize).saturating_sub(pool.idle);
    let _ = writeln!(
        out,
        "opsight_db_pool_connections{{state=\"idle\"}} {}",
        pool.idle
    );
    let _ = writeln!(out, "opsight_db_pool_connections{{state=\"busy\"}} {busy}");
    out.push_str("# HELP opsight_db_pool_max_connections The pool's size limit.\n");
    out.push_str("# TYPE opsight_db_pool_max_connections gauge\n");
    let _ = writeln!(out, "opsight_db_pool_max_connections {}", pool.max);
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
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
