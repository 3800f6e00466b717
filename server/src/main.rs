//! `opsight`: the KPI insight server and its command-line tools. See `server/src/lib.rs`
//! for the layout and README.md for a tour.

use anyhow::Context;
use clap::{Parser, Subcommand};
use server::config::Config;
use server::scheduler::{self, WorkerOptions};
use server::{
    agents, app_state, commands, leptos_options, run, shutdown_signal, spawn_agent_checks,
    telemetry,
};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "opsight",
    version,
    about = "KPI insight for distribution-centre operations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard, the JSON API and the built-in analyst (OPSIGHT_ADDR).
    Serve,
    /// Create or upgrade the database schema (DATABASE_URL).
    Migrate,
    /// Fill an empty database with the demo network (relative to OPSIGHT_AS_OF or today).
    SeedDemo {
        /// Replace existing order lines, roll-up and insights.
        #[arg(long)]
        reset: bool,
        /// Number of order lines to generate.
        #[arg(long, default_value_t = commands::DEMO_LINES)]
        lines: usize,
        /// Random seed (the same seed and date give the same data).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Only seed when the database has no order lines (no error otherwise).
        #[arg(long)]
        if_empty: bool,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Import data files.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Refresh insights now, as a run (the same jobs a schedule makes), and print the run,
    /// its jobs and the new insights as JSON. Serving replicas on the same database help.
    Refresh {
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
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. The password is read from OPSIGHT_PASSWORD, or else from the first line
    /// of standard input; it is never an argument (arguments are visible to other users).
    Add {
        username: String,
        /// viewer (read, ask), editor (+ refresh, rules, schedules), admin (+ agents, users).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// No password: the user signs in only through the trusted proxy.
        #[arg(long)]
        no_password: bool,
        /// Succeed without changes when the user exists already.
        #[arg(long)]
        if_missing: bool,
    },
    /// List users and their roles.
    List,
    /// Disable a user: their sessions end at once and they cannot sign in.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Change a user's role.
    Role { username: String, role: String },
    /// Set a new password (OPSIGHT_PASSWORD or standard input); ends their sessions.
    Password { username: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a machine client; the secret is printed once.
    Add {
        /// What uses it, e.g. "slack-bot".
        name: String,
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List tokens (prefixes only).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Order lines from a CSV file, in one transaction: a bad row imports nothing.
    Orders { file: PathBuf },
    /// Unit costs (`sku` or `category`, `unit_cost`) for money at stake; all or nothing.
    Costs { file: PathBuf },
}

fn worker_options(config: &Config, state: &app::ssr::state::AppState) -> WorkerOptions {
    let mut opts = WorkerOptions::for_state(state);
    opts.grace = config.shutdown_grace;
    if let Some(n) = config.job_concurrency {
        opts.capacity = n;
    }
    opts
}

#[tokio::main]
async fn main() {
    telemetry::init();
    let cli = Cli::parse();
    if let Err(e) = execute(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match cli.command {
        Command::Serve => {
            let pool = commands::connect(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("cannot listen on {}", config.addr))?;
            let local = listener.local_addr()?;
            let agents = agents(&config, local)?;
            tracing::info!(
                addr = %local,
                cards_agent = agents.cards().name(),
                questions_agent = agents.questions().name(),
                "Opsight is serving http://{local}"
            );
            let mut state = app_state(pool, agents, config.as_of, leptos_options());
            state.jobs.lease = config.job_lease;
            state.notifier = std::sync::Arc::new(config.notifier.clone());
            state.auth = std::sync::Arc::new(config.auth.clone());
            state.limits = std::sync::Arc::new(app::ssr::limits::RateLimits::new(config.allowance));
            commands::record_agents(&state.db, &config).await?;
            commands::warn_without_accounts(&state).await?;
            tracing::info!(
                channels = config.notifier.channels.len(),
                "notification channels configured"
            );
            spawn_agent_checks(state.clone());
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let background =
                scheduler::spawn(state.clone(), worker_options(&config, &state), stopped);
            // On the signal the worker stops first (finishing or releasing its jobs) while
            // HTTP still serves: its in-flight jobs may be calling this process's built-in
            // analyst. Then HTTP shuts down gracefully.
            let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
                match background.await {
                    Ok(report) => tracing::info!(?report, "background work stopped"),
                    Err(e) => tracing::error!(error = %e, "background work ended abnormally"),
                }
                let _ = http_stop.send(());
            });
            run(listener, state, async move {
                let _ = http_stopped.await;
            })
            .await
        }
        Command::User { command } => {
            let pool = commands::connect(&config).await?;
            user_command(&pool, command).await
        }
        Command::Token { command } => {
            let pool = commands::connect(&config).await?;
            token_command(&pool, command).await
        }
        Command::Migrate => {
            commands::connect(&config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::SeedDemo {
            reset,
            lines,
            seed,
            if_empty,
        } => {
            let started = std::time::Instant::now();
            match commands::seed_demo(&config, lines, seed, reset, if_empty).await? {
                Some(r) => println!(
                    "seeded {} order lines for {} sites, due {} to {}, in {:.1} s",
                    r.lines,
                    r.sites,
                    r.first_due,
                    r.last_due,
                    started.elapsed().as_secs_f64()
                ),
                None => println!("database already has order lines; not seeding"),
            }
            Ok(())
        }
        Command::Import {
            what: ImportWhat::Costs { file },
        } => {
            let pool = commands::connect(&config).await?;
            let reader = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let n = app::ssr::costs::import_csv(&pool, std::io::BufReader::new(reader))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("imported {n} unit costs");
            Ok(())
        }
        Command::Import {
            what: ImportWhat::Orders { file },
        } => {
            let started = std::time::Instant::now();
            let r = commands::import_orders(&config, &file).await?;
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
            Ok(())
        }
        Command::Refresh {
            site,
            metric,
            flagged,
            schedule,
            force,
        } => {
            let pool = commands::connect(&config).await?;
            // The built-in analyst needs a listener: serve only its route on an ephemeral
            // loopback port for the duration of the command.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let local = listener.local_addr()?;
            let mut state = app_state(
                pool,
                agents(&config, local)?,
                config.as_of,
                leptos_options(),
            );
            state.jobs.lease = config.job_lease;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let analyst = axum::Router::new().route(
                "/agent/invocations",
                axum::routing::post(server::routes::analyst::invocations),
            );
            let serving = tokio::spawn(async move {
                axum::serve(listener, analyst)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
            });
            let scope = commands::RefreshScope {
                site,
                metric,
                flagged,
                schedule,
            };
            let result =
                commands::refresh(&state, worker_options(&config, &state), &scope, force).await;
            let _ = tx.send(());
            let _ = serving.await;
            println!("{}", serde_json::to_string_pretty(&result?)?);
            Ok(())
        }
    }
}

/// The password for `user add` / `user password`: OPSIGHT_PASSWORD, or the first line of
/// standard input (so it is not in the shell history or the process list).
fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("OPSIGHT_PASSWORD") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    eprintln!("password (then Enter):");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(
        !p.is_empty(),
        "no password given (OPSIGHT_PASSWORD or standard input)"
    );
    Ok(p)
}

fn role(s: &str) -> anyhow::Result<app::domain::access::Role> {
    app::domain::access::Role::parse(s).map_err(anyhow::Error::msg)
}

async fn user_command(pool: &app::ssr::db::Db, command: UserCommand) -> anyhow::Result<()> {
    use app::ssr::accounts::{self, UserChange};
    let safe = |e: app::ssr::ServiceError| anyhow::anyhow!("{}", e.into_app_error());
    let change = |username: String, c: UserChange| async move {
        accounts::update_user(pool, &username, &c, "cli")
            .await
            .map_err(safe)
    };
    match command {
        UserCommand::Add {
            username,
            role: r,
            no_password,
            if_missing,
        } => {
            let r = role(&r)?;
            if if_missing
                && accounts::user(pool, &username)
                    .await
                    .map_err(safe)?
                    .is_some()
            {
                println!("user {} exists already", username.trim().to_lowercase());
                return Ok(());
            }
            let password = if no_password {
                None
            } else {
                Some(read_password()?)
            };
            let u = accounts::add_user(pool, &username, password.as_deref(), r, "cli")
                .await
                .map_err(safe)?;
            println!("added {} ({})", u.username, u.role);
        }
        UserCommand::List => {
            for u in accounts::list_users(pool).await.map_err(safe)? {
                println!(
                    "{:<24} {:<7} {}{}",
                    u.username,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "active" },
                    if u.has_password {
                        ""
                    } else {
                        ", proxy sign-in only"
                    }
                );
            }
        }
        UserCommand::Disable { username } => {
            let u = change(
                username,
                UserChange {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            println!("disabled {} (signed out everywhere)", u.username);
        }
        UserCommand::Enable { username } => {
            let u = change(
                username,
                UserChange {
                    disabled: Some(false),
                    ..Default::default()
                },
            )
            .await?;
            println!("enabled {}", u.username);
        }
        UserCommand::Role { username, role: r } => {
            let u = change(
                username,
                UserChange {
                    role: Some(role(&r)?),
                    ..Default::default()
                },
            )
            .await?;
            println!("{} is now {}", u.username, u.role);
        }
        UserCommand::Password { username } => {
            let password = read_password()?;
            let u = change(
                username,
                UserChange {
                    password: Some(password),
                    ..Default::default()
                },
            )
            .await?;
            println!(
                "new password set for {} (signed out everywhere)",
                u.username
            );
        }
    }
    Ok(())
}

async fn token_command(pool: &app::ssr::db::Db, command: TokenCommand) -> anyhow::Result<()> {
    use app::ssr::accounts;
    let safe = |e: app::ssr::ServiceError| anyhow::anyhow!("{}", e.into_app_error());
    match command {
        TokenCommand::Add { name, role: r } => {
            let created = accounts::create_token(
                pool,
                &name,
                role(&r)?,
                "cli",
                app::domain::access::Role::Admin,
            )
            .await
            .map_err(safe)?;
            eprintln!(
                "token {} ({}) for {}: shown once, store it now",
                created.token.id, created.token.role, created.token.name
            );
            println!("{}", created.secret);
        }
        TokenCommand::List => {
            for t in accounts::list_tokens(pool).await.map_err(safe)? {
                println!(
                    "{:<28} {:<20} {:<7} {}… {}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.prefix,
                    t.revoked_at
                        .map_or("active".to_string(), |r| format!("revoked {r}"))
                );
            }
        }
        TokenCommand::Revoke { id } => {
            accounts::revoke_token(pool, &id, "cli")
                .await
                .map_err(safe)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
