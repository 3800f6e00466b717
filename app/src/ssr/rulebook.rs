//! Stores one rule-book edit: checked against the current rules, then written with the
//! version bump in one transaction. The bump is a compare-and-set on `rules_version`, so
//! two editors (or two replicas) saving at once cannot both win: the second gets a
//! conflict and its edit is not applied. Each version leaves a `rule_changes` row with a
//! summary and the whole rule book after the change.

use super::db::{self, stored_target, Db};
use super::insights::timestamp;
use super::ServiceError;
use crate::domain::rulebook::{self, Problem, RuleEdit, RuleItem};
use crate::domain::rules::Rules;
use crate::dto::{RuleChange, RulesView};
use anyhow::Context;

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

/// Applies `edit`; returns the new rule book and the change it recorded.
pub async fn save(
    db: &Db,
    edit: &RuleEdit,
    changed_by: Option<&str>,
) -> Result<(Rules, RuleChange), ServiceError> {
    let prepared = prepare(db, edit).await?;
    commit(db, prepared, changed_by).await
}

/// Reads the rule book and checks `edit` against it.
pub async fn prepare(db: &Db, edit: &RuleEdit) -> Result<Prepared, ServiceError> {
    let rules = db::rules(db).await?;
    let sites: Vec<String> = db::sites(db).await?.into_iter().map(|s| s.code).collect();
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
    db: &Db,
    prepared: Prepared,
    changed_by: Option<&str>,
) -> Result<(Rules, RuleChange), ServiceError> {
    let Prepared {
        base_version,
        next,
        summary,
        item,
    } = prepared;
    let now = timestamp(chrono::Utc::now());
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    let bumped =
        sqlx::query("UPDATE settings SET value = $1 WHERE key = 'rules_version' AND value = $2")
            .bind(next.version.to_string())
            .bind(base_version.to_string())
            .execute(&mut *tx)
            .await
            .context("Failed to bump the rules version")?;
    if bumped.rows_affected() == 0 {
        return Err(ServiceError::Conflict(format!(
            "the rules changed while you saved (version {} is taken); reload and try again",
            next.version
        )));
    }
    // The row as it is after the edit (None: deleted).
    let row = item.find(&next);
    write(&mut tx, &item, row.as_ref())
        .await
        .with_context(|| format!("Failed to store {}", item.noun()))?;
    sqlx::query(
        "INSERT INTO rule_changes (version, changed_at, changed_by, summary, rules_json) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(next.version)
    .bind(now.clone())
    .bind(changed_by.map(str::to_string))
    .bind(summary.clone())
    .bind(serde_json::to_string(&next).context("Failed to encode the rules")?)
    .execute(&mut *tx)
    .await
    .context("Failed to record the rules change")?;
    super::audit::record(
        &mut tx,
        changed_by.unwrap_or("cli"),
        "rules.edit",
        &format!("rules:v{}", next.version),
        &summary,
    )
    .await?;
    tx.commit()
        .await
        .context("Failed to store the rules change")?;
    tracing::info!(version = next.version, change = %summary, "rules changed");
    let change = RuleChange {
        version: next.version,
        changed_at: now,
        changed_by: changed_by.map(str::to_string),
        summary,
    };
    Ok((next, change))
}

/// Replaces the row identified by `item` with `row` (delete, then insert unless deleted):
/// one portable statement pair for create, update, enable and disable alike.
async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item: &RuleItem,
    row: Option<&RuleItem>,
) -> anyhow::Result<()> {
    let on = |b: bool| i64::from(b);
    match item {
        RuleItem::Rule(e) => {
            sqlx::query("DELETE FROM business_rules WHERE rule_key = $1")
                .bind(e.key.clone())
                .execute(&mut **tx)
                .await?;
        }
        RuleItem::Target(t) => {
            sqlx::query("DELETE FROM targets WHERE metric = $1 AND site = $2")
                .bind(t.metric.clone())
                .bind(t.site.clone())
                .execute(&mut **tx)
                .await?;
        }
        RuleItem::Trigger(t) => {
            sqlx::query("DELETE FROM triggers WHERE trigger_key = $1")
                .bind(t.key.clone())
                .execute(&mut **tx)
                .await?;
        }
        RuleItem::Playbook(p) => {
            sqlx::query("DELETE FROM playbooks WHERE playbook_key = $1")
                .bind(p.key.clone())
                .execute(&mut **tx)
                .await?;
        }
    }
    match row {
        None => {}
        Some(RuleItem::Rule(e)) => {
            sqlx::query(
                "INSERT INTO business_rules (rule_key, kind, metric, value, description, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.key.clone())
            .bind(e.kind.clone())
            .bind(e.metric.clone())
            .bind(e.value)
            .bind(e.description.trim().to_string())
            .bind(on(e.enabled))
            .execute(&mut **tx)
            .await?;
        }
        Some(RuleItem::Target(t)) => {
            sqlx::query(
                "INSERT INTO targets (metric, site, target, enabled) VALUES ($1, $2, $3, $4)",
            )
            .bind(t.metric.clone())
            .bind(t.site.clone())
            .bind(stored_target(&t.metric, t.target))
            .bind(on(t.enabled))
            .execute(&mut **tx)
            .await?;
        }
        Some(RuleItem::Trigger(t)) => {
            sqlx::query(
                "INSERT INTO triggers (trigger_key, metric, condition, value, periods, description, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(t.key.clone())
            .bind(t.metric.clone())
            .bind(t.condition.key())
            .bind(t.value)
            .bind(i64::from(t.periods))
            .bind(t.description.trim().to_string())
            .bind(on(t.enabled))
            .execute(&mut **tx)
            .await?;
        }
        Some(RuleItem::Playbook(p)) => {
            sqlx::query(
                "INSERT INTO playbooks (playbook_key, cause, action, owner, priority, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(p.key.clone())
            .bind(p.cause.clone())
            .bind(p.action.trim().to_string())
            .bind(p.owner.trim().to_string())
            .bind(p.priority.clone())
            .bind(on(p.enabled))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Rules versions, newest first (at most `limit`).
pub async fn history(db: &Db, limit: i64) -> Result<Vec<RuleChange>, ServiceError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT version, changed_at, changed_by, summary FROM rule_changes \
         ORDER BY version DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    .context("Failed to read the rules history")?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(RuleChange {
                version: r.try_get(0)?,
                changed_at: r.try_get(1)?,
                changed_by: r.try_get(2)?,
                summary: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .context("Failed to read the rules history")?)
}

/// The rules page: the whole rule book, the KPI definitions, the sites and recent versions.
pub async fn view(db: &Db) -> Result<RulesView, ServiceError> {
    Ok(RulesView {
        rules: db::rules(db).await?,
        metrics: db::metric_definitions(db).await?,
        sites: db::sites(db).await?.into_iter().map(|s| s.code).collect(),
        history: history(db, 20).await?,
    })
}
