//! A stub ResponsesAgent (`mlflow models serve` style) that records which card each call
//! was for, answers after a fixed latency, and fails for chosen sites. Shared by the
//! tests and the runs benchmark.
#![allow(dead_code)]

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct StubAgent {
    /// (site, metric) of every call, in arrival order.
    pub calls: Arc<Mutex<Vec<(String, String)>>>,
    /// Sites answered with HTTP 400 (not retried).
    pub fail_sites: Arc<Mutex<Vec<String>>>,
    pub latency: Duration,
}

impl StubAgent {
    pub fn with_latency(latency: Duration) -> StubAgent {
        StubAgent {
            latency,
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Serves on 127.0.0.1:<ephemeral> until the process ends; returns the base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/invocations", post(invocations))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

async fn invocations(
    State(stub): State<StubAgent>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let scope = &body["custom_inputs"]["evidence"]["scope"];
    let site = scope["site"].as_str().unwrap_or_default().to_string();
    let metric = scope["metric"].as_str().unwrap_or_default().to_string();
    stub.calls
        .lock()
        .unwrap()
        .push((site.clone(), metric.clone()));
    tokio::time::sleep(stub.latency).await;
    if stub.fail_sites.lock().unwrap().contains(&site) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_code": "BAD_REQUEST", "message": "stub refuses this site"})),
        );
    }
    let text = format!("{metric} at {site}: steady; nothing to add.");
    (
        StatusCode::OK,
        Json(
            json!({"output": [{"type": "message", "id": "m", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}]}),
        ),
    )
}
