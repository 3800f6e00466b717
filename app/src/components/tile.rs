//! A KPI tile: value, target, change with a direction-aware colour, sparkline, status,
//! and an "unusual" badge when the move is unusual for the season (hover: why).

use super::charts::Sparkline;
use crate::domain::kpi::{format_change, format_value};
use crate::dto::Tile;
use leptos::prelude::*;

/// Colour class for a change: good moves green, bad moves red (up is good unless the KPI
/// says lower is better; volume is neutral).
fn change_class(tile: &Tile) -> &'static str {
    let metric = tile.metric;
    match tile.change.map(|c| metric.good(c)) {
        _ if !metric.is_ratio() => "change neutral",
        Some(c) if c > 0.05 => "change good",
        Some(c) if c < -0.05 => "change bad",
        _ => "change flat",
    }
}

#[component]
pub fn KpiTile(
    tile: Tile,
    site: String,
    /// The page's period query (`?period=…`), carried to the KPI page.
    #[prop(optional)]
    query: String,
) -> impl IntoView {
    // No KPI page for the sum of a limited viewer's sites (site empty): no link.
    let href = (!site.is_empty()).then(|| format!("/kpi/{}/{}{query}", site, tile.metric.key()));
    let status = tile.status;
    let value = format_value(tile.metric, tile.value);
    let change = format_change(tile.metric, tile.change);
    let target = tile
        .target
        .map(|t| format!("target {}", format_value(tile.metric, Some(t))));
    let class = format!("tile {}", status.css());
    view! {
        <a class=class href=href title=tile.definition.clone() data-metric=tile.metric.key()>
            <div class="tile-head">
                <span class="tile-name">{tile.name.clone()}</span>
                <span class=format!("status {}", status.css())>{status.label()}</span>
            </div>
            <div class="tile-value">{value}</div>
            <div class="tile-meta">
                <span class=change_class(&tile)>{change}</span>
                {target.map(|t| view! { <span class="target">{t}</span> })}
            </div>
            <Sparkline values=tile.spark.clone()/>
            {tile.trigger.is_some().then(|| view! { <span class="trigger">"needs insight"</span> })}
            {tile.anomaly.filter(|a| a.unusual).map(|a| view! {
                <span class="unusual" title=a.summary.clone() data-unusual="true">"unusual"</span>
            })}
        </a>
    }
}
