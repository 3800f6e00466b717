//! The first part of the production surface: readiness (database and migrations), the
//! security headers on every response, request body and question length limits.

use crate::common::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn readyz_needs_the_database_and_every_migration() {
    let app = spawn_app(0, None).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    // A database one migration behind this build (a replica upgraded before the schema).
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(app.state.db())
    .await
    .unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let pending = body["pending_migrations"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{body}");
    // The newest migration of this build is the one named.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(
        pending[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{newest} ")),
        "{body}"
    );
    // Liveness does not depend on migrations.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app(200, None).await;
    for path in [
        "/",
        "/rules",
        "/api/v1/dashboard",
        "/favicon.svg",
        "/no-such-page",
        "/api/v1/runs/nope",
    ] {
        let r = app.get(path).await;
        let h = r.headers().clone();
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "same-origin"),
        ] {
            assert_eq!(
                h.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{path}: {name}"
            );
        }
        assert!(h.contains_key("permissions-policy"), "{path}");
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            csp.contains("script-src 'self' 'nonce-") && csp.contains("object-src 'none'"),
            "{path}: {csp}"
        );
        if path == "/" {
            // The page's inline scripts carry the nonce the policy allows, and only it.
            let nonce = csp
                .split("'nonce-")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .unwrap()
                .to_string();
            let html = r.text().await.unwrap();
            let scripts = html.matches("<script").count();
            let nonced = html.matches(&format!("nonce=\"{nonce}\"")).count();
            assert!(
                scripts > 0 && nonced >= scripts,
                "{scripts} scripts, {nonced} with the nonce"
            );
        }
        // Every response names its request, for finding its log lines.
        let id = h
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(id.len(), 36, "{path}: a UUID request id, got '{id}'");
    }
    // A caller's own request id is kept.
    let r = app
        .http
        .get(format!("{}/api/v1/dashboard", app.base))
        .header("x-request-id", "ops-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "ops-trace-42");
}

