//! `/api/v1`: the JSON API for other apps and for tests.
//!
//! - `GET  /api/v1/dashboard`: all sites × KPIs for the latest complete week, with each
//!   card's latest insight.
//! - `GET  /api/v1/insights?site=&metric=&limit=`: insight attempts, latest first.
//! - `POST /api/v1/insights/refresh` `{site, metric, question?}`: runs the agent now and
//!   returns the new insight (502 with a safe message when the agent fails).
//!
//! Errors are JSON `{"error": "..."}`; unknown sites or metrics are 404.

use app::domain::evidence::NETWORK;
use app::dto::{Dashboard, InsightView};
use app::ssr::state::AppState;
use app::ssr::{db, evidence, insights, kpis, ServiceError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/insights", get(list_insights))
        .route("/insights/refresh", post(refresh))
}

/// The API's error: a status and a safe message. Internal causes are logged once here.
pub struct ApiError(StatusCode, String);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ServiceError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            e @ ServiceError::Agent(_) => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
            ServiceError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; it has been logged".into(),
                )
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ServiceError::Internal(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

async fn dashboard(State(state): State<AppState>) -> Result<Json<Dashboard>, ApiError> {
    Ok(Json(kpis::dashboard(&state).await?))
}

#[derive(Deserialize)]
struct InsightQuery {
    site: Option<String>,
    metric: Option<String>,
    limit: Option<i64>,
}

async fn list_insights(
    State(state): State<AppState>,
    query: Result<Query<InsightQuery>, QueryRejection>,
) -> Result<Json<Vec<InsightView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let site = q.site.filter(|s| !s.is_empty());
    if let Some(site) = &site {
        if site != NETWORK {
            evidence::site_name(&state.db, site).await?;
        }
    }
    let metric = match q.metric.filter(|m| !m.is_empty()) {
        Some(m) => Some(evidence::parse_metric(&m)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(
        db::insights(&state.db, site.as_deref(), metric, limit).await?,
    ))
}

#[derive(Deserialize)]
struct RefreshBody {
    site: String,
    metric: String,
    question: Option<String>,
}

async fn refresh(
    State(state): State<AppState>,
    body: Result<Json<RefreshBody>, JsonRejection>,
) -> Result<Json<InsightView>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "expected JSON {{site, metric, question?}}: {}",
                e.body_text()
            ),
        )
    })?;
    if body
        .question
        .as_ref()
        .is_some_and(|q| q.chars().count() > 2000)
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "question is longer than 2000 characters".into(),
        ));
    }
    Ok(Json(
        insights::refresh(&state, &body.site, &body.metric, body.question.as_deref()).await?,
    ))
}
