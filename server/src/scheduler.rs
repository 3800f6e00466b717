//! The process's background work: the schedule tick loop, the job worker, the
//! notification loop (deliveries and alert checks), the agents' health checks and the data
//! sources' scheduled syncs. Every replica runs all five; the database decides who does what (see
//! `app::ssr::runs::schedules`, `app::ssr::runs` and `app::ssr::notify`).
//! [`crate::Application`] supervises them.
//!
//! Shutdown: on the signal the loops stop taking work; in-flight jobs get
//! [`WorkerOptions::grace`] to finish, and whatever is still running is released back to
//! the queue so another replica picks it up at once instead of waiting for the lease.

use app::ssr::agent::Agents;
use app::ssr::error::chain;
use app::ssr::notify::Notify;
use app::ssr::runs::{JobOutcome, Runs, Schedules};
use app::ssr::sources::Sources;
use app::ssr::store::runs::JobClaim;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// The tick loop sleeps at most this long, so schedules created or changed on any replica
/// are seen within a second (one indexed query per second per replica).
pub const TICK_POLL: Duration = Duration::from_secs(1);

/// How often due deliveries are looked for when nothing wakes the loop (deliveries queued
/// by other replicas, retries coming due).
pub const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// The sources' tick loop sleeps at most this long (their schedules are per minute).
pub const SOURCE_POLL: Duration = Duration::from_secs(5);

/// How often agents are health-checked (and aliases resolved) in the background.
pub const AGENT_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Where the tick loop reads the time. `Tokio` follows tokio's clock from a fixed UTC
/// start, so tests can pause and advance it.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Tokio {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock reading `start` now and advancing with tokio's (possibly paused) time.
    pub fn tokio_from(start: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            start,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, at } => {
                *start + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }
}

