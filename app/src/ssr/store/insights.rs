//! Insights (every attempt, good or failed), the agent call behind each one (lineage),
//! thumbs up/down on them, and the next actions people acted on.

use super::{decode, list as in_list, Ctx, Db, Exec, Result};
use crate::domain::actions::{ActionState, ActionView};
use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, parse_date, Lens, Period, Week};
use crate::domain::status::{AnswerStatus, FeedbackSync};
use crate::dto::{FeedbackView, InsightView, Lineage};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

/// A new insight attempt to store.
pub struct NewInsight<'a> {
    pub id: &'a str,
    pub site: &'a str,
    pub metric: Metric,
    /// The card's lens and the period explained.
    pub lens: Lens,
    pub period: Period,
    pub created_at: &'a str,
    pub status: AnswerStatus,
    pub agent: &'a str,
    pub value: Option<f64>,
    pub headline: &'a str,
    pub narrative: &'a str,
    pub insight_json: Option<String>,
    pub evidence_hash: &'a str,
    pub rules_version: i64,
    pub error: Option<&'a str>,
    pub latency_ms: i64,
    pub agent_kind: &'a str,
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    pub grounding_json: Option<String>,
    pub claims_json: Option<String>,
    /// The run job that made it, for scheduled and batch refreshes.
    pub job_id: Option<&'a str>,
}

/// Stores an insight attempt, on the pool or inside a transaction.
pub async fn insert<'e>(ex: impl Exec<'e>, i: &NewInsight<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO insights (id, site, metric, period_start, created_at, status, agent, value, headline, \
         narrative, insight_json, evidence_hash, rules_version, error, latency_ms, agent_kind, \
         model_version, trace_id, grounding_json, job_id, lens, period, claims_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
    )
    .bind(i.id.to_string())
    .bind(i.site.to_string())
    .bind(i.metric.key())
    .bind(fmt_date(i.period.start))
    .bind(i.created_at.to_string())
    .bind(i.status.as_str())
    .bind(i.agent.to_string())
    .bind(i.value)
    .bind(i.headline.to_string())
    .bind(i.narrative.to_string())
    .bind(i.insight_json.clone())
    .bind(i.evidence_hash.to_string())
    .bind(i.rules_version)
    .bind(i.error.map(str::to_string))
    .bind(i.latency_ms)
    .bind(i.agent_kind.to_string())
    .bind(i.model_version.clone())
    .bind(i.trace_id.clone())
    .bind(i.grounding_json.clone())
    .bind(i.job_id.map(str::to_string))
    .bind(i.lens.key())
    .bind(i.period.label())
    .bind(i.claims_json.clone())
    .execute(ex)
    .await
    .ctx("Failed to store the insight")?;
    Ok(())
}

const INSIGHT_COLS: &str = "id, site, metric, lens, period, period_start, created_at, status, agent, value, headline, narrative, insight_json, evidence_hash, rules_version, error, latency_ms, agent_kind, model_version, trace_id, grounding_json, claims_json";

#[derive(sqlx::FromRow)]
struct InsightRow {
    id: String,
    site: String,
    metric: String,
    lens: String,
    period: String,
    period_start: String,
    created_at: String,
    status: String,
    agent: String,
    value: Option<f64>,
    headline: String,
    narrative: String,
    insight_json: Option<String>,
    evidence_hash: String,
    rules_version: i64,
    error: Option<String>,
    latency_ms: i64,
    agent_kind: Option<String>,
    model_version: Option<String>,
    trace_id: Option<String>,
    grounding_json: Option<String>,
    claims_json: Option<String>,
}

