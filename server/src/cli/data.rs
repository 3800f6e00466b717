//! `opsight migrate`, `opsight retally`, `opsight seed-demo` and `opsight import
//! orders|costs`: data in, each all or nothing; `opsight backup` and `opsight restore`.

use crate::config::Config;
use anyhow::Context;
use app::ssr::data::{costs, import, seed, sites};
use app::ssr::store;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Lines the demo network gets by default.
pub const DEMO_LINES: usize = 500_000;

#[derive(Args)]
pub struct SeedDemo {
    /// Replace existing order lines, roll-up and insights.
    #[arg(long)]
    reset: bool,
    /// Number of order lines to generate.
    #[arg(long, default_value_t = DEMO_LINES)]
    lines: usize,
    /// Random seed (the same seed and date give the same data).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Only seed when the database has no order lines (no error otherwise).
    #[arg(long)]
    if_empty: bool,
}

#[derive(Subcommand)]
pub enum ImportWhat {
    /// Order lines from a CSV file, in one transaction: a bad row imports nothing.
    Orders { file: PathBuf },
    /// Unit costs (`sku` or `category`, `unit_cost`) for money at stake; all or nothing.
    Costs { file: PathBuf },
    /// Site names and regions (`code`, `name`, `region`): rename and group; all or nothing.
    Sites { file: PathBuf },
}

#[derive(Args)]
pub struct Backup {
    /// Where to write the copy (it must not exist).
    file: PathBuf,
}

#[derive(Args)]
pub struct Restore {
    /// A file `opsight backup` wrote.
    file: PathBuf,
    /// Overwrite a database that holds data.
    #[arg(long)]
    force: bool,
}

fn describe(c: &store::backup::Contents) -> String {
    format!(
        "schema {}, {} order lines, {} insights, {} users",
        c.schema_version, c.order_lines, c.insights, c.users
    )
}

/// A consistent copy of the SQLite store while it serves.
pub async fn backup(config: &Config, args: Backup) -> anyhow::Result<()> {
    let db = store::connect(&config.database_url).await?;
    let contents = store::backup::backup(&db, &args.file).await?;
    db.close().await;
    println!(
        "backed up to {}: {}",
        args.file.display(),
        describe(&contents)
    );
    Ok(())
}

/// A backup copied into the (stopped) SQLite store.
pub async fn restore(config: &Config, args: Restore) -> anyhow::Result<()> {
    let contents = store::backup::restore(&config.database_url, &args.file, args.force).await?;
    println!("restored {}: {}", args.file.display(), describe(&contents));
    Ok(())
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = crate::application::open_store(config).await?;
    import::bring_store_up_to_date(&db).await?;
    println!("database is up to date");
    Ok(())
}

pub async fn retally(config: &Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let db = crate::application::open_store(config).await?;
    import::retally_store(&db, true).await?;
    let totals = store::facts::line_totals(&db).await?;
    println!(
        "metric store re-tallied: {} lines in {:.1} s",
        totals.lines,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn seed_demo(config: &Config, args: SeedDemo) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let db = crate::application::open_store(config).await?;
    if args.if_empty && store::facts::count_lines(&db).await? > 0 {
        println!("database already has order lines; not seeding");
        return Ok(());
    }
    let opts = seed::SeedOptions {
        lines: args.lines,
        as_of: config
            .as_of
            .unwrap_or_else(|| chrono::Utc::now().date_naive()),
        seed: args.seed,
    };
    let r = seed::seed_demo(&db, opts, args.reset).await?;
    println!(
        "seeded {} order lines for {} sites, due {} to {}, in {:.1} s",
        r.lines,
        r.sites,
        r.first_due,
        r.last_due,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn import(config: &Config, what: ImportWhat) -> anyhow::Result<()> {
    let db = crate::application::open_store(config).await?;
    let open = |file: &PathBuf| {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .with_context(|| format!("cannot open {}", file.display()))
    };
    match what {
        ImportWhat::Costs { file } => {
            let n = costs::import_csv(&db, open(&file)?)
                .await
                .map_err(super::safe)?;
            println!("imported {n} unit costs");
        }
        ImportWhat::Sites { file } => {
            let n = sites::import_csv(&db, open(&file)?)
                .await
                .map_err(super::safe)?;
            println!("renamed {n} sites");
        }
        ImportWhat::Orders { file } => {
            let started = std::time::Instant::now();
            // Progress on stderr for large files, so stdout keeps the one summary line.
            let r = import::import_orders_with_progress(&db, open(&file)?, |n| {
                eprintln!(
                    "  {n} lines read ({:.0} lines/s)",
                    n as f64 / started.elapsed().as_secs_f64().max(1e-9)
                )
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "imported {} lines ({} new, {} updated) in {:.2} s ({:.0} lines/s){}",
                r.lines,
                r.inserted,
                r.updated,
                secs,
                r.lines as f64 / secs.max(1e-9),
                if r.sites_created.is_empty() {
                    String::new()
                } else {
                    format!("; new sites: {}", r.sites_created.join(", "))
                }
            );
        }
    }
    Ok(())
}
