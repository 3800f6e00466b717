//! The agent client against a local mock server: every reply shape and failure the
//! protocol reference lists.

use app::domain::insight::{ContractSource, ReplyError};
use app::ssr::agent::{AgentError, MAX_REPLY_BYTES};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn request() -> serde_json::Value {
    json!({"input": [{"role": "user", "content": "why?"}], "custom_inputs": {"evidence": {"k": 1}}})
}

async fn call(
    mock: &MockServer,
    template: ResponseTemplate,
) -> Result<app::domain::insight::AgentAnswer, AgentError> {
    Mock::given(method("POST"))
        .and(path("/invocations"))
        .respond_with(template)
        .mount(mock)
        .await;
    let client = crate::common::agent(
        &format!("{}/invocations", mock.uri()),
        Duration::from_millis(800),
        None,
    );
    client.call(&request(), None).await.map(|r| r.answer)
}

fn message(text: &str) -> serde_json::Value {
    json!({"type": "message", "id": "msg_1", "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn contract() -> serde_json::Value {
    json!({"headline": "OTIF down", "root_causes": [{"dimension": "carrier", "member": "X", "effect": "rate", "impact_pp": -2.0, "evidence": "e"}],
           "next_actions": [{"action": "a", "owner": "o", "priority": "high"}], "confidence": 0.8})
}

#[tokio::test]
async fn json_reply_with_contract_in_custom_outputs() {
    let mock = MockServer::start().await;
    // models serve writes Python-style separators and \u escapes: parse, never compare bytes.
    let body = r#"{"object": "response", "output": [{"type": "message", "id": "msg_1", "content": [{"text": "h\u00e9llo", "type": "output_text", "annotations": []}], "role": "assistant"}], "custom_outputs": {"insight": {"headline": "OTIF down", "confidence": "high"}, "trace_id": "tr-547f"}}"#;
    let a = call(
        &mock,
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )
    .await
    .unwrap();
    assert_eq!(a.text, "héllo");
    assert_eq!(a.source, ContractSource::CustomOutputs);
    assert_eq!(a.trace_id.as_deref(), Some("tr-547f"));
    assert_eq!(a.insight.unwrap().confidence, 0.9);
}

#[tokio::test]
async fn sends_the_request_as_json_with_the_bearer_token() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer dapi-123"))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(
            json!({"custom_inputs": {"evidence": {"k": 1}}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"output": [message("ok")]})))
        .expect(1)
        .mount(&mock)
        .await;
    let client = crate::common::agent(
        &format!("{}/invocations", mock.uri()),
        Duration::from_secs(2),
        Some("dapi-123"),
    );
    let a = client.call(&request(), None).await.unwrap().answer;
    assert_eq!(a.text, "ok");
    assert!(
        !format!("{client:?}").contains("dapi-123"),
        "token leaks through Debug"
    );
}

#[tokio::test]
async fn sse_reply_is_read_by_content_type() {
    let mock = MockServer::start().await;
    let done = json!({"type": "response.output_item.done", "item": message("echo: hello there"), "custom_outputs": {"insight": contract()}});
    let body = format!(
        "data: {}\n\ndata: {}\n\ndata: {{\"trace_id\": \"tr-c\"}}\n\ndata: [DONE]\n\n",
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "echo:"}),
        done
    );
    let a = call(
        &mock,
        ResponseTemplate::new(200).set_body_raw(body, "text/event-stream; charset=utf-8"),
    )
    .await
    .unwrap();
    assert_eq!(a.text, "echo: hello there");
    assert_eq!(a.trace_id.as_deref(), Some("tr-c"));
    assert_eq!(a.insight.unwrap().root_causes.len(), 1);
}

#[tokio::test]
async fn json_block_in_text_and_plain_text() {
    let mock = MockServer::start().await;
    let text = format!("Analysis:\n```json\n{}\n```", contract());
    let a = call(
        &mock,
        ResponseTemplate::new(200).set_body_json(json!({"output": [message(&text)]})),
    )
    .await
    .unwrap();
    assert_eq!(a.source, ContractSource::TextJson);

    let mock = MockServer::start().await;
    let a = call(
        &mock,
        ResponseTemplate::new(200).set_body_json(json!({"output": [message("Just prose.")]})),
    )
    .await
    .unwrap();
    assert_eq!(a.source, ContractSource::Narrative);
    assert_eq!(a.text, "Just prose.");
}

