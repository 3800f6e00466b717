//! Refresh-run benchmark (`cargo bench -p server --bench runs`, or `.ci/bench`).
//!
//! 1,000 cards (199 DCs plus the network, 5 KPIs each, ~180k order lines) against a stub
//! agent with a fixed 200 ms latency, executed by the real job machinery (claims, leases,
//! evidence packs, unchanged detection, fenced insight writes):
//!
//! - SQLite, one replica at concurrency 16: wall time against the ideal
//!   N × latency / concurrency, then the same run on unchanged data (agent calls, wall).
//! - The same cards one at a time (concurrency 1): the serial baseline.
//! - PostgreSQL, one replica, then two replicas (two worker pools with their own database
//!   pools and agent clients) sharing the run, then two replicas on unchanged data.
//!
//! OPSIGHT_BENCH_SERIAL limits the serial baseline to that many cards (default 1000);
//! OPSIGHT_TEST_PG_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres).

#[path = "../tests/it/common/stub.rs"]
mod stub;

use app::domain::evidence::LineFact;
use app::domain::kpi::Metric;
use app::domain::period::parse_date;
use app::domain::scope::Scope;
use app::domain::status::RunOrigin;
use app::domain::tally::OrderLine;
use app::ssr::agent::{AgentKind, AgentProfile};
use app::ssr::data::import::LineWriter;
use app::ssr::state::AppState;
use app::ssr::store::facts::Site;
use app::ssr::store::{self, Db};
use chrono::{Duration as Days, NaiveDate};
use server::scheduler::{work, WorkerOptions};
use std::time::{Duration, Instant};
use stub::StubAgent;

const AS_OF: &str = "2026-11-21";
const SITES: usize = 199;
const LATENCY: Duration = Duration::from_millis(200);
const CONCURRENCY: usize = 16;

/// A small deterministic generator (no dependency needed for a benchmark's data).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 199 sites × 13 weeks × 10 lines a day.
async fn seed(pool: &Db, as_of: NaiveDate) -> anyhow::Result<usize> {
    let mut writer = LineWriter::begin(pool, "bench").await?;
    let mut rng = Lcg(7);
    let carriers = [
        "Coastal Haul",
        "FastFreight",
        "Prairie Lines",
        "Summit Express",
    ];
    let customers = ["MegaMart", "FreshCo", "ValueHub", "CornerStore"];
    let categories = ["Beverages", "Dairy", "Frozen", "Household"];
    let mut lines = Vec::new();
    for s in 0..SITES {
        let code = format!("S{s:03}");
        writer
            .upsert_sites(&[Site {
                code: code.clone(),
                name: format!("Site {s:03} DC"),
                region: ["North", "South", "East", "West"][s % 4].into(),
            }])
            .await?;
        for day in 1..=91i64 {
            let due = as_of - Days::days(day);
            for n in 0..10 {
                let ordered = 1 + rng.below(20) as i64;
                let short = rng.below(100) < 5;
                let late = rng.below(100) < 8 + (s % 5) as u64;
                lines.push(OrderLine {
                    order_id: format!("{code}-{day}-{n}"),
                    line_no: 1,
                    fact: LineFact {
                        site: code.clone(),
                        customer: customers[rng.below(4) as usize].into(),
                        carrier: carriers[rng.below(4) as usize].into(),
                        sku: format!("SKU-{}", rng.below(50)),
                        category: categories[rng.below(4) as usize].into(),
                        ordered_qty: ordered,
                        delivered_qty: if short { ordered / 2 } else { ordered },
                        due_date: due,
                        delivered_date: Some(due + Days::days(if late { 2 } else { 0 })),
                        reason_code: match (late, short) {
                            (true, _) => Some("carrier_late".into()),
                            (_, true) => Some("short_pick".into()),
                            _ => None,
                        },
                        attrs: Vec::new(),
                    },
                    site_name: None,
                    site_region: None,
                });
            }
        }
    }
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        writer.push(i as u64 + 1, line).await?;
    }
    writer.finish().await?;
    Ok(count)
}

/// A replica's state (its background loops never run: the bench drives the workers).
async fn state(pool: Db, agent_url: &str, as_of: NaiveDate, concurrency: usize) -> AppState {
    let mut profile = AgentProfile::new("stub", AgentKind::MlflowServe, agent_url);
    profile.max_concurrency = concurrency;
    profile.timeout = Duration::from_secs(30);
    let mut config = server::config::Config::from_lookup(
        |k| (k == "OPSIGHT_ADDR").then(|| "127.0.0.1:0".to_string()),
        |_| None,
    )
    .unwrap();
    config.as_of = Some(as_of);
    config.cards_agent = "stub".into();
    config.questions_agent = "stub".into();
    config.agents = vec![profile];
    server::Application::build_with(config, pool)
        .await
        .unwrap()
        .state()
        .clone()
}

struct Outcome {
    wall: Duration,
    run: app::dto::RunView,
    calls: usize,
    by_replica: Vec<usize>,
}

