//! Reusable view pieces: KPI tiles, charts, the insight card, the streamed question box
//! and live run progress.
pub mod ask;
pub mod charts;
pub mod insight_card;
pub mod runs;
pub mod tile;
