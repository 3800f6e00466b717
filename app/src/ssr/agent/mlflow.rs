//! MLflow's REST API, the two calls Opsight makes: resolve a registered model's alias to a
//! version (the workspace registry, or Unity Catalog for `catalog.schema.model` names),
//! and log a user's feedback on a trace as a HUMAN assessment.

use super::Secret;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Traces land in the store up to ~5 s after the reply (MLflow's batch interval), so a 404
/// on feedback is retried this long.
pub const FEEDBACK_404_PATIENCE: Duration = Duration::from_secs(12);

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("MLflow could not be reached")]
    Connect,
    #[error("MLflow answered HTTP {status}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status { status: u16, code: Option<String> },
    #[error("MLflow's reply has no {0}")]
    Shape(&'static str),
}

fn base(tracking: &str) -> &str {
    tracking.trim_end_matches('/')
}

async fn send(request: reqwest::RequestBuilder) -> Result<Value, MlflowError> {
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| MlflowError::Connect)?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let code = body
            .get("error_code")
            .and_then(Value::as_str)
            .map(|c| c.chars().take(40).collect());
        return Err(MlflowError::Status { status, code });
    }
    Ok(body)
}

fn authed(request: reqwest::RequestBuilder, token: Option<&Secret>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => request.bearer_auth(t.expose()),
        None => request,
    }
}

/// Whether a model name is a Unity Catalog one: `catalog.schema.model`.
pub fn is_unity_catalog(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.trim().is_empty())
}

fn version_of(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_string)
        .or_else(|| v.as_i64().map(|n| n.to_string()))
}

/// `models:/NAME@ALIAS` → the version the alias points at now. A Unity Catalog name
/// (`catalog.schema.model@alias`) is resolved through Unity Catalog's API
/// (`GET /api/2.1/unity-catalog/models/{full_name}/aliases/{alias}`), any other through the
/// workspace registry (`GET /api/2.0/mlflow/registered-models/alias`).
pub async fn resolve_alias(
    http: &reqwest::Client,
    tracking: &str,
    token: Option<&Secret>,
    name: &str,
    alias: &str,
) -> Result<String, MlflowError> {
    if is_unity_catalog(name) {
        // Path segments are percent-encoded by the URL type, whatever the names hold.
        let mut url = reqwest::Url::parse(base(tracking)).map_err(|_| MlflowError::Connect)?;
        url.path_segments_mut()
            .map_err(|_| MlflowError::Connect)?
            .pop_if_empty()
            .extend([
                "api",
                "2.1",
                "unity-catalog",
                "models",
                name,
                "aliases",
                alias,
            ]);
        let body = send(authed(http.get(url), token)).await?;
        return body
            .get("version")
            .and_then(version_of)
            .ok_or(MlflowError::Shape("version"));
    }
    let url = format!("{}/api/2.0/mlflow/registered-models/alias", base(tracking));
    let body = send(authed(
        http.get(url).query(&[("name", name), ("alias", alias)]),
        token,
    ))
    .await?;
    body.pointer("/model_version/version")
        .and_then(version_of)
        .ok_or(MlflowError::Shape("model_version.version"))
}

/// A user's rating of an insight, as MLflow stores it.
pub struct Feedback<'a> {
    pub trace_id: &'a str,
    /// `true` = thumbs up.
    pub helpful: bool,
    pub reason: Option<&'a str>,
    /// Who gave it (`source.source_id`).
    pub user: &'a str,
    pub insight_id: &'a str,
}

/// Logs feedback as a HUMAN assessment named `user_rating` and returns its id. 404s (the
/// trace not written yet) are retried for [`FEEDBACK_404_PATIENCE`].
pub async fn log_feedback(
    http: &reqwest::Client,
    tracking: &str,
    token: Option<&Secret>,
    feedback: &Feedback<'_>,
) -> Result<String, MlflowError> {
    let url = format!(
        "{}/api/3.0/mlflow/traces/{}/assessments",
        base(tracking),
        feedback.trace_id
    );
    let mut assessment = json!({
        "assessment_name": "user_rating",
        "trace_id": feedback.trace_id,
        "source": {"source_type": "HUMAN", "source_id": feedback.user},
        "feedback": {"value": feedback.helpful},
        "metadata": {"opsight_insight_id": feedback.insight_id},
    });
    if let Some(r) = feedback.reason.filter(|r| !r.trim().is_empty()) {
        assessment["rationale"] = json!(r);
    }
    let body = json!({"assessment": assessment});
    let started = Instant::now();
    let mut wait = Duration::from_millis(250);
    loop {
        match send(authed(http.post(&url).json(&body), token)).await {
            Ok(reply) => {
                return reply
                    .pointer("/assessment/assessment_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or(MlflowError::Shape("assessment.assessment_id"))
            }
            Err(MlflowError::Status { status: 404, .. })
                if started.elapsed() + wait < FEEDBACK_404_PATIENCE =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
