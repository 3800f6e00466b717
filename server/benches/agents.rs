//! Agent-path benchmarks (`cargo bench -p server --bench agents`, or `.ci/bench`).
//!
//! 1. Client overhead per call, excluding agent time: an in-process agent answers a
//!    realistic ResponsesAgent reply at once; `AgentClient::call` (breaker, concurrency
//!    slot, JSON parse, contract extraction) is timed against a bare `reqwest` POST of the
//!    same body to the same agent. Then a whole on-demand refresh (evidence pack from
//!    SQLite, request, call, grounding check, lineage and insight rows) with the same
//!    instant agent: everything Opsight adds around the agent.
//! 2. Agent delta → browser latency while streaming: an agent streams 50 deltas 20 ms
//!    apart, each stamped with its send time; a client reads Opsight's
//!    `/api/v1/turns/{id}/events` as a browser's EventSource would and records when each
//!    delta arrives. 8 questions at once, then 1.
//!
//! Client, Opsight and agent share this process (separate runtimes for the load side) and
//! the machine's cores, as local load tools do.

#[path = "shared/mod.rs"]
mod shared;

use app::ssr::agent::{AgentKind, AgentProfile, Agents};
use app::ssr::data::seed;
use app::ssr::store as db;
use axum::response::sse::{Event, Sse};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const AS_OF: &str = "2026-11-21";

/// One clock for the agent's stamps and the client's arrival times.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn micros_since_origin() -> u64 {
    origin().elapsed().as_micros() as u64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "p50 {}, p95 {}, p99 {} (n={})",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.95)),
        ms(percentile(&v, 0.99)),
        v.len()
    )
}

/// A reply shaped like the reference agent's: a message, a contract, a trace id.
fn instant_reply() -> Value {
    json!({"object": "response",
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text",
            "text": "OTIF at Dallas DC was 78.9% in 2026-W46 against 96.7% the week before (-17.8 pp). Carrier RoadRunner Freight explains -15.23 pp (rate).",
            "annotations": []}]}],
        "custom_outputs": {"trace_id": "tr-0123456789abcdef0123456789abcdef", "insight": {
            "headline": "OTIF fell 17.8 pp at Dallas DC: carrier RoadRunner Freight",
            "root_causes": [{"dimension": "carrier", "member": "RoadRunner Freight", "effect": "rate", "impact_pp": -15.23, "evidence": "95.9% -> 60.9%"}],
            "next_actions": [{"action": "Review the carrier scorecard", "owner": "Transport manager", "priority": "high"}],
            "confidence": 0.8}}})
}

async fn streaming_agent(
    Json(_): Json<Value>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = futures::stream::unfold(0usize, |i| async move {
        if i > 51 {
            return None;
        }
        let data = if i < 50 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": format!("[{}] ", micros_since_origin())}).to_string()
        } else if i == 50 {
            json!({"type": "response.output_item.done", "item": {"type": "message", "id": "msg_1", "role": "assistant",
                "content": [{"type": "output_text", "text": "done", "annotations": []}]}}).to_string()
        } else {
            "[DONE]".to_string()
        };
        Some((Ok(Event::default().data(data)), i + 1))
    });
    Sse::new(stream)
}

