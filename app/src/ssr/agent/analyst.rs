//! The built-in analyst over the ResponsesAgent protocol: reads `custom_inputs.evidence`,
//! `custom_inputs.rules` and, for a drill-down question, `custom_inputs.lookups` (what the
//! question asks and what Opsight looked up for it) from a request, and answers with a
//! message item plus `custom_outputs.insight` (for diagnoses), as JSON or (when
//! `"stream": true`) as SSE events in the shape MLflow's AgentServer emits, each line sent
//! as it is composed. The HTTP route lives in the server crate.

use crate::domain::analyst::analyse;
use crate::domain::answer::{self, Writer};
use crate::domain::evidence::EvidencePack;
use crate::domain::question::Lookups;
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

/// Answers `request`, handing each line of text to `sink` as it is composed.
pub fn answer(request: &Value, sink: &mut dyn FnMut(&str)) -> Result<AnalystReply, BadRequest> {
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
    let lookups: Option<Lookups> = match custom.get("lookups") {
        Some(l) => Some(
            serde_json::from_value(l.clone())
                .map_err(|e| BadRequest(format!("custom_inputs.lookups is invalid: {e}")))?,
        ),
        None => None,
    };
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
    let mut out = Writer::new(sink);
    let (mut narrative, insight) = match &lookups {
        Some(l) => {
            let offered: Vec<String> = dismissed.iter().map(|(a, _)| a.clone()).collect();
            let insight = answer::answer(&pack, &rules, l, &offered, &mut out);
            (std::mem::take(&mut out.text), insight)
        }
        None => {
            let question = custom.get("question").and_then(Value::as_str);
            let (narrative, insight) = analyse(&pack, &rules, question);
            for line in narrative.lines() {
                out.line(line);
            }
            (narrative, Some(insight))
        }
    };
    let Some(mut insight) = insight else {
        return Ok(reply(request, narrative, None));
    };
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
        let line = format!("Money at stake: {}.", m.summary);
        out.line(&line);
        narrative.push_str(&line);
        narrative.push('\n');
    }
    for (action, reason) in &dismissed {
        let before = insight.next_actions.len();
        insight.next_actions.retain(|a| &a.action != action);
        if insight.next_actions.len() < before {
            let line = format!("Not suggested again: \"{action}\" (dismissed: {reason}).");
            out.line(&line);
            narrative.push_str(&line);
            narrative.push('\n');
        }
    }
    Ok(reply(request, narrative, Some(insight)))
}

fn reply(
    request: &Value,
    narrative: String,
    insight: Option<crate::domain::insight::Insight>,
) -> AnalystReply {
    let mut custom_outputs = json!({"agent": "opsight-builtin-analyst"});
    if let Some(i) = insight {
        custom_outputs["insight"] = json!(i);
    }
    let response = json!({
        "object": "response",
        "output": [{
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": narrative, "annotations": []}],
        }],
        "custom_outputs": custom_outputs,
    });
    AnalystReply {
        response,
        stream: request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// One SSE event carrying a piece of text, as it is composed.
pub fn sse_delta(piece: &str) -> String {
    let event = json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": piece});
    format!("data: {event}\n\n")
}

impl AnalystReply {
    /// The SSE events that close a stream: the done item with custom_outputs, [DONE].
    pub fn sse_end(&self) -> String {
        let item = &self.response["output"][0];
        let done = json!({"type": "response.output_item.done", "item": item, "custom_outputs": self.response["custom_outputs"]});
        format!("data: {done}\n\ndata: [DONE]\n\n")
    }
}
