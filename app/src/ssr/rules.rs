//! The rule book: viewing it and storing one edit at a time.
//!
//! An edit is checked against the current rules (the same check the browser runs as you
//! type, [`crate::domain::rulebook::check`]), then written with the version bump in one
//! transaction. The bump is a compare-and-set on `rules_version`, so two editors (or two
//! replicas) saving at once cannot both win: the second gets a conflict and its edit is
//! not applied. Each version leaves a `rule_changes` row with a summary and the whole rule
//! book after the change, and an audit entry.

use crate::domain::rulebook::{self, Problem, RuleEdit, RuleItem};
use crate::domain::rules::Rules;
use crate::dto::{RuleChange, RuleEdited, RulesView};
use crate::ssr::clock;
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, audit, facts, Db};

fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An edit checked against the rule book it was read with, ready to be stored.
pub struct Prepared {
    base_version: i64,
    next: Rules,
    summary: String,
    item: RuleItem,
}

/// The rules capability.
#[derive(Clone, Debug)]
pub struct Rulebook {
    db: Db,
}

impl Rulebook {
    pub fn new(db: Db) -> Rulebook {
        Rulebook { db }
    }

    /// The rules page: the whole rule book, the KPI definitions, the sites and recent
    /// versions.
    pub async fn view(&self) -> Result<RulesView, ServiceError> {
        Ok(RulesView {
            rules: store::rules::load(&self.db).await?,
            metrics: store::rules::metric_definitions(&self.db).await?,
            sites: facts::site_codes(&self.db).await?,
            history: store::rules::history(&self.db, 20).await?,
        })
    }

    /// Applies `edit` as a new rules version; returns the change and the rules page after
    /// it.
    #[tracing::instrument(skip_all)]
    pub async fn edit(&self, edit: RuleEdit, actor: &str) -> Result<RuleEdited, ServiceError> {
        let prepared = self.prepare(&edit).await?;
        let change = self.commit(prepared, actor).await?;
        Ok(RuleEdited {
            change,
            view: self.view().await?,
        })
    }

    /// Reads the rule book and checks `edit` against it.
    pub async fn prepare(&self, edit: &RuleEdit) -> Result<Prepared, ServiceError> {
        let rules = store::rules::load(&self.db).await?;
        let sites = facts::site_codes(&self.db).await?;
        let problems = rulebook::check(&rules, edit, &sites);
        if let Some(p) = problems.iter().find(|p| p.field == "version") {
            return Err(ServiceError::Conflict(p.message.clone()));
        }
        if !problems.is_empty() {
            return Err(ServiceError::BadRequest(format!(
                "not saved: {}",
                describe(&problems)
            )));
        }
        let (next, summary) = rulebook::apply(&rules, edit);
        Ok(Prepared {
            base_version: rules.version,
            next,
            summary,
            item: edit.item.clone(),
        })
    }

    /// Stores a prepared edit, unless the rules moved on since it was prepared (409).
    pub async fn commit(
        &self,
        prepared: Prepared,
        actor: &str,
    ) -> Result<RuleChange, ServiceError> {
        let Prepared {
            base_version,
            next,
            summary,
            item,
        } = prepared;
        let change = RuleChange {
            version: next.version,
            changed_at: clock::now(),
            changed_by: Some(actor.to_string()),
            summary,
        };
        let rules_json = serde_json::to_string(&next)
            .map_err(|e| anyhow::anyhow!("Failed to encode the rules: {e}"))?;
        let mut tx = store::begin(&self.db).await?;
        if !store::rules::bump_version(&mut *tx, base_version, next.version).await? {
            return Err(ServiceError::Conflict(format!(
                "the rules changed while you saved (version {} is taken); reload and try again",
                next.version
            )));
        }
        // The row as it is after the edit (None: deleted).
        let row = item.find(&next);
        store::rules::replace(&mut tx, &item, row.as_ref()).await?;
        store::rules::insert_change(&mut *tx, &change, &rules_json).await?;
        audit::record(
            &mut *tx,
            actor,
            "rules.edit",
            &format!("rules:v{}", next.version),
            &change.summary,
        )
        .await?;
        // A scoring parameter (on-time window, in-full tolerance) re-tallies the metric
        // store in this transaction: tiles and packs never see old and new scoring mixed.
        crate::ssr::data::import::rescore_if_changed(&mut tx).await?;
        store::commit(tx).await?;
        tracing::info!(version = next.version, change = %change.summary, "rules changed");
        Ok(change)
    }
}
