//! `/api/v1`: the JSON API for other apps and for tests.
//!
//! - `GET  /api/v1/dashboard`: all sites × KPIs for the latest complete week, with each
//!   card's latest insight.
//! - `GET  /api/v1/insights?site=&metric=&limit=`: insight attempts, latest first.
//! - `POST /api/v1/insights/refresh` `{site, metric, question?}`: runs the agent now and
//!   returns the new insight (502 with a safe message when the agent fails).
//!
//! - `POST /api/v1/conversations` `{site, metric, question}`: starts a drill-down; returns
//!   `{conversation_id, turn_id}` (202) at once.
//! - `POST /api/v1/conversations/{id}/turns` `{question}`: a follow-up question.
//! - `GET  /api/v1/conversations/{id}`: the conversation and its turns.
//! - `GET  /api/v1/turns/{id}/events`: SSE, `data: {"type":"delta","text":..}` as the
//!   agent writes, then `data: {"type":"final","turn":{..}}`.
//! - `GET  /api/v1/insights/{id}/lineage`: the agent call behind an insight or turn.
//! - `GET|POST /api/v1/insights/{id}/feedback` `{helpful, reason?}`: thumbs up/down.
//! - `GET  /api/v1/agents[?check=true]`: configured agents, health, breaker, model version.
//!
//! - `GET|POST /api/v1/schedules`, `GET|PUT|DELETE /api/v1/schedules/{id}`: cron schedules
//!   (`{name, cron, timezone, scope, scope_value?, catch_up, enabled}`).
//! - `POST /api/v1/schedules/preview` `{cron, timezone}`: the next five ticks, or 400.
//! - `POST /api/v1/schedules/{id}/run`: run the schedule's scope now (202, the run).
//! - `GET  /api/v1/runs[?active=true&limit=]`: runs with counts, latest first.
//! - `POST /api/v1/runs` `{scope, scope_value?, force?}`: start a run (202).
//! - `GET  /api/v1/runs/{id}`: a run and its jobs.
//! - `GET|PUT /api/v1/unit-costs` `[{sku | category, unit_cost}]`: unit costs for money at
//!   stake (all or nothing).
//! - `POST /api/v1/insights/{id}/actions/{position}` `{state, assignee?, reason?}`: a next
//!   action acknowledged, assigned, done or dismissed (reasons go to the agent next time).
//!
//! - `GET  /api/v1/rules`: the rule book (disabled rows included), KPI definitions, sites
//!   and the latest rules versions.
//! - `POST /api/v1/rules/edits` `{op, item: {type, ..}, expected_version}`: one edit (op
//!   `create|update|delete|enable|disable`, type `rule|target|trigger|playbook`); 200 with
//!   the new version, 400 naming every problem, 409 when the rules moved on meanwhile.
//!
//! - `POST /api/v1/digests`: build the digest now and queue it to every digest channel
//!   (202, `{notification_id}`).
//! - `GET  /api/v1/digests/preview?format=slack|json|email`: the digest as of now, rendered
//!   as a channel would get it (nothing stored or sent).
//! - `POST /api/v1/alerts/check`: observe every card's trigger state now; returns the alert
//!   notifications queued (`{queued: [...]}`).
//! - `GET  /api/v1/notifications[?limit=]`: digests and alerts, newest first, with each
//!   delivery's status, attempts and last error.
//! - `GET  /api/v1/notifications/{id}/email`: a notification's HTML e-mail body.
//!
//! - `GET  /api/v1/me`: who the request is signed in as (`{name, role}`).
//! - `GET|POST /api/v1/users`, `PATCH /api/v1/users/{username}` `{role?, disabled?, password?}`
//!   (admin): accounts. `GET|POST /api/v1/tokens` `{name, role}`, `DELETE /api/v1/tokens/{id}`
//!   (admin): API tokens; the secret is in the POST's answer only. `GET /api/v1/audit
//!   [?action=rules&limit=]` (admin): the audit log.
//! - `GET  /api/v1/openapi.json`: this API's OpenAPI description.
//!
//! Every route needs a role (see `app::domain::access`); send `Authorization: Bearer
//! <token>` or a session cookie. Errors are JSON `{"error": "..."}`; unknown sites or
//! metrics are 404; 401 not signed in, 403 role too low or cross-site, 429 rate-limited.

