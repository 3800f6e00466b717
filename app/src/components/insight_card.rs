//! The insight card: headline, root causes with their numbers and whether the data
//! supports them, next actions (acknowledge, assign, done, dismiss; recovery after done),
//! provenance (agent, model version, lineage link), feedback,
//! and its stale or error state. "Refresh insight" runs the agent now and updates the card
//! in place (a server action; no page reload); the question box below streams a
//! drill-down answer.

use crate::api::{GiveFeedback, RefreshInsight, UpdateAction};
use crate::components::ask::AskBox;
use crate::domain::actions::{ActionState, ActionView};
use crate::domain::claims::Claim;
use crate::domain::grounding::Grounding;
use crate::domain::insight::{Effect as CauseEffect, RootCause};
use crate::domain::kpi::signed;
use crate::domain::status::FeedbackSync;
use crate::dto::{ActionChange, Card, FeedbackInput, InsightView, RefreshRequest};
use leptos::prelude::*;

fn effect_label(e: CauseEffect) -> &'static str {
    match e {
        CauseEffect::Rate => "rate",
        CauseEffect::Mix => "mix",
        CauseEffect::Data => "data",
        CauseEffect::Process => "process",
    }
}

/// `2026-11-21T09:30:12.123456Z` → `2026-11-21 09:30 UTC`.
fn when(ts: &str) -> String {
    match (ts.get(0..10), ts.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => ts.to_string(),
    }
}

