//! Refresh runs and their jobs: one job per card, claimed by one replica at a time under a
//! lease, fenced by the claim number so a job yields at most one result.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time, so
//! the same statement is atomic there without it.

use super::{decode, Backend, Conn, Ctx, Db, Exec, Result};
use crate::domain::kpi::Metric;
use crate::domain::period::Compare;
use crate::domain::status::{JobStatus, RunOrigin, RunStatus};
use crate::dto::{JobView, RunView};
use crate::ssr::clock::{new_id, parse_timestamp, timestamp};
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::time::Duration;

/// A run to create.
pub struct NewRun<'a> {
    pub origin: RunOrigin,
    /// The scope's key and value (`site`, `DAL`).
    pub scope: &'a str,
    pub scope_value: Option<String>,
    pub force: bool,
    /// (id, name) of the schedule, for scheduled runs.
    pub schedule: Option<(&'a str, &'a str)>,
    pub scheduled_for: Option<String>,
    pub note: Option<String>,
    /// `skipped` records a tick that was not run; otherwise `running`.
    pub skipped: bool,
    /// The cards' period (a label; empty for the latest complete week when each job runs)
    /// and comparison.
    pub period: String,
    pub compare: Compare,
}

/// Inserts a run and its queued jobs on `conn`, which must be the caller's transaction (a
/// run must never be visible without its jobs: it would look finished). Returns the id.
pub async fn insert_run(
    conn: &mut Conn,
    run: &NewRun<'_>,
    cards: &[(String, Metric)],
) -> Result<String> {
    let now = Utc::now();
    let id = new_id(now, "run");
    let created_at = timestamp(now);
    let cards: &[(String, Metric)] = if run.skipped { &[] } else { cards };
    // A run with nothing to do is finished at once.
    let status = match (run.skipped, cards.is_empty()) {
        (true, _) => RunStatus::Skipped,
        (false, true) => RunStatus::Finished,
        (false, false) => RunStatus::Running,
    };
    sqlx::query(
        "INSERT INTO refresh_runs (id, schedule_id, schedule_name, origin, scope, scope_value, scheduled_for, \
         force, status, total, note, created_at, finished_at, period, compare) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(id.clone())
    .bind(run.schedule.map(|s| s.0.to_string()))
    .bind(run.schedule.map(|s| s.1.to_string()))
    .bind(run.origin.as_str())
    .bind(run.scope.to_string())
    .bind(run.scope_value.clone())
    .bind(run.scheduled_for.clone())
    .bind(i64::from(run.force))
    .bind(status.as_str())
    .bind(cards.len() as i64)
    .bind(run.note.clone())
    .bind(created_at.clone())
    .bind((status != RunStatus::Running).then(|| created_at.clone()))
    .bind(run.period.clone())
    .bind(run.compare.key())
    .execute(&mut *conn)
    .await
    .ctx("Failed to store the run")?;
    const BATCH: usize = 100;
    for (b, chunk) in cards.chunks(BATCH).enumerate() {
        // $1 is the queued status; each row has four parameters from $2 on.
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 2 + i * 4;
                format!("(${}, ${}, ${}, ${}, $1, 0)", p, p + 1, p + 2, p + 3)
            })
            .collect();
        let sql = format!(
            "INSERT INTO refresh_jobs (id, run_id, site, metric, status, attempts) VALUES {}",
            rows.join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(JobStatus::Queued.as_str());
        for (i, (site, metric)) in chunk.iter().enumerate() {
            // The run id plus a zero-padded sequence: claims take the oldest run's jobs in
            // dashboard order.
            q = q
                .bind(format!("job_{}_{:06}", &id[4..], b * BATCH + i))
                .bind(id.clone())
                .bind(site.clone())
                .bind(metric.key());
        }
        q.execute(&mut *conn)
            .await
            .ctx("Failed to store the run's jobs")?;
    }
    Ok(id)
}

/// A job held by this replica.
#[derive(Clone, Debug)]
pub struct JobClaim {
    pub id: String,
    pub run_id: String,
    pub site: String,
    pub metric: String,
    /// The fencing token: the claim number.
    pub attempts: i64,
    pub replica: Arc<str>,
    pub force: bool,
    /// The run's period label (empty: the latest complete week) and comparison.
    pub period: String,
    pub compare: Compare,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    run_id: String,
    site: String,
    metric: String,
    attempts: i64,
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> String {
    timestamp(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)))
}

