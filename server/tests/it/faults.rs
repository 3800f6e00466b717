//! Every misbehaviour the protocol reference lists, from a local misbehaving agent: each
//! leaves the last good insight on the card, marked stale with the reason, the page
//! renders and the server stays up. Plus retries, the circuit breaker, the grounding check
//! (an agent inventing a carrier) and a stream cut mid-way at the TCP level.

use crate::common::{spawn_app, TestApp};
use app::domain::kpi::Metric;
use app::ssr::agent::client::AgentClient;
use app::ssr::agent::resilience::{Breaker, RetryPolicy};
use app::ssr::agent::{AgentError, AgentKind, AgentProfile, MAX_REPLY_BYTES};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn message(text: &str) -> Value {
    json!({"type": "message", "id": "msg_1", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// The built-in analyst's answer for DAL OTIF on the test data: a reply whose causes the
/// grounding check supports.
async fn grounded_insight(app: &TestApp) -> Value {
    let rules = app::ssr::store::rules::load(app.state.db()).await.unwrap();
    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &rules,
        "DAL",
        Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();
    let (_, insight) = app::domain::analyst::analyse(&pack, &rules, None);
    assert!(
        !insight.root_causes.is_empty(),
        "the test data has a cause at DAL"
    );
    serde_json::to_value(insight).unwrap()
}

/// An app whose agent answers well once, then with `fault` for every later call.
async fn app_with_fault(fault: ResponseTemplate) -> (TestApp, MockServer, String) {
    let mock = MockServer::start().await;
    let app = spawn_app(20_000, Some(&format!("{}/invocations", mock.uri()))).await;
    let good = json!({"object": "response", "output": [message("RoadRunner got late at Dallas.")],
                      "custom_outputs": {"insight": grounded_insight(&app).await, "trace_id": "tr-good"}});
    Mock::given(method("POST"))
        .and(path("/invocations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(good))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/invocations"))
        .respond_with(fault)
        .mount(&mock)
        .await;
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200, "the first, good refresh");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (app, mock, id)
}

/// Refreshes into the fault and checks the card state and that everything still serves.
async fn assert_fault_handled(app: &TestApp, good_id: &str, expected: &str) {
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 502);
    let err = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(expected),
        "error '{err}' should say '{expected}'"
    );
    let card = app.card("DAL", Metric::OTIF).await;
    assert_eq!(card.insight.as_ref().map(|i| i.id.as_str()), Some(good_id));
    let stale = card.stale.unwrap_or_default();
    assert!(
        stale.contains("the last refresh failed") && stale.contains(expected),
        "stale reason: {stale}"
    );
    for page in ["/", "/kpi/DAL/otif", "/healthz"] {
        assert_eq!(app.get(page).await.status(), 200, "{page} still serves");
    }
    let html = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(html.contains("Stale: ") && html.contains("RoadRunner"));
}

#[tokio::test]
async fn malformed_json() {
    let (app, _m, id) = app_with_fault(
        ResponseTemplate::new(200).set_body_raw("{\"output\": [", "application/json"),
    )
    .await;
    assert_fault_handled(&app, &id, "not valid JSON").await;
}

#[tokio::test]
async fn html_error_page() {
    let (app, _m, id) = app_with_fault(
        ResponseTemplate::new(200).set_body_raw("<html><body>Sign in</body></html>", "text/html"),
    )
    .await;
    assert_fault_handled(&app, &id, "error page").await;
}

#[tokio::test]
async fn crash_reported_as_400_with_stack_trace() {
    let (app, _m, id) = app_with_fault(ResponseTemplate::new(400).set_body_json(json!({
        "error_code": "BAD_REQUEST", "message": "Failed to predict data '{\"input\": ECHO}'",
        "stack_trace": "Traceback\n  File \"/srv/agent.py\"\nRuntimeError: boom"})))
    .await;
    assert_fault_handled(&app, &id, "failed while answering (HTTP 400, BAD_REQUEST)").await;
    let html = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(!html.contains("/srv/agent.py") && !html.contains("ECHO"));
}

#[tokio::test]
async fn non_json_504_is_retried_then_reported() {
    let (app, mock, id) = app_with_fault(
        ResponseTemplate::new(504)
            .set_body_raw("Request processing time exceeded limit", "application/json"),
    )
    .await;
    assert_fault_handled(&app, &id, "unavailable (HTTP 504)").await;
    // 1 good call, then 3 attempts for the failed refresh (502/503/504 are retried). (The
    // application's health checks GET the agent too.)
    let calls = mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(calls, 4);
}

#[tokio::test]
async fn sse_stream_without_its_end() {
    let body = format!(
        "data: {}\n\ndata: {}\n\n",
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "RoadRunner"}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": " got"}),
    );
    let (app, _m, id) =
        app_with_fault(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")).await;
    assert_fault_handled(&app, &id, "stream ended before it finished").await;
}

