//! Server-only code, compiled with the `ssr` feature (the one gate in this crate).
//!
//! Layers, each using only those above it (a test checks there is no cycle):
//!
//! - Leaves: [`clock`] (the reference date, timestamps, ids), [`metrics`] (this process's
//!   counters), [`tasks`] (spawning a request's background work), [`trust`] (the CA
//!   bundle outbound TLS trusts).
//! - [`store`]: the only place with SQL: one file per aggregate, typed rows, callers own
//!   transactions; [`store::facts`] is the seam every read of order data goes through.
//! - [`agent`]: agent profiles and kinds, the ResponsesAgent client (breaker, retries,
//!   streaming), MLflow's REST API, the built-in analyst's protocol.
//! - [`error`]: `ServiceError`, and its one mapping to the safe `AppError`.
//! - Capabilities, each a service holding only what it uses:
//!   - [`access`]: accounts, sessions, API tokens, who is asking; rate limits.
//!   - [`rules`]: the rule book and its edits (versions by compare-and-set).
//!   - [`cards`]: evidence packs, the refresh pipeline, the dashboard and KPI page,
//!     questions, next actions, feedback.
//!   - [`notify`]: digests, alerts, their deliveries to channels, e-mail.
//!   - [`runs`]: refresh runs and their jobs, cron schedules, the crontab dialect.
//!   - [`data`]: CSV import of order lines, unit costs, the demo network.
//!   - [`sources`]: data sources (databases, CSV folders) synced into the metric store.
//!   - [`ops`]: agent status and health, liveness and readiness, the Prometheus scrape.
//! - [`state`]: `AppState`, the capabilities of one running Opsight, wired once.
//! - [`context`]: what a server function finds in its context (state, principal) and
//!   `respond`, the error mapping of server functions.

pub mod access;
pub mod agent;
pub mod cards;
pub mod clock;
pub mod context;
pub mod data;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod rules;
pub mod runs;
pub mod sources;
pub mod state;
pub mod store;
pub mod tasks;
pub mod trust;

pub use error::ServiceError;

#[cfg(test)]
mod architecture;
