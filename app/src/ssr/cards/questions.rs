//! "Why is this down?" drill-down conversations, streamed.
//!
//! Asking stores a running turn and returns its id at once; a background task calls the
//! questions agent with `"stream": true` and publishes text deltas to [`LiveTurns`] as they
//! arrive. `GET /api/v1/turns/{id}/events` replays the text so far, then follows live, then
//! sends the final structured answer. A turn that is not live here (finished, or running
//! on another replica) is read from the database. Follow-ups send the earlier turns'
//! items (messages, function calls and their outputs) back in `input`, since agents keep
//! no server-side history.

use super::ask::{ask, Subject};
use super::evidence::{self, parse_metric};
use super::{clean_question, Cards};
use crate::domain::access::Reach;
use crate::domain::evidence::EvidencePack;
use crate::domain::period::Period;
use crate::domain::status::TurnStatus;
use crate::dto::{ConversationView, FollowUp, StartConversation, TurnEvent, TurnStarted, TurnView};
use crate::ssr::agent::wire::{follow_up_item, opening_items, request_for};
use crate::ssr::clock::{self, new_id};
use crate::ssr::error::{chain, ServiceError};
use crate::ssr::store::conversations::{self, NewConversation, TurnOutcome};
use crate::ssr::store::{self, Db};
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

impl Cards {
    /// Starts a conversation about one card with its first question.
    #[tracing::instrument(skip_all, fields(site = %input.site, metric = %input.metric))]
    pub async fn start_conversation(
        &self,
        input: StartConversation,
        user: &str,
        reach: &Reach,
    ) -> Result<TurnStarted, ServiceError> {
        super::within(reach, &input.site)?;
        let metric = parse_metric(&input.metric)?;
        evidence::site_name(&self.db, &input.site).await?;
        let (period, compare) = self.clock.resolve(&input.view)?;
        let question = clean_question(Some(&input.question))?
            .ok_or_else(|| ServiceError::BadRequest("ask a question".into()))?;
        let now = chrono::Utc::now();
        let id = new_id(now, "cnv");
        let title: String = question.chars().take(200).collect();
        conversations::insert(
            &self.db,
            &NewConversation {
                id: &id,
                site: &input.site,
                metric,
                period,
                compare,
                agent: self.agents.questions().name(),
                title: &title,
                created_at: &clock::timestamp(now),
            },
        )
        .await?;
        let (conversation, history) = self.load_conversation(&id).await?;
        self.ask_turn(&conversation, history, &question, user).await
    }

    /// Adds a follow-up question to a conversation.
    #[tracing::instrument(skip_all, fields(conversation = %conversation_id))]
    pub async fn follow_up(
        &self,
        conversation_id: &str,
        input: FollowUp,
        user: &str,
        reach: &Reach,
    ) -> Result<TurnStarted, ServiceError> {
        let question = clean_question(Some(&input.question))?
            .ok_or_else(|| ServiceError::BadRequest("ask a question".into()))?;
        let (conversation, history) = self.load_conversation(conversation_id).await?;
        if !reach.sees(&conversation.site) {
            return Err(ServiceError::Forbidden(reach.refusal_of_other()));
        }
        // A turn still running blocks the next one, unless it is so old that its process
        // must have died mid-answer (timestamps are fixed-width, so text order is time
        // order).
        let abandoned_before = clock::timestamp(
            chrono::Utc::now() - chrono::Duration::from_std(REMOTE_WAIT).unwrap_or_default(),
        );
        if conversation
            .turns
            .iter()
            .any(|t| t.status == TurnStatus::Running && t.created_at > abandoned_before)
        {
            return Err(ServiceError::BadRequest(
                "the previous question is still being answered".into(),
            ));
        }
        self.ask_turn(&conversation, history, &question, user).await
    }

    /// A conversation and its turns.
    pub async fn conversation(
        &self,
        id: &str,
        reach: &Reach,
    ) -> Result<ConversationView, ServiceError> {
        let conversation = self.load_conversation(id).await?.0;
        if !reach.sees(&conversation.site) {
            return Err(ServiceError::Forbidden(reach.refusal_of_other()));
        }
        Ok(conversation)
    }

    /// A conversation and the items of its answered turns, or `NotFound`.
    async fn load_conversation(
        &self,
        id: &str,
    ) -> Result<(ConversationView, Vec<Value>), ServiceError> {
        conversations::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no such conversation".into()))
    }

