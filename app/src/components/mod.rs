//! Reusable view pieces: KPI tiles, charts and the insight card.
pub mod charts;
pub mod insight_card;
pub mod tile;