#[tokio::test]
async fn in_band_error_event() {
    let body = "data: {\"type\": \"response.output_text.delta\", \"item_id\": \"m\", \"delta\": \"par\"}\n\ndata: {\"error\": \"fixture: requested failure\"}\n\ndata: [DONE]\n\n";
    let (app, _m, id) =
        app_with_fault(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")).await;
    assert_fault_handled(&app, &id, "reported an error in its reply").await;
}

#[tokio::test]
async fn unknown_item_types_only() {
    let (app, _m, id) = app_with_fault(ResponseTemplate::new(200).set_body_json(json!({
        "object": "response", "output": [{"type": "hologram", "id": "h1"}, {"type": "reasoning", "id": "r", "summary": []}]})))
    .await;
    assert_fault_handled(&app, &id, "no text and no insight").await;
}

#[tokio::test]
async fn oversized_reply() {
    let big = "x".repeat(MAX_REPLY_BYTES + 1);
    let (app, _m, id) = app_with_fault(
        ResponseTemplate::new(200).set_body_json(json!({"output": [message(&big)]})),
    )
    .await;
    assert_fault_handled(&app, &id, "larger than 1024 KB").await;
}

#[tokio::test]
async fn an_agent_inventing_a_carrier_does_not_replace_the_last_good_insight() {
    let invented = json!({"headline": "OTIF fell because SpeedyCargo was late",
        "root_causes": [{"dimension": "carrier", "member": "SpeedyCargo", "effect": "rate", "impact_pp": -4.0, "evidence": "made up"}],
        "next_actions": [], "confidence": 0.9});
    let (app, _m, id) = app_with_fault(ResponseTemplate::new(200).set_body_json(json!({
        "output": [message("SpeedyCargo was late.")], "custom_outputs": {"insight": invented}})))
    .await;
    assert_fault_handled(&app, &id, "not supported by the data").await;
    // The rejected reply is still on record with its lineage.
    let attempts: Vec<Value> = app
        .get("/api/v1/insights?site=DAL&metric=otif")
        .await
        .json()
        .await
        .unwrap();
    let rejected = attempts[0]["id"].as_str().unwrap();
    assert_eq!(attempts[0]["status"], "error");
    let lineage: Value = app
        .get(&format!("/api/v1/insights/{rejected}/lineage"))
        .await
        .json()
        .await
        .unwrap();
    assert!(lineage["response_body"]
        .as_str()
        .unwrap()
        .contains("SpeedyCargo"));
    assert!(lineage["error"]
        .as_str()
        .unwrap()
        .contains("no carrier named 'SpeedyCargo'"));
}

#[tokio::test]
async fn a_partly_grounded_reply_is_kept_and_marks_the_unsupported_cause() {
    let mock = MockServer::start().await;
    let app = spawn_app(20_000, Some(&format!("{}/invocations", mock.uri()))).await;
    let mut insight = grounded_insight(&app).await;
    insight["root_causes"].as_array_mut().unwrap().push(json!({
        "dimension": "carrier", "member": "SpeedyCargo", "effect": "rate", "impact_pp": -1.0, "evidence": "made up"}));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"output": [message("Mostly right.")], "custom_outputs": {"insight": insight}}),
        ))
        .mount(&mock)
        .await;
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let view: app::dto::InsightView = r.json().await.unwrap();
    let verdicts: Vec<bool> = view.grounding.iter().map(|g| g.supported).collect();
    assert_eq!(verdicts.last(), Some(&false));
    assert!(verdicts[0], "{:?}", view.grounding);
    let html = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(html.contains("✓ supported by the data"));
    let unsupported = html.replace("&#x27;", "'").replace("&#39;", "'");
    assert!(
        unsupported.contains(
            "✗ not supported by the data: no carrier named 'SpeedyCargo' in the evidence"
        ),
        "the card marks the invented carrier"
    );
}

