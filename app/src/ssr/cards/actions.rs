//! Next actions on cards: acknowledge, assign, mark done, dismiss with a reason; whether
//! the KPI recovered after a done action; and the card's feedback (dismiss reasons,
//! "not useful" reasons) that goes with its next agent request, so what people said
//! changes what comes next.

use super::Cards;
use crate::domain::actions::{check_transition, outcome, ActionState, ActionView, Outcome};
use crate::domain::kpi::{KpiCounts, Metric};
use crate::domain::period::{fmt_date, parse_date, Week};
use crate::domain::rules::Rules;
use crate::domain::status::AnswerStatus;
use crate::dto::{ActionChange, InsightView};
use crate::ssr::clock::{self, new_id};
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, facts, insights, Db};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// Longest assignee or reason kept, in characters.
const MAX_NOTE: usize = 500;

impl Cards {
    /// Moves next action `position` of an insight on (acknowledged, assigned with an
    /// assignee, done, dismissed with a reason).
    #[tracing::instrument(skip_all, fields(insight = %insight_id, position))]
    pub async fn update_action(
        &self,
        insight_id: &str,
        position: i64,
        change: ActionChange,
        reach: &crate::domain::access::Reach,
    ) -> Result<ActionView, ServiceError> {
        self.check_reach(reach, insight_id).await?;
        let insight = insights::get(&self.db, insight_id)
            .await?
            .filter(|i| i.status == AnswerStatus::Ok)
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
                .map(|s| s.chars().take(MAX_NOTE).collect::<String>())
        };
        let (assignee, reason) = (
            clip(change.assignee.as_deref()),
            clip(change.reason.as_deref()),
        );
        let from = insights::action_state(&self.db, insight_id, position)
            .await?
            .unwrap_or(ActionState::Open);
        let to = check_transition(from, &change.state, assignee.as_deref(), reason.as_deref())
            .map_err(ServiceError::BadRequest)?;
        let now = chrono::Utc::now();
        let stored = insights::set_action(
            &self.db,
            &insights::ActionChange {
                id: new_id(now, "act"),
                insight: &insight,
                position,
                action: &action.action,
                owner: &action.owner,
                state: to,
                assignee,
                reason,
                done_on: (to == ActionState::Done).then(|| fmt_date(self.clock.today())),
                at: clock::timestamp(now),
            },
        )
        .await?;
        // A concurrent change made it final between the check and the write.
        if !stored {
            return Err(ServiceError::Conflict(
                "the action was closed (done or dismissed) meanwhile".into(),
            ));
        }
        tracing::info!(state = %to, "next action updated");
        let mut v = insights::actions_of(&self.db, &[insight_id.to_string()])
            .await?
            .remove(insight_id)
            .and_then(|mut l| {
                l.iter()
                    .position(|a| a.position == position)
                    .map(|i| l.remove(i))
            })
            .ok_or_else(|| anyhow::anyhow!("the stored action is missing"))?;
        if v.state == ActionState::Done {
            let rules = store::rules::load(&self.db).await?;
            let weeks = self.weekly_values(&insight.site, insight.metric).await?;
            v.outcome = self.outcome_for(&insight, &v, &weeks, &rules);
        }
        Ok(v)
    }

    /// Weekly values of one card over the last 12 complete weeks and the current one.
    async fn weekly_values(
        &self,
        site: &str,
        metric: Metric,
    ) -> Result<Vec<(Week, Option<f64>)>, ServiceError> {
        let this_week = Week::containing(self.clock.today());
        let span = this_week.trailing(13);
        let filter = super::evidence::site_filter(site);
        let mut sums: HashMap<Week, KpiCounts> = HashMap::new();
        for (_, w, c) in facts::weekly_counts(&self.db, filter, span[0], this_week).await? {
            sums.entry(w).or_default().add(&c);
        }
        Ok(span
            .iter()
            .map(|w| (*w, sums.get(w).and_then(|c| c.value(metric))))
            .collect())
    }

    fn outcome_for(
        &self,
        insight: &InsightView,
        action: &ActionView,
        weeks: &[(Week, Option<f64>)],
        rules: &Rules,
    ) -> Option<Outcome> {
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
            self.clock.today(),
            weeks,
            rules.target(&insight.site, insight.metric),
            min_change,
        ))
    }

    /// Attaches acted-on actions (with outcomes for done ones) to the cards' insights.
    pub async fn attach_actions(
        &self,
        insights: &mut [&mut InsightView],
    ) -> Result<(), ServiceError> {
        let ids: Vec<String> = insights.iter().map(|i| i.id.clone()).collect();
        let mut by_insight = store::insights::actions_of(&self.db, &ids).await?;
        if by_insight.is_empty() {
            return Ok(());
        }
        let rules = store::rules::load(&self.db).await?;
        for insight in insights.iter_mut() {
            let Some(mut actions) = by_insight.remove(&insight.id) else {
                continue;
            };
            if actions.iter().any(|a| a.state == ActionState::Done) {
                let weeks = self.weekly_values(&insight.site, insight.metric).await?;
                for a in actions.iter_mut().filter(|a| a.state == ActionState::Done) {
                    a.outcome = self.outcome_for(insight, a, &weeks, &rules);
                }
            }
            insight.actions = actions;
        }
        Ok(())
    }
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
pub async fn card_feedback(
    db: &Db,
    site: &str,
    metric: Metric,
) -> Result<CardFeedback, ServiceError> {
    Ok(CardFeedback {
        dismissed_actions: insights::dismissed_actions(db, site, metric, 10)
            .await?
            .into_iter()
            .map(|(action, reason)| Dismissed { action, reason })
            .collect(),
        not_useful: insights::not_useful(db, site, metric, 10)
            .await?
            .into_iter()
            .map(|(headline, reason)| NotUseful { headline, reason })
            .collect(),
    })
}
