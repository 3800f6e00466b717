//! The insight card: headline, root causes with their numbers, next actions, provenance,
//! and its stale or error state. "Refresh insight" runs the agent now and updates the card
//! in place (a server action; no page reload).

use crate::api::RefreshInsight;
use crate::domain::insight::Effect as CauseEffect;
use crate::domain::kpi::signed;
use crate::dto::{Card, InsightView};
use leptos::prelude::*;

fn effect_label(e: CauseEffect) -> &'static str {
    match e {
        CauseEffect::Rate => "rate",
        CauseEffect::Mix => "mix",
        CauseEffect::Data => "data",
    }
}

/// `2026-11-21T09:30:12.123456Z` → `2026-11-21 09:30 UTC`.
fn when(ts: &str) -> String {
    match (ts.get(0..10), ts.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => ts.to_string(),
    }
}

#[component]
fn InsightBody(view: InsightView, unit: &'static str) -> impl IntoView {
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
    view! {
        <h3 class="headline">{view.headline.clone()}</h3>
        {narrative.map(|n| view! { <p class="narrative">{n}</p> })}
        {(!causes.is_empty()).then(|| view! {
            <div class="causes">
                <h4>"Root causes"</h4>
                <ul>
                    {causes.into_iter().map(|c| view! {
                        <li>
                            <span class=format!("effect {}", effect_label(c.effect))>{effect_label(c.effect)}</span>
                            <strong>{format!("{} {}", c.dimension, c.member)}</strong>
                            <span class="impact">{format!("{} {unit}", signed(c.impact_pp, 1))}</span>
                            <div class="evidence">{c.evidence}</div>
                        </li>
                    }).collect_view()}
                </ul>
            </div>
        })}
        {(!actions.is_empty()).then(|| view! {
            <div class="actions">
                <h4>"Next actions"</h4>
                <ol>
                    {actions.into_iter().map(|a| view! {
                        <li>
                            <span class=format!("priority {}", a.priority)>{a.priority.clone()}</span>
                            {a.action}
                            <span class="owner">{format!(" — {}", a.owner)}</span>
                        </li>
                    }).collect_view()}
                </ol>
            </div>
        })}
        <p class="provenance">
            <span class="generated-at" data-created-at=view.created_at.clone()>{format!("Generated {}", when(&view.created_at))}</span>
            {format!(" by {} for {} · {} ms", view.agent, view.period_label, view.latency_ms)}
            {confidence.map(|c| format!(" · {c}"))}
        </p>
    }
}

/// One card. `compact` hides the question box (overview rows).
#[component]
pub fn InsightCard(card: Card, #[prop(optional)] compact: bool) -> impl IntoView {
    let refresh = ServerAction::<RefreshInsight>::new();
    let state = RwSignal::new(card.clone());
    let question = RwSignal::new(String::new());
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
    let unit = if metric.is_ratio() { "pp" } else { "lines" };
    let on_refresh = {
        let site = site.clone();
        move |_| {
            let q = question.get_untracked();
            refresh.dispatch(RefreshInsight {
                site: site.clone(),
                metric: metric.key().to_string(),
                question: (!q.trim().is_empty()).then_some(q),
            });
        }
    };
    let key = format!("{}:{}", site, metric.key());
    view! {
        <section
            class=move || {
                let c = state.get();
                let mut class = String::from("card");
                if c.stale.is_some() { class.push_str(" stale"); }
                if c.insight.is_none() && c.error.is_some() { class.push_str(" failed"); }
                class
            }
            data-card=key
            data-insight-id=move || state.get().insight.map(|i| i.id).unwrap_or_default()
        >
            <div class="card-head">
                <span class="card-title">{format!("Insight · {}", metric.label())}</span>
                <button class="refresh" on:click=on_refresh disabled=move || refresh.pending().get()>
                    {move || if refresh.pending().get() { "Refreshing…" } else { "Refresh insight" }}
                </button>
            </div>
            {(!compact).then(|| view! {
                <input class="question" type="text" maxlength="500" placeholder="Why is this down? (optional question)"
                    prop:value=move || question.get()
                    on:input=move |ev| question.set(event_target_value(&ev))/>
            })}
            {move || state.get().stale.map(|s| view! { <p class="badge stale-badge">{format!("Stale: {s}")}</p> })}
            {move || {
                let c = state.get();
                match (c.insight, c.error) {
                    (Some(view), _) => view! { <InsightBody view unit/> }.into_any(),
                    (None, Some(e)) => view! { <p class="badge error-badge">{format!("No insight yet: {e}")}</p> }.into_any(),
                    (None, None) => view! { <p class="empty">"No insight yet: refresh to ask the agent."</p> }.into_any(),
                }
            }}
        </section>
    }
}
