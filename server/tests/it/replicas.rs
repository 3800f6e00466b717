//! Several `opsight serve` processes on one PostgreSQL database (always PostgreSQL: this
//! is what replicas share), with a stub agent in the test process counting calls:
//!
//! - one schedule ticking every 2 s, two replicas: every tick makes exactly one run, and
//!   every job one insight;
//! - `kill -9` of a replica mid-run: its claimed jobs are taken over after the lease and
//!   every job completes exactly once;
//! - SIGTERM with no grace: the replica releases its jobs, which the other replica finishes
//!   long before their lease would have expired.
//!
//! Opt out on a machine without PostgreSQL with OPSIGHT_SKIP_POSTGRES=1 (README, Tests).
//! The test names start with `multi_process_` so `.ci/test` can leave them out of its
//! SQLite pass (they run in its PostgreSQL pass).

use crate::common::serve::Serve;
use crate::common::stub::StubAgent;
use crate::common::{pg_test_db, seed, TestDb};
use app::dto::{RunDetail, RunView, ScheduleView};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

fn skipped() -> bool {
    if std::env::var("OPSIGHT_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("OPSIGHT_SKIP_POSTGRES=1: MULTI-REPLICA TEST NOT RUN");
        return true;
    }
    false
}

/// An `opsight serve` replica on `db_url` whose cards agent is the stub at `agent_url`.
fn replica(db_url: &str, agent_url: &str, env: &[(&str, &str)]) -> Serve {
    let mut all = vec![
        ("AGENT_URL", agent_url),
        ("AGENT_KIND", "mlflow-serve"),
        ("AGENT_TIMEOUT_SECS", "10"),
    ];
    all.extend_from_slice(env);
    Serve::spawn(db_url, &all)
}

