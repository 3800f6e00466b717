//! `GET /healthz`: the process is up and the database answers (liveness).
//! `GET /readyz`: ready for traffic: the database answers and every migration this build
//! expects is applied (readiness; a load balancer sends nothing to a replica until then).
//! `GET /metrics`: Prometheus text format (see `app::ssr::ops::metrics_text`).

use app::ssr::error::chain;
use app::ssr::ops;
use app::ssr::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match ops::live(state.db()).await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %chain(&e), "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
    }
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match ops::pending_migrations(state.db()).await {
        Ok(pending) if pending.is_empty() => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok", "migrations": "applied"})),
        ),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "database": "ok", "pending_migrations": pending})),
        ),
        Err(e) => {
            tracing::error!(error = %chain(&e), "readiness check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not ready", "database": "unreachable"})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops::metrics_text(state.db(), state.agents()).await,
    )
}
