//! The router: every route, in front of it the guard, and the layers every response goes
//! through.
//!
//! - [`operations`]: the table of every operation (server function, JSON API route,
//!   policy, OpenAPI entry); [`api`]: the JSON API's one-line handlers; [`openapi`]: the
//!   description generated from the table.
//! - [`auth`]: the sign-in and sign-out forms; [`health`]: `/healthz`, `/readyz`,
//!   `/metrics`; [`analyst`]: the built-in analyst at `/agent/invocations`.
//! - Leptos pages and server functions (with `AppState` in their context), static files
//!   ([`site`]: compiled in, or Leptos's handler on `LEPTOS_SITE_ROOT`) and the 404 page; [`page_cache`]: rendered pages kept a second per viewer and URL.

pub mod analyst;
pub mod api;
pub mod auth;
pub mod health;
pub mod openapi;
pub mod operations;
pub mod page_cache;
pub mod site;

use crate::guard;
use app::app::{shell, App};
use app::ssr::access::Principal;
use app::ssr::state::AppState;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodFilter};
use axum::Router;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::{generate_route_list, LeptosRoutes};
use operations::{operations, Reply};
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `/api/v1`, from the operation table: each row's handler at its method and path, its
/// success status applied to what the handler returns.
fn api_router() -> Router<AppState> {
    let mut router = Router::new();
    for o in operations() {
        let Some(r) = &o.rest else { continue };
        let method = match r.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            other => panic!("operation {}: unsupported method {other}", o.name),
        };
        let status = StatusCode::from_u16(r.status).expect("a valid status in the table");
        let empty = matches!(r.reply, Reply::Empty);
        let route = (r.handler)(method).layer(axum::middleware::map_response(
            move |response: Response| async move {
                if response.status() != StatusCode::OK {
                    return response;
                }
                if empty {
                    return status.into_response();
                }
                let (mut parts, body) = response.into_parts();
                parts.status = status;
                Response::from_parts(parts, body)
            },
        ));
        router = router.route(r.path, route);
    }
    router
}

/// Every route: API, analyst, health, Leptos pages and server functions (with `AppState`
/// in their context), static files and the 404 page. `guarded = false` lets every request
/// through anonymously; only the benchmark of the guard's own cost uses that.
pub fn router(state: AppState, guarded: bool) -> Router {
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
        if let Some(me) = use_context::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Principal>().map(|p| p.me()))
        {
            provide_context(me);
        }
    };
    let shell_options = state.leptos_options().clone();
    // Static files: the site compiled in first, then Leptos's handler (files under
    // LEPTOS_SITE_ROOT, else the 404 page).
    let files =
        leptos_axum::file_and_error_handler_with_context::<AppState, _>(context.clone(), shell);
    let router = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/agent/invocations", post(analyst::invocations))
        .nest("/api/v1", api_router())
        .leptos_routes_with_context(&state, routes, context.clone(), move || {
            shell(shell_options.clone())
        })
        // Latency by matched route (after routing, so the label is the route pattern).
        .route_layer(axum::middleware::from_fn(track_latency))
        .route("/metrics", get(health::metrics))
        .fallback(move |uri: Uri, state: State<AppState>, request: Request| {
            let files = files.clone();
            async move {
                match site::serve(request.method(), uri.path(), request.headers()) {
                    Some(file) => file,
                    None => files(uri, state, request).await,
                }
            }
        });
    // Rendered pages, for a second, per viewer and URL (inside the guard: it knows who
    // asks; inside the security headers: each response gets its own nonce).
    let router = router.layer(axum::middleware::from_fn_with_state(
        page_cache::PageCache::default(),
        page_cache::page_cache,
    ));
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
