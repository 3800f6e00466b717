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
//! `data` (the data is suspect) or `process` (a reason code's part of the change, from the
//! KPI tree: a failing process no single segment explains). `impact_pp` is the segment's contribution to the change
//! in points (percentage points for ratio KPIs). `confidence` is 0..1. When neither place
//! has a valid contract, the reply's text is kept as the narrative.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Rate,
    Mix,
    Data,
    /// A process failing across segments: a reason code's part of the change, from the
    /// KPI tree (`dimension` = `reason`, `member` = the code).
    Process,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RootCause {
    pub dimension: String,
    pub member: String,
    pub effect: Effect,
    pub impact_pp: f64,
    pub evidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NextAction {
    pub action: String,
    pub owner: String,
    pub priority: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Insight {
    pub headline: String,
    pub root_causes: Vec<RootCause>,
    pub next_actions: Vec<NextAction>,
    pub confidence: f64,
}

/// Where the contract was found in the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractSource {
    CustomOutputs,
    TextJson,
    /// No contract: only the narrative text.
    Narrative,
}

/// Token counts an agent reported (`usage`), when it did.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
}

/// What a reply boiled down to.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentAnswer {
    /// Concatenated `output_text` of all message items.
    pub text: String,
    pub insight: Option<Insight>,
    pub source: ContractSource,
    pub trace_id: Option<String>,
    /// The reply's output items, as sent back in `input` on a follow-up turn.
    pub items: Vec<Value>,
    pub usage: Option<Usage>,
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
    #[error("the agent's stream ended before it finished")]
    Cut,
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

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let usage = Usage {
        input_tokens: u.get("input_tokens").and_then(Value::as_i64),
        output_tokens: u.get("output_tokens").and_then(Value::as_i64),
    };
    (usage != Usage::default()).then_some(usage)
}

/// The trace id wherever a server put it: AgentServer's `metadata.trace_id`, Databricks'
/// `databricks_output.trace.info.trace_id`, or the agent's own `custom_outputs.trace_id`.
fn trace_id_of(v: &Value) -> Option<String> {
    v.get("metadata")
        .and_then(|m| text_of(m, "trace_id"))
        .or_else(|| {
            v.pointer("/databricks_output/trace/info")
                .and_then(|i| text_of(i, "trace_id"))
        })
        .or_else(|| v.get("custom_outputs").and_then(|c| text_of(c, "trace_id")))
}

fn finish(
    text: String,
    custom_outputs: Option<&Value>,
    trace_id: Option<String>,
    items: Vec<Value>,
    usage: Option<Usage>,
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
        items,
        usage,
    })
}

/// Interprets a non-streaming ResponsesAgentResponse (or an OpenAI Responses object).
pub fn answer_from_json(body: &[u8]) -> Result<AgentAnswer, ReplyError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ReplyError::Malformed)?;
    if !v.is_object() {
        return Err(ReplyError::Malformed);
    }
    if v.get("error").is_some_and(|e| !e.is_null())
        && v.get("output")
            .and_then(Value::as_array)
            .is_none_or(|o| o.is_empty())
    {
        return Err(ReplyError::InBandError);
    }
    let items = v
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    finish(
        output_text(&items),
        v.get("custom_outputs"),
        trace_id_of(&v),
        items,
        usage_of(&v),
    )
}

/// Splits an SSE byte stream into the payloads of its events (`data:` lines joined by
/// newlines; `event:`, `id:` and comment lines ignored). Feed chunks as they arrive: an
/// event split across chunks is held until its blank line.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl SseDecoder {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        out
    }

    /// The last event when the stream ends without a blank line after it.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let rest = String::from_utf8_lossy(&rest);
        for line in rest.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }
}

/// What one stream event means for a live view.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamStep {
    /// Text to append to the message being written.
    Delta(String),
    /// The stream is over (`[DONE]` or `response.completed`).
    Done,
    Nothing,
}

/// Folds ResponsesAgentStreamEvents into an answer, one event at a time, as MLflow itself
/// reduces streams: the final answer is the items of the `response.output_item.done`
/// events; deltas are for display and only used when a stream has no done events.
#[derive(Debug, Default)]
pub struct StreamFold {
    done_items: Vec<Value>,
    deltas: Vec<(String, String)>,
    custom_outputs: Option<Value>,
    trace_id: Option<String>,
    usage: Option<Usage>,
    saw_event: bool,
    finished: bool,
    error: bool,
}

