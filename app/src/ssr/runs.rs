//! Refresh runs: a scope (all cards, a site, a metric, or the cards the rules flag) becomes
//! one job per card, and any replica sharing the database executes them.
//!
//! Jobs are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
//! writer, so its claim statement is atomic as it is). The claiming replica renews its
//! leases while it works; when it dies, its leases expire and another replica takes the
//! jobs over. Each claim increments `attempts`, which fences results: a job is finished
//! (and its insight stored, in the same transaction) only by the claim that still holds it.

use super::db::{self, Db};
use super::insights::{new_id, refresh_card, timestamp, RefreshOptions, Refreshed};
use super::state::AppState;
use super::ServiceError;
use crate::domain::evidence::NETWORK;
use crate::domain::kpi::Metric;
use crate::domain::rules::Status;
use crate::dto::{JobView, RunDetail, RunView};
use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;
use std::time::Duration;

/// What this process calls itself in job claims, and how its workers are woken.
#[derive(Clone, Debug)]
pub struct JobQueue {
    /// Unique per process: host, pid, start time and a counter.
    pub replica: Arc<str>,
    /// Wakes this process's worker when a run is created here (others poll).
    pub notify: Arc<tokio::sync::Notify>,
    /// How long a claim holds a job without renewal.
    pub lease: Duration,
}

impl Default for JobQueue {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        // Several queues in one process (tests, benchmarks) differ by the counter.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        JobQueue {
            replica: format!(
                "{host}-{}-{:x}{n}",
                std::process::id(),
                Utc::now().timestamp_micros() & 0xff_ffff
            )
            .into(),
            notify: Default::default(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// A claim stays valid this long unless renewed (workers renew every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The cards a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Site(String),
    Metric(Metric),
    /// Cards the rules flag: off target, or a trigger fired.
    Flagged,
    /// One card (the command line's `--site X --metric Y`).
    Card(String, Metric),
    /// Not a refresh: a schedule that sends the digest to the notification channels.
    Digest,
}

impl Scope {
    pub fn parse(kind: &str, value: Option<&str>) -> Result<Scope, ServiceError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        match (kind.trim(), value) {
            ("all", _) => Ok(Scope::All),
            ("digest", _) => Ok(Scope::Digest),
            ("flagged", _) => Ok(Scope::Flagged),
            ("site", Some(site)) => Ok(Scope::Site(site.to_string())),
            ("card", Some(card)) => {
                let (site, m) = card.split_once('/').ok_or_else(|| {
                    ServiceError::BadRequest(format!("card '{card}' is not SITE/metric"))
                })?;
                let metric = Metric::parse(m).ok_or_else(|| {
                    ServiceError::BadRequest(format!("unknown metric '{m}' in card '{card}'"))
                })?;
                Ok(Scope::Card(site.to_string(), metric))
            }
            ("metric", Some(m)) => Metric::parse(m).map(Scope::Metric).ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "unknown metric '{m}'; use otif, on_time, in_full, fill_rate or lines_due"
                ))
            }),
            ("site", None) | ("metric", None) | ("card", None) => {
                Err(ServiceError::BadRequest(format!(
                    "a '{}' scope needs a value (a site code, or a metric key)",
                    kind.trim()
                )))
            }
            (other, _) => Err(ServiceError::BadRequest(format!(
                "unknown scope '{other}'; use all, site, metric, flagged or digest"
            ))),
        }
    }

    pub fn key(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Site(_) => "site",
            Scope::Metric(_) => "metric",
            Scope::Flagged => "flagged",
            Scope::Card(..) => "card",
            Scope::Digest => "digest",
        }
    }

    pub fn value(&self) -> Option<String> {
        match self {
            Scope::Site(s) => Some(s.clone()),
            Scope::Metric(m) => Some(m.key().to_string()),
            Scope::Card(site, m) => Some(format!("{site}/{}", m.key())),
            _ => None,
        }
    }

    pub fn label(&self) -> String {
        label(self.key(), self.value().as_deref())
    }
}

/// "all cards", "site DAL", "metric OTIF", "flagged cards".
pub fn label(scope: &str, value: Option<&str>) -> String {
    match (scope, value) {
        ("all", _) => "all cards".into(),
        ("flagged", _) => "flagged cards (off target or triggered)".into(),
        ("digest", _) => "digest to the notification channels".into(),
        ("site", Some(v)) => format!("site {v}"),
        ("card", Some(v)) => format!("card {v}"),
        ("metric", Some(v)) => format!(
            "metric {}",
            Metric::parse(v).map(|m| m.label()).unwrap_or(v)
        ),
        (s, _) => s.to_string(),
    }
}

