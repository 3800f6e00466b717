//! The agent client: one shared `reqwest::Client` with timeouts that POSTs ResponsesAgent
//! requests and reads JSON or SSE replies (by Content-Type, never by what was asked for).
//!
//! Agent error bodies echo the whole request and server paths (see
//! `shared/docs/agent-protocol.md` §6, §10), so they are never shown to users or logged
//! whole: errors keep only the status, the `error_code` and a short last line of a
//! `stack_trace`.

use crate::domain::evidence::EvidencePack;
use crate::domain::insight::{answer_from_json, answer_from_sse, AgentAnswer, ReplyError};
use crate::domain::rules::Rules;
use serde_json::{json, Value};
use std::fmt;
use std::time::{Duration, Instant};

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
    #[error("the agent's reply was larger than {} KB", MAX_REPLY_BYTES / 1024)]
    TooLarge,
    #[error("the agent's reply could not be read: {0}")]
    Reply(#[from] ReplyError),
}

/// Where the agent is and how to call it.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Full URL of the invocations endpoint.
    pub url: String,
    /// Shown on cards and stored with insights (never the token).
    pub name: String,
    pub token: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct AgentClient {
    http: reqwest::Client,
    config: AgentConfig,
}

/// The system prompt: instructions and the contract. The rules travel as JSON below it.
pub const INSTRUCTIONS: &str = "You are an operations analyst for distribution centres. \
Explain why the KPI moved using only the evidence pack in custom_inputs.evidence (values in percent, \
changes in percentage points; contributions split into mix = share of volume moved and rate = the \
segment's own performance moved; they add up to the total change). If the data checks say the data \
is suspect, name the data problem and do not blame operations. If the change is within noise, say so \
and name no cause. Suggest next actions from the playbooks in the business rules. Reply with a short \
narrative and put the insight contract in custom_outputs.insight (or a ```json block): \
{\"headline\": str, \"root_causes\": [{\"dimension\": str, \"member\": str, \"effect\": \"rate\"|\"mix\"|\"data\", \
\"impact_pp\": number, \"evidence\": str}], \"next_actions\": [{\"action\": str, \"owner\": str, \
\"priority\": \"high\"|\"medium\"|\"low\"}], \"confidence\": number 0..1}.";

/// Builds the ResponsesAgent request for one evidence pack.
pub fn build_request(pack: &EvidencePack, rules: &Rules, question: &str) -> Value {
    let rules_json = serde_json::to_string(rules).unwrap_or_default();
    json!({
        "input": [
            {"role": "system", "content": format!("{INSTRUCTIONS}\n\nBusiness rules (version {}):\n{rules_json}", rules.version)},
            {"role": "user", "content": format!("{question}\n\n{}", pack.summary())},
        ],
        "custom_inputs": {"evidence": pack, "rules": rules, "question": question},
        "context": {"conversation_id": format!("{}:{}:{}", pack.scope.site, pack.scope.metric.key(), pack.period.start)},
    })
}

impl AgentClient {
    /// One client for the process: connection pooling, connect and request timeouts.
    pub fn new(config: AgentConfig) -> anyhow::Result<AgentClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("opsight/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AgentClient { http, config })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends one request and interprets the reply. Returns the answer and the latency.
    pub async fn invoke(&self, request: &Value) -> Result<(AgentAnswer, Duration), AgentError> {
        let started = Instant::now();
        let mut call = self
            .http
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .body(serde_json::to_vec(request).unwrap_or_default());
        if let Some(token) = &self.config.token {
            call = call.bearer_auth(token.expose());
        }
        let response = call.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let body = read_capped(response).await.map_err(|e| match e {
            ReadError::TooLarge => AgentError::TooLarge,
            ReadError::Http(e) => self.transport_error(&e),
        })?;
        if !status.is_success() {
            return Err(classify_error(status.as_u16(), &body));
        }
        let answer = if is_sse {
            answer_from_sse(&String::from_utf8_lossy(&body))?
        } else {
            answer_from_json(&body)?
        };
        Ok((answer, started.elapsed()))
    }

    fn transport_error(&self, e: &reqwest::Error) -> AgentError {
        if e.is_timeout() {
            AgentError::Timeout(self.config.timeout.as_secs())
        } else {
            AgentError::Connect
        }
    }
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_REPLY_BYTES)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns an error status and body into a safe error. `mlflow models serve` reports a crash
/// inside `predict` as HTTP 400 with a `stack_trace`: that is the agent's failure, not ours.
fn classify_error(status: u16, body: &[u8]) -> AgentError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("error_code"))
        .and_then(Value::as_str)
        .map(|c| {
            c.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect()
        });
    let stack = parsed
        .as_ref()
        .and_then(|v| v.get("stack_trace"))
        .and_then(Value::as_str);
    match status {
        400 if stack.is_some() => AgentError::Crashed {
            status,
            code,
            // The exception line only, trimmed: it is for the server log, not for users.
            last_line: stack
                .and_then(|s| s.trim_end().lines().last())
                .map(|l| l.chars().take(160).collect()),
        },
        500 => AgentError::Crashed {
            status,
            code,
            last_line: None,
        },
        502..=504 | 429 => AgentError::Unavailable { status },
        _ => AgentError::Rejected { status, code },
    }
}