impl StreamFold {
    /// Applies one event payload (the text after `data:`).
    pub fn apply(&mut self, data: &str) -> StreamStep {
        let data = data.trim();
        if data == "[DONE]" {
            self.finished = true;
            return StreamStep::Done;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return StreamStep::Nothing;
        };
        self.saw_event = true;
        if let Some(c) = event.get("custom_outputs").filter(|c| c.is_object()) {
            self.custom_outputs = Some(c.clone());
        }
        if let Some(t) = text_of(&event, "trace_id").or_else(|| {
            event
                .pointer("/databricks_output/trace/info")
                .and_then(|i| text_of(i, "trace_id"))
        }) {
            self.trace_id = Some(t);
        }
        match event.get("type").and_then(Value::as_str) {
            None if event.get("error").is_some() => {
                self.error = true;
                StreamStep::Done
            }
            Some("error") | Some("response.failed") => {
                self.error = true;
                StreamStep::Done
            }
            Some("response.output_text.delta") => {
                let id = text_of(&event, "item_id").unwrap_or_default();
                let delta = event
                    .get("delta")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match self.deltas.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, text)) => text.push_str(&delta),
                    None => self.deltas.push((id, delta.clone())),
                }
                StreamStep::Delta(delta)
            }
            Some("response.output_item.done") => {
                if let Some(item) = event.get("item") {
                    self.done_items.push(item.clone());
                }
                StreamStep::Nothing
            }
            Some("response.completed") => {
                if let Some(response) = event.get("response") {
                    if self.done_items.is_empty() {
                        if let Some(items) = response.get("output").and_then(Value::as_array) {
                            self.done_items = items.clone();
                        }
                    }
                    if let Some(c) = response.get("custom_outputs").filter(|c| c.is_object()) {
                        self.custom_outputs = Some(c.clone());
                    }
                    self.usage = usage_of(response).or(self.usage);
                    if self.trace_id.is_none() {
                        self.trace_id = trace_id_of(response);
                    }
                }
                // OpenAI-style streams end here, without [DONE].
                self.finished = true;
                StreamStep::Done
            }
            _ => StreamStep::Nothing,
        }
    }

    /// The answer once the stream has ended (cleanly or not).
    pub fn finish(self) -> Result<AgentAnswer, ReplyError> {
        if self.error {
            return Err(ReplyError::InBandError);
        }
        if !self.saw_event {
            return Err(ReplyError::Malformed);
        }
        if !self.finished {
            return Err(ReplyError::Cut);
        }
        let text = if self.done_items.is_empty() {
            self.deltas
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            output_text(&self.done_items)
        };
        let items = if self.done_items.is_empty() && !text.is_empty() {
            vec![
                serde_json::json!({"type": "message", "id": "msg_1", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}),
            ]
        } else {
            self.done_items
        };
        finish(
            text,
            self.custom_outputs.as_ref(),
            self.trace_id,
            items,
            self.usage,
        )
    }
}

/// Interprets a whole SSE body of ResponsesAgentStreamEvents (`data: <json>` events ending
/// in `data: [DONE]`).
pub fn answer_from_sse(body: &str) -> Result<AgentAnswer, ReplyError> {
    let mut decoder = SseDecoder::default();
    let mut fold = StreamFold::default();
    let mut events = decoder.push(body.as_bytes());
    events.extend(decoder.finish());
    for data in events {
        if fold.apply(&data) == StreamStep::Done {
            break;
        }
    }
    fold.finish()
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
        let cut = "data: {\"type\": \"response.output_text.delta\", \"item_id\": \"a\", \"delta\": \"part 1\"}\n\n";
        assert_eq!(answer_from_sse(cut), Err(ReplyError::Cut));
    }

    #[test]
    fn sse_decoder_joins_events_split_across_chunks() {
        let mut d = SseDecoder::default();
        assert!(d.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            d.push(b" 1}\r\n\r\nevent: x\ndata: [DONE]\n"),
            vec!["{\"a\": 1}"]
        );
        assert_eq!(d.push(b"\n"), vec!["[DONE]"]);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn openai_streams_end_at_response_completed_and_carry_usage() {
        let completed = json!({"type": "response.completed", "response": {
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "done text"}]}],
            "usage": {"input_tokens": 120, "output_tokens": 30}}});
        let body = format!("event: response.completed\ndata: {completed}\n\n");
        let a = answer_from_sse(&body).unwrap();
        assert_eq!(a.text, "done text");
        assert_eq!(
            a.usage,
            Some(Usage {
                input_tokens: Some(120),
                output_tokens: Some(30)
            })
        );
    }

    #[test]
    fn trace_ids_come_from_every_place_servers_put_them() {
        let msg = json!([{"type": "message", "content": [{"type": "output_text", "text": "t"}]}]);
        let agent_server = json!({"output": msg, "metadata": {"trace_id": "tr-a"}});
        let databricks =
            json!({"output": msg, "databricks_output": {"trace": {"info": {"trace_id": "tr-d"}}}});
        let custom = json!({"output": msg, "custom_outputs": {"trace_id": "tr-c"}});
        for (body, want) in [
            (agent_server, "tr-a"),
            (databricks, "tr-d"),
            (custom, "tr-c"),
        ] {
            let a = answer_from_json(body.to_string().as_bytes()).unwrap();
            assert_eq!(a.trace_id.as_deref(), Some(want));
            assert_eq!(a.items.len(), 1);
        }
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