use app::domain::evidence::NETWORK;
use app::dto::{
    AgentStatus, ConversationView, Dashboard, FeedbackView, InsightView, Lineage, TurnStarted,
};
use app::dto::{RunDetail, RunRequest, RunView, ScheduleInput, ScheduleView};
use app::ssr::accounts::{self, Principal, UserChange};
use app::ssr::runs::{self, Scope};
use app::ssr::state::AppState;
use app::ssr::{
    conversations, db, evidence, feedback, insights, kpis, schedules, settings, ServiceError,
};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
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
        .route("/insights/{id}/lineage", get(lineage))
        .route(
            "/insights/{id}/feedback",
            get(list_feedback).post(give_feedback),
        )
        .route("/conversations", post(start_conversation))
        .route("/conversations/{id}", get(conversation))
        .route("/conversations/{id}/turns", post(follow_up))
        .route("/turns/{id}/events", get(turn_events))
        .route("/agents", get(agents))
        .route("/schedules", get(list_schedules).post(create_schedule))
        .route("/schedules/preview", post(preview_schedule))
        .route(
            "/schedules/{id}",
            get(get_schedule)
                .put(update_schedule)
                .delete(delete_schedule),
        )
        .route("/schedules/{id}/run", post(run_schedule))
        .route("/runs", get(list_runs).post(start_run))
        .route("/runs/{id}", get(run_detail))
        .route("/insights/{id}/actions/{position}", post(update_action))
        .route("/unit-costs", get(list_costs).put(save_costs))
        .route("/rules", get(rules))
        .route("/rules/edits", post(edit_rules))
        .route("/digests", post(send_digest))
        .route("/digests/preview", get(preview_digest))
        .route("/alerts/check", post(check_alerts))
        .route("/notifications", get(list_notifications))
        .route("/notifications/{id}/email", get(notification_email))
        .route("/me", get(me))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{username}", axum::routing::patch(update_user))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/audit", get(audit_log))
        .route("/openapi.json", get(super::openapi::spec))
}

/// The principal the guard attached (absent only on public routes).
pub struct Who(Option<Principal>);

impl Who {
    fn actor(&self) -> String {
        self.0
            .as_ref()
            .map_or_else(|| "anonymous".into(), Principal::actor)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Who(parts.extensions.get::<Principal>().cloned()))
    }
}

/// Reads a JSON body or answers 400 saying what was expected.
fn json_body<T>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {} MiB",
                    crate::MAX_BODY_BYTES / (1024 * 1024)
                ),
            );
        }
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("expected JSON {expected}: {}", e.body_text()),
        )
    })
}

