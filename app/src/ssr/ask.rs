//! The one path from an evidence pack to a checked, recorded agent answer, shared by card
//! refreshes and conversation turns: resolve the model version, adapt the request to the
//! agent's kind, call it (streaming deltas when asked), check every named root cause
//! against the pack, and store the call's lineage whatever the outcome.

use super::agent::client::DeltaSink;
use super::agent::{AgentClient, AgentError, Reply};
use super::db::{self, NewAgentCall};
use super::state::AppState;
use crate::domain::evidence::EvidencePack;
use crate::domain::grounding::{self, Grounding};
use serde_json::Value;

/// What asking produced. `outcome` is an error also when the reply arrived but every
/// root cause it named is unsupported by the data (`AgentError::Ungrounded`).
pub struct Asked {
    pub outcome: Result<Reply, AgentError>,
    pub grounding: Vec<Grounding>,
    pub model_version: Option<String>,
    pub latency_ms: i64,
}

impl Asked {
    pub fn trace_id(&self) -> Option<String> {
        self.outcome
            .as_ref()
            .ok()
            .and_then(|r| r.answer.trace_id.clone())
    }
}

/// What the call is about, for lineage.
pub struct Subject<'a> {
    /// The insight or turn id the call produces.
    pub id: &'a str,
    pub pack: &'a EvidencePack,
    pub evidence_hash: &'a str,
    pub rules_version: i64,
}

pub async fn ask(
    state: &AppState,
    agent: &AgentClient,
    subject: &Subject<'_>,
    request: &Value,
    stream: bool,
    deltas: Option<&DeltaSink>,
) -> Result<Asked, super::ServiceError> {
    let model_version = agent.model_version().await;
    let body = agent.wire_body(request, stream);
    let started = std::time::Instant::now();
    let mut outcome = agent.call(&body, deltas).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let mut checks = Vec::new();
    let mut response_body = None;
    let mut ungrounded = None;
    if let Ok(reply) = &outcome {
        response_body = Some(reply.body.clone());
        if let Some(insight) = &reply.answer.insight {
            checks = grounding::check(subject.pack, insight);
            if grounding::all_unsupported(&checks) {
                ungrounded = Some(
                    checks
                        .iter()
                        .map(|g| format!("{} {}: {}", g.dimension, g.member, g.note))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
        }
    }
    if let Some(why) = ungrounded {
        tracing::warn!(
            agent = agent.name(),
            id = subject.id,
            "agent reply not supported by the evidence"
        );
        outcome = Err(AgentError::Ungrounded(why));
    }
    let (status, error) = match &outcome {
        Ok(_) => ("ok", None),
        Err(e) => ("error", Some(e.to_string())),
    };
    let (trace_id, usage, attempts) = match &outcome {
        Ok(r) => (
            r.answer.trace_id.clone(),
            r.answer.usage,
            i64::from(r.attempts),
        ),
        Err(_) => (None, None, 1),
    };
    let request_json = serde_json::to_string(&body).unwrap_or_default();
    let created_at = super::insights::timestamp(chrono::Utc::now());
    let endpoint = agent.profile().label();
    db::insert_agent_call(
        &state.db,
        &NewAgentCall {
            id: subject.id,
            created_at: &created_at,
            agent: agent.name(),
            kind: agent.kind().key(),
            endpoint: &endpoint,
            model: agent.profile().model.as_ref().map(|m| m.uri()),
            model_version: model_version.clone(),
            trace_id,
            evidence_hash: subject.evidence_hash,
            rules_version: subject.rules_version,
            request_json: &request_json,
            response_body: response_body.as_deref(),
            status,
            error: error.as_deref(),
            latency_ms,
            attempts,
            input_tokens: usage.and_then(|u| u.input_tokens),
            output_tokens: usage.and_then(|u| u.output_tokens),
        },
    )
    .await?;
    Ok(Asked {
        outcome,
        grounding: checks,
        model_version,
        latency_ms,
    })
}
