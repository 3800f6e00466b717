//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of `/api/v1`.
//!
//! Generated from the code: request and response schemas come from the very types the
//! handlers take and return (`schemars` derives, following their serde attributes), and
//! each operation's required role from the access policy the guard applies. What is
//! written by hand is only the list of operations below; a test checks that it and the
//! router's routes are the same set, and schemathesis checks real responses against it.

use super::api::{
    ActionBody, AgentsQuery, AuditQuery, FeedbackBody, InsightQuery, LimitQuery, NewToken, NewUser,
    PreviewBody, PreviewQuery, RefreshBody, RunsQuery, StartBody, TurnBody,
};
use app::domain::access::{self, Need};
use axum::response::IntoResponse;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// What an operation returns on success.
enum Reply {
    /// JSON of the schema, with this status.
    Json(u16, Value),
    /// No body.
    Empty(u16),
    /// Another media type (SSE, HTML).
    Text(u16, &'static str),
}

/// One operation: method, path (axum and OpenAPI share `{param}`), summary, query
/// parameters (from a struct's schema), request body and success reply.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    query: Option<Value>,
    body: Option<Value>,
    reply: Reply,
}

struct Schemas {
    /// Responses: how types serialise, named in `components/schemas`.
    out: SchemaGenerator,
    /// Requests: how types deserialise, inlined.
    input: SchemaGenerator,
}

impl Schemas {
    fn out<T: JsonSchema>(&mut self) -> Value {
        let schema = self.out.subschema_for::<T>();
        openapi3(&mut self.out, schema)
    }
    fn input<T: JsonSchema>(&mut self) -> Value {
        let schema = self.input.subschema_for::<T>();
        openapi3(&mut self.input, schema)
    }
}

/// A subschema in OpenAPI 3.0's dialect: the generator's transforms (`const` → `enum`,
/// `nullable`, …) apply to the definitions it collects, not to what `subschema_for`
/// returns, so they are applied here too.
fn openapi3(generator: &mut SchemaGenerator, mut schema: schemars::Schema) -> Value {
    for t in generator.transforms_mut() {
        t.transform(&mut schema);
    }
    schema.to_value()
}

fn op(method: &'static str, path: &'static str, summary: &'static str, reply: Reply) -> Op {
    Op {
        method,
        path,
        summary,
        query: None,
        body: None,
        reply,
    }
}

impl Op {
    fn query(mut self, schema: Value) -> Op {
        self.query = Some(schema);
        self
    }
    fn body(mut self, schema: Value) -> Op {
        self.body = Some(schema);
        self
    }
}

