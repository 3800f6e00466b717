//! The business rules, read-only (editing comes later): KPI definitions, targets,
//! thresholds, triggers, parameters and playbooks. All of it is sent with every agent
//! request.

use crate::api::get_rules;
use leptos::prelude::*;

#[component]
pub fn RulesPage() -> impl IntoView {
    let rules = Resource::new(|| (), |_| get_rules());
    view! {
        <div class="page-head"><h1>"Business rules"</h1></div>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match rules.await {
                    Ok(v) => view! {
                        <p class="period">{format!("Rules version {}", v.rules.version)}</p>
                        <section><h2>"KPI definitions"</h2><table class="rules">
                            <thead><tr><th>"KPI"</th><th>"definition"</th><th>"unit"</th></tr></thead>
                            <tbody>{v.metrics.into_iter().map(|m| view! {
                                <tr><td>{m.name}</td><td>{m.definition}</td><td>{m.unit}</td></tr>
                            }).collect_view()}</tbody></table></section>
                        <section><h2>"Targets"</h2><table class="rules">
                            <thead><tr><th>"KPI"</th><th>"site"</th><th>"target"</th></tr></thead>
                            <tbody>{v.rules.targets.into_iter().map(|t| view! {
                                <tr><td>{t.metric}</td><td>{if t.site == "*" { "all sites".to_string() } else { t.site }}</td><td>{format!("{:.1}", t.target)}</td></tr>
                            }).collect_view()}</tbody></table></section>
                        <section><h2>"Thresholds, triggers and parameters"</h2><table class="rules">
                            <thead><tr><th>"rule"</th><th>"kind"</th><th>"KPI"</th><th>"value"</th><th>"meaning"</th></tr></thead>
                            <tbody>{v.rules.entries.into_iter().map(|r| view! {
                                <tr><td>{r.key}</td><td>{r.kind}</td><td>{r.metric.unwrap_or_else(|| "all".into())}</td><td>{r.value}</td><td>{r.description}</td></tr>
                            }).collect_view()}</tbody></table></section>
                        <section><h2>"Playbooks"</h2><table class="rules">
                            <thead><tr><th>"cause"</th><th>"next action"</th><th>"owner"</th><th>"priority"</th></tr></thead>
                            <tbody>{v.rules.playbooks.into_iter().map(|p| view! {
                                <tr><td>{p.cause}</td><td>{p.action}</td><td>{p.owner}</td><td>{p.priority}</td></tr>
                            }).collect_view()}</tbody></table></section>
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
