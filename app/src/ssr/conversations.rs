//! "Why is this down?" drill-down conversations, streamed.
//!
//! Asking stores a running turn and returns its id at once; a background task calls the
//! questions agent with `"stream": true` and publishes text deltas to [`LiveTurns`] as they
//! arrive. `GET /api/v1/turns/{id}/events` replays the text so far, then follows live, then
//! sends the final structured answer. A turn that is not live here (finished, or running
//! on another replica) is read from the database. Follow-ups send the earlier turns'
//! items (messages, function calls and their outputs) back in `input`, since agents keep
//! no server-side history.

use super::agent::wire::{follow_up_item, opening_items, request_for};
use super::ask::{ask, Subject};
use super::db::{self, NewConversation, TurnOutcome};
use super::insights::{clean_question, new_id, timestamp};
use super::state::AppState;
use super::{evidence, ServiceError};
use crate::domain::period::Week;
use crate::dto::{ConversationView, TurnEvent, TurnStarted, TurnView};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Deltas buffered per subscriber before it counts as lagging (it then gets the final
/// answer only).
const LIVE_BUFFER: usize = 1024;
/// How long a subscriber waits for a turn that is running elsewhere.
const REMOTE_WAIT: Duration = Duration::from_secs(600);

/// Turns being answered by this process, with their text so far.
#[derive(Clone, Debug, Default)]
pub struct LiveTurns {
    turns: Arc<Mutex<HashMap<String, Arc<LiveTurn>>>>,
}

#[derive(Debug)]
pub struct LiveTurn {
    text: Mutex<String>,
    tx: broadcast::Sender<TurnEvent>,
}

impl LiveTurn {
    /// Appends and publishes under one lock, so a subscriber's snapshot plus its live
    /// events neither miss nor repeat text.
    fn delta(&self, text: String) {
        if let Ok(mut so_far) = self.text.lock() {
            so_far.push_str(&text);
            let _ = self.tx.send(TurnEvent::Delta { text });
        }
    }

    fn finish(&self, turn: TurnView) {
        let _guard = self.text.lock();
        let _ = self.tx.send(TurnEvent::Final {
            turn: Box::new(turn),
        });
    }
}

impl LiveTurns {
    fn open(&self, id: &str) -> Arc<LiveTurn> {
        let (tx, _) = broadcast::channel(LIVE_BUFFER);
        let turn = Arc::new(LiveTurn {
            text: Mutex::new(String::new()),
            tx,
        });
        if let Ok(mut m) = self.turns.lock() {
            m.insert(id.to_string(), turn.clone());
        }
        turn
    }

    fn close(&self, id: &str) {
        if let Ok(mut m) = self.turns.lock() {
            m.remove(id);
        }
    }

    /// The text so far and a receiver for what follows, if the turn is live here.
    fn subscribe(&self, id: &str) -> Option<(String, broadcast::Receiver<TurnEvent>)> {
        let turn = self.turns.lock().ok()?.get(id).cloned()?;
        let so_far = turn.text.lock().ok()?;
        Some((so_far.clone(), turn.tx.subscribe()))
    }

    /// Turns in flight (for shutdown and metrics).
    pub fn len(&self) -> usize {
        self.turns.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts a conversation about one card with its first question.
pub async fn start(
    state: &AppState,
    site: &str,
    metric_key: &str,
    question: &str,
) -> Result<TurnStarted, ServiceError> {
    let metric = evidence::parse_metric(metric_key)?;
    evidence::site_name(&state.db, site).await?;
    let question = clean_question(Some(question))?
        .ok_or_else(|| ServiceError::BadRequest("ask a question".into()))?;
    let now = chrono::Utc::now();
    let id = new_id(now, "cnv");
    let title: String = question.chars().take(200).collect();
    db::insert_conversation(
        &state.db,
        &NewConversation {
            id: &id,
            site,
            metric,
            period_start: Week::latest_complete(state.today()).start,
            agent: state.agents.questions().name(),
            title: &title,
            created_at: &timestamp(now),
        },
    )
    .await?;
    let (conversation, history) = load(state, &id).await?;
    ask_turn(state, &conversation, history, &question).await
}

/// Adds a follow-up question to a conversation.
pub async fn follow_up(
    state: &AppState,
    conversation_id: &str,
    question: &str,
) -> Result<TurnStarted, ServiceError> {
    let question = clean_question(Some(question))?
        .ok_or_else(|| ServiceError::BadRequest("ask a question".into()))?;
    let (conversation, history) = load(state, conversation_id).await?;
    // A turn still running blocks the next one, unless it is so old that its process must
    // have died mid-answer (timestamps are fixed-width, so text order is time order).
    let abandoned_before =
        timestamp(chrono::Utc::now() - chrono::Duration::from_std(REMOTE_WAIT).unwrap_or_default());
    if conversation
        .turns
        .iter()
        .any(|t| t.status == "running" && t.created_at > abandoned_before)
    {
        return Err(ServiceError::BadRequest(
            "the previous question is still being answered".into(),
        ));
    }
    ask_turn(state, &conversation, history, &question).await
}

pub async fn get(state: &AppState, id: &str) -> Result<ConversationView, ServiceError> {
    Ok(load(state, id).await?.0)
}

/// A conversation and the items of its answered turns, or `NotFound`.
async fn load(state: &AppState, id: &str) -> Result<(ConversationView, Vec<Value>), ServiceError> {
    db::conversation(&state.db, id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no such conversation".into()))
}

/// Stores the running turn and answers it in the background. `history` is every item of
/// the conversation's answered turns.
async fn ask_turn(
    state: &AppState,
    conversation: &ConversationView,
    history: Vec<Value>,
    question: &str,
) -> Result<TurnStarted, ServiceError> {
    let conversation_id = conversation.id.as_str();
    let rules = db::rules(&state.db).await?;
    let pack = evidence::load(
        &state.db,
        &rules,
        &conversation.site,
        conversation.metric,
        state.today(),
    )
    .await?;
    // A conversation opens with the system message and the pack's summary; later turns
    // add the question alone after everything said so far.
    let added: Vec<Value> = if history.is_empty() {
        opening_items(&pack, &rules, question)
    } else {
        vec![follow_up_item(question)]
    };
    let mut input = history;
    input.extend(added.iter().cloned());
    let request = request_for(&pack, &rules, input, question, conversation_id);
    let now = chrono::Utc::now();
    let turn_id = new_id(now, "trn");
    let added_json = serde_json::to_string(&added).unwrap_or_else(|_| "[]".into());
    db::insert_turn(
        &state.db,
        &turn_id,
        conversation_id,
        question,
        &added_json,
        &timestamp(now),
    )
    .await?;
    let live = state.live.open(&turn_id);
    let task_state = state.clone();
    let task_turn = turn_id.clone();
    tokio::spawn(async move {
        answer_turn(&task_state, &task_turn, pack, rules.version, request, live).await;
        task_state.live.close(&task_turn);
    });
    Ok(TurnStarted {
        conversation_id: conversation_id.to_string(),
        turn_id,
    })
}

async fn answer_turn(
    state: &AppState,
    turn_id: &str,
    pack: crate::domain::evidence::EvidencePack,
    rules_version: i64,
    request: Value,
    live: Arc<LiveTurn>,
) {
    let agent = state.agents.questions().clone();
    let hash = evidence::hash(&pack);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let forward_live = live.clone();
    let forward = tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            forward_live.delta(d);
        }
    });
    let asked = ask(
        state,
        &agent,
        &Subject {
            id: turn_id,
            pack: &pack,
            evidence_hash: &hash,
            rules_version,
        },
        &request,
        true,
        Some(&tx),
    )
    .await;
    drop(tx);
    let _ = forward.await;
    let finished_at = timestamp(chrono::Utc::now());
    let outcome = match asked {
        Ok(a) => match a.outcome {
            Ok(reply) => TurnOutcome {
                status: "ok",
                answer: reply.answer.text,
                output_items_json: serde_json::to_string(&reply.answer.items)
                    .unwrap_or_else(|_| "[]".into()),
                insight_json: reply
                    .answer
                    .insight
                    .as_ref()
                    .and_then(|i| serde_json::to_string(i).ok()),
                grounding_json: serde_json::to_string(&a.grounding).ok(),
                error: None,
                finished_at,
            },
            Err(e) => failed(e.to_string(), finished_at),
        },
        Err(e) => {
            tracing::error!(error = ?e, turn = turn_id, "could not answer the turn");
            failed("the answer could not be stored".into(), finished_at)
        }
    };
    if let Err(e) = db::finish_turn(&state.db, turn_id, &outcome).await {
        tracing::error!(error = ?e, turn = turn_id, "could not store the turn's answer");
    }
    match db::turn(&state.db, turn_id).await {
        Ok(Some((_, turn))) => live.finish(turn),
        Ok(None) => {}
        Err(e) => tracing::error!(error = ?e, turn = turn_id, "could not read the finished turn"),
    }
}

fn failed(message: String, finished_at: String) -> TurnOutcome {
    TurnOutcome {
        status: "error",
        answer: String::new(),
        output_items_json: "[]".into(),
        insight_json: None,
        grounding_json: None,
        error: Some(message),
        finished_at,
    }
}

/// The events of one turn: the text so far as a snapshot, live deltas, then the final
/// answer. The receiver ends after the final event.
pub async fn events(
    state: &AppState,
    turn_id: &str,
) -> Result<mpsc::Receiver<TurnEvent>, ServiceError> {
    let (tx, rx) = mpsc::channel(64);
    if let Some((so_far, mut live)) = state.live.subscribe(turn_id) {
        let db = state.db.clone();
        let id = turn_id.to_string();
        tokio::spawn(async move {
            if tx.send(TurnEvent::Snapshot { text: so_far }).await.is_err() {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(event) => {
                        let last = matches!(event, TurnEvent::Final { .. });
                        if tx.send(event).await.is_err() || last {
                            return;
                        }
                    }
                    // Fell behind or the turn closed: the stored answer is the truth.
                    Err(_) => {
                        if let Ok(Some((_, turn))) = db::turn(&db, &id).await {
                            if turn.status != "running" {
                                let _ = tx
                                    .send(TurnEvent::Final {
                                        turn: Box::new(turn),
                                    })
                                    .await;
                            }
                        }
                        return;
                    }
                }
            }
        });
        return Ok(rx);
    }
    let (_, turn) = db::turn(&state.db, turn_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no such question".into()))?;
    let db = state.db.clone();
    let id = turn_id.to_string();
    tokio::spawn(async move {
        // Finished, or running on another replica: poll the database until it is done.
        let started = std::time::Instant::now();
        let mut turn = turn;
        while turn.status == "running" && started.elapsed() < REMOTE_WAIT {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match db::turn(&db, &id).await {
                Ok(Some((_, t))) => turn = t,
                _ => return,
            }
        }
        let _ = tx
            .send(TurnEvent::Final {
                turn: Box::new(turn),
            })
            .await;
    });
    Ok(rx)
}
