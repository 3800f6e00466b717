//! Server functions: thin bodies that take `AppState` from the context, call a service and
//! map its error. Fixed endpoints (`/api/<name>`) keep them easy to call from tests.

use crate::dto::{
    AgentStatus, ConversationView, Dashboard, FeedbackView, InsightView, KpiDetail, LineagePage,
    RulesView, TurnStarted,
};
use crate::error::AppError;
use leptos::prelude::*;

#[server(endpoint = "dashboard")]
pub async fn get_dashboard() -> Result<Dashboard, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::kpis::dashboard(&state).await?)
}

#[server(endpoint = "kpi_detail")]
pub async fn get_kpi_detail(site: String, metric: String) -> Result<KpiDetail, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::kpis::detail(&state, &site, &metric).await?)
}

/// Refreshes one card now; `question` is optional ("why is this down?").
#[server(endpoint = "refresh_insight")]
pub async fn refresh_insight(
    site: String,
    metric: String,
    question: Option<String>,
) -> Result<InsightView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::insights::refresh(&state, &site, &metric, question.as_deref()).await?)
}

#[server(endpoint = "rules")]
pub async fn get_rules() -> Result<RulesView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let rules = crate::ssr::db::rules(&state.db)
        .await
        .map_err(crate::ssr::ServiceError::from)?;
    let metrics = crate::ssr::db::metric_definitions(&state.db)
        .await
        .map_err(crate::ssr::ServiceError::from)?;
    Ok(RulesView { rules, metrics })
}

/// Starts a "why is this down?" conversation; the answer streams from
/// `/api/v1/turns/{turn_id}/events`.
#[server(endpoint = "ask_question")]
pub async fn ask_question(
    site: String,
    metric: String,
    question: String,
) -> Result<TurnStarted, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::conversations::start(&state, &site, &metric, &question).await?)
}

#[server(endpoint = "ask_follow_up")]
pub async fn ask_follow_up(
    conversation_id: String,
    question: String,
) -> Result<TurnStarted, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::conversations::follow_up(&state, &conversation_id, &question).await?)
}

#[server(endpoint = "conversation")]
pub async fn get_conversation(id: String) -> Result<ConversationView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::conversations::get(&state, &id).await?)
}

#[server(endpoint = "lineage")]
pub async fn get_lineage(id: String) -> Result<LineagePage, AppError> {
    use crate::ssr::{db, ServiceError};
    let state = crate::ssr::state::from_context()?;
    let lineage = db::lineage(&state.db, &id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| AppError::NotFound("no lineage for this insight".into()))?;
    let insight = db::insight(&state.db, &id)
        .await
        .map_err(ServiceError::from)?;
    let feedback = db::feedback_for(&state.db, &id)
        .await
        .map_err(ServiceError::from)?;
    Ok(LineagePage {
        lineage,
        insight,
        feedback,
    })
}

/// Thumbs up (`helpful`) or down on an insight, with an optional reason.
#[server(endpoint = "feedback")]
pub async fn give_feedback(
    insight_id: String,
    helpful: bool,
    reason: Option<String>,
) -> Result<FeedbackView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::feedback::give(&state, &insight_id, helpful, reason.as_deref()).await?)
}

/// The configured agents; `check` runs health checks first.
#[server(endpoint = "agents")]
pub async fn get_agents(check: bool) -> Result<Vec<AgentStatus>, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::settings::agents(&state, check).await)
}
