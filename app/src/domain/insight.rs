//! The insight contract, and how it is read out of a ResponsesAgent reply.
//!
//! An agent returns, in `custom_outputs.insight` (preferred) or as a JSON block in its text:
//!
//! ```json
//! {"headline": "OTIF fell 4.1 pp at DAL: RoadRunner got late",
//!  "root_causes": [{"dimension": "carrier", "member": "RoadRunner", "effect": "rate",
//!                   "impact_pp": -3.2, "evidence": "on-time 95% -> 71% on 22% of lines"}],
//!  "next_actions": [{"action": "Move lanes to the backup carrier", "owner": "Transport manager",
//!                    "priority": "high"}],
//!  "confidence": 0.8}
//! ```
//!
//! `effect` is `rate` (the segment's own performance moved), `mix` (its share of volume moved)
//! or `data` (the data is suspect). `impact_pp` is the segment's contribution to the change
//! in points (percentage points for ratio KPIs). `confidence` is 0..1. When neither place
//! has a valid contract, the reply's text is kept as the narrative.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Rate,
    Mix,
    Data,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    pub dimension: String,
    pub member: String,
    pub effect: Effect,
    pub impact_pp: f64,
    pub evidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextAction {
    pub action: String,
    pub owner: String,
    pub priority: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub headline: String,
    pub root_causes: Vec<RootCause>,
    pub next_actions: Vec<NextAction>,
    pub confidence: f64,
}

/// Where the contract was found in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractSource {
    CustomOutputs,
    TextJson,
    /// No contract: only the narrative text.
    Narrative,
}

/// What a reply boiled down to.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentAnswer {
    /// Concatenated `output_text` of all message items.
    pub text: String,
    pub insight: Option<Insight>,
    pub source: ContractSource,
    pub trace_id: Option<String>,
}

/// Why a reply could not be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplyError {
    #[error("the agent reply is not valid JSON")]
    Malformed,
    #[error("the agent reported an error in its reply")]
    InBandError,
    #[error("the agent reply has no text and no insight")]
    Empty,
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Insight {
    /// Reads a contract leniently: unknown fields are ignored, malformed causes or actions
    /// are dropped, `confidence` may be a number or low/medium/high. A headline is required.
    pub fn from_value(v: &Value) -> Option<Insight> {
        let headline = text_of(v, "headline")?;
        let root_causes = v
            .get("root_causes")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| {
                        Some(RootCause {
                            dimension: text_of(c, "dimension")?,
                            member: text_of(c, "member")?,
                            effect: serde_json::from_value(c.get("effect")?.clone()).ok()?,
                            impact_pp: c.get("impact_pp").and_then(Value::as_f64).unwrap_or(0.0),
                            evidence: text_of(c, "evidence").unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next_actions = v
            .get("next_actions")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|a| {
                        Some(NextAction {
                            action: text_of(a, "action")?,
                            owner: text_of(a, "owner").unwrap_or_else(|| "unassigned".into()),
                            priority: text_of(a, "priority").unwrap_or_else(|| "medium".into()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let confidence = match v.get("confidence") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.5),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "high" => 0.9,
                "low" => 0.3,
                _ => 0.6,
            },
            _ => 0.5,
        }
        .clamp(0.0, 1.0);
        Some(Insight {
            headline,
            root_causes,
            next_actions,
            confidence,
        })
    }
}

/// Finds a JSON object holding a contract inside free text: a fenced ```json block first,
/// else the outermost `{...}`.
pub fn insight_from_text(text: &str) -> Option<Insight> {
    let mut candidates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        candidates.push(&after[body_start..body_start + end]);
        rest = &after[body_start + end + 3..];
    }
    if let (Some(a), Some(b)) = (text.find('{'), text.rfind('}')) {
        if a < b {
            candidates.push(&text[a..=b]);
        }
    }
    candidates.into_iter().find_map(|c| {
        let v: Value = serde_json::from_str(c.trim()).ok()?;
        Insight::from_value(v.get("insight").unwrap_or(&v))
    })
}

/// Concatenates the `output_text` parts of every `message` item; other item types
/// (function calls, reasoning, unknown kinds) are skipped.
pub fn output_text(items: &[Value]) -> String {
    let mut parts = Vec::new();
    for item in items {
        if item.get("type").and_then(Value::as_str) != Some("message") {
            continue;
        }
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if part.get("type").and_then(Value::as_str) == Some("output_text") {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    parts.push(t);
                }
            }
        }
    }
    parts.join("\n")
}

fn finish(
    text: String,
    custom_outputs: Option<&Value>,
    trace_id: Option<String>,
) -> Result<AgentAnswer, ReplyError> {
    let from_custom = custom_outputs
        .and_then(|c| c.get("insight"))
        .and_then(Insight::from_value);
    let trace_id = trace_id.or_else(|| custom_outputs.and_then(|c| text_of(c, "trace_id")));
    let (insight, source) = match from_custom {
        Some(i) => (Some(i), ContractSource::CustomOutputs),
        None => match insight_from_text(&text) {
            Some(i) => (Some(i), ContractSource::TextJson),
            None => (None, ContractSource::Narrative),
        },
    };
    if insight.is_none() && text.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    Ok(AgentAnswer {
        text,
        insight,
        source,
        trace_id,
    })
}

/// Interprets a non-streaming ResponsesAgentResponse.
pub fn answer_from_json(body: &[u8]) -> Result<AgentAnswer, ReplyError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ReplyError::Malformed)?;
    if !v.is_object() {
        return Err(ReplyError::Malformed);
    }
    if v.get("error").is_some_and(|e| !e.is_null()) && v.get("output").is_none() {
        return Err(ReplyError::InBandError);
    }
    let items = v
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let trace_id = v.get("metadata").and_then(|m| text_of(m, "trace_id"));
    finish(output_text(&items), v.get("custom_outputs"), trace_id)
}

