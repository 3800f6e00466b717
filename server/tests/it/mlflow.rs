//! Against a real MLflow 3.17.2 (a Python venv made by `.ci/setup --test`): a tracking
//! server with a SQLite store; the reference agent in `examples/mlflow-agent/` logged from
//! code, registered, aliased `prod` and served by `mlflow models serve`; the same agent
//! behind AgentServer for streaming. Opsight refreshes a card through the first, asks a
//! streamed question and two follow-ups through the second, sends feedback that lands as
//! an assessment on the real trace, and marks the card stale when the alias moves.
//!
//! Needs the venv at `$OPSIGHT_MLFLOW_VENV` (default `~/.cache/opsight/mlflow-venv`).
//! `OPSIGHT_SKIP_MLFLOW=1` skips it (say so when you do: it is the only proof against a
//! real MLflow server).

use app::domain::kpi::Metric;
use app::ssr::agent::{AgentKind, ModelRef};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (with its process group) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // uvicorn/gunicorn start workers: stop the whole group (the child leads its own,
        // see `spawn`). Not through `/usr/bin/kill -TERM -PID`: procps-ng 4.0.2 here takes
        // that for "every process" and took the machine's services down with it.
        let pgid = self.child.id() as libc::pid_t;
        if pgid > 1 {
            // SAFETY: killpg only sends a signal; the group is the one this test created.
            #[allow(unsafe_code)]
            unsafe {
                libc::killpg(pgid, libc::SIGTERM);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn venv() -> PathBuf {
    std::env::var_os("OPSIGHT_MLFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
            cache.join("opsight/mlflow-venv")
        })
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mlflow-agent")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(program: &str, dir: &Path, tracking: &str) -> Command {
    let bin = venv().join("bin");
    let mut c = Command::new(bin.join(program));
    c.current_dir(dir)
        // `mlflow models serve --env-manager local` execs uvicorn by name.
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("MLFLOW_TRACKING_URI", tracking)
        // Traces reach the store within ~0.2 s instead of ~5 s.
        .env("MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS", "200")
        .env("OPSIGHT_AGENT_STREAM_DELAY_MS", "15")
        .env_remove("OPSIGHT_AGENT_LLM_BASE_URL");
    c
}

fn spawn(name: &'static str, mut c: Command, logs: &Path) -> Proc {
    use std::os::unix::process::CommandExt;
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    c.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .process_group(0);
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc { child, name, log }
}

async fn wait_ready(p: &mut Proc, url: &str, limit: Duration) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{} exited ({status}):\n{}", p.name, p.tail());
        }
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{} not ready at {url} after {limit:?}:\n{}",
        p.name,
        p.tail()
    );
}

