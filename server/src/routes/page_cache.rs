//! A one-second cache of rendered pages, per viewer and URL.
//!
//! Rendering the overview (every site's tiles and cards, server-side, with the data the
//! browser hydrates from) costs a few milliseconds of CPU; the read models behind it are
//! already cached by data and rules version. When a team opens the dashboard at the same
//! time, or a wall screen reloads it, this renders a page once per second and serves the
//! same bytes to the rest. Pages update in place afterwards (server functions and the live
//! run progress are never cached), so a reload shows data at most a second old.
//!
//! When a page is older than the second, one request renders it again while the others
//! keep getting the previous one (for up to [`STALE`]): a crowd arriving together never
//! renders the same page in parallel.
//!
//! Keyed by who is asking (user, token or anonymous, and role: pages show what a role may
//! do) and the path with its query. Only `GET` of an HTML page that answered 200 without
//! setting a cookie, and without a page-level error view (`data-page-error`: a failed read
//! renders with 200, since the status is sent before the page streams), is kept. Each response carries its own CSP nonce: the cached page's
//! nonce is replaced by the request's before it is sent. At most [`MAX_PAGES`] pages of up
//! to [`MAX_PAGE_BYTES`] each are held.

use crate::guard::CspNonce;
use app::ssr::access::Principal;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a rendered page is served again.
pub const TTL: Duration = Duration::from_secs(1);
/// How long an expired page may still be served while one request renders its successor.
pub const STALE: Duration = Duration::from_secs(10);
/// Pages held at most (older entries are dropped first when full).
pub const MAX_PAGES: usize = 256;
/// Largest page kept (the overview of a 40-DC network is about 0.4 MB); a larger one is
/// answered with an error rather than cut.
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// Bytes of pages held at most; past it the cache starts empty again.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

struct Page {
    at: Instant,
    /// A request is rendering this page again.
    refreshing: bool,
    nonce: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The cache, shared by the router's requests.
#[derive(Clone, Default)]
pub struct PageCache(Arc<Mutex<HashMap<(String, String), Page>>>);

/// Paths that are never pages (API, server functions, assets, health, sign-in).
fn is_page(path: &str) -> bool {
    const NOT: [&str; 9] = [
        "/api", "/pkg", "/agent", "/healthz", "/readyz", "/metrics", "/login", "/logout",
        "/favicon",
    ];
    !NOT.iter().any(|p| path.starts_with(p))
}

pub async fn page_cache(State(cache): State<PageCache>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET || !is_page(request.uri().path()) {
        return next.run(request).await;
    }
    let who = request
        .extensions()
        .get::<Principal>()
        // The reach too: what a page shows depends on the sites its viewer may see.
        .map(|p| format!("{}|{:?}|{:?}", p.actor(), p.role, p.reach.sites()))
        .unwrap_or_else(|| "anonymous".into());
    let key = (who, request.uri().to_string());
    let nonce = request
        .extensions()
        .get::<CspNonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default();
    if let Some(hit) = cache.get(&key, &nonce) {
        return hit;
    }
    let response = next.run(request).await;
    let cacheable = response.status() == StatusCode::OK
        && !response.headers().contains_key(header::SET_COOKIE)
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
    if !cacheable || nonce.is_empty() {
        cache.release(&key);
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PAGE_BYTES).await else {
        cache.release(&key);
        // Too large to keep (or the body failed): this request gets an error page rather
        // than a truncated one.
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the page could not be rendered"))
            .unwrap_or_default();
    };
    if shows_page_error(&bytes) {
        cache.release(&key);
    } else {
        cache.put(key, &nonce, &parts.headers, bytes.clone());
    }
    Response::from_parts(parts, Body::from(bytes))
}

impl PageCache {
    /// The page to serve, if any: a fresh one, or an expired one while another request
    /// renders its successor. `None` means "render it" (and, for an expired page, this
    /// request is now the one that does).
    fn get(&self, key: &(String, String), nonce: &str) -> Option<Response> {
        let mut map = self.0.lock().ok()?;
        let page = map.get_mut(key)?;
        let age = page.at.elapsed();
        // Expired and nobody rendering it (or rendering for too long): this one renders.
        if age >= TTL && !(page.refreshing && age < TTL + STALE) {
            page.refreshing = true;
            return None;
        }
        let body = std::str::from_utf8(&page.body).ok()?;
        let body = if page.nonce.is_empty() {
            body.to_string()
        } else {
            body.replace(&page.nonce, nonce)
        };
        let mut response = Response::new(Body::from(body));
        *response.headers_mut() = page.headers.clone();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        Some(response)
    }

