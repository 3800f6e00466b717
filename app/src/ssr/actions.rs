//! Next actions on cards: acknowledge, assign, mark done, dismiss with a reason; whether
//! the KPI recovered after a done action; and the card's feedback (dismiss reasons,
//! "not useful" reasons) that goes with its next agent request, so what people said
//! changes what comes next.

use super::db::{self, Db};
use super::insights::timestamp;
use super::state::AppState;
use super::ServiceError;
use crate::domain::actions::{check_transition, outcome, ActionView};
use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, parse_date, Week};
use crate::dto::InsightView;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

const COLS: &str = "insight_id, position, state, assignee, reason, done_on, updated_at";

fn view(r: &AnyRow) -> Result<ActionView, sqlx::Error> {
    Ok(ActionView {
        insight_id: r.try_get("insight_id")?,
        position: r.try_get("position")?,
        state: r.try_get("state")?,
        assignee: r.try_get("assignee")?,
        reason: r.try_get("reason")?,
        done_on: r.try_get("done_on")?,
        updated_at: r.try_get("updated_at")?,
        outcome: None,
    })
}

/// Sets the state of next action `position` of an insight.
pub async fn update(
    state: &AppState,
    insight_id: &str,
    position: i64,
    to: &str,
    assignee: Option<&str>,
    reason: Option<&str>,
) -> Result<ActionView, ServiceError> {
    let insight = db::insight(&state.db, insight_id)
        .await?
        .filter(|i| i.status == "ok")
        .ok_or_else(|| ServiceError::NotFound(format!("no insight '{insight_id}'")))?;
    let action = insight
        .insight
        .as_ref()
        .and_then(|i| {
            usize::try_from(position)
                .ok()
                .and_then(|p| i.next_actions.get(p))
        })
        .ok_or_else(|| {
            ServiceError::NotFound(format!("the insight has no next action {position}"))
        })?;
    let clip = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(500).collect::<String>())
    };
    let (assignee, reason) = (clip(assignee), clip(reason));
    let from: Option<String> = sqlx::query_scalar(
        "SELECT state FROM action_items WHERE insight_id = $1 AND position = $2",
    )
    .bind(insight_id.to_string())
    .bind(position)
    .fetch_optional(&state.db)
    .await
    .context("Failed to read the action")?;
    check_transition(
        from.as_deref().unwrap_or("open"),
        to,
        assignee.as_deref(),
        reason.as_deref(),
    )
    .map_err(ServiceError::BadRequest)?;
    let now = chrono::Utc::now();
    let done_on = (to == "done").then(|| fmt_date(state.today()));
    let stored = sqlx::query(
        "INSERT INTO action_items (id, insight_id, site, metric, period_start, position, action, owner, \
         state, assignee, reason, done_on, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         ON CONFLICT (insight_id, position) DO UPDATE SET state = excluded.state, \
         assignee = COALESCE(excluded.assignee, action_items.assignee), reason = excluded.reason, \
         done_on = excluded.done_on, updated_at = excluded.updated_at \
         WHERE action_items.state NOT IN ('done', 'dismissed')",
    )
    .bind(super::insights::new_id(now, "act"))
    .bind(insight_id.to_string())
    .bind(insight.site.clone())
    .bind(insight.metric.key())
    .bind(insight.period_start.clone())
    .bind(position)
    .bind(action.action.clone())
    .bind(action.owner.clone())
    .bind(to.to_string())
    .bind(assignee)
    .bind(reason)
    .bind(done_on)
    .bind(timestamp(now))
    .execute(&state.db)
    .await
    .context("Failed to store the action")?;
    // A concurrent change made it final between the check and the write.
    if stored.rows_affected() == 0 {
        return Err(ServiceError::BadRequest(
            "the action was closed (done or dismissed) meanwhile".into(),
        ));
    }
    tracing::info!(insight = %insight_id, position, state = %to, "next action updated");
    let mut views = for_insights(&state.db, &[insight_id.to_string()]).await?;
    let mut v = views
        .remove(insight_id)
        .and_then(|mut l| {
            l.iter()
                .position(|a| a.position == position)
                .map(|i| l.remove(i))
        })
        .ok_or_else(|| anyhow::anyhow!("the stored action is missing"))?;
    if v.state == "done" {
        let rules = db::rules(&state.db).await?;
        let weeks = weekly_values(state, &insight.site, insight.metric).await?;
        v.outcome = outcome_for(state, &insight, &v, &weeks, &rules);
    }
    Ok(v)
}

