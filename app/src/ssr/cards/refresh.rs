//! Refreshing one card, as named stages with plain data between them:
//!
//! 1. [`Cards::load_inputs`]: the rules, the week, the evidence pack and its hash, the
//!    cards agent and its model version ([`Inputs`]);
//! 2. [`Cards::decide`]: skip the agent when nothing it would be sent changed (runs only);
//! 3. [`Cards::compose`]: the question and the request, with what people said about the
//!    card before ([`Composed`]);
//! 4. [`super::ask::ask`]: the call, the grounding check and the lineage ([`Asked`]);
//! 5. [`record`]: the attempt to store, good or failed ([`Attempt`]);
//! 6. [`Cards::store_attempt`]: stored; for a run's job, only while its claim holds, in the
//!    same transaction that finishes the job.
//!
//! A failed call (or a reply whose every root cause is unsupported by the data) is stored
//! as a failed attempt, so the card can say why it is stale, and returned as an error; the
//! last good insight is untouched.

use super::ask::{ask, Asked, Subject};
use super::{clean_question, Cards};
use crate::domain::access::Reach;
use crate::domain::card::{same_inputs, Inputs as CardInputs};
use crate::domain::evidence::EvidencePack;
use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, Compare, Lens, Period};
use crate::domain::rules::Rules;
use crate::domain::status::{AnswerStatus, JobStatus};
use crate::dto::{InsightView, RefreshRequest};
use crate::ssr::agent::{build_request, AgentClient, AgentError};
use crate::ssr::clock::{self, new_id};
use crate::ssr::error::ServiceError;
use crate::ssr::store::insights::NewInsight;
use crate::ssr::store::runs::JobClaim;
use crate::ssr::store::{self, insights};
use serde_json::Value;
use std::sync::Arc;

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
    /// The period and comparison; `None` for the clock's default view (the default grain's
    /// latest complete period against the one before: the default card).
    pub view: Option<(Period, Compare)>,
}

/// What a refresh did.
#[derive(Debug)]
pub enum Refreshed {
    /// A new insight, stored.
    Made(Box<InsightView>),
    /// Nothing changed since this insight; the agent was not called.
    Unchanged { insight_id: String },
}

/// Stage 1's output: everything the later stages read.
pub struct Inputs {
    pub site: String,
    pub metric: Metric,
    pub rules: Rules,
    /// The period explained and the card's lens.
    pub period: Period,
    pub lens: Lens,
    pub pack: EvidencePack,
    pub hash: String,
    pub agent: Arc<AgentClient>,
    pub model_version: Option<String>,
}

/// Stage 3's output: the request and its question.
pub struct Composed {
    pub question: String,
    pub request: Value,
}

/// Stage 5's output: one attempt, ready to store.
pub struct Attempt {
    pub view: InsightView,
    pub insight_json: Option<String>,
    pub grounding_json: Option<String>,
    pub claims_json: Option<String>,
    /// Why the agent failed (the attempt is stored as failed).
    pub failure: Option<AgentError>,
}

/// The question asked when a card is refreshed without one.
pub fn default_question(metric: Metric, site_name: &str, week_label: &str) -> String {
    format!(
        "Why did {} change at {site_name} in {week_label}, and what should we do next?",
        metric.label()
    )
}

impl Cards {
    /// Refreshes one card now, always calling the agent (the dashboard's refresh button and
    /// the API).
    pub async fn refresh(
        &self,
        input: RefreshRequest,
        reach: &Reach,
    ) -> Result<InsightView, ServiceError> {
        super::within(reach, &input.site)?;
        let metric = super::evidence::parse_metric(&input.metric)?;
        let view = self.clock.resolve(&input.view)?;
        let opts = RefreshOptions {
            question: input.question.as_deref(),
            view: Some(view),
            ..Default::default()
        };
        match self.refresh_card(&input.site, metric, opts).await? {
            Refreshed::Made(view) => Ok(*view),
            Refreshed::Unchanged { .. } => {
                Err(anyhow::anyhow!("a forced refresh was skipped").into())
            }
        }
    }