/// Every `/api/v1` operation.
fn operations(s: &mut Schemas) -> Vec<Op> {
    use app::dto::*;
    use Reply::{Empty, Json, Text};
    let object = json!({"type": "object"});
    vec![
        op(
            "GET",
            "/dashboard",
            "Every site and KPI for the latest complete week, with each card's latest insight",
            Json(200, s.out::<Dashboard>()),
        ),
        op(
            "GET",
            "/insights",
            "Insight attempts, latest first",
            Json(200, s.out::<Vec<InsightView>>()),
        )
        .query(s.input::<InsightQuery>()),
        op(
            "POST",
            "/insights/refresh",
            "Ask the cards agent for a new insight on one card now",
            Json(200, s.out::<InsightView>()),
        )
        .body(s.input::<RefreshBody>()),
        op(
            "GET",
            "/insights/{id}/lineage",
            "The agent call behind an insight or answer",
            Json(200, s.out::<Lineage>()),
        ),
        op(
            "GET",
            "/insights/{id}/feedback",
            "Thumbs up and down on an insight",
            Json(200, s.out::<Vec<FeedbackView>>()),
        ),
        op(
            "POST",
            "/insights/{id}/feedback",
            "Rate an insight",
            Json(201, s.out::<FeedbackView>()),
        )
        .body(s.input::<FeedbackBody>()),
        op(
            "POST",
            "/insights/{id}/actions/{position}",
            "Acknowledge, assign, finish or dismiss a next action",
            Json(200, s.out::<app::domain::actions::ActionView>()),
        )
        .body(s.input::<ActionBody>()),
        op(
            "POST",
            "/conversations",
            "Start a \"why is this down?\" question; the answer streams from the turn's events",
            Json(202, s.out::<TurnStarted>()),
        )
        .body(s.input::<StartBody>()),
        op(
            "GET",
            "/conversations/{id}",
            "A conversation and its turns",
            Json(200, s.out::<ConversationView>()),
        ),
        op(
            "POST",
            "/conversations/{id}/turns",
            "Ask a follow-up question",
            Json(202, s.out::<TurnStarted>()),
        )
        .body(s.input::<TurnBody>()),
        op(
            "GET",
            "/turns/{id}/events",
            "Server-sent events: deltas as the agent writes, then the final turn",
            Text(200, "text/event-stream"),
        ),
        op(
            "GET",
            "/agents",
            "Configured agents, their health, breaker and model version",
            Json(200, s.out::<Vec<AgentStatus>>()),
        )
        .query(s.input::<AgentsQuery>()),
        op(
            "GET",
            "/schedules",
            "Cron schedules",
            Json(200, s.out::<Vec<ScheduleView>>()),
        ),
        op(
            "POST",
            "/schedules",
            "Create a schedule",
            Json(201, s.out::<ScheduleView>()),
        )
        .body(s.input::<ScheduleInput>()),
        op(
            "POST",
            "/schedules/preview",
            "The next five ticks of a cron expression in a time zone",
            Json(200, object.clone()),
        )
        .body(s.input::<PreviewBody>()),
        op(
            "GET",
            "/schedules/{id}",
            "One schedule",
            Json(200, s.out::<ScheduleView>()),
        ),
        op(
            "PUT",
            "/schedules/{id}",
            "Replace a schedule's settings",
            Json(200, s.out::<ScheduleView>()),
        )
        .body(s.input::<ScheduleInput>()),
        op(
            "DELETE",
            "/schedules/{id}",
            "Delete a schedule (its runs stay)",
            Empty(204),
        ),
        op(
            "POST",
            "/schedules/{id}/run",
            "Run a schedule's scope now",
            Json(202, s.out::<RunView>()),
        ),
        op(
            "GET",
            "/runs",
            "Refresh runs, latest first",
            Json(200, s.out::<Vec<RunView>>()),
        )
        .query(s.input::<RunsQuery>()),
        op(
            "POST",
            "/runs",
            "Start a refresh run",
            Json(202, s.out::<RunView>()),
        )
        .body(s.input::<RunRequest>()),
        op(
            "GET",
            "/runs/{id}",
            "A run and its jobs",
            Json(200, s.out::<RunDetail>()),
        ),
        op(
            "GET",
            "/unit-costs",
            "Unit costs for money at stake",
            Json(200, s.out::<Vec<app::ssr::costs::UnitCost>>()),
        ),
        op(
            "PUT",
            "/unit-costs",
            "Replace the unit costs (all or nothing)",
            Json(200, object.clone()),
        )
        .body(s.input::<Vec<app::ssr::costs::UnitCost>>()),
        op(
            "GET",
            "/rules",
            "The rule book, KPI definitions, sites and recent versions",
            Json(200, s.out::<RulesView>()),
        ),
        op(
            "POST",
            "/rules/edits",
            "One rule-book edit (a new version; 409 when the rules moved on)",
            Json(200, s.out::<RuleChange>()),
        )
        .body(s.input::<app::domain::rulebook::RuleEdit>()),
        op(
            "POST",
            "/digests",
            "Build the digest now and queue it to every digest channel",
            Json(202, object.clone()),
        ),
        op(
            "GET",
            "/digests/preview",
            "The digest as a channel would get it (nothing sent)",
            Json(200, object.clone()),
        )
        .query(s.input::<PreviewQuery>()),
        op(
            "POST",
            "/alerts/check",
            "Observe every card's trigger now; the alerts queued",
            Json(200, object.clone()),
        ),
        op(
            "GET",
            "/notifications",
            "Digests and alerts with their deliveries",
            Json(200, s.out::<Vec<NotificationView>>()),
        )
        .query(s.input::<LimitQuery>()),
        op(
            "GET",
            "/notifications/{id}/email",
            "A notification's HTML e-mail body",
            Text(200, "text/html"),
        ),
        op(
            "GET",
            "/me",
            "Who the request is signed in as",
            Json(200, s.out::<app::domain::access::Me>()),
        ),
        op(
            "GET",
            "/users",
            "User accounts",
            Json(200, s.out::<Vec<UserView>>()),
        ),
        op(
            "POST",
            "/users",
            "Add a user",
            Json(201, s.out::<UserView>()),
        )
        .body(s.input::<NewUser>()),
        op(
            "PATCH",
            "/users/{username}",
            "Change a user's role, password or enabled state",
            Json(200, s.out::<UserView>()),
        )
        .body(s.input::<app::ssr::accounts::UserChange>()),
        op(
            "GET",
            "/tokens",
            "API tokens (prefixes, never secrets)",
            Json(200, s.out::<Vec<TokenView>>()),
        ),
        op(
            "POST",
            "/tokens",
            "Create an API token; the secret is in this answer only",
            Json(201, s.out::<TokenCreated>()),
        )
        .body(s.input::<NewToken>()),
        op("DELETE", "/tokens/{id}", "Revoke an API token", Empty(204)),
        op(
            "GET",
            "/audit",
            "The audit log, newest first",
            Json(200, s.out::<Vec<AuditEntry>>()),
        )
        .query(s.input::<AuditQuery>()),
        op(
            "GET",
            "/openapi.json",
            "This description",
            Json(200, object),
        ),
    ]
}

