"""Opsight's reference agent: an MLflow ResponsesAgent (models-from-code).

It reads the evidence pack and business rules Opsight sends in ``custom_inputs`` and
answers with a short narrative plus the insight contract in ``custom_outputs.insight``:

    {"headline": str,
     "root_causes": [{"dimension", "member", "effect": "rate"|"mix"|"data"|"process", "impact_pp", "evidence"}],
     "next_actions": [{"action", "owner", "priority"}],
     "confidence": 0..1}

The diagnosis is deterministic (the same evidence gives the same answer): suspect data is
named before operations are blamed, a change within noise names no cause, otherwise the
segments that explain at least a fifth of the change are named with their rate or mix
effect, and next actions come from the rules' playbooks. When the environment names an
OpenAI-compatible LLM (``OPSIGHT_AGENT_LLM_BASE_URL`` and ``OPSIGHT_AGENT_LLM_MODEL``,
optional ``OPSIGHT_AGENT_LLM_API_KEY``) it only rephrases the narrative; the contract stays
deterministic. ``predict_stream`` streams the narrative word by word
(``OPSIGHT_AGENT_STREAM_DELAY_MS`` between words, default 0).

Follow-up questions see the whole conversation in ``input``. For a drill-down question
Opsight sends ``custom_inputs.lookups``: what the question asks (``intent.kind``: why,
segments, member, compare, money, actions, data, lines, since_last, outside) and what it
looked up for it (another period's figures, the failing lines, the card's last insight).
The agent answers each kind through a tool over the pack and the look-ups
(``top_segments``, ``lookup_segment``, ``period_figures``, ``money_at_stake``,
``playbook_actions``, ``data_checks``, ``failing_lines``, ``last_insight``), returning the
call and its result as ``function_call``/``function_call_output`` items (MLflow traces
them as tool spans), so the client sends them back on the next turn. Without look-ups a
question naming a segment ("what about RoadRunner?") uses ``lookup_segment``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Generator

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

MIN_EXPLAINED_SHARE = 0.2
MAX_CAUSES = 3


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f}%" if unit == "pct" else f"{v:.0f}"


def _playbook(rules: dict, cause: str) -> dict | None:
    for p in rules.get("playbooks", []):
        if p.get("cause") == cause:
            return {"action": p["action"], "owner": p["owner"], "priority": p["priority"]}
    return None


def _segments(pack: dict) -> list[tuple[str, dict]]:
    out = []
    for dim in pack.get("contributions", []):
        segs = dim.get("segments", [])
        if len(segs) < 2:
            continue
        for s in segs:
            if not s["member"].startswith("other ("):
                out.append((dim["dimension"], s))
    out.sort(key=lambda ds: (-abs(ds[1]["total"]), ds[1]["member"]))
    return out


def diagnose(pack: dict, rules: dict) -> tuple[str, dict]:
    """The narrative and the insight contract for one evidence pack."""
    scope = pack["scope"]
    unit = scope.get("unit", "pct")
    pp = "pp" if unit == "pct" else "lines"
    name, site = scope["metric_name"], scope["site_name"]
    change = pack.get("change")
    checks = pack.get("data_checks", {})
    suspect = checks.get("suspect_reasons") or []
    value_line = (
        f"{name} at {site} was {_fmt(pack.get('value'), unit)} in {pack['period']['label']} "
        f"against {_fmt(pack.get('previous_value'), unit)} the week before"
        + (f" ({change:+.1f} {pp})." if change is not None else ".")
    )
    if suspect:
        causes = []
        if checks.get("past_due_open", 0) > 0:
            causes.append({
                "dimension": "data", "member": "missing delivered dates", "effect": "data",
                "impact_pp": 0.0,
                "evidence": f"{checks['past_due_open']} of {checks['lines_due']} lines due have no delivered date",
            })
        if checks.get("failures_without_reason", 0) > 0:
            causes.append({
                "dimension": "data", "member": "missing reason codes", "effect": "data",
                "impact_pp": 0.0,
                "evidence": f"{checks['failures_without_reason']} of {checks['failures']} failures have no reason code",
            })
        actions = [a for a in [_playbook(rules, "data")] if a]
        insight = {
            "headline": f"{name} at {site} cannot be trusted yet: the data is incomplete",
            "root_causes": causes, "next_actions": actions, "confidence": 0.7,
        }
        return f"{value_line} The data checks flag: {'; '.join(suspect)}. Fix the data before acting.", insight

    noise = pack.get("noise", {})
    if change is None or not noise.get("significant", False):
        insight = {
            "headline": f"{name} at {site} moved within noise",
            "root_causes": [], "next_actions": [], "confidence": 0.6,
        }
        return f"{value_line} The change is within the week-to-week noise; no cause is named.", insight

    causes, actions = [], []
    for dimension, s in _segments(pack):
        if len(causes) >= MAX_CAUSES:
            break
        if s["total"] * change <= 0 or abs(s["total"]) < MIN_EXPLAINED_SHARE * abs(change):
            continue
        effect = "rate" if abs(s["rate"]) >= abs(s["mix"]) else "mix"
        impact = round(s[effect], 2)
        causes.append({
            "dimension": dimension, "member": s["member"], "effect": effect, "impact_pp": impact,
            "evidence": (
                f"{_fmt(s.get('previous_value'), unit)} -> {_fmt(s.get('value'), unit)} on "
                f"{s['share_pct']:.1f}% of lines ({effect} {impact:+.2f} {pp})"
            ),
        })
        book = _playbook(rules, "effect:mix" if effect == "mix" else f"dimension:{dimension}")
        if book:
            book["action"] = f"{book['action']} ({dimension} {s['member']})"
            actions.append(book)
    if causes:
        top = causes[0]
        headline = f"{name} {'fell' if change < 0 else 'rose'} {abs(change):.1f} {pp} at {site}: {top['dimension']} {top['member']}"
        narrative = value_line + " " + " ".join(
            f"{c['dimension'].capitalize()} {c['member']} explains {c['impact_pp']:+.2f} {pp} ({c['effect']})."
            for c in causes
        )
    else:
        headline = f"{name} {'fell' if change < 0 else 'rose'} {abs(change):.1f} {pp} at {site}, spread across segments"
        narrative = value_line + " No single segment explains a fifth of the change."
    return narrative, {"headline": headline, "root_causes": causes, "next_actions": actions,
                       "confidence": 0.8 if causes else 0.5}


def _llm_phrase(narrative: str, question: str) -> str:
    """Rephrases the narrative with an OpenAI-compatible LLM when one is configured."""
    base, model = os.environ.get("OPSIGHT_AGENT_LLM_BASE_URL"), os.environ.get("OPSIGHT_AGENT_LLM_MODEL")
    if not base or not model:
        return narrative
    try:
        import httpx

        headers = {}
        if os.environ.get("OPSIGHT_AGENT_LLM_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPSIGHT_AGENT_LLM_API_KEY']}"
        r = httpx.post(
            base.rstrip("/") + "/chat/completions",
            headers=headers,
            timeout=20,
            json={"model": model, "messages": [
                {"role": "system", "content": "Rephrase this KPI diagnosis for an operations manager in at most three sentences. Keep every number."},
                {"role": "user", "content": f"Question: {question}\nDiagnosis: {narrative}"},
            ]},
        )
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"].strip() or narrative
    except Exception:  # the deterministic narrative is always a valid answer
        return narrative


def _items(request: ResponsesAgentRequest) -> list[dict]:
    return [i if isinstance(i, dict) else i.model_dump(exclude_none=True) for i in request.input]


def _latest_question(items: list[dict]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            c = item.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def _lookup(pack: dict, question: str) -> tuple[str, dict] | None:
    q = question.lower()
    for dim in pack.get("contributions", []):
        for s in dim.get("segments", []):
            if s["member"].lower() in q:
                return dim["dimension"], s
    return None


def _tool_items(name: str, arguments: dict, output: Any) -> list[dict]:
    call_id = f"call_{uuid.uuid4().hex[:8]}"
    return [
        {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
         "arguments": json.dumps(arguments)},
        {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)},
    ]


@mlflow.trace(span_type="TOOL")
def top_segments(pack: dict, dimension: str | None) -> list[dict]:
    """The members that pulled the KPI the wrong way most (in one dimension, or in all)."""
    higher_is_better = pack.get("higher_is_better", True)
    hurt = []
    for dim, s in _segments(pack):
        if dimension and dim != dimension:
            continue
        harm = s["total"] if higher_is_better else -s["total"]
        if harm < 0:
            hurt.append({"dimension": dim, **s})
    hurt.sort(key=lambda s: s["total"] if higher_is_better else -s["total"])
    return hurt[:5]


@mlflow.trace(span_type="TOOL")
def lookup_segment(pack: dict, dimension: str, member: str) -> dict | None:
    """One member's figures in the pack."""
    for dim in pack.get("contributions", []):
        if dim["dimension"] == dimension:
            for s in dim.get("segments", []):
                if s["member"] == member:
                    return {"dimension": dimension, **s}
    return None