    /// Refreshes one card through the stages above.
    #[tracing::instrument(skip_all, fields(site = %site, metric = %metric.key()))]
    pub async fn refresh_card(
        &self,
        site: &str,
        metric: Metric,
        opts: RefreshOptions<'_>,
    ) -> Result<Refreshed, ServiceError> {
        let inputs = self.load_inputs(site, metric, opts.view).await?;
        if opts.skip_unchanged {
            if let Some(insight_id) = self.decide(&inputs).await? {
                return Ok(Refreshed::Unchanged { insight_id });
            }
        }
        let composed = self.compose(&inputs, opts.question).await?;
        let id = new_id(chrono::Utc::now(), "ins");
        let asked = ask(
            &self.db,
            &inputs.agent,
            &Subject {
                id: &id,
                pack: &inputs.pack,
                evidence_hash: &inputs.hash,
                rules_version: inputs.rules.version,
            },
            &composed.request,
            false,
            None,
        )
        .await?;
        // For the success log line, before `record` takes the reply.
        let (source, asked_attempts) = asked
            .outcome
            .as_ref()
            .map(|r| (format!("{:?}", r.answer.source), r.attempts))
            .unwrap_or_default();
        let attempt = record(&inputs, id, asked);
        self.store_attempt(&inputs, &attempt, opts.job).await?;
        match attempt.failure {
            None => {
                tracing::info!(
                    latency_ms = attempt.view.latency_ms,
                    source = %source,
                    attempts = asked_attempts,
                    "insight refreshed"
                );
                Ok(Refreshed::Made(Box::new(attempt.view)))
            }
            Some(e) => Err(ServiceError::Agent(e)),
        }
    }

    /// Stage 1: the rules, the period and the pack. One reference date for the whole
    /// refresh: the pack and the stored row agree on the period even when the clock passes
    /// midnight in between.
    #[tracing::instrument(skip_all)]
    pub async fn load_inputs(
        &self,
        site: &str,
        metric: Metric,
        view: Option<(Period, Compare)>,
    ) -> Result<Inputs, ServiceError> {
        let rules = store::rules::load(&self.db).await?;
        let as_of = self.clock.today();
        let (period, compare) = view.unwrap_or_else(|| self.clock.default_view());
        let pack =
            super::evidence::load_period(&self.db, &rules, site, metric, period, compare, as_of)
                .await?;
        let agent = self.agents.cards().clone();
        Ok(Inputs {
            site: site.to_string(),
            metric,
            period,
            lens: Lens::of(&period, compare),
            hash: super::evidence::hash(&pack),
            model_version: agent.model_version().await,
            agent,
            rules,
            pack,
        })
    }

    /// Stage 2: the last good insight's id when a refresh would send the agent what it was
    /// sent then (and nobody said anything new about the card): no call is needed.
    #[tracing::instrument(skip_all)]
    pub async fn decide(&self, inputs: &Inputs) -> Result<Option<String>, ServiceError> {
        let Some(last) = insights::latest_ok(
            &self.db,
            &inputs.site,
            inputs.metric,
            inputs.lens,
            &inputs.period,
        )
        .await?
        else {
            return Ok(None);
        };
        let now = CardInputs {
            evidence_hash: &inputs.hash,
            rules_version: inputs.rules.version,
            period: inputs.period,
            agent: inputs.agent.name(),
            model_version: inputs.model_version.as_deref(),
        };
        if same_inputs(&last, &now)
            && !insights::feedback_since(&self.db, &inputs.site, inputs.metric, &last.created_at)
                .await?
        {
            return Ok(Some(last.id));
        }
        Ok(None)
    }

    /// Stage 3: the question (the default one when none is given) and the request, with
    /// the card's feedback (dismissed actions, "not useful" reasons) added.
    #[tracing::instrument(skip_all)]
    pub async fn compose(
        &self,
        inputs: &Inputs,
        question: Option<&str>,
    ) -> Result<Composed, ServiceError> {
        let question = clean_question(question)?.unwrap_or_else(|| {
            default_question(
                inputs.metric,
                &inputs.pack.scope.site_name,
                &inputs.pack.period.label,
            )
        });
        let mut request = build_request(&inputs.pack, &inputs.rules, &question);
        super::actions::card_feedback(&self.db, &inputs.site, inputs.metric)
            .await?
            .apply(&mut request);
        Ok(Composed { question, request })
    }

