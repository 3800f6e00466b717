//! Refresh runs, their schedules and the crontab dialect.
//!
//! - this module: runs. A scope (all cards, a site, a metric, one card, or the cards the
//!   rules flag) becomes one job per card, and any replica sharing the database executes
//!   them. Jobs are claimed under a lease that the claiming replica renews while it works;
//!   when it dies, its leases expire and another replica takes the jobs over. Each claim
//!   increments `attempts`, which fences results: a job is finished (and its insight
//!   stored, in the same transaction) only by the claim that still holds it.
//! - [`schedules`]: cron schedules and their ticks (exactly once across replicas).
//! - [`crontab`]: crontab expressions in a time zone, DST as cron does it.

pub mod crontab;
pub mod schedules;

pub use schedules::Schedules;

use crate::domain::access::Reach;
use crate::domain::evidence::NETWORK;
use crate::domain::kpi::Metric;
use crate::domain::period::{Compare, Period};
use crate::domain::rules::Status;
use crate::domain::scope::Scope;
use crate::domain::status::{JobStatus, RunOrigin, RunStatus};
use crate::dto::{PeriodChoice, RunDetail, RunRequest, RunView, RunsQuery};
use crate::ssr::cards::{Cards, RefreshOptions, Refreshed};
use crate::ssr::clock::{self, Clock};
use crate::ssr::error::{chain, ServiceError};
use crate::ssr::metrics;
use crate::ssr::store::runs::{JobClaim, NewRun};
use crate::ssr::store::{self, facts, Conn, Db};
use std::sync::Arc;
use std::time::Duration;

/// What this process calls itself in job claims, and how its worker is woken.
#[derive(Clone, Debug)]
pub struct JobQueue {
    /// Unique per process: host, pid, start time and a counter.
    pub replica: Arc<str>,
    /// Wakes this process's worker when a run is created here (others poll).
    pub notify: Arc<tokio::sync::Notify>,
    /// How long a claim holds a job without renewal.
    pub lease: Duration,
}

/// A claim stays valid this long unless renewed (workers renew every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl JobQueue {
    pub fn new(lease: Duration) -> JobQueue {
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
                chrono::Utc::now().timestamp_micros() & 0xff_ffff
            )
            .into(),
            notify: Default::default(),
            lease,
        }
    }
}

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue::new(DEFAULT_LEASE)
    }
}

/// The period label a run stores (empty when none was asked for: each job then takes the
/// default grain's latest complete period when it runs) and its comparison; 400 naming a
/// bad parameter.
pub fn run_period(view: &PeriodChoice, clock: Clock) -> Result<(String, Compare), ServiceError> {
    let (period, compare) = clock.resolve(view)?;
    let label = if view.period.as_deref().is_some_and(|p| !p.trim().is_empty()) {
        period.label()
    } else {
        String::new()
    };
    Ok((label, compare))
}

/// How a job ended, for the worker's log (one line per job, at the worker) and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Unchanged,
    /// The job is recorded as failed with `reason` (safe to show); `cause` is the internal
    /// error behind it, for the log only.
    Failed {
        reason: String,
        cause: Option<String>,
    },
    /// The agent failed (the failed attempt is stored); `detail` is its error in full (a
    /// crashed agent's last line), for the log only, as a warning: not our fault.
    AgentFailed {
        reason: String,
        detail: String,
    },
    /// Another replica holds the job now; nothing was stored.
    Superseded,
}

/// The runs capability.
#[derive(Clone, Debug)]
pub struct Runs {
    db: Db,
    cards: Cards,
    queue: JobQueue,
}

/// Whether a run is about sites within `reach`: any run for an unlimited principal; one
/// site's or one card's run of a reached site otherwise.
fn run_within(run: &RunView, reach: &Reach) -> bool {
    if reach.is_all() {
        return true;
    }
    match (run.scope.as_str(), run.scope_value.as_deref()) {
        ("site", Some(site)) => reach.sees(site),
        ("card", Some(card)) => card
            .split_once('/')
            .is_some_and(|(site, _)| reach.sees(site)),
        _ => false,
    }
}

impl Runs {
    pub fn new(db: Db, cards: Cards, queue: JobQueue) -> Runs {
        Runs { db, cards, queue }
    }

    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// The reference date's source (a pinned `OPSIGHT_AS_OF` when replaying history).
    pub fn clock(&self) -> Clock {
        self.cards.clock()
    }