/// The acted-on actions of these insights, by insight id.
pub async fn for_insights(
    db: &Db,
    ids: &[String],
) -> anyhow::Result<HashMap<String, Vec<ActionView>>> {
    let mut out: HashMap<String, Vec<ActionView>> = HashMap::new();
    for chunk in ids.chunks(50) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM action_items WHERE insight_id IN ({}) ORDER BY position",
            placeholders.join(",")
        )));
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(db).await.context("Failed to read actions")? {
            let v = view(&r)?;
            out.entry(v.insight_id.clone()).or_default().push(v);
        }
    }
    Ok(out)
}

/// Weekly values of one card over the last 12 complete weeks and the current one.
async fn weekly_values(
    state: &AppState,
    site: &str,
    metric: Metric,
) -> anyhow::Result<Vec<(Week, Option<f64>)>> {
    let this_week = Week::containing(state.today());
    let span = this_week.trailing(13);
    let filter = (site != crate::domain::evidence::NETWORK).then_some(site);
    let mut sums: HashMap<Week, crate::domain::kpi::KpiCounts> = HashMap::new();
    for (_, w, c) in db::weekly_counts(&state.db, filter, span[0], this_week).await? {
        sums.entry(w).or_default().add(&c);
    }
    Ok(span
        .iter()
        .map(|w| (*w, sums.get(w).and_then(|c| c.value(metric))))
        .collect())
}

fn outcome_for(
    state: &AppState,
    insight: &InsightView,
    action: &ActionView,
    weeks: &[(Week, Option<f64>)],
    rules: &crate::domain::rules::Rules,
) -> Option<crate::domain::actions::Outcome> {
    let done_on = parse_date(action.done_on.as_deref()?)?;
    let explained = Week::containing(parse_date(&insight.period_start)?);
    let min_change = if insight.metric.is_ratio() {
        rules.noise_min_pp()
    } else {
        0.0
    };
    Some(outcome(
        insight.metric,
        explained,
        done_on,
        state.today(),
        weeks,
        rules.target(&insight.site, insight.metric),
        min_change,
    ))
}

/// Attaches acted-on actions (with outcomes for done ones) to the cards' insights.
pub async fn attach(state: &AppState, insights: &mut [&mut InsightView]) -> anyhow::Result<()> {
    let ids: Vec<String> = insights.iter().map(|i| i.id.clone()).collect();
    let mut by_insight = for_insights(&state.db, &ids).await?;
    if by_insight.is_empty() {
        return Ok(());
    }
    let rules = db::rules(&state.db).await?;
    for insight in insights.iter_mut() {
        let Some(mut actions) = by_insight.remove(&insight.id) else {
            continue;
        };
        if actions.iter().any(|a| a.state == "done") {
            let weeks = weekly_values(state, &insight.site, insight.metric).await?;
            for a in actions.iter_mut().filter(|a| a.state == "done") {
                a.outcome = outcome_for(state, insight, a, &weeks, &rules);
            }
        }
        insight.actions = actions;
    }
    Ok(())
}

