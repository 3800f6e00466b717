//! "Why is this down?": a question box whose answer streams in as the agent writes it,
//! then turns into the structured answer (root causes checked against the data, next
//! actions). Used on every card (new conversation) and on the conversation page
//! (follow-ups).
//!
//! The question is posted with a server function; the answer is read from
//! `/api/v1/turns/{id}/events` with the browser's `EventSource`, which reconnects by
//! itself (the server then sends the text so far as a snapshot, so nothing repeats).

use crate::api::{AskFollowUp, AskQuestion};
use crate::components::insight_card::{CauseList, ClaimCheck};
use crate::dto::{TurnEvent, TurnView};
use leptos::prelude::*;

/// Follows a turn's events in the browser; `on_event` gets each one. Does nothing during
/// server rendering.
pub fn follow_turn(turn_id: &str, on_event: impl Fn(TurnEvent) + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;
        let url = format!("/api/v1/turns/{turn_id}/events");
        let Ok(source) = web_sys::EventSource::new(&url) else {
            return;
        };
        let closer = source.clone();
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                let Some(text) = ev.data().as_string() else {
                    return;
                };
                if let Ok(event) = serde_json::from_str::<TurnEvent>(&text) {
                    let last = matches!(event, TurnEvent::Final { .. });
                    on_event(event);
                    if last {
                        closer.close();
                    }
                }
            });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The closure lives as long as the page: one per question asked.
        on_message.forget();
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (turn_id, on_event);
    }
}

/// A finished turn: the answer, its causes with their grounding, its next actions.
#[component]
pub fn TurnAnswer(turn: TurnView, unit: &'static str) -> AnyView {
    let (causes, actions) = turn
        .insight
        .as_ref()
        .map(|i| (i.root_causes.clone(), i.next_actions.clone()))
        .unwrap_or_default();
    view! {
        <div class="turn-answer" data-turn-status=turn.status.to_string()>
            {turn.error.clone().map(|e| view! { <p class="badge error-badge">{format!("No answer: {e}")}</p> })}
            {(!turn.answer.is_empty()).then(|| view! { <p class="narrative">{turn.answer.clone()}</p> })}
            <ClaimCheck claims=turn.claims.clone()/>
            {(!causes.is_empty()).then(|| view! { <CauseList causes grounding=turn.grounding.clone() unit/> })}
            {(!actions.is_empty()).then(|| view! {
                <div class="actions"><h4>"Next actions"</h4><ol>
                    {actions.into_iter().map(|a| view! {
                        <li><span class=format!("priority {}", a.priority)>{a.priority.clone()}</span>{a.action}
                            <span class="owner">{format!(" — {}", a.owner)}</span></li>
                    }).collect_view()}
                </ol></div>
            })}
        </div>
    }
    .into_any()
}

/// The question box. Without `conversation_id` it starts a conversation about
/// (`site`, `metric`); with one it asks a follow-up there, and `on_final` gets each
/// finished turn.
#[component]
pub fn AskBox(
    site: String,
    metric: String,
    unit: &'static str,
    /// The card's period and comparison (the default card when absent).
    #[prop(optional)]
    view: crate::dto::PeriodChoice,
    #[prop(optional)] conversation_id: Option<String>,
    #[prop(optional, into)] on_final: Option<Callback<TurnView>>,
) -> AnyView {
    let question = RwSignal::new(String::new());
    let streaming = RwSignal::new(String::new());
    let finished: RwSignal<Option<TurnView>> = RwSignal::new(None);
    let conversation = RwSignal::new(conversation_id.clone());
    let busy = RwSignal::new(false);
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let is_follow_up = conversation_id.is_some();
    let start = ServerAction::<AskQuestion>::new();
    let follow = ServerAction::<AskFollowUp>::new();

    let watch = move |turn_id: String| {
        follow_turn(&turn_id, move |event| match event {
            TurnEvent::Snapshot { text } => streaming.set(text),
            TurnEvent::Delta { text } => streaming.update(|s| s.push_str(&text)),
            TurnEvent::Final { turn } => {
                busy.set(false);
                if let Some(cb) = on_final {
                    cb.run(*turn);
                    streaming.set(String::new());
                } else {
                    finished.set(Some(*turn));
                }
            }
        });
    };
    Effect::new(move |_| {
        let result = start.value().get().or_else(|| follow.value().get());
        match result {
            Some(Ok(started)) => {
                conversation.set(Some(started.conversation_id.clone()));
                watch(started.turn_id);
            }
            Some(Err(e)) => {
                busy.set(false);
                error.set(Some(e.to_string()));
            }
            None => {}
        }
    });
    let ask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let q = question.get_untracked();
        if q.trim().is_empty() || busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        finished.set(None);
        streaming.set(String::new());
        match conversation.get_untracked().filter(|_| is_follow_up) {
            Some(id) => {
                follow.dispatch(AskFollowUp {
                    conversation_id: id,
                    input: crate::dto::FollowUp { question: q },
                });
            }
            None => {
                start.dispatch(AskQuestion::from(crate::dto::StartConversation {
                    site: site.clone(),
                    metric: metric.clone(),
                    question: q,
                    view: view.clone(),
                }));
            }
        }
        question.set(String::new());
    };
    let placeholder = if is_follow_up {
        "Ask a follow-up question"
    } else {
        "Why is this down?"
    };
    view! {
        <form class="ask" on:submit=ask>
            <input class="question" type="text" maxlength="500" placeholder=placeholder
                prop:value=move || question.get()
                on:input=move |ev| question.set(event_target_value(&ev))/>
            <button class="ask-button" type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Answering…" } else { "Ask" }}
            </button>
        </form>
        {move || error.get().map(|e| view! { <p class="badge error-badge">{e}</p> })}
        {move || {
            let text = streaming.get();
            (busy.get() || (!text.is_empty() && finished.get().is_none()))
                .then(|| view! { <p class="streaming" data-streaming="true">{text}<span class="cursor">"▍"</span></p> })
        }}
        {move || finished.get().map(|turn| view! {
            <TurnAnswer turn unit/>
        })}
        {move || (!is_follow_up).then(|| conversation.get().map(|id| view! {
            <p class="conversation-link"><a href=format!("/conversations/{id}")>"Open the conversation to ask follow-ups"</a></p>
        })).flatten()}
    }
    .into_any()
}