/// Calls `fire(now)` whenever a tick may be due and sleeps until the next one it reports
/// (at most `max_sleep`, so changes made elsewhere are seen), until `shutdown` turns true.
/// `fire` returns the next tick, or `None` when no schedule is active.
pub async fn tick_loop<F, Fut>(
    clock: Clock,
    max_sleep: Duration,
    mut fire: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = Option<DateTime<Utc>>>,
{
    while !*shutdown.borrow() {
        let now = clock.now();
        let next = fire(now).await;
        let now = clock.now();
        let wait = next
            .map(|n| (n - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(max_sleep)
            .min(max_sleep);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The production tick: fire every due schedule of the database.
pub async fn fire_due(schedules: &Schedules, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedules.fire_due(now).await {
        Ok(report) => report.next_wake,
        Err(e) => {
            tracing::error!(error = %chain(&e), "schedule tick failed");
            None
        }
    }
}

/// The schedule tick loop on the system clock.
pub async fn ticks(schedules: Schedules, shutdown: watch::Receiver<bool>) {
    tick_loop(
        Clock::System,
        TICK_POLL,
        move |now| {
            let schedules = schedules.clone();
            async move { fire_due(&schedules, now).await }
        },
        shutdown,
    )
    .await
}

/// The data sources' scheduled syncs: each due tick claimed by one replica, which syncs
/// the source in the background.
pub async fn source_ticks(sources: Sources, shutdown: watch::Receiver<bool>) {
    tick_loop(
        Clock::System,
        SOURCE_POLL,
        move |now| {
            let sources = sources.clone();
            async move {
                match sources.fire_due(now).await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(error = %chain(&e), "source tick failed");
                        None
                    }
                }
            }
        },
        shutdown,
    )
    .await
}

/// How this replica executes jobs.
#[derive(Clone, Copy, Debug)]
pub struct WorkerOptions {
    /// Jobs executed at once by this replica (the cards agent's concurrency by default).
    pub capacity: usize,
    /// How often the queue is polled when idle (other replicas' runs are found this way).
    pub poll: Duration,
    /// How long in-flight jobs may take to finish at shutdown before they are released.
    pub grace: Duration,
}

impl WorkerOptions {
    pub fn for_agents(agents: &Agents) -> WorkerOptions {
        WorkerOptions {
            capacity: agents.cards().profile().max_concurrency.max(1),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(10),
        }
    }
}

/// Counts of what a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub done: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub superseded: usize,
    /// Jobs put back in the queue at shutdown.
    pub released: u64,
}

/// Logs a job's outcome (once: the job's one log line, in its span) and counts it.
fn tally(report: &mut WorkerReport, outcome: JobOutcome) {
    match outcome {
        JobOutcome::Done => report.done += 1,
        JobOutcome::Unchanged => report.unchanged += 1,
        JobOutcome::Failed { reason, cause } => {
            report.failed += 1;
            match cause {
                Some(cause) => tracing::error!(error = %cause, reason = %reason, "job failed"),
                None => tracing::warn!(reason = %reason, "job failed"),
            }
        }
        JobOutcome::AgentFailed { reason, detail } => {
            report.failed += 1;
            tracing::warn!(reason = %reason, detail = %detail, "job failed: the agent call failed");
        }
        JobOutcome::Superseded => {
            report.superseded += 1;
            tracing::warn!("job was taken over by another replica; its result was discarded");
        }
    }
}

/// The jobs this worker runs, by task, so a job whose task panicked can be finished as
/// failed (else this replica would renew its lease forever).
struct Inflight {
    tasks: JoinSet<JobOutcome>,
    claims: HashMap<tokio::task::Id, (JobClaim, tracing::Span)>,
}

impl Inflight {
    fn spawn(&mut self, runs: &Runs, claim: JobClaim) {
        let span = tracing::info_span!("job", run = %claim.run_id, job = %claim.id, site = %claim.site, metric = %claim.metric);
        let task_runs = runs.clone();
        let task_claim = claim.clone();
        let handle = self
            .tasks
            .spawn(async move { task_runs.execute(&task_claim).await }.instrument(span.clone()));
        self.claims.insert(handle.id(), (claim, span));
    }

    /// Counts a finished task; a panicked one is finished as failed.
    async fn settle(
        &mut self,
        runs: &Runs,
        report: &mut WorkerReport,
        done: Result<(tokio::task::Id, JobOutcome), tokio::task::JoinError>,
    ) {
        match done {
            Ok((id, outcome)) => {
                let span = self.claims.remove(&id).map(|(_, s)| s);
                let _entered = span.as_ref().map(|s| s.enter());
                tally(report, outcome);
            }
            Err(e) => {
                let Some((claim, span)) = self.claims.remove(&e.id()) else {
                    return;
                };
                let why = if e.is_panic() {
                    app::ssr::tasks::panic_message(e.into_panic().as_ref())
                } else {
                    e.to_string()
                };
                let outcome = runs
                    .fail(&claim, "the job crashed; see the server log", Some(why))
                    .instrument(span.clone())
                    .await;
                let _entered = span.enter();
                tally(report, outcome);
            }
        }
    }
}

/// Claims and executes jobs until `shutdown` (or, with `only_run`, until that run has
/// finished; the command line uses this). Leases are renewed every third of their length.
pub async fn work(
    runs: Runs,
    opts: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
    only_run: Option<String>,
) -> WorkerReport {
    let lease = runs.queue().lease;
    let mut report = WorkerReport::default();
    let mut inflight = Inflight {
        tasks: JoinSet::new(),
        claims: HashMap::new(),
    };
    let mut renew_at = tokio::time::Instant::now() + lease / 3;
    while !*shutdown.borrow() {
        let free = opts.capacity.saturating_sub(inflight.tasks.len());
        if free > 0 {
            match runs.claim(free, only_run.as_deref()).await {
                Ok(claims) => {
                    for claim in claims {
                        inflight.spawn(&runs, claim);
                    }
                }
                Err(e) => tracing::warn!(error = %chain(&e), "could not claim jobs"),
            }
        }
        if let Err(e) = runs.close_finished().await {
            tracing::warn!(error = %chain(&e), "could not close finished runs");
        }
        if let Some(run) = &only_run {
            if inflight.tasks.is_empty() && runs.has_ended(run).await.unwrap_or(false) {
                break;
            }
        }
        tokio::select! {
            Some(done) = inflight.tasks.join_next_with_id(), if !inflight.tasks.is_empty() => {
                inflight.settle(&runs, &mut report, done).await;
            }
            _ = runs.queue().notify.notified() => {}
            _ = tokio::time::sleep(opts.poll) => {}
            _ = shutdown.changed() => {}
        }
        if tokio::time::Instant::now() >= renew_at && !inflight.tasks.is_empty() {
            if let Err(e) = runs.renew().await {
                tracing::warn!(error = %chain(&e), "could not renew job leases");
            }
            renew_at = tokio::time::Instant::now() + lease / 3;
        }
    }
    if !inflight.tasks.is_empty() {
        tracing::info!(
            jobs = inflight.tasks.len(),
            grace_secs = opts.grace.as_secs_f64(),
            "finishing in-flight jobs before shutdown"
        );
        let _ = runs.renew().await;
        let deadline = tokio::time::sleep(opts.grace);
        tokio::pin!(deadline);
        // Keep the leases alive however long the grace is.
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                done = inflight.tasks.join_next_with_id() => match done {
                    Some(done) => inflight.settle(&runs, &mut report, done).await,
                    None => break,
                },
                _ = renew.tick() => {
                    let _ = runs.renew().await;
                }
                _ = &mut deadline => break,
            }
        }
        inflight.tasks.abort_all();
        while inflight.tasks.join_next().await.is_some() {}
    }
    match runs.release().await {
        Ok(n) => {
            report.released = n;
            if n > 0 {
                tracing::info!(jobs = n, "released unfinished jobs to other replicas");
            }
        }
        Err(e) => {
            tracing::error!(error = %chain(&e), "could not release jobs; they return after their lease")
        }
    }
    let _ = runs.close_finished().await;
    report
}

/// Sends due deliveries (at once when this replica queues one) and observes alerts every
/// `alert_every`, until shutdown. Errors are logged and the loop goes on.
pub async fn notifications(notify: Notify, mut shutdown: watch::Receiver<bool>) {
    let mut last_check = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Some(every) = notify.notifier().alert_every {
            if last_check.elapsed() >= every {
                last_check = tokio::time::Instant::now();
                if let Err(e) = notify.check_alerts().await {
                    tracing::error!(error = %chain(&e), "alert check failed");
                }
            }
        }
        match notify.deliver_due(20).await {
            // More may be due: go round again at once.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %chain(&e), "delivery pass failed"),
        }
        tokio::select! {
            _ = notify.woken() => {}
            _ = tokio::time::sleep(DELIVERY_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Checks every agent now and then every [`AGENT_CHECK_EVERY`], until shutdown.
pub async fn agent_checks(agents: Agents, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(AGENT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => app::ssr::ops::check_all(&agents).await,
            _ = shutdown.changed() => return,
        }
    }
}
