//! Insight refresh (evidence → agent → stored insight) and the state of a card.

use super::agent::{build_request, Agents};
use super::ask::{ask, Subject};
use super::db::{self, NewInsight};
use super::evidence;
use super::runs::{self, JobClaim};
use super::state::AppState;
use super::ServiceError;
use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, Week};
use crate::dto::{Card, InsightView};
use anyhow::Context;
use std::sync::atomic::{AtomicU64, Ordering};

/// The question asked when a card is refreshed without one.
pub fn default_question(metric: Metric, site_name: &str, week_label: &str) -> String {
    format!(
        "Why did {} change at {site_name} in {week_label}, and what should we do next?",
        metric.label()
    )
}

/// A sortable, unique-enough id: a prefix, creation time in microseconds, process id,
/// counter.
pub fn new_id(now: chrono::DateTime<chrono::Utc>, prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{:x}{:05x}{:04x}",
        now.timestamp_micros(),
        std::process::id() & 0xfffff,
        n & 0xffff
    )
}

/// Timestamps are fixed-width RFC 3339 UTC, so text order is time order.
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// How a refresh is carried out.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefreshOptions<'a> {
    /// The user's question; the default question when `None`.
    pub question: Option<&'a str>,
    /// Make no agent call when the card's last good insight came from the same evidence
    /// pack, rules version and agent (name and model version) and nobody has given the
    /// card new feedback since: runs use this.
    pub skip_unchanged: bool,
    /// The run job this refresh is for: its result is stored only while the claim still
    /// holds the job, in the same transaction that finishes the job.
    pub job: Option<&'a JobClaim>,
}

/// What a refresh did.
#[derive(Debug)]
pub enum Refreshed {
    /// A new insight, stored.
    Made(Box<InsightView>),
    /// Nothing changed since this insight; the agent was not called.
    Unchanged { insight_id: String },
}

/// Refreshes one card now, always calling the agent (the dashboard's refresh button and
/// the API). See [`refresh_card`].
pub async fn refresh(
    state: &AppState,
    site: &str,
    metric_key: &str,
    question: Option<&str>,
) -> Result<InsightView, ServiceError> {
    let opts = RefreshOptions {
        question,
        ..Default::default()
    };
    match refresh_card(state, site, metric_key, opts).await? {
        Refreshed::Made(view) => Ok(*view),
        Refreshed::Unchanged { .. } => Err(anyhow::anyhow!("a forced refresh was skipped").into()),
    }
}

