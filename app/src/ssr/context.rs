//! What a server function finds in its Leptos context: the application's state, who is
//! asking (the guard put the principal on the request), and [`respond`], the one mapping
//! of a service's result to what the browser gets.

use super::access::{actor_of, Principal};
use super::error::ServiceError;
use super::state::AppState;
use crate::error::AppError;
use leptos::prelude::use_context;

/// The state from the Leptos context, inside a server function.
pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })
}

/// The principal the guard attached to the current request. `None` outside a request,
/// or for a request nobody signed (public routes).
pub fn principal() -> Option<Principal> {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>().cloned())
}

/// The sites the current request's principal may see (every site without one).
pub fn reach() -> crate::domain::access::Reach {
    super::access::reach_of(principal().as_ref())
}

/// How the audit log names whoever made the current request (the guard has already
/// checked the route's policy).
pub fn actor() -> String {
    actor_of(principal().as_ref())
}

/// The signed-in principal, or `Unauthorized` (for operations that act on their behalf).
pub fn signed_in() -> Result<Principal, AppError> {
    principal().ok_or_else(|| AppError::Unauthorized("sign in first".into()))
}

/// A service's result as a server function returns it: errors become the safe
/// [`AppError`] (internal causes logged once), and a server function's HTTP response gets
/// the error's status ([`AppError::status_code`], as the JSON API sends it) instead of
/// Leptos's blanket 500. Inside a page render the page's own status is left alone.
pub fn respond<T>(result: Result<T, ServiceError>) -> Result<T, AppError> {
    result.map_err(|e| {
        let e = AppError::from(e);
        let is_server_fn = use_context::<axum::http::request::Parts>()
            .is_some_and(|p| p.uri.path().starts_with("/api/"));
        if is_server_fn {
            if let (Some(options), Ok(status)) = (
                use_context::<leptos_axum::ResponseOptions>(),
                axum::http::StatusCode::from_u16(e.status_code()),
            ) {
                options.set_status(status);
            }
        }
        e
    })
}
