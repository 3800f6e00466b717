//! `opsight sources list` and `opsight sources sync [NAME]`: the sources file's data
//! sources, synced by this process (the same sync a schedule or the dashboard's button
//! starts: claimed, all or nothing, recorded).

use crate::config::Config;
use app::domain::status::{SyncStatus, SyncTrigger};
use app::ssr::clock::Clock;
use app::ssr::runs::JobQueue;
use app::ssr::sources::Sources;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum SourcesCommand {
    /// The sources and where their syncs stand, as JSON.
    List,
    /// Sync one source now (every source when no name is given); exits with 1 when a
    /// sync fails, naming the source and why.
    Sync { name: Option<String> },
}

pub async fn run(config: &Config, command: SourcesCommand) -> anyhow::Result<()> {
    let db = crate::application::open_store(config).await?;
    let queue = JobQueue::new(config.job_lease);
    let sources = Sources::new(
        db,
        Clock {
            as_of: config.as_of,
            grain: config.default_grain,
        },
        config.sources.clone(),
        queue.replica.clone(),
        queue.lease,
    );
    match command {
        SourcesCommand::List => {
            let list = sources.list().await.map_err(super::safe)?;
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(())
        }
        SourcesCommand::Sync { name } => {
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => sources.defs().iter().map(|d| d.name.clone()).collect(),
            };
            if names.is_empty() {
                anyhow::bail!("no data source is configured (see OPSIGHT_SOURCES_FILE)");
            }
            let mut failed = Vec::new();
            for name in names {
                let sync = sources
                    .sync(&name, SyncTrigger::Command, Some("command line"), true)
                    .await
                    .map_err(super::safe)?;
                match sync.status {
                    SyncStatus::Succeeded => println!(
                        "{name}: {} rows read, {} inserted, {} updated in {:.1} s",
                        sync.rows_read,
                        sync.inserted,
                        sync.updated,
                        sync.duration_ms.unwrap_or(0) as f64 / 1000.0
                    ),
                    _ => {
                        let why = sync.error.unwrap_or_default();
                        eprintln!("{name}: sync failed: {why}");
                        failed.push(name);
                    }
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("sync failed for {}", failed.join(", "))
            }
        }
    }
}