/// Query parameters from an object schema's properties (all optional).
fn parameters(query: Option<&Value>, path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": if name == "position" { json!({"type": "integer", "minimum": 0}) } else { json!({"type": "string"}) }})
        })
        .collect();
    if let Some(props) = query
        .and_then(|q| q.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            let mut schema = schema.clone();
            // A query parameter is absent rather than null.
            if let Some(o) = schema.as_object_mut() {
                o.remove("nullable");
            }
            out.push(json!({"name": name, "in": "query", "required": false, "schema": schema}));
        }
    }
    out
}

/// The whole document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = Schemas {
            out: SchemaSettings::openapi3().for_serialize().into_generator(),
            input: SchemaSettings::openapi3()
                .for_deserialize()
                .with(|s| s.inline_subschemas = true)
                .into_generator(),
        };
        let ops = operations(&mut s);
        let error = json!({"$ref": "#/components/schemas/Error"});
        let mut paths = Map::new();
        for o in &ops {
            let policy = access::policy(o.method, &format!("/api/v1{}", o.path));
            let mut responses = Map::new();
            let (status, content) = match &o.reply {
                Reply::Json(status, schema) => (*status, Some(json!({"application/json": {"schema": schema}}))),
                Reply::Empty(status) => (*status, None),
                Reply::Text(status, media) => (*status, Some(json!({*media: {"schema": {"type": "string"}}}))),
            };
            let mut ok = json!({"description": "success"});
            if let Some(c) = content {
                ok["content"] = c;
            }
            responses.insert(status.to_string(), ok);
            // Every refusal and failure is JSON `{error}`; a malformed path segment or
            // query is rejected by the framework with a plain-text reason.
            responses.insert(
                "default".into(),
                json!({"description": "an error: 400 bad input, 401 not signed in, 403 role too low or cross-site, 404, 409 conflict, 413 too large, 429 rate-limited, 5xx",
                       "content": {"application/json": {"schema": error}, "text/plain": {"schema": {"type": "string"}}}}),
            );
            let mut operation = json!({
                "summary": o.summary,
                "operationId": format!("{} {}", o.method.to_lowercase(), o.path),
                "parameters": parameters(o.query.as_ref(), o.path),
                "responses": responses,
            });
            match policy.need {
                Need::Public => operation["security"] = json!([]),
                Need::Role(role) => {
                    operation["x-required-role"] = json!(role.as_str());
                    if policy.calls_agent {
                        operation["x-rate-limited"] = json!(true);
                    }
                }
            }
            if let Some(body) = &o.body {
                operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body}}});
            }
            paths
                .entry(o.path)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("path item")
                .insert(o.method.to_lowercase(), operation);
        }
        let mut schemas = s.out.take_definitions(true);
        schemas.insert(
            "Error".into(),
            json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}),
        );
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "Opsight API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "KPI insight for distribution-centre operations. Every operation needs an API token (`Authorization: Bearer …`) or a session with at least the role in `x-required-role`; those marked `x-rate-limited` call an agent and count against the caller's and the server's per-minute allowance (429 with Retry-After beyond it).",
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}, {"session": []}],
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token, `opsight_…`"},
                    "session": {"type": "apiKey", "in": "cookie", "name": app::ssr::accounts::SESSION_COOKIE},
                },
            },
        })
    })
}

/// Every (method, path) the description lists, for the test against the router.
pub fn operations_listed() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = document()["paths"].as_object() {
        for (path, item) in paths {
            for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

pub async fn spec() -> axum::response::Response {
    axum::Json(document().clone()).into_response()
}
