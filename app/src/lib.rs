//! Opsight's shared crate: what the browser (wasm, `hydrate`) and the server (`ssr`) share.
//!
//! Layout:
//! - [`domain`]: pure logic, compiled for both sides: periods, KPI scoring, business rules,
//!   the evidence pack (mix/rate contributions, OTIF tree, data checks), the insight
//!   contract and reply parsing, and the built-in analyst.
//! - [`dto`]: wire types of the server functions and the JSON API.
//! - [`api`]: server functions (`/api/<name>`), thin wrappers over `ssr` services.
//! - [`app`], [`pages`], [`components`]: the Leptos UI (SSR + hydration).
//! - [`error`]: `AppError`, the safe error the UI shows.
//! - `ssr` (feature `ssr` only): database (SQLite or PostgreSQL), agent client, services,
//!   cron schedules, refresh runs and their jobs, import, demo seed.
//!
//! A page request: `server` router → [`app::App`] → a page → `Resource` → a server fn in
//! [`api`] (in-process during SSR, `POST /api/..` after hydration) → `ssr` service →
//! `ssr::db` / `ssr::agent` → DTO → HTML, then hydration in the browser.

pub mod api;
pub mod app;
pub mod components;
pub mod domain;
pub mod dto;
pub mod error;
pub mod pages;

#[cfg(feature = "ssr")]
pub mod ssr;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // The catalogue's KPIs, as the server rendered them into the page (`app::shell`):
    // known before any server function's answer naming one is read.
    if let Some(text) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(app::KPIS_ELEMENT))
        .and_then(|e| e.text_content())
    {
        domain::kpi::register_from_page(&text);
    }
    leptos::mount::hydrate_body(app::App);
}
