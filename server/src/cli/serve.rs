//! `opsight serve`: builds the application, records the agents' configuration in the
//! audit log when it changed, and serves until Ctrl-C or SIGTERM.

use crate::application::{shutdown_signal, Application};
use crate::config::Config;
use app::ssr::state::AppState;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let agents_now = describe_agents(&config);
    let channels = config.notifier.channels.len();
    let app = Application::build(config).await?;
    let local = app.local_addr();
    let state = app.state();
    tracing::info!(
        addr = %local,
        cards_agent = state.agents().cards().name(),
        questions_agent = state.agents().questions().name(),
        "Opsight is serving http://{local}"
    );
    if crate::routes::site::embedded() {
        tracing::info!("site (wasm, styles, static files) served from this binary");
    } else {
        tracing::info!(
            site_root = %state.leptos_options().site_root,
            "site served from disk (LEPTOS_SITE_ROOT): this binary carries none"
        );
    }
    record_agents(state, &agents_now).await?;
    warn_without_accounts(state).await?;
    tracing::info!(channels, "notification channels configured");
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
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
pub async fn record_agents(state: &AppState, now: &str) -> anyhow::Result<()> {
    let accounts = state.accounts();
    let last = accounts
        .audit(app::dto::AuditQuery {
            action: Some("agents.configure".into()),
            limit: Some(1),
        })
        .await
        .map_err(super::safe)?;
    if last.first().map(|e| e.detail.as_str()) != Some(now) {
        accounts
            .record("system", "agents.configure", "agents", now)
            .await
            .map_err(super::safe)?;
        tracing::info!("agent configuration changed; recorded in the audit log");
    }
    Ok(())
}

/// A server nobody can sign in to says how to fix that.
pub async fn warn_without_accounts(state: &AppState) -> anyhow::Result<()> {
    let users = state.accounts().users().await.map_err(super::safe)?;
    if users.is_empty() && state.accounts().settings().anonymous_role.is_none() {
        tracing::warn!(
            "no accounts yet: add one with `opsight user add NAME --role admin` \
             (or set OPSIGHT_ANONYMOUS_ROLE=viewer for a read-only wall screen)"
        );
    }
    Ok(())
}