/// Claims up to `n` runnable jobs (queued, or running under an expired lease), oldest
/// first, optionally only from one run.
pub async fn claim(
    db: &Db,
    replica: &Arc<str>,
    n: usize,
    lease: Duration,
    only_run: Option<&str>,
) -> Result<Vec<JobClaim>> {
    if n == 0 {
        return Ok(vec![]);
    }
    let now = Utc::now();
    let lock = match Backend::of(db) {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        // One writer at a time: the statement is atomic without row locks.
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE refresh_jobs SET status = $6, claimed_by = $1, lease_until = $2, \
         attempts = attempts + 1, started_at = $3 \
         WHERE id IN (SELECT id FROM refresh_jobs \
           WHERE (status = $7 OR (status = $6 AND lease_until < $3)) \
           AND ($4 = '' OR run_id = $4) ORDER BY id LIMIT $5{lock}) \
         RETURNING id, run_id, site, metric, attempts"
    );
    let rows: Vec<ClaimRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(replica.to_string())
        .bind(lease_until(now, lease))
        .bind(timestamp(now))
        .bind(only_run.unwrap_or_default().to_string())
        .bind(n as i64)
        .bind(JobStatus::Running.as_str())
        .bind(JobStatus::Queued.as_str())
        .fetch_all(db)
        .await
        .ctx("Failed to claim jobs")?;
    let mut claims: Vec<JobClaim> = rows
        .into_iter()
        .map(|r| JobClaim {
            id: r.id,
            run_id: r.run_id,
            site: r.site,
            metric: r.metric,
            attempts: r.attempts,
            replica: replica.clone(),
            force: false,
            period: String::new(),
            compare: Compare::Previous,
        })
        .collect();
    if !claims.is_empty() {
        // The claimed runs' settings: one query for the running runs (a handful).
        let runs: Vec<(String, i64, String, String)> =
            sqlx::query_as("SELECT id, force, period, compare FROM refresh_runs WHERE status = $1")
                .bind(RunStatus::Running.as_str())
                .fetch_all(db)
                .await
                .ctx("Failed to read the runs")?;
        for c in &mut claims {
            if let Some((_, force, period, compare)) = runs.iter().find(|r| r.0 == c.run_id) {
                c.force = *force != 0;
                c.period = period.clone();
                c.compare = Compare::parse(compare).unwrap_or_default();
            }
        }
    }
    Ok(claims)
}

/// Extends every lease this replica holds.
pub async fn renew(db: &Db, replica: &str, lease: Duration) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE refresh_jobs SET lease_until = $2 WHERE claimed_by = $1 AND status = $3",
    )
    .bind(replica.to_string())
    .bind(lease_until(Utc::now(), lease))
    .bind(JobStatus::Running.as_str())
    .execute(db)
    .await
    .ctx("Failed to renew job leases")?;
    Ok(r.rows_affected())
}

/// Puts this replica's running jobs back in the queue (graceful shutdown).
pub async fn release(db: &Db, replica: &str) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE refresh_jobs SET status = $2, claimed_by = NULL, lease_until = NULL \
         WHERE claimed_by = $1 AND status = $3",
    )
    .bind(replica.to_string())
    .bind(JobStatus::Queued.as_str())
    .bind(JobStatus::Running.as_str())
    .execute(db)
    .await
    .ctx("Failed to release jobs")?;
    Ok(r.rows_affected())
}

/// Finishes a job if `claim` still holds it; false when another claim took it over.
pub async fn finish_job<'e>(
    ex: impl Exec<'e>,
    claim: &JobClaim,
    status: JobStatus,
    insight_id: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE refresh_jobs SET status = $4, insight_id = $5, error = $6, finished_at = $7, lease_until = NULL \
         WHERE id = $1 AND claimed_by = $2 AND attempts = $3 AND status = $8",
    )
    .bind(claim.id.clone())
    .bind(claim.replica.to_string())
    .bind(claim.attempts)
    .bind(status.as_str())
    .bind(insight_id.map(str::to_string))
    .bind(error.map(str::to_string))
    .bind(timestamp(Utc::now()))
    .bind(JobStatus::Running.as_str())
    .execute(ex)
    .await
    .ctx("Failed to finish the job")?;
    Ok(r.rows_affected() == 1)
}

