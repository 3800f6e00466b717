//! Opsight's integration tests, in one binary (the server is linked once, not once per
//! file): each module is one area, with a fresh SQLite or PostgreSQL database per test
//! (`OPSIGHT_TEST_DATABASE=postgres`), real sockets, and stub, wiremock, raw-TCP and real
//! MLflow agents.

mod common;

mod access;
mod actions;
mod agent_client;
mod analyst_demo;
mod answers;
mod api;
mod backup;
mod catalogue;
mod cli;
mod conversations;
mod databricks_agent;
mod diagnosis;
mod failing_agent;
mod faults;
mod fuzz;
mod hardening;
mod import;
mod materiality;
mod metric_store;
mod mlflow;
mod notifications;
mod reach;
mod replicas;
mod rules;
mod runs;
mod schedules;
mod sources;
mod transports;
mod trust;
