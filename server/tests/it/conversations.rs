//! "Why is this down?" conversations: streamed answers, follow-ups that send the earlier
//! turns back (function calls included), linkable pages, late subscribers, bad input.

use crate::common::{spawn_app, spawn_app_with};
use app::ssr::agent::AgentKind;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The built-in analyst's answers, streamed the way a model writes: one SSE event every
/// 20 ms (the built-in analyst composes in microseconds, so a subscriber may see its lines
/// arrive together).
async fn paced_analyst() -> String {
    async fn invocations(body: axum::body::Bytes) -> axum::response::Response {
        use app::ssr::agent::analyst::{answer, sse_delta};
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut events: Vec<String> = Vec::new();
        let reply =
            answer(&request, &mut |piece| events.push(sse_delta(piece))).expect("a valid request");
        events.push(reply.sse_end());
        let stream = futures::stream::unfold(events.into_iter(), |mut rest| async move {
            let next = rest.next()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::convert::Infallible>(next), rest))
        });
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(stream))
            .unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/invocations", axum::routing::post(invocations));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn a_question_streams_its_answer_then_the_checked_contract() {
    let paced = paced_analyst().await;
    let app = spawn_app_with(20_000, || {
        vec![crate::common::profile(
            AgentKind::MlflowAgentServer,
            &paced,
            Duration::from_secs(10),
            None,
        )]
    })
    .await;
    let (conversation, deltas, turn) = app
        .ask("DAL", "otif", None, "Why is OTIF down at Dallas?")
        .await;
    assert_eq!(turn.status, "ok", "{turn:?}");
    assert!(deltas.len() > 1, "the answer arrived in pieces: {deltas:?}");
    assert_eq!(deltas.concat().trim_end(), turn.answer.trim_end());
    let insight = turn.insight.expect("the contract");
    assert!(!insight.root_causes.is_empty());
    assert_eq!(turn.grounding.len(), insight.root_causes.len());
    assert!(
        turn.grounding.iter().all(|g| g.supported),
        "{:?}",
        turn.grounding
    );

    // Linkable: the JSON view and the page.
    let c: app::dto::ConversationView = app
        .get(&format!("/api/v1/conversations/{conversation}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c.turns.len(), 1);
    assert_eq!(c.title, "Why is OTIF down at Dallas?");
    let html = app
        .get(&format!("/conversations/{conversation}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Q1: Why is OTIF down at Dallas?"));
    assert!(html.contains("supported by the data"));

    // A late subscriber gets the stored answer.
    let (late_deltas, again) = app.turn_events(&turn.id).await;
    assert!(late_deltas.is_empty());
    assert_eq!(again.answer, turn.answer);

    // The call's lineage: kind, the streamed request, the SSE reply.
    let l: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", turn.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(l.kind, "mlflow-agent-server");
    assert!(l.request_json.contains("\"stream\": true"));
    assert!(l
        .response_body
        .unwrap()
        .contains("response.output_item.done"));
}

#[tokio::test]
async fn follow_ups_send_every_earlier_item_back_including_function_calls() {
    let mock = MockServer::start().await;
    let first = json!({"object": "response", "output": [
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup_segment", "arguments": "{\"member\": \"RoadRunner\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "{\"rate\": -3.2}"},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "RoadRunner got late.", "annotations": []}]}]});
    let second = json!({"object": "response", "output": [
        {"type": "message", "id": "msg_2", "role": "assistant", "content": [{"type": "output_text", "text": "Move lanes to FastFreight.", "annotations": []}]}]});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(second))
        .mount(&mock)
        .await;
    let url = mock.uri();
    let app = spawn_app_with(20_000, || {
        vec![crate::common::profile(
            AgentKind::MlflowServe,
            &url,
            Duration::from_secs(5),
            None,
        )]
    })
    .await;
    let (conversation, _, t1) = app.ask("DAL", "otif", None, "Why is OTIF down?").await;
    assert_eq!(t1.answer, "RoadRunner got late.");
    let (same, _, t2) = app
        .ask(
            "DAL",
            "otif",
            Some(&conversation),
            "What should we do about it?",
        )
        .await;
    assert_eq!(same, conversation);
    assert_eq!(
        (t2.seq, t2.answer.as_str()),
        (2, "Move lanes to FastFreight.")
    );

    // The agent calls (the application's background health check GETs /ping too).
    let requests: Vec<_> = mock
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    let second: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let input = second["input"].as_array().unwrap();
    let types: Vec<&str> = input
        .iter()
        .map(|i| i.get("type").and_then(Value::as_str).unwrap_or("message"))
        .collect();
    assert_eq!(
        types,
        [
            "message",
            "message",
            "function_call",
            "function_call_output",
            "message",
            "message"
        ],
        "system, question 1, the reply's items, question 2: {input:?}"
    );
    assert_eq!(input[0]["role"], "system");
    assert_eq!(input[5]["content"], "What should we do about it?");
    assert_eq!(input[2]["arguments"], "{\"member\": \"RoadRunner\"}");
    assert_eq!(second["context"]["conversation_id"], conversation.as_str());
    // Who asks travels with it (MLflow's ChatContext.user_id): the API token's principal.
    assert_eq!(second["context"]["user_id"], "token:tests");
    assert!(
        second["custom_inputs"]["evidence"].is_object(),
        "the pack travels every turn"
    );
}

#[tokio::test]
async fn bad_questions_get_clear_errors() {
    let app = spawn_app(5_000, None).await;
    let r = app
        .post_json(
            "/api/v1/conversations",
            &json!({"site": "DAL", "metric": "otif", "question": "  "}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .post_json(
            "/api/v1/conversations",
            &json!({"site": "NOPE", "metric": "otif", "question": "why?"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .post_json(
            "/api/v1/conversations/cnv_missing/turns",
            &json!({"question": "why?"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.get("/api/v1/turns/trn_missing/events").await.status(),
        404
    );
    assert_eq!(
        app.get("/api/v1/conversations/cnv_missing").await.status(),
        404
    );
    let r = app
        .post_json("/api/v1/conversations", &json!({"site": "DAL"}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expected JSON"));
}

#[tokio::test]
async fn a_failing_agent_ends_the_turn_with_a_safe_error() {
    let app = spawn_app_with(5_000, || {
        vec![crate::common::profile(
            AgentKind::MlflowAgentServer,
            "http://127.0.0.1:9",
            Duration::from_secs(2),
            None,
        )]
    })
    .await;
    let (_, deltas, turn) = app.ask("DAL", "otif", None, "Why?").await;
    assert!(deltas.is_empty());
    assert_eq!(turn.status, "error");
    assert_eq!(
        turn.error.as_deref(),
        Some("the agent could not be reached")
    );
}
