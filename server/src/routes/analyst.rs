//! `POST /agent/invocations`: the built-in analyst over the ResponsesAgent protocol. JSON by
//! default, SSE when the request says `"stream": true` (each line of the answer is sent as
//! it is composed); errors in the `mlflow models serve` shape (`error_code`, `message`).

use app::ssr::agent::analyst::{answer, sse_delta, AnalystReply, BadRequest};
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_code": "BAD_REQUEST", "message": message})),
    )
        .into_response()
}

/// What the composing task hands the response: text as it is written, then the reply.
enum Piece {
    Text(String),
    Done(Result<AnalystReply, BadRequest>),
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
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream {
        return match answer(&request, &mut |_| {}) {
            Ok(reply) => Json(reply.response).into_response(),
            Err(e) => bad_request(e.0),
        };
    }
    // Composing is CPU work: it runs on the blocking pool and sends each line as written.
    let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
    tokio::task::spawn_blocking(move || {
        let text = tx.clone();
        let reply = answer(&request, &mut |piece| {
            let _ = text.send(Piece::Text(piece.to_string()));
        });
        let _ = tx.send(Piece::Done(reply));
    });
    // A request the analyst refuses fails before any text: answer it with a 400.
    let first = match rx.recv().await {
        Some(Piece::Done(Err(e))) => return bad_request(e.0),
        Some(p) => p,
        None => return (StatusCode::INTERNAL_SERVER_ERROR, "the analyst stopped").into_response(),
    };
    let events = futures::stream::unfold((Some(first), rx), |(next, mut rx)| async move {
        let piece = match next {
            Some(p) => p,
            None => rx.recv().await?,
        };
        let event = match piece {
            Piece::Text(t) => sse_delta(&t),
            Piece::Done(Ok(reply)) => reply.sse_end(),
            Piece::Done(Err(e)) => {
                format!(
                    "data: {}\n\n",
                    json!({"type": "error", "error": {"message": e.0}})
                )
            }
        };
        Some((Ok::<_, std::convert::Infallible>(event), (None, rx)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}
