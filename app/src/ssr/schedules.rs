//! Cron schedules stored in the database, and their ticks.
//!
//! Every replica runs the same tick loop (`server/src/scheduler.rs`). A tick is claimed
//! with a compare-and-set on the schedule's `next_fire_at`, in the transaction that also
//! creates the run, so each tick becomes exactly one run whichever replica sees it first;
//! the `(schedule_id, scheduled_for)` unique key backs that up.
//!
//! Ticks missed while no replica was running (the due tick is more than
//! [`ON_TIME_GRACE`] late, or more than one tick is due) follow the schedule's catch-up
//! choice: `once` runs the latest missed tick once, `skip` records it as skipped.

use super::audit;
use super::crontab::Crontab;
use super::db::Db;
use super::insights::{new_id, timestamp};
use super::runs::{self, NewRun, Scope};
use super::state::AppState;
use super::ServiceError;
use crate::dto::{ScheduleInput, ScheduleView};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A tick fired within this long after its time is on time; later means every replica
/// was down (or stalled) when it was due.
pub const ON_TIME_GRACE: Duration = Duration::seconds(60);

/// How far back the latest missed tick is looked for when too many were missed to count.
const MISSED_LOOKBACK: Duration = Duration::days(31);
/// Missed ticks counted one by one at most (the note then says "at least").
const MAX_COUNTED: usize = 1000;

/// What to do with a schedule whose tick is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Run for the tick `at`; `missed` ticks before it were not run (catch-up).
    Fire { at: DateTime<Utc>, missed: usize },
    /// Do not run; `missed` ticks up to `at` were missed and are skipped.
    Skip { at: DateTime<Utc>, missed: usize },
}

/// Decides a due schedule's tick at `now` (pure: the tick loop and its tests use it).
/// `due` is the stored next tick (≤ now). Returns the decision and the next tick after now.
pub fn decide(
    crontab: &Crontab,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: &str,
) -> (Tick, Option<DateTime<Utc>>) {
    let next = crontab.next_after(now);
    // Ticks in [due, now], counted up to MAX_COUNTED (a per-second schedule after a long
    // outage would otherwise cost millions of steps); the latest is then found from now.
    let mut ticks = 1usize;
    let mut latest = due;
    let mut t = due;
    while let Some(n) = crontab.next_after(t) {
        if n > now {
            break;
        }
        if ticks >= MAX_COUNTED {
            latest = crontab
                .latest_at_or_before(now, Duration::days(2))
                .or_else(|| crontab.latest_at_or_before(now, MISSED_LOOKBACK))
                .unwrap_or(n);
            break;
        }
        ticks += 1;
        latest = n;
        t = n;
    }
    let on_time = ticks == 1 && now - due <= ON_TIME_GRACE;
    let tick = if on_time {
        Tick::Fire { at: due, missed: 0 }
    } else if catch_up == "skip" {
        Tick::Skip {
            at: latest,
            missed: ticks,
        }
    } else {
        Tick::Fire {
            at: latest,
            missed: ticks - 1,
        }
    };
    (tick, next)
}

fn validate(input: &ScheduleInput) -> Result<(ScheduleInput, Crontab, Scope), ServiceError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(ServiceError::BadRequest(
            "a schedule needs a name of 1 to 80 characters".into(),
        ));
    }
    let timezone = if input.timezone.trim().is_empty() {
        "UTC"
    } else {
        input.timezone.trim()
    };
    let crontab = Crontab::parse(&input.cron, timezone)
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let scope = Scope::parse(&input.scope, input.scope_value.as_deref())?;
    if !matches!(input.catch_up.as_str(), "once" | "skip") {
        return Err(ServiceError::BadRequest(
            "catch_up is 'once' (run once after missed ticks) or 'skip'".into(),
        ));
    }
    let clean = ScheduleInput {
        name: name.to_string(),
        cron: crontab.source.clone(),
        timezone: timezone.to_string(),
        scope: scope.key().to_string(),
        scope_value: scope.value(),
        catch_up: input.catch_up.clone(),
        enabled: input.enabled,
    };
    Ok((clean, crontab, scope))
}

