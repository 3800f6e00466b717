//! `opsight <command>`: one file per command group.
//!
//! - [`serve`]: the dashboard, the JSON API and the built-in analyst, with the background
//!   loops (`opsight serve`).
//! - [`accounts`]: `opsight user …` and `opsight token …`.
//! - [`data`]: `opsight migrate`, `opsight seed-demo`, `opsight import orders|costs`,
//!   `opsight backup`, `opsight restore`.
//! - [`refresh`]: `opsight refresh`, a run executed here.
//! - [`sources`]: `opsight sources list|sync`, the sources file's data sources.
//!
//! Every command reads the same configuration ([`Config::from_env`]); errors are printed
//! once, with their causes, and the process exits with 1.

pub mod accounts;
pub mod data;
pub mod refresh;
pub mod serve;
pub mod sources;

use crate::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "opsight",
    version,
    about = "KPI insight for distribution-centre operations"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard, the JSON API and the built-in analyst (OPSIGHT_ADDR).
    Serve,
    /// Create or upgrade the database schema (DATABASE_URL).
    Migrate,
    /// Re-tally the metric store from the order lines (after other programs wrote into
    /// order_lines; start-up does it too when the totals disagree).
    Retally,
    /// Fill an empty database with the demo network (relative to OPSIGHT_AS_OF or today).
    SeedDemo(data::SeedDemo),
    /// Write a consistent copy of the SQLite database to FILE, safe while Opsight serves.
    Backup(data::Backup),
    /// Copy a backup into the SQLite database (stop Opsight first); refuses a database
    /// that holds data without --force, and a backup of a newer schema.
    Restore(data::Restore),
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: accounts::UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: accounts::TokenCommand,
    },
    /// Import data files.
    Import {
        #[command(subcommand)]
        what: data::ImportWhat,
    },
    /// Data sources (OPSIGHT_SOURCES_FILE): list them, sync them now.
    Sources {
        #[command(subcommand)]
        command: sources::SourcesCommand,
    },
    /// Refresh insights now, as a run (the same jobs a schedule makes), and print the run,
    /// its jobs and the new insights as JSON. Serving replicas on the same database help.
    Refresh(refresh::RefreshArgs),
}

/// Runs the command line's command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match cli.command {
        Command::Serve => serve::run(config).await,
        Command::Migrate => data::migrate(&config).await,
        Command::Retally => data::retally(&config).await,
        Command::SeedDemo(args) => data::seed_demo(&config, args).await,
        Command::Backup(args) => data::backup(&config, args).await,
        Command::Restore(args) => data::restore(&config, args).await,
        Command::User { command } => accounts::user(&config, command).await,
        Command::Token { command } => accounts::token(&config, command).await,
        Command::Import { what } => data::import(&config, what).await,
        Command::Sources { command } => sources::run(&config, command).await,
        Command::Refresh(args) => refresh::run(config, args).await,
    }
}

/// A service error for the terminal: the safe message (internal causes were logged).
pub(crate) fn safe(e: app::ssr::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{}", app::error::AppError::from(e))
}
