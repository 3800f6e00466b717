//! The guard in front of every route: who is asking, may they, is it same-origin, are they
//! within their agent-call allowance. Then the security headers on every response,
//! including a Content-Security-Policy whose script nonce Leptos puts on its inline
//! hydration scripts.
//!
//! One policy, from the operation table ([`crate::routes::operations::policy`]), decides
//! what each method and path needs; handlers and server functions do not repeat it. Refusals say what to do:
//! - 401 (not signed in): pages redirect to `/login?next=…`; the API and server functions
//!   answer JSON.
//! - 403: the role is not enough, or a state-changing request came from another site.
//! - 429: too many agent calls, with `Retry-After`.

use crate::routes::operations;
use app::domain::access::Need;
use app::error::AppError;
use app::ssr::access::{self, AuthOutcome, Principal};
use app::ssr::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;

/// This request's CSP nonce, for the Leptos context (see [`crate::router`]).
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// What kind of client a path serves, for the shape of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Surface {
    Page,
    ServerFn,
    Api,
}

fn surface(method: &Method, path: &str) -> Surface {
    if path.starts_with("/api/v1/") || path == "/api/v1" {
        Surface::Api
    } else if path.starts_with("/api/") {
        Surface::ServerFn
    } else if method == Method::GET || method == Method::HEAD {
        Surface::Page
    } else {
        Surface::Api
    }
}

/// A refusal shaped for its client.
fn refuse(surface: Surface, status: StatusCode, message: String, path_and_query: &str) -> Response {
    match (surface, status) {
        (Surface::Page, StatusCode::UNAUTHORIZED) => {
            let next = urlencode(path_and_query);
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        (Surface::Page, _) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::routes::auth::message_page("Not allowed", &message),
        )
            .into_response(),
        (Surface::ServerFn, _) => {
            let error = match status {
                StatusCode::UNAUTHORIZED => AppError::Unauthorized(message),
                StatusCode::FORBIDDEN => AppError::Forbidden(message),
                StatusCode::TOO_MANY_REQUESTS => AppError::RateLimited(message),
                _ => AppError::Internal,
            };
            let body = serde_json::to_string(&error).unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        (Surface::Api, _) => {
            let mut r =
                (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"opsight\""),
                );
            }
            r
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a state-changing browser request comes from this site. Browsers send
/// `Sec-Fetch-Site` (all current ones) and `Origin` on such requests; a cross-site form
/// post or fetch carries `cross-site` / a foreign origin and is refused. Clients that send
/// neither (curl, scripts) are not browsers and cannot be made to send ambient
/// credentials by another site.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!(
                "refused: this change was sent from another site ({other}); make it from Opsight itself"
            )),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!(
            "refused: this change was sent from another site ({origin}); make it from Opsight itself"
        ))
    }
}

/// The guard: authenticate, check the policy, CSRF and rate limits, then attach the
/// principal to the request for handlers and server functions.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_string());
    let policy = operations::policy(method.as_str(), &path);
    let surface = surface(&method, &path);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());

    // Public routes (static files, health, sign-in) need nobody: no lookup.
    let lookup = if policy.need == Need::Public {
        Ok(None)
    } else {
        state.accounts().authenticate(request.headers(), peer).await
    };
    let principal = match lookup {
        Ok(Some(p)) => Some(p),
        Ok(None) => state
            .accounts()
            .settings()
            .anonymous_role
            .map(Principal::anonymous),
        Err(AuthOutcome::Refused(e)) => {
            tracing::info!(reason = %e, "credentials refused");
            return refuse(
                surface,
                StatusCode::UNAUTHORIZED,
                e.to_string(),
                &path_and_query,
            );
        }
        Err(AuthOutcome::Failed(e)) => {
            let e = AppError::from(e);
            return refuse(
                surface,
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
                &path_and_query,
            );
        }
    };

    // CSRF: cookies (and a proxy's user header) are sent by the browser on its own;
    // a bearer token is not, so only requests without one are checked.
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && !request.headers().contains_key(header::AUTHORIZATION) {
        if let Err(message) = same_origin(request.headers()) {
            tracing::warn!(path = %path, "cross-site request refused");
            return refuse(surface, StatusCode::FORBIDDEN, message, &path_and_query);
        }
    }

    if let Need::Role(needed) = policy.need {
        match &principal {
            None => {
                return refuse(
                    surface,
                    StatusCode::UNAUTHORIZED,
                    "sign in first (or send an API token as `Authorization: Bearer …`)".into(),
                    &path_and_query,
                )
            }
            Some(p) if !p.role.can(needed) => {
                tracing::info!(actor = %p.actor(), needed = %needed, path = %path, "role too low");
                return refuse(
                    surface,
                    StatusCode::FORBIDDEN,
                    format!(
                        "this needs the {needed} role; {} has the {} role",
                        p.name, p.role
                    ),
                    &path_and_query,
                );
            }
            Some(p) if policy.every_site && !p.reach.is_all() => {
                tracing::info!(actor = %p.actor(), path = %path, "outside the principal's sites");
                return refuse(
                    surface,
                    StatusCode::FORBIDDEN,
                    format!(
                        "this shows or changes what covers every site; {}",
                        p.reach.refusal(app::domain::evidence::NETWORK)
                    ),
                    &path_and_query,
                );
            }
            Some(_) => {}
        }
    }

    if policy.calls_agent {
        if let Some(p) = &principal {
            if let Err(refused) = state.limits().charge(&p.actor(), std::time::Instant::now()) {
                tracing::info!(actor = %p.actor(), global = refused.global, "agent call rate-limited");
                app::ssr::metrics::count_rate_limited(refused.global);
                let mut r = refuse(
                    surface,
                    StatusCode::TOO_MANY_REQUESTS,
                    refused.message(),
                    &path_and_query,
                );
                let secs = refused.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return r;
            }
        }
    }

    if let Some(p) = principal {
        request.extensions_mut().insert(p);
    }
    next.run(request).await
}

/// Security headers on every response. The CSP's nonce is made per request and handed
/// to Leptos (through the request's extensions) for its inline scripts; nothing else may
/// run. Styles allow inline attributes (sparklines and bars are sized inline).
pub async fn security_headers(mut request: Request, next: Next) -> Response {
    let nonce = access::random_hex(16).unwrap_or_default();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cross_site_changes_are_refused() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000")
        ]))
        .is_ok());
        assert!(same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:3000")
        ]))
        .is_err());
        assert!(same_origin(&headers(&[("origin", "null"), ("host", "a")])).is_err());
        assert!(same_origin(&headers(&[])).is_ok(), "not a browser");
    }

    #[test]
    fn next_is_encoded() {
        assert_eq!(
            urlencode("/kpi/DAL/otif?x=1&y"),
            "/kpi/DAL/otif%3Fx%3D1%26y"
        );
    }
}
