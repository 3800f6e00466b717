//! Agents: named profiles, one shared HTTP client, and the calls.
//!
//! - [`profile`]: what an agent is (kind, endpoint, token, limits, MLflow model) and the
//!   registry of configured agents with their roles (cards, questions).
//! - [`wire`]: the ResponsesAgent request for an evidence pack and a conversation, and its
//!   adaptation to each kind (AgentServer trace header, Databricks `return_trace`, OpenAI
//!   Responses without `custom_inputs`).
//! - [`client`]: one call: concurrency cap, circuit breaker, retries where safe, size and
//!   time caps, JSON or SSE by the reply's Content-Type, deltas forwarded as they arrive.
//! - [`resilience`]: the retry policy and the circuit breaker, pure and clock-injected.
//! - [`mlflow`]: MLflow's REST API: alias → version, feedback as assessments.
//! - [`analyst`]: the built-in analyst's protocol handling (request in, reply out); the
//!   server serves it at `/agent/invocations` and calls it like any other agent.
//!
//! Agent error bodies echo the whole request and server paths
//! (`shared/docs/agent-protocol.md` §6, §10), so errors keep only the status, an
//! `error_code` and the last line of a `stack_trace`, and tokens live in [`Secret`]s that
//! never print.

pub mod analyst;
pub mod client;
pub mod mlflow;
pub mod profile;
pub mod resilience;
pub mod wire;

pub use client::{AgentClient, AgentHealth, Reply};
pub use profile::{AgentKind, AgentProfile, Agents, ModelRef};
pub use wire::{build_request, INSTRUCTIONS};

use crate::domain::insight::ReplyError;
use std::fmt;

/// Replies larger than this are refused (bytes).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// A bearer token that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a call to an agent failed. Every message is safe to show users.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent did not answer within {0} s")]
    Timeout(u64),
    #[error("the agent could not be reached")]
    Connect,
    #[error("the agent failed while answering (HTTP {status}{})", code.as_ref().map(|c| format!(", {c}")).unwrap_or_default())]
    Crashed {
        status: u16,
        code: Option<String>,
        last_line: Option<String>,
    },
    #[error("the agent rejected the request (HTTP {status}{})", code.as_ref().map(|c| format!(", {c}")).unwrap_or_default())]
    Rejected { status: u16, code: Option<String> },
    #[error("the agent is unavailable (HTTP {status})")]
    Unavailable { status: u16 },
    #[error("the agent answered with an error page (HTTP {status}), not a ResponsesAgent reply")]
    NotAnAgent { status: u16 },
    #[error("the agent's reply was larger than {} KB", MAX_REPLY_BYTES / 1024)]
    TooLarge,
    #[error("the agent is paused after repeated failures; next try in {0} s")]
    CircuitOpen(u64),
    #[error("the agent is busy (all {0} call slots in use)")]
    Busy(usize),
    #[error("the agent's reply could not be read: {0}")]
    Reply(#[from] ReplyError),
    #[error("the agent's explanation is not supported by the data: {0}")]
    Ungrounded(String),
}

impl AgentError {
    /// Whether the failure says something about the agent's health (for the breaker).
    /// A request the agent rejected (4xx without a crash) is our problem, not its.
    pub fn counts_against_agent(&self) -> bool {
        !matches!(
            self,
            AgentError::Rejected { .. }
                | AgentError::CircuitOpen(_)
                | AgentError::Busy(_)
                | AgentError::Ungrounded(_)
        )
    }
}
