//! The CLI commands. Each returns what it did so `main` can print it.

use crate::config::Config;
use crate::scheduler::{self, WorkerOptions};
use anyhow::Context;
use app::ssr::runs::{self, Scope};
use app::ssr::state::AppState;
use app::ssr::{db, import, schedules, seed};
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

/// What `opsight refresh` covers.
pub struct RefreshScope {
    pub site: Option<String>,
    pub metric: Option<String>,
    pub flagged: bool,
    pub schedule: Option<String>,
}

/// Runs a refresh of the scope as a run, executing its jobs here (serving replicas on the
/// same database may take some), and returns the run, its jobs and the insights it made.
pub async fn refresh(
    state: &AppState,
    opts: WorkerOptions,
    scope: &RefreshScope,
    force: bool,
) -> anyhow::Result<serde_json::Value> {
    let scope = match (scope, &scope.schedule) {
        (_, Some(name)) => {
            let s = schedules::list(&state.db)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into_iter()
                .find(|s| &s.input.name == name)
                .with_context(|| format!("no schedule named '{name}'"))?;
            Scope::parse(&s.input.scope, s.input.scope_value.as_deref())
        }
        (RefreshScope { flagged: true, .. }, _) => Ok(Scope::Flagged),
        (
            RefreshScope {
                site: Some(s),
                metric: Some(m),
                ..
            },
            _,
        ) => Scope::parse("card", Some(&format!("{s}/{m}"))),
        (RefreshScope { site: Some(s), .. }, _) => Scope::parse("site", Some(s)),
        (
            RefreshScope {
                metric: Some(m), ..
            },
            _,
        ) => Scope::parse("metric", Some(m)),
        _ => Ok(Scope::All),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = runs::start(state, "cli", &scope, force)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_keep, never) = tokio::sync::watch::channel(false);
    scheduler::work(state.clone(), opts, never, Some(run.id.clone())).await;
    let detail = runs::detail(&state.db, &run.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut insights = Vec::new();
    for job in detail.jobs.iter().filter(|j| j.status == "done") {
        if let Some(i) =
            db::insight(&state.db, job.insight_id.as_deref().unwrap_or_default()).await?
        {
            insights.push(i);
        }
    }
    Ok(serde_json::json!({"run": detail.run, "jobs": detail.jobs, "insights": insights}))
}

/// The agents as configured (no secrets: whether a token is set, never its value), one
/// line each, with the roles.
pub fn describe_agents(config: &Config) -> String {
    let mut lines: Vec<String> = config
        .agents
        .iter()
        .map(|a| {
            format!(
                "{} {} {}{}{} timeout {} s, {} at once{}",
                a.name,
                a.kind.key(),
                if a.url.is_empty() {
                    "(this server)"
                } else {
                    &a.url
                },
                a.model
                    .as_ref()
                    .map(|m| format!(" model {}", m.uri()))
                    .unwrap_or_default(),
                a.endpoint
                    .as_ref()
                    .map(|e| format!(" endpoint {e}"))
                    .unwrap_or_default(),
                a.timeout.as_secs(),
                a.max_concurrency,
                if a.token.is_some() { ", token set" } else { "" }
            )
        })
        .collect();
    lines.push(format!(
        "roles: cards {}, questions {}",
        config.cards_agent, config.questions_agent
    ));
    lines.join("\n")
}

/// Agents come from the configuration, so their changes are seen at start-up: when the
/// configuration differs from the last one recorded, the audit log gets the new one.
pub async fn record_agents(pool: &db::Db, config: &Config) -> anyhow::Result<()> {
    let now = describe_agents(config);
    let last = app::ssr::audit::list(pool, Some("agents.configure"), 1)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.into_app_error()))?;
    if last.first().map(|e| e.detail.as_str()) != Some(now.as_str()) {
        app::ssr::audit::record_now(pool, "system", "agents.configure", "agents", &now)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.into_app_error()))?;
        tracing::info!("agent configuration changed; recorded in the audit log");
    }
    Ok(())
}

/// A server nobody can sign in to says how to fix that.
pub async fn warn_without_accounts(state: &AppState) -> anyhow::Result<()> {
    let users = app::ssr::accounts::list_users(&state.db)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.into_app_error()))?;
    if users.is_empty() && state.auth.anonymous_role.is_none() {
        tracing::warn!(
            "no accounts yet: add one with `opsight user add NAME --role admin` \
             (or set OPSIGHT_ANONYMOUS_ROLE=viewer for a read-only wall screen)"
        );
    }
    Ok(())
}