    /// Stage 6: stores an attempt; for a job, only if its claim still holds, together with
    /// finishing the job (`done` or `failed`), so a job taken over by another replica never
    /// yields a second insight.
    #[tracing::instrument(skip_all)]
    pub async fn store_attempt(
        &self,
        inputs: &Inputs,
        attempt: &Attempt,
        job: Option<&JobClaim>,
    ) -> Result<(), ServiceError> {
        let v = &attempt.view;
        let row = NewInsight {
            id: &v.id,
            site: &v.site,
            metric: v.metric,
            lens: inputs.lens,
            period: inputs.period,
            created_at: &v.created_at,
            status: v.status,
            agent: &v.agent,
            value: v.value,
            headline: &v.headline,
            narrative: &v.narrative,
            insight_json: attempt.insight_json.clone(),
            evidence_hash: &v.evidence_hash,
            rules_version: v.rules_version,
            error: v.error.as_deref(),
            latency_ms: v.latency_ms,
            agent_kind: inputs.agent.kind().key(),
            model_version: v.model_version.clone(),
            trace_id: v.trace_id.clone(),
            grounding_json: attempt.grounding_json.clone(),
            claims_json: attempt.claims_json.clone(),
            job_id: job.map(|j| j.id.as_str()),
        };
        let Some(claim) = job else {
            insights::insert(&self.db, &row).await?;
            return Ok(());
        };
        let mut tx = store::begin(&self.db).await?;
        let status = match v.status {
            AnswerStatus::Ok => JobStatus::Done,
            AnswerStatus::Error => JobStatus::Failed,
        };
        if !store::runs::finish_job(&mut *tx, claim, status, Some(&v.id), v.error.as_deref())
            .await?
        {
            return Err(ServiceError::Superseded);
        }
        insights::insert(&mut *tx, &row).await?;
        store::commit(tx).await?;
        Ok(())
    }
}

/// Stage 5: the attempt to store from what asking produced: the insight when the agent
/// answered (headline from the contract, else the text's first line), else a failed
/// attempt with the safe error.
pub fn record(inputs: &Inputs, id: String, asked: Asked) -> Attempt {
    let grounding_json = (!asked.grounding.is_empty())
        .then(|| serde_json::to_string(&asked.grounding).ok())
        .flatten();
    let claims_json = (!asked.claims.is_empty())
        .then(|| serde_json::to_string(&asked.claims).ok())
        .flatten();
    let trace_id = asked.trace_id();
    let mut view = InsightView {
        id,
        site: inputs.site.clone(),
        metric: inputs.metric,
        lens: inputs.lens.key(),
        period_start: fmt_date(inputs.period.start),
        period_label: inputs.period.label(),
        created_at: clock::now(),
        agent: inputs.agent.name().to_string(),
        value: inputs.pack.value,
        headline: String::new(),
        narrative: String::new(),
        insight: None,
        evidence_hash: inputs.hash.clone(),
        rules_version: inputs.rules.version,
        latency_ms: asked.latency_ms,
        status: AnswerStatus::Ok,
        error: None,
        agent_kind: Some(inputs.agent.kind().key().to_string()),
        model_version: asked.model_version,
        trace_id,
        grounding: asked.grounding,
        claims: asked.claims,
        actions: vec![],
    };
    match asked.outcome {
        Ok(reply) => {
            let answer = reply.answer;
            view.headline = answer
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
            view.narrative = answer.text;
            let insight_json = answer
                .insight
                .as_ref()
                .and_then(|i| serde_json::to_string(i).ok());
            view.insight = answer.insight;
            Attempt {
                view,
                insight_json,
                grounding_json,
                claims_json,
                failure: None,
            }
        }
        Err(e) => {
            view.status = AnswerStatus::Error;
            view.headline = "Refresh failed".into();
            view.error = Some(e.to_string());
            Attempt {
                view,
                insight_json: None,
                grounding_json,
                claims_json,
                failure: Some(e),
            }
        }
    }
}
