//! Overview: live refresh runs, the network summary, then one row per DC with KPI tiles
//! and the OTIF insight card next to them.

use crate::api::get_dashboard;
use crate::components::insight_card::InsightCard;
use crate::components::runs::RunProgress;
use crate::components::tile::KpiTile;
use crate::domain::kpi::Metric;
use crate::dto::{DashboardQuery, PeriodChoice, SiteRow};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
fn Row(row: SiteRow, network: bool, query: String) -> impl IntoView {
    let card = row.card(Metric::OTIF).cloned();
    let site = row.site.clone();
    let class = if network {
        "site-row network"
    } else {
        "site-row"
    };
    // The sum of a limited viewer's sites has no page of its own (site empty).
    let heading = if row.site.is_empty() {
        view! { <span>{row.name.clone()}</span> }.into_any()
    } else {
        view! { <a href=format!("/kpi/{}/otif{query}", row.site)>{row.name.clone()}</a> }.into_any()
    };
    view! {
        <article class=class data-site=row.site.clone()>
            <div class="site-kpis">
                <h2>{heading}
                    {(!network).then(|| view! { <span class="code">{row.site.clone()}</span> })}
                </h2>
                <div class="tiles">
                    {row.tiles.into_iter().map(|t| view! { <KpiTile tile=t site=site.clone() query=query.clone()/> }).collect_view()}
                </div>
            </div>
            {card.map(|c| view! { <InsightCard card=c compact=true/> })}
        </article>
    }
}

/// The period picker: a plain GET form, so a view is a link (`/?period=month`).
#[component]
pub fn PeriodPicker(choice: PeriodChoice, action: String) -> impl IntoView {
    let period = choice.period.clone().unwrap_or_default();
    let compare = choice.compare.clone().unwrap_or_default();
    let grains = [
        ("", "Latest (default)"),
        ("week", "Latest week"),
        ("month", "Latest month"),
        ("quarter", "Latest quarter"),
        ("year", "Latest year"),
    ];
    let custom = !grains.iter().any(|(k, _)| *k == period);
    view! {
        <form class="period-picker" method="get" action=action>
            <label>"Period "
                <select name="period">
                    {grains.iter().map(|(k, label)| view! { <option value=*k selected=period == *k>{*label}</option> }).collect_view()}
                    {custom.then(|| view! { <option value=period.clone() selected=true>{period.clone()}</option> })}
                </select>
            </label>
            <label>" compared with "
                <select name="compare">
                    <option value="previous" selected=compare != "year_ago">"the period before"</option>
                    <option value="year_ago" selected=compare == "year_ago">"a year ago"</option>
                </select>
            </label>
            <button type="submit">"Show"</button>
        </form>
    }
}

/// The page's period choice from its URL query.
pub fn choice_from_query() -> Memo<PeriodChoice> {
    let query = use_query_map();
    Memo::new(move |_| {
        query.with(|q| PeriodChoice {
            period: q.get("period").filter(|p| !p.is_empty()),
            compare: q.get("compare").filter(|c| !c.is_empty()),
        })
    })
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let choice = choice_from_query();
    let dashboard = Resource::new(
        move || choice.get(),
        |view| get_dashboard(DashboardQuery { view }),
    );
    view! {
        // Cards update in place as run jobs finish: the page keeps showing the current
        // dashboard while the next one loads (Transition, not Suspense).
        <RunProgress on_jobs_finished=move |_| dashboard.refetch()/>
        <Transition fallback=|| view! { <p class="loading">"Loading KPIs…"</p> }>
            {move || Suspend::new(async move {
                match dashboard.await {
                    Ok(d) => {
                        let c = choice.get_untracked();
                        let query = c.query();
                        view! {
                        <div class="page-head">
                            <h1>{if d.reach.is_some() { "Your sites" } else { "Distribution network" }}</h1>
                            <p class="period">
                                {format!("{} ({} to {}) vs {} · as of {}", d.period.label, d.period.start, d.period.end, d.previous_period.label, d.as_of)}
                            </p>
                            <PeriodPicker choice=c action="/".to_string()/>
                        </div>
                        {(!d.stale_sources.is_empty()).then(|| view! {
                            <div class="stale-sources" role="status">
                                {d.stale_sources.iter().map(|s| view! {
                                    <p class="badge stale-badge" data-stale-source=s.name.clone()>
                                        {match s.age_hours {
                                            Some(h) => format!("Data from {} is {h:.1} h old: {}", s.name, s.error),
                                            None => format!("Data from {} has never arrived: {}", s.name, s.error),
                                        }}
                                        " "<a href="/sources">"Data sources"</a>
                                    </p>
                                }).collect_view()}
                            </div>
                        })}
                        <Row row=d.network network=true query=query.clone()/>
                        <h2 class="section">"Distribution centres"</h2>
                        {d.sites.into_iter().map(|r| view! { <Row row=r network=false query=query.clone()/> }).collect_view()}
                    }.into_any()},
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{format!("The dashboard could not be loaded: {e}")}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
