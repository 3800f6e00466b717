//! The one path from an evidence pack to a checked, recorded agent answer, shared by card
//! refreshes and conversation turns: resolve the model version, adapt the request to the
//! agent's kind, call it (streaming deltas when asked), check every named root cause
//! against the pack, read every number and name of the reply against what the agent was
//! given, and store the call's lineage whatever the outcome.

use crate::domain::claims::{self, Claim};
use crate::domain::evidence::EvidencePack;
use crate::domain::grounding::{self, Grounding};
use crate::domain::status::AnswerStatus;
use crate::ssr::agent::client::DeltaSink;
use crate::ssr::agent::{AgentClient, AgentError, Reply};
use crate::ssr::clock;
use crate::ssr::store::insights::{insert_call, NewAgentCall};
use crate::ssr::store::{Db, StoreError};
use serde_json::Value;

/// What asking produced. `outcome` is an error also when the reply arrived but every
/// root cause it named is unsupported by the data (`AgentError::Ungrounded`).
pub struct Asked {
    pub outcome: Result<Reply, AgentError>,
    pub grounding: Vec<Grounding>,
    /// The reply's numbers and names, checked (empty without a reply).
    pub claims: Vec<Claim>,
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

/// Calls `agent` with `request` and records the call. Only storing the lineage can fail
/// here; the agent's own failure is in [`Asked::outcome`].
#[tracing::instrument(skip_all, fields(agent = %agent.name(), id = %subject.id, stream))]
pub async fn ask(
    db: &Db,
    agent: &AgentClient,
    subject: &Subject<'_>,
    request: &Value,
    stream: bool,
    deltas: Option<&DeltaSink>,
) -> Result<Asked, StoreError> {
    let model_version = agent.model_version().await;
    let body = agent.wire_body(request, stream);
    let started = std::time::Instant::now();
    let mut outcome = agent.call(&body, deltas).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let mut checks = Vec::new();
    let mut claims = Vec::new();
    let mut response_body = None;
    if let Ok(reply) = &outcome {
        response_body = Some(reply.body.clone());
        if let Some(insight) = &reply.answer.insight {
            checks = grounding::check(subject.pack, insight);
        }
        let given = claims::Evidence::new(
            subject.pack,
            request.get("custom_inputs").unwrap_or(&Value::Null),
        );
        claims = claims::check(&given, &reply.answer.text, reply.answer.insight.as_ref());
    }
    let counted = response_body
        .is_some()
        .then(|| (claims.len() as i64, claims::unsupported(&claims) as i64));
    if grounding::all_unsupported(&checks) {
        let why = checks
            .iter()
            .map(|g| format!("{} {}: {}", g.dimension, g.member, g.note))
            .collect::<Vec<_>>()
            .join("; ");
        outcome = Err(AgentError::Ungrounded(why));
    }
    let (status, error) = match &outcome {
        Ok(_) => (AnswerStatus::Ok, None),
        Err(e) => (AnswerStatus::Error, Some(e.to_string())),
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
    let endpoint = agent.profile().label();
    insert_call(
        db,
        &NewAgentCall {
            id: subject.id,
            created_at: &clock::now(),
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
            claims: counted,
        },
    )
    .await?;
    Ok(Asked {
        outcome,
        grounding: checks,
        claims,
        model_version,
        latency_ms,
    })
}