/// The next five ticks of an expression, shown in its time zone (the editor's preview).
pub fn preview(cron: &str, timezone: &str) -> Result<Vec<String>, ServiceError> {
    let tz = if timezone.trim().is_empty() {
        "UTC"
    } else {
        timezone
    };
    let crontab = Crontab::parse(cron, tz).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    Ok(upcoming(&crontab, Utc::now()))
}

fn upcoming(crontab: &Crontab, now: DateTime<Utc>) -> Vec<String> {
    crontab
        .upcoming(now, 5)
        .into_iter()
        .map(|t| {
            t.with_timezone(&crontab.tz)
                .format("%a %Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .collect()
}

const COLS: &str =
    "id, name, cron, timezone, scope, scope_value, catch_up, enabled, next_fire_at, \
     last_fire_at, created_at, updated_at";

fn view(r: &AnyRow, now: DateTime<Utc>) -> anyhow::Result<ScheduleView> {
    let input = ScheduleInput {
        name: r.try_get("name")?,
        cron: r.try_get("cron")?,
        timezone: r.try_get("timezone")?,
        scope: r.try_get("scope")?,
        scope_value: r.try_get("scope_value")?,
        catch_up: r.try_get("catch_up")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
    };
    let upcoming = match Crontab::parse(&input.cron, &input.timezone) {
        Ok(c) if input.enabled => upcoming(&c, now),
        _ => vec![],
    };
    Ok(ScheduleView {
        id: r.try_get("id")?,
        scope_label: runs::label(&input.scope, input.scope_value.as_deref()),
        input,
        next_fire_at: r.try_get("next_fire_at")?,
        last_fire_at: r.try_get("last_fire_at")?,
        upcoming,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn list(db: &Db) -> Result<Vec<ScheduleView>, ServiceError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules ORDER BY name"
    )))
    .fetch_all(db)
    .await
    .context("Failed to read schedules")?;
    let now = Utc::now();
    Ok(rows
        .iter()
        .map(|r| view(r, now))
        .collect::<anyhow::Result<_>>()?)
}

pub async fn get(db: &Db, id: &str) -> Result<ScheduleView, ServiceError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the schedule")?
    .ok_or_else(|| ServiceError::NotFound(format!("no schedule '{id}'")))?;
    Ok(view(&row, Utc::now())?)
}

async fn name_taken(db: &Db, name: &str, except: &str) -> Result<bool, ServiceError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM schedules WHERE name = $1 AND id <> $2",
    )
    .bind(name.to_string())
    .bind(except.to_string())
    .fetch_one(db)
    .await
    .context("Failed to check the schedule name")?;
    Ok(n > 0)
}

pub async fn create(
    state: &AppState,
    input: &ScheduleInput,
    actor: &str,
) -> Result<ScheduleView, ServiceError> {
    let view = save(state, None, input, actor).await?;
    tracing::info!(schedule = %view.input.name, cron = %view.input.cron, tz = %view.input.timezone, "schedule created");
    Ok(view)
}

/// Replaces a schedule's settings; its next tick is recomputed from now.
pub async fn update(
    state: &AppState,
    id: &str,
    input: &ScheduleInput,
    actor: &str,
) -> Result<ScheduleView, ServiceError> {
    get(&state.db, id).await?;
    save(state, Some(id), input, actor).await
}

/// One line for the audit log: the settings a schedule runs on.
fn describe(input: &ScheduleInput) -> String {
    format!(
        "cron {:?} in {}, scope {}{}, catch-up {}, {}",
        input.cron,
        input.timezone,
        input.scope,
        input
            .scope_value
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        input.catch_up,
        if input.enabled { "enabled" } else { "paused" }
    )
}

