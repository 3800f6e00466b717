//! `opsight user …` and `opsight token …`: accounts from the command line, which acts as
//! an admin (`cli` in the audit log). Passwords come from `OPSIGHT_PASSWORD` or the first
//! line of standard input, never from an argument (arguments are visible to other users).

use super::safe;
use crate::config::Config;
use anyhow::Context;
use app::domain::access::Role;
use app::dto::{NewToken, NewUser, UserChange};
use app::ssr::access::{Accounts, Principal};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum UserCommand {
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
        /// Limit the user to these sites and regions: `DAL,ATL,region:South`.
        #[arg(long)]
        sites: Option<String>,
    },
    /// List users and their roles.
    List,
    /// Disable a user: their sessions end at once and they cannot sign in.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Change a user's role.
    Role { username: String, role: String },
    /// Limit a user to sites and regions (`DAL,region:South`); `all` lifts the limit.
    Sites { username: String, sites: String },
    /// Set a new password (OPSIGHT_PASSWORD or standard input); ends their sessions.
    Password { username: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a machine client; the secret is printed once.
    Add {
        /// What uses it, e.g. "slack-bot".
        name: String,
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Limit the token to these sites and regions: `DAL,ATL,region:South`.
        #[arg(long)]
        sites: Option<String>,
    },
    /// List tokens (prefixes only).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

async fn accounts(config: &Config) -> anyhow::Result<Accounts> {
    let db = crate::application::open_store(config).await?;
    Ok(Accounts::new(db, config.auth.clone()))
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

fn role(s: &str) -> anyhow::Result<Role> {
    Role::parse(s).map_err(anyhow::Error::msg)
}

pub async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let accounts = accounts(config).await?;
    let actor = Principal::cli().actor();
    let change = |username: String, c: UserChange| {
        let (accounts, actor) = (accounts.clone(), actor.clone());
        async move {
            accounts
                .update_user(&username, c, &actor)
                .await
                .map_err(safe)
        }
    };
    match command {
        UserCommand::Add {
            username,
            role: r,
            no_password,
            if_missing,
            sites,
        } => {
            let r = role(&r)?;
            if if_missing && accounts.user(&username).await.map_err(safe)?.is_some() {
                println!("user {} exists already", username.trim().to_lowercase());
                return Ok(());
            }
            let password = if no_password {
                None
            } else {
                Some(read_password()?)
            };
            let u = accounts
                .add_user(
                    NewUser {
                        username,
                        password,
                        role: r,
                        sites,
                    },
                    &actor,
                )
                .await
                .map_err(safe)?;
            println!("added {} ({})", u.username, u.role);
        }
        UserCommand::List => {
            for u in accounts.users().await.map_err(safe)? {
                println!(
                    "{:<24} {:<7} {}{}{}",
                    u.username,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "active" },
                    if u.has_password {
                        ""
                    } else {
                        ", proxy sign-in only"
                    },
                    u.sites
                        .as_deref()
                        .map(|s| format!(", sites {s}"))
                        .unwrap_or_default()
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
        UserCommand::Sites { username, sites } => {
            let all = sites.trim().eq_ignore_ascii_case("all");
            let u = change(
                username,
                UserChange {
                    sites: Some(if all { String::new() } else { sites }),
                    ..Default::default()
                },
            )
            .await?;
            println!(
                "{} now sees {}",
                u.username,
                u.sites.as_deref().unwrap_or("every site")
            );
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

pub async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let accounts = accounts(config).await?;
    match command {
        TokenCommand::Add {
            name,
            role: r,
            sites,
        } => {
            let created = accounts
                .create_token(
                    NewToken {
                        name,
                        role: role(&r)?,
                        sites,
                    },
                    &Principal::cli(),
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
            for t in accounts.tokens().await.map_err(safe)? {
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
            accounts
                .revoke_token(&id, &Principal::cli().actor())
                .await
                .map_err(safe)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
