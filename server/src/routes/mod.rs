//! Plain HTTP routes (not Leptos pages): the JSON API, the built-in analyst, health.
pub mod analyst;
pub mod api;
pub mod auth;
pub mod health;
pub mod openapi;