impl InsightRow {
    /// The view; `None` for a metric this build does not know (a row from a newer one).
    fn into_view(self) -> Result<Option<InsightView>> {
        let Some(metric) = Metric::parse(&self.metric) else {
            return Ok(None);
        };
        Ok(Some(InsightView {
            status: decode("insights.status", AnswerStatus::parse(&self.status))?,
            // Rows from before cards had lenses explain weeks and have no label.
            period_label: if self.period.is_empty() {
                parse_date(&self.period_start)
                    .map(|d| Week::containing(d).label())
                    .unwrap_or_default()
            } else {
                self.period
            },
            lens: self.lens,
            actions: vec![],
            id: self.id,
            site: self.site,
            metric,
            period_start: self.period_start,
            created_at: self.created_at,
            agent: self.agent,
            value: self.value,
            headline: self.headline,
            narrative: self.narrative,
            insight: self
                .insight_json
                .and_then(|j| serde_json::from_str(&j).ok()),
            evidence_hash: self.evidence_hash,
            rules_version: self.rules_version,
            latency_ms: self.latency_ms,
            error: self.error,
            agent_kind: self.agent_kind,
            model_version: self.model_version,
            trace_id: self.trace_id,
            grounding: self
                .grounding_json
                .and_then(|g| serde_json::from_str(&g).ok())
                .unwrap_or_default(),
            claims: self
                .claims_json
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
        }))
    }
}

fn views(rows: Vec<InsightRow>) -> Result<Vec<InsightView>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.extend(r.into_view()?);
    }
    Ok(out)
}

/// One insight (or failed attempt) by id.
pub async fn get<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<InsightView>> {
    let row: Option<InsightRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the insight")?;
    Ok(match row {
        Some(r) => r.into_view()?,
        None => None,
    })
}

/// Insight attempts for one card (or all of a site's, or all; one lens or every lens),
/// latest first.
pub async fn list<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    metric: Option<Metric>,
    lens: Option<Lens>,
    limit: i64,
) -> Result<Vec<InsightView>> {
    let rows = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE ($1 = '' OR site = $1) AND ($2 = '' OR metric = $2) \
         AND ($3 = '' OR lens = $3) ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(site.unwrap_or_default().to_string())
    .bind(metric.map(Metric::key).unwrap_or_default())
    .bind(lens.map(|l| l.key()).unwrap_or_default())
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read insights")?;
    views(rows)
}

/// The site an insight is about (reach checks: one small read, not the insight).
pub async fn site_of<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT site FROM insights WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(ex)
        .await
        .ctx("Failed to read the insight's site")
}

/// The latest insights of any of `sites` (a principal limited to them), optionally of one
/// metric. The placeholders are generated; only the codes are bound.
pub async fn list_among<'e>(
    ex: impl Exec<'e>,
    sites: &[String],
    metric: Option<Metric>,
    limit: i64,
) -> Result<Vec<InsightView>> {
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let places: Vec<String> = (0..sites.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE ($1 = '' OR metric = $1) AND site IN ({}) \
         ORDER BY created_at DESC, id DESC LIMIT $2",
        places.join(", ")
    );
    let mut q = sqlx::query_as(AssertSqlSafe(sql))
        .bind(metric.map(Metric::key).unwrap_or_default())
        .bind(limit);
    for s in sites {
        q = q.bind(s.clone());
    }
    let rows = q.fetch_all(ex).await.ctx("Failed to read insights")?;
    views(rows)
}

/// The latest good insight of one card.
pub async fn latest_ok<'e>(
    ex: impl Exec<'e>,
    site: &str,
    metric: Metric,
    lens: Lens,
    period: &Period,
) -> Result<Option<InsightView>> {
    let row: Option<InsightRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE site = $1 AND metric = $2 AND status = $3 \
         AND lens = $4 AND period_start = $5 ORDER BY created_at DESC, id DESC LIMIT 1"
    )))
    .bind(site.to_string())
    .bind(metric.key())
    .bind(AnswerStatus::Ok.as_str())
    .bind(lens.key())
    .bind(fmt_date(period.start))
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the card's latest insight")?;
    Ok(match row {
        Some(r) => r.into_view()?,
        None => None,
    })
}