/// The cards of a scope, in dashboard order (network first).
pub async fn cards_in_scope(
    state: &AppState,
    scope: &Scope,
) -> Result<Vec<(String, Metric)>, ServiceError> {
    let mut sites = vec![NETWORK.to_string()];
    sites.extend(db::sites(&state.db).await?.into_iter().map(|s| s.code));
    let cards = match scope {
        Scope::All => sites
            .iter()
            .flat_map(|s| Metric::ALL.iter().map(move |m| (s.clone(), *m)))
            .collect(),
        Scope::Site(site) | Scope::Card(site, _) if !sites.contains(site) => {
            return Err(ServiceError::NotFound(format!("no site '{site}'")));
        }
        Scope::Site(site) => Metric::ALL.iter().map(|m| (site.clone(), *m)).collect(),
        Scope::Card(site, m) => vec![(site.clone(), *m)],
        Scope::Metric(m) => sites.iter().map(|s| (s.clone(), *m)).collect(),
        Scope::Digest => {
            return Err(ServiceError::BadRequest(
                "a digest refreshes no cards: send it with POST /api/v1/digests".into(),
            ))
        }
        Scope::Flagged => {
            let dashboard = super::kpis::dashboard(state).await?;
            std::iter::once(&dashboard.network)
                .chain(&dashboard.sites)
                .flat_map(|row| {
                    row.tiles
                        .iter()
                        .filter(|t| t.status == Status::OffTarget || t.trigger.is_some())
                        .map(|t| (row.site.clone(), t.metric))
                })
                .collect()
        }
    };
    Ok(cards)
}

/// A run to create.
pub struct NewRun<'a> {
    pub origin: &'a str,
    pub scope: &'a Scope,
    pub force: bool,
    /// (id, name) of the schedule, for scheduled runs.
    pub schedule: Option<(&'a str, &'a str)>,
    pub scheduled_for: Option<String>,
    pub note: Option<String>,
    /// `skipped` records a tick that was not run; otherwise `running`.
    pub skipped: bool,
}

