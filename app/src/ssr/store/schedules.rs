//! Cron schedules and their ticks. A tick is claimed with a compare-and-set on the
//! schedule's `next_fire_at` (see [`claim_tick`]), so each tick becomes exactly one run
//! whichever replica sees it first.

use super::{Ctx, Exec, Result};
use crate::dto::ScheduleInput;

/// A schedule as stored: its settings and where its ticks stand.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub scope: String,
    pub scope_value: Option<String>,
    pub catch_up: String,
    pub enabled: i64,
    pub period: String,
    pub compare: String,
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ScheduleRow {
    pub fn input(&self) -> ScheduleInput {
        ScheduleInput {
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            scope: self.scope.clone(),
            scope_value: self.scope_value.clone(),
            catch_up: self.catch_up.clone(),
            enabled: self.enabled != 0,
            view: crate::dto::PeriodChoice::new(&self.period, &self.compare),
        }
    }
}

const COLS: &str =
    "id, name, cron, timezone, scope, scope_value, catch_up, enabled, period, compare, \
     next_fire_at, last_fire_at, created_at, updated_at";

pub async fn list<'e>(ex: impl Exec<'e>) -> Result<Vec<ScheduleRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules ORDER BY name"
    )))
    .fetch_all(ex)
    .await
    .ctx("Failed to read schedules")
}

pub async fn get<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<ScheduleRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the schedule")
}

/// Whether another schedule than `except` has this name.
pub async fn name_taken<'e>(ex: impl Exec<'e>, name: &str, except: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM schedules WHERE name = $1 AND id <> $2",
    )
    .bind(name.to_string())
    .bind(except.to_string())
    .fetch_one(ex)
    .await
    .ctx("Failed to check the schedule name")?;
    Ok(n > 0)
}

/// Creates (`create`) or replaces a schedule's settings, with its next tick.
pub async fn save<'e>(
    ex: impl Exec<'e>,
    id: &str,
    create: bool,
    input: &ScheduleInput,
    next_fire_at: Option<String>,
    now: &str,
) -> Result<()> {
    let sql = if create {
        "INSERT INTO schedules (id, name, cron, timezone, scope, scope_value, catch_up, enabled, \
         next_fire_at, last_fire_at, created_at, updated_at, period, compare) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $10, $11, $12)"
    } else {
        "UPDATE schedules SET name = $2, cron = $3, timezone = $4, scope = $5, scope_value = $6, \
         catch_up = $7, enabled = $8, next_fire_at = $9, updated_at = $10, period = $11, \
         compare = $12 WHERE id = $1"
    };
    sqlx::query(sql)
        .bind(id.to_string())
        .bind(input.name.clone())
        .bind(input.cron.clone())
        .bind(input.timezone.clone())
        .bind(input.scope.clone())
        .bind(input.scope_value.clone())
        .bind(input.catch_up.clone())
        .bind(i64::from(input.enabled))
        .bind(next_fire_at)
        .bind(now.to_string())
        .bind(input.view.period.clone().unwrap_or_default())
        .bind(
            input
                .view
                .compare
                .clone()
                .unwrap_or_else(|| "previous".into()),
        )
        .execute(ex)
        .await
        .ctx("Failed to store the schedule")?;
    Ok(())
}

/// Pauses (`next_fire_at` None) or resumes a schedule.
pub async fn set_enabled<'e>(
    ex: impl Exec<'e>,
    id: &str,
    enabled: bool,
    next_fire_at: Option<String>,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE schedules SET enabled = $2, next_fire_at = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(i64::from(enabled))
    .bind(next_fire_at)
    .bind(now.to_string())
    .execute(ex)
    .await
    .ctx("Failed to pause or resume the schedule")?;
    Ok(())
}

/// Deletes a schedule (its runs stay); false when it was not there.
pub async fn delete<'e>(ex: impl Exec<'e>, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id.to_string())
        .execute(ex)
        .await
        .ctx("Failed to delete the schedule")?;
    Ok(r.rows_affected() > 0)
}

/// Enabled schedules whose next tick is at or before `now`, earliest first.
pub async fn due<'e>(ex: impl Exec<'e>, now: &str) -> Result<Vec<ScheduleRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL \
         AND next_fire_at <= $1 ORDER BY next_fire_at"
    )))
    .bind(now.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read due schedules")
}

/// The earliest next tick of any enabled schedule.
pub async fn next_tick<'e>(ex: impl Exec<'e>) -> Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT MIN(next_fire_at) FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL",
    )
    .fetch_one(ex)
    .await
    .ctx("Failed to read the next tick")
}

/// Claims the tick `due` of a schedule by moving its next tick on: true for the one
/// replica whose compare-and-set won.
pub async fn claim_tick<'e>(
    ex: impl Exec<'e>,
    id: &str,
    due: &str,
    next: Option<String>,
    fired: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE schedules SET next_fire_at = $3, last_fire_at = $4 \
         WHERE id = $1 AND next_fire_at = $2 AND enabled = 1",
    )
    .bind(id.to_string())
    .bind(due.to_string())
    .bind(next)
    .bind(fired.to_string())
    .execute(ex)
    .await
    .ctx("Failed to claim the tick")?;
    Ok(r.rows_affected() == 1)
}

/// Pauses a schedule whose stored expression no longer parses (rather than spinning on it).
pub async fn disable<'e>(ex: impl Exec<'e>, id: &str) -> Result<()> {
    sqlx::query("UPDATE schedules SET enabled = 0, next_fire_at = NULL WHERE id = $1")
        .bind(id.to_string())
        .execute(ex)
        .await
        .ctx("Failed to pause the schedule")?;
    Ok(())
}
