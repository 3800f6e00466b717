//! Reusable view pieces: KPI tiles, charts, the insight card and the streamed question box.
pub mod ask;
pub mod charts;
pub mod insight_card;
pub mod tile;