/// Inserts a run and its queued jobs inside the caller's transaction (a run must never be
/// visible without its jobs). Returns the run id.
pub async fn insert_run(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run: &NewRun<'_>,
    cards: &[(String, Metric)],
) -> anyhow::Result<String> {
    let now = Utc::now();
    let id = new_id(now, "run");
    let created_at = timestamp(now);
    let cards: &[(String, Metric)] = if run.skipped { &[] } else { cards };
    // A run with nothing to do is finished at once.
    let status = match (run.skipped, cards.is_empty()) {
        (true, _) => "skipped",
        (false, true) => "finished",
        (false, false) => "running",
    };
    sqlx::query(
        "INSERT INTO refresh_runs (id, schedule_id, schedule_name, origin, scope, scope_value, scheduled_for, \
         force, status, total, note, created_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(id.clone())
    .bind(run.schedule.map(|s| s.0.to_string()))
    .bind(run.schedule.map(|s| s.1.to_string()))
    .bind(run.origin.to_string())
    .bind(run.scope.key())
    .bind(run.scope.value())
    .bind(run.scheduled_for.clone())
    .bind(i64::from(run.force))
    .bind(status)
    .bind(cards.len() as i64)
    .bind(run.note.clone())
    .bind(created_at.clone())
    .bind((status != "running").then(|| created_at.clone()))
    .execute(&mut **tx)
    .await
    .context("Failed to store the run")?;
    const BATCH: usize = 100;
    for (b, chunk) in cards.chunks(BATCH).enumerate() {
        let mut sql = String::from(
            "INSERT INTO refresh_jobs (id, run_id, site, metric, status, attempts) VALUES ",
        );
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 4;
                format!(
                    "(${}, ${}, ${}, ${}, 'queued', 0)",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect();
        sql.push_str(&rows.join(","));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (i, (site, metric)) in chunk.iter().enumerate() {
            // The run id plus a zero-padded sequence: claims take the oldest run's jobs in
            // dashboard order.
            q = q
                .bind(format!("job_{}_{:06}", &id[4..], b * BATCH + i))
                .bind(id.clone())
                .bind(site.clone())
                .bind(metric.key());
        }
        q.execute(&mut **tx)
            .await
            .context("Failed to store the run's jobs")?;
    }
    Ok(id)
}

/// Creates a run of `scope` now and wakes this process's worker.
pub async fn start(
    state: &AppState,
    origin: &str,
    scope: &Scope,
    force: bool,
) -> Result<RunView, ServiceError> {
    let cards = cards_in_scope(state, scope).await?;
    // One transaction: a run is never seen without its jobs (it would look finished).
    let mut tx = state
        .db
        .begin()
        .await
        .context("Failed to reach the database")?;
    let id = insert_run(
        &mut tx,
        &NewRun {
            origin,
            scope,
            force,
            schedule: None,
            scheduled_for: None,
            note: None,
            skipped: false,
        },
        &cards,
    )
    .await?;
    tx.commit().await.context("Failed to store the run")?;
    state.jobs.notify.notify_one();
    tracing::info!(run = %id, scope = %scope.label(), jobs = cards.len(), "run started");
    run(&state.db, &id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the new run {id} is missing").into())
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
}

/// Claims up to `n` runnable jobs (queued, or running under an expired lease), oldest
/// first, optionally only from one run.
pub async fn claim(
    db: &Db,
    replica: &Arc<str>,
    n: usize,
    lease: Duration,
    only_run: Option<&str>,
) -> anyhow::Result<Vec<JobClaim>> {
    if n == 0 {
        return Ok(vec![]);
    }
    let now = Utc::now();
    // SQLite: one writer at a time, so the statement is atomic without row locks.
    let lock = if db::is_postgres(db) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE refresh_jobs SET status = 'running', claimed_by = $1, lease_until = $2, \
         attempts = attempts + 1, started_at = $3 \
         WHERE id IN (SELECT id FROM refresh_jobs \
           WHERE (status = 'queued' OR (status = 'running' AND lease_until < $3)) \
           AND ($4 = '' OR run_id = $4) ORDER BY id LIMIT $5{lock}) \
         RETURNING id, run_id, site, metric, attempts"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(replica.to_string())
        .bind(lease_until(now, lease))
        .bind(timestamp(now))
        .bind(only_run.unwrap_or_default().to_string())
        .bind(n as i64)
        .fetch_all(db)
        .await
        .context("Failed to claim jobs")?;
    let mut claims = Vec::with_capacity(rows.len());
    for r in &rows {
        let run_id: String = r.try_get("run_id")?;
        claims.push(JobClaim {
            id: r.try_get("id")?,
            site: r.try_get("site")?,
            metric: r.try_get("metric")?,
            attempts: r.try_get("attempts")?,
            replica: replica.clone(),
            force: false,
            run_id,
        });
    }
    if !claims.is_empty() {
        // Forced runs are rare; one query for the claimed runs' flags.
        let forced: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM refresh_runs WHERE status = 'running' AND force = 1",
        )
        .fetch_all(db)
        .await
        .context("Failed to read the runs")?;
        for c in &mut claims {
            c.force = forced.contains(&c.run_id);
        }
    }
    Ok(claims)
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> String {
    timestamp(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)))
}

/// Extends every lease this replica holds.
pub async fn renew(db: &Db, replica: &str, lease: Duration) -> anyhow::Result<u64> {
    let r = sqlx::query(
        "UPDATE refresh_jobs SET lease_until = $2 WHERE claimed_by = $1 AND status = 'running'",
    )
    .bind(replica.to_string())
    .bind(lease_until(Utc::now(), lease))
    .execute(db)
    .await
    .context("Failed to renew job leases")?;
    Ok(r.rows_affected())
}

/// Puts this replica's running jobs back in the queue (graceful shutdown).
pub async fn release(db: &Db, replica: &str) -> anyhow::Result<u64> {
    let r = sqlx::query(
        "UPDATE refresh_jobs SET status = 'queued', claimed_by = NULL, lease_until = NULL \
         WHERE claimed_by = $1 AND status = 'running'",
    )
    .bind(replica.to_string())
    .execute(db)
    .await
    .context("Failed to release jobs")?;
    Ok(r.rows_affected())
}

/// Finishes a job if `claim` still holds it; false when another claim took it over.
pub async fn finish_job<'e, E>(
    ex: E,
    claim: &JobClaim,
    status: &str,
    insight_id: Option<&str>,
    error: Option<&str>,
) -> anyhow::Result<bool>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let r = sqlx::query(
        "UPDATE refresh_jobs SET status = $4, insight_id = $5, error = $6, finished_at = $7, lease_until = NULL \
         WHERE id = $1 AND claimed_by = $2 AND attempts = $3 AND status = 'running'",
    )
    .bind(claim.id.clone())
    .bind(claim.replica.to_string())
    .bind(claim.attempts)
    .bind(status.to_string())
    .bind(insight_id.map(str::to_string))
    .bind(error.map(str::to_string))
    .bind(timestamp(Utc::now()))
    .execute(ex)
    .await
    .context("Failed to finish the job")?;
    Ok(r.rows_affected() == 1)
}

