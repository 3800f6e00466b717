//! The CLI commands. Each returns what it did so `main` can print it.

use crate::config::Config;
use anyhow::Context;
use app::domain::evidence::NETWORK;
use app::domain::kpi::Metric;
use app::ssr::state::AppState;
use app::ssr::{db, import, insights, seed};
use std::path::Path;

/// Lines the demo network gets by default.
pub const DEMO_LINES: usize = 500_000;

pub async fn connect(config: &Config) -> anyhow::Result<db::Db> {
    db::connect(&config.database_url).await
}

/// Seeds the demo network. With `if_empty`, a database that already has order lines is
/// left alone and `None` is returned.
pub async fn seed_demo(
    config: &Config,
    lines: usize,
    seed_value: u64,
    reset: bool,
    if_empty: bool,
) -> anyhow::Result<Option<seed::SeedReport>> {
    let pool = connect(config).await?;
    if if_empty && db::count_lines(&pool).await? > 0 {
        return Ok(None);
    }
    let rules = db::rules(&pool).await?;
    let as_of = config
        .as_of
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let opts = seed::SeedOptions {
        lines,
        as_of,
        seed: seed_value,
    };
    seed::seed_demo(&pool, opts, rules.scoring(), reset)
        .await
        .map(Some)
}

pub async fn import_orders(config: &Config, file: &Path) -> anyhow::Result<import::ImportReport> {
    let pool = connect(config).await?;
    let rules = db::rules(&pool).await?;
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    import::import_orders(&pool, std::io::BufReader::new(reader), rules.scoring())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Refreshes the selected cards (every site plus the network, every metric by default)
/// one at a time and returns the new insights; failures are reported per card.
pub async fn refresh(
    state: &AppState,
    site: Option<&str>,
    metric: Option<&str>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let sites: Vec<String> = match site {
        Some(s) => vec![s.to_string()],
        None => std::iter::once(NETWORK.to_string())
            .chain(db::sites(&state.db).await?.into_iter().map(|s| s.code))
            .collect(),
    };
    let metrics: Vec<String> = match metric {
        Some(m) => vec![m.to_string()],
        None => Metric::ALL.iter().map(|m| m.key().to_string()).collect(),
    };
    let mut out = Vec::new();
    for s in &sites {
        for m in &metrics {
            match insights::refresh(state, s, m, None).await {
                Ok(view) => out.push(serde_json::to_value(view)?),
                Err(app::ssr::ServiceError::NotFound(msg)) => anyhow::bail!(msg),
                Err(e) => {
                    out.push(serde_json::json!({"site": s, "metric": m, "error": e.to_string()}))
                }
            }
        }
    }
    Ok(out)
}