def _answer_lookups(pack: dict, rules: dict, lookups: dict) -> tuple[list[dict], str, bool]:
    """Tool items, the answer's text, and whether the diagnosis contract goes with it."""
    intent = lookups.get("intent") or {}
    ask = intent.get("ask") or {}
    kind = ask.get("kind", "why")
    scope = pack["scope"]
    unit = scope.get("unit", "pct")
    pp = "pp" if unit == "pct" else "lines"
    name, site, label = scope["metric_name"], scope["site_name"], pack["period"]["label"]
    if kind == "segments":
        found = top_segments(pack, ask.get("dimension"))
        text = (f"Hardest hit at {site} in {label}: " + "; ".join(
            f"{s['dimension']} {s['member']} {_fmt(s.get('previous_value'), unit)} -> {_fmt(s.get('value'), unit)} "
            f"({s['total']:+.2f} {pp})" for s in found) + ".") if found else f"No segment pulled {name} down at {site}."
        return _tool_items("top_segments", {"dimension": ask.get("dimension")}, found), text, False
    if kind == "member":
        s = lookup_segment(pack, ask["dimension"], ask["member"])
        text = (f"{ask['dimension']} {ask['member']} at {site}: {_fmt(s.get('previous_value'), unit)} -> "
                f"{_fmt(s.get('value'), unit)} on {s['share_pct']:.1f}% of the volume; rate {s['rate']:+.2f}, "
                f"mix {s['mix']:+.2f}, total {s['total']:+.2f} {pp}.") if s else f"{ask['member']} is not in the evidence."
        return _tool_items("lookup_segment", {"dimension": ask["dimension"], "member": ask["member"]}, s), text, False
    if kind == "compare":
        a = lookups.get("against")
        text = (f"{name} at {site} was {_fmt(pack.get('value'), unit)} in {label} against "
                f"{_fmt(a.get('value'), unit)} in {a['label']}." if a else "There is nothing to compare with in that period.")
        return _tool_items("period_figures", ask.get("against"), a), text, False
    if kind == "money":
        m = pack.get("materiality")
        text = f"Money at stake at {site}: {m['summary']}." if m else "No unit costs are loaded, so there is no money figure."
        return _tool_items("money_at_stake", {}, m), text, False
    if kind == "actions":
        _, insight = diagnose(pack, rules)
        acts = insight.get("next_actions", [])
        text = " ".join(f"{a['action']} (owner: {a['owner']}, {a['priority']} priority)." for a in acts) or "No playbook applies."
        return _tool_items("playbook_actions", {}, acts), text, True
    if kind == "data":
        c = pack.get("data_checks", {})
        text = (f"{c.get('lines_due', 0)} lines were due at {site}; {c.get('past_due_open', 0)} are past due with no "
                f"delivered date. " + ("The data checks flag: " + "; ".join(c["suspect_reasons"]) + "."
                                       if c.get("suspect_reasons") else "No data check flags this period."))
        return _tool_items("data_checks", {}, c), text, False
    if kind == "lines":
        sample = lookups.get("lines")
        if not sample:
            return [], lookups.get("unavailable") or "The lines could not be looked up.", False
        text = (f"{sample['failing']} of {sample['lines']} lines due at {site} failed {name}. "
                + " ".join(f"Order {l['order_id']} line {l['line_no']} ({l['failure']})." for l in sample["shown"][:5]))
        return _tool_items("failing_lines", {"filter": sample.get("filter")}, sample), text, False
    if kind == "since_last":
        last = lookups.get("last_insight")
        text = (f"The last insight said: {last['headline']}. {name} is {_fmt(pack.get('value'), unit)} now."
                if last else "There is no earlier insight to compare with.")
        return _tool_items("last_insight", {}, last), text, False
    if kind == "outside":
        return [], ("That is outside what this data can answer: ask why it moved, which segments are hit hardest, "
                    "how it compares with another period, what it costs, what to do, whether the data is complete, "
                    "or for the failing lines."), False
    narrative, _ = diagnose(pack, rules)
    return [], narrative, True