/// How a job ended, for the worker's log and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Unchanged,
    Failed(String),
    /// Another replica holds the job now; nothing was stored.
    Superseded,
}

/// Executes one claimed job: refreshes its card (skipping the agent when nothing changed,
/// unless the run is forced) and finishes the job. One card's failure is recorded on its
/// job and never stops the run.
pub async fn execute(state: &AppState, claim: &JobClaim) -> JobOutcome {
    let opts = RefreshOptions {
        question: None,
        skip_unchanged: !claim.force,
        job: Some(claim),
    };
    let finish = |status: &'static str, insight: Option<String>, error: Option<String>| async move {
        match finish_job(
            &state.db,
            claim,
            status,
            insight.as_deref(),
            error.as_deref(),
        )
        .await
        {
            Ok(true) => match status {
                "unchanged" => JobOutcome::Unchanged,
                _ => JobOutcome::Failed(error.unwrap_or_default()),
            },
            Ok(false) => JobOutcome::Superseded,
            Err(e) => {
                tracing::error!(job = %claim.id, error = ?e, "could not finish the job");
                JobOutcome::Failed("could not record the result".into())
            }
        }
    };
    match refresh_card(state, &claim.site, &claim.metric, opts).await {
        // Stored, and the job finished, in one transaction.
        Ok(Refreshed::Made(_)) => JobOutcome::Done,
        Ok(Refreshed::Unchanged { insight_id }) => {
            finish("unchanged", Some(insight_id), None).await
        }
        // The failed attempt is stored with the job finished as failed.
        Err(ServiceError::Agent(e)) => JobOutcome::Failed(e.to_string()),
        Err(ServiceError::Superseded) => JobOutcome::Superseded,
        Err(e) => {
            let message = match &e {
                ServiceError::NotFound(m) | ServiceError::BadRequest(m) => m.clone(),
                other => {
                    tracing::error!(job = %claim.id, error = ?other, "job failed");
                    "internal error; see the server log".into()
                }
            };
            finish("failed", None, Some(message)).await
        }
    }
}

/// Marks runs whose jobs have all ended as finished (at the last job's end). Any replica
/// may do it; it is idempotent.
pub async fn close_finished(db: &Db) -> anyhow::Result<u64> {
    let r = sqlx::query(
        "UPDATE refresh_runs SET status = 'finished', finished_at = COALESCE(\
           (SELECT MAX(j.finished_at) FROM refresh_jobs j WHERE j.run_id = refresh_runs.id), $1) \
         WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM refresh_jobs j \
           WHERE j.run_id = refresh_runs.id AND j.status IN ('queued', 'running'))",
    )
    .bind(timestamp(Utc::now()))
    .execute(db)
    .await
    .context("Failed to close finished runs")?;
    Ok(r.rows_affected())
}

