//! The built-in analyst over the ResponsesAgent protocol: reads `custom_inputs.evidence`
//! and `custom_inputs.rules` from a request and answers with a message item plus
//! `custom_outputs.insight`, as JSON or (when `"stream": true`) as SSE events in the shape
//! MLflow's AgentServer emits. The HTTP route lives in the server crate.

use crate::domain::analyst::analyse;
use crate::domain::evidence::EvidencePack;
use crate::domain::rules::Rules;
use serde_json::{json, Value};

/// A request the analyst cannot answer; the message is returned to the caller as a 400.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// The analyst's reply: the full response object, and the SSE rendering of it.
pub struct AnalystReply {
    pub response: Value,
    pub stream: bool,
}

pub fn answer(request: &Value) -> Result<AnalystReply, BadRequest> {
    if !request.get("input").is_some_and(Value::is_array) {
        return Err(BadRequest("'input' must be an array of input items".into()));
    }
    let custom = request.get("custom_inputs").ok_or_else(|| {
        BadRequest(
            "custom_inputs.evidence is required: the built-in analyst reads the evidence pack"
                .into(),
        )
    })?;
    let pack: EvidencePack = serde_json::from_value(
        custom.get("evidence").cloned().unwrap_or(Value::Null),
    )
    .map_err(|e| {
        BadRequest(format!(
            "custom_inputs.evidence is not an evidence pack: {e}"
        ))
    })?;
    let rules: Rules = match custom.get("rules") {
        Some(r) => serde_json::from_value(r.clone())
            .map_err(|e| BadRequest(format!("custom_inputs.rules is invalid: {e}")))?,
        None => Rules::default(),
    };
    let question = custom.get("question").and_then(Value::as_str);
    let (mut narrative, mut insight) = analyse(&pack, &rules, question);
    // With unit costs, causes are ranked by money at stake and say how much.
    if let Some(m) = &pack.materiality {
        let at = |c: &crate::domain::insight::RootCause| m.of(&c.dimension, &c.member);
        insight
            .root_causes
            .sort_by(|a, b| at(b).unwrap_or(-1.0).total_cmp(&at(a).unwrap_or(-1.0)));
        for c in &mut insight.root_causes {
            if let Some(money) = m.of(&c.dimension, &c.member) {
                c.evidence.push_str(&format!(
                    " · {} at stake",
                    crate::domain::materiality::money(money)
                ));
            }
        }
        narrative.push_str(&format!("Money at stake: {}.\n", m.summary));
    }
    // Actions the team dismissed for this card are not suggested again.
    let dismissed: Vec<(String, String)> = custom
        .pointer("/feedback/dismissed_actions")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|d| {
                    Some((
                        d.get("action")?.as_str()?.to_string(),
                        d.get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    for (action, reason) in &dismissed {
        let before = insight.next_actions.len();
        insight.next_actions.retain(|a| &a.action != action);
        if insight.next_actions.len() < before {
            narrative.push_str(&format!(
                "Not suggested again: \"{action}\" (dismissed: {reason}).\n"
            ));
        }
    }
    let response = json!({
        "object": "response",
        "output": [{
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": narrative, "annotations": []}],
        }],
        "custom_outputs": {"insight": insight, "agent": "opsight-builtin-analyst"},
    });
    Ok(AnalystReply {
        response,
        stream: request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

impl AnalystReply {
    /// SSE body: one text delta per narrative line, the done item with custom_outputs, [DONE].
    pub fn sse_body(&self) -> String {
        let item = &self.response["output"][0];
        let text = item["content"][0]["text"].as_str().unwrap_or_default();
        let mut out = String::new();
        for piece in text.split_inclusive('\n') {
            let event =
                json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": piece});
            out.push_str(&format!("data: {event}\n\n"));
        }
        let done = json!({"type": "response.output_item.done", "item": item, "custom_outputs": self.response["custom_outputs"]});
        out.push_str(&format!("data: {done}\n\ndata: [DONE]\n\n"));
        out
    }
}
