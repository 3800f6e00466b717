//! Routed pages.
pub mod kpi_detail;
pub mod overview;
pub mod rules;
