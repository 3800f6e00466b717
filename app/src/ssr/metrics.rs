//! This process's Prometheus counters and histograms (HTTP latency by route, agent call
//! latency and errors by agent, rate-limit refusals), and the text exposition format.
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
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text of this process's counters and histograms.
pub fn render_local(out: &mut String) {
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