/// What people said about a card's earlier insights, for its next agent request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CardFeedback {
    /// Actions dismissed, with why.
    pub dismissed_actions: Vec<Dismissed>,
    /// Insights marked "not useful", with why.
    pub not_useful: Vec<NotUseful>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dismissed {
    pub action: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotUseful {
    pub headline: String,
    pub reason: String,
}

impl CardFeedback {
    pub fn is_empty(&self) -> bool {
        self.dismissed_actions.is_empty() && self.not_useful.is_empty()
    }

    /// One paragraph for the agent's user message.
    pub fn as_text(&self) -> String {
        let mut parts = Vec::new();
        for d in &self.dismissed_actions {
            parts.push(format!(
                "the action \"{}\" was dismissed: {}",
                d.action, d.reason
            ));
        }
        for n in &self.not_useful {
            parts.push(format!(
                "an earlier insight (\"{}\") was marked not useful: {}",
                n.headline, n.reason
            ));
        }
        format!(
            "Feedback on this card from the operations team: {}. Do not suggest dismissed actions again unless the evidence now points to them.",
            parts.join("; ")
        )
    }

    /// Adds the feedback to a request: `custom_inputs.feedback`, and a paragraph in the
    /// last user message (agents that read only messages see it too).
    pub fn apply(&self, request: &mut Value) {
        if self.is_empty() {
            return;
        }
        if let Some(custom) = request
            .get_mut("custom_inputs")
            .and_then(Value::as_object_mut)
        {
            custom.insert(
                "feedback".into(),
                serde_json::to_value(self).unwrap_or_default(),
            );
        }
        let text = self.as_text();
        if let Some(items) = request.get_mut("input").and_then(Value::as_array_mut) {
            if let Some(user) = items
                .iter_mut()
                .rev()
                .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            {
                if let Some(Value::String(content)) = user.get_mut("content") {
                    content.push_str("\n\n");
                    content.push_str(&text);
                }
            }
        }
    }
}

/// The last 10 dismissed actions and "not useful" reasons of a card.
pub async fn card_feedback(db: &Db, site: &str, metric: Metric) -> anyhow::Result<CardFeedback> {
    let dismissed = sqlx::query(
        "SELECT action, reason FROM action_items WHERE site = $1 AND metric = $2 AND state = 'dismissed' \
         ORDER BY updated_at DESC LIMIT 10",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .fetch_all(db)
    .await
    .context("Failed to read dismissed actions")?
    .iter()
    .map(|r| {
        Ok(Dismissed {
            action: r.try_get("action")?,
            reason: r.try_get::<Option<String>, _>("reason")?.unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let not_useful = sqlx::query(
        "SELECT i.headline, f.reason FROM feedback f JOIN insights i ON i.id = f.insight_id \
         WHERE i.site = $1 AND i.metric = $2 AND f.helpful = 0 AND f.reason IS NOT NULL \
         ORDER BY f.created_at DESC LIMIT 10",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .fetch_all(db)
    .await
    .context("Failed to read feedback")?
    .iter()
    .map(|r| {
        Ok(NotUseful {
            headline: r.try_get("headline")?,
            reason: r
                .try_get::<Option<String>, _>("reason")?
                .unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(CardFeedback {
        dismissed_actions: dismissed,
        not_useful,
    })
}

/// Whether a card got new feedback (a dismissed action, a "not useful" with a reason)
/// after `since`: its next answer may differ even on the same evidence.
pub async fn feedback_since(
    db: &Db,
    site: &str,
    metric: Metric,
    since: &str,
) -> anyhow::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST((SELECT COUNT(*) FROM action_items WHERE site = $1 AND metric = $2 \
           AND state = 'dismissed' AND updated_at > $3) + \
         (SELECT COUNT(*) FROM feedback f JOIN insights i ON i.id = f.insight_id WHERE i.site = $1 \
           AND i.metric = $2 AND f.helpful = 0 AND f.reason IS NOT NULL AND f.created_at > $3) AS BIGINT)",
    )
    .bind(site.to_string())
    .bind(metric.key())
    .bind(since.to_string())
    .fetch_one(db)
    .await
    .context("Failed to check for new feedback")?;
    Ok(n > 0)
}
