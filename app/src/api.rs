//! Server functions: the browser's transport. Each is one line: take the state from the
//! context, call the operation's service with its typed input, and [`respond`] (the one
//! error mapping, shared with the JSON API). Fixed endpoints (`/api/<name>`) keep them easy
//! to call from tests; inputs travel as JSON, with the typed input's fields at the top
//! level (`#[server(flatten)]`).
//!
//! The access policy of every endpoint is in the server's operation table
//! (`server/src/routes/operations.rs`), next to the same operation's JSON API route.
//!
//! [`respond`]: crate::ssr::context::respond

use crate::domain::actions::ActionView;
use crate::domain::rulebook::RuleEdit;
use crate::dto::*;
use crate::error::AppError;
use leptos::prelude::*;
use leptos::server_fn::codec::Json;

#[cfg(feature = "ssr")]
use crate::ssr::context::{actor, reach, respond, signed_in, state};

#[server(endpoint = "dashboard", input = Json)]
pub async fn get_dashboard(#[server(flatten)] q: DashboardQuery) -> Result<Dashboard, AppError> {
    respond(state()?.cards().dashboard(q, &reach()).await)
}

#[server(endpoint = "kpi_detail", input = Json)]
pub async fn get_kpi_detail(#[server(flatten)] q: KpiQuery) -> Result<KpiDetail, AppError> {
    respond(state()?.cards().kpi_detail(q, &reach()).await)
}

/// Refreshes one card now; `question` is optional ("why is this down?").
#[server(endpoint = "refresh_insight", input = Json)]
pub async fn refresh_insight(
    #[server(flatten)] input: RefreshRequest,
) -> Result<InsightView, AppError> {
    respond(state()?.cards().refresh(input, &reach()).await)
}

#[server(endpoint = "rules")]
pub async fn get_rules() -> Result<RulesView, AppError> {
    respond(state()?.rules().view().await)
}

/// Saves one rule-book edit (a new rules version); returns the change and the rules page
/// afresh.
#[server(endpoint = "edit_rules", input = Json)]
pub async fn edit_rules(edit: RuleEdit) -> Result<RuleEdited, AppError> {
    respond(state()?.rules().edit(edit, &actor()).await)
}

/// Starts a "why is this down?" conversation; the answer streams from
/// `/api/v1/turns/{turn_id}/events`.
#[server(endpoint = "ask_question", input = Json)]
pub async fn ask_question(
    #[server(flatten)] input: StartConversation,
) -> Result<TurnStarted, AppError> {
    respond(
        state()?
            .cards()
            .start_conversation(input, &actor(), &reach())
            .await,
    )
}

#[server(endpoint = "ask_follow_up", input = Json)]
pub async fn ask_follow_up(
    conversation_id: String,
    #[server(flatten)] input: FollowUp,
) -> Result<TurnStarted, AppError> {
    respond(
        state()?
            .cards()
            .follow_up(&conversation_id, input, &actor(), &reach())
            .await,
    )
}

#[server(endpoint = "conversation", input = Json)]
pub async fn get_conversation(id: String) -> Result<ConversationView, AppError> {
    respond(state()?.cards().conversation(&id, &reach()).await)
}

#[server(endpoint = "lineage", input = Json)]
pub async fn get_lineage(id: String) -> Result<LineagePage, AppError> {
    respond(state()?.cards().lineage(&id, &reach()).await)
}

/// Thumbs up (`helpful`) or down on an insight, with an optional reason.
#[server(endpoint = "feedback", input = Json)]
pub async fn give_feedback(
    insight_id: String,
    #[server(flatten)] input: FeedbackInput,
) -> Result<FeedbackView, AppError> {
    respond(
        state()?
            .cards()
            .give_feedback(&insight_id, input, &actor(), &reach())
            .await,
    )
}

/// The configured agents; `check` runs health checks first.
#[server(endpoint = "agents", input = Json)]
pub async fn get_agents(#[server(flatten)] q: AgentsQuery) -> Result<Vec<AgentStatus>, AppError> {
    Ok(crate::ssr::ops::agents(state()?.agents(), q).await)
}

#[server(endpoint = "schedules")]
pub async fn list_schedules() -> Result<Vec<ScheduleView>, AppError> {
    respond(state()?.schedules().list().await)
}

#[server(endpoint = "create_schedule", input = Json)]
pub async fn create_schedule(input: ScheduleInput) -> Result<ScheduleView, AppError> {
    respond(state()?.schedules().create(input, &actor()).await)
}

/// Replaces a schedule's settings.
#[server(endpoint = "update_schedule", input = Json)]
pub async fn update_schedule(id: String, input: ScheduleInput) -> Result<ScheduleView, AppError> {
    respond(state()?.schedules().update(&id, input, &actor()).await)
}

/// Pauses (`enabled` false) or resumes a schedule.
#[server(endpoint = "pause_schedule", input = Json)]
pub async fn set_schedule_enabled(
    id: String,
    #[server(flatten)] input: ScheduleSwitch,
) -> Result<ScheduleView, AppError> {
    respond(
        state()?
            .schedules()
            .set_enabled(&id, input.enabled, &actor())
            .await,
    )
}