#[tokio::test]
async fn a_hostile_agents_wrong_numbers_and_invented_names_are_marked_on_the_card() {
    let mock = MockServer::start().await;
    let app = spawn_app(20_000, Some(&format!("{}/invocations", mock.uri()))).await;
    // Correct causes (so the reply is kept), a headline and narrative that are not.
    let mut insight = grounded_insight(&app).await;
    insight["headline"] =
        json!("OTIF fell 25 points at Dallas DC because Zephyr Freight lost 1,234 pallets");
    let narrative = "Zephyr Freight was 48.5% late. RoadRunner Freight is fine.";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"output": [message(narrative)], "custom_outputs": {"insight": insight}}),
        ))
        .mount(&mock)
        .await;
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let view: app::dto::InsightView = r.json().await.unwrap();
    assert!(
        view.grounding.iter().all(|g| g.supported),
        "the causes hold"
    );
    let bad: Vec<(&str, &str)> = view
        .claims
        .iter()
        .filter(|c| !c.supported)
        .map(|c| (c.part.as_str(), c.text.as_str()))
        .collect();
    assert_eq!(
        bad,
        [
            ("headline", "25 points"),
            ("headline", "1,234"),
            ("headline", "Zephyr Freight"),
            ("narrative", "48.5%"),
            ("narrative", "Zephyr Freight"),
        ],
        "{:?}",
        view.claims
    );
    // The causes' own evidence text is the analyst's, and all of it holds.
    assert!(view
        .claims
        .iter()
        .filter(|c| c.part.starts_with("cause"))
        .all(|c| c.supported));
    // The card marks them, and the lineage counts them.
    let html = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(
        html.contains("class=\"headline unsupported\""),
        "the headline is marked"
    );
    assert!(html.contains("5 of "), "the count is shown");
    assert!(html.contains("not in the evidence"));
    let text = html.replace("&#x27;", "'").replace("&#39;", "'");
    assert!(text.contains(
        "in the headline: no member, site or reason named 'Zephyr Freight' in the evidence"
    ));
    let lineage: Value = app
        .get(&format!("/api/v1/insights/{}/lineage", view.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lineage["claims_unsupported"], 5);
    assert_eq!(
        lineage["claims_checked"].as_i64(),
        Some(view.claims.len() as i64)
    );
}

/// A server that answers with SSE headers and one event, then drops the connection.
async fn cut_stream_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let event = "data: {\"type\": \"response.output_text.delta\", \"item_id\": \"m\", \"delta\": \"RoadRunner \"}\n\n";
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(chunk.as_bytes()).await;
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Dropped without the terminating chunk: the connection is cut mid-stream.
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_stream_cut_at_the_tcp_level_is_an_error_and_streams_what_arrived() {
    let url = cut_stream_server().await;
    let app = crate::common::spawn_app_with(20_000, || {
        vec![crate::common::profile(
            AgentKind::MlflowAgentServer,
            &url,
            Duration::from_secs(5),
            None,
        )]
    })
    .await;
    let (_, deltas, turn) = app.ask("DAL", "otif", None, "Why is OTIF down?").await;
    assert_eq!(turn.status, "error");
    assert!(
        turn.error
            .as_deref()
            .unwrap_or_default()
            .contains("stream ended before it finished"),
        "{turn:?}"
    );
    assert_eq!(deltas.concat(), "RoadRunner ", "what arrived was streamed");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

fn bare_client(url: &str, retry: RetryPolicy, breaker: Breaker) -> AgentClient {
    let mut p = AgentProfile::new("t", AgentKind::MlflowServe, url);
    p.timeout = Duration::from_secs(5);
    AgentClient::new(reqwest::Client::new(), p).with_resilience(retry, breaker)
}

fn request() -> Value {
    json!({"input": [{"role": "user", "content": "why?"}]})
}

#[tokio::test]
async fn retries_503_and_honours_retry_after_on_429_but_never_retries_a_400() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"output": [message("ok")]})))
        .mount(&mock)
        .await;
    let client = bare_client(
        &mock.uri(),
        RetryPolicy::default(),
        Breaker::new(5, Duration::from_secs(30)),
    );
    let started = std::time::Instant::now();
    let reply = client.call(&request(), None).await.unwrap();
    assert_eq!(reply.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );

    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error_code": "INVALID_PARAMETER_VALUE"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let client = bare_client(
        &mock.uri(),
        RetryPolicy::default(),
        Breaker::new(5, Duration::from_secs(30)),
    );
    let e = client.call(&request(), None).await.unwrap_err();
    assert!(matches!(e, AgentError::Rejected { status: 400, .. }));
}

#[tokio::test]
async fn the_breaker_stops_calls_during_the_cool_down_and_recovers() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"output": [message("back")]})),
        )
        .mount(&mock)
        .await;
    let no_retry = RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    };
    let client = bare_client(
        &mock.uri(),
        no_retry,
        Breaker::new(2, Duration::from_millis(400)),
    );
    for _ in 0..2 {
        assert!(matches!(
            client.call(&request(), None).await,
            Err(AgentError::Crashed { .. })
        ));
    }
    let e = client.call(&request(), None).await.unwrap_err();
    assert!(matches!(e, AgentError::CircuitOpen(_)), "{e:?}");
    assert_eq!(
        mock.received_requests().await.unwrap().len(),
        2,
        "no call while open"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let reply = client
        .call(&request(), None)
        .await
        .expect("the trial call succeeds");
    assert_eq!(reply.answer.text, "back");
    assert!(client.call(&request(), None).await.is_ok(), "closed again");
}