    fn put(&self, key: (String, String), nonce: &str, headers: &HeaderMap, body: Bytes) {
        let Ok(mut map) = self.0.lock() else { return };
        let held: usize = map.values().map(|p| p.body.len()).sum();
        if map.len() >= MAX_PAGES || held + body.len() > MAX_TOTAL_BYTES {
            map.retain(|_, p| p.at.elapsed() < TTL);
            let held: usize = map.values().map(|p| p.body.len()).sum();
            if map.len() >= MAX_PAGES || held + body.len() > MAX_TOTAL_BYTES {
                map.clear();
            }
        }
        map.insert(
            key,
            Page {
                at: Instant::now(),
                refreshing: false,
                nonce: nonce.to_string(),
                headers: headers.clone(),
                body,
            },
        );
    }
}

/// Whether a rendered page shows a page-level error (never kept).
fn shows_page_error(body: &[u8]) -> bool {
    const MARK: &[u8] = b"data-page-error";
    body.windows(MARK.len()).any(|w| w == MARK)
}

impl PageCache {
    /// The render this request took on did not give a page to keep: let the next request
    /// try.
    fn release(&self, key: &(String, String)) {
        if let Ok(mut map) = self.0.lock() {
            if let Some(p) = map.get_mut(key) {
                p.refreshing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_everything_but_the_api_assets_and_health() {
        for p in ["/", "/kpi/DAL/otif", "/runs", "/rules"] {
            assert!(is_page(p), "{p}");
        }
        for p in [
            "/api/v1/dashboard",
            "/api/dashboard",
            "/pkg/opsight.wasm",
            "/healthz",
            "/login",
            "/favicon.svg",
        ] {
            assert!(!is_page(p), "{p}");
        }
    }

    #[test]
    fn a_cached_page_carries_the_new_requests_nonce() {
        let cache = PageCache::default();
        let key = ("user:a|Viewer".to_string(), "/".to_string());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
        cache.put(
            key.clone(),
            "n0nce1",
            &headers,
            Bytes::from_static(b"<script nonce=\"n0nce1\">x</script><p>n0nce1</p>"),
        );
        let hit = cache.get(&key, "fresh2").expect("cached");
        let body =
            futures::executor::block_on(axum::body::to_bytes(hit.into_body(), 1 << 20)).unwrap();
        assert_eq!(
            &body[..],
            b"<script nonce=\"fresh2\">x</script><p>fresh2</p>"
        );
        // Another viewer, or another URL, is not served this page.
        assert!(cache
            .get(&("user:b|Viewer".into(), "/".into()), "x")
            .is_none());
        assert!(cache
            .get(&(key.0.clone(), "/?period=month".into()), "x")
            .is_none());
    }

    #[test]
    fn an_expired_page_is_rendered_by_one_request_while_the_others_get_the_old_one() {
        let cache = PageCache::default();
        let key = ("anonymous".to_string(), "/".to_string());
        cache.put(
            key.clone(),
            "n",
            &HeaderMap::new(),
            Bytes::from_static(b"old"),
        );
        if let Ok(mut m) = cache.0.lock() {
            m.get_mut(&key).unwrap().at = Instant::now() - TTL;
        }
        assert!(cache.get(&key, "a").is_none(), "the first request renders");
        assert!(
            cache.get(&key, "b").is_some(),
            "the next ones get the old page"
        );
        cache.release(&key);
        assert!(
            cache.get(&key, "c").is_none(),
            "after a failed render, the next one tries"
        );
        cache.put(
            key.clone(),
            "n2",
            &HeaderMap::new(),
            Bytes::from_static(b"new"),
        );
        assert!(cache.get(&key, "d").is_some());
        assert!(shows_page_error(
            b"<p class=\"badge\" data-page-error=\"true\">x</p>"
        ));
        assert!(!shows_page_error(b"<p>fine</p>"));
    }
}
