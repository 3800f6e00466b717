//! The audit log: who changed rules, schedules, agents, users and tokens, when, and what.
//! Entries are written in the same transaction as the change they describe, so there is
//! no change without its entry and no entry for a change that was rolled back.

use super::db::Db;
use super::insights::{new_id, timestamp};
use super::ServiceError;
use crate::dto::AuditEntry;
use anyhow::Context;
use sqlx::Row;

/// Records one entry inside the caller's transaction.
pub async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), ServiceError> {
    let now = chrono::Utc::now();
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id(now, "aud"))
    .bind(timestamp(now))
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(&mut **tx)
    .await
    .context("Failed to write the audit log")?;
    Ok(())
}

/// Records one entry on its own (changes that are not a database transaction, such as
/// the agents read from the configuration at start-up).
pub async fn record_now(
    db: &Db,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), ServiceError> {
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    record(&mut tx, actor, action, target, detail).await?;
    tx.commit().await.context("Failed to write the audit log")?;
    Ok(())
}

/// The newest entries first, optionally for one action prefix (`rules`, `user`, ...).
pub async fn list(
    db: &Db,
    action: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>, ServiceError> {
    let pattern = format!("{}%", action.unwrap_or(""));
    let rows = sqlx::query(
        "SELECT at, actor, action, target, detail FROM audit_log WHERE action LIKE $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(pattern)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("Failed to read the audit log")?;
    let entry = |r: &sqlx::any::AnyRow| -> Result<AuditEntry, sqlx::Error> {
        Ok(AuditEntry {
            at: r.try_get(0)?,
            actor: r.try_get(1)?,
            action: r.try_get(2)?,
            target: r.try_get(3)?,
            detail: r.try_get(4)?,
        })
    };
    Ok(rows
        .iter()
        .map(entry)
        .collect::<Result<_, _>>()
        .context("Failed to read the audit log")?)
}