#[tokio::test]
async fn client_errors_are_rejections_and_crashes_are_recognised() {
    let mock = MockServer::start().await;
    let e = call(&mock, ResponseTemplate::new(400).set_body_json(json!({"error_code": "INVALID_PARAMETER_VALUE", "message": "Failed to predict data '<echo>'"}))).await.unwrap_err();
    assert!(
        matches!(e, AgentError::Rejected { status: 400, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("INVALID_PARAMETER_VALUE") && !e.to_string().contains("echo"));

    let mock = MockServer::start().await;
    let e = call(&mock, ResponseTemplate::new(400).set_body_json(json!({"error_code": "BAD_REQUEST", "message": "x",
        "stack_trace": "Traceback\n  File \"/secret/path.py\"\nRuntimeError: fixture: requested failure"}))).await.unwrap_err();
    match &e {
        AgentError::Crashed {
            status: 400,
            last_line,
            ..
        } => {
            assert_eq!(
                last_line.as_deref(),
                Some("RuntimeError: fixture: requested failure")
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("/secret/path.py"));

    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(415).set_body_raw("Unsupported media type", "text/plain"),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        e,
        AgentError::Rejected {
            status: 415,
            code: None
        }
    ));
}

#[tokio::test]
async fn server_errors_and_non_json_bodies() {
    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(500).set_body_json(json!({"detail": "boom"})),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Crashed { status: 500, .. }));

    // models serve's 504: plain text labelled application/json.
    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(504)
            .set_body_raw("Request processing time exceeded limit", "application/json"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Unavailable { status: 504 }));

    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(502)
            .set_body_raw("<html><body>Bad gateway</body></html>", "text/html"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Unavailable { status: 502 }));
}

