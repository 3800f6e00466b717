//! Thumbs up/down on an insight. Stored always; when the insight has a trace id and its
//! agent a tracking server, also sent to MLflow as a HUMAN assessment in the background
//! (retrying 404s while the trace lands), and the row records how that went.

use super::Cards;
use crate::domain::status::{AnswerStatus, FeedbackSync};
use crate::dto::{FeedbackInput, FeedbackView};
use crate::ssr::agent::mlflow::{self, Feedback};
use crate::ssr::agent::AgentKind;
use crate::ssr::clock::{self, new_id};
use crate::ssr::error::{chain, ServiceError};
use crate::ssr::store::insights;

/// Reasons are capped at this many characters.
pub const MAX_REASON: usize = 1000;

impl Cards {
    /// Rates an insight. `user` is who gave it, as the audit log names them.
    #[tracing::instrument(skip_all, fields(insight = %insight_id))]
    pub async fn give_feedback(
        &self,
        insight_id: &str,
        input: FeedbackInput,
        user: &str,
        reach: &crate::domain::access::Reach,
    ) -> Result<FeedbackView, ServiceError> {
        self.check_reach(reach, insight_id).await?;
        let insight = insights::get(&self.db, insight_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no such insight".into()))?;
        if insight.status != AnswerStatus::Ok {
            return Err(ServiceError::BadRequest(
                "feedback is for insights, not for failed refreshes".into(),
            ));
        }
        let reason = input
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(MAX_REASON).collect::<String>());
        let agent = self.agents.get(&insight.agent).cloned();
        let tracking = agent.as_ref().and_then(|a| a.profile().tracking());
        let send_to = match (&insight.trace_id, tracking) {
            (Some(trace), Some(tracking)) => Some((trace.clone(), tracking)),
            _ => None,
        };
        let now = chrono::Utc::now();
        let view = FeedbackView {
            id: new_id(now, "fb"),
            insight_id: insight_id.to_string(),
            helpful: input.helpful,
            reason,
            created_at: clock::timestamp(now),
            mlflow_state: if send_to.is_some() {
                FeedbackSync::Pending
            } else {
                FeedbackSync::NotApplicable
            },
            assessment_id: None,
        };
        insights::insert_feedback(&self.db, &view, user).await?;
        if let (Some((trace_id, tracking)), Some(agent)) = (send_to, agent) {
            let db = self.db.clone();
            let view = view.clone();
            let user = user.to_string();
            crate::ssr::tasks::spawn("feedback to MLflow", async move {
                let token = (agent.kind() == AgentKind::Databricks)
                    .then(|| agent.profile().token.clone())
                    .flatten();
                let result = mlflow::log_feedback(
                    agent.http(),
                    &tracking,
                    token.as_ref(),
                    &Feedback {
                        trace_id: &trace_id,
                        helpful: view.helpful,
                        reason: view.reason.as_deref(),
                        user: &user,
                        insight_id: &view.insight_id,
                    },
                )
                .await;
                let stored = match &result {
                    Ok(assessment) => {
                        tracing::info!(feedback = %view.id, assessment = %assessment, "feedback logged to MLflow");
                        insights::set_feedback_sync(
                            &db,
                            &view.id,
                            FeedbackSync::Sent,
                            Some(assessment),
                            None,
                        )
                        .await
                    }
                    Err(e) => {
                        tracing::warn!(feedback = %view.id, error = %e, "feedback not logged to MLflow");
                        insights::set_feedback_sync(
                            &db,
                            &view.id,
                            FeedbackSync::Failed,
                            None,
                            Some(&e.to_string()),
                        )
                        .await
                    }
                };
                if let Err(e) = stored {
                    tracing::error!(error = %chain(&e), "could not record the MLflow outcome of feedback");
                }
            });
        }
        Ok(view)
    }

    /// An insight's thumbs up and down, newest first.
    pub async fn feedback(
        &self,
        insight_id: &str,
        reach: &crate::domain::access::Reach,
    ) -> Result<Vec<FeedbackView>, ServiceError> {
        self.check_reach(reach, insight_id).await?;
        Ok(insights::feedback_for(&self.db, insight_id).await?)
    }
}
