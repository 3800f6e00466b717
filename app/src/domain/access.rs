//! Who may do what: roles, and the shape of an access policy.
//!
//! The policy of every operation is declared once, in the server's operation table
//! (`server/src/routes/operations.rs`), next to its JSON API route and its server
//! function, and applied by the server's guard before any handler runs. The browser uses
//! [`Role::can`] only to hide what a role cannot do; hiding is never the check.

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

/// Anyone may.
pub const fn open() -> Policy {
    Policy {
        need: Need::Public,
        calls_agent: false,
    }
}

/// At least this role.
pub const fn role(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: false,
    }
}

/// At least this role, and it calls an agent (rate-limited).
pub const fn agent(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.can(Role::Editor) && Role::Admin.can(Role::Viewer));
        assert!(Role::Editor.can(Role::Viewer) && !Role::Editor.can(Role::Admin));
        assert!(!Role::Viewer.can(Role::Editor));
        assert_eq!(Role::parse(" Editor "), Ok(Role::Editor));
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("viewer, editor or admin"));
        assert!(agent(Role::Viewer).calls_agent && !role(Role::Viewer).calls_agent);
        assert_eq!(open().need, Need::Public);
    }
}
