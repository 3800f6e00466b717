//! KPI detail for one (site, metric): trend with target, mix/rate contribution tables per
//! dimension, the OTIF tree, data checks, the insight card and its history.

use crate::api::get_kpi_detail;
use crate::components::charts::TrendChart;
use crate::components::insight_card::InsightCard;
use crate::components::tile::KpiTile;
use crate::domain::evidence::{DimensionContribution, OtifTree};
use crate::domain::kpi::{format_value, signed, Metric};
use crate::dto::KpiDetail;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// This page's URL query with `filter` set (or cleared), the period and comparison kept.
fn with_filter(filter: Option<&str>) -> String {
    let query = leptos_router::hooks::use_query_map();
    let mut parts: Vec<String> = query.with_untracked(|q| {
        ["period", "compare"]
            .iter()
            .filter_map(|k| Some(format!("{k}={}", encode(&q.get(k)?))))
            .collect()
    });
    if let Some(f) = filter {
        parts.push(format!("filter={}", encode(f)));
    }
    format!("?{}", parts.join("&"))
}

/// Percent-encodes a query value (members are free text).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[component]
fn Contributions(dim: DimensionContribution, metric: Metric) -> impl IntoView {
    let unit = metric.change_unit();
    // A member's own figures (a filter) for the dimensions lines are tallied by.
    let filterable = dim.dimension != "site";
    view! {
        <div class="contrib">
            <h3>{format!("By {}", dim.dimension)}</h3>
            <table>
                <thead><tr>
                    <th>{dim.dimension.clone()}</th><th>"value"</th><th>"share"</th>
                    <th>{format!("mix {unit}")}</th><th>{format!("rate {unit}")}</th><th>{format!("total {unit}")}</th>
                </tr></thead>
                <tbody>
                    {dim.segments.into_iter().map(|s| {
                        // Red for what moved the KPI the bad way (up, when lower is better).
                        let good = metric.good(s.total);
                        let class = if good < -0.005 { "neg" } else if good > 0.005 { "pos" } else { "" };
                        view! {
                            <tr class=class>
                                <td>{if filterable && !s.member.starts_with("other (") {
                                    let href = with_filter(Some(&format!("{}:{}", dim.dimension, s.member)));
                                    view! { <a href=href title="this member's own figures">{s.member.clone()}</a> }.into_any()
                                } else {
                                    view! { <span>{s.member.clone()}</span> }.into_any()
                                }}</td>
                                <td>{format!("{} → {}", format_value(metric, s.previous_value), format_value(metric, s.value))}</td>
                                <td>{format!("{:.1}% → {:.1}%", s.previous_share_pct, s.share_pct)}</td>
                                <td>{signed(s.mix, 2)}</td>
                                <td>{signed(s.rate, 2)}</td>
                                <td class="total">{signed(s.total, 2)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
                <tfoot><tr>
                    <td colspan="3">"sum"</td><td>{signed(dim.mix_total, 2)}</td><td>{signed(dim.rate_total, 2)}</td>
                    <td class="total">{signed(dim.mix_total + dim.rate_total, 2)}</td>
                </tr></tfoot>
            </table>
        </div>
    }
}

#[component]
fn Tree(tree: OtifTree, previous: OtifTree) -> impl IntoView {
    let row = |label: &'static str, now: i64, before: i64| {
        view! {
            <tr><td>{label}</td><td>{before}</td><td>{now}</td><td>{signed((now - before) as f64, 0)}</td></tr>
        }
    };
    view! {
        <div class="tree">
            <h3>"OTIF tree"</h3>
            <table>
                <thead><tr><th>"lines"</th><th>"previous"</th><th>"this period"</th><th>"change"</th></tr></thead>
                <tbody>
                    {row("lines due", tree.lines, previous.lines)}
                    {row("OTIF", tree.otif_lines, previous.otif_lines)}
                    {row("failures", tree.failures, previous.failures)}
                    {row("· late only", tree.late_only, previous.late_only)}
                    {row("· short only", tree.short_only, previous.short_only)}
                    {row("· late and short", tree.late_and_short, previous.late_and_short)}
                </tbody>
            </table>
            <h4>"Failures by reason code"</h4>
            <table>
                <thead><tr><th>"reason"</th><th>"failures"</th><th>"share"</th></tr></thead>
                <tbody>
                    {tree.by_reason.into_iter().map(|r| view! {
                        <tr><td>{r.reason}</td><td>{r.failures}</td><td>{format!("{:.1}%", r.share_pct)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn Detail(d: KpiDetail) -> impl IntoView {
    let e = d.evidence;
    let metric = e.scope.metric;
    let checks = e.data_checks.clone();
    let labels: Vec<String> = e.series.iter().map(|p| p.label.clone()).collect();
    let values: Vec<Option<f64>> = e.series.iter().map(|p| p.value).collect();
    let unit = metric.unit();
    let site = e.scope.site.clone();
    view! {
        <div class="page-head">
            <p class="crumbs"><a href="/">"Overview"</a>" / "{e.scope.site_name.clone()}</p>
            <h1>{format!("{} · {}", e.scope.metric_name, e.scope.site_name)}</h1>
            <p class="period">{format!("{} ({} to {}) vs {} · as of {}", e.period.label, e.period.start, e.period.end, e.previous_period.label, e.as_of)}</p>
            <crate::pages::overview::PeriodPicker choice=d.card.view.clone() action=format!("/kpi/{}/{}", e.scope.site, metric.key())/>
            <p class="definition">{e.scope.definition.clone()}</p>
            {e.scope.focus.clone().map(|f| view! {
                <p class="focus" data-focus=f.clone()>{format!("Only {f}: its value, trend and checks (no split by other dimensions). ")}
                    <a href=with_filter(None)>"Show all"</a></p>
            })}
        </div>
        <div class="detail-grid">
            <div>
                <KpiTile tile=d.tile site=site.clone()/>
                <TrendChart values labels target=e.target unit/>
                <p class="noise">{format!(
                    "Change {} (standard error {:.2}).",
                    if e.noise.significant { "is beyond noise" } else { "is within noise" }, e.noise.standard_error)}</p>
            </div>
            // The card explains the whole scope: a filtered view links to it rather than
            // showing it against one member's figures.
            {match e.scope.focus.clone() {
                None => view! { <InsightCard card=d.card/> }.into_any(),
                Some(f) => view! {
                    <section class="card focus-card">
                        <p>{format!("The insight card explains all of {}, not {f} alone. ", e.scope.site_name)}
                            <a href=with_filter(None)>"Open it"</a></p>
                    </section>
                }.into_any(),
            }}
        </div>
        {e.materiality.clone().map(|m| view! {
            <section class="materiality">
                <h2>"Money at stake"</h2>
                <p class="at-stake">{m.summary.clone()}</p>
                <ul>
                    {m.by_segment.iter().take(5).map(|s| view! {
                        <li>{format!("{} {}: {} ({} failed line{})", s.dimension, s.member,
                            crate::domain::materiality::money(s.at_stake), s.failed_lines,
                            if s.failed_lines == 1 { "" } else { "s" })}</li>
                    }).collect_view()}
                </ul>
            </section>
        })}
        {d.pace.map(|p| view! {
            <section class="pace" data-week=p.week_start.clone()>
                <h2>{format!("This week so far ({})", p.week_label)}</h2>
                <p class="pace-summary">{p.summary.clone()}</p>
                <ul>
                    <li>{format!("So far: {} after {} of 7 days ({} of {})",
                        format_value(metric, p.value_so_far), p.days_elapsed, p.numerator_so_far, p.denominator_so_far)}</li>
                    <li>{format!("Expected in the days left: {:.0} (median of the same weekdays in the previous weeks)", p.expected_remaining)}</li>
                    {p.needed_rate.map(|r| view! { <li class="needed">{format!("Pace needed to reach target: {r:.1} %")}</li> })}
                    {p.forecast.map(|f| view! { <li class="forecast">{format!("Forecast: {} (80 % interval {} to {})",
                        format_value(metric, Some(f)), format_value(metric, p.low), format_value(metric, p.high))}</li> })}
                </ul>
            </section>
        })}
        <section class="checks">
            <h2>"Data checks"</h2>
            <ul>
                <li>{format!("Latest data date: {}{}", checks.latest_data_date.clone().unwrap_or_else(|| "none".into()),
                    checks.days_since_latest_data.map(|n| format!(" ({n} days before the reference date)")).unwrap_or_default())}</li>
                <li>{format!("Lines past due with no delivered date: {} of {} ({:.1}%)", checks.past_due_open, checks.lines_due, checks.past_due_open_share_pct)}</li>
                <li>{format!("Failures without a reason code: {} of {} ({:.1}%)", checks.failures_without_reason, checks.failures, checks.failures_without_reason_share_pct)}</li>
            </ul>
            {checks.suspect().then(|| view! { <p class="badge error-badge">{format!("Data suspect: {}", checks.suspect_reasons.join("; "))}</p> })}
        </section>
        <section>
            <h2>"What moved: mix vs rate"</h2>
            <p class="hint">"Mix: the segment's share of volume moved. Rate: its own performance moved. Terms add up to the total change."</p>
            <div class="contrib-grid">
                {e.contributions.into_iter().map(|dim| view! { <Contributions dim metric/> }).collect_view()}
            </div>
        </section>
        <section><Tree tree=e.otif_tree previous=e.previous_otif_tree/></section>
        <section class="history">
            <h2>"Insight history"</h2>
            <ul>
                {d.history.into_iter().map(|i| view! {
                    <li class=format!("history-{}", i.status)>
                        <span class="when">{i.created_at.get(0..16).unwrap_or_default().replace('T', " ")}</span>
                        {format!(" {} · {} · ", i.period_label, i.agent)}
                        {if i.status == crate::domain::status::AnswerStatus::Ok { i.headline } else { format!("failed: {}", i.error.unwrap_or_default()) }}
                    </li>
                }).collect_view()}
            </ul>
        </section>
    }
}

#[component]
pub fn KpiDetailPage() -> impl IntoView {
    let params = use_params_map();
    let query = leptos_router::hooks::use_query_map();
    let choice = crate::pages::overview::choice_from_query();
    let detail = Resource::new(
        move || {
            params.with(|p| {
                (
                    p.get("site").unwrap_or_default(),
                    p.get("metric").unwrap_or_default(),
                    choice.get(),
                    query.with(|q| q.get("filter").filter(|f| !f.is_empty())),
                )
            })
        },
        |(site, metric, view, filter)| {
            get_kpi_detail(crate::dto::KpiQuery {
                site,
                metric,
                view,
                filter,
            })
        },
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(d) => view! { <Detail d/> }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