    /// Stores the running turn and answers it in the background. `history` is every item
    /// of the conversation's answered turns.
    /// `user` is who asks (sent to the agent as `context.user_id`).
    async fn ask_turn(
        &self,
        conversation: &ConversationView,
        history: Vec<Value>,
        question: &str,
        user: &str,
    ) -> Result<TurnStarted, ServiceError> {
        let conversation_id = conversation.id.as_str();
        let rules = store::rules::load(&self.db).await?;
        // Every turn reads the conversation's own period, however long it runs.
        let period = Period::parse(&conversation.period_label)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored period: {e}")))?;
        let pack = evidence::load_period(
            &self.db,
            &rules,
            &conversation.site,
            conversation.metric,
            period,
            conversation.compare,
            self.clock.today(),
        )
        .await?;
        // The question in its conversation: the pack of the site it asks about, and what
        // its kind needs looked up.
        let (pack, lookups) = super::lookups::look_up(
            &self.db,
            &rules,
            conversation,
            question,
            pack,
            period,
            self.clock.today(),
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
        let mut request = request_for(&pack, &rules, input, question, conversation_id, Some(user));
        request["custom_inputs"]["lookups"] = serde_json::json!(lookups);
        let now = chrono::Utc::now();
        let turn_id = new_id(now, "trn");
        let added_json = serde_json::to_string(&added).unwrap_or_else(|_| "[]".into());
        conversations::insert_turn(
            &self.db,
            &turn_id,
            conversation_id,
            question,
            &added_json,
            &clock::timestamp(now),
        )
        .await?;
        let live = self.live.open(&turn_id);
        let cards = self.clone();
        let task_turn = turn_id.clone();
        let rules_version = rules.version;
        crate::ssr::tasks::spawn("answer a question", async move {
            // Closes the live stream however the task ends, a panic included, so followers
            // are never left waiting.
            let _close = CloseOnDrop(&cards.live, &task_turn);
            cards
                .answer_turn(&task_turn, pack, rules_version, request, live)
                .await;
        });
        Ok(TurnStarted {
            conversation_id: conversation_id.to_string(),
            turn_id,
        })
    }

    #[tracing::instrument(skip_all, fields(turn = %turn_id))]
    async fn answer_turn(
        &self,
        turn_id: &str,
        pack: EvidencePack,
        rules_version: i64,
        request: Value,
        live: Arc<LiveTurn>,
    ) {
        let agent = self.agents.questions().clone();
        let hash = evidence::hash(&pack);
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let forward_live = live.clone();
        let forward = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                forward_live.delta(d);
            }
        });
        let asked = ask(
            &self.db,
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
        let finished_at = clock::now();
        let outcome = match asked {
            Ok(a) => match a.outcome {
                Ok(reply) => TurnOutcome {
                    status: TurnStatus::Ok,
                    answer: reply.answer.text,
                    output_items_json: serde_json::to_string(&reply.answer.items)
                        .unwrap_or_else(|_| "[]".into()),
                    insight_json: reply
                        .answer
                        .insight
                        .as_ref()
                        .and_then(|i| serde_json::to_string(i).ok()),
                    grounding_json: serde_json::to_string(&a.grounding).ok(),
                    claims_json: serde_json::to_string(&a.claims).ok(),
                    error: None,
                    finished_at,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "the question could not be answered");
                    failed(e.to_string(), finished_at)
                }
            },
            Err(e) => {
                tracing::error!(error = %chain(&e), "could not record the answer's agent call");
                failed("the answer could not be stored".into(), finished_at)
            }
        };
        if let Err(e) = conversations::finish_turn(&self.db, turn_id, &outcome).await {
            tracing::error!(error = %chain(&e), "could not store the turn's answer");
        }
        match conversations::turn(&self.db, turn_id).await {
            Ok(Some((_, turn))) => live.finish(turn),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %chain(&e), "could not read the finished turn"),
        }
    }

    /// The events of one turn: the text so far as a snapshot, live deltas, then the final
    /// answer. The receiver ends after the final event.
    pub async fn turn_events(
        &self,
        turn_id: &str,
        reach: &Reach,
    ) -> Result<mpsc::Receiver<TurnEvent>, ServiceError> {
        // The turn's row exists from the moment it was asked, live or not.
        self.check_reach(reach, turn_id).await?;
        let (tx, rx) = mpsc::channel(64);
        if let Some((so_far, live)) = self.live.subscribe(turn_id) {
            crate::ssr::tasks::spawn(
                "follow a live turn",
                follow_live(self.db.clone(), turn_id.to_string(), so_far, live, tx),
            );
            return Ok(rx);
        }
        let (_, turn) = conversations::turn(&self.db, turn_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no such question".into()))?;
        crate::ssr::tasks::spawn(
            "follow a stored turn",
            follow_stored(self.db.clone(), turn_id.to_string(), turn, tx),
        );
        Ok(rx)
    }
}

fn failed(message: String, finished_at: String) -> TurnOutcome {
    TurnOutcome {
        status: TurnStatus::Error,
        answer: String::new(),
        output_items_json: "[]".into(),
        insight_json: None,
        grounding_json: None,
        claims_json: None,
        error: Some(message),
        finished_at,
    }
}

/// A turn answered here: the text so far, then its live events until the final one.
async fn follow_live(
    db: Db,
    id: String,
    so_far: String,
    mut live: broadcast::Receiver<TurnEvent>,
    tx: mpsc::Sender<TurnEvent>,
) {
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
                if let Ok(Some((_, turn))) = conversations::turn(&db, &id).await {
                    if turn.status != TurnStatus::Running {
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
}

/// A turn finished, or running on another replica: polls the database until it is done.
async fn follow_stored(db: Db, id: String, mut turn: TurnView, tx: mpsc::Sender<TurnEvent>) {
    let started = std::time::Instant::now();
    while turn.status == TurnStatus::Running && started.elapsed() < REMOTE_WAIT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match conversations::turn(&db, &id).await {
            Ok(Some((_, t))) => turn = t,
            _ => return,
        }
    }
    let _ = tx
        .send(TurnEvent::Final {
            turn: Box::new(turn),
        })
        .await;
}

/// Closes a turn's live stream when dropped (the answering task ended, or panicked).
struct CloseOnDrop<'a>(&'a LiveTurns, &'a str);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}
