//! Inline SVG charts: no chart library, nothing to download.

use leptos::prelude::*;

/// Maps values to `x,y` points in a `w`×`h` box, skipping gaps; the y range is padded and
/// includes `extra` (e.g. the target) so a target line fits.
fn points(
    values: &[Option<f64>],
    w: f64,
    h: f64,
    extra: Option<f64>,
) -> (Vec<(f64, f64)>, impl Fn(f64) -> f64) {
    let known = values.iter().flatten().copied().chain(extra);
    let (mut lo, mut hi) = known.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = values.len().max(2) as f64 - 1.0;
    let y = move |v: f64| h - (v - lo) / (hi - lo) * h;
    let pts = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i as f64 / n * w, y(v))))
        .collect();
    (pts, y)
}

fn polyline(pts: &[(f64, f64)]) -> String {
    pts.iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A small trend line for a tile: 12 weeks, the last point marked.
#[component]
pub fn Sparkline(values: Vec<Option<f64>>) -> impl IntoView {
    let (pts, _) = points(&values, 100.0, 28.0, None);
    let last = pts.last().copied();
    view! {
        <svg class="sparkline" viewBox="-2 -2 104 32" preserveAspectRatio="none" aria-hidden="true">
            <polyline points=polyline(&pts) fill="none" stroke="currentColor" stroke-width="1.5"/>
            {last.map(|(x, y)| view! { <circle cx=format!("{x:.1}") cy=format!("{y:.1}") r="2.2" fill="currentColor"/> })}
        </svg>
    }
}

/// The detail page's trend chart with week labels and a dashed target line.
#[component]
pub fn TrendChart(
    values: Vec<Option<f64>>,
    labels: Vec<String>,
    target: Option<f64>,
    unit: &'static str,
) -> impl IntoView {
    let (w, h) = (600.0, 180.0);
    let (pts, y) = points(&values, w, h, target);
    let target_y = target.map(&y);
    let n = values.len().max(2) as f64 - 1.0;
    let marks: Vec<_> = pts
        .iter()
        .zip(values.iter().flatten())
        .map(|((x, yy), v)| {
            let text = if unit == "pct" { format!("{v:.1}") } else { format!("{v:.0}") };
            view! {
                <g>
                    <circle cx=format!("{x:.1}") cy=format!("{yy:.1}") r="3.5" class="dot"/>
                    <text x=format!("{x:.1}") y=format!("{:.1}", yy - 8.0) class="value" text-anchor="middle">{text}</text>
                </g>
            }
        })
        .collect();
    let ticks: Vec<_> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let x = i as f64 / n * w;
            view! { <text x=format!("{x:.1}") y=format!("{:.1}", h + 18.0) class="tick" text-anchor="middle">{l.replace("-W", " W")}</text> }
        })
        .collect();
    view! {
        <svg class="trend" viewBox=format!("-30 -20 {} {}", w + 60.0, h + 45.0) role="img" aria-label="12-week trend">
            {target_y.map(|ty| view! {
                <g>
                    <line x1="0" x2=format!("{w}") y1=format!("{ty:.1}") y2=format!("{ty:.1}") class="target-line"/>
                    <text x=format!("{w}") y=format!("{:.1}", ty - 4.0) class="target-label" text-anchor="end">"target"</text>
                </g>
            })}
            <polyline points=polyline(&pts) class="line" fill="none"/>
            {marks}
            {ticks}
        </svg>
    }
}
