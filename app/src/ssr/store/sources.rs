//! Data sources' state in this database (`sources`) and their syncs (`source_syncs`).
//!
//! A source is defined in the sources file; its row here is made on first use and holds
//! what replicas share: the watermark synced so far, the schedule's next tick (claimed by
//! compare-and-set, so one replica fires it), the lease of the sync in progress (so one
//! replica syncs a source at a time, and a dead replica's claim runs out) and the last
//! outcome.

use super::{decode, Ctx, Exec, Result};
use crate::domain::status::{SyncStatus, SyncTrigger};
use crate::dto::SyncView;
use sqlx::AssertSqlSafe;

/// A source's shared state.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct SourceState {
    pub name: String,
    pub watermark: Option<String>,
    pub next_due: Option<String>,
    pub lease_until: Option<String>,
    pub leased_by: Option<String>,
    pub last_success_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

const STATE_COLS: &str = "name, watermark, next_due, lease_until, leased_by, last_success_at, \
                          last_attempt_at, last_error";

/// Makes the source's row if it has none.
pub async fn ensure<'e>(ex: impl Exec<'e>, name: &str) -> Result<()> {
    sqlx::query("INSERT INTO sources (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name.to_string())
        .execute(ex)
        .await
        .ctx("Failed to record a data source")?;
    Ok(())
}

pub async fn states<'e>(ex: impl Exec<'e>) -> Result<Vec<SourceState>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {STATE_COLS} FROM sources ORDER BY name"
    )))
    .fetch_all(ex)
    .await
    .ctx("Failed to read the data sources")
}

pub async fn state<'e>(ex: impl Exec<'e>, name: &str) -> Result<Option<SourceState>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {STATE_COLS} FROM sources WHERE name = $1"
    )))
    .bind(name.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read a data source")
}

/// Takes the source for the sync `holder` (its id) until `until`: true for the one caller
/// that got it (no lease, or an expired one). Timestamps are RFC 3339 text, so text order
/// is time order.
pub async fn claim<'e>(
    ex: impl Exec<'e>,
    name: &str,
    holder: &str,
    now: &str,
    until: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE sources SET lease_until = $3, leased_by = $2, last_attempt_at = $4 \
         WHERE name = $1 AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(name.to_string())
    .bind(holder.to_string())
    .bind(until.to_string())
    .bind(now.to_string())
    .execute(ex)
    .await
    .ctx("Failed to claim the data source")?;
    Ok(r.rows_affected() == 1)
}

/// Extends a held lease; false when this sync no longer holds it.
pub async fn renew<'e>(ex: impl Exec<'e>, name: &str, holder: &str, until: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE sources SET lease_until = $3 WHERE name = $1 AND leased_by = $2")
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(until.to_string())
        .execute(ex)
        .await
        .ctx("Failed to renew the data source's lease")?;
    Ok(r.rows_affected() == 1)
}

/// Records a sync's outcome on the source and lets it go. A success moves the watermark
/// (when the source has one) and clears the error; a failure keeps both as they were,
/// with its message.
pub async fn release<'e>(
    ex: impl Exec<'e>,
    name: &str,
    holder: &str,
    outcome: std::result::Result<(&str, Option<&str>), &str>,
) -> Result<()> {
    let q = match outcome {
        Ok((at, watermark)) => sqlx::query(
            "UPDATE sources SET lease_until = NULL, leased_by = NULL, last_success_at = $3, \
             last_error = NULL, watermark = COALESCE($4, watermark) \
             WHERE name = $1 AND leased_by = $2",
        )
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(at.to_string())
        .bind(watermark.map(str::to_string)),
        Err(error) => sqlx::query(
            "UPDATE sources SET lease_until = NULL, leased_by = NULL, last_error = $3 \
             WHERE name = $1 AND leased_by = $2",
        )
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(error.to_string()),
    };
    q.execute(ex)
        .await
        .ctx("Failed to record the data source's sync")?;
    Ok(())
}

/// Claims the scheduled tick `due` of a source by moving its next tick on (or setting the
/// first one, when `due` is `None`): true for the one replica whose compare-and-set won.
pub async fn claim_tick<'e>(
    ex: impl Exec<'e>,
    name: &str,
    due: Option<&str>,
    next: &str,
) -> Result<bool> {
    let r = match due {
        Some(due) => {
            sqlx::query("UPDATE sources SET next_due = $3 WHERE name = $1 AND next_due = $2")
                .bind(name.to_string())
                .bind(due.to_string())
                .bind(next.to_string())
        }
        None => {
            sqlx::query("UPDATE sources SET next_due = $2 WHERE name = $1 AND next_due IS NULL")
                .bind(name.to_string())
                .bind(next.to_string())
        }
    }
    .execute(ex)
    .await
    .ctx("Failed to claim the data source's tick")?;
    Ok(r.rows_affected() == 1)
}