/// Refreshes one card: builds the evidence pack, asks the cards agent, checks the reply
/// against the pack and stores the result with its lineage. A failed call (or a reply
/// whose every root cause is unsupported by the data) is stored as an `error` attempt, so
/// the card can say why it is stale, and returned as an error; the last good insight is
/// untouched.
#[tracing::instrument(skip_all, fields(site = %site, metric = %metric_key))]
pub async fn refresh_card(
    state: &AppState,
    site: &str,
    metric_key: &str,
    opts: RefreshOptions<'_>,
) -> Result<Refreshed, ServiceError> {
    let metric = evidence::parse_metric(metric_key)?;
    let rules = db::rules(&state.db).await?;
    // One reference date for the whole refresh: the pack and the stored row must agree on
    // the week even when the clock passes midnight in between.
    let as_of = state.today();
    let week = Week::latest_complete(as_of);
    let pack = evidence::load(&state.db, &rules, site, metric, as_of).await?;
    let hash = evidence::hash(&pack);
    let agent = state.agents.cards().clone();
    if opts.skip_unchanged {
        if let Some(last) = db::latest_ok_insight(&state.db, site, metric).await? {
            if last.evidence_hash == hash
                && last.rules_version == rules.version
                && last.period_start == fmt_date(week.start)
                && last.agent == agent.name()
                && last.model_version == agent.model_version().await
                && !super::actions::feedback_since(&state.db, site, metric, &last.created_at)
                    .await?
            {
                return Ok(Refreshed::Unchanged {
                    insight_id: last.id,
                });
            }
        }
    }
    let question = clean_question(opts.question)?
        .unwrap_or_else(|| default_question(metric, &pack.scope.site_name, &pack.period.label));
    let mut request = build_request(&pack, &rules, &question);
    // What people said about this card before (dismissed actions, "not useful" reasons).
    super::actions::card_feedback(&state.db, site, metric)
        .await?
        .apply(&mut request);
    let id = new_id(chrono::Utc::now(), "ins");
    let asked = ask(
        state,
        &agent,
        &Subject {
            id: &id,
            pack: &pack,
            evidence_hash: &hash,
            rules_version: rules.version,
        },
        &request,
        false,
        None,
    )
    .await?;
    let created_at = timestamp(chrono::Utc::now());
    let grounding_json = (!asked.grounding.is_empty())
        .then(|| serde_json::to_string(&asked.grounding).ok())
        .flatten();
    let trace_id = asked.trace_id();
    let mut row = NewInsight {
        id: &id,
        site,
        metric,
        period_start: week.start,
        created_at: &created_at,
        status: "ok",
        agent: agent.name(),
        value: pack.value,
        headline: "",
        narrative: "",
        insight_json: None,
        evidence_hash: &hash,
        rules_version: rules.version,
        error: None,
        latency_ms: asked.latency_ms,
        agent_kind: agent.kind().key(),
        model_version: asked.model_version.clone(),
        trace_id: trace_id.clone(),
        grounding_json,
        job_id: opts.job.map(|j| j.id.as_str()),
    };
    match asked.outcome {
        Ok(reply) => {
            let answer = reply.answer;
            let headline = answer
                .insight
                .as_ref()
                .map(|i| i.headline.clone())
                .unwrap_or_else(|| {
                    answer
                        .text
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect()
                });
            row.headline = &headline;
            row.narrative = &answer.text;
            row.insight_json = answer
                .insight
                .as_ref()
                .and_then(|i| serde_json::to_string(i).ok());
            store(state, &row, opts.job).await?;
            tracing::info!(latency_ms = row.latency_ms, source = ?answer.source, attempts = reply.attempts, "insight refreshed");
            Ok(Refreshed::Made(Box::new(InsightView {
                id: id.clone(),
                site: site.to_string(),
                metric,
                period_start: fmt_date(week.start),
                period_label: week.label(),
                created_at: created_at.clone(),
                agent: agent.name().to_string(),
                value: pack.value,
                headline: headline.clone(),
                narrative: answer.text.clone(),
                insight: answer.insight,
                evidence_hash: hash.clone(),
                rules_version: rules.version,
                latency_ms: row.latency_ms,
                status: "ok".into(),
                error: None,
                agent_kind: Some(agent.kind().key().to_string()),
                model_version: asked.model_version,
                trace_id,
                grounding: asked.grounding,
                actions: vec![],
            })))
        }
        Err(e) => {
            let message = e.to_string();
            // Only the safe summary and the exception's last line, never the body.
            tracing::warn!(error = %message, detail = ?e, "agent call failed");
            row.status = "error";
            row.headline = "Refresh failed";
            row.error = Some(&message);
            store(state, &row, opts.job).await?;
            Err(ServiceError::Agent(e))
        }
    }
}

/// Stores an attempt; for a job, only if its claim still holds, together with finishing
/// the job (`done` or `failed`), so a job taken over by another replica never yields a
/// second insight.
async fn store(
    state: &AppState,
    row: &NewInsight<'_>,
    job: Option<&JobClaim>,
) -> Result<(), ServiceError> {
    let Some(claim) = job else {
        db::insert_insight(&state.db, row).await?;
        return Ok(());
    };
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    let status = if row.status == "ok" { "done" } else { "failed" };
    if !runs::finish_job(&mut *tx, claim, status, Some(row.id), row.error).await? {
        let _ = tx.rollback().await;
        return Err(ServiceError::Superseded);
    }
    db::insert_insight(&mut *tx, row).await?;
    tx.commit().await.context("Failed to store the insight")?;
    Ok(())
}

/// A user's question, trimmed and capped at 2,000 characters; `None` when blank.
/// The longest question sent to an agent, in characters (the question box allows 500).
pub const MAX_QUESTION_CHARS: usize = 2000;

/// A question trimmed (`None` when empty), or a clear refusal when it is too long: it is
/// never cut silently, since a cut question may ask something else.
pub fn clean_question(question: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(q) = question.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let n = q.chars().count();
    if n > MAX_QUESTION_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "a question is at most {MAX_QUESTION_CHARS} characters; this one has {n}"
        )));
    }
    Ok(Some(q.to_string()))
}

/// Marks a card stale when its insight came from a model version the agent's alias no
/// longer points at.
pub fn mark_model_moved(card: &mut Card, agents: &Agents) {
    let Some(insight) = &card.insight else { return };
    let (Some(made_by), Some(agent)) = (&insight.model_version, agents.get(&insight.agent)) else {
        return;
    };
    let Some(current) = agent.cached_model_version() else {
        return;
    };
    if &current != made_by {
        let model = agent
            .profile()
            .model
            .as_ref()
            .map(|m| m.uri())
            .unwrap_or_default();
        let reason =
            format!("made by model version {made_by}; {model} now points to version {current}");
        card.stale = Some(match card.stale.take() {
            Some(s) => format!("{reason}; {s}"),
            None => reason,
        });
    }
}

