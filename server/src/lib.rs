//! Opsight's server process: configuration, telemetry, state, router, CLI commands and
//! graceful shutdown. The UI, domain logic and services live in the `app` crate.
//!
//! Layout:
//! - [`config`]: environment settings, validated at start-up.
//! - [`telemetry`]: `tracing` set-up.
//! - [`routes`]: the JSON API (`/api/v1`), the built-in analyst (`/agent/invocations`),
//!   `/healthz`.
//! - [`router`]: all routes, Leptos pages and server functions, static files, layers.
//! - [`commands`]: what `opsight <command>` runs (serve, migrate, seed-demo, import, refresh).

pub mod commands;
pub mod config;
pub mod routes;
pub mod telemetry;

use app::app::{shell, App};
use app::ssr::agent::{AgentClient, AgentConfig};
use app::ssr::db::Db;
use app::ssr::state::AppState;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

/// Name of the built-in analyst as shown on cards.
pub const BUILTIN_AGENT: &str = "built-in analyst";

/// The agent client for this configuration. Without `AGENT_URL` it points at the
/// built-in analyst served by the process listening on `local` (same client code path).
pub fn agent_client(config: &config::Config, local: SocketAddr) -> anyhow::Result<AgentClient> {
    let (url, name) = match &config.agent_url {
        Some(url) => (url.clone(), agent_label(url)),
        None => {
            let ip = if local.ip().is_unspecified() {
                if local.is_ipv4() {
                    "127.0.0.1".to_string()
                } else {
                    "[::1]".to_string()
                }
            } else if local.is_ipv6() {
                format!("[{}]", local.ip())
            } else {
                local.ip().to_string()
            };
            (
                format!("http://{ip}:{}/agent/invocations", local.port()),
                BUILTIN_AGENT.to_string(),
            )
        }
    };
    AgentClient::new(AgentConfig {
        url,
        name,
        token: config.agent_token.clone(),
        timeout: config.agent_timeout,
    })
}

/// A label for an external agent: its host and path, never credentials or query strings.
fn agent_label(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['?', '#']).next().unwrap_or(rest).to_string()
}

pub fn leptos_options() -> LeptosOptions {
    match leptos::config::get_configuration(None) {
        Ok(conf) if !conf.leptos_options.output_name.is_empty() => conf.leptos_options,
        // Built without cargo-leptos (plain `cargo test`): same names, default site root.
        _ => LeptosOptions::builder()
            .output_name("opsight")
            .site_root("target/site")
            .build(),
    }
}

pub fn app_state(
    db: Db,
    agent: AgentClient,
    as_of: Option<chrono::NaiveDate>,
    leptos_options: LeptosOptions,
) -> AppState {
    AppState {
        db,
        agent,
        as_of,
        leptos_options,
    }
}

/// Every route: API, analyst, health, Leptos pages and server functions (with `AppState`
/// in their context), static files and the 404 page.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let shell_options = state.leptos_options.clone();
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/agent/invocations", post(routes::analyst::invocations))
        .nest("/api/v1", routes::api::router())
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // TCP_NODELAY: responses written in several chunks (static files, streamed pages)
    // would otherwise wait ~40 ms for delayed ACKs (Nagle).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn agent_labels_drop_credentials_and_queries() {
        assert_eq!(
            super::agent_label("https://user:pw@host:8080/invocations?token=x"),
            "host:8080/invocations"
        );
        assert_eq!(
            super::agent_label("http://127.0.0.1:5000/invocations"),
            "127.0.0.1:5000/invocations"
        );
    }
}