fn main() -> anyhow::Result<()> {
    origin();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("opsight-bench-agents-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(run(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs `f` on its own thread and runtime (the load side), apart from the servers'.
fn on_client<F, T>(f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .join()
    .unwrap()
}

async fn run(dir: &std::path::Path) -> anyhow::Result<()> {
    let as_of = app::domain::period::parse_date(AS_OF).unwrap();

    // The agents: an instant JSON one and a streaming one.
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let agent_addr = agent_listener.local_addr()?;
    let reply = instant_reply();
    let agent = Router::new()
        .route(
            "/invocations",
            post(move |Json(_): Json<Value>| {
                let reply = reply.clone();
                async move { Json(reply) }
            }),
        )
        .route("/stream/invocations", post(streaming_agent));
    // TCP_NODELAY as a real agent server (uvicorn) sets it: small SSE writes go out at once.
    use axum::serve::ListenerExt;
    let agent_listener = agent_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(agent_listener, agent).await });
    let instant_url = format!("http://{agent_addr}");

    // 1a. The client alone vs a bare POST.
    let pool = db::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?;
    let rules = db::rules::load(&pool).await?;
    seed::seed_demo(
        &pool,
        seed::SeedOptions {
            lines: 60_000,
            as_of,
            seed: 7,
        },
        false,
    )
    .await?;
    let pack = app::ssr::cards::evidence::load(
        &pool,
        &rules,
        "DAL",
        app::domain::kpi::Metric::OTIF,
        as_of,
    )
    .await?;
    let request = app::ssr::agent::build_request(&pack, &rules, "Why is OTIF down?");
    let body_bytes = serde_json::to_vec(&request)?.len();
    let n = 2000;
    let (bare, client) = on_client({
        let url = instant_url.clone();
        let request = request.clone();
        move || async move {
            let agents =
                Agents::single(AgentProfile::new("bench", AgentKind::MlflowServe, &url)).unwrap();
            let client = agents.cards().clone();
            let http = reqwest::Client::new();
            let body = serde_json::to_vec(&request).unwrap();
            for _ in 0..100 {
                let _ = client.call(&request, None).await;
            }
            let mut bare = Vec::with_capacity(n);
            let mut ours = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/invocations"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let _ = r.bytes().await.unwrap();
                bare.push(t.elapsed());
                let t = Instant::now();
                client.call(&request, None).await.unwrap();
                ours.push(t.elapsed());
            }
            (bare, ours)
        }
    });
    println!("agent request body: {body_bytes} bytes (DAL OTIF evidence pack and rules)");
    let mut b = bare.clone();
    b.sort();
    let mut c = client.clone();
    c.sort();
    println!(
        "bare reqwest POST + read, instant agent:   {}",
        summary(bare)
    );
    println!(
        "AgentClient::call, instant agent:          {}",
        summary(client)
    );
    println!(
        "client overhead per call (call − bare):    p50 {}, p99 {}",
        ms(percentile(&c, 0.5).saturating_sub(percentile(&b, 0.5))),
        ms(percentile(&c, 0.99).saturating_sub(percentile(&b, 0.99)))
    );

    // 1b. A whole refresh around the instant agent.
    let mut questions = AgentProfile::new(
        "stream",
        AgentKind::MlflowAgentServer,
        &format!("http://{agent_addr}/stream"),
    );
    questions.max_concurrency = 64;
    // This benchmark measures agent calls, not sign-in or rate limits.
    let application = shared::app(pool.clone(), as_of, |c| {
        c.agents = vec![
            AgentProfile::new("instant", AgentKind::MlflowServe, &instant_url),
            questions,
        ];
        c.cards_agent = "instant".into();
        c.questions_agent = "stream".into();
        c.auth.anonymous_role = Some(app::domain::access::Role::Admin);
        c.allowance = app::ssr::access::limits::Allowance {
            per_user: 1_000_000,
            global: 1_000_000,
        };
    })
    .await?;
    let local = application.local_addr();
    let state = application.state().clone();
    tokio::spawn(application.run_until_stopped(std::future::pending()));
    let mut refresh = Vec::new();
    for i in 0..220 {
        let t = Instant::now();
        state
            .cards()
            .refresh(
                app::dto::RefreshRequest {
                    site: "DAL".into(),
                    metric: "otif".into(),
                    question: None,
                    view: Default::default(),
                },
                &app::domain::access::Reach::All,
            )
            .await?;
        if i >= 20 {
            refresh.push(t.elapsed());
        }
    }
    println!(
        "whole refresh (pack + call + grounding + 2 rows), instant agent: {}",
        summary(refresh)
    );

    // 1c. Opsight's own refresh ceiling: POST /api/v1/insights/refresh at concurrency 8
    // with the instant agent, over HTTP like any client.
    let url = format!("http://{local}/api/v1/insights/refresh");
    let (wall, lat) = on_client(move || async move {
        let http = reqwest::Client::new();
        let started = Instant::now();
        let per_task = 50;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let http = http.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for _ in 0..per_task {
                        let t = Instant::now();
                        let r = http
                            .post(&url)
                            .json(&json!({"site": "DAL", "metric": "otif"}))
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success());
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (started.elapsed(), all)
    });
    println!(
        "refresh over HTTP, concurrency 8, instant agent: {:.0} refreshes/s; {}",
        lat.len() as f64 / wall.as_secs_f64(),
        summary(lat)
    );

    // 2. Delta → browser latency while streaming: `concurrency` questions at once,
    // `rounds` times in a row.
    let base = format!("http://{local}");
    for (concurrency, rounds) in [(8usize, 2usize), (1, 8)] {
        let base = base.clone();
        let (lat, pieces) = on_client(move || async move {
            let http = reqwest::Client::new();
            let mut all = Vec::new();
            let mut pieces = 0;
            for _ in 0..rounds {
                let tasks: Vec<_> = (0..concurrency)
                    .map(|_| {
                        let http = http.clone();
                        let base = base.clone();
                        tokio::spawn(async move { question_latencies(&http, &base).await })
                    })
                    .collect();
                for t in tasks {
                    let (l, p) = t.await.unwrap();
                    pieces += p;
                    all.extend(l);
                }
            }
            (all, pieces)
        });
        println!(
            "agent delta → browser, {concurrency} question(s) streaming at once × {rounds} ({pieces} deltas): {}",
            summary(lat)
        );
    }
    Ok(())
}

/// Asks one question and returns, per delta, the time from the agent writing it to the
/// client reading it from Opsight's event stream.
async fn question_latencies(http: &reqwest::Client, base: &str) -> (Vec<Duration>, usize) {
    let started: Value = http
        .post(format!("{base}/api/v1/conversations"))
        .json(&json!({"site": "DAL", "metric": "otif", "question": "Why is OTIF down?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let turn = started["turn_id"].as_str().unwrap().to_string();
    let mut r = http
        .get(format!("{base}/api/v1/turns/{turn}/events"))
        .send()
        .await
        .unwrap();
    let mut decoder = app::domain::insight::SseDecoder::default();
    let mut out = Vec::new();
    let mut pieces = 0;
    while let Some(chunk) = r.chunk().await.unwrap() {
        let now = micros_since_origin();
        for data in decoder.push(&chunk) {
            let event: Value = serde_json::from_str(&data).unwrap();
            let text = match event["type"].as_str() {
                Some("delta") | Some("snapshot") => event["text"].as_str().unwrap_or_default(),
                Some("final") => return (out, pieces),
                _ => "",
            };
            // Each stamp is "[micros] "; a snapshot may carry several (they were written
            // before we subscribed): only deltas read live count.
            if event["type"] == "delta" {
                for stamp in text
                    .split('[')
                    .filter_map(|s| s.split(']').next()?.parse::<u64>().ok())
                {
                    out.push(Duration::from_micros(now.saturating_sub(stamp)));
                    pieces += 1;
                }
            }
        }
    }
    (out, pieces)
}