/// Marks runs whose jobs have all ended as finished (at the last job's end), returning
/// each closed run's (created_at, finished_at). Any replica may do it; it is idempotent,
/// and each run is closed (and returned) once, by one replica.
pub async fn close_finished(db: &Db) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "UPDATE refresh_runs SET status = $2, finished_at = COALESCE(\
           (SELECT MAX(j.finished_at) FROM refresh_jobs j WHERE j.run_id = refresh_runs.id), $1) \
         WHERE status = $3 AND NOT EXISTS (SELECT 1 FROM refresh_jobs j \
           WHERE j.run_id = refresh_runs.id AND j.status IN ($4, $5)) \
         RETURNING created_at, finished_at",
    )
    .bind(timestamp(Utc::now()))
    .bind(RunStatus::Finished.as_str())
    .bind(RunStatus::Running.as_str())
    .bind(JobStatus::Queued.as_str())
    .bind(JobStatus::Running.as_str())
    .fetch_all(db)
    .await
    .ctx("Failed to close finished runs")?;
    Ok(rows
        .into_iter()
        .filter_map(|(a, b)| Some((a, b?)))
        .collect())
}

/// A run row with its job counts. The counts' status texts are bound as $1..$5 in
/// [`JobStatus`] order: queued, running, done, unchanged, failed.
const RUN_COLS: &str =
    "r.id, r.origin, r.schedule_id, r.schedule_name, r.scope, r.scope_value, r.scheduled_for, \
     r.force, r.status, r.total, r.note, r.created_at, r.finished_at, r.period, r.compare, \
     CAST(COALESCE(SUM(CASE WHEN j.status = $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued, \
     CAST(COALESCE(SUM(CASE WHEN j.status = $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS running, \
     CAST(COALESCE(SUM(CASE WHEN j.status = $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
     CAST(COALESCE(SUM(CASE WHEN j.status = $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS unchanged, \
     CAST(COALESCE(SUM(CASE WHEN j.status = $5 THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed";
const RUN_GROUP: &str =
    "GROUP BY r.id, r.origin, r.schedule_id, r.schedule_name, r.scope, r.scope_value, \
     r.scheduled_for, r.force, r.status, r.total, r.note, r.created_at, r.finished_at, \
     r.period, r.compare";

fn bind_job_statuses<'q>(
    q: sqlx::query::QueryAs<'q, sqlx::Any, RunRow, sqlx::any::AnyArguments>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, RunRow, sqlx::any::AnyArguments> {
    q.bind(JobStatus::Queued.as_str())
        .bind(JobStatus::Running.as_str())
        .bind(JobStatus::Done.as_str())
        .bind(JobStatus::Unchanged.as_str())
        .bind(JobStatus::Failed.as_str())
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    origin: String,
    schedule_id: Option<String>,
    schedule_name: Option<String>,
    scope: String,
    scope_value: Option<String>,
    scheduled_for: Option<String>,
    force: i64,
    status: String,
    total: i64,
    note: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    period: String,
    compare: String,
    queued: i64,
    running: i64,
    done: i64,
    unchanged: i64,
    failed: i64,
}

impl RunRow {
    /// The view, with its duration and (while running) an ETA from the pace so far.
    fn into_view(self, now: DateTime<Utc>) -> Result<RunView> {
        let start = parse_timestamp(&self.created_at).unwrap_or(now);
        let end = self
            .finished_at
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(now);
        let duration_secs = ((end - start).num_milliseconds().max(0)) as f64 / 1000.0;
        let mut v = RunView {
            scope_label: crate::domain::scope::label(&self.scope, self.scope_value.as_deref()),
            origin: decode("refresh_runs.origin", RunOrigin::parse(&self.origin))?,
            status: decode("refresh_runs.status", RunStatus::parse(&self.status))?,
            id: self.id,
            schedule_id: self.schedule_id,
            schedule_name: self.schedule_name,
            scope: self.scope,
            scope_value: self.scope_value,
            scheduled_for: self.scheduled_for,
            force: self.force != 0,
            period: self.period,
            compare: Compare::parse(&self.compare).unwrap_or_default(),
            total: self.total,
            queued: self.queued,
            running: self.running,
            done: self.done,
            unchanged: self.unchanged,
            failed: self.failed,
            note: self.note,
            created_at: self.created_at,
            finished_at: self.finished_at,
            duration_secs,
            eta_secs: None,
        };
        let finished = v.finished_jobs();
        if v.status == RunStatus::Running && finished > 0 {
            v.eta_secs = Some(duration_secs / finished as f64 * (v.total - finished) as f64);
        }
        Ok(v)
    }
}

/// One run with its counts.
pub async fn run<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<RunView>> {
    let row: Option<RunRow> = bind_job_statuses(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLS} FROM refresh_runs r LEFT JOIN refresh_jobs j ON j.run_id = r.id \
         WHERE r.id = $6 {RUN_GROUP}"
    ))))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the run")?;
    row.map(|r| r.into_view(Utc::now())).transpose()
}

/// Runs, latest first (at most `limit`): all of them, or with `active_within` only those
/// running or finished in the last that many seconds (the dashboard's progress bars).
/// `among`: only the runs of one of these sites or of one of their cards (a principal
/// limited to them); the placeholders are generated, only the codes are bound.
pub async fn runs<'e>(
    ex: impl Exec<'e>,
    limit: i64,
    active_within: Option<i64>,
    among: Option<&[String]>,
) -> Result<Vec<RunView>> {
    let now = Utc::now();
    let since = active_within
        .map(|s| timestamp(now - chrono::Duration::seconds(s)))
        .unwrap_or_default();
    let mut filter = if active_within.is_some() {
        "WHERE (r.status = $8 OR (r.status = $9 AND r.finished_at >= $7))".to_string()
    } else {
        "WHERE $7 = '' AND $8 <> '' AND $9 <> ''".to_string()
    };
    if let Some(sites) = among {
        // A site's run, or a card's (`SITE/metric`): compared by prefix, not LIKE (codes
        // may hold `_`).
        let mut any = vec!["1 = 0".to_string()];
        for i in 0..sites.len() {
            let (site, prefix) = (10 + 2 * i, 11 + 2 * i);
            any.push(format!(
                "(r.scope = 'site' AND r.scope_value = ${site}) OR \
                 (r.scope = 'card' AND substr(r.scope_value, 1, length(${prefix})) = ${prefix})"
            ));
        }
        filter.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    let mut q = bind_job_statuses(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLS} FROM refresh_runs r LEFT JOIN refresh_jobs j ON j.run_id = r.id \
         {filter} {RUN_GROUP} ORDER BY r.created_at DESC, r.id DESC LIMIT $6"
    ))))
    .bind(limit)
    .bind(since)
    .bind(RunStatus::Running.as_str())
    .bind(RunStatus::Finished.as_str());
    for site in among.unwrap_or_default() {
        q = q.bind(site.clone()).bind(format!("{site}/"));
    }
    let rows: Vec<RunRow> = q.fetch_all(ex).await.ctx("Failed to read runs")?;
    rows.into_iter().map(|r| r.into_view(now)).collect()
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    site: String,
    metric: String,
    status: String,
    attempts: i64,
    claimed_by: Option<String>,
    insight_id: Option<String>,
    error: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

/// A run's jobs, in claim order.
pub async fn jobs<'e>(ex: impl Exec<'e>, run_id: &str) -> Result<Vec<JobView>> {
    let rows: Vec<JobRow> = sqlx::query_as(
        "SELECT id, site, metric, status, attempts, claimed_by, insight_id, error, started_at, finished_at \
         FROM refresh_jobs WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read the run's jobs")?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(metric) = Metric::parse(&r.metric) else {
            continue;
        };
        jobs.push(JobView {
            status: decode("refresh_jobs.status", JobStatus::parse(&r.status))?,
            id: r.id,
            site: r.site,
            metric,
            attempts: r.attempts,
            claimed_by: r.claimed_by,
            insight_id: r.insight_id,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
        });
    }
    Ok(jobs)
}

/// Jobs in a state, across every run and replica (for `/metrics`).
pub async fn count_jobs<'e>(ex: impl Exec<'e>, status: JobStatus) -> Result<i64> {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM refresh_jobs WHERE status = $1")
        .bind(status.as_str())
        .fetch_one(ex)
        .await
        .ctx("Failed to count jobs")
}
