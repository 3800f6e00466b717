//! Routed pages.
pub mod conversation;
pub mod kpi_detail;
pub mod lineage;
pub mod overview;
pub mod rules;
pub mod settings;