/// The latest insight of each status (good, failed) for every card of a lens: those
/// about `period` itself, and those about earlier periods (a card that has not been
/// refreshed since its period moved on shows its last insight as stale). Insights about
/// later periods are left out: a past month does not show next month's card.
/// [`crate::domain::card::for_period`] picks between them.
pub async fn latest_per_card(db: &Db, lens: Lens, period: &Period) -> Result<Vec<InsightView>> {
    let cols = INSIGHT_COLS
        .split(", ")
        .map(|c| format!("i.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    for relation in ["=", "<"] {
        let rows = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {cols} FROM insights i JOIN (SELECT site, metric, status, MAX(created_at) AS latest \
             FROM insights WHERE lens = $1 AND period_start {relation} $2 GROUP BY site, metric, status) l \
             ON i.site = l.site AND i.metric = l.metric AND i.status = l.status AND i.created_at = l.latest \
             WHERE i.lens = $1 AND i.period_start {relation} $2"
        )))
        .bind(lens.key())
        .bind(fmt_date(period.start))
        .fetch_all(db)
        .await
        .ctx("Failed to read the latest insights")?;
        out.extend(views(rows)?);
    }
    Ok(out)
}

/// One agent call, for lineage.
pub struct NewAgentCall<'a> {
    pub id: &'a str,
    pub created_at: &'a str,
    pub agent: &'a str,
    pub kind: &'a str,
    pub endpoint: &'a str,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    pub evidence_hash: &'a str,
    pub rules_version: i64,
    pub request_json: &'a str,
    pub response_body: Option<&'a str>,
    pub status: AnswerStatus,
    pub error: Option<&'a str>,
    pub latency_ms: i64,
    pub attempts: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// Claims read in the reply and how many the evidence does not support.
    pub claims: Option<(i64, i64)>,
}

pub async fn insert_call<'e>(ex: impl Exec<'e>, c: &NewAgentCall<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_calls (id, created_at, agent, kind, endpoint, model, model_version, trace_id, \
         evidence_hash, rules_version, request_json, response_body, status, error, latency_ms, attempts, \
         input_tokens, output_tokens, claims_checked, claims_unsupported) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(c.id.to_string())
    .bind(c.created_at.to_string())
    .bind(c.agent.to_string())
    .bind(c.kind.to_string())
    .bind(c.endpoint.to_string())
    .bind(c.model.clone())
    .bind(c.model_version.clone())
    .bind(c.trace_id.clone())
    .bind(c.evidence_hash.to_string())
    .bind(c.rules_version)
    .bind(c.request_json.to_string())
    .bind(c.response_body.map(str::to_string))
    .bind(c.status.as_str())
    .bind(c.error.map(str::to_string))
    .bind(c.latency_ms)
    .bind(c.attempts)
    .bind(c.input_tokens)
    .bind(c.output_tokens)
    .bind(c.claims.map(|c| c.0))
    .bind(c.claims.map(|c| c.1))
    .execute(ex)
    .await
    .ctx("Failed to store the agent call")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct CallRow {
    id: String,
    created_at: String,
    agent: String,
    kind: String,
    endpoint: String,
    model: Option<String>,
    model_version: Option<String>,
    trace_id: Option<String>,
    evidence_hash: String,
    rules_version: i64,
    request_json: String,
    response_body: Option<String>,
    status: String,
    error: Option<String>,
    latency_ms: i64,
    attempts: i64,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    claims_checked: Option<i64>,
    claims_unsupported: Option<i64>,
}

/// The agent call behind an insight or a conversation turn.
pub async fn lineage<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<Lineage>> {
    let row: Option<CallRow> = sqlx::query_as(
        "SELECT id, created_at, agent, kind, endpoint, model, model_version, trace_id, evidence_hash, \
         rules_version, request_json, response_body, status, error, latency_ms, attempts, input_tokens, \
         output_tokens, claims_checked, claims_unsupported FROM agent_calls WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the lineage")?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Lineage {
        status: decode("agent_calls.status", AnswerStatus::parse(&r.status))?,
        // Stored compact, shown pretty.
        request_json: serde_json::from_str::<serde_json::Value>(&r.request_json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(r.request_json),
        id: r.id,
        created_at: r.created_at,
        agent: r.agent,
        kind: r.kind,
        endpoint: r.endpoint,
        model: r.model,
        model_version: r.model_version,
        trace_id: r.trace_id,
        evidence_hash: r.evidence_hash,
        rules_version: r.rules_version,
        response_body: r.response_body,
        error: r.error,
        latency_ms: r.latency_ms,
        attempts: r.attempts,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        claims_checked: r.claims_checked,
        claims_unsupported: r.claims_unsupported,
    }))
}