    /// The cards of a scope, in dashboard order (network first). `flagged` means flagged
    /// in the run's period and comparison (`period` a label, empty for the latest week).
    pub async fn cards_in_scope(
        &self,
        scope: &Scope,
        period: &str,
        compare: Compare,
    ) -> Result<Vec<(String, Metric)>, ServiceError> {
        let mut sites = vec![NETWORK.to_string()];
        sites.extend(facts::site_codes(&self.db).await?);
        let metrics = facts::metrics(&self.db).await?;
        let cards = match scope {
            Scope::All => sites
                .iter()
                .flat_map(|s| metrics.iter().map(move |m| (s.clone(), *m)))
                .collect(),
            Scope::Site(site) | Scope::Card(site, _) if !sites.contains(site) => {
                return Err(ServiceError::NotFound(format!("no site '{site}'")));
            }
            Scope::Site(site) => metrics.iter().map(|m| (site.clone(), *m)).collect(),
            Scope::Card(site, m) => vec![(site.clone(), *m)],
            Scope::Metric(m) => sites.iter().map(|s| (s.clone(), *m)).collect(),
            Scope::Digest => {
                return Err(ServiceError::BadRequest(
                    "a digest refreshes no cards: send it with POST /api/v1/digests".into(),
                ))
            }
            Scope::Flagged => {
                let view = PeriodChoice::new(period, compare.key());
                let dashboard = self
                    .cards
                    .dashboard(crate::dto::DashboardQuery { view }, &Reach::All)
                    .await?;
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

    /// Starts a run of a scope now (the dashboard, the API, `opsight refresh`).
    /// A principal limited to some sites may run one of its sites or cards only.
    pub async fn start(
        &self,
        input: RunRequest,
        origin: RunOrigin,
        reach: &Reach,
    ) -> Result<RunView, ServiceError> {
        let scope = Scope::parse(&input.scope, input.scope_value.as_deref())?;
        if !reach.is_all() {
            match &scope {
                Scope::Site(site) | Scope::Card(site, _) => crate::ssr::cards::within(reach, site)?,
                _ => {
                    return Err(ServiceError::Forbidden(format!(
                        "a run of '{}' covers every site; {}: run one of your sites",
                        scope.key(),
                        reach.refusal(crate::domain::evidence::NETWORK)
                    )))
                }
            }
        }
        self.start_scope(&scope, input.force, origin, &input.view)
            .await
    }

    /// Creates a run of `scope` now and wakes this process's worker.
    #[tracing::instrument(skip_all, fields(scope = %scope.label()))]
    pub async fn start_scope(
        &self,
        scope: &Scope,
        force: bool,
        origin: RunOrigin,
        view: &PeriodChoice,
    ) -> Result<RunView, ServiceError> {
        let (period, compare) = run_period(view, self.cards.clock())?;
        let cards = self.cards_in_scope(scope, &period, compare).await?;
        // One transaction: a run is never seen without its jobs (it would look finished).
        let mut tx = store::begin(&self.db).await?;
        let id = insert(
            &mut tx,
            &NewRun {
                origin,
                scope: scope.key(),
                scope_value: scope.value(),
                force,
                schedule: None,
                scheduled_for: None,
                note: None,
                skipped: false,
                period,
                compare,
            },
            &cards,
        )
        .await?;
        store::commit(tx).await?;
        self.queue.notify.notify_one();
        tracing::info!(run = %id, jobs = cards.len(), "run started");
        self.run(&id).await
    }

    /// One run with its counts, or `NotFound`.
    pub async fn run(&self, id: &str) -> Result<RunView, ServiceError> {
        store::runs::run(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no run '{id}'")))
    }

    /// Runs, latest first; `active` only those running or finished in the last 10 seconds
    /// (the dashboard's progress bars).
    /// A principal limited to some sites sees the runs of one of its sites or cards only.
    pub async fn list(&self, q: RunsQuery, reach: &Reach) -> Result<Vec<RunView>, ServiceError> {
        let among = reach.sites();
        Ok(store::runs::runs(
            &self.db,
            q.limit(),
            q.active.unwrap_or(false).then_some(10),
            among.as_deref(),
        )
        .await?)
    }

    /// A run and its jobs.
    pub async fn detail(&self, id: &str, reach: &Reach) -> Result<RunDetail, ServiceError> {
        let run = self.run(id).await?;
        if !run_within(&run, reach) {
            return Err(ServiceError::Forbidden(reach.refusal_of_other()));
        }
        Ok(RunDetail {
            run,
            jobs: store::runs::jobs(&self.db, id).await?,
        })
    }

    /// Claims up to `n` runnable jobs for this replica, optionally only from one run.
    pub async fn claim(
        &self,
        n: usize,
        only_run: Option<&str>,
    ) -> Result<Vec<JobClaim>, ServiceError> {
        Ok(
            store::runs::claim(&self.db, &self.queue.replica, n, self.queue.lease, only_run)
                .await?,
        )
    }

    /// Extends this replica's leases.
    pub async fn renew(&self) -> Result<u64, ServiceError> {
        Ok(store::runs::renew(&self.db, &self.queue.replica, self.queue.lease).await?)
    }

    /// Puts this replica's running jobs back in the queue (graceful shutdown).
    pub async fn release(&self) -> Result<u64, ServiceError> {
        Ok(store::runs::release(&self.db, &self.queue.replica).await?)
    }

    /// Marks runs whose jobs have all ended as finished, and counts each one's duration
    /// in this process's `opsight_run_duration_seconds` (the replica that closes a run
    /// counts it, so the replicas' histograms add up to the fleet's).
    pub async fn close_finished(&self) -> Result<u64, ServiceError> {
        let closed = store::runs::close_finished(&self.db).await?;
        for (start, end) in &closed {
            if let (Some(a), Some(b)) = (clock::parse_timestamp(start), clock::parse_timestamp(end))
            {
                metrics::observe_run(((b - a).num_milliseconds().max(0) as f64) / 1000.0);
            }
        }
        Ok(closed.len() as u64)
    }

    /// Executes one claimed job: refreshes its card (skipping the agent when nothing
    /// changed, unless the run is forced) and finishes the job. One card's failure is
    /// recorded on its job and never stops the run. The caller logs the outcome, once.
    pub async fn execute(&self, claim: &JobClaim) -> JobOutcome {
        let Some(metric) = Metric::parse(&claim.metric) else {
            let reason = format!("unknown metric '{}'", claim.metric);
            return self
                .finish(claim, JobStatus::Failed, None, Some(reason), None)
                .await;
        };
        let view = if claim.period.is_empty() {
            (claim.compare != Compare::Previous).then(|| {
                let (latest, _) = self.cards.clock().default_view();
                (latest, claim.compare)
            })
        } else {
            match Period::parse(&claim.period) {
                Ok(p) => Some((p, claim.compare)),
                Err(e) => {
                    let reason = format!("the run's period is invalid: {e}");
                    return self
                        .finish(claim, JobStatus::Failed, None, Some(reason), None)
                        .await;
                }
            }
        };
        let opts = RefreshOptions {
            question: None,
            skip_unchanged: !claim.force,
            job: Some(claim),
            view,
        };
        match self.cards.refresh_card(&claim.site, metric, opts).await {
            // Stored, and the job finished, in one transaction.
            Ok(Refreshed::Made(_)) => JobOutcome::Done,
            Ok(Refreshed::Unchanged { insight_id }) => {
                self.finish(claim, JobStatus::Unchanged, Some(insight_id), None, None)
                    .await
            }
            // The failed attempt is stored with the job finished as failed.
            Err(ServiceError::Agent(e)) => JobOutcome::AgentFailed {
                reason: e.to_string(),
                detail: format!("{e:?}"),
            },
            Err(ServiceError::Superseded) => JobOutcome::Superseded,
            Err(
                ServiceError::NotFound(m)
                | ServiceError::BadRequest(m)
                | ServiceError::Conflict(m)
                | ServiceError::Forbidden(m)
                | ServiceError::Busy(m),
            ) => {
                self.finish(claim, JobStatus::Failed, None, Some(m), None)
                    .await
            }
            Err(ServiceError::Internal(e)) => {
                let reason = "internal error; see the server log".to_string();
                let cause = chain(e.as_ref());
                self.finish(claim, JobStatus::Failed, None, Some(reason), Some(cause))
                    .await
            }
        }
    }

    /// Finishes a job this replica holds as failed, with a safe `reason` and the
    /// internal `cause` for the log (the worker uses it for a job whose task crashed).
    pub async fn fail(&self, claim: &JobClaim, reason: &str, cause: Option<String>) -> JobOutcome {
        self.finish(
            claim,
            JobStatus::Failed,
            None,
            Some(reason.to_string()),
            cause,
        )
        .await
    }

    /// Finishes a job this replica still holds.
    async fn finish(
        &self,
        claim: &JobClaim,
        status: JobStatus,
        insight: Option<String>,
        reason: Option<String>,
        cause: Option<String>,
    ) -> JobOutcome {
        match store::runs::finish_job(
            &self.db,
            claim,
            status,
            insight.as_deref(),
            reason.as_deref(),
        )
        .await
        {
            Ok(true) if status == JobStatus::Unchanged => JobOutcome::Unchanged,
            Ok(true) => JobOutcome::Failed {
                reason: reason.unwrap_or_default(),
                cause,
            },
            Ok(false) => JobOutcome::Superseded,
            Err(e) => JobOutcome::Failed {
                reason: "could not record the result".into(),
                cause: Some(match cause {
                    Some(c) => format!("{c}; then {}", chain(&e)),
                    None => chain(&e),
                }),
            },
        }
    }

    /// Whether a run has ended (finished or skipped; a missing run counts as ended).
    pub async fn has_ended(&self, id: &str) -> Result<bool, ServiceError> {
        Ok(store::runs::run(&self.db, id)
            .await?
            .is_none_or(|r| r.status != RunStatus::Running))
    }
}

/// Inserts a run and its jobs inside the caller's transaction.
pub async fn insert(
    conn: &mut Conn,
    run: &NewRun<'_>,
    cards: &[(String, Metric)],
) -> Result<String, ServiceError> {
    Ok(store::runs::insert_run(conn, run, cards).await?)
}
