//! One operation, two transports: the browser's server function (`POST /api/<name>`) and
//! the JSON API route call the same service with the same typed input, so the same domain
//! error comes back with the same HTTP status and the same message through both.

use crate::common::spawn_app;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The status and message of an error through a server function: the body is the
/// serialised `AppError` (`{"NotFound": "…"}`).
async fn server_fn(app: &crate::common::TestApp, name: &str, body: Value) -> (StatusCode, String) {
    let r = app.post_json(&format!("/api/{name}"), &body).await;
    let status = r.status();
    let error: Value = r.json().await.unwrap();
    let message = error
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (status, message)
}

/// The status and message of an error through the JSON API (`{"error": "…"}`).
async fn rest(app: &crate::common::TestApp, path: &str, body: Value) -> (StatusCode, String) {
    let r = app.post_json(path, &body).await;
    let status = r.status();
    let error: Value = r.json().await.unwrap();
    (
        status,
        error["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn the_same_domain_error_has_the_same_status_through_both_transports() {
    let app = spawn_app(1_500, None).await;
    let stale = json!({"op": "update", "expected_version": 0,
        "item": {"type": "rule", "key": "at_risk_band_pp", "kind": "threshold", "metric": null,
                 "value": 3.0, "description": "band", "enabled": true}});
    let cases = [
        // An unknown metric: 404.
        (
            ("refresh_insight", json!({"site": "DAL", "metric": "speed"})),
            (
                "/api/v1/insights/refresh",
                json!({"site": "DAL", "metric": "speed"}),
            ),
            StatusCode::NOT_FOUND,
            "unknown metric 'speed'",
        ),
        // An unknown site: 404 (it was 400 in schedules and 404 in runs before).
        (
            ("start_run", json!({"scope": "site", "scope_value": "XXX"})),
            (
                "/api/v1/runs",
                json!({"scope": "site", "scope_value": "XXX"}),
            ),
            StatusCode::NOT_FOUND,
            "no site 'XXX'",
        ),
        (
            (
                "create_schedule",
                json!({"input": {"name": "x", "cron": "0 6 * * *", "timezone": "UTC", "scope": "site", "scope_value": "XXX"}}),
            ),
            (
                "/api/v1/schedules",
                json!({"name": "x", "cron": "0 6 * * *", "timezone": "UTC", "scope": "site", "scope_value": "XXX"}),
            ),
            StatusCode::NOT_FOUND,
            "no site 'XXX'",
        ),
        // The rules moved on since the editor read them: 409.
        (
            ("edit_rules", json!({"edit": stale})),
            ("/api/v1/rules/edits", stale.clone()),
            StatusCode::CONFLICT,
            "version",
        ),
        // Bad input: 400.
        (
            (
                "ask_question",
                json!({"site": "DAL", "metric": "otif", "question": "  "}),
            ),
            (
                "/api/v1/conversations",
                json!({"site": "DAL", "metric": "otif", "question": "  "}),
            ),
            StatusCode::BAD_REQUEST,
            "ask a question",
        ),
    ];
    for ((name, fn_body), (path, rest_body), status, says) in cases {
        let through_fn = server_fn(&app, name, fn_body).await;
        let through_rest = rest(&app, path, rest_body).await;
        assert_eq!(through_fn.0, status, "{name}: {through_fn:?}");
        assert_eq!(through_rest, through_fn, "{path} and {name} differ");
        assert!(through_fn.1.contains(says), "{name}: {through_fn:?}");
    }
    // And a success is a success through both (the server function's status stays 200).
    let r = app
        .post_json(
            "/api/preview_schedule",
            &json!({"cron": "0 6 * * *", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post_json(
            "/api/v1/schedules/preview",
            &json!({"cron": "0 6 * * *", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}
