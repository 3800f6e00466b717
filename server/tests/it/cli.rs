//! The `opsight` binary end to end: migrate, seed-demo, import, refresh, --help. The
//! database follows OPSIGHT_TEST_DATABASE like every other test.

use std::process::{Command, Output};

struct Cli {
    dir: std::path::PathBuf,
    url: String,
    _db: crate::common::TestDb,
}

impl Cli {
    fn new(_name: &str) -> Cli {
        // A fresh (empty) test database, made on a runtime of its own: the tests here are
        // both sync and async.
        let db = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(crate::common::test_db())
        })
        .join()
        .unwrap();
        Cli {
            dir: db.dir.clone(),
            url: db.url.clone(),
            _db: db,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_opsight"))
            .args(args)
            .env_remove("OPSIGHT_PASSWORD")
            .envs(env.iter().copied())
            .env("DATABASE_URL", &self.url)
            .env("OPSIGHT_AS_OF", "2026-11-21")
            // The default log level: logs must stay off stdout (refresh prints JSON there).
            .env_remove("RUST_LOG")
            .env_remove("AGENT_URL")
            .output()
            .expect("run opsight")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_every_command() {
    let cli = Cli::new("help");
    let o = cli.run(&["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for cmd in [
        "serve",
        "migrate",
        "seed-demo",
        "import",
        "refresh",
        "retally",
        "sources",
        "user",
        "token",
        "backup",
        "restore",
    ] {
        assert!(t.contains(cmd), "{cmd} missing from --help: {t}");
    }
}

#[test]
fn seed_import_and_refresh_from_the_command_line() {
    let cli = Cli::new("flow");
    assert!(cli.run(&["migrate"]).status.success());
    let o = cli.run(&["seed-demo", "--lines", "8000"]);
    assert!(o.status.success(), "{}", text(&o));
    // A second seed refuses to overwrite; --if-empty is a quiet no-op.
    let o = cli.run(&["seed-demo", "--lines", "8000"]);
    assert!(
        !o.status.success() && text(&o).contains("--reset"),
        "{}",
        text(&o)
    );
    assert!(cli.run(&["seed-demo", "--if-empty"]).status.success());

    let good = cli.dir.join("good.csv");
    std::fs::write(&good, "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code\nX-1,1,DAL,MegaMart,Coastal Haul,BEV-1,Beverages,4,4,2026-11-10,2026-11-10,\n").unwrap();
    let o = cli.run(&["import", "orders", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("imported 1 lines (1 new, 0 updated)"),
        "{}",
        text(&o)
    );

    let bad = cli.dir.join("bad.csv");
    std::fs::write(&bad, "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date\nX-2,1,DAL,M,C,S,Cat,4,x,2026-11-10,\n").unwrap();
    let o = cli.run(&["import", "orders", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("line 2: delivered_qty 'x' is not a whole number"),
        "{}",
        text(&o)
    );

    // A refresh is a run with one job per card, like a schedule's.
    let o = cli.run(&["refresh", "--site", "DAL", "--metric", "otif"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["run"]["origin"], "cli");
    assert_eq!(
        (v["run"]["total"].as_i64(), v["run"]["done"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["insights"].as_array().unwrap().len(), 1);
    assert_eq!(v["insights"][0]["agent"], "builtin");
    assert!(v["insights"][0]["insight"]["headline"]
        .as_str()
        .unwrap()
        .contains("Dallas DC"));
    // Nothing changed: no new insight unless forced.
    let o = cli.run(&["refresh", "--site", "DAL", "--metric", "otif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["run"]["unchanged"].as_i64(), Some(1), "{v}");
    assert!(v["insights"].as_array().unwrap().is_empty());
    let o = cli.run(&["refresh", "--site", "DAL", "--metric", "otif", "--force"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["run"]["done"].as_i64(), Some(1), "{v}");
    // Every card of a site.
    let o = cli.run(&["refresh", "--site", "ATL"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(
        (v["run"]["total"].as_i64(), v["run"]["done"].as_i64()),
        (Some(5), Some(5)),
        "{v}"
    );

    let o = cli.run(&["refresh", "--site", "NOPE"]);
    assert!(
        !o.status.success() && text(&o).contains("no site 'NOPE'"),
        "{}",
        text(&o)
    );
    let o = cli.run(&["refresh", "--schedule", "nightly"]);
    assert!(
        !o.status.success() && text(&o).contains("no schedule named 'nightly'"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_configuration_is_reported_clearly() {
    let o = Command::new(env!("CARGO_BIN_EXE_opsight"))
        .arg("migrate")
        .env("OPSIGHT_AS_OF", "yesterday")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("OPSIGHT_AS_OF 'yesterday' is not a date (YYYY-MM-DD)"),
        "{}",
        text(&o)
    );
}

/// The agent token reaches the agent and nothing else: not stdout, not the logs (even at
/// trace level), not the stored insight.
#[tokio::test]
async fn agent_token_reaches_the_agent_but_never_the_output_or_logs() {
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const TOKEN: &str = "dapi-TOKEN-must-not-leak-42";
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "output": [{"type": "message", "id": "m", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Carrier trouble at Dallas."}]}]})))
        .expect(1)
        .mount(&mock)
        .await;
    let cli = Cli::new("token");
    assert!(cli.run(&["seed-demo", "--lines", "3000"]).status.success());
    let url = format!("{}/invocations", mock.uri());
    let db = cli.url.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_opsight"))
            .args(["refresh", "--site", "DAL", "--metric", "otif"])
            .env("DATABASE_URL", db)
            .env("OPSIGHT_AS_OF", "2026-11-21")
            .env("AGENT_URL", url)
            .env("AGENT_TOKEN", TOKEN)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("Carrier trouble at Dallas."),
        "the agent was called with the token"
    );
    assert!(!all.contains(TOKEN), "the token leaked into output or logs");
}

/// `opsight serve` with a tokened agent: the token goes to the agent on every call and
/// appears in no page, API response, lineage, event stream, wasm file or log line (logs at
/// trace level, JSON format).
#[tokio::test]
async fn serve_never_shows_the_token() {
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const TOKEN: &str = "dapi-SERVE-token-must-not-leak-77";
    let mock = MockServer::start().await;
    let sse = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        serde_json::json!({"type": "response.output_text.delta", "item_id": "m", "delta": "Carrier trouble."}),
        serde_json::json!({"type": "response.output_item.done", "item": {"type": "message", "id": "m", "role": "assistant",
            "content": [{"type": "output_text", "text": "Carrier trouble.", "annotations": []}]}}),
    );
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .mount(&mock)
        .await;
    let cli = Cli::new("serve-token");
    assert!(cli.run(&["seed-demo", "--lines", "3000"]).status.success());
    let uri = mock.uri();
    let serve = crate::common::serve::Serve::spawn(
        &cli.url,
        &[
            ("AGENT_URL", uri.as_str()),
            ("AGENT_KIND", "mlflow-agent-server"),
            ("AGENT_TOKEN", TOKEN),
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", "json"),
        ],
    );
    let base = serve.base.clone();
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    let refresh: serde_json::Value = http
        .post(format!("{base}/api/v1/insights/refresh"))
        .json(&serde_json::json!({"site": "DAL", "metric": "otif"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let insight = refresh["id"].as_str().expect("refreshed").to_string();
    bodies.push(refresh.to_string());
    let started: serde_json::Value = http
        .post(format!("{base}/api/v1/conversations"))
        .json(&serde_json::json!({"site": "DAL", "metric": "otif", "question": "Why?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let turn = started["turn_id"].as_str().unwrap();
    for path in [
        "/".to_string(),
        "/kpi/DAL/otif".into(),
        "/settings".into(),
        "/api/v1/agents?check=true".into(),
        "/api/v1/dashboard".into(),
        format!("/api/v1/insights/{insight}/lineage"),
        format!("/insights/{insight}/lineage"),
        format!("/api/v1/turns/{turn}/events"),
        format!(
            "/conversations/{}",
            started["conversation_id"].as_str().unwrap()
        ),
        "/pkg/opsight.wasm".into(),
        "/pkg/opsight.js".into(),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        bodies.push(String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned());
    }
    assert!(
        bodies.iter().any(|b| b.contains("Carrier trouble.")),
        "the agent answered"
    );
    assert!(
        bodies.iter().any(|b| b.contains("token set")),
        "the settings page says a token is set"
    );
    let log = {
        let mut serve = serve;
        let _ = serve.child.kill();
        let _ = serve.child.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
        serve.log()
    };
    assert!(
        log.contains("agent call") || log.contains("insight refreshed"),
        "trace logs were captured"
    );
    // Log lines inside a request carry its id (JSON logs here: the request's span).
    assert!(
        log.lines()
            .any(|l| l.contains("\"request_id\":\"") && l.contains("\"path\":\"/api/v1/")),
        "request ids in the log: {}",
        log.lines()
            .filter(|l| l.contains("request"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (i, b) in bodies.iter().enumerate() {
        assert!(!b.contains(TOKEN), "the token leaked into response {i}");
    }
    assert!(!log.contains(TOKEN), "the token leaked into the logs");
    let calls = mock.received_requests().await.unwrap();
    assert!(
        calls.len() >= 2,
        "refresh and question reached the agent with the token"
    );
}

/// Accounts and tokens made with the CLI sign in to the real server; the password, its
/// hash, the token and the session stay out of every output and the debug log.
#[tokio::test]
async fn accounts_from_the_command_line_sign_in_and_stay_out_of_logs() {
    const PASSWORD: &str = "alice's long password 42";
    let cli = Cli::new("accounts");
    assert!(cli.run(&["seed-demo", "--lines", "3000"]).status.success());
    let o = cli.run_with(
        &["user", "add", "Alice", "--role", "editor"],
        &[("OPSIGHT_PASSWORD", "short")],
    );
    assert!(
        !o.status.success() && text(&o).contains("at least 10 characters"),
        "{}",
        text(&o)
    );
    let o = cli.run_with(
        &["user", "add", "Alice", "--role", "editor"],
        &[("OPSIGHT_PASSWORD", PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("added alice (editor)"), "{}", text(&o));
    let o = cli.run_with(&["user", "add", "alice"], &[("OPSIGHT_PASSWORD", PASSWORD)]);
    assert!(
        !o.status.success() && text(&o).contains("already exists"),
        "{}",
        text(&o)
    );
    let o = cli.run_with(
        &["user", "add", "alice", "--if-missing"],
        &[("OPSIGHT_PASSWORD", PASSWORD)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = cli.run(&["user", "add", "sso-bob", "--role", "root", "--no-password"]);
    assert!(
        !o.status.success() && text(&o).contains("viewer, editor or admin"),
        "{}",
        text(&o)
    );
    let o = cli.run(&["token", "add", "slack-bot", "--role", "viewer"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        token.starts_with("opsight_") && token.len() == 72,
        "stdout is the token alone: {token}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("shown once"));
    let list = text(&cli.run(&["user", "list"]));
    assert!(
        list.contains("alice") && list.contains("editor") && list.contains("active"),
        "{list}"
    );
    let tokens = text(&cli.run(&["token", "list"]));
    assert!(
        tokens.contains("slack-bot") && tokens.contains(&token[..14]) && !tokens.contains(&token),
        "{tokens}"
    );

    let serve = crate::common::serve::Serve::spawn(
        &cli.url,
        &[
            ("OPSIGHT_ANONYMOUS_ROLE", "none"),
            ("RUST_LOG", "debug"),
            ("LOG_FORMAT", "json"),
        ],
    );
    let base = serve.base.clone();
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = raw
        .get(format!("{base}/api/v1/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no credentials");
    let r = raw
        .get(format!("{base}/api/v1/dashboard"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the CLI's token");
    let r = raw
        .post(format!("{base}/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = |c: String| {
        let raw = raw.clone();
        let url = format!("{base}/api/v1/me");
        async move { raw.get(url).header("cookie", c).send().await.unwrap() }
    };
    assert_eq!(me(cookie.clone()).await.status(), 200);
    let page = raw
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("alice") && page.contains("Sign out"),
        "the page shows who is signed in"
    );
    // Disabled from the CLI while the server runs: signed out at once.
    let o = cli.run(&["user", "disable", "alice"]);
    assert!(
        o.status.success() && text(&o).contains("signed out everywhere"),
        "{}",
        text(&o)
    );
    assert_eq!(me(cookie.clone()).await.status(), 401);
    let log = {
        let mut serve = serve;
        let _ = serve.child.kill();
        let _ = serve.child.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
        serve.log()
    };
    assert!(log.contains("signed in"), "sign-ins are logged");
    for (what, secret) in [
        ("the password", PASSWORD),
        ("a password hash", "$argon2"),
        ("the API token", token.as_str()),
        ("the session cookie", cookie.split_once('=').unwrap().1),
    ] {
        assert!(!log.contains(secret), "{what} is in the server log");
    }
}

/// Traces over OTLP: `opsight refresh` with `OTEL_EXPORTER_OTLP_ENDPOINT` sends its run's
/// job spans (one trace, its id made from the run's id) and each job's agent call as a
/// client span under it (through the refresh's own spans), to a local receiver that decodes OTLP/HTTP JSON as a collector
/// does. Without the setting nothing is sent.
#[test]
fn a_refresh_run_and_its_agent_calls_are_traced_over_otlp() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let sink = received.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let sink = sink.clone();
                        async move {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            sink.lock().unwrap().push(v);
                            "{}"
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
    });
    let port = port_rx.recv().unwrap();
    let cli = Cli::new("otlp");
    assert!(cli.run(&["seed-demo", "--lines", "3000"]).status.success());
    // Without an endpoint: nothing is sent.
    let quiet = cli.run(&["refresh", "--site", "DAL", "--metric", "otif", "--force"]);
    assert!(quiet.status.success(), "{}", text(&quiet));
    assert!(received.lock().unwrap().is_empty());

    let endpoint = format!("http://127.0.0.1:{port}");
    let o = cli.run_with(
        &["refresh", "--site", "DAL", "--force"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "opsight-test"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run_id = out["run"]["id"].as_str().unwrap().to_string();
    let jobs = out["jobs"].as_array().unwrap().len();
    assert!(jobs >= 5, "{out}");

    // Every span the receiver got, with its resource's service name.
    let batches = received.lock().unwrap().clone();
    assert!(!batches.is_empty(), "the exit flushed the spans");
    let mut spans = Vec::new();
    for b in &batches {
        for rs in b["resourceSpans"].as_array().unwrap() {
            assert_eq!(
                rs["resource"]["attributes"][0]["value"]["stringValue"],
                "opsight-test"
            );
            for ss in rs["scopeSpans"].as_array().unwrap() {
                spans.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    let attr = |s: &serde_json::Value, key: &str| -> Option<String> {
        s["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_string))
    };
    let job_spans: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|s| s["name"] == "job" && attr(s, "run").as_deref() == Some(&run_id))
        .collect();
    assert_eq!(job_spans.len(), jobs, "one span per job");
    // One trace for the run: the first 16 bytes of SHA-256 of its id.
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(run_id.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for j in &job_spans {
        assert_eq!(j["traceId"], expected.as_str());
        assert!(
            j.get("parentSpanId").is_none(),
            "a job is the root of its trace"
        );
        let (start, end): (u128, u128) = (
            j["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
            j["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
        );
        assert!(end >= start && start > 1_700_000_000_000_000_000);
    }
    // Each job's agent call: a client span under it, in the same trace.
    let calls: Vec<&serde_json::Value> =
        spans.iter().filter(|s| s["name"] == "agent_call").collect();
    assert_eq!(calls.len(), jobs, "{calls:#?}");
    for c in &calls {
        assert_eq!(c["kind"], 3);
        assert_eq!(c["traceId"], expected.as_str());
        assert_eq!(attr(c, "agent").as_deref(), Some("builtin"));
        assert_eq!(c["status"]["code"], 0, "unset: the call did not fail");
        // Up its parents (the card's refresh stages sit between): a job of the run.
        let mut at = (*c).clone();
        let mut hops = 0;
        while at["name"] != "job" {
            let parent = at["parentSpanId"].as_str().expect("a parent below the job");
            at = spans
                .iter()
                .find(|s| s["spanId"] == parent)
                .expect("the parent span was exported")
                .clone();
            hops += 1;
            assert!(hops < 10);
        }
        assert_eq!(attr(&at, "run").as_deref(), Some(run_id.as_str()));
    }
}