/// Validates and stores a new (`id` = None) or existing schedule, with its next tick
/// from now (none while paused).
async fn save(
    state: &AppState,
    id: Option<&str>,
    input: &ScheduleInput,
    actor: &str,
) -> Result<ScheduleView, ServiceError> {
    let (input, crontab, scope) = validate(input)?;
    check_scope(state, &scope).await?;
    if name_taken(&state.db, &input.name, id.unwrap_or_default()).await? {
        return Err(ServiceError::BadRequest(format!(
            "a schedule named '{}' exists already",
            input.name
        )));
    }
    let now = Utc::now();
    let next = input
        .enabled
        .then(|| crontab.next_after(now))
        .flatten()
        .map(timestamp);
    let action = if id.is_some() {
        "schedule.update"
    } else {
        "schedule.create"
    };
    let (id, sql) = match id {
        None => (
            new_id(now, "sch"),
            "INSERT INTO schedules (id, name, cron, timezone, scope, scope_value, catch_up, enabled, \
             next_fire_at, last_fire_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $10)",
        ),
        Some(id) => (
            id.to_string(),
            "UPDATE schedules SET name = $2, cron = $3, timezone = $4, scope = $5, scope_value = $6, \
             catch_up = $7, enabled = $8, next_fire_at = $9, updated_at = $10 WHERE id = $1",
        ),
    };
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    sqlx::query(sql)
        .bind(id.clone())
        .bind(input.name.clone())
        .bind(input.cron.clone())
        .bind(input.timezone.clone())
        .bind(input.scope.clone())
        .bind(input.scope_value.clone())
        .bind(input.catch_up.clone())
        .bind(i64::from(input.enabled))
        .bind(next)
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await
        .context("Failed to store the schedule")?;
    audit::record(
        &mut tx,
        actor,
        action,
        &format!("schedule:{}", input.name),
        &describe(&input),
    )
    .await?;
    tx.commit().await.context("Failed to store the schedule")?;
    get(&state.db, &id).await
}

/// Pauses or resumes; resuming starts from the next tick after now (nothing is caught up).
/// Only `enabled` and the next tick change: a schedule whose site has gone can still be
/// paused.
pub async fn set_enabled(
    state: &AppState,
    id: &str,
    enabled: bool,
    actor: &str,
) -> Result<ScheduleView, ServiceError> {
    let s = get(&state.db, id).await?;
    let now = Utc::now();
    let next = match (enabled, Crontab::parse(&s.input.cron, &s.input.timezone)) {
        (false, _) => None,
        (true, Ok(c)) => c.next_after(now).map(timestamp),
        (true, Err(e)) => return Err(ServiceError::BadRequest(e.to_string())),
    };
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    sqlx::query(
        "UPDATE schedules SET enabled = $2, next_fire_at = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(i64::from(enabled))
    .bind(next)
    .bind(timestamp(now))
    .execute(&mut *tx)
    .await
    .context("Failed to pause or resume the schedule")?;
    audit::record(
        &mut tx,
        actor,
        if enabled {
            "schedule.resume"
        } else {
            "schedule.pause"
        },
        &format!("schedule:{}", s.input.name),
        if enabled { "resumed" } else { "paused" },
    )
    .await?;
    tx.commit()
        .await
        .context("Failed to pause or resume the schedule")?;
    get(&state.db, id).await
}

/// Deletes a schedule; its past runs stay in the history.
pub async fn delete(state: &AppState, id: &str, actor: &str) -> Result<(), ServiceError> {
    let s = get(&state.db, id).await?;
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    let r = sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .context("Failed to delete the schedule")?;
    if r.rows_affected() == 0 {
        return Err(ServiceError::NotFound(format!("no schedule '{id}'")));
    }
    audit::record(
        &mut tx,
        actor,
        "schedule.delete",
        &format!("schedule:{}", s.input.name),
        &describe(&s.input),
    )
    .await?;
    tx.commit().await.context("Failed to delete the schedule")?;
    Ok(())
}

/// Starts a run of the schedule's scope now (not a tick: it does not move the schedule).
pub async fn run_now(state: &AppState, id: &str) -> Result<crate::dto::RunView, ServiceError> {
    let s = get(&state.db, id).await?;
    let scope = Scope::parse(&s.input.scope, s.input.scope_value.as_deref())?;
    if scope == Scope::Digest {
        return Err(ServiceError::BadRequest(format!(
            "'{}' sends the digest: use Send digest now (POST /api/v1/digests)",
            s.input.name
        )));
    }
    runs::start(state, "manual", &scope, false).await
}

async fn check_scope(state: &AppState, scope: &Scope) -> Result<(), ServiceError> {
    if let Scope::Site(site) | Scope::Card(site, _) = scope {
        if site != crate::domain::evidence::NETWORK
            && !super::db::sites(&state.db)
                .await?
                .iter()
                .any(|s| &s.code == site)
        {
            return Err(ServiceError::BadRequest(format!("no site '{site}'")));
        }
    }
    Ok(())
}

/// What one pass over the due schedules did.
#[derive(Debug, Default)]
pub struct FireReport {
    /// Runs this replica created (ticks it won).
    pub runs: Vec<String>,
    /// Digests this replica queued (ticks of digest schedules it won).
    pub digests: Vec<String>,
    /// Ticks recorded as skipped.
    pub skipped: usize,
    /// Ticks another replica claimed first.
    pub lost: usize,
    /// The earliest next tick of any enabled schedule.
    pub next_wake: Option<DateTime<Utc>>,
}

/// Claims and runs every due tick at `now`.
pub async fn fire_due(state: &AppState, now: DateTime<Utc>) -> Result<FireReport, ServiceError> {
    let mut report = FireReport::default();
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL \
         AND next_fire_at <= $1 ORDER BY next_fire_at"
    )))
    .bind(timestamp(now))
    .fetch_all(&state.db)
    .await
    .context("Failed to read due schedules")?;
    for row in &due {
        // One schedule's failure (a bad scope, a database error) is logged and does not
        // stop the others; its tick stays due and is tried again on the next pass.
        let s = match view(row, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = ?e, "unreadable schedule row");
                continue;
            }
        };
        if let Err(e) = fire_one(state, &s, now, &mut report).await {
            tracing::error!(schedule = %s.input.name, error = %e, "schedule tick failed");
        }
    }
    if !report.runs.is_empty() {
        state.jobs.notify.notify_one();
    }
    let next: Option<String> = sqlx::query_scalar(
        "SELECT MIN(next_fire_at) FROM schedules WHERE enabled = 1 AND next_fire_at IS NOT NULL",
    )
    .fetch_one(&state.db)
    .await
    .context("Failed to read the next tick")?;
    report.next_wake = next
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(report)
}

