//! `POST /agent/invocations`: the built-in analyst over the ResponsesAgent protocol. JSON by
//! default, SSE when the request says `"stream": true`; errors in the `mlflow models serve`
//! shape (`error_code`, `message`).

use app::ssr::agent::analyst::answer;
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_code": "BAD_REQUEST", "message": message})),
    )
        .into_response()
}

pub async fn invocations(body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad_request("the request must be a JSON object".into()),
        Err(e) => {
            return bad_request(format!(
                "Invalid input. Ensure that input is a valid JSON formatted string. Error: {e}"
            ))
        }
    };
    match answer(&request) {
        Ok(reply) if reply.stream => (
            [
                (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            reply.sse_body(),
        )
            .into_response(),
        Ok(reply) => Json(reply.response).into_response(),
        Err(e) => bad_request(e.0),
    }
}
