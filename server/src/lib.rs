//! Opsight's server process: configuration, telemetry, state, router, CLI commands and
//! graceful shutdown. The UI, domain logic and services live in the `app` crate.
//!
//! Layout:
//! - [`config`]: environment settings, validated at start-up.
//! - [`telemetry`]: `tracing` set-up.
//! - [`guard`]: authentication, the access policy, CSRF and rate limits in front of every
//!   route; security headers and the CSP nonce on every response.
//! - [`routes`]: sign-in and sign-out, the JSON API (`/api/v1`), the built-in analyst (`/agent/invocations`),
//!   `/healthz`.
//! - [`router`]: all routes, Leptos pages and server functions, static files, layers.
//! - [`scheduler`]: the schedule tick loop and the refresh job worker, on every replica.
//! - [`commands`]: what `opsight <command>` runs (serve, migrate, seed-demo, import, refresh).

pub mod commands;
pub mod config;
pub mod guard;
pub mod routes;
pub mod scheduler;
pub mod telemetry;

use app::app::{shell, App};
use app::ssr::agent::Agents;
use app::ssr::db::Db;
use app::ssr::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Every configured agent, with the built-in analyst served by the process listening on
/// `local` (same client code path as an external agent).
pub fn agents(config: &config::Config, local: SocketAddr) -> anyhow::Result<Agents> {
    Agents::new(
        config.agents_at(local),
        &config.cards_agent,
        &config.questions_agent,
    )
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
    agents: Agents,
    as_of: Option<chrono::NaiveDate>,
    leptos_options: LeptosOptions,
) -> AppState {
    AppState {
        db,
        agents,
        live: Default::default(),
        jobs: Default::default(),
        notifier: Default::default(),
        as_of,
        leptos_options,
        auth: Default::default(),
        limits: Default::default(),
    }
}

/// How often agents are health-checked (and aliases resolved) in the background.
pub const AGENT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Checks every agent now and then every [`AGENT_CHECK_EVERY`], until the process ends.
pub fn spawn_agent_checks(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AGENT_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            app::ssr::settings::check_all(&state).await;
        }
    });
}

/// Every route: API, analyst, health, Leptos pages and server functions (with `AppState`
/// in their context), static files and the 404 page.
pub fn router(state: AppState) -> Router {
    router_with(state, true)
}

/// [`router`], optionally without the guard (`guarded = false`: every request is let
/// through anonymously). Only the benchmark of the guard's own cost uses that.
pub fn router_with(state: AppState, guarded: bool) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let context = move || {
        provide_context(context_state.clone());
        // The guard's CSP nonce replaces the one Leptos made, so the inline hydration
        // scripts carry the nonce the response's policy allows.
        if let Some(nonce) = use_context::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<guard::CspNonce>().cloned())
        {
            provide_context(leptos::nonce::Nonce::from_value(nonce.0));
        }
        // Who is signed in, for the page to show (and to hide what the role cannot do).
        if let Some(me) = use_context::<axum::http::request::Parts>().and_then(|p| {
            p.extensions
                .get::<app::ssr::accounts::Principal>()
                .map(|p| p.me())
        }) {
            provide_context(me);
        }
    };
    let shell_options = state.leptos_options.clone();
    let router = Router::new()
        .route(
            "/login",
            get(routes::auth::login_page).post(routes::auth::login),
        )
        .route("/logout", post(routes::auth::logout))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/agent/invocations", post(routes::analyst::invocations))
        .nest("/api/v1", routes::api::router())
        .leptos_routes_with_context(&state, routes, context.clone(), move || {
            shell(shell_options.clone())
        })
        // Latency by matched route (after routing, so the label is the route pattern).
        .route_layer(axum::middleware::from_fn(track_latency))
        .route("/metrics", get(routes::health::metrics))
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell));
    // Who is asking and may they (every route, static files included: their policy is
    // public).
    let router = if guarded {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
    } else {
        router
    };
    router
        // Request bodies: the largest legitimate one is a unit-cost list (about 100,000
        // SKUs fit); larger catalogues go through `opsight import costs`.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .layer(CompressionLayer::new())
        // Every request gets an id (a client's own `x-request-id` is kept), logged on the
        // request's span so each log line of the request carries it, and echoed back.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The span of one request: method, path (no query: it may carry user text) and id.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id
    )
}

async fn track_latency(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    app::ssr::metrics::observe_http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

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
    // The peer address lets the guard believe a trusted proxy's user header.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
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
