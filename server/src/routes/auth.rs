//! Sign-in and sign-out: plain HTML forms (they work before, and without, the wasm), and
//! the session cookie.
//!
//! - `GET  /login[?next=/path]`: the form.
//! - `POST /login` (form: `username`, `password`, `next`): a new session (the old one is
//!   dropped), `Set-Cookie` HttpOnly, SameSite=Lax, Secure over https, then 303 to `next`
//!   (same-site paths only). A wrong name or password gets the form again with 401; which
//!   of the two was wrong is not said. Too many attempts for the account or from the
//!   client's address get 429 with `Retry-After`, before any password is checked
//!   (`access::throttle`).
//! - `POST /logout`: ends the session and clears the cookie.

use app::error::AppError;
use app::ssr::access::throttle::client_address;
use app::ssr::access::{self, SignIn, SESSION_COOKIE};
use app::ssr::state::AppState;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum::Form;
use serde::Deserialize;
use std::net::SocketAddr;

/// Minimal escaping for text placed in HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Only paths on this site: `/x`, never `//host` or `/\host` (open redirects).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Opsight</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/pkg/opsight.css\"></head>\
         <body><main class=\"signin\"><h1>Opsight</h1>{body}</main></body></html>",
        escape(title)
    )
}

/// A short page with a message (403 pages of the guard).
pub fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><div><a href=\"/\">Overview</a> · \
             <form method=\"post\" action=\"/logout\" class=\"inline\"><button type=\"submit\">Sign out</button></form></div>",
            escape(message)
        ),
    )
}

fn login_form(next: &str, error: Option<&str>, username: &str) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{error}<form method=\"post\" action=\"/login\" class=\"signin-form\">\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label>User name <input name=\"username\" autocomplete=\"username\" required value=\"{}\" autofocus></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form>",
            escape(next),
            escape(username)
        ),
    )
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(Query(q): Query<NextQuery>) -> Response {
    html(
        StatusCode::OK,
        login_form(&safe_next(q.next.as_deref()), None, ""),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn cookie(state: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.accounts().settings().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if form.username.chars().count() > 64
        || form.password.chars().count() > access::MAX_PASSWORD_CHARS
    {
        return html(
            StatusCode::BAD_REQUEST,
            login_form(&next, Some("The user name or password is too long."), ""),
        );
    }
    let previous = access::cookie(&headers, SESSION_COOKIE);
    // Every X-Forwarded-For line, in order: a proxy may add its own line rather than
    // extend the client's.
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let client = client_address(
        peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        forwarded.as_deref(),
        &state.accounts().settings().trusted_proxies,
    );
    match state
        .accounts()
        .login(&form.username, &form.password, previous, client)
        .await
    {
        Ok(SignIn::Accepted { secret, who }) => {
            tracing::info!(user = %who.name, role = %who.role, "signed in");
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                cookie(
                    &state,
                    &secret,
                    state.accounts().settings().session_ttl.as_secs(),
                ),
            );
            r
        }
        Ok(SignIn::Throttled(refused)) => {
            tracing::warn!(user = %form.username.trim(), client = ?client, limit = refused.limit(), "sign-in throttled");
            let mut r = html(
                StatusCode::TOO_MANY_REQUESTS,
                login_form(&next, Some(&refused.message()), form.username.trim()),
            );
            let secs = refused.retry_after().as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Ok(SignIn::Refused) => {
            tracing::warn!(user = %form.username.trim(), client = ?client, "sign-in failed");
            html(
                StatusCode::UNAUTHORIZED,
                login_form(
                    &next,
                    Some("Wrong user name or password, or the account is disabled."),
                    form.username.trim(),
                ),
            )
        }
        Err(e) => {
            let e = AppError::from(e);
            let status =
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = html(
                status,
                login_form(&next, Some(&e.to_string()), form.username.trim()),
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            r
        }
    }
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(c) = access::cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = state.accounts().logout(c).await {
            // Logged once by the conversion; the cookie is cleared either way.
            let _ = AppError::from(e);
        }
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/kpi/DAL/otif")), "/kpi/DAL/otif");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let f = login_form("/\"><script>", Some("<b>"), "<img onerror=x>");
        assert!(!f.contains("<script>") && !f.contains("<img") && !f.contains("<b>"));
    }
}