/// A new sync, running.
pub struct NewSync<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub trigger: SyncTrigger,
    pub actor: Option<&'a str>,
    pub replica: &'a str,
    pub since: Option<&'a str>,
    pub started_at: &'a str,
}

pub async fn insert_sync<'e>(ex: impl Exec<'e>, s: &NewSync<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO source_syncs (id, source, trigger_kind, actor, replica, status, since, \
         started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(s.id.to_string())
    .bind(s.source.to_string())
    .bind(s.trigger.as_str())
    .bind(s.actor.map(str::to_string))
    .bind(s.replica.to_string())
    .bind(SyncStatus::Running.as_str())
    .bind(s.since.map(str::to_string))
    .bind(s.started_at.to_string())
    .execute(ex)
    .await
    .ctx("Failed to record a sync")?;
    Ok(())
}

/// Rows read so far by a running sync (its progress).
pub async fn progress<'e>(ex: impl Exec<'e>, id: &str, rows_read: i64) -> Result<()> {
    sqlx::query("UPDATE source_syncs SET rows_read = $2 WHERE id = $1 AND status = $3")
        .bind(id.to_string())
        .bind(rows_read)
        .bind(SyncStatus::Running.as_str())
        .execute(ex)
        .await
        .ctx("Failed to record a sync's progress")?;
    Ok(())
}

/// How a sync ended.
pub struct SyncEnd<'a> {
    pub status: SyncStatus,
    pub finished_at: &'a str,
    pub rows_read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub bytes_read: i64,
    pub duration_ms: i64,
    pub error: Option<&'a str>,
}

pub async fn finish_sync<'e>(ex: impl Exec<'e>, id: &str, end: &SyncEnd<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE source_syncs SET status = $2, finished_at = $3, rows_read = $4, inserted = $5, \
         updated = $6, duration_ms = $7, error = $8, bytes_read = $9 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(end.status.as_str())
    .bind(end.finished_at.to_string())
    .bind(end.rows_read)
    .bind(end.inserted)
    .bind(end.updated)
    .bind(end.duration_ms)
    .bind(end.error.map(str::to_string))
    .bind(end.bytes_read)
    .execute(ex)
    .await
    .ctx("Failed to record the end of a sync")?;
    Ok(())
}

/// Marks syncs still `running` that no longer hold their source's lease (it ran out, or
/// another sync took it) as abandoned: their replica died mid-sync. Their transaction
/// never committed, so they wrote nothing. Returns how many.
pub async fn abandon_orphans<'e>(ex: impl Exec<'e>, now: &str) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE source_syncs SET status = $1, finished_at = $2, \
         error = 'the replica running it stopped; nothing was written' \
         WHERE status = $3 AND NOT EXISTS (SELECT 1 FROM sources s WHERE s.name = source_syncs.source \
         AND s.leased_by = source_syncs.id AND s.lease_until >= $2)",
    )
    .bind(SyncStatus::Abandoned.as_str())
    .bind(now.to_string())
    .bind(SyncStatus::Running.as_str())
    .execute(ex)
    .await
    .ctx("Failed to close abandoned syncs")?;
    Ok(r.rows_affected())
}

const SYNC_COLS: &str = "id, source, trigger_kind, actor, status, since, started_at, \
                         finished_at, rows_read, inserted, updated, bytes_read, duration_ms, error";

#[derive(sqlx::FromRow)]
struct SyncRow {
    id: String,
    source: String,
    trigger_kind: String,
    actor: Option<String>,
    status: String,
    since: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    rows_read: i64,
    inserted: i64,
    updated: i64,
    bytes_read: i64,
    duration_ms: Option<i64>,
    error: Option<String>,
}

impl SyncRow {
    fn into_view(self) -> Result<SyncView> {
        Ok(SyncView {
            trigger: decode(
                "source_syncs.trigger_kind",
                SyncTrigger::parse(&self.trigger_kind),
            )?,
            status: decode("source_syncs.status", SyncStatus::parse(&self.status))?,
            id: self.id,
            source: self.source,
            actor: self.actor,
            since: self.since,
            started_at: self.started_at,
            finished_at: self.finished_at,
            rows_read: self.rows_read,
            inserted: self.inserted,
            updated: self.updated,
            bytes_read: self.bytes_read,
            duration_ms: self.duration_ms,
            error: self.error,
        })
    }
}

pub async fn sync<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<SyncView>> {
    let row: Option<SyncRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SYNC_COLS} FROM source_syncs WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read a sync")?;
    row.map(SyncRow::into_view).transpose()
}

/// A source's syncs, newest first (every source's when `source` is `None`).
pub async fn syncs<'e>(
    ex: impl Exec<'e>,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<SyncView>> {
    let rows: Vec<SyncRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SYNC_COLS} FROM source_syncs WHERE ($1 IS NULL OR source = $1) \
         ORDER BY started_at DESC, id DESC LIMIT $2"
    )))
    .bind(source.map(str::to_string))
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read syncs")?;
    rows.into_iter().map(SyncRow::into_view).collect()
}