/// Root causes, each marked with what the data says about it.
#[component]
pub fn CauseList(causes: Vec<RootCause>, grounding: Vec<Grounding>, unit: &'static str) -> AnyView {
    view! {
        <div class="causes">
            <h4>"Root causes"</h4>
            <ul>
                {causes.into_iter().enumerate().map(|(i, c)| {
                    let check = grounding.get(i).cloned();
                    let class = match &check {
                        Some(g) if g.supported => "supported",
                        Some(_) => "unsupported",
                        None => "",
                    };
                    view! {
                        <li class=class>
                            <span class=format!("effect {}", effect_label(c.effect))>{effect_label(c.effect)}</span>
                            <strong>{format!("{} {}", c.dimension, c.member)}</strong>
                            <span class="impact">{format!("{} {unit}", signed(c.impact_pp, 1))}</span>
                            <div class="evidence">{c.evidence}</div>
                            {check.map(|g| view! {
                                <div class=if g.supported { "grounding ok" } else { "grounding bad" } data-supported=g.supported.to_string()>
                                    {if g.supported {
                                        format!("✓ supported by the data: {}", g.note)
                                    } else {
                                        format!("✗ not supported by the data: {}", g.note)
                                    }}
                                </div>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

/// The text check: what the answer wrote that the evidence does not hold, each with where
/// it was written and why; or that every figure and name it wrote matches.
#[component]
pub fn ClaimCheck(claims: Vec<Claim>) -> AnyView {
    if claims.is_empty() {
        return ().into_any();
    }
    let bad: Vec<Claim> = claims.iter().filter(|c| !c.supported).cloned().collect();
    if bad.is_empty() {
        return view! {
            <p class="claims ok" data-unsupported="0">
                {format!("✓ all {} figures and names in this answer match the evidence", claims.len())}
            </p>
        }
        .into_any();
    }
    let heading = format!(
        "✗ {} of {} figures and names are not in the evidence",
        bad.len(),
        claims.len()
    );
    let count = bad.len().to_string();
    view! {
        <div class="claims bad" data-unsupported=count>
            <h4>{heading}</h4>
            <ul>
                {bad.into_iter().map(|c| view! {
                    <li class="claim" data-part=c.part.clone()>
                        <q>{c.text}</q>{format!(" in the {}: {}", c.part, c.note)}
                    </li>
                }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

/// Thumbs up/down with an optional reason; says whether it reached MLflow.
#[component]
fn FeedbackButtons(insight_id: String) -> AnyView {
    let send = ServerAction::<GiveFeedback>::new();
    let reason = RwSignal::new(String::new());
    let rate = move |helpful: bool| {
        let insight_id = insight_id.clone();
        move |_| {
            let r = reason.get_untracked();
            send.dispatch(GiveFeedback {
                insight_id: insight_id.clone(),
                input: FeedbackInput {
                    helpful,
                    reason: (!r.trim().is_empty()).then_some(r),
                },
            });
        }
    };
    view! {
        <div class="feedback">
            <button class="thumb up" title="This insight helped" on:click=rate(true) disabled=move || send.pending().get()>"✓ Useful"</button>
            <button class="thumb down" title="This insight was wrong or unhelpful" on:click=rate(false) disabled=move || send.pending().get()>"✗ Not useful"</button>
            <input class="reason" type="text" maxlength="1000" placeholder="Why? (optional)"
                prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
            {move || send.value().get().map(|r| match r {
                Ok(f) => view! { <span class="feedback-done">{match f.mlflow_state {
                    FeedbackSync::Pending => "Thanks: recorded, and sent to MLflow with the trace.",
                    _ => "Thanks: recorded.",
                }}</span> }.into_any(),
                Err(e) => view! { <span class="badge error-badge">{e.to_string()}</span> }.into_any(),
            })}
        </div>
    }
    .into_any()
}

/// What happened to one next action, and the buttons to move it on: acknowledge, assign
/// (to a name), done, dismiss (with a reason, which the agent gets next time). A done
/// action shows whether the KPI recovered afterwards.
#[component]
fn ActionControls(insight_id: String, position: i64, acted: Option<ActionView>) -> AnyView {
    let update = ServerAction::<UpdateAction>::new();
    let current = RwSignal::new(acted);
    let asking: RwSignal<Option<&'static str>> = RwSignal::new(None);
    let text = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some(Ok(v)) = update.value().get() {
            current.set(Some(v));
            asking.set(None);
            text.set(String::new());
        }
    });
    let send = {
        let insight_id = insight_id.clone();
        move |state: &'static str, value: Option<String>| {
            update.dispatch(UpdateAction {
                insight_id: insight_id.clone(),
                position,
                change: ActionChange {
                    state: state.to_string(),
                    assignee: (state == "assigned").then(|| value.clone()).flatten(),
                    reason: (state == "dismissed").then_some(value).flatten(),
                },
            });
        }
    };
    let (s1, s2, s3) = (send.clone(), send.clone(), send);
    view! {
        <div class="action-state" data-state=move || current.get().map_or(ActionState::Open, |a| a.state).to_string()>
            {move || current.get().map(|a| {
                let detail = match a.state {
                    ActionState::Assigned => format!("assigned to {}", a.assignee.clone().unwrap_or_default()),
                    ActionState::Dismissed => format!("dismissed: {}", a.reason.clone().unwrap_or_default()),
                    ActionState::Done => format!("done {}", a.done_on.clone().unwrap_or_default()),
                    s => s.to_string(),
                };
                view! {
                    <span class="state">{detail}</span>
                    {a.outcome.map(|o| view! {
                        <span class=format!("outcome {}", match o.recovered { Some(true) => "recovered", Some(false) => "not-recovered", None => "pending" })>
                            {o.summary}
                        </span>
                    })}
                }
            })}
            {move || {
                let final_state = current.get().is_some_and(|a| a.state.is_final());
                (!final_state && crate::app::can(crate::domain::access::Role::Editor)).then(|| view! {
                    <span class="action-buttons">
                        <button class="ack" disabled=move || update.pending().get() on:click={let s = s1.clone(); move |_| s("acknowledged", None)}>"Acknowledge"</button>
                        <button class="assign" on:click=move |_| asking.set(Some("assigned"))>"Assign…"</button>
                        <button class="done" disabled=move || update.pending().get() on:click={let s = s2.clone(); move |_| s("done", None)}>"Done"</button>
                        <button class="dismiss" on:click=move |_| asking.set(Some("dismissed"))>"Dismiss…"</button>
                    </span>
                })
            }}
            {move || asking.get().map(|what| {
                let s = s3.clone();
                view! {
                    <form class="action-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        s(what, Some(text.get_untracked()));
                    }>
                        <input class="action-text" required maxlength="500"
                            placeholder=if what == "assigned" { "Who?" } else { "Why is it not the right action?" }
                            prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
                        <button type="submit">{if what == "assigned" { "Assign" } else { "Dismiss" }}</button>
                    </form>
                }
            })}
            {move || update.value().get().and_then(|r| r.err()).map(|e| view! { <span class="badge error-badge">{e.to_string()}</span> })}
        </div>
    }
    .into_any()
}

#[component]
fn InsightBody(view: InsightView, unit: &'static str) -> AnyView {
    let causes = view
        .insight
        .as_ref()
        .map(|i| i.root_causes.clone())
        .unwrap_or_default();
    let actions = view
        .insight
        .as_ref()
        .map(|i| i.next_actions.clone())
        .unwrap_or_default();
    let confidence = view
        .insight
        .as_ref()
        .map(|i| format!("confidence {:.0}%", i.confidence * 100.0));
    let narrative = view.insight.is_none().then(|| view.narrative.clone());
    let version = view
        .model_version
        .clone()
        .map(|v| format!(" · model version {v}"));
    let headline_class = if view
        .claims
        .iter()
        .any(|c| c.part == "headline" && !c.supported)
    {
        "headline unsupported"
    } else {
        "headline"
    };
    view! {
        <h3 class=headline_class>{view.headline.clone()}</h3>
        <ClaimCheck claims=view.claims.clone()/>
        {narrative.map(|n| view! { <p class="narrative">{n}</p> })}
        {(!causes.is_empty()).then(|| view! { <CauseList causes grounding=view.grounding.clone() unit/> })}
        {(!actions.is_empty()).then(|| view! {
            <div class="actions">
                <h4>"Next actions"</h4>
                <ol>
                    {actions.into_iter().enumerate().map(|(i, a)| {
                        let acted = view.actions.iter().find(|x| x.position == i as i64).cloned();
                        view! {
                            <li data-action=i>
                                <span class=format!("priority {}", a.priority)>{a.priority.clone()}</span>
                                {a.action}
                                <span class="owner">{format!(" — {}", a.owner)}</span>
                                <ActionControls insight_id=view.id.clone() position=i as i64 acted/>
                            </li>
                        }
                    }).collect_view()}
                </ol>
            </div>
        })}
        <p class="provenance">
            <span class="generated-at" data-created-at=view.created_at.clone()>{format!("Generated {}", when(&view.created_at))}</span>
            {format!(" by {} for {} · {} ms", view.agent, view.period_label, view.latency_ms)}
            <span class="model-version">{version}</span>
            {confidence.map(|c| format!(" · {c}"))}
            " · "<a class="lineage-link" href=format!("/insights/{}/lineage", view.id)>"lineage"</a>
        </p>
        <FeedbackButtons insight_id=view.id.clone()/>
    }
    .into_any()
}

/// One card. `compact` marks overview rows (styled tighter).
#[component]
pub fn InsightCard(card: Card, #[prop(optional)] compact: bool) -> AnyView {
    let refresh = ServerAction::<RefreshInsight>::new();
    let state = RwSignal::new(card.clone());
    // Fold each finished refresh into the card: success replaces the insight, failure
    // keeps the last good one and marks it stale with the reason.
    Effect::new(move |_| {
        if let Some(result) = refresh.value().get() {
            state.update(|c| match result {
                Ok(view) => {
                    c.insight = Some(view);
                    c.stale = None;
                    c.error = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    c.stale = c
                        .insight
                        .as_ref()
                        .map(|_| format!("the last refresh failed: {msg}"));
                    c.error = Some(msg);
                }
            });
        }
    });
    let site = card.site.clone();
    let metric = card.metric;
    let unit = metric.change_unit();
    let on_refresh = {
        let site = site.clone();
        // The same card: its period and comparison.
        let view = card.view.clone();
        move |_| {
            refresh.dispatch(RefreshInsight::from(RefreshRequest {
                site: site.clone(),
                metric: metric.key().to_string(),
                view: view.clone(),
                question: None,
            }));
        }
    };
    let key = format!("{}:{}", site, metric.key());
    let ask_site = site.clone();
    let ask_view = card.view.clone();
    view! {
        <section
            class=move || {
                let c = state.get();
                let mut class = String::from(if compact { "card compact" } else { "card" });
                if c.stale.is_some() { class.push_str(" stale"); }
                if c.insight.is_none() && c.error.is_some() { class.push_str(" failed"); }
                class
            }
            data-card=key
            data-insight-id=move || state.get().insight.map(|i| i.id).unwrap_or_default()
        >
            <div class="card-head">
                <span class="card-title">{format!("Insight · {}", metric.label())}</span>
                {crate::app::can(crate::domain::access::Role::Editor).then(|| view! {
                <button class="refresh" on:click=on_refresh disabled=move || refresh.pending().get()>
                    {move || if refresh.pending().get() { "Refreshing…" } else { "Refresh insight" }}
                </button>
                })}
            </div>
            {move || state.get().stale.map(|s| view! { <p class="badge stale-badge">{format!("Stale: {s}")}</p> })}
            {move || {
                let c = state.get();
                match (c.insight, c.error) {
                    (Some(view), _) => view! { <InsightBody view unit/> }.into_any(),
                    (None, Some(e)) => view! { <p class="badge error-badge">{format!("No insight yet: {e}")}</p> }.into_any(),
                    (None, None) => view! { <p class="empty">"No insight yet: refresh to ask the agent."</p> }.into_any(),
                }
            }}
            <AskBox site=ask_site metric=metric.key().to_string() unit view=ask_view/>
        </section>
    }
    .into_any()
}
