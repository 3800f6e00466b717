//! Server functions: thin bodies that take `AppState` from the context, call a service and
//! map its error. Fixed endpoints (`/api/<name>`) keep them easy to call from tests.

use crate::dto::{
    AgentStatus, ConversationView, Dashboard, FeedbackView, InsightView, KpiDetail, LineagePage,
    RulesView, RunDetail, RunView, ScheduleInput, SchedulePreview, ScheduleView, TurnStarted,
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
    Ok(crate::ssr::rulebook::view(&state.db).await?)
}

/// Saves one rule-book edit (a new rules version) and returns the rules page afresh.
/// JSON in: the edit holds a tagged enum, which form encoding cannot carry.
#[server(endpoint = "edit_rules", input = leptos::server_fn::codec::Json)]
pub async fn edit_rules(edit: crate::domain::rulebook::RuleEdit) -> Result<RulesView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    crate::ssr::rulebook::save(&state.db, &edit, Some(&actor)).await?;
    Ok(crate::ssr::rulebook::view(&state.db).await?)
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

#[server(endpoint = "schedules")]
pub async fn list_schedules() -> Result<Vec<ScheduleView>, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::schedules::list(&state.db).await?)
}

/// Creates a schedule (`id` = None) or replaces one.
#[server(endpoint = "save_schedule")]
pub async fn save_schedule(
    id: Option<String>,
    input: ScheduleInput,
) -> Result<ScheduleView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    Ok(match id.filter(|i| !i.is_empty()) {
        Some(id) => crate::ssr::schedules::update(&state, &id, &input, &actor).await?,
        None => crate::ssr::schedules::create(&state, &input, &actor).await?,
    })
}

#[server(endpoint = "pause_schedule")]
pub async fn set_schedule_enabled(id: String, enabled: bool) -> Result<ScheduleView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    Ok(crate::ssr::schedules::set_enabled(&state, &id, enabled, &actor).await?)
}

#[server(endpoint = "delete_schedule")]
pub async fn delete_schedule(id: String) -> Result<(), AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    Ok(crate::ssr::schedules::delete(&state, &id, &actor).await?)
}

/// The next five ticks of an expression in a time zone, or why it is invalid (a verdict,
/// not an error: the editor asks on every keystroke).
#[server(endpoint = "preview_schedule")]
pub async fn preview_schedule(cron: String, timezone: String) -> Result<SchedulePreview, AppError> {
    Ok(match crate::ssr::schedules::preview(&cron, &timezone) {
        Ok(upcoming) => SchedulePreview {
            upcoming,
            error: None,
        },
        Err(e) => SchedulePreview {
            upcoming: vec![],
            error: Some(e.to_string()),
        },
    })
}

#[server(endpoint = "run_schedule")]
pub async fn run_schedule_now(id: String) -> Result<RunView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::schedules::run_now(&state, &id).await?)
}

/// Starts a run of a scope (`all`, `site`, `metric`, `flagged`) now.
#[server(endpoint = "start_run")]
pub async fn start_run(
    scope: String,
    scope_value: Option<String>,
    force: bool,
) -> Result<RunView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let scope = crate::ssr::runs::Scope::parse(&scope, scope_value.as_deref())?;
    Ok(crate::ssr::runs::start(&state, "manual", &scope, force).await?)
}

/// Runs, latest first; `active` only those running or finished in the last 10 seconds
/// (the dashboard's progress bars).
#[server(endpoint = "runs")]
pub async fn list_runs(active: bool) -> Result<Vec<RunView>, AppError> {
    let state = crate::ssr::state::from_context()?;
    let runs = crate::ssr::runs::runs(
        &state.db,
        if active { 10 } else { 200 },
        active.then_some(10),
    )
    .await
    .map_err(crate::ssr::ServiceError::from)?;
    Ok(runs)
}

#[server(endpoint = "run_detail")]
pub async fn get_run(id: String) -> Result<RunDetail, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::runs::detail(&state.db, &id).await?)
}

/// Acknowledge, assign (with `assignee`), mark done, or dismiss (with `reason`) next action
/// `position` of an insight.
#[server(endpoint = "update_action")]
pub async fn update_action(
    insight_id: String,
    position: i64,
    state: String,
    assignee: Option<String>,
    reason: Option<String>,
) -> Result<crate::domain::actions::ActionView, AppError> {
    let app = crate::ssr::state::from_context()?;
    Ok(crate::ssr::actions::update(
        &app,
        &insight_id,
        position,
        &state,
        assignee.as_deref(),
        reason.as_deref(),
    )
    .await?)
}

/// The notifications page: channels (names and kinds only) and recent digests and alerts.
#[server(endpoint = "notifications")]
pub async fn get_notifications() -> Result<crate::dto::NotificationsView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::notify::page(&state).await?)
}

/// Builds the digest now and queues it to every digest channel; returns its id.
#[server(endpoint = "send_digest")]
pub async fn send_digest() -> Result<String, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::digests::send(&state).await?)
}

/// Observes every card's trigger state now; returns how many alerts were queued.
#[server(endpoint = "check_alerts")]
pub async fn check_alerts() -> Result<usize, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::ssr::alerts::evaluate(&state).await?.len())
}

/// The admin page: users, API tokens (never their secrets) and the latest audit entries.
#[server(endpoint = "admin")]
pub async fn get_admin() -> Result<crate::dto::AdminView, AppError> {
    let state = crate::ssr::state::from_context()?;
    Ok(crate::dto::AdminView {
        users: crate::ssr::accounts::list_users(&state.db).await?,
        tokens: crate::ssr::accounts::list_tokens(&state.db).await?,
        audit: crate::ssr::audit::list(&state.db, None, 100).await?,
    })
}

/// Adds a user with a password.
#[server(endpoint = "create_user", input = leptos::server_fn::codec::Json)]
pub async fn create_user(
    username: String,
    password: String,
    role: crate::domain::access::Role,
) -> Result<crate::dto::UserView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    Ok(crate::ssr::accounts::add_user(&state.db, &username, Some(&password), role, &actor).await?)
}

/// Changes a user's role or enables/disables the account.
#[server(endpoint = "update_user", input = leptos::server_fn::codec::Json)]
pub async fn update_user(
    username: String,
    role: Option<crate::domain::access::Role>,
    disabled: Option<bool>,
) -> Result<crate::dto::UserView, AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    let change = crate::ssr::accounts::UserChange {
        role,
        disabled,
        password: None,
    };
    Ok(crate::ssr::accounts::update_user(&state.db, &username, &change, &actor).await?)
}

/// Creates an API token; its secret is in this answer and nowhere else, ever.
#[server(endpoint = "create_token", input = leptos::server_fn::codec::Json)]
pub async fn create_token(
    name: String,
    role: crate::domain::access::Role,
) -> Result<crate::dto::TokenCreated, AppError> {
    let state = crate::ssr::state::from_context()?;
    let me = crate::ssr::accounts::current()
        .ok_or_else(|| AppError::Unauthorized("sign in first".into()))?;
    Ok(crate::ssr::accounts::create_token(&state.db, &name, role, &me.actor(), me.role).await?)
}

#[server(endpoint = "revoke_token")]
pub async fn revoke_token(id: String) -> Result<(), AppError> {
    let state = crate::ssr::state::from_context()?;
    let actor = crate::ssr::accounts::actor();
    Ok(crate::ssr::accounts::revoke_token(&state.db, &id, &actor).await?)
}