pub async fn insert_feedback<'e>(ex: impl Exec<'e>, f: &FeedbackView, user: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO feedback (id, insight_id, helpful, reason, user_id, created_at, mlflow_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(f.id.clone())
    .bind(f.insight_id.clone())
    .bind(i64::from(f.helpful))
    .bind(f.reason.clone())
    .bind(user.to_string())
    .bind(f.created_at.clone())
    .bind(f.mlflow_state.as_str())
    .execute(ex)
    .await
    .ctx("Failed to store the feedback")?;
    Ok(())
}

/// How forwarding a feedback to MLflow went.
pub async fn set_feedback_sync<'e>(
    ex: impl Exec<'e>,
    id: &str,
    state: FeedbackSync,
    assessment_id: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE feedback SET mlflow_state = $2, assessment_id = $3, mlflow_error = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(state.as_str())
    .bind(assessment_id.map(str::to_string))
    .bind(error.map(str::to_string))
    .execute(ex)
    .await
    .ctx("Failed to update the feedback")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct FeedbackRow {
    id: String,
    insight_id: String,
    helpful: i64,
    reason: Option<String>,
    created_at: String,
    mlflow_state: String,
    assessment_id: Option<String>,
}

pub async fn feedback_for<'e>(ex: impl Exec<'e>, insight_id: &str) -> Result<Vec<FeedbackView>> {
    let rows: Vec<FeedbackRow> = sqlx::query_as(
        "SELECT id, insight_id, helpful, reason, created_at, mlflow_state, assessment_id FROM feedback \
         WHERE insight_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(insight_id.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read feedback")?;
    rows.into_iter()
        .map(|r| {
            Ok(FeedbackView {
                mlflow_state: decode(
                    "feedback.mlflow_state",
                    FeedbackSync::parse(&r.mlflow_state),
                )?,
                id: r.id,
                insight_id: r.insight_id,
                helpful: r.helpful != 0,
                reason: r.reason,
                created_at: r.created_at,
                assessment_id: r.assessment_id,
            })
        })
        .collect()
}

/// The state of next action `position` of an insight (`None`: nobody acted on it: open).
pub async fn action_state<'e>(
    ex: impl Exec<'e>,
    insight_id: &str,
    position: i64,
) -> Result<Option<ActionState>> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM action_items WHERE insight_id = $1 AND position = $2",
    )
    .bind(insight_id.to_string())
    .bind(position)
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the action")?;
    state
        .map(|s| decode("action_items.state", ActionState::parse(&s)))
        .transpose()
}

/// A next action moved on.
pub struct ActionChange<'a> {
    pub id: String,
    pub insight: &'a InsightView,
    pub position: i64,
    pub action: &'a str,
    pub owner: &'a str,
    pub state: ActionState,
    pub assignee: Option<String>,
    pub reason: Option<String>,
    pub done_on: Option<String>,
    pub at: String,
}

/// Stores an action's new state, unless it is already final (done or dismissed): false
/// then, when a concurrent change closed it between the caller's check and this write.
pub async fn set_action<'e>(ex: impl Exec<'e>, c: &ActionChange<'_>) -> Result<bool> {
    let stored = sqlx::query(
        "INSERT INTO action_items (id, insight_id, site, metric, period_start, position, action, owner, \
         state, assignee, reason, done_on, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         ON CONFLICT (insight_id, position) DO UPDATE SET state = excluded.state, \
         assignee = COALESCE(excluded.assignee, action_items.assignee), reason = excluded.reason, \
         done_on = excluded.done_on, updated_at = excluded.updated_at \
         WHERE action_items.state NOT IN ($14, $15)",
    )
    .bind(c.id.clone())
    .bind(c.insight.id.clone())
    .bind(c.insight.site.clone())
    .bind(c.insight.metric.key())
    .bind(c.insight.period_start.clone())
    .bind(c.position)
    .bind(c.action.to_string())
    .bind(c.owner.to_string())
    .bind(c.state.as_str())
    .bind(c.assignee.clone())
    .bind(c.reason.clone())
    .bind(c.done_on.clone())
    .bind(c.at.clone())
    .bind(ActionState::Done.as_str())
    .bind(ActionState::Dismissed.as_str())
    .execute(ex)
    .await
    .ctx("Failed to store the action")?;
    Ok(stored.rows_affected() > 0)
}

