//! The process's background work: the schedule tick loop, the job worker, and the
//! notification loop (deliveries and alert checks). Every replica runs all three; the
//! database decides who does what (see `app::ssr::schedules`, `app::ssr::runs` and
//! `app::ssr::notify`).
//!
//! Shutdown: on the signal both loops stop taking work; in-flight jobs get
//! [`WorkerOptions::grace`] to finish, and whatever is still running is released back to
//! the queue so another replica picks it up at once instead of waiting for the lease.

use app::ssr::runs::{self, JobOutcome};
use app::ssr::schedules;
use app::ssr::state::AppState;
use app::ssr::{alerts, notify};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The tick loop sleeps at most this long, so schedules created or changed on any replica
/// are seen within a second (one indexed query per second per replica).
pub const TICK_POLL: Duration = Duration::from_secs(1);

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
pub async fn fire_due(state: &AppState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedules::fire_due(state, now).await {
        Ok(report) => report.next_wake,
        Err(e) => {
            tracing::error!(error = %e, "schedule tick failed");
            None
        }
    }
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
    pub fn for_state(state: &AppState) -> WorkerOptions {
        WorkerOptions {
            capacity: state.agents.cards().profile().max_concurrency.max(1),
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

/// Claims and executes jobs until `shutdown` (or, with `only_run`, until that run has
/// finished; the command line uses this). Leases are renewed every third of their length.
pub async fn work(
    state: AppState,
    opts: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
    only_run: Option<String>,
) -> WorkerReport {
    let replica = state.jobs.replica.clone();
    let lease = state.jobs.lease;
    let mut report = WorkerReport::default();
    let mut inflight: JoinSet<(String, JobOutcome)> = JoinSet::new();
    let mut renew_at = tokio::time::Instant::now() + lease / 3;
    let tally = |report: &mut WorkerReport, done: Result<(String, JobOutcome), _>| match done {
        Ok((job, outcome)) => match outcome {
            JobOutcome::Done => report.done += 1,
            JobOutcome::Unchanged => report.unchanged += 1,
            JobOutcome::Failed(e) => {
                report.failed += 1;
                tracing::warn!(job = %job, error = %e, "job failed");
            }
            JobOutcome::Superseded => {
                report.superseded += 1;
                tracing::warn!(job = %job, "job was taken over by another replica");
            }
        },
        Err(e) => tracing::error!(error = %e, "job task ended abnormally"),
    };
    while !*shutdown.borrow() {
        let free = opts.capacity.saturating_sub(inflight.len());
        if free > 0 {
            match runs::claim(&state.db, &replica, free, lease, only_run.as_deref()).await {
                Ok(claims) => {
                    for claim in claims {
                        let state = state.clone();
                        inflight.spawn(async move {
                            let outcome = runs::execute(&state, &claim).await;
                            (claim.id, outcome)
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim jobs"),
            }
        }
        if let Err(e) = runs::close_finished(&state.db).await {
            tracing::warn!(error = %e, "could not close finished runs");
        }
        if let Some(run) = &only_run {
            if inflight.is_empty() {
                match runs::run(&state.db, run).await {
                    Ok(Some(r)) if r.status != "running" => break,
                    Ok(None) => break,
                    _ => {}
                }
            }
        }
        tokio::select! {
            Some(done) = inflight.join_next(), if !inflight.is_empty() => tally(&mut report, done),
            _ = state.jobs.notify.notified() => {}
            _ = tokio::time::sleep(opts.poll) => {}
            _ = shutdown.changed() => {}
        }
        if tokio::time::Instant::now() >= renew_at && !inflight.is_empty() {
            if let Err(e) = runs::renew(&state.db, &replica, lease).await {
                tracing::warn!(error = %e, "could not renew job leases");
            }
            renew_at = tokio::time::Instant::now() + lease / 3;
        }
    }
    if !inflight.is_empty() {
        tracing::info!(
            jobs = inflight.len(),
            grace_secs = opts.grace.as_secs_f64(),
            "finishing in-flight jobs before shutdown"
        );
        let _ = runs::renew(&state.db, &replica, lease).await;
        let deadline = tokio::time::sleep(opts.grace);
        tokio::pin!(deadline);
        // Keep the leases alive however long the grace is.
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                done = inflight.join_next() => match done {
                    Some(done) => tally(&mut report, done),
                    None => break,
                },
                _ = renew.tick() => {
                    let _ = runs::renew(&state.db, &replica, lease).await;
                }
                _ = &mut deadline => break,
            }
        }
        inflight.abort_all();
        while inflight.join_next().await.is_some() {}
    }
    match runs::release(&state.db, &replica).await {
        Ok(n) => {
            report.released = n;
            if n > 0 {
                tracing::info!(jobs = n, "released unfinished jobs to other replicas");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not release jobs; they return after their lease")
        }
    }
    let _ = runs::close_finished(&state.db).await;
    report
}

/// The background work of `opsight serve`: the tick loop and the worker. Await the
/// returned handle after setting `shutdown` to let the worker finish or release its jobs.
pub fn spawn(
    state: AppState,
    opts: WorkerOptions,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<WorkerReport> {
    let ticks = state.clone();
    tokio::spawn(tick_loop(
        Clock::System,
        TICK_POLL,
        move |now| {
            let state = ticks.clone();
            async move { fire_due(&state, now).await }
        },
        shutdown.clone(),
    ));
    tokio::spawn(notifications(state.clone(), shutdown.clone()));
    tokio::spawn(work(state, opts, shutdown, None))
}

/// How often due deliveries are looked for when nothing wakes the loop (deliveries queued
/// by other replicas, retries coming due).
pub const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// Sends due deliveries (at once when this replica queues one) and observes alerts every
/// `notifier.alert_every`, until shutdown. Errors are logged and the loop goes on.
pub async fn notifications(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut last_check = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Some(every) = state.notifier.alert_every {
            if last_check.elapsed() >= every {
                last_check = tokio::time::Instant::now();
                if let Err(e) = alerts::evaluate(&state).await {
                    tracing::error!(error = ?e, "alert check failed");
                }
            }
        }
        match notify::deliver_due(&state, 20).await {
            // More may be due: go round again at once.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = ?e, "delivery pass failed"),
        }
        tokio::select! {
            _ = state.notifier.wake.notified() => {}
            _ = tokio::time::sleep(DELIVERY_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}