/// The state of a card from its latest good insight and latest failed attempt.
pub fn card(
    site: &str,
    metric: Metric,
    current_value: Option<f64>,
    week: Week,
    rules_version: i64,
    ok: Option<InsightView>,
    failed: Option<InsightView>,
) -> Card {
    let failed_later = failed.filter(|f| ok.as_ref().is_none_or(|o| f.created_at > o.created_at));
    let error = failed_later.as_ref().and_then(|f| f.error.clone());
    let mut reasons = Vec::new();
    if let Some(o) = &ok {
        if o.period_start != fmt_date(week.start) {
            reasons.push(format!(
                "explains {}; {} is now complete",
                o.period_label,
                week.label()
            ));
        } else if match (o.value, current_value) {
            (Some(a), Some(b)) => (a - b).abs() > 1e-9,
            (a, b) => a.is_some() != b.is_some(),
        } {
            reasons.push("the data changed since it was generated".to_string());
        } else if o.rules_version != rules_version {
            reasons.push(format!(
                "the business rules changed since it was generated (version {} → {rules_version})",
                o.rules_version
            ));
        }
        if let Some(e) = &error {
            reasons.push(format!("the last refresh failed: {e}"));
        }
    }
    Card {
        site: site.to_string(),
        metric,
        insight: ok,
        stale: (!reasons.is_empty()).then(|| reasons.join("; ")),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    fn view(
        id: &str,
        created_at: &str,
        period_start: &str,
        value: f64,
        rules_version: i64,
        error: Option<&str>,
    ) -> InsightView {
        InsightView {
            id: id.into(),
            site: "DAL".into(),
            metric: Metric::Otif,
            period_start: period_start.into(),
            period_label: String::new(),
            created_at: created_at.into(),
            agent: "a".into(),
            value: Some(value),
            headline: "h".into(),
            narrative: String::new(),
            insight: None,
            evidence_hash: String::new(),
            rules_version,
            latency_ms: 1,
            status: if error.is_some() { "error" } else { "ok" }.into(),
            error: error.map(Into::into),
            agent_kind: None,
            model_version: None,
            trace_id: None,
            grounding: vec![],
            actions: vec![],
        }
    }

    fn week() -> Week {
        Week::containing(parse_date("2026-11-09").unwrap())
    }

    #[test]
    fn a_current_insight_is_not_stale() {
        let ok = view(
            "1",
            "2026-11-20T10:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            None,
        );
        let c = card("DAL", Metric::Otif, Some(90.0), week(), 1, Some(ok), None);
        assert_eq!((c.stale, c.error), (None, None));
    }

    #[test]
    fn stale_reasons_week_data_rules_and_failed_refresh() {
        let old_week = view(
            "1",
            "2026-11-10T10:00:00.000000Z",
            "2026-11-02",
            90.0,
            1,
            None,
        );
        let c = card(
            "DAL",
            Metric::Otif,
            Some(90.0),
            week(),
            1,
            Some(old_week),
            None,
        );
        assert!(c.stale.unwrap().contains("2026-W46 is now complete"));

        let ok = view(
            "1",
            "2026-11-20T10:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            None,
        );
        let c = card(
            "DAL",
            Metric::Otif,
            Some(88.0),
            week(),
            1,
            Some(ok.clone()),
            None,
        );
        assert!(c.stale.unwrap().contains("data changed"));

        let c = card(
            "DAL",
            Metric::Otif,
            Some(90.0),
            week(),
            2,
            Some(ok.clone()),
            None,
        );
        assert!(c.stale.unwrap().contains("rules changed"));

        let failed = view(
            "2",
            "2026-11-20T11:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("the agent could not be reached"),
        );
        let c = card(
            "DAL",
            Metric::Otif,
            Some(90.0),
            week(),
            1,
            Some(ok.clone()),
            Some(failed),
        );
        assert_eq!(c.insight.unwrap().id, "1", "the last good insight stays");
        assert!(c
            .stale
            .unwrap()
            .contains("last refresh failed: the agent could not be reached"));
        assert_eq!(c.error.as_deref(), Some("the agent could not be reached"));

        // A failure older than the good insight no longer matters.
        let earlier = view(
            "0",
            "2026-11-20T09:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("x"),
        );
        let c = card(
            "DAL",
            Metric::Otif,
            Some(90.0),
            week(),
            1,
            Some(ok),
            Some(earlier),
        );
        assert_eq!((c.stale, c.error), (None, None));
    }

    #[test]
    fn a_card_without_insight_shows_the_failure() {
        let failed = view(
            "2",
            "2026-11-20T11:00:00.000000Z",
            "2026-11-09",
            90.0,
            1,
            Some("boom"),
        );
        let c = card(
            "DAL",
            Metric::Otif,
            Some(90.0),
            week(),
            1,
            None,
            Some(failed),
        );
        assert!(c.insight.is_none() && c.stale.is_none());
        assert_eq!(c.error.as_deref(), Some("boom"));
    }
}
