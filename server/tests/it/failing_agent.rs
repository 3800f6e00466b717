//! A failing agent leaves the last good insight on screen, marked stale, and the page still
//! renders; the agent's error body never reaches the user.

use crate::common::spawn_app;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_insight_and_marks_it_stale() {
    let mock = MockServer::start().await;
    let good = json!({"object": "response",
        "output": [{"type": "message", "id": "m1", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Carrier trouble.", "annotations": []}]}],
        "custom_outputs": {"insight": {"headline": "RoadRunner late at Dallas", "root_causes": [], "next_actions": [], "confidence": 0.7}}});
    Mock::given(method("POST"))
        .and(path("/invocations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(good))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    // Then the agent crashes the way `mlflow models serve` reports it: 400 + stack_trace
    // echoing the request.
    Mock::given(method("POST"))
        .and(path("/invocations"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error_code": "BAD_REQUEST",
            "message": "Encountered an unexpected error while evaluating the model. Failed to predict data '{\"input\": SECRET-KPI-ECHO}'",
            "stack_trace": "Traceback (most recent call last):\n  File \"/srv/agent.py\", line 3\nRuntimeError: model crashed"})))
        .mount(&mock)
        .await;
    let app = spawn_app(10_000, Some(&format!("{}/invocations", mock.uri()))).await;

    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let good_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 502);
    let err = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(
        !err.contains("SECRET-KPI-ECHO") && !err.contains("/srv/agent.py"),
        "raw agent body leaked: {err}"
    );

    let card = app.card("DAL", app::domain::kpi::Metric::OTIF).await;
    assert_eq!(
        card.insight.as_ref().unwrap().id,
        good_id,
        "last good insight stays"
    );
    let stale = card.stale.expect("marked stale");
    assert!(stale.contains("last refresh failed"), "{stale}");
    assert!(card.error.is_some());

    let html = app.get("/").await.text().await.unwrap();
    assert!(html.contains("RoadRunner late at Dallas"));
    assert!(html.contains("Stale: "));
    assert!(!html.contains("SECRET-KPI-ECHO"));
}

#[tokio::test]
async fn unreachable_agent_on_a_card_without_history_shows_an_error_state() {
    // Nothing listens on this port: connect error.
    let app = spawn_app(5_000, Some("http://127.0.0.1:9/invocations")).await;
    let r = app.refresh("ATL", "otif").await;
    assert_eq!(r.status(), 502);
    let card = app.card("ATL", app::domain::kpi::Metric::OTIF).await;
    assert!(card.insight.is_none());
    assert_eq!(
        card.error.as_deref(),
        Some("the agent could not be reached")
    );
    let html = app.get("/").await.text().await.unwrap();
    assert!(html.contains("No insight yet: the agent could not be reached"));
}