#[server(endpoint = "delete_schedule", input = Json)]
pub async fn delete_schedule(id: String) -> Result<(), AppError> {
    respond(state()?.schedules().delete(&id, &actor()).await)
}

/// The next five ticks of an expression in a time zone, or why it is invalid (a verdict,
/// not an error: the editor asks on every keystroke).
#[server(endpoint = "preview_schedule", input = Json)]
pub async fn preview_schedule(
    #[server(flatten)] input: PreviewRequest,
) -> Result<SchedulePreview, AppError> {
    Ok(crate::ssr::runs::schedules::preview(
        &input.cron,
        &input.timezone,
    ))
}

/// The data sources and where their syncs stand.
#[server(endpoint = "sources", input = Json)]
pub async fn get_sources() -> Result<Vec<SourceView>, AppError> {
    respond(state()?.sources().list().await)
}

/// Syncs a data source now, in the background (the sync as it starts).
#[server(endpoint = "sync_source", input = Json)]
pub async fn sync_source(name: String) -> Result<SyncView, AppError> {
    use crate::domain::status::SyncTrigger;
    respond(
        state()?
            .sources()
            .sync(&name, SyncTrigger::Manual, Some(&actor()), false)
            .await,
    )
}

#[server(endpoint = "run_schedule", input = Json)]
pub async fn run_schedule_now(id: String) -> Result<RunView, AppError> {
    respond(state()?.schedules().run_now(&id).await)
}

/// Starts a run of a scope (`all`, `site`, `metric`, `flagged`) now.
#[server(endpoint = "start_run", input = Json)]
pub async fn start_run(#[server(flatten)] input: RunRequest) -> Result<RunView, AppError> {
    use crate::domain::status::RunOrigin;
    respond(
        state()?
            .runs()
            .start(input, RunOrigin::Manual, &reach())
            .await,
    )
}

/// Runs, latest first; `active` only those running or finished in the last 10 seconds
/// (the dashboard's progress bars).
#[server(endpoint = "runs", input = Json)]
pub async fn list_runs(#[server(flatten)] q: RunsQuery) -> Result<Vec<RunView>, AppError> {
    respond(state()?.runs().list(q, &reach()).await)
}

#[server(endpoint = "run_detail", input = Json)]
pub async fn get_run(id: String) -> Result<RunDetail, AppError> {
    respond(state()?.runs().detail(&id, &reach()).await)
}

/// Acknowledge, assign (with `assignee`), mark done, or dismiss (with `reason`) next action
/// `position` of an insight.
#[server(endpoint = "update_action", input = Json)]
pub async fn update_action(
    insight_id: String,
    position: i64,
    #[server(flatten)] change: ActionChange,
) -> Result<ActionView, AppError> {
    respond(
        state()?
            .cards()
            .update_action(&insight_id, position, change, &reach())
            .await,
    )
}

/// Channels (names and kinds only) and recent digests and alerts.
#[server(endpoint = "notifications", input = Json)]
pub async fn get_notifications(
    #[server(flatten)] q: NotificationsQuery,
) -> Result<NotificationsView, AppError> {
    respond(state()?.notify().notifications(q).await)
}

/// Builds the digest of a period now and queues it to every digest channel.
#[server(endpoint = "send_digest", input = Json)]
pub async fn send_digest(
    #[server(flatten)] request: DigestRequest,
) -> Result<DigestQueued, AppError> {
    respond(state()?.notify().send_digest(request).await)
}

/// Observes every card's trigger state now; returns the alerts queued.
#[server(endpoint = "check_alerts")]
pub async fn check_alerts() -> Result<AlertsChecked, AppError> {
    respond(state()?.notify().check_alerts().await)
}

/// The admin page: users, API tokens (never their secrets) and the latest audit entries.
#[server(endpoint = "admin")]
pub async fn get_admin() -> Result<AdminView, AppError> {
    let accounts = state()?.accounts().clone();
    respond(
        async {
            Ok(AdminView {
                users: accounts.users().await?,
                tokens: accounts.tokens().await?,
                audit: accounts.audit(AuditQuery::default()).await?,
            })
        }
        .await,
    )
}

#[server(endpoint = "create_user", input = Json)]
pub async fn create_user(#[server(flatten)] input: NewUser) -> Result<UserView, AppError> {
    respond(state()?.accounts().add_user(input, &actor()).await)
}

/// Changes a user's role, password or enabled state.
#[server(endpoint = "update_user", input = Json)]
pub async fn update_user(
    username: String,
    #[server(flatten)] change: UserChange,
) -> Result<UserView, AppError> {
    respond(
        state()?
            .accounts()
            .update_user(&username, change, &actor())
            .await,
    )
}

/// Creates an API token; its secret is in this answer and nowhere else, ever.
#[server(endpoint = "create_token", input = Json)]
pub async fn create_token(#[server(flatten)] input: NewToken) -> Result<TokenCreated, AppError> {
    let me = signed_in()?;
    respond(state()?.accounts().create_token(input, &me).await)
}

#[server(endpoint = "revoke_token", input = Json)]
pub async fn revoke_token(id: String) -> Result<(), AppError> {
    respond(state()?.accounts().revoke_token(&id, &actor()).await)
}