/// Interprets an SSE stream of ResponsesAgentStreamEvents (`data: <json>` lines ending in
/// `data: [DONE]`). The final answer is the items of the `response.output_item.done` events;
/// deltas are only used when a stream has no done events.
pub fn answer_from_sse(body: &str) -> Result<AgentAnswer, ReplyError> {
    let mut done_items: Vec<Value> = Vec::new();
    let mut deltas: Vec<(String, String)> = Vec::new();
    let mut custom_outputs: Option<Value> = None;
    let mut trace_id = None;
    let mut saw_event = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        saw_event = true;
        if let Some(c) = event.get("custom_outputs").filter(|c| c.is_object()) {
            custom_outputs = Some(c.clone());
        }
        if let Some(t) = text_of(&event, "trace_id") {
            trace_id = Some(t);
        }
        match event.get("type").and_then(Value::as_str) {
            None if event.get("error").is_some() => return Err(ReplyError::InBandError),
            Some("error") => return Err(ReplyError::InBandError),
            Some("response.output_text.delta") => {
                let id = text_of(&event, "item_id").unwrap_or_default();
                let delta = event
                    .get("delta")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match deltas.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, text)) => text.push_str(delta),
                    None => deltas.push((id, delta.to_string())),
                }
            }
            Some("response.output_item.done") => {
                if let Some(item) = event.get("item") {
                    done_items.push(item.clone());
                }
            }
            Some("response.completed") => {
                if let Some(items) = event.pointer("/response/output").and_then(Value::as_array) {
                    if done_items.is_empty() {
                        done_items = items.clone();
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_event {
        return Err(ReplyError::Malformed);
    }
    let text = if done_items.is_empty() {
        deltas
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        output_text(&done_items)
    };
    finish(text, custom_outputs.as_ref(), trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract() -> Value {
        json!({"headline": "OTIF down at DAL", "confidence": 0.8,
               "root_causes": [{"dimension": "carrier", "member": "RoadRunner", "effect": "rate",
                                "impact_pp": -3.1, "evidence": "late"},
                               {"dimension": "x", "effect": "bogus"}],
               "next_actions": [{"action": "call carrier", "owner": "TM", "priority": "high"}]})
    }

    #[test]
    fn reads_contract_from_custom_outputs() {
        let body = json!({"object": "response",
            "output": [{"type": "message", "id": "m", "role": "assistant",
                        "content": [{"type": "output_text", "text": "hello", "annotations": []}]},
                       {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                       {"type": "something_new"}],
            "custom_outputs": {"insight": contract(), "trace_id": "tr-1"}});
        let a = answer_from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(a.source, ContractSource::CustomOutputs);
        assert_eq!(a.text, "hello");
        assert_eq!(a.trace_id.as_deref(), Some("tr-1"));
        let i = a.insight.unwrap();
        assert_eq!(i.root_causes.len(), 1, "the malformed cause is dropped");
        assert_eq!(i.root_causes[0].effect, Effect::Rate);
        assert_eq!(i.next_actions[0].owner, "TM");
    }

    #[test]
    fn reads_contract_from_a_json_block_in_text() {
        let text = format!("Here is my analysis.\n```json\n{}\n```\nThanks", contract());
        let body = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]});
        let a = answer_from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(a.source, ContractSource::TextJson);
        assert_eq!(a.insight.unwrap().headline, "OTIF down at DAL");
    }

    #[test]
    fn keeps_plain_text_as_narrative() {
        let body = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "All fine {not json}"}]}]});
        let a = answer_from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(a.source, ContractSource::Narrative);
        assert!(a.insight.is_none());
        assert_eq!(a.text, "All fine {not json}");
    }

    #[test]
    fn rejects_malformed_and_empty_replies() {
        assert_eq!(
            answer_from_json(b"<html>oops</html>"),
            Err(ReplyError::Malformed)
        );
        assert_eq!(answer_from_json(b"[1,2]"), Err(ReplyError::Malformed));
        assert_eq!(
            answer_from_json(br#"{"output": []}"#),
            Err(ReplyError::Empty)
        );
        assert_eq!(
            answer_from_json(br#"{"error": {"message": "x"}}"#),
            Err(ReplyError::InBandError)
        );
    }

    #[test]
    fn reads_sse_done_items_and_custom_outputs() {
        let done = json!({"type": "response.output_item.done",
            "custom_outputs": {"insight": contract()},
            "item": {"type": "message", "id": "msg_1", "role": "assistant",
                     "content": [{"type": "output_text", "text": "echo: hello there"}]}});
        let body = format!(
            "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {{\"trace_id\": \"tr-9\"}}\n\ndata: [DONE]\n\n",
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "echo:"}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": " hello"}),
            done
        );
        let a = answer_from_sse(&body).unwrap();
        assert_eq!(a.text, "echo: hello there");
        assert_eq!(a.trace_id.as_deref(), Some("tr-9"));
        assert_eq!(a.source, ContractSource::CustomOutputs);
    }

    #[test]
    fn sse_with_only_deltas_or_an_error_event() {
        let body = "data: {\"type\": \"response.output_text.delta\", \"item_id\": \"a\", \"delta\": \"part 1\"}\n\ndata: {\"type\": \"response.output_text.delta\", \"item_id\": \"a\", \"delta\": \", part 2\"}\n\ndata: [DONE]\n";
        assert_eq!(answer_from_sse(body).unwrap().text, "part 1, part 2");
        let err = "data: {\"error\": \"fixture: requested failure\"}\n\ndata: [DONE]\n";
        assert_eq!(answer_from_sse(err), Err(ReplyError::InBandError));
        assert_eq!(answer_from_sse("garbage"), Err(ReplyError::Malformed));
    }

    #[test]
    fn confidence_accepts_words_and_clamps() {
        let v = json!({"headline": "h", "confidence": "high"});
        assert_eq!(Insight::from_value(&v).unwrap().confidence, 0.9);
        let v = json!({"headline": "h", "confidence": 7});
        assert_eq!(Insight::from_value(&v).unwrap().confidence, 1.0);
        assert!(Insight::from_value(&json!({"headline": "  "})).is_none());
    }
}