const RUN_COLS: &str = "r.id, r.origin, r.schedule_id, r.schedule_name, r.scope, r.scope_value, r.scheduled_for, \
     r.force, r.status, r.total, r.note, r.created_at, r.finished_at, \
     CAST(COALESCE(SUM(CASE WHEN j.status = 'queued' THEN 1 ELSE 0 END), 0) AS BIGINT) AS queued, \
     CAST(COALESCE(SUM(CASE WHEN j.status = 'running' THEN 1 ELSE 0 END), 0) AS BIGINT) AS running, \
     CAST(COALESCE(SUM(CASE WHEN j.status = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
     CAST(COALESCE(SUM(CASE WHEN j.status = 'unchanged' THEN 1 ELSE 0 END), 0) AS BIGINT) AS unchanged, \
     CAST(COALESCE(SUM(CASE WHEN j.status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed";
const RUN_GROUP: &str =
    "GROUP BY r.id, r.origin, r.schedule_id, r.schedule_name, r.scope, r.scope_value, \
     r.scheduled_for, r.force, r.status, r.total, r.note, r.created_at, r.finished_at";

fn run_view(r: &AnyRow, now: DateTime<Utc>) -> Result<RunView, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    let scope_value: Option<String> = r.try_get("scope_value")?;
    let created_at: String = r.try_get("created_at")?;
    let finished_at: Option<String> = r.try_get("finished_at")?;
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let start = parse(&created_at).unwrap_or(now);
    let end = finished_at.as_deref().and_then(parse).unwrap_or(now);
    let duration_secs = ((end - start).num_milliseconds().max(0)) as f64 / 1000.0;
    let mut v = RunView {
        id: r.try_get("id")?,
        origin: r.try_get("origin")?,
        schedule_id: r.try_get("schedule_id")?,
        schedule_name: r.try_get("schedule_name")?,
        scope_label: label(&scope, scope_value.as_deref()),
        scope,
        scope_value,
        scheduled_for: r.try_get("scheduled_for")?,
        force: r.try_get::<i64, _>("force")? != 0,
        status: r.try_get("status")?,
        total: r.try_get("total")?,
        queued: r.try_get("queued")?,
        running: r.try_get("running")?,
        done: r.try_get("done")?,
        unchanged: r.try_get("unchanged")?,
        failed: r.try_get("failed")?,
        note: r.try_get("note")?,
        created_at,
        finished_at,
        duration_secs,
        eta_secs: None,
    };
    let finished = v.finished_jobs();
    if v.status == "running" && finished > 0 {
        v.eta_secs = Some(duration_secs / finished as f64 * (v.total - finished) as f64);
    }
    Ok(v)
}

/// One run with its counts.
pub async fn run(db: &Db, id: &str) -> anyhow::Result<Option<RunView>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLS} FROM refresh_runs r LEFT JOIN refresh_jobs j ON j.run_id = r.id \
         WHERE r.id = $1 {RUN_GROUP}"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the run")?;
    Ok(match row {
        Some(r) => Some(run_view(&r, Utc::now())?),
        None => None,
    })
}

/// Runs, latest first: all of them, or only those running or finished in the last
/// `recent_secs` seconds (the dashboard's progress bars).
pub async fn runs(db: &Db, limit: i64, active_within: Option<i64>) -> anyhow::Result<Vec<RunView>> {
    let now = Utc::now();
    let since = active_within
        .map(|s| timestamp(now - chrono::Duration::seconds(s)))
        .unwrap_or_default();
    let filter = if active_within.is_some() {
        "WHERE (r.status = 'running' OR (r.status = 'finished' AND r.finished_at >= $2))"
    } else {
        "WHERE $2 = ''"
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLS} FROM refresh_runs r LEFT JOIN refresh_jobs j ON j.run_id = r.id \
         {filter} {RUN_GROUP} ORDER BY r.created_at DESC, r.id DESC LIMIT $1"
    )))
    .bind(limit)
    .bind(since)
    .fetch_all(db)
    .await
    .context("Failed to read runs")?;
    rows.iter()
        .map(|r| run_view(r, now).map_err(Into::into))
        .collect()
}

/// A run and its jobs.
pub async fn detail(db: &Db, id: &str) -> Result<RunDetail, ServiceError> {
    let run = run(db, id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no run '{id}'")))?;
    let rows = sqlx::query(
        "SELECT id, site, metric, status, attempts, claimed_by, insight_id, error, started_at, finished_at \
         FROM refresh_jobs WHERE run_id = $1 ORDER BY id",
    )
    .bind(id.to_string())
    .fetch_all(db)
    .await
    .context("Failed to read the run's jobs")?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let metric: String = r.try_get("metric").context("job row")?;
        let Some(metric) = Metric::parse(&metric) else {
            continue;
        };
        jobs.push(JobView {
            id: r.try_get("id").context("job row")?,
            site: r.try_get("site").context("job row")?,
            metric,
            status: r.try_get("status").context("job row")?,
            attempts: r.try_get("attempts").context("job row")?,
            claimed_by: r.try_get("claimed_by").context("job row")?,
            insight_id: r.try_get("insight_id").context("job row")?,
            error: r.try_get("error").context("job row")?,
            started_at: r.try_get("started_at").context("job row")?,
            finished_at: r.try_get("finished_at").context("job row")?,
        });
    }
    Ok(RunDetail { run, jobs })
}