/// Logs, registers and aliases the agent; returns the new version.
fn log_and_register(dir: &Path, tracking: &str) -> String {
    let out = command("python", &example_dir(), tracking)
        .arg("log_and_register.py")
        .env("MLFLOW_TRACKING_URI", tracking)
        .current_dir(example_dir())
        .output()
        .expect("run log_and_register.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "log_and_register.py failed in {}:\n{text}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().last().unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mlflow_serve_agent_server_feedback_and_alias() {
    if std::env::var("OPSIGHT_SKIP_MLFLOW").as_deref() == Ok("1") {
        eprintln!("OPSIGHT_SKIP_MLFLOW=1: the real-MLflow test is skipped");
        return;
    }
    assert!(
        venv().join("bin/mlflow").exists(),
        "MLflow is not installed at {}: run `.ci/setup --test` (it creates that venv), set \
         OPSIGHT_MLFLOW_VENV to a venv with mlflow==3.17.2 and httpx, or set OPSIGHT_SKIP_MLFLOW=1",
        venv().display()
    );
    let dir = std::env::temp_dir().join(format!("opsight-mlflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (p_tracking, p_serve, p_stream) = (free_port(), free_port(), free_port());
    let tracking = format!("http://127.0.0.1:{p_tracking}");

    // 1. Tracking server and registry.
    let mut c = command("mlflow", &dir, &tracking);
    c.args([
        "server",
        "--backend-store-uri",
        &format!("sqlite:///{}/mlflow.db", dir.display()),
        "--default-artifact-root",
        &format!("{}/artifacts", dir.display()),
        "--host",
        "127.0.0.1",
        "--port",
        &p_tracking.to_string(),
        "--workers",
        "1",
    ]);
    let mut tracking_server = spawn("tracking", c, &dir);
    wait_ready(
        &mut tracking_server,
        &format!("{tracking}/health"),
        Duration::from_secs(120),
    )
    .await;

    // 2. Log from code, register, alias prod -> 1: the seed articles' flow.
    let v1 = tokio::task::spawn_blocking({
        let (dir, tracking) = (dir.clone(), tracking.clone());
        move || log_and_register(&dir, &tracking)
    })
    .await
    .unwrap();
    assert_eq!(v1, "1");

    // 3. Serve it both ways.
    let mut c = command("mlflow", &dir, &tracking);
    c.args([
        "models",
        "serve",
        "-m",
        "models:/opsight-analyst@prod",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        &p_serve.to_string(),
    ]);
    let mut serve = spawn("models-serve", c, &dir);
    let mut c = command("python", &example_dir(), &tracking);
    c.args(["agent_server.py", "--port", &p_stream.to_string()]);
    let mut stream = spawn("agent-server", c, &dir);
    wait_ready(
        &mut serve,
        &format!("http://127.0.0.1:{p_serve}/ping"),
        Duration::from_secs(120),
    )
    .await;
    wait_ready(
        &mut stream,
        &format!("http://127.0.0.1:{p_stream}/health"),
        Duration::from_secs(120),
    )
    .await;

    // 4. Opsight: cards from `models serve` (registry-aware), questions from AgentServer.
    let tracking_for_app = tracking.clone();
    let app = crate::common::spawn_app_with(20_000, move || {
        let mut cards = crate::common::profile(
            AgentKind::MlflowServe,
            &format!("http://127.0.0.1:{p_serve}"),
            Duration::from_secs(30),
            None,
        );
        cards.name = "analyst".into();
        cards.model = ModelRef::parse("models:/opsight-analyst@prod");
        cards.tracking_uri = Some(tracking_for_app.clone());
        cards.alias_ttl = Duration::from_millis(500);
        let mut questions = crate::common::profile(
            AgentKind::MlflowAgentServer,
            &format!("http://127.0.0.1:{p_stream}"),
            Duration::from_secs(30),
            None,
        );
        questions.name = "analyst-stream".into();
        questions.tracking_uri = Some(tracking_for_app);
        vec![cards, questions]
    })
    .await;

    // Refresh a card through `mlflow models serve`.
    let r = app.refresh("DAL", "otif").await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", serve.tail());
    let view: app::dto::InsightView = serde_json::from_str(&body).unwrap();
    assert_eq!(view.agent, "analyst");
    assert_eq!(view.agent_kind.as_deref(), Some("mlflow-serve"));
    assert_eq!(view.model_version.as_deref(), Some("1"));
    let trace_id = view
        .trace_id
        .clone()
        .expect("the agent returned its trace id");
    assert!(trace_id.starts_with("tr-"), "{trace_id}");
    let insight = view.insight.clone().expect("contract in custom_outputs");
    assert!(!insight.root_causes.is_empty(), "{insight:?}");
    assert!(
        view.grounding.iter().all(|g| g.supported),
        "the reference agent's causes are grounded: {:?}",
        view.grounding
    );
    let html = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(
        html.contains("model version 1"),
        "the card shows the version"
    );

    // A streamed question through AgentServer: text in pieces, then the contract.
    let (conversation, deltas, t1) = app
        .ask("DAL", "otif", None, "Why is OTIF down at Dallas?")
        .await;
    assert_eq!(t1.status, "ok", "{t1:?}\n{}", stream.tail());
    assert!(
        deltas.len() > 5,
        "streamed word by word: {} pieces",
        deltas.len()
    );
    assert_eq!(deltas.concat(), t1.answer);
    assert!(t1.insight.is_some() && t1.grounding.iter().all(|g| g.supported));
    let l1: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", t1.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        l1.trace_id.as_deref().is_some_and(|t| t.starts_with("tr-")),
        "AgentServer's trace event is recorded: {l1:?}"
    );

    // Follow-up naming a segment: the agent answers through its lookup tool, and the
    // function_call items come back on the next turn.
    let member = insight.root_causes[0].member.clone();
    let (_, _, t2) = app
        .ask(
            "DAL",
            "otif",
            Some(&conversation),
            &format!("What about {member}?"),
        )
        .await;
    assert_eq!(t2.status, "ok", "{t2:?}");
    assert!(t2.answer.contains(&member), "{}", t2.answer);
    let (_, _, t3) = app
        .ask(
            "DAL",
            "otif",
            Some(&conversation),
            "And what should we do first?",
        )
        .await;
    assert_eq!(t3.status, "ok");
    let l3: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", t3.id))
        .await
        .json()
        .await
        .unwrap();
    let reply = l3.response_body.unwrap();
    assert!(
        reply.contains("\"earlier_turns\": 2") && reply.contains("\"function_call_output\""),
        "the agent saw both earlier turns and the tool items: {reply}"
    );
    assert!(
        reply.contains("playbook_actions"),
        "answered through its playbook tool: {reply}"
    );

    // The failing lines Opsight looked up (custom_inputs.lookups), through the agent's
    // failing_lines tool: the call is in the reply, the figures in the answer are Opsight's.
    let (_, _, t4) = app
        .ask(
            "DAL",
            "otif",
            Some(&conversation),
            &format!("Show me the late lines for {member}"),
        )
        .await;
    assert_eq!(t4.status, "ok", "{t4:?}");
    let l4: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", t4.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(l4.request_json.contains("\"lookups\""));
    let reply = l4.response_body.unwrap();
    assert!(
        reply.contains("failing_lines") && reply.contains("function_call"),
        "{reply}"
    );
    assert!(
        t4.answer.contains("lines due at Dallas DC failed OTIF"),
        "{}",
        t4.answer
    );
    assert_eq!(l4.claims_unsupported, Some(0), "{:?}", t4.claims);

    // Feedback lands on the real trace as a HUMAN assessment.
    let r = app
        .post_json(
            &format!("/api/v1/insights/{}/feedback", view.id),
            &json!({"helpful": true, "reason": "named the right carrier"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let started = Instant::now();
    let feedback = loop {
        let list: Vec<app::dto::FeedbackView> = app
            .get(&format!("/api/v1/insights/{}/feedback", view.id))
            .await
            .json()
            .await
            .unwrap();
        if list[0].mlflow_state != "pending" || started.elapsed() > Duration::from_secs(20) {
            break list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        feedback.mlflow_state,
        "sent",
        "{feedback:?}\n{}",
        tracking_server.tail()
    );
    let assessment = feedback.assessment_id.expect("assessment id");
    let trace: Value = reqwest::get(format!("{tracking}/api/3.0/mlflow/traces/{trace_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = trace.to_string();
    assert!(
        text.contains(&assessment) && text.contains("user_rating") && text.contains("HUMAN"),
        "the trace carries the assessment: {text}"
    );

    // Move the alias: log version 2 and point prod at it. The card made by version 1 is
    // now stale, and says why.
    let v2 = tokio::task::spawn_blocking({
        let (dir, tracking) = (dir.clone(), tracking.clone());
        move || log_and_register(&dir, &tracking)
    })
    .await
    .unwrap();
    assert_eq!(v2, "2");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let card = app.card("DAL", Metric::OTIF).await;
    let stale = card.stale.unwrap_or_default();
    assert!(
        stale.contains("made by model version 1")
            && stale.contains("models:/opsight-analyst@prod now points to version 2"),
        "stale reason: {stale}"
    );
    let agents: Vec<app::dto::AgentStatus> = app
        .get("/api/v1/agents?check=true")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        agents.iter().all(|a| a.reachable == Some(true)),
        "{agents:?}"
    );
    assert_eq!(agents[0].model_version.as_deref(), Some("2"));

    drop(app);
    drop((serve, stream, tracking_server));
    let _ = std::fs::remove_dir_all(&dir);
}
