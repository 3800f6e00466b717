//! Thumbs up/down on an insight. Stored always; when the insight has a trace id and its
//! agent a tracking server, also sent to MLflow as a HUMAN assessment in the background
//! (retrying 404s while the trace lands), and the row records how that went.

use super::agent::mlflow::{self, Feedback};
use super::agent::AgentKind;
use super::db;
use super::insights::{new_id, timestamp};
use super::state::AppState;
use super::ServiceError;
use crate::dto::FeedbackView;

/// Reasons are capped at this many characters.
pub const MAX_REASON: usize = 1000;

/// Who gave feedback, until users sign in (issue 6).
pub const ANONYMOUS_USER: &str = "dashboard-user";

pub async fn give(
    state: &AppState,
    insight_id: &str,
    helpful: bool,
    reason: Option<&str>,
) -> Result<FeedbackView, ServiceError> {
    let insight = db::insight(&state.db, insight_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no such insight".into()))?;
    if insight.status != "ok" {
        return Err(ServiceError::BadRequest(
            "feedback is for insights, not for failed refreshes".into(),
        ));
    }
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_REASON).collect::<String>());
    let agent = state.agents.get(&insight.agent).cloned();
    let tracking = agent
        .as_ref()
        .and_then(|a| a.profile().tracking_uri.clone());
    let send_to = match (&insight.trace_id, tracking) {
        (Some(trace), Some(tracking)) => Some((trace.clone(), tracking)),
        _ => None,
    };
    let now = chrono::Utc::now();
    let view = FeedbackView {
        id: new_id(now, "fb"),
        insight_id: insight_id.to_string(),
        helpful,
        reason,
        created_at: timestamp(now),
        mlflow_state: if send_to.is_some() {
            "pending"
        } else {
            "not_applicable"
        }
        .into(),
        assessment_id: None,
    };
    db::insert_feedback(&state.db, &view, ANONYMOUS_USER).await?;
    if let (Some((trace_id, tracking)), Some(agent)) = (send_to, agent) {
        let db = state.db.clone();
        let view = view.clone();
        tokio::spawn(async move {
            let token = (agent.kind() == AgentKind::Databricks)
                .then(|| agent.profile().token.clone())
                .flatten();
            let result = mlflow::log_feedback(
                agent.http(),
                &tracking,
                token.as_ref(),
                &Feedback {
                    trace_id: &trace_id,
                    helpful: view.helpful,
                    reason: view.reason.as_deref(),
                    user: ANONYMOUS_USER,
                    insight_id: &view.insight_id,
                },
            )
            .await;
            let stored = match &result {
                Ok(assessment) => {
                    tracing::info!(feedback = %view.id, assessment = %assessment, "feedback logged to MLflow");
                    db::set_feedback_mlflow(&db, &view.id, "sent", Some(assessment), None).await
                }
                Err(e) => {
                    tracing::warn!(feedback = %view.id, error = %e, "feedback not logged to MLflow");
                    db::set_feedback_mlflow(&db, &view.id, "failed", None, Some(&e.to_string()))
                        .await
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = ?e, "could not record the MLflow outcome of feedback");
            }
        });
    }
    Ok(view)
}

pub async fn of_insight(
    state: &AppState,
    insight_id: &str,
) -> Result<Vec<FeedbackView>, ServiceError> {
    Ok(db::feedback_for(&state.db, insight_id).await?)
}
