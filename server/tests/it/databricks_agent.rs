//! A Databricks agent end to end, against a local double of a Databricks workspace that
//! speaks its real API and does the real work behind it: Model Serving
//! (`POST /serving-endpoints/{name}/invocations`, bearer auth, `databricks_options.return_trace`
//! answered with `databricks_output.trace`, JSON or SSE) running the built-in analyst on the
//! request it gets, Unity Catalog's model aliases
//! (`GET /api/2.1/unity-catalog/models/{full_name}/aliases/{alias}`) from a table it keeps,
//! and MLflow's assessments on the traces it recorded.

use crate::common::{profile, spawn_app_with};
use app::domain::kpi::Metric;
use app::ssr::agent::analyst::{answer, sse_delta};
use app::ssr::agent::{AgentKind, ModelRef};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "dapi-double";

#[derive(Default)]
struct Workspace {
    /// (full model name, alias) → version.
    aliases: HashMap<(String, String), u32>,
    /// trace id → trace.
    traces: HashMap<String, Value>,
    /// trace id → assessments logged on it.
    assessments: HashMap<String, Vec<Value>>,
    /// What each invocation asked for: (stream, return_trace, custom_inputs keys).
    invocations: Vec<(bool, bool, Vec<String>)>,
}

type Shared = Arc<Mutex<Workspace>>;

fn authorised(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == format!("Bearer {TOKEN}"))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

async fn invocations(
    State(ws): State<Shared>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorised(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Invalid access token.",
        );
    }
    if endpoint != "opsight-analyst" {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            "No such endpoint.",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "Invalid JSON.");
    };
    let stream = request["stream"].as_bool().unwrap_or(false);
    let return_trace = request.pointer("/databricks_options/return_trace") == Some(&json!(true));
    let keys = request["custom_inputs"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mut deltas = Vec::new();
    let reply = match answer(&request, &mut |piece| deltas.push(sse_delta(piece))) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &e.0),
    };
    // The trace of this call, kept for assessments, returned when asked for.
    let trace = {
        let mut w = ws.lock().unwrap();
        w.invocations.push((stream, return_trace, keys));
        let id = format!("tr-{:032x}", 0xdb00 + w.traces.len() as u128);
        let trace = json!({
            "info": {"trace_id": id, "client_request_id": format!("req-{}", w.traces.len()),
                     "state": "OK", "request_time": "2026-11-21T10:00:00Z"},
            "data": {"spans": [{"name": "predict", "span_type": "AGENT",
                                "inputs": request["input"], "outputs": reply.response["output"]}]}});
        w.traces.insert(id, trace.clone());
        trace
    };
    if !stream {
        let mut body = reply.response.clone();
        if return_trace {
            body["databricks_output"] = json!({"trace": trace});
        }
        return Json(body).into_response();
    }
    let mut events = deltas.concat();
    events.push_str(reply.sse_end().trim_end_matches("data: [DONE]\n\n"));
    if return_trace {
        events.push_str(&format!(
            "data: {}\n\n",
            json!({"databricks_output": {"trace": trace}})
        ));
    }
    events.push_str("data: [DONE]\n\n");
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(events))
        .unwrap()
}

async fn alias(
    State(ws): State<Shared>,
    Path((name, alias)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Invalid access token.",
        );
    }
    let w = ws.lock().unwrap();
    match w.aliases.get(&(name.clone(), alias.clone())) {
        Some(v) => Json(
            json!({"model_name": name, "catalog_name": name.split('.').next(),
                               "version": v, "aliases": [{"alias_name": alias, "version_num": v}]}),
        )
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            &format!("Model alias {alias} of {name} does not exist."),
        ),
    }
}

async fn assessments(
    State(ws): State<Shared>,
    Path(trace): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Invalid access token.",
        );
    }
    let mut w = ws.lock().unwrap();
    if !w.traces.contains_key(&trace) {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            "Trace not found.",
        );
    }
    let Some(assessment) = body.get("assessment").cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "Missing assessment.",
        );
    };
    let list = w.assessments.entry(trace).or_default();
    let id = format!("a-{}", list.len() + 1);
    let mut stored = assessment;
    stored["assessment_id"] = json!(id);
    list.push(stored.clone());
    Json(json!({"assessment": stored})).into_response()
}

