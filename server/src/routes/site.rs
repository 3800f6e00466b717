//! The site compiled into the binary (`server/build.rs`, `OPSIGHT_EMBED_SITE`): the wasm,
//! its JS glue, the styles and `public/`. A release build from `.ci/build` carries them,
//! so it runs from any folder; a build without them (the tests') serves the site from
//! `LEPTOS_SITE_ROOT` on disk instead, through Leptos's file handler.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One file of the site.
pub struct SiteFile {
    /// Its URL path, `/pkg/opsight.js`.
    pub path: &'static str,
    /// A quoted content tag for `ETag` / `If-None-Match`.
    pub etag: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/site.rs"));

/// Whether this binary carries its site (else it reads `LEPTOS_SITE_ROOT`).
pub fn embedded() -> bool {
    !SITE.is_empty()
}

/// The response for `path` when it is a file of the embedded site: the file, or 304 when
/// the client's copy is current. `None` for anything else (pages, the 404 page).
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    serve_from(SITE, method, path, headers)
}

fn serve_from(
    site: &[SiteFile],
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let file = site.iter().find(|f| f.path == path)?;
    // The names are stable (`opsight.wasm`), not content-hashed: browsers revalidate
    // each time and get a 304 while the binary is the same.
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let etag = (header::ETAG, HeaderValue::from_static(file.etag));
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == file.etag || t.trim() == "*")
        });
    if current {
        return Some((StatusCode::NOT_MODIFIED, [cache, etag]).into_response());
    }
    let kind = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(file.path)),
    );
    let body = if method == Method::HEAD {
        &[][..]
    } else {
        file.bytes
    };
    let length = (header::CONTENT_LENGTH, HeaderValue::from(file.bytes.len()));
    Some((StatusCode::OK, [kind, cache, etag, length], body).into_response())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("wasm") => "application/wasm",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[SiteFile] = &[
        SiteFile {
            path: "/pkg/opsight.wasm",
            etag: "\"00000000000000aa\"",
            bytes: b"\0asm",
        },
        SiteFile {
            path: "/favicon.svg",
            etag: "\"00000000000000bb\"",
            bytes: b"<svg/>",
        },
    ];

    fn get(path: &str, if_none_match: Option<&str>) -> Option<Response> {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
        }
        serve_from(FILES, &Method::GET, path, &headers)
    }

    #[test]
    fn a_file_of_the_site_comes_with_its_type_and_tag() {
        let r = get("/pkg/opsight.wasm", None).expect("served");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(r.headers()[header::ETAG], "\"00000000000000aa\"");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "4");
        assert_eq!(
            get("/favicon.svg", None).unwrap().headers()[header::CONTENT_TYPE],
            "image/svg+xml"
        );
    }

    #[test]
    fn a_current_copy_gets_304_and_a_stale_one_the_file() {
        let r = get("/pkg/opsight.wasm", Some("\"x\", \"00000000000000aa\"")).unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = get("/pkg/opsight.wasm", Some("\"00000000000000bb\"")).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn pages_and_other_methods_are_not_the_sites() {
        assert!(get("/", None).is_none());
        assert!(get("/pkg/other.js", None).is_none());
        let none = serve_from(FILES, &Method::POST, "/favicon.svg", &HeaderMap::new());
        assert!(none.is_none());
    }
}