#[tokio::test]
async fn malformed_json_and_empty_replies() {
    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(200).set_body_raw("{\"output\": [", "application/json"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Reply(ReplyError::Malformed)));

    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(200).set_body_raw("<html>login</html>", "text/html"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::NotAnAgent { status: 200 }), "{e:?}");

    let mock = MockServer::start().await;
    let e = call(&mock, ResponseTemplate::new(200).set_body_json(json!({"output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]}))).await.unwrap_err();
    assert!(matches!(e, AgentError::Reply(ReplyError::Empty)));

    let mock = MockServer::start().await;
    let body = "data: {\"type\": \"response.output_text.delta\", \"item_id\": \"m\", \"delta\": \"par\"}\n\ndata: {\"error\": \"stream failed\"}\n\ndata: [DONE]\n\n";
    let e = call(
        &mock,
        ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Reply(ReplyError::InBandError)));
}

#[tokio::test]
async fn slow_agents_time_out() {
    let mock = MockServer::start().await;
    let e = call(
        &mock,
        ResponseTemplate::new(200)
            .set_body_json(json!({"output": [message("late")]}))
            .set_delay(Duration::from_secs(3)),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn oversized_replies_are_refused() {
    let mock = MockServer::start().await;
    let big = "x".repeat(MAX_REPLY_BYTES + 10);
    let e = call(
        &mock,
        ResponseTemplate::new(200).set_body_json(json!({"output": [message(&big)]})),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AgentError::TooLarge));
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let client = crate::common::agent(
        "http://127.0.0.1:9/invocations",
        Duration::from_secs(2),
        None,
    );
    let e = client.call(&request(), None).await.unwrap_err();
    assert!(matches!(e, AgentError::Connect), "{e:?}");
}

/// Databricks Model Serving: the endpoint path, the bearer token, `return_trace`, and the
/// trace id read from `databricks_output` (which Opsight does not show as text).
#[tokio::test]
async fn databricks_kind_posts_to_the_serving_endpoint_and_reads_its_trace() {
    use app::ssr::agent::AgentKind;
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/serving-endpoints/opsight-analyst/invocations"))
        .and(header("authorization", "Bearer dapi-db"))
        .and(body_partial_json(json!({"databricks_options": {"return_trace": true}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "response", "output": [message("From Databricks.")],
            "custom_outputs": {"insight": contract()},
            "databricks_output": {"trace": {"info": {"trace_id": "tr-dbx-1", "state": "OK"}, "data": {"spans": []}}}})))
        .expect(1)
        .mount(&mock)
        .await;
    let mut p = crate::common::profile(
        AgentKind::Databricks,
        &mock.uri(),
        Duration::from_secs(2),
        Some("dapi-db"),
    );
    p.endpoint = Some("opsight-analyst".into());
    let agents = app::ssr::agent::Agents::single(p).unwrap();
    let client = agents.cards();
    let reply = client
        .call(&client.wire_body(&request(), false), None)
        .await
        .unwrap();
    assert_eq!(reply.answer.text, "From Databricks.");
    assert_eq!(reply.answer.trace_id.as_deref(), Some("tr-dbx-1"));
}

/// An OpenAI Responses-compatible server: `/v1/responses`, a `model`, no `custom_inputs`
/// (the evidence is in the system message), and an SSE stream that ends with
/// `response.completed` (no `[DONE]`), carrying usage.
#[tokio::test]
async fn openai_responses_kind_sends_the_evidence_in_messages_and_reads_its_stream() {
    use app::ssr::agent::AgentKind;
    let mock = MockServer::start().await;
    let text = format!("RoadRunner got late.\n```json\n{}\n```", contract());
    let completed = json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
        "output": [message(&text)], "usage": {"input_tokens": 1830, "output_tokens": 212, "total_tokens": 2042}}});
    let body = format!(
        "event: response.created\ndata: {}\n\nevent: response.output_text.delta\ndata: {}\n\nevent: response.completed\ndata: {completed}\n\n",
        json!({"type": "response.created", "response": {"id": "resp_1"}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "RoadRunner got late."}),
    );
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .and(body_partial_json(
            json!({"model": "gpt-test", "stream": true}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .expect(1)
        .mount(&mock)
        .await;
    let mut p = crate::common::profile(
        AgentKind::OpenaiResponses,
        &mock.uri(),
        Duration::from_secs(2),
        None,
    );
    p.llm_model = Some("gpt-test".into());
    let agents = app::ssr::agent::Agents::single(p).unwrap();
    let client = agents.cards();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reply = client
        .call(&client.wire_body(&request(), true), Some(&tx))
        .await
        .unwrap();
    assert_eq!(
        rx.recv().await.as_deref(),
        Some("RoadRunner got late."),
        "the delta was forwarded"
    );
    assert_eq!(reply.answer.source, ContractSource::TextJson);
    assert_eq!(reply.answer.usage.and_then(|u| u.output_tokens), Some(212));
    let sent: serde_json::Value =
        serde_json::from_slice(&mock.received_requests().await.unwrap()[0].body).unwrap();
    assert!(sent.get("custom_inputs").is_none());
    let system = sent["input"][0]["content"].as_str().unwrap_or_default();
    assert!(
        system.contains("Evidence pack (JSON):") && system.contains("{\"k\":1}"),
        "{system}"
    );
}

/// Feedback waits for a trace that has not landed yet: 404s are retried, then the
/// assessment's id is returned; the request is MLflow's HUMAN feedback shape.
#[tokio::test]
async fn feedback_retries_404_until_the_trace_lands() {
    use app::ssr::agent::mlflow::{log_feedback, Feedback};
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/3.0/mlflow/traces/tr-late/assessments"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error_code": "RESOURCE_DOES_NOT_EXIST"})),
        )
        .up_to_n_times(2)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/3.0/mlflow/traces/tr-late/assessments"))
        .and(body_partial_json(json!({"assessment": {"assessment_name": "user_rating",
            "source": {"source_type": "HUMAN"}, "feedback": {"value": false}, "rationale": "wrong carrier"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"assessment": {"assessment_id": "a-123", "valid": true}})))
        .expect(1)
        .mount(&mock)
        .await;
    let id = log_feedback(
        &reqwest::Client::new(),
        &mock.uri(),
        None,
        &Feedback {
            trace_id: "tr-late",
            helpful: false,
            reason: Some("wrong carrier"),
            user: "u",
            insight_id: "ins_1",
        },
    )
    .await
    .unwrap();
    assert_eq!(id, "a-123");
    assert_eq!(mock.received_requests().await.unwrap().len(), 3);
}
