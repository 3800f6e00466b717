//! Who may do what: roles, and the one access policy of every route and server function.
//!
//! The policy is a single table keyed on method and path, applied by the server's guard
//! before any handler runs. Server functions are routes too (`POST /api/<endpoint>`), so the
//! same table covers pages, the JSON API and the browser's calls. A path the table does not
//! know needs an admin: a route added without a policy is closed, not open.
//! The browser uses [`Role::can`] only to hide what a role cannot do; hiding is never the
//! check.

use serde::{Deserialize, Serialize};

/// Roles, each including the one before.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything; asks questions (rate-limited) and gives feedback.
    Viewer,
    /// + refreshes insights, starts runs, edits rules, schedules, actions and unit costs,
    ///   sends digests.
    Editor,
    /// + users, API tokens, the audit log and agent settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, editor or admin"
            )),
        }
    }

    /// Whether this role includes `needed`.
    pub fn can(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in user (or API token) as the browser sees it: a name and a role, nothing
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, metrics, sign-in, static files, the built-in analyst.
    Public,
    /// A signed-in user or token with at least this role.
    Role(Role),
}

/// The policy of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub need: Need,
    /// It makes an agent call (money, capacity): counted by the rate limits.
    pub calls_agent: bool,
}

const fn open() -> Policy {
    Policy {
        need: Need::Public,
        calls_agent: false,
    }
}

const fn role(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: false,
    }
}

const fn agent(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: true,
    }
}

/// Whether `path` matches `pattern`, where a `*` segment matches one non-empty segment.
fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Server functions (`POST /api/<endpoint>`) and what they need.
const SERVER_FNS: &[(&str, Policy)] = &[
    ("dashboard", role(Role::Viewer)),
    ("kpi_detail", role(Role::Viewer)),
    ("rules", role(Role::Viewer)),
    ("conversation", role(Role::Viewer)),
    ("lineage", role(Role::Viewer)),
    ("agents", role(Role::Viewer)),
    ("schedules", role(Role::Viewer)),
    ("preview_schedule", role(Role::Viewer)),
    ("runs", role(Role::Viewer)),
    ("run_detail", role(Role::Viewer)),
    ("notifications", role(Role::Viewer)),
    ("feedback", role(Role::Viewer)),
    ("ask_question", agent(Role::Viewer)),
    ("ask_follow_up", agent(Role::Viewer)),
    ("refresh_insight", agent(Role::Editor)),
    ("run_schedule", agent(Role::Editor)),
    ("start_run", agent(Role::Editor)),
    ("edit_rules", role(Role::Editor)),
    ("save_schedule", role(Role::Editor)),
    ("pause_schedule", role(Role::Editor)),
    ("delete_schedule", role(Role::Editor)),
    ("update_action", role(Role::Editor)),
    ("send_digest", role(Role::Editor)),
    ("check_alerts", role(Role::Editor)),
    ("admin", role(Role::Admin)),
    ("create_user", role(Role::Admin)),
    ("update_user", role(Role::Admin)),
    ("create_token", role(Role::Admin)),
    ("revoke_token", role(Role::Admin)),
];

/// The JSON API (`/api/v1/...`): method, path pattern, policy.
const API: &[(&str, &str, Policy)] = &[
    ("GET", "/dashboard", role(Role::Viewer)),
    ("GET", "/insights", role(Role::Viewer)),
    ("POST", "/insights/refresh", agent(Role::Editor)),
    ("GET", "/insights/*/lineage", role(Role::Viewer)),
    ("GET", "/insights/*/feedback", role(Role::Viewer)),
    ("POST", "/insights/*/feedback", role(Role::Viewer)),
    ("POST", "/insights/*/actions/*", role(Role::Editor)),
    ("POST", "/conversations", agent(Role::Viewer)),
    ("GET", "/conversations/*", role(Role::Viewer)),
    ("POST", "/conversations/*/turns", agent(Role::Viewer)),
    ("GET", "/turns/*/events", role(Role::Viewer)),
    ("GET", "/agents", role(Role::Viewer)),
    ("GET", "/schedules", role(Role::Viewer)),
    ("POST", "/schedules", role(Role::Editor)),
    ("POST", "/schedules/preview", role(Role::Viewer)),
    ("GET", "/schedules/*", role(Role::Viewer)),
    ("PUT", "/schedules/*", role(Role::Editor)),
    ("DELETE", "/schedules/*", role(Role::Editor)),
    ("POST", "/schedules/*/run", agent(Role::Editor)),
    ("GET", "/runs", role(Role::Viewer)),
    ("POST", "/runs", agent(Role::Editor)),
    ("GET", "/runs/*", role(Role::Viewer)),
    ("GET", "/unit-costs", role(Role::Viewer)),
    ("PUT", "/unit-costs", role(Role::Editor)),
    ("GET", "/rules", role(Role::Viewer)),
    ("POST", "/rules/edits", role(Role::Editor)),
    ("POST", "/digests", role(Role::Editor)),
    ("GET", "/digests/preview", role(Role::Viewer)),
    ("POST", "/alerts/check", role(Role::Editor)),
    ("GET", "/notifications", role(Role::Viewer)),
    ("GET", "/notifications/*/email", role(Role::Viewer)),
    ("GET", "/me", role(Role::Viewer)),
    ("GET", "/openapi.json", open()),
    ("GET", "/users", role(Role::Admin)),
    ("POST", "/users", role(Role::Admin)),
    ("PATCH", "/users/*", role(Role::Admin)),
    ("GET", "/tokens", role(Role::Admin)),
    ("POST", "/tokens", role(Role::Admin)),
    ("DELETE", "/tokens/*", role(Role::Admin)),
    ("GET", "/audit", role(Role::Admin)),
];

