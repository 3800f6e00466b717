//! "Why is this down?" conversations and their turns: each turn keeps the input items it
//! added and the output items of its answer, so a follow-up can send the agent everything
//! said so far.

use super::{decode, Ctx, Exec, Result};
use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, parse_date, Compare, Period, Week};
use crate::domain::status::TurnStatus;
use crate::dto::{ConversationView, TurnView};
use sqlx::AssertSqlSafe;

/// A conversation's anchor.
pub struct NewConversation<'a> {
    pub id: &'a str,
    pub site: &'a str,
    pub metric: Metric,
    pub period: Period,
    pub compare: Compare,
    pub agent: &'a str,
    pub title: &'a str,
    pub created_at: &'a str,
}

pub async fn insert<'e>(ex: impl Exec<'e>, c: &NewConversation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO conversations (id, site, metric, period_start, agent, title, created_at, \
         period, compare) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(c.id.to_string())
    .bind(c.site.to_string())
    .bind(c.metric.key())
    .bind(fmt_date(c.period.start))
    .bind(c.agent.to_string())
    .bind(c.title.to_string())
    .bind(c.created_at.to_string())
    .bind(c.period.label())
    .bind(c.compare.key())
    .execute(ex)
    .await
    .ctx("Failed to store the conversation")?;
    Ok(())
}

/// Adds a running turn with the next sequence number; the unique (conversation, seq) key
/// refuses a concurrent second turn with the same number.
pub async fn insert_turn<'e>(
    ex: impl Exec<'e> + Copy,
    id: &str,
    conversation_id: &str,
    question: &str,
    input_items_json: &str,
    created_at: &str,
) -> Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM conversation_turns WHERE conversation_id = $1",
    )
    .bind(conversation_id.to_string())
    .fetch_one(ex)
    .await
    .ctx("Failed to number the turn")?;
    sqlx::query(
        "INSERT INTO conversation_turns (id, conversation_id, seq, question, input_items_json, \
         output_items_json, status, answer, created_at) VALUES ($1, $2, $3, $4, $5, '[]', $6, '', $7)",
    )
    .bind(id.to_string())
    .bind(conversation_id.to_string())
    .bind(seq)
    .bind(question.to_string())
    .bind(input_items_json.to_string())
    .bind(TurnStatus::Running.as_str())
    .bind(created_at.to_string())
    .execute(ex)
    .await
    .ctx("Failed to store the turn")?;
    Ok(seq)
}

/// How a turn ended.
pub struct TurnOutcome {
    pub status: TurnStatus,
    pub answer: String,
    pub output_items_json: String,
    pub insight_json: Option<String>,
    pub grounding_json: Option<String>,
    pub claims_json: Option<String>,
    pub error: Option<String>,
    pub finished_at: String,
}

pub async fn finish_turn<'e>(ex: impl Exec<'e>, id: &str, o: &TurnOutcome) -> Result<()> {
    sqlx::query(
        "UPDATE conversation_turns SET status = $2, answer = $3, output_items_json = $4, insight_json = $5, \
         grounding_json = $6, error = $7, finished_at = $8, claims_json = $9 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(o.status.as_str())
    .bind(o.answer.clone())
    .bind(o.output_items_json.clone())
    .bind(o.insight_json.clone())
    .bind(o.grounding_json.clone())
    .bind(o.error.clone())
    .bind(o.finished_at.clone())
    .bind(o.claims_json.clone())
    .execute(ex)
    .await
    .ctx("Failed to finish the turn")?;
    Ok(())
}

const TURN_COLS: &str = "id, conversation_id, seq, question, input_items_json, output_items_json, status, answer, insight_json, grounding_json, claims_json, error, created_at";

#[derive(sqlx::FromRow)]
struct TurnRow {
    id: String,
    conversation_id: String,
    seq: i64,
    question: String,
    input_items_json: String,
    output_items_json: String,
    status: String,
    answer: String,
    insight_json: Option<String>,
    grounding_json: Option<String>,
    claims_json: Option<String>,
    error: Option<String>,
    created_at: String,
}

impl TurnRow {
    fn view(&self) -> Result<TurnView> {
        Ok(TurnView {
            id: self.id.clone(),
            seq: self.seq,
            question: self.question.clone(),
            status: decode("conversation_turns.status", TurnStatus::parse(&self.status))?,
            answer: self.answer.clone(),
            insight: self
                .insight_json
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok()),
            grounding: self
                .grounding_json
                .as_deref()
                .and_then(|g| serde_json::from_str(g).ok())
                .unwrap_or_default(),
            claims: self
                .claims_json
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            error: self.error.clone(),
            created_at: self.created_at.clone(),
        })
    }
}

/// One turn and its conversation id.
pub async fn turn<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<(String, TurnView)>> {
    let row: Option<TurnRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TURN_COLS} FROM conversation_turns WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the turn")?;
    row.map(|r| Ok((r.conversation_id.clone(), r.view()?)))
        .transpose()
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: String,
    site: String,
    metric: String,
    period_start: String,
    period: String,
    compare: String,
    agent: String,
    title: String,
    created_at: String,
}

/// The site a turn's conversation is about (reach checks: one small read, not the turn's
/// text or the conversation's history).
pub async fn site_of_turn<'e>(ex: impl Exec<'e>, turn_id: &str) -> Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT c.site FROM conversation_turns t JOIN conversations c ON c.id = t.conversation_id \
         WHERE t.id = $1",
    )
    .bind(turn_id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the turn's site")
}

/// A conversation with its turns in order, and the items of its answered turns (what the
/// next turn sends back in `input`).
pub async fn get<'e>(
    ex: impl Exec<'e> + Copy,
    id: &str,
) -> Result<Option<(ConversationView, Vec<serde_json::Value>)>> {
    let Some(c) = sqlx::query_as::<_, ConversationRow>(
        "SELECT id, site, metric, period_start, period, compare, agent, title, created_at \
         FROM conversations WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the conversation")?
    else {
        return Ok(None);
    };
    let Some(metric) = Metric::parse(&c.metric) else {
        return Ok(None);
    };
    let rows: Vec<TurnRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TURN_COLS} FROM conversation_turns WHERE conversation_id = $1 ORDER BY seq"
    )))
    .bind(id.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read the conversation's turns")?;
    let mut turns = Vec::new();
    let mut history = Vec::new();
    for r in &rows {
        let t = r.view()?;
        // Failed and running turns are not part of what the agent has seen answered.
        if t.status == TurnStatus::Ok {
            for items in [&r.input_items_json, &r.output_items_json] {
                if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(items) {
                    history.extend(items);
                }
            }
        }
        turns.push(t);
    }
    Ok(Some((
        ConversationView {
            // Older conversations are about the ISO week of period_start.
            period_label: if c.period.is_empty() {
                parse_date(&c.period_start)
                    .map(|d| Week::containing(d).label())
                    .unwrap_or_default()
            } else {
                c.period
            },
            compare: Compare::parse(&c.compare).unwrap_or_default(),
            id: c.id,
            site: c.site,
            metric,
            period_start: c.period_start,
            agent: c.agent,
            title: c.title,
            created_at: c.created_at,
            turns,
        },
        history,
    )))
}