class OpsightAnalyst(ResponsesAgent):
    def _answer(self, request: ResponsesAgentRequest) -> tuple[list[dict], str, dict]:
        custom = request.custom_inputs or {}
        pack, rules = custom.get("evidence"), custom.get("rules") or {}
        items = _items(request)
        if not isinstance(pack, dict):
            # Not an Opsight request (e.g. MLflow's own input example at logging time):
            # say what is needed instead of failing.
            return [], "Send Opsight's evidence pack in custom_inputs.evidence to get a diagnosis.", {
                "agent": "opsight-reference-agent", "trace_id": mlflow.get_active_trace_id()}
        question = custom.get("question") or _latest_question(items)
        earlier_turns = sum(1 for i in items if i.get("role") == "user") - 1
        narrative, insight = diagnose(pack, rules)
        lookups = custom.get("lookups")
        if isinstance(lookups, dict):
            tool_items, text, with_contract = _answer_lookups(pack, rules, lookups)
            custom_outputs = {
                "agent": "opsight-reference-agent",
                "earlier_turns": earlier_turns,
                "input_item_types": sorted({i.get("type", "message") for i in items}),
                "trace_id": mlflow.get_active_trace_id(),
            }
            if with_contract:
                custom_outputs["insight"] = insight
            return tool_items, _llm_phrase(text, question), custom_outputs
        tool_items: list[dict] = []
        found = _lookup(pack, question) if earlier_turns > 0 else None
        if found:
            dimension, s = found
            tool_items = _tool_items("lookup_segment", {"dimension": dimension, "member": s["member"]},
                                     {"dimension": dimension, **s})
            unit = pack["scope"].get("unit", "pct")
            narrative = (
                f"{dimension.capitalize()} {s['member']}: {_fmt(s.get('previous_value'), unit)} -> "
                f"{_fmt(s.get('value'), unit)}, share {s['previous_share_pct']:.1f}% -> {s['share_pct']:.1f}%, "
                f"rate {s['rate']:+.2f}, mix {s['mix']:+.2f}, total {s['total']:+.2f}. " + narrative
            )
        elif earlier_turns > 0 and insight.get("next_actions"):
            # A follow-up that names no segment: lead with what to do.
            first, *rest = insight["next_actions"]
            narrative = (
                f"Start with: {first['action']} (owner: {first['owner']}, {first['priority']} priority)."
                + (" Then: " + "; ".join(a["action"] for a in rest) + "." if rest else "")
                + " Why: " + narrative
            )
        narrative = _llm_phrase(narrative, question)
        custom_outputs = {
            "insight": insight,
            "agent": "opsight-reference-agent",
            "earlier_turns": earlier_turns,
            "input_item_types": sorted({i.get("type", "message") for i in items}),
            "trace_id": mlflow.get_active_trace_id(),
        }
        return tool_items, narrative, custom_outputs

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        tool_items, narrative, custom_outputs = self._answer(request)
        message = self.create_text_output_item(text=narrative, id="msg_1")
        return ResponsesAgentResponse(output=tool_items + [message], custom_outputs=custom_outputs)

    def predict_stream(self, request: ResponsesAgentRequest) -> Generator[ResponsesAgentStreamEvent, None, None]:
        tool_items, narrative, custom_outputs = self._answer(request)
        for item in tool_items:
            yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
        delay = int(os.environ.get("OPSIGHT_AGENT_STREAM_DELAY_MS", "0")) / 1000.0
        words = narrative.split(" ")
        for i, word in enumerate(words):
            if delay and i:
                time.sleep(delay)
            yield ResponsesAgentStreamEvent(
                **self.create_text_delta(delta=word + ("" if i == len(words) - 1 else " "), item_id="msg_1")
            )
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=self.create_text_output_item(text=narrative, id="msg_1"),
            custom_outputs=custom_outputs,
        )


AGENT = OpsightAnalyst()
mlflow.models.set_model(AGENT)