#[derive(sqlx::FromRow)]
struct ActionRow {
    insight_id: String,
    position: i64,
    state: String,
    assignee: Option<String>,
    reason: Option<String>,
    done_on: Option<String>,
    updated_at: Option<String>,
}

/// The acted-on actions of these insights, by insight id, in position order.
pub async fn actions_of<'e>(
    ex: impl Exec<'e> + Copy,
    ids: &[String],
) -> Result<HashMap<String, Vec<ActionView>>> {
    let mut out: HashMap<String, Vec<ActionView>> = HashMap::new();
    for chunk in ids.chunks(50) {
        let mut q = sqlx::query_as::<_, ActionRow>(AssertSqlSafe(format!(
            "SELECT insight_id, position, state, assignee, reason, done_on, updated_at \
             FROM action_items WHERE insight_id IN ({}) ORDER BY position",
            in_list(chunk.len(), 1)
        )));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(ex).await.ctx("Failed to read actions")? {
            out.entry(r.insight_id.clone())
                .or_default()
                .push(ActionView {
                    state: decode("action_items.state", ActionState::parse(&r.state))?,
                    insight_id: r.insight_id,
                    position: r.position,
                    assignee: r.assignee,
                    reason: r.reason,
                    done_on: r.done_on,
                    updated_at: r.updated_at,
                    outcome: None,
                });
        }
    }
    Ok(out)
}

#[derive(sqlx::FromRow)]
struct SaidRow {
    said: String,
    reason: Option<String>,
}

/// The last `limit` dismissed actions of a card: (action, reason).
pub async fn dismissed_actions<'e>(
    ex: impl Exec<'e>,
    site: &str,
    metric: Metric,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let rows: Vec<SaidRow> = sqlx::query_as(
        "SELECT action AS said, reason FROM action_items WHERE site = $1 AND metric = $2 AND state = $3 \
         ORDER BY updated_at DESC LIMIT $4",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .bind(ActionState::Dismissed.as_str())
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read dismissed actions")?;
    Ok(rows
        .into_iter()
        .map(|r| (r.said, r.reason.unwrap_or_default()))
        .collect())
}

/// The last `limit` "not useful" reasons given on a card's insights: (headline, reason).
pub async fn not_useful<'e>(
    ex: impl Exec<'e>,
    site: &str,
    metric: Metric,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let rows: Vec<SaidRow> = sqlx::query_as(
        "SELECT i.headline AS said, f.reason FROM feedback f JOIN insights i ON i.id = f.insight_id \
         WHERE i.site = $1 AND i.metric = $2 AND f.helpful = 0 AND f.reason IS NOT NULL \
         ORDER BY f.created_at DESC LIMIT $3",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read feedback")?;
    Ok(rows
        .into_iter()
        .map(|r| (r.said, r.reason.unwrap_or_default()))
        .collect())
}

/// Whether a card got new feedback (a dismissed action, a "not useful" with a reason)
/// after `since`: its next answer may differ even on the same evidence.
pub async fn feedback_since<'e>(
    ex: impl Exec<'e>,
    site: &str,
    metric: Metric,
    since: &str,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST((SELECT COUNT(*) FROM action_items WHERE site = $1 AND metric = $2 \
           AND state = $4 AND updated_at > $3) + \
         (SELECT COUNT(*) FROM feedback f JOIN insights i ON i.id = f.insight_id WHERE i.site = $1 \
           AND i.metric = $2 AND f.helpful = 0 AND f.reason IS NOT NULL AND f.created_at > $3) AS BIGINT)",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .bind(since.to_string())
    .bind(ActionState::Dismissed.as_str())
    .fetch_one(ex)
    .await
    .ctx("Failed to check for new feedback")?;
    Ok(n > 0)
}
