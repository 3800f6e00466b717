//! The audit log. Entries are written by the caller in the same transaction as the change
//! they describe, so there is no change without its entry and no entry for a change that
//! was rolled back.

use super::{Ctx, Exec, Result};
use crate::dto::AuditEntry;
use crate::ssr::clock::{new_id, timestamp};

/// Records one entry: who (`user:NAME`, `token:NAME`, `cli`, `system`), what action
/// (`rules.edit`, `schedule.create`, …), on what, and the detail.
pub async fn record<'e>(
    ex: impl Exec<'e>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    let now = chrono::Utc::now();
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id(now, "aud"))
    .bind(timestamp(now))
    .bind(actor.to_string())
    .bind(action.to_string())
    .bind(target.to_string())
    .bind(detail.to_string())
    .execute(ex)
    .await
    .ctx("Failed to write the audit log")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// The newest entries first, optionally for one action prefix (`rules`, `user`, ...).
pub async fn list<'e>(
    ex: impl Exec<'e>,
    action: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT at, actor, action, target, detail FROM audit_log WHERE action LIKE $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(format!("{}%", action.unwrap_or("")))
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read the audit log")?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail,
        })
        .collect())
}
