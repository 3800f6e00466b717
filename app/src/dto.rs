//! Wire types shared by the server functions, the JSON API and the browser.

use crate::domain::evidence::{EvidencePack, PeriodRef};
use crate::domain::insight::Insight;
use crate::domain::kpi::Metric;
use crate::domain::rules::{Rules, Status};
use serde::{Deserialize, Serialize};

/// One KPI tile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    pub metric: Metric,
    pub name: String,
    pub definition: String,
    /// Display units: percent for ratios, lines for volume.
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub change: Option<f64>,
    pub target: Option<f64>,
    pub status: Status,
    /// Key of the rule trigger fired by this week's change, if any.
    pub trigger: Option<String>,
    pub numerator: i64,
    pub denominator: i64,
    /// The last 12 weeks, oldest first.
    pub spark: Vec<Option<f64>>,
}

/// One stored insight, as shown on a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InsightView {
    pub id: String,
    pub site: String,
    pub metric: Metric,
    pub period_start: String,
    pub period_label: String,
    pub created_at: String,
    pub agent: String,
    pub value: Option<f64>,
    pub headline: String,
    pub narrative: String,
    pub insight: Option<Insight>,
    pub evidence_hash: String,
    pub rules_version: i64,
    pub latency_ms: i64,
    /// `ok` or `error`.
    pub status: String,
    /// A safe, user-facing message for failed attempts.
    pub error: Option<String>,
}

/// The state of one (site, metric) insight card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub site: String,
    pub metric: Metric,
    /// The last good insight, if any.
    pub insight: Option<InsightView>,
    /// Why the shown insight may no longer hold (newer week, data changed, last refresh
    /// failed), or `None` when it is current.
    pub stale: Option<String>,
    /// The latest attempt's error when it failed after (or without) a good insight.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteRow {
    /// A site code, or `network`.
    pub site: String,
    pub name: String,
    pub tiles: Vec<Tile>,
    /// One card per metric, in tile order.
    pub cards: Vec<Card>,
}

impl SiteRow {
    pub fn card(&self, metric: Metric) -> Option<&Card> {
        self.cards.iter().find(|c| c.metric == metric)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub as_of: String,
    pub period: PeriodRef,
    pub previous_period: PeriodRef,
    pub network: SiteRow,
    pub sites: Vec<SiteRow>,
    pub rules_version: i64,
}

/// The KPI detail page for one (site, metric).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KpiDetail {
    pub tile: Tile,
    pub evidence: EvidencePack,
    pub card: Card,
    pub history: Vec<InsightView>,
}

/// The rules page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesView {
    pub rules: Rules,
    pub metrics: Vec<MetricDefinition>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDefinition {
    pub metric: String,
    pub name: String,
    pub definition: String,
    pub unit: String,
}
