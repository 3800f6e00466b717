//! Request bodies: the ResponsesAgent request for an evidence pack (and a conversation's
//! earlier turns), and its adaptation to each kind of server.

use super::profile::{AgentKind, AgentProfile};
use crate::domain::evidence::EvidencePack;
use crate::domain::rules::Rules;
use serde_json::{json, Value};

/// The system prompt: instructions and the contract. The rules travel as JSON below it.
pub const INSTRUCTIONS: &str = "You are an operations analyst for distribution centres. \
Explain why the KPI moved using only the evidence pack in custom_inputs.evidence (values in percent, \
changes in percentage points; contributions split into mix = share of volume moved and rate = the \
segment's own performance moved; they add up to the total change). If the data checks say the data \
is suspect, name the data problem and do not blame operations. If the change is within noise, say so \
and name no cause. A reason code that explains the change across every segment is a process cause \
(effect \"process\", dimension \"reason\"; its points are in evidence.tree_change). For a drill-down \
question, custom_inputs.lookups says what is asked (intent) and holds what Opsight looked up for it \
(another period, failing lines, the last insight): answer that question from it. Quote only figures \
and names found in custom_inputs: every number and name you write is checked. Suggest next actions \
from the playbooks in the business rules. Reply with a short \
narrative and put the insight contract in custom_outputs.insight (or a ```json block): \
{\"headline\": str, \"root_causes\": [{\"dimension\": str, \"member\": str, \"effect\": \"rate\"|\"mix\"|\"data\"|\"process\", \
\"impact_pp\": number, \"evidence\": str}], \"next_actions\": [{\"action\": str, \"owner\": str, \
\"priority\": \"high\"|\"medium\"|\"low\"}], \"confidence\": number 0..1}.";

/// The opening items of a conversation: the system message (instructions and rules) and
/// the first question with the pack's summary.
pub fn opening_items(pack: &EvidencePack, rules: &Rules, question: &str) -> Vec<Value> {
    // Agents see only the rules in force; disabled rows stay in the editor.
    let rules_json = serde_json::to_string(&rules.in_force()).unwrap_or_default();
    vec![
        json!({"role": "system", "content": format!("{INSTRUCTIONS}\n\nBusiness rules (version {}):\n{rules_json}", rules.version)}),
        json!({"role": "user", "content": format!("{question}\n\n{}", pack.summary())}),
    ]
}

/// A follow-up question, appended after the earlier turns' items.
pub fn follow_up_item(question: &str) -> Value {
    json!({"role": "user", "content": question})
}

/// The ResponsesAgent request: the whole conversation in `input` (there is no server-side
/// history), the pack and rules in `custom_inputs` on every turn, and the
/// `ChatContext` (the conversation, and who asks when someone does).
pub fn request_for(
    pack: &EvidencePack,
    rules: &Rules,
    input: Vec<Value>,
    question: &str,
    conversation_id: &str,
    user_id: Option<&str>,
) -> Value {
    let mut context = json!({"conversation_id": conversation_id});
    if let Some(user) = user_id.filter(|u| !u.is_empty()) {
        context["user_id"] = json!(user);
    }
    json!({
        "input": input,
        "custom_inputs": {"evidence": pack, "rules": rules.in_force(), "question": question},
        "context": context,
    })
}

/// The request for a one-shot card refresh.
pub fn build_request(pack: &EvidencePack, rules: &Rules, question: &str) -> Value {
    let conversation_id = format!(
        "{}:{}:{}",
        pack.scope.site,
        pack.scope.metric.key(),
        pack.period.start
    );
    request_for(
        pack,
        rules,
        opening_items(pack, rules, question),
        question,
        &conversation_id,
        None,
    )
}

/// Adapts a ResponsesAgent request to the server kind. `stream` is asked for where the
/// server can stream; the reply's Content-Type still decides how it is read.
pub fn for_kind(profile: &AgentProfile, request: &Value, stream: bool) -> Value {
    let mut body = request.clone();
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    match profile.kind {
        AgentKind::MlflowServe => {
            // Ignored by the scoring server; sent anyway so a proxy in front can stream.
            obj.insert("stream".into(), json!(stream));
        }
        AgentKind::MlflowAgentServer | AgentKind::Builtin => {
            obj.insert("stream".into(), json!(stream));
        }
        AgentKind::Databricks => {
            obj.insert("stream".into(), json!(stream));
            obj.insert("databricks_options".into(), json!({"return_trace": true}));
        }
        AgentKind::OpenaiResponses => return openai_body(profile, request, stream),
    }
    body
}

/// OpenAI Responses takes no `custom_inputs` or `context`: the evidence pack goes into the
/// system message as JSON and the contract is asked for as a JSON block.
fn openai_body(profile: &AgentProfile, request: &Value, stream: bool) -> Value {
    let custom = request.get("custom_inputs").cloned().unwrap_or(Value::Null);
    let evidence =
        serde_json::to_string(custom.get("evidence").unwrap_or(&Value::Null)).unwrap_or_default();
    let mut input: Vec<Value> = request
        .get("input")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let appendix = format!(
        "\n\nThere is no custom_inputs on this server: the evidence pack is this JSON.\n\
         Evidence pack (JSON):\n{evidence}\n\nEnd your reply with the insight contract as one \
         ```json block."
    );
    match input
        .iter_mut()
        .find(|i| i.get("role").and_then(Value::as_str) == Some("system"))
    {
        Some(system) => {
            let text = system
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            system["content"] = json!(format!("{text}{appendix}"));
        }
        None => input.insert(
            0,
            json!({"role": "system", "content": appendix.trim_start()}),
        ),
    }
    let mut body = json!({
        "model": profile.llm_model.clone().unwrap_or_default(),
        "input": input,
        "stream": stream,
    });
    if let Some(conversation) = request.pointer("/context/conversation_id") {
        body["metadata"] = json!({"conversation_id": conversation});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({"input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"}],
               "custom_inputs": {"evidence": {"value": 91.5}, "rules": {}, "question": "why?"},
               "context": {"conversation_id": "c-1"}})
    }

    #[test]
    fn databricks_asks_for_the_trace_and_agent_server_for_a_stream() {
        let mut db = AgentProfile::new("db", AgentKind::Databricks, "https://x");
        db.endpoint = Some("e".into());
        let b = for_kind(&db, &request(), false);
        assert_eq!(b["databricks_options"]["return_trace"], json!(true));
        assert_eq!(b["custom_inputs"]["evidence"]["value"], json!(91.5));
        let s = AgentProfile::new("s", AgentKind::MlflowAgentServer, "http://x");
        assert_eq!(for_kind(&s, &request(), true)["stream"], json!(true));
    }

    #[test]
    fn openai_gets_the_evidence_in_the_messages_and_no_custom_inputs() {
        let mut o = AgentProfile::new("o", AgentKind::OpenaiResponses, "http://x");
        o.llm_model = Some("gpt-x".into());
        let b = for_kind(&o, &request(), true);
        assert!(b.get("custom_inputs").is_none() && b.get("context").is_none());
        assert_eq!(b["model"], json!("gpt-x"));
        let system = b["input"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("be brief") && system.contains("{\"value\":91.5}"));
        assert!(system.contains("```json"));
        assert_eq!(b["input"][1]["content"], json!("why?"));
    }
}
