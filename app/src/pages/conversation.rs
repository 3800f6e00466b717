//! A drill-down conversation, linkable by URL: every question and answer about one card,
//! and a box for follow-ups (earlier turns travel back to the agent with each one). A
//! turn still being answered when the page loads is followed live.

use crate::api::get_conversation;
use crate::components::ask::{follow_turn, AskBox, TurnAnswer};
use crate::domain::status::TurnStatus;
use crate::dto::{ConversationView, TurnEvent, TurnView};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
fn Turn(turn: TurnView, unit: &'static str) -> impl IntoView {
    let state = RwSignal::new(turn.clone());
    let streaming = RwSignal::new(String::new());
    if turn.status == TurnStatus::Running {
        let id = turn.id.clone();
        Effect::new(move |_| {
            follow_turn(&id, move |event| match event {
                TurnEvent::Snapshot { text } => streaming.set(text),
                TurnEvent::Delta { text } => streaming.update(|s| s.push_str(&text)),
                TurnEvent::Final { turn } => state.set(*turn),
            });
        });
    }
    view! {
        <article class="turn" data-turn=turn.id.clone()>
            <p class="asked">{format!("Q{}: {}", turn.seq, turn.question)}</p>
            {move || {
                let t = state.get();
                if t.status == TurnStatus::Running {
                    view! { <p class="streaming" data-streaming="true">{move || streaming.get()}<span class="cursor">"▍"</span></p> }.into_any()
                } else {
                    view! { <TurnAnswer turn=t unit/> }.into_any()
                }
            }}
        </article>
    }
}

/// A turn answered on this page (it streamed in the question box first).
#[component]
fn FinishedTurn(turn: TurnView, unit: &'static str) -> impl IntoView {
    let id = turn.id.clone();
    let asked = format!("Q{}: {}", turn.seq, turn.question);
    view! {
        <article class="turn" data-turn=id>
            <p class="asked">{asked}</p>
            <TurnAnswer turn unit/>
        </article>
    }
}

#[component]
fn Conversation(c: ConversationView) -> impl IntoView {
    let unit = c.metric.change_unit();
    let added: RwSignal<Vec<TurnView>> = RwSignal::new(Vec::new());
    let on_final = Callback::new(move |t: TurnView| added.update(|v| v.push(t)));
    view! {
        <div class="page-head">
            <p class="crumbs"><a href="/">"Overview"</a>" / "
                <a href=format!("/kpi/{}/{}", c.site, c.metric.key())>{format!("{} {}", c.site, c.metric.label())}</a></p>
            <h1>{c.title.clone()}</h1>
            <p class="period">{format!("{} · asked {} · agent {}", c.period_label, c.created_at.get(0..16).unwrap_or_default().replace('T', " "), c.agent)}</p>
        </div>
        <section class="conversation" data-conversation=c.id.clone()>
            {c.turns.into_iter().map(|turn| view! { <Turn turn unit/> }).collect_view()}
            <For each=move || added.get() key=|t| t.id.clone() let:turn>
                <FinishedTurn turn unit/>
            </For>
            <AskBox site=c.site.clone() metric=c.metric.key().to_string() unit conversation_id=c.id.clone() on_final/>
        </section>
    }
}

#[component]
pub fn ConversationPage() -> impl IntoView {
    let params = use_params_map();
    let conversation = Resource::new(
        move || params.with(|p| p.get("id").unwrap_or_default()),
        get_conversation,
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match conversation.await {
                    Ok(c) => view! { <Conversation c/> }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
