//! Overview: live refresh runs, the network summary, then one row per DC with KPI tiles
//! and the OTIF insight card next to them.

use crate::api::get_dashboard;
use crate::components::insight_card::InsightCard;
use crate::components::runs::RunProgress;
use crate::components::tile::KpiTile;
use crate::domain::kpi::Metric;
use crate::dto::SiteRow;
use leptos::prelude::*;

#[component]
fn Row(row: SiteRow, network: bool) -> impl IntoView {
    let card = row.card(Metric::Otif).cloned();
    let site = row.site.clone();
    let class = if network {
        "site-row network"
    } else {
        "site-row"
    };
    view! {
        <article class=class data-site=row.site.clone()>
            <div class="site-kpis">
                <h2><a href=format!("/kpi/{}/otif", row.site)>{row.name.clone()}</a>
                    {(!network).then(|| view! { <span class="code">{row.site.clone()}</span> })}
                </h2>
                <div class="tiles">
                    {row.tiles.into_iter().map(|t| view! { <KpiTile tile=t site=site.clone()/> }).collect_view()}
                </div>
            </div>
            {card.map(|c| view! { <InsightCard card=c compact=true/> })}
        </article>
    }
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let dashboard = Resource::new(|| (), |_| get_dashboard());
    view! {
        // Cards update in place as run jobs finish: the page keeps showing the current
        // dashboard while the next one loads (Transition, not Suspense).
        <RunProgress on_jobs_finished=move |_| dashboard.refetch()/>
        <Transition fallback=|| view! { <p class="loading">"Loading KPIs…"</p> }>
            {move || Suspend::new(async move {
                match dashboard.await {
                    Ok(d) => view! {
                        <div class="page-head">
                            <h1>"Distribution network"</h1>
                            <p class="period">
                                {format!("Week {} ({} to {}) vs {} · as of {}", d.period.label, d.period.start, d.period.end, d.previous_period.label, d.as_of)}
                            </p>
                        </div>
                        <Row row=d.network network=true/>
                        <h2 class="section">"Distribution centres"</h2>
                        {d.sites.into_iter().map(|r| view! { <Row row=r network=false/> }).collect_view()}
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge">{format!("The dashboard could not be loaded: {e}")}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