/// Claims and runs one due schedule's tick (see [`fire_due`]).
async fn fire_one(
    state: &AppState,
    s: &ScheduleView,
    now: DateTime<Utc>,
    report: &mut FireReport,
) -> Result<(), ServiceError> {
    let Some(due_at) = s
        .next_fire_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Ok(());
    };
    let crontab = match Crontab::parse(&s.input.cron, &s.input.timezone) {
        Ok(c) => c,
        Err(e) => {
            // Stored before a rule change made it invalid: pause it rather than spin.
            tracing::error!(schedule = %s.input.name, error = %e, "invalid stored schedule; pausing it");
            let _ =
                sqlx::query("UPDATE schedules SET enabled = 0, next_fire_at = NULL WHERE id = $1")
                    .bind(s.id.clone())
                    .execute(&state.db)
                    .await;
            return Ok(());
        }
    };
    let (tick, next) = decide(&crontab, due_at, now, &s.input.catch_up);
    let scope = Scope::parse(&s.input.scope, s.input.scope_value.as_deref())?;
    let digest = scope == Scope::Digest;
    let (at, missed, skipped) = match tick {
        Tick::Fire { at, missed } => (at, missed, false),
        Tick::Skip { at, missed } => (at, missed, true),
    };
    let cards = if skipped || digest {
        vec![]
    } else {
        match runs::cards_in_scope(state, &scope).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(schedule = %s.input.name, error = %e, "schedule scope has no cards");
                vec![]
            }
        }
    };
    // Ticks counted (the fired one included): at the cap there may have been more.
    let counted = missed + usize::from(!skipped);
    let at_least = if counted >= MAX_COUNTED {
        "at least "
    } else {
        ""
    };
    let note = match (skipped, missed) {
        (true, n) => Some(format!(
            "{at_least}{n} tick(s) missed while no replica was running; skipped"
        )),
        (false, 0) => None,
        (false, n) => Some(format!(
            "catch-up: {at_least}{n} earlier tick(s) missed while no replica ran; ran once"
        )),
    };
    // A digest is built before the claim so that claiming the tick and queueing the digest
    // commit together: if building fails, the tick stays due and is tried again.
    let built = if digest && !skipped {
        Some(super::digests::build(state).await?)
    } else {
        None
    };
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to start a transaction")?;
    let claimed = sqlx::query(
        "UPDATE schedules SET next_fire_at = $3, last_fire_at = $4 \
             WHERE id = $1 AND next_fire_at = $2 AND enabled = 1",
    )
    .bind(s.id.clone())
    .bind(s.next_fire_at.clone())
    .bind(next.map(timestamp))
    .bind(timestamp(at))
    .execute(&mut *tx)
    .await
    .context("Failed to claim the tick")?
    .rows_affected()
        == 1;
    if !claimed {
        let _ = tx.rollback().await;
        report.lost += 1;
        return Ok(());
    }
    if digest {
        let queued = match &built {
            Some((d, ms)) => {
                Some(super::digests::queue(&mut tx, state, d, *ms, Some(&s.id)).await?)
            }
            None => None,
        };
        tx.commit().await.context("Failed to commit the tick")?;
        match queued {
            Some(id) => {
                tracing::info!(schedule = %s.input.name, tick = %timestamp(at), notification = %id, "digest schedule fired");
                state.notifier.wake.notify_one();
                report.digests.push(id);
            }
            None => report.skipped += 1,
        }
        return Ok(());
    }
    let run = runs::insert_run(
        &mut tx,
        &NewRun {
            origin: "schedule",
            scope: &scope,
            force: false,
            schedule: Some((&s.id, &s.input.name)),
            scheduled_for: Some(timestamp(at)),
            note,
            skipped,
        },
        &cards,
    )
    .await?;
    tx.commit().await.context("Failed to commit the tick")?;
    if skipped {
        report.skipped += 1;
        tracing::info!(schedule = %s.input.name, tick = %timestamp(at), missed, "missed ticks skipped");
    } else {
        tracing::info!(schedule = %s.input.name, tick = %timestamp(at), run = %run, jobs = cards.len(), "schedule fired");
        report.runs.push(run);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn on_time_ticks_fire_and_missed_ticks_follow_the_catch_up_choice() {
        let hourly = Crontab::parse("0 * * * *", "UTC").unwrap();
        let due = utc("2026-11-21T10:00:00Z");
        // On time (a second late).
        let (tick, next) = decide(&hourly, due, utc("2026-11-21T10:00:01Z"), "skip");
        assert_eq!(tick, Tick::Fire { at: due, missed: 0 });
        assert_eq!(next, Some(utc("2026-11-21T11:00:00Z")));
        // Down from 09:30 to 13:10: ticks 10, 11, 12, 13 were missed.
        let now = utc("2026-11-21T13:10:00Z");
        let (tick, next) = decide(&hourly, due, now, "once");
        assert_eq!(
            tick,
            Tick::Fire {
                at: utc("2026-11-21T13:00:00Z"),
                missed: 3
            }
        );
        assert_eq!(next, Some(utc("2026-11-21T14:00:00Z")));
        let (tick, _) = decide(&hourly, due, now, "skip");
        assert_eq!(
            tick,
            Tick::Skip {
                at: utc("2026-11-21T13:00:00Z"),
                missed: 4
            }
        );
        // One tick, but far too late: also a catch-up.
        let (tick, _) = decide(&hourly, due, utc("2026-11-21T10:30:00Z"), "skip");
        assert_eq!(tick, Tick::Skip { at: due, missed: 1 });
        // A per-second schedule down for a week: counting stops at MAX_COUNTED and the latest
        // tick is still the last second before now.
        let every_second = Crontab::parse("* * * * * *", "UTC").unwrap();
        let now = utc("2026-11-28T10:00:00.5Z");
        let (tick, next) = decide(&every_second, due, now, "once");
        assert_eq!(
            tick,
            Tick::Fire {
                at: utc("2026-11-28T10:00:00Z"),
                missed: MAX_COUNTED - 1
            }
        );
        assert_eq!(next, Some(utc("2026-11-28T10:00:01Z")));
    }
}