/// Pages: every page needs a viewer, except the admin page.
const PAGES: &[(&str, Policy)] = &[
    ("/", role(Role::Viewer)),
    ("/kpi/*/*", role(Role::Viewer)),
    ("/rules", role(Role::Viewer)),
    ("/conversations/*", role(Role::Viewer)),
    ("/insights/*/lineage", role(Role::Viewer)),
    ("/settings", role(Role::Viewer)),
    ("/schedules", role(Role::Viewer)),
    ("/runs", role(Role::Viewer)),
    ("/runs/*", role(Role::Viewer)),
    ("/notifications", role(Role::Viewer)),
    ("/admin", role(Role::Admin)),
];

/// The policy of `method path` (path without the query string).
pub fn policy(method: &str, path: &str) -> Policy {
    const ADMIN_ONLY: Policy = role(Role::Admin);
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
        return API
            .iter()
            .find(|(m, p, _)| *m == method && matches(p, rest))
            .map_or(ADMIN_ONLY, |(_, _, policy)| *policy);
    }
    if let Some(endpoint) = path.strip_prefix("/api/") {
        // Server functions are POST (or GET for GetUrl ones); either way the same policy.
        return SERVER_FNS
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map_or(ADMIN_ONLY, |(_, policy)| *policy);
    }
    if read {
        if let Some((_, policy)) = PAGES.iter().find(|(p, _)| matches(p, path)) {
            return *policy;
        }
        // Static files (the wasm bundle, styles, favicon) and the 404 page: public, they
        // hold no data.
        return open();
    }
    ADMIN_ONLY
}

/// Every JSON API route in the policy: method and path under `/api/v1`, `*` for a
/// parameter (tests check it against the router and the OpenAPI description).
pub fn api_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    API.iter().map(|(m, p, _)| (*m, *p))
}

/// Every page in the policy (path patterns).
pub fn pages() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|(p, _)| *p)
}

/// Every server function endpoint in the policy (tests check it against the registry).
pub fn server_fn_endpoints() -> impl Iterator<Item = &'static str> {
    SERVER_FNS.iter().map(|(e, _)| *e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: &str, path: &str) -> Need {
        policy(method, path).need
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.can(Role::Editor) && Role::Admin.can(Role::Viewer));
        assert!(Role::Editor.can(Role::Viewer) && !Role::Editor.can(Role::Admin));
        assert!(!Role::Viewer.can(Role::Editor));
        assert_eq!(Role::parse(" Editor "), Ok(Role::Editor));
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("viewer, editor or admin"));
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches("/schedules/*", "/schedules/abc"));
        assert!(!matches("/schedules/*", "/schedules/abc/run"));
        assert!(!matches("/schedules/*", "/schedules/"));
        assert!(matches("/insights/*/actions/*", "/insights/i1/actions/0"));
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
    fn agent_calls_are_marked() {
        assert!(policy("POST", "/api/v1/insights/refresh").calls_agent);
        assert!(policy("POST", "/api/ask_question").calls_agent);
        assert!(policy("POST", "/api/v1/conversations/c1/turns").calls_agent);
        assert!(!policy("GET", "/api/v1/conversations/c1").calls_agent);
        assert!(!policy("POST", "/api/v1/rules/edits").calls_agent);
    }
}