/// The API's error: a status and a safe message. Internal causes are logged once here.
pub struct ApiError(StatusCode, String);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ServiceError::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            e @ ServiceError::Agent(_) => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
            e @ ServiceError::Superseded => ApiError(StatusCode::CONFLICT, e.to_string()),
            ServiceError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
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

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct InsightQuery {
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

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct RefreshBody {
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
    // The service refuses questions over `MAX_QUESTION_CHARS`, for server functions too.
    Ok(Json(
        insights::refresh(&state, &body.site, &body.metric, body.question.as_deref()).await?,
    ))
}

async fn lineage(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Lineage>, ApiError> {
    db::lineage(&state.db, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no lineage for this id".into()))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct FeedbackBody {
    helpful: bool,
    reason: Option<String>,
}

async fn give_feedback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<FeedbackBody>, JsonRejection>,
) -> Result<(StatusCode, Json<FeedbackView>), ApiError> {
    let body = json_body(body, "{helpful: bool, reason?}")?;
    let view = feedback::give(&state, &id, body.helpful, body.reason.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_feedback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<FeedbackView>>, ApiError> {
    Ok(Json(feedback::of_insight(&state, &id).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct StartBody {
    site: String,
    metric: String,
    question: String,
}

async fn start_conversation(
    State(state): State<AppState>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TurnStarted>), ApiError> {
    let body = json_body(body, "{site, metric, question}")?;
    let started = conversations::start(&state, &body.site, &body.metric, &body.question).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct TurnBody {
    question: String,
}

async fn follow_up(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TurnBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TurnStarted>), ApiError> {
    let body = json_body(body, "{question}")?;
    let started = conversations::follow_up(&state, &id, &body.question).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    Ok(Json(conversations::get(&state, &id).await?))
}

/// The turn's events as SSE. Each event is sent as soon as it exists (no buffering
/// layer: compression is skipped for `text/event-stream`).
async fn turn_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rx = conversations::events(&state, &id).await?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let data = serde_json::to_string(&event).unwrap_or_default();
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().data(data)),
            rx,
        ))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct AgentsQuery {
    check: Option<bool>,
}

async fn agents(
    State(state): State<AppState>,
    query: Result<Query<AgentsQuery>, QueryRejection>,
) -> Result<Json<Vec<AgentStatus>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(
        settings::agents(&state, q.check.unwrap_or(false)).await,
    ))
}

async fn list_schedules(
    State(state): State<AppState>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    Ok(Json(schedules::list(&state.db).await?))
}

async fn get_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(schedules::get(&state.db, &id).await?))
}

const SCHEDULE_SHAPE: &str =
    "{name, cron, timezone, scope: all|site|metric|flagged, scope_value?, catch_up: once|skip, enabled}";

async fn create_schedule(
    State(state): State<AppState>,
    who: Who,
    body: Result<Json<ScheduleInput>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let input = json_body(body, SCHEDULE_SHAPE)?;
    Ok((
        StatusCode::CREATED,
        Json(schedules::create(&state, &input, &who.actor()).await?),
    ))
}

async fn update_schedule(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<String>,
    body: Result<Json<ScheduleInput>, JsonRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let input = json_body(body, SCHEDULE_SHAPE)?;
    Ok(Json(
        schedules::update(&state, &id, &input, &who.actor()).await?,
    ))
}

async fn delete_schedule(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    schedules::delete(&state, &id, &who.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PreviewBody {
    cron: String,
    #[serde(default)]
    timezone: String,
}

async fn preview_schedule(
    body: Result<Json<PreviewBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = json_body(body, "{cron, timezone}")?;
    Ok(Json(
        json!({"upcoming": schedules::preview(&b.cron, &b.timezone)?}),
    ))
}

async fn run_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(schedules::run_now(&state, &id).await?),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct RunsQuery {
    limit: Option<i64>,
    active: Option<bool>,
}

async fn list_runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let active = q.active.unwrap_or(false).then_some(10);
    Ok(Json(runs::runs(&state.db, limit, active).await?))
}

async fn start_run(
    State(state): State<AppState>,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let r = json_body(
        body,
        "{scope: all|site|metric|flagged, scope_value?, force?}",
    )?;
    let scope = Scope::parse(&r.scope, r.scope_value.as_deref())?;
    Ok((
        StatusCode::ACCEPTED,
        Json(runs::start(&state, "manual", &scope, r.force).await?),
    ))
}

async fn run_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    Ok(Json(runs::detail(&state.db, &id).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct ActionBody {
    state: String,
    assignee: Option<String>,
    reason: Option<String>,
}

async fn update_action(
    State(state): State<AppState>,
    Path((id, position)): Path<(String, i64)>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Json<app::domain::actions::ActionView>, ApiError> {
    let b = json_body(
        body,
        "{state: acknowledged|assigned|done|dismissed, assignee?, reason?}",
    )?;
    Ok(Json(
        app::ssr::actions::update(
            &state,
            &id,
            position,
            &b.state,
            b.assignee.as_deref(),
            b.reason.as_deref(),
        )
        .await?,
    ))
}

async fn list_costs(
    State(state): State<AppState>,
) -> Result<Json<Vec<app::ssr::costs::UnitCost>>, ApiError> {
    Ok(Json(app::ssr::costs::list(&state.db).await?))
}

async fn save_costs(
    State(state): State<AppState>,
    body: Result<Json<Vec<app::ssr::costs::UnitCost>>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let costs = json_body(body, "[{sku | category, unit_cost}]")?;
    let n = app::ssr::costs::save(&state.db, &costs, |i| format!("entry {i}")).await?;
    Ok(Json(json!({"saved": n})))
}

async fn rules(State(state): State<AppState>) -> Result<Json<app::dto::RulesView>, ApiError> {
    Ok(Json(app::ssr::rulebook::view(&state.db).await?))
}

async fn edit_rules(
    State(state): State<AppState>,
    who: Who,
    body: Result<Json<app::domain::rulebook::RuleEdit>, JsonRejection>,
) -> Result<Json<app::dto::RuleChange>, ApiError> {
    let edit = json_body(
        body,
        "{op: create|update|delete|enable|disable, item: {type: rule|target|trigger|playbook, ..}, expected_version}",
    )?;
    let (_, change) = app::ssr::rulebook::save(&state.db, &edit, Some(&who.actor())).await?;
    Ok(Json(change))
}

async fn send_digest(State(state): State<AppState>) -> Result<Response, ApiError> {
    let id = app::ssr::digests::send(&state).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"notification_id": id}))).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PreviewQuery {
    format: Option<String>,
}

async fn preview_digest(
    State(state): State<AppState>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use app::ssr::notify::{render, ChannelKind};
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let kind = match q.format.as_deref().unwrap_or("json") {
        "slack" => ChannelKind::Slack,
        "json" => ChannelKind::Json,
        "email" => ChannelKind::Email,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("format '{other}' is slack, json or email"),
            ))
        }
    };
    let (digest, _) = app::ssr::digests::build(&state).await?;
    let (content_type, body) = render(kind, &digest);
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn check_alerts(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let queued = app::ssr::alerts::evaluate(&state).await?;
    Ok(Json(json!({"queued": queued})))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct LimitQuery {
    limit: Option<i64>,
}

async fn list_notifications(
    State(state): State<AppState>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Vec<app::ssr::notify::NotificationView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(app::ssr::notify::list(&state.db, limit).await?))
}

