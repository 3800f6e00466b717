//! Opsight's benchmarks (`cargo bench -p server --bench opsight`, or `.ci/bench`).
//!
//! Measures, on a fresh SQLite database in a temporary folder:
//! 1. `seed-demo` with 500k lines: time and database size;
//! 2. CSV import throughput (100k lines, one transaction, roll-up included);
//! 3. one evidence pack (a DC and the network view): median and p90 of repeated builds
//!    (anomaly verdict included), and anomaly detection over every series of the network;
//! 4. HTTP latency, p50/p99 over 500 requests at concurrency 8, for `/api/v1/dashboard`,
//!    the overview page `/` and a static file, against the whole router on a loopback
//!    socket. The load generator runs in the same process on its own runtime, so client
//!    and server share the machine's cores, as they would with any local load tool.
//!
//! `OPSIGHT_BENCH_LINES` overrides the demo size.

#[path = "shared/mod.rs"]
mod shared;

use app::domain::card::Daily;
use app::domain::kpi::Metric;
use app::ssr::cards::evidence;
use app::ssr::data::{import, seed};
use app::ssr::store::{self, facts as db};
use shared::{ms, percentile};
use std::time::Instant;

const AS_OF: &str = "2026-11-21";

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("opsight-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(run(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &std::path::Path) -> anyhow::Result<()> {
    let lines: usize = std::env::var("OPSIGHT_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let as_of = app::domain::period::parse_date(AS_OF).unwrap();
    let path = dir.join("bench.db");
    let pool = store::connect(&format!("sqlite:{}", path.display())).await?;
    let rules = store::rules::load(&pool).await?;

    // 1. seed-demo
    let started = Instant::now();
    let report = seed::seed_demo(
        &pool,
        seed::SeedOptions {
            lines,
            as_of,
            seed: 7,
        },
        false,
    )
    .await?;
    let seed_time = started.elapsed();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "seed-demo: {} lines in {:.1} s ({:.0} lines/s); database {:.1} MB",
        report.lines,
        seed_time.as_secs_f64(),
        report.lines as f64 / seed_time.as_secs_f64(),
        size as f64 / 1e6
    );

    // 2. CSV import: 100k new lines (the demo generator with another seed and order ids).
    let mut csv = String::from("order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code\n");
    let extra = seed::generate(seed::SeedOptions {
        lines: 100_000,
        as_of,
        seed: 99,
    });
    for o in &extra {
        let l = &o.fact;
        csv.push_str(&format!(
            "IMP-{},{},{},{},{},{},{},{},{},{},{},{}\n",
            o.order_id,
            o.line_no,
            l.site,
            l.customer,
            l.carrier,
            l.sku,
            l.category,
            l.ordered_qty,
            l.delivered_qty,
            l.due_date,
            l.delivered_date.map(|d| d.to_string()).unwrap_or_default(),
            l.reason_code.clone().unwrap_or_default()
        ));
    }
    let started = Instant::now();
    let r = import::import_orders(&pool, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = started.elapsed();
    println!(
        "CSV import: {} lines ({:.1} MB) in {:.2} s = {:.0} lines/s",
        r.lines,
        csv.len() as f64 / 1e6,
        t.as_secs_f64(),
        r.lines as f64 / t.as_secs_f64()
    );
    // Re-import of the same file: every line is an update.
    let started = Instant::now();
    import::import_orders(&pool, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = started.elapsed();
    println!(
        "CSV re-import (updates): {} lines in {:.2} s = {:.0} lines/s",
        r.lines,
        t.as_secs_f64(),
        r.lines as f64 / t.as_secs_f64()
    );

    // 3. Evidence packs.
    for site in ["DAL", "network"] {
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            let pack = evidence::load(&pool, &rules, site, Metric::OTIF, as_of).await?;
            std::hint::black_box(evidence::hash(&pack));
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "evidence pack ({site}, otif; load + analysis + hash): median {}, p90 {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9))
        );
    }

    // 3a. What issue 5 added to each pack, measured in the same run as the packs above
    // (figures vary between runs on a shared machine): the site's daily roll-up and the
    // anomaly verdict. The data-quality checks are arithmetic on counts the pack has anyway.
    for site in ["DAL", "network"] {
        let week = app::domain::period::Week::latest_complete(as_of);
        let filter = (site != "network").then_some(site);
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            let (from, to) = app::domain::anomaly::span(week);
            let mut daily = Daily::new();
            for (_, day, c) in db::daily_counts(&pool, filter, from, to).await? {
                daily.entry(day).or_default().add(&c);
            }
            let weekly = vec![app::domain::kpi::KpiCounts::default(); 12];
            std::hint::black_box(app::domain::anomaly::of_counts(
                Metric::OTIF,
                week,
                &weekly,
                &daily,
                &rules,
            ));
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "  of which the anomaly verdict ({site}: daily roll-up + robust z): median {}",
            ms(percentile(&times, 0.5))
        );
    }

    // 3b. Anomaly detection over every series of the demo network (sites + network × 5
    // KPIs): the daily roll-up read once, then the robust z for each week and day.
    {
        use app::domain::anomaly::{of_counts as anomaly_of, span as anomaly_span};
        let week = app::domain::period::Week::latest_complete(as_of);
        let span = week.trailing(12);
        let mut read_times = Vec::new();
        let mut detect_times = Vec::new();
        let mut flagged = 0;
        let mut series = 0;
        for _ in 0..21 {
            let started = Instant::now();
            let (from, to) = anomaly_span(week);
            let daily_rows = db::daily_counts(&pool, None, from, to).await?;
            let weekly_rows = db::weekly_counts(&pool, None, span[0], week).await?;
            read_times.push(started.elapsed());
            let started = Instant::now();
            let mut daily: std::collections::HashMap<String, Daily> = Default::default();
            let mut weekly: std::collections::HashMap<String, Vec<app::domain::kpi::KpiCounts>> =
                Default::default();
            for (site, day, c) in &daily_rows {
                for key in [site.as_str(), "network"] {
                    daily
                        .entry(key.into())
                        .or_default()
                        .entry(*day)
                        .or_default()
                        .add(c);
                }
            }
            for (site, w, c) in &weekly_rows {
                let i = span.iter().position(|x| x == w).unwrap_or(0);
                for key in [site.as_str(), "network"] {
                    weekly
                        .entry(key.into())
                        .or_insert_with(|| vec![Default::default(); span.len()])[i]
                        .add(c);
                }
            }
            flagged = 0;
            series = 0;
            for (site, weeks) in &weekly {
                for m in Metric::all() {
                    let a = anomaly_of(m, week, weeks, &daily[site], &rules);
                    series += 1;
                    flagged += usize::from(a.is_some_and(|a| a.unusual));
                }
            }
            detect_times.push(started.elapsed());
        }
        read_times.sort();
        detect_times.sort();
        println!(
            "anomaly detection, {series} series (12 weeks + 9 weeks of days each): read roll-up median {}, detect median {} (p90 {}); {flagged} unusual",
            ms(percentile(&read_times, 0.5)),
            ms(percentile(&detect_times, 0.5)),
            ms(percentile(&detect_times, 0.9))
        );
    }

    // Where a network pack's time goes: summing the two weeks' breakdowns from the metric
    // store, the freshness lookup.
    let week = app::domain::period::Week::latest_complete(as_of);
    let started = Instant::now();
    let b = db::breakdown(&pool, None, week.previous().start, week.end()).await?;
    let read = started.elapsed();
    let started = Instant::now();
    db::latest_data_date(&pool, None, week.start - chrono::Duration::days(28), as_of).await?;
    println!(
        "  of which: summing two weeks' breakdown ({} lines) {}, latest-data-date lookup {}",
        b.total.counts.lines,
        ms(read),
        ms(started.elapsed())
    );

    // 4. HTTP latency.
    // The data path is measured here; the guard's cost is benches/access.rs's subject.
    let application = shared::app(pool.clone(), as_of, |c| {
        c.auth.anonymous_role = Some(app::domain::access::Role::Admin);
    })
    .await?;
    let local = application.local_addr();
    let state = application.state().clone();
    tokio::spawn(application.run_until_stopped(std::future::pending()));
    for path in ["/api/v1/dashboard", "/", "/favicon.svg"] {
        let url = format!("http://{local}{path}");
        // The client gets its own thread and runtime, apart from the server's.
        let (p50, p99, rps) =
            shared::on_own_runtime(move || async move { shared::load(&url, &[], 500, 8).await })?;
        println!(
            "GET {path:<18} p50 {}  p99 {}  ({rps:.0} req/s, 500 requests, concurrency 8)",
            ms(p50),
            ms(p99)
        );
    }

    // 5. Digest generation: the dashboard, then (with unit costs) each listed card's
    // evidence pack for its money at stake, ranking and rendering.
    for with_costs in [false, true] {
        if with_costs {
            let costs: Vec<app::dto::UnitCost> = seed::CATEGORIES
                .iter()
                .enumerate()
                .map(|(i, c)| app::dto::UnitCost {
                    sku: None,
                    category: Some(c.to_string()),
                    unit_cost: 5.0 + 10.0 * i as f64,
                })
                .collect();
            app::ssr::data::costs::save(&pool, &costs, |i| format!("entry {i}"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut times = Vec::new();
        let (mut listed, mut total) = (0, 0);
        for _ in 0..5 {
            let started = Instant::now();
            let (digest, _) = state
                .notify()
                .build_digest(&Default::default(), &app::domain::access::Reach::All)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::hint::black_box(app::domain::digest::slack(&digest));
            std::hint::black_box(app::domain::digest::html(&digest));
            listed = digest.items.len() + digest.more;
            total = listed + digest.fine;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "digest {}: {listed} cards listed of {total}, build + render median {} (min {}, max {})",
            if with_costs { "with unit costs (money per card)" } else { "without unit costs" },
            ms(percentile(&times, 0.5)),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}
