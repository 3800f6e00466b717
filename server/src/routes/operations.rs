//! Every operation Opsight offers, one row each: its name, what it does, who may call it,
//! and how it is reached: as a server function (`POST /api/<name>`, the browser) and/or a
//! JSON API route (method, path, success status, input and reply types, handler). From
//! this table come the API router, the access policy the guard applies, and the OpenAPI
//! description. Adding an endpoint is one row here plus its service (and its one-line
//! handler in [`super::api`] or server function in `app::api`).
//!
//! The policy of a path nobody declared is admin-only: a route added without a row is
//! closed, not open.

use super::api;
use super::openapi::Schemas;
use app::domain::access::{agent, open, role, Need, Policy, Role};
use app::domain::actions::ActionView;
use app::domain::evidence::EvidencePack;
use app::domain::rulebook::RuleEdit;
use app::dto::*;
use app::ssr::state::AppState;
use axum::routing::{MethodFilter, MethodRouter};
use schemars::JsonSchema;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// A schema, generated when the OpenAPI description is built.
pub type SchemaFn = fn(&mut Schemas) -> Value;

/// What a route returns on success.
#[derive(Clone, Copy)]
pub enum Reply {
    /// JSON of this schema.
    Json(SchemaFn),
    /// No body (204).
    Empty,
    /// Another media type (SSE, HTML).
    Text(&'static str),
}

/// How an operation is reached through the JSON API.
#[derive(Clone, Copy)]
pub struct Rest {
    pub method: &'static str,
    /// Under `/api/v1`; axum and OpenAPI share the `{param}` syntax.
    pub path: &'static str,
    pub status: u16,
    pub query: Option<SchemaFn>,
    pub body: Option<SchemaFn>,
    /// The body may be left out (every field of the input is optional).
    pub body_optional: bool,
    pub reply: Reply,
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// One operation.
pub struct Operation {
    pub name: &'static str,
    pub summary: &'static str,
    pub policy: Policy,
    /// Also served as the server function `/api/<name>`.
    pub server_fn: bool,
    pub rest: Option<Rest>,
}

fn out<T: JsonSchema>(s: &mut Schemas) -> Value {
    s.out::<T>()
}

fn input<T: JsonSchema>(s: &mut Schemas) -> Value {
    s.input::<T>()
}

fn object(_: &mut Schemas) -> Value {
    json!({"type": "object"})
}

fn op(name: &'static str, policy: Policy, summary: &'static str) -> Operation {
    Operation {
        name,
        summary,
        policy,
        server_fn: false,
        rest: None,
    }
}

impl Operation {
    fn server_fn(mut self) -> Self {
        self.server_fn = true;
        self
    }

    fn rest(
        mut self,
        method: &'static str,
        path: &'static str,
        handler: fn(MethodFilter) -> MethodRouter<AppState>,
    ) -> Self {
        self.rest = Some(Rest {
            method,
            path,
            status: 200,
            query: None,
            body: None,
            body_optional: false,
            reply: Reply::Json(object),
            handler,
        });
        self
    }

    fn with(mut self, f: impl FnOnce(&mut Rest)) -> Self {
        f(self.rest.as_mut().expect("rest() comes first"));
        self
    }

    fn query(self, schema: SchemaFn) -> Self {
        self.with(|r| r.query = Some(schema))
    }

    fn body(self, schema: SchemaFn) -> Self {
        self.with(|r| r.body = Some(schema))
    }

    /// A body that may be left out (the handler reads it with `OptionalBody`).
    fn optional_body(self, schema: SchemaFn) -> Self {
        self.with(|r| {
            r.body = Some(schema);
            r.body_optional = true;
        })
    }

    fn reply(self, schema: SchemaFn) -> Self {
        self.with(|r| r.reply = Reply::Json(schema))
    }

    fn status(self, status: u16) -> Self {
        self.with(|r| r.status = status)
    }

    fn empty(self) -> Self {
        self.with(|r| {
            r.reply = Reply::Empty;
            r.status = 204;
        })
    }