/// Starts a run of `scope` and lets every replica work on it until it has finished.
async fn run(
    replicas: &[AppState],
    stub: &StubAgent,
    scope: &Scope,
    force: bool,
    capacity: usize,
) -> anyhow::Result<Outcome> {
    let calls_before = stub.call_count();
    let started = Instant::now();
    let run = replicas[0]
        .runs()
        .start_scope(scope, force, RunOrigin::Cli, &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_keep, never) = tokio::sync::watch::channel(false);
    let opts = WorkerOptions {
        capacity,
        poll: Duration::from_millis(100),
        grace: Duration::from_secs(1),
    };
    let workers: Vec<_> = replicas
        .iter()
        .map(|s| {
            tokio::spawn(work(
                s.runs().clone(),
                opts,
                never.clone(),
                Some(run.id.clone()),
            ))
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let wall = started.elapsed();
    let detail = replicas[0]
        .runs()
        .detail(&run.id, &app::domain::access::Reach::All)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let by_replica = replicas
        .iter()
        .map(|s| {
            detail
                .jobs
                .iter()
                .filter(|j| j.claimed_by.as_deref() == Some(&*s.runs().queue().replica))
                .count()
        })
        .collect();
    Ok(Outcome {
        wall,
        run: detail.run,
        calls: stub.call_count() - calls_before,
        by_replica,
    })
}

fn report(label: &str, o: &Outcome, ideal: Option<Duration>) {
    let ideal = ideal
        .map(|i| {
            format!(
                ", ideal {:.2} s ({:.0}% of ideal)",
                i.as_secs_f64(),
                i.as_secs_f64() / o.wall.as_secs_f64() * 100.0
            )
        })
        .unwrap_or_default();
    println!(
        "{label:<52} {:>4} cards: {:>7.2} s wall{ideal}; {} agent calls; done {} unchanged {} failed {}; jobs per replica {:?}",
        o.run.total,
        o.wall.as_secs_f64(),
        o.calls,
        o.run.done,
        o.run.unchanged,
        o.run.failed,
        o.by_replica
    );
}

fn ideal(cards: i64, concurrency: usize) -> Duration {
    LATENCY * cards as u32 / concurrency as u32
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let as_of = parse_date(AS_OF).unwrap();
    let stub = StubAgent::with_latency(LATENCY);
    let agent = stub.serve().await;
    let dir = std::env::temp_dir().join(format!("opsight-bench-runs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    println!(
        "stub agent latency {} ms; concurrency {CONCURRENCY} per replica",
        LATENCY.as_millis()
    );
    // SQLite.
    let sqlite = store::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?;
    let t = Instant::now();
    let lines = seed(&sqlite, as_of).await?;
    println!(
        "seeded {lines} lines for {SITES} sites in {:.1} s (SQLite)",
        t.elapsed().as_secs_f64()
    );
    let one = [state(sqlite.clone(), &agent, as_of, CONCURRENCY).await];
    let o = run(&one, &stub, &Scope::All, false, CONCURRENCY).await?;
    report(
        "SQLite, 1 replica, first run",
        &o,
        Some(ideal(o.run.total, CONCURRENCY)),
    );
    let o = run(&one, &stub, &Scope::All, false, CONCURRENCY).await?;
    report("SQLite, 1 replica, unchanged data", &o, None);
    let serial: usize = std::env::var("OPSIGHT_BENCH_SERIAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let serial_state = [state(sqlite.clone(), &agent, as_of, 1).await];
    let scope = if serial >= 1000 {
        Scope::All
    } else {
        // A subset: the first sites' cards.
        Scope::Metric(Metric::OTIF)
    };
    let o = run(&serial_state, &stub, &scope, true, 1).await?;
    report(
        "SQLite, one card at a time (serial baseline)",
        &o,
        Some(ideal(o.run.total, 1)),
    );
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL.
    let admin_url = std::env::var("OPSIGHT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url).await?;
    let name = format!("opsight_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(&admin_url[..], |(b, _)| b)
    );
    let result: anyhow::Result<()> = async {
        let a = store::connect(&url).await?;
        let t = Instant::now();
        seed(&a, as_of).await?;
        println!(
            "seeded {lines} lines in {:.1} s (PostgreSQL)",
            t.elapsed().as_secs_f64()
        );
        let b = store::connect(&url).await?;
        let one = [state(a.clone(), &agent, as_of, CONCURRENCY).await];
        let o = run(&one, &stub, &Scope::All, false, CONCURRENCY).await?;
        report(
            "PostgreSQL, 1 replica, first run",
            &o,
            Some(ideal(o.run.total, CONCURRENCY)),
        );
        let two = [
            state(a.clone(), &agent, as_of, CONCURRENCY).await,
            state(b.clone(), &agent, as_of, CONCURRENCY).await,
        ];
        let o = run(&two, &stub, &Scope::All, true, CONCURRENCY).await?;
        report(
            "PostgreSQL, 2 replicas, forced run",
            &o,
            Some(ideal(o.run.total, 2 * CONCURRENCY)),
        );
        let o = run(&two, &stub, &Scope::All, false, CONCURRENCY).await?;
        report("PostgreSQL, 2 replicas, unchanged data", &o, None);
        a.close().await;
        b.close().await;
        Ok(())
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    result
}
