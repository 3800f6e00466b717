//! Server functions: thin bodies that take `AppState` from the context, call a service and
//! map its error. Fixed endpoints (`/api/<name>`) keep them easy to call from tests.

use crate::dto::{Dashboard, InsightView, KpiDetail, RulesView};
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