async fn workspace() -> (String, Shared) {
    let ws: Shared = Arc::default();
    ws.lock()
        .unwrap()
        .aliases
        .insert(("main.ops.opsight_analyst".into(), "champion".into()), 3);
    let router = Router::new()
        .route(
            "/serving-endpoints/{endpoint}/invocations",
            post(invocations),
        )
        .route(
            "/api/2.1/unity-catalog/models/{name}/aliases/{alias}",
            get(alias),
        )
        .route(
            "/api/3.0/mlflow/traces/{trace}/assessments",
            post(assessments),
        )
        .with_state(ws.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, ws)
}

#[tokio::test]
async fn a_databricks_agent_refreshes_cards_answers_questions_and_takes_feedback() {
    let (agent_url, ws) = workspace().await;
    let app = spawn_app_with(20_000, move || {
        let mut p = profile(
            AgentKind::Databricks,
            &agent_url,
            Duration::from_secs(10),
            Some(TOKEN),
        );
        p.endpoint = Some("opsight-analyst".into());
        // A Unity Catalog name: resolved in the workspace, no tracking_uri needed.
        p.model = ModelRef::parse("models:/main.ops.opsight_analyst@champion");
        p.alias_ttl = Duration::from_millis(100);
        vec![p]
    })
    .await;

    // A card refresh: JSON, the trace asked for and recorded, the UC alias's version.
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let view: app::dto::InsightView = r.json().await.unwrap();
    assert_eq!(
        view.status,
        app::domain::status::AnswerStatus::Ok,
        "{view:?}"
    );
    assert_eq!(view.model_version.as_deref(), Some("3"));
    let trace = view
        .trace_id
        .clone()
        .expect("the trace from databricks_output");
    assert!(ws.lock().unwrap().traces.contains_key(&trace));
    assert_eq!(
        view.insight.as_ref().unwrap().root_causes[0].member,
        "RoadRunner Freight"
    );
    assert!(view.grounding.iter().all(|g| g.supported));
    assert_eq!(
        app.card("DAL", Metric::OTIF).await.insight.unwrap().id,
        view.id
    );

    // Feedback lands on the workspace's trace as a HUMAN assessment.
    let r = app
        .post_json(
            &format!("/api/v1/insights/{}/feedback", view.id),
            &json!({"helpful": true, "reason": "right carrier"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let started = std::time::Instant::now();
    while !ws.lock().unwrap().assessments.contains_key(&trace)
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = ws
        .lock()
        .unwrap()
        .assessments
        .get(&trace)
        .cloned()
        .expect("assessment");
    assert_eq!(stored[0]["source"]["source_type"], "HUMAN");
    assert_eq!(stored[0]["feedback"]["value"], true);

    // A conversation: streamed, with the look-ups, the trace on each turn.
    let (c, deltas, t1) = app
        .ask("DAL", "otif", None, "Which carriers are hit hardest?")
        .await;
    assert_eq!(t1.status, "ok", "{t1:?}");
    if !deltas.is_empty() {
        assert_eq!(deltas.concat(), t1.answer, "what streamed is the answer");
    }
    assert!(
        t1.answer.contains("carrier RoadRunner Freight"),
        "{}",
        t1.answer
    );
    let (_, _, t2) = app
        .ask(
            "DAL",
            "otif",
            Some(&c),
            "Show me the late lines for RoadRunner Freight",
        )
        .await;
    assert_eq!(t2.status, "ok");
    assert!(
        t2.answer
            .contains("lines due at Dallas DC (carrier = RoadRunner Freight)"),
        "{}",
        t2.answer
    );
    let l2: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", t2.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(l2
        .trace_id
        .as_deref()
        .is_some_and(|t| ws.lock().unwrap().traces.contains_key(t)));
    assert_eq!(l2.model_version.as_deref(), Some("3"));
    assert_eq!(l2.kind, "databricks");

    // What the workspace saw: every call asked for its trace; the card's call as JSON,
    // the questions streamed with their look-ups.
    let calls = ws.lock().unwrap().invocations.clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|(_, trace, _)| *trace));
    assert!(!calls[0].0 && calls[1].0 && calls[2].0, "{calls:?}");
    assert!(calls[2].2.contains(&"lookups".to_string()));

    // The alias moves: the next refresh records the new version.
    ws.lock()
        .unwrap()
        .aliases
        .insert(("main.ops.opsight_analyst".into(), "champion".into()), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = app.refresh("DAL", "otif").await;
    let moved: app::dto::InsightView = r.json().await.unwrap();
    assert_eq!(moved.model_version.as_deref(), Some("4"));
}