    fn text(self, media: &'static str) -> Self {
        self.with(|r| r.reply = Reply::Text(media))
    }
}

const VIEWER: Policy = role(Role::Viewer);
const EDITOR: Policy = role(Role::Editor);
const ADMIN: Policy = role(Role::Admin);

/// The table (built once).
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: OnceLock<Vec<Operation>> = OnceLock::new();
    OPERATIONS.get_or_init(table)
}

fn table() -> Vec<Operation> {
    vec![
        // Cards
        op(
            "dashboard",
            VIEWER,
            "Every site and KPI for a period (?period=&compare=; the latest complete week by default), with each card's latest insight",
        )
        .server_fn()
        .rest("GET", "/dashboard", api::dashboard)
        .query(input::<DashboardQuery>)
        .reply(out::<Dashboard>),
        op(
            "evidence",
            VIEWER,
            "One evidence pack as JSON: ?site=&metric=&period=&compare=",
        )
        .rest("GET", "/evidence", api::evidence)
        .query(input::<EvidenceQuery>)
        .reply(out::<EvidencePack>),
        op(
            "kpi_detail",
            VIEWER,
            "One card's KPI page: tile, evidence pack, card, history and the week's pace",
        )
        .server_fn(),
        op("insights", VIEWER, "Insight attempts, latest first")
            .rest("GET", "/insights", api::insights)
            .query(input::<InsightsQuery>)
            .reply(out::<Vec<InsightView>>),
        op(
            "refresh_insight",
            agent(Role::Editor),
            "Ask the cards agent for a new insight on one card now",
        )
        .server_fn()
        .rest("POST", "/insights/refresh", api::refresh_insight)
        .body(input::<RefreshRequest>)
        .reply(out::<InsightView>),
        op(
            "lineage",
            VIEWER,
            "The agent call behind an insight or answer, the insight and its feedback",
        )
        .server_fn()
        .rest("GET", "/insights/{id}/lineage", api::lineage)
        .reply(out::<LineagePage>),
        op(
            "insight_feedback",
            VIEWER,
            "Thumbs up and down on an insight",
        )
        .rest("GET", "/insights/{id}/feedback", api::insight_feedback)
        .reply(out::<Vec<FeedbackView>>),
        op("feedback", VIEWER, "Rate an insight")
            .server_fn()
            .rest("POST", "/insights/{id}/feedback", api::give_feedback)
            .body(input::<FeedbackInput>)
            .reply(out::<FeedbackView>)
            .status(201),
        op(
            "update_action",
            EDITOR,
            "Acknowledge, assign, finish or dismiss a next action",
        )
        .server_fn()
        .rest(
            "POST",
            "/insights/{id}/actions/{position}",
            api::update_action,
        )
        .body(input::<ActionChange>)
        .reply(out::<ActionView>),
        op(
            "ask_question",
            agent(Role::Viewer),
            "Start a \"why is this down?\" question; the answer streams from the turn's events",
        )
        .server_fn()
        .rest("POST", "/conversations", api::ask_question)
        .body(input::<StartConversation>)
        .reply(out::<TurnStarted>)
        .status(202),
        op("conversation", VIEWER, "A conversation and its turns")
            .server_fn()
            .rest("GET", "/conversations/{id}", api::conversation)
            .reply(out::<ConversationView>),
        op(
            "ask_follow_up",
            agent(Role::Viewer),
            "Ask a follow-up question",
        )
        .server_fn()
        .rest("POST", "/conversations/{id}/turns", api::ask_follow_up)
        .body(input::<FollowUp>)
        .reply(out::<TurnStarted>)
        .status(202),
        op(
            "turn_events",
            VIEWER,
            "Server-sent events: deltas as the agent writes, then the final turn",
        )
        .rest("GET", "/turns/{id}/events", api::turn_events)
        .text("text/event-stream"),
        // Agents
        op(
            "agents",
            VIEWER,
            "Configured agents, their health, breaker and model version",
        )
        .server_fn()
        .rest("GET", "/agents", api::agents)
        .query(input::<AgentsQuery>)
        .reply(out::<Vec<AgentStatus>>),
        // Schedules and runs
        op("schedules", VIEWER.every_site(), "Cron schedules")
            .server_fn()
            .rest("GET", "/schedules", api::schedules)
            .reply(out::<Vec<ScheduleView>>),
        op("create_schedule", EDITOR.every_site(), "Create a schedule")
            .server_fn()
            .rest("POST", "/schedules", api::create_schedule)
            .body(input::<ScheduleInput>)
            .reply(out::<ScheduleView>)
            .status(201),
        op(
            "preview_schedule",
            VIEWER.every_site(),
            "The next five ticks of a cron expression in a time zone (400 saying why when it is invalid)",
        )
        .server_fn()
        .rest("POST", "/schedules/preview", api::preview_schedule)
        .body(input::<PreviewRequest>)
        .reply(out::<SchedulePreview>),
        op("schedule", VIEWER.every_site(), "One schedule")
            .rest("GET", "/schedules/{id}", api::schedule)
            .reply(out::<ScheduleView>),
        op("update_schedule", EDITOR.every_site(), "Replace a schedule's settings")
            .server_fn()
            .rest("PUT", "/schedules/{id}", api::update_schedule)
            .body(input::<ScheduleInput>)
            .reply(out::<ScheduleView>),
        op(
            "delete_schedule",
            EDITOR.every_site(),
            "Delete a schedule (its runs stay)",
        )
        .server_fn()
        .rest("DELETE", "/schedules/{id}", api::delete_schedule)
        .empty(),
        op("pause_schedule", EDITOR.every_site(), "Pause or resume a schedule").server_fn(),
        op(
            "run_schedule",
            agent(Role::Editor).every_site(),
            "Run a schedule's scope now",
        )
        .server_fn()
        .rest("POST", "/schedules/{id}/run", api::run_schedule)
        .reply(out::<RunView>)
        .status(202),
        op("runs", VIEWER, "Refresh runs, latest first")
            .server_fn()
            .rest("GET", "/runs", api::runs)
            .query(input::<RunsQuery>)
            .reply(out::<Vec<RunView>>),
        op("start_run", agent(Role::Editor), "Start a refresh run")
            .server_fn()
            .rest("POST", "/runs", api::start_run)
            .body(input::<RunRequest>)
            .reply(out::<RunView>)
            .status(202),
        op("run_detail", VIEWER, "A run and its jobs")
            .server_fn()
            .rest("GET", "/runs/{id}", api::run_detail)
            .reply(out::<RunDetail>),
        // Data
        op("unit_costs", VIEWER, "Unit costs for money at stake")
            .rest("GET", "/unit-costs", api::unit_costs)
            .reply(out::<Vec<UnitCost>>),
        op(
            "save_unit_costs",
            EDITOR.every_site(),
            "Replace the unit costs (all or nothing)",
        )
        .rest("PUT", "/unit-costs", api::save_unit_costs)
        .body(input::<Vec<UnitCost>>)
        .reply(out::<CostsSaved>),
        op("sites", VIEWER, "Sites: code, name and region")
            .rest("GET", "/sites", api::sites)
            .reply(out::<Vec<SiteInfo>>),
        op(
            "save_sites",
            EDITOR.every_site(),
            "Rename sites and set their regions (all or nothing; codes must exist)",
        )
        .rest("PUT", "/sites", api::save_sites)
        .body(input::<Vec<SiteInfo>>)
        .reply(out::<Vec<SiteInfo>>),
        op(
            "sources",
            VIEWER.every_site(),
            "Data sources and where their syncs stand (never their connection strings)",
        )
        .server_fn()
        .rest("GET", "/sources", api::sources)
        .reply(out::<Vec<SourceView>>),
        op("source_syncs", VIEWER.every_site(), "A data source's syncs, latest first")
            .rest("GET", "/sources/{name}/syncs", api::source_syncs)
            .reply(out::<Vec<SyncView>>),
        op(
            "sync_source",
            EDITOR.every_site(),
            "Sync a data source now (409 while a sync of it runs); with wait, answer when it ends",
        )
        .server_fn()
        .rest("POST", "/sources/{name}/sync", api::sync_source)
        .optional_body(input::<SyncRequest>)
        .reply(out::<SyncView>)
        .status(202),
        // Rules
        op(
            "rules",
            VIEWER.every_site(),
            "The rule book, KPI definitions, sites and recent versions",
        )
        .server_fn()
        .rest("GET", "/rules", api::rules)
        .reply(out::<RulesView>),
        op(
            "edit_rules",
            EDITOR.every_site(),
            "One rule-book edit (a new version; 409 when the rules moved on)",
        )
        .server_fn()
        .rest("POST", "/rules/edits", api::edit_rules)
        .body(input::<RuleEdit>)
        .reply(out::<RuleEdited>),
        // Notifications
        op(
            "send_digest",
            EDITOR.every_site(),
            "Build the digest now and queue it to every digest channel",
        )
        .server_fn()
        .rest("POST", "/digests", api::send_digest)
        .optional_body(input::<DigestRequest>)
        .reply(out::<DigestQueued>)
        .status(202),
        op(
            "preview_digest",
            VIEWER,
            "The digest as a channel would get it (nothing sent)",
        )
        .rest("GET", "/digests/preview", api::preview_digest)
        .query(input::<DigestFormat>),
        op(
            "check_alerts",
            EDITOR.every_site(),
            "Observe every card's trigger now; the alerts queued",
        )
        .server_fn()
        .rest("POST", "/alerts/check", api::check_alerts)
        .reply(out::<AlertsChecked>),
        op(
            "notifications",
            VIEWER.every_site(),
            "Channels (never their addresses) and recent digests and alerts with their deliveries",
        )
        .server_fn()
        .rest("GET", "/notifications", api::notifications)
        .query(input::<NotificationsQuery>)
        .reply(out::<NotificationsView>),
        op(
            "notification_email",
            VIEWER.every_site(),
            "A notification's HTML e-mail body",
        )
        .rest("GET", "/notifications/{id}/email", api::notification_email)
        .text("text/html"),
        // Access
        op("me", VIEWER, "Who the request is signed in as")
            .rest("GET", "/me", api::me)
            .reply(out::<app::domain::access::Me>),
        op(
            "admin",
            ADMIN.every_site(),
            "The admin page: users, tokens and the latest audit entries",
        )
        .server_fn(),
        op("users", ADMIN.every_site(), "User accounts")
            .rest("GET", "/users", api::users)
            .reply(out::<Vec<UserView>>),
        op("create_user", ADMIN.every_site(), "Add a user")
            .server_fn()
            .rest("POST", "/users", api::create_user)
            .body(input::<NewUser>)
            .reply(out::<UserView>)
            .status(201),
        op(
            "update_user",
            ADMIN.every_site(),
            "Change a user's role, password or enabled state",
        )
        .server_fn()
        .rest("PATCH", "/users/{username}", api::update_user)
        .body(input::<UserChange>)
        .reply(out::<UserView>),
        op("tokens", ADMIN.every_site(), "API tokens (prefixes, never secrets)")
            .rest("GET", "/tokens", api::tokens)
            .reply(out::<Vec<TokenView>>),
        op(
            "create_token",
            ADMIN.every_site(),
            "Create an API token; the secret is in this answer only",
        )
        .server_fn()
        .rest("POST", "/tokens", api::create_token)
        .body(input::<NewToken>)
        .reply(out::<TokenCreated>)
        .status(201),
        op("revoke_token", ADMIN.every_site(), "Revoke an API token")
            .server_fn()
            .rest("DELETE", "/tokens/{id}", api::revoke_token)
            .empty(),
        op("audit", ADMIN.every_site(), "The audit log, newest first")
            .rest("GET", "/audit", api::audit)
            .query(input::<AuditQuery>)
            .reply(out::<Vec<AuditEntry>>),
        op("openapi", open(), "This description").rest("GET", "/openapi.json", api::openapi),
    ]
}

/// Pages (Leptos routes): every page needs a viewer, except the admin page.
pub const PAGES: &[(&str, Policy)] = &[
    ("/", VIEWER),
    ("/kpi/*/*", VIEWER),
    ("/rules", VIEWER.every_site()),
    ("/conversations/*", VIEWER),
    ("/insights/*/lineage", VIEWER),
    ("/settings", VIEWER),
    ("/schedules", VIEWER.every_site()),
    ("/runs", VIEWER),
    ("/runs/*", VIEWER),
    ("/notifications", VIEWER.every_site()),
    ("/sources", VIEWER.every_site()),
    ("/admin", ADMIN.every_site()),
];

/// Whether `path` matches `pattern`, where a `*` or `{param}` segment matches one
/// non-empty segment.
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(seg)) if (a == "*" || a.starts_with('{')) && !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The policy of `method path` (path without the query string).
pub fn policy(method: &str, path: &str) -> Policy {
    let read = matches!(method, "GET" | "HEAD");
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/login" | "/logout" => return open(),
        // The built-in analyst: a pure function of the evidence it is sent (no data, no
        // secrets); Opsight calls it over HTTP like any agent.
        "/agent/invocations" if method == "POST" => return open(),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/v1") {
        let method = if method == "HEAD" { "GET" } else { method };
        return operations()
            .iter()
            .find(|o| {
                o.rest
                    .as_ref()
                    .is_some_and(|r| r.method == method && matches(r.path, rest))
            })
            .map_or(ADMIN, |o| o.policy);
    }
    if let Some(endpoint) = path.strip_prefix("/api/") {
        // Server functions are POST (or GET for GetUrl ones); either way the same policy.
        return operations()
            .iter()
            .find(|o| o.server_fn && o.name == endpoint)
            .map_or(ADMIN, |o| o.policy);
    }
    if read {
        if let Some((_, policy)) = PAGES.iter().find(|(p, _)| matches(p, path)) {
            return *policy;
        }
        // Static files (the wasm bundle, styles, favicon) and the 404 page: public, they
        // hold no data.
        return open();
    }
    ADMIN
}

