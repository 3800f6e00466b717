//! Opsight's server process: configuration, telemetry, assembly, router, background work,
//! command line and graceful shutdown. The UI, domain logic and services live in the
//! `app` crate.
//!
//! Layout:
//! - [`config`]: environment settings and the agents and notifications files, validated
//!   at start-up.
//! - [`telemetry`]: `tracing` set-up.
//! - [`application`]: [`Application::build`] (config → state, listener, agents) and
//!   [`Application::run_until_stopped`] (HTTP plus the supervised background loops).
//! - [`guard`]: authentication, the access policy, CSRF and rate limits in front of every
//!   route; security headers and the CSP nonce on every response.
//! - [`routes`]: the router; the operation table (every operation's server function, JSON
//!   API route, policy and OpenAPI entry); sign-in; health; the built-in analyst.
//! - [`scheduler`]: the schedule tick loop, the job worker, the notification loop and the
//!   agent checks, on every replica.
//! - [`cli`]: what `opsight <command>` runs, one file per command group.

pub mod application;
pub mod cli;
pub mod config;
pub mod connections;
pub mod guard;
pub mod routes;
pub mod scheduler;
pub mod telemetry;

pub use application::{leptos_options, serve, shutdown_signal, Application};
pub use routes::{router, MAX_BODY_BYTES};
