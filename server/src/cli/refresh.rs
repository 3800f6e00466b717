//! `opsight refresh`: a run of a scope, executed by this process (serving replicas on the
//! same database help), printed as JSON with its jobs and the insights it made.

use crate::application::Application;
use crate::config::Config;
use crate::scheduler;
use app::domain::scope::Scope;
use app::domain::status::{JobStatus, RunOrigin};
use app::ssr::state::AppState;
use app::ssr::store;
use clap::Args;

#[derive(Args)]
pub struct RefreshArgs {
    /// A site code, or `network`; all sites and the network when omitted.
    #[arg(long)]
    site: Option<String>,
    /// otif, on_time, in_full, fill_rate or lines_due; all when omitted.
    #[arg(long)]
    metric: Option<String>,
    /// Only the cards the rules flag (off target, or a trigger fired).
    #[arg(long, conflicts_with_all = ["site", "metric"])]
    flagged: bool,
    /// The scope of this schedule (by name) instead.
    #[arg(long, conflicts_with_all = ["site", "metric", "flagged"])]
    schedule: Option<String>,
    /// Call the agent even for cards whose evidence, rules and agent are unchanged.
    #[arg(long)]
    force: bool,
}

pub async fn run(mut config: Config, args: RefreshArgs) -> anyhow::Result<()> {
    // The built-in analyst needs a listener: serve only its route on an ephemeral
    // loopback port for the duration of the command.
    config.addr = "127.0.0.1:0".parse().expect("an address");
    let app = Application::build(config).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (state, worker, serving) = app.serve_analyst(async {
        let _ = rx.await;
    });
    let result = refresh(&state, worker, &args).await;
    let _ = tx.send(());
    let _ = serving.await;
    println!("{}", serde_json::to_string_pretty(&result?)?);
    Ok(())
}

/// The scope the arguments name.
async fn scope(state: &AppState, args: &RefreshArgs) -> Result<Scope, app::ssr::ServiceError> {
    Ok(match args {
        RefreshArgs {
            schedule: Some(name),
            ..
        } => state.schedules().scope_of(name).await?,
        RefreshArgs { flagged: true, .. } => Scope::Flagged,
        RefreshArgs {
            site: Some(s),
            metric: Some(m),
            ..
        } => Scope::parse("card", Some(&format!("{s}/{m}")))?,
        RefreshArgs { site: Some(s), .. } => Scope::parse("site", Some(s))?,
        RefreshArgs {
            metric: Some(m), ..
        } => Scope::parse("metric", Some(m))?,
        _ => Scope::All,
    })
}

/// Runs a refresh of the scope as a run, executing its jobs here, and returns the run,
/// its jobs and the insights it made.
pub async fn refresh(
    state: &AppState,
    worker: scheduler::WorkerOptions,
    args: &RefreshArgs,
) -> anyhow::Result<serde_json::Value> {
    let scope = scope(state, args).await.map_err(super::safe)?;
    let run = state
        .runs()
        .start_scope(&scope, args.force, RunOrigin::Cli, &Default::default())
        .await
        .map_err(super::safe)?;
    let (_keep, never) = tokio::sync::watch::channel(false);
    scheduler::work(state.runs().clone(), worker, never, Some(run.id.clone())).await;
    let detail = state
        .runs()
        .detail(&run.id, &app::domain::access::Reach::All)
        .await
        .map_err(super::safe)?;
    let mut insights = Vec::new();
    for job in detail.jobs.iter().filter(|j| j.status == JobStatus::Done) {
        if let Some(i) =
            store::insights::get(state.db(), job.insight_id.as_deref().unwrap_or_default()).await?
        {
            insights.push(i);
        }
    }
    Ok(serde_json::json!({"run": detail.run, "jobs": detail.jobs, "insights": insights}))
}