/// Every JSON API route: method and path under `/api/v1`.
pub fn api_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    operations()
        .iter()
        .filter_map(|o| o.rest.as_ref().map(|r| (r.method, r.path)))
}

/// Every server function endpoint.
pub fn server_fn_endpoints() -> impl Iterator<Item = &'static str> {
    operations().iter().filter(|o| o.server_fn).map(|o| o.name)
}

/// Whether a path needs nobody (no lookup of credentials).
pub fn is_public(method: &str, path: &str) -> bool {
    policy(method, path).need == Need::Public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: &str, path: &str) -> Need {
        policy(method, path).need
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("/schedules/*", "/schedules/abc"));
        assert!(matches("/schedules/{id}", "/schedules/abc"));
        assert!(!matches("/schedules/{id}", "/schedules/abc/run"));
        assert!(!matches("/schedules/*", "/schedules/"));
        assert!(matches(
            "/insights/{id}/actions/{position}",
            "/insights/i1/actions/0"
        ));
        assert!(!matches("/runs", "/runs/x"));
    }

    #[test]
    fn unknown_paths_are_closed_and_pages_need_a_viewer() {
        assert_eq!(need("POST", "/api/v1/nope"), Need::Role(Role::Admin));
        assert_eq!(need("POST", "/api/some_new_fn"), Need::Role(Role::Admin));
        assert_eq!(need("DELETE", "/"), Need::Role(Role::Admin));
        assert_eq!(need("GET", "/"), Need::Role(Role::Viewer));
        assert_eq!(need("GET", "/kpi/DAL/otif"), Need::Role(Role::Viewer));
        assert_eq!(need("GET", "/admin"), Need::Role(Role::Admin));
        assert_eq!(need("GET", "/pkg/opsight.wasm"), Need::Public);
        assert_eq!(need("GET", "/metrics"), Need::Public);
    }

    #[test]
    fn one_row_gives_both_transports_the_same_policy() {
        for o in operations() {
            if let (true, Some(r)) = (o.server_fn, &o.rest) {
                let concrete = r
                    .path
                    .replace("{id}", "x")
                    .replace("{position}", "0")
                    .replace("{username}", "u");
                assert_eq!(
                    policy(r.method, &format!("/api/v1{concrete}")),
                    policy("POST", &format!("/api/{}", o.name)),
                    "{}",
                    o.name
                );
            }
        }
        assert!(policy("POST", "/api/v1/insights/refresh").calls_agent);
        assert!(policy("POST", "/api/ask_question").calls_agent);
        assert!(policy("POST", "/api/v1/conversations/c1/turns").calls_agent);
        assert!(!policy("GET", "/api/v1/conversations/c1").calls_agent);
        assert!(!policy("POST", "/api/v1/rules/edits").calls_agent);
    }

    #[test]
    fn names_and_routes_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        let mut routes = std::collections::BTreeSet::new();
        for o in operations() {
            assert!(names.insert(o.name), "{} twice", o.name);
            if let Some(r) = &o.rest {
                assert!(
                    routes.insert((r.method, r.path)),
                    "{} {} twice",
                    r.method,
                    r.path
                );
            }
        }
    }
}