#[tokio::test]
async fn oversized_bodies_and_questions_are_refused_clearly() {
    let app = spawn_app(2_000, None).await;
    let huge = json!({"op": "update", "expected_version": 1, "item": {"type": "rule",
        "key": "at_risk_band_pp", "kind": "threshold", "value": 3, "description": "x".repeat(9 * 1024 * 1024)}});
    let r = app.post_json("/api/v1/rules/edits", &huge).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("larger than 8 MiB"),
        "{e}"
    );
    // Nothing changed.
    let rules: Value = app.get("/api/v1/rules").await.json().await.unwrap();
    assert_eq!(rules["rules"]["version"], 1);

    // A question over the limit is refused, not cut (a cut question may ask something else).
    let long = "why ".repeat(501);
    for (path, body) in [
        (
            "/api/v1/conversations",
            json!({"site": "DAL", "metric": "otif", "question": long}),
        ),
        (
            "/api/v1/insights/refresh",
            json!({"site": "DAL", "metric": "otif", "question": long}),
        ),
    ] {
        let r = app.post_json(path, &body).await;
        assert_eq!(r.status(), 400, "{path}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("at most 2000 characters; this one has 2003"),
            "{path}: {e}"
        );
    }
    // At the limit it is answered.
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "otif", "question": "w".repeat(2000)}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// The value of the first exposition line starting with `prefix` (labels included).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every sample of a scrape: series (name and labels) → value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_report_routes_agents_queues_and_runs() {
    let app = spawn_app(2_000, None).await;
    let scrape = || async { app.get("/metrics").await.text().await.unwrap() };
    let first = scrape().await;
    assert_eq!(app.refresh("DAL", "otif").await.status(), 200);
    assert_eq!(
        app.get("/api/v1/runs/run-that-does-not-exist")
            .await
            .status(),
        404
    );
    let run = app.run("site", Some("DAL")).await;
    assert_eq!(run.run.status, "finished");

    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    // Latency by route pattern: the raw id never becomes a label.
    assert!(metric(&text, "opsight_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/insights/refresh\",status=\"200\"}").unwrap() >= 1.0, "{text}");
    assert!(metric(&text, "opsight_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/runs/{id}\",status=\"404\"}").unwrap() >= 1.0);
    assert!(!text.contains("run-that-does-not-exist"));
    assert!(
        metric(
            &text,
            "opsight_agent_call_duration_seconds_count{agent=\"test-agent\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        metric(&text, "opsight_agent_circuit_state{agent=\"test-agent\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&text, "opsight_jobs{state=\"queued\"}"), Some(0.0));
    assert_eq!(
        metric(&text, "opsight_deliveries{state=\"pending\"}"),
        Some(0.0)
    );
    // The run this process closed is counted (the tests' other apps share the process,
    // so at least one more than before).
    let runs = |t: &str| metric(t, "opsight_run_duration_seconds_count").unwrap();
    assert!(runs(&text) >= runs(&first) + 1.0, "{text}");
    assert_eq!(
        metric(&text, "opsight_run_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(runs(&text))
    );
    // Process figures: memory, descriptors, connections (this scrape's own at least), pool.
    assert!(metric(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(metric(&text, "process_open_fds").unwrap() >= 3.0);
    assert!(metric(&text, "opsight_http_connections").unwrap() >= 1.0);
    assert!(metric(&text, "opsight_db_pool_max_connections").unwrap() >= 1.0);
    assert!(metric(&text, "opsight_db_pool_connections{state=\"idle\"}").is_some());

    // Counters and histograms never go down: not when the runs' rows are purged from the
    // database (the old histogram was rebuilt from them), not across scrapes.
    sqlx::query("DELETE FROM refresh_jobs")
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("DELETE FROM refresh_runs")
        .execute(app.db())
        .await
        .unwrap();
    let later = scrape().await;
    let (before, after) = (samples(&text), samples(&later));
    let cumulative = |s: &str| {
        s.contains("_bucket{") || s.contains("_count") || s.contains("_sum") || s.contains("_total")
    };
    let mut checked = 0;
    for (series, v) in before.iter().filter(|(s, _)| cumulative(s)) {
        let now = after.get(series).copied().unwrap_or(f64::NAN);
        assert!(now >= *v, "{series} went from {v} to {now}");
        checked += 1;
    }
    assert!(checked > 30, "only {checked} cumulative series");
}

#[tokio::test]
async fn metrics_count_agent_errors_by_kind() {
    // Nothing listens on port 9: every call fails to connect.
    let app = spawn_app(500, Some("http://127.0.0.1:9")).await;
    assert_eq!(app.refresh("DAL", "otif").await.status(), 502);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metric(
            &text,
            "opsight_agent_call_errors_total{agent=\"test-agent\",kind=\"connect\"}"
        )
        .unwrap()
            >= 1.0,
        "{}",
        text.lines()
            .filter(|l| l.contains("errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_page_served_again_within_the_second_carries_its_own_nonce() {
    let app = spawn_app(2_000, None).await;
    let nonce = |r: &reqwest::Response| {
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        csp.split("'nonce-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_string()
    };
    let a = app.get("/").await;
    let na = nonce(&a);
    let body_a = a.text().await.unwrap();
    let b = app.get("/").await;
    let nb = nonce(&b);
    let body_b = b.text().await.unwrap();
    assert_ne!(na, nb, "a nonce per response");
    assert!(
        body_a.contains(&format!("nonce=\"{na}\"")),
        "first page uses its nonce"
    );
    assert!(
        body_b.contains(&format!("nonce=\"{nb}\"")),
        "second page uses its nonce"
    );
    assert!(
        !body_b.contains(&na),
        "no trace of the first response's nonce"
    );
    // Apart from the nonce, the same page.
    assert_eq!(body_a.replace(&na, "N"), body_b.replace(&nb, "N"));
}

/// Writes that arrive together wait for each other instead of failing: twelve users created
/// at once all get 201 (on SQLite a deferred transaction that read first could not take
/// the write lock and failed with "database is locked", a 500).
#[tokio::test]
async fn concurrent_writes_wait_for_each_other() {
    let app = spawn_app(0, None).await;
    for round in 0..3 {
        let bodies: Vec<Value> = (0..12)
            .map(|i| json!({"username": format!("together-{round}-{i}"), "role": "viewer"}))
            .collect();
        let posts = bodies.iter().map(|b| app.post_json("/api/v1/users", b));
        let statuses: Vec<u16> = futures::future::join_all(posts)
            .await
            .into_iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    }
}