async fn notification_email(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = app::ssr::notify::digest_of(&state.db, &id).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        app::domain::digest::html(&d),
    )
        .into_response())
}

async fn me(who: Who) -> Result<Json<app::domain::access::Me>, ApiError> {
    who.0
        .map(|p| Json(p.me()))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()))
}

async fn list_users(
    State(state): State<AppState>,
) -> Result<Json<Vec<app::dto::UserView>>, ApiError> {
    Ok(Json(accounts::list_users(&state.db).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NewUser {
    username: String,
    /// None: an account that signs in only through the trusted proxy.
    password: Option<String>,
    role: app::domain::access::Role,
}

async fn create_user(
    State(state): State<AppState>,
    who: Who,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<app::dto::UserView>), ApiError> {
    let u = json_body(body, "{username, password?, role: viewer|editor|admin}")?;
    let view = accounts::add_user(
        &state.db,
        &u.username,
        u.password.as_deref(),
        u.role,
        &who.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn update_user(
    State(state): State<AppState>,
    who: Who,
    Path(username): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> Result<Json<app::dto::UserView>, ApiError> {
    let change = json_body(body, "{role?, disabled?, password?}")?;
    Ok(Json(
        accounts::update_user(&state.db, &username, &change, &who.actor()).await?,
    ))
}

async fn list_tokens(
    State(state): State<AppState>,
) -> Result<Json<Vec<app::dto::TokenView>>, ApiError> {
    Ok(Json(accounts::list_tokens(&state.db).await?))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NewToken {
    name: String,
    role: app::domain::access::Role,
}

/// The secret is in this response only; it cannot be shown again.
async fn create_token(
    State(state): State<AppState>,
    who: Who,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<app::dto::TokenCreated>), ApiError> {
    let t = json_body(body, "{name, role: viewer|editor|admin}")?;
    let creator = who
        .0
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()))?;
    let created =
        accounts::create_token(&state.db, &t.name, t.role, &creator.actor(), creator.role).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn revoke_token(
    State(state): State<AppState>,
    who: Who,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_token(&state.db, &id, &who.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct AuditQuery {
    action: Option<String>,
    limit: Option<i64>,
}

async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<app::dto::AuditEntry>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        app::ssr::audit::list(&state.db, q.action.as_deref(), limit).await?,
    ))
}