async fn seeded_db() -> TestDb {
    let tdb = pg_test_db().await;
    seed(&tdb.db, 3000).await;
    tdb
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn detail(http: &reqwest::Client, base: &str, id: &str) -> RunDetail {
    http.get(format!("{base}/api/v1/runs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_finished(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    within: Duration,
) -> RunDetail {
    let deadline = Instant::now() + within;
    loop {
        let d = detail(http, base, id).await;
        if d.run.status != "running" {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "run not finished in {within:?}: {:?}",
            d.run
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a run of every card (65) through `base`.
async fn run_all(http: &reqwest::Client, base: &str) -> RunView {
    let run: RunView = http
        .post(format!("{base}/api/v1/runs"))
        .json(&serde_json::json!({"scope": "all"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run.total, 65);
    run
}

/// Waits until `a` holds running jobs of the run and at least `finished` jobs have ended.
async fn wait_mid_run(http: &reqwest::Client, base: &str, run: &str, a: &Serve, finished: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = detail(http, base, run).await;
        let holding = d
            .jobs
            .iter()
            .any(|j| j.status == "running" && a.holds(j.claimed_by.as_deref()));
        if holding && d.run.finished_jobs() >= finished {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "A never got mid-run: {:?}",
            d.run
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every job has exactly one insight, and only jobs that made one point at theirs.
async fn assert_one_insight_per_job(tdb: &TestDb, done_jobs: usize) {
    let with_job: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM insights WHERE job_id IS NOT NULL",
    )
    .fetch_one(&tdb.db)
    .await
    .unwrap();
    assert_eq!(with_job as usize, done_jobs, "one insight per executed job");
    let doubles: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT job_id FROM insights WHERE job_id IS NOT NULL \
         GROUP BY job_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&tdb.db)
    .await
    .unwrap();
    assert_eq!(doubles, 0, "no job produced two insights");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_process_two_replicas_one_schedule_every_tick_runs_exactly_once() {
    if skipped() {
        return;
    }
    let tdb = seeded_db().await;
    let stub = StubAgent::with_latency(Duration::from_millis(50));
    let agent = stub.serve().await;
    let a = replica(&tdb.url, &agent, &[]);
    let b = replica(&tdb.url, &agent, &[]);
    let http = client();
    // Every 2 seconds (6 fields: seconds first), Dallas' 5 cards.
    let r = http
        .post(format!("{}/api/v1/schedules", a.base))
        .json(
            &serde_json::json!({"name": "fast", "cron": "*/2 * * * * *", "timezone": "UTC",
                                  "scope": "site", "scope_value": "DAL", "catch_up": "once"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: ScheduleView = r.json().await.unwrap();
    let created: DateTime<Utc> = s.created_at.parse().unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    // Pause through the other replica.
    let mut input = s.input.clone();
    input.enabled = false;
    let r = http
        .put(format!("{}/api/v1/schedules/{}", b.base, s.id))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let runs: Vec<RunView> = http
        .get(format!("{}/api/v1/runs?limit=500", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ticks: Vec<DateTime<Utc>> = runs
        .iter()
        .map(|r| r.scheduled_for.as_deref().unwrap().parse().unwrap())
        .collect();
    ticks.sort();
    let crontab = app::ssr::runs::crontab::Crontab::parse("*/2 * * * * *", "UTC").unwrap();
    let expected: Vec<DateTime<Utc>> = crontab
        .upcoming(created, 100)
        .into_iter()
        .take_while(|t| *t <= *ticks.last().unwrap())
        .collect();
    assert!(ticks.len() >= 4, "{ticks:?}");
    assert_eq!(
        ticks, expected,
        "every tick from creation on, once, no gaps"
    );
    assert!(
        paused_at - *ticks.last().unwrap() <= chrono::Duration::seconds(3),
        "ticks kept coming until the pause: last {:?}, paused {paused_at}",
        ticks.last()
    );
    assert!(runs
        .iter()
        .all(|r| r.note.is_none() && r.origin == "schedule"));

    let mut done = 0;
    let mut claimed_by = std::collections::BTreeSet::new();
    for run in &runs {
        let d = wait_finished(&http, &a.base, &run.id, Duration::from_secs(30)).await;
        assert_eq!(d.run.total, 5);
        assert_eq!(d.run.done + d.run.unchanged, 5, "{:?}", d.run);
        done += d.run.done as usize;
        claimed_by.extend(d.jobs.iter().filter_map(|j| j.claimed_by.clone()));
    }
    assert_eq!(
        done, 5,
        "the first run refreshed the 5 cards, the rest were unchanged"
    );
    assert_eq!(stub.call_count(), 5, "no agent call for unchanged cards");
    assert_one_insight_per_job(&tdb, done).await;
    // Both processes took part (ticks or jobs), and neither logged an error.
    for r in [&a, &b] {
        let log = r.log();
        assert!(!log.contains("ERROR"), "{log}");
    }
    eprintln!(
        "{} ticks, {} runs, jobs claimed by {:?}",
        ticks.len(),
        runs.len(),
        claimed_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_process_a_replica_killed_mid_run_loses_nothing_and_no_job_runs_twice() {
    if skipped() {
        return;
    }
    let tdb = seeded_db().await;
    let stub = StubAgent::with_latency(Duration::from_millis(300));
    let agent = stub.serve().await;
    let env = [
        ("OPSIGHT_JOB_LEASE_SECS", "3"),
        ("OPSIGHT_JOB_CONCURRENCY", "4"),
    ];
    let mut a = replica(&tdb.url, &agent, &env);
    let b = replica(&tdb.url, &agent, &env);
    let http = client();
    let run = run_all(&http, &a.base).await;
    // Wait until A is mid-run: it holds running jobs and some jobs are done.
    wait_mid_run(&http, &b.base, &run.id, &a, 8).await;
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let killed_at = Instant::now();
    let at_kill = detail(&http, &b.base, &run.id).await;
    let orphaned: Vec<String> = at_kill
        .jobs
        .iter()
        .filter(|j| j.status == "running" && a.holds(j.claimed_by.as_deref()))
        .map(|j| j.id.clone())
        .collect();
    assert!(!orphaned.is_empty());

    let d = wait_finished(&http, &b.base, &run.id, Duration::from_secs(60)).await;
    let took = killed_at.elapsed();
    assert_eq!(
        (d.run.done, d.run.failed, d.run.unchanged),
        (65, 0, 0),
        "{:?}",
        d.run
    );
    for id in &orphaned {
        let j = d.jobs.iter().find(|j| &j.id == id).unwrap();
        assert_eq!(j.attempts, 2, "taken over once: {j:?}");
        assert!(
            !a.holds(j.claimed_by.as_deref()),
            "finished by the survivor: {j:?}"
        );
    }
    assert_one_insight_per_job(&tdb, 65).await;
    let calls = stub.call_count();
    assert!(
        (65..=65 + orphaned.len()).contains(&calls),
        "each card called once, plus at most the calls lost with A: {calls}"
    );
    eprintln!(
        "killed A holding {} jobs; B finished the run {:.1} s later; {calls} agent calls",
        orphaned.len(),
        took.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_process_sigterm_releases_claimed_jobs_to_the_other_replica_at_once() {
    if skipped() {
        return;
    }
    let tdb = seeded_db().await;
    let stub = StubAgent::with_latency(Duration::from_millis(500));
    let agent = stub.serve().await;
    // A lease far longer than the test: only a release explains a quick takeover.
    let env = [
        ("OPSIGHT_JOB_LEASE_SECS", "300"),
        ("OPSIGHT_JOB_CONCURRENCY", "4"),
        ("OPSIGHT_SHUTDOWN_GRACE_SECS", "0"),
    ];
    let mut a = replica(&tdb.url, &agent, &env);
    let b = replica(&tdb.url, &agent, &env);
    let http = client();
    let run = run_all(&http, &a.base).await;
    wait_mid_run(&http, &b.base, &run.id, &a, 0).await;
    // SAFETY: signalling our own child process by pid.
    #[allow(unsafe_code)]
    let signalled = unsafe { libc::kill(a.pid() as i32, libc::SIGTERM) };
    assert_eq!(signalled, 0);
    let status = a.child.wait().unwrap();
    assert!(status.success(), "A shut down cleanly: {status:?}");
    assert!(
        a.log_shows("released unfinished jobs", Duration::from_secs(5)),
        "{}",
        a.log()
    );
    let d = wait_finished(&http, &b.base, &run.id, Duration::from_secs(60)).await;
    assert_eq!((d.run.done, d.run.failed), (65, 0), "{:?}", d.run);
    assert!(
        d.jobs.iter().any(|j| j.attempts == 2),
        "some jobs were released by A and finished by B"
    );
    assert!(d
        .jobs
        .iter()
        .all(|j| !a.holds(j.claimed_by.as_deref()) || j.attempts == 1));
    assert_one_insight_per_job(&tdb, 65).await;
}
