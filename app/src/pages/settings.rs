//! Settings: the configured agents, what each does (cards, questions), its model
//! version, and its health: reachable, latency, last error, circuit breaker.

use crate::api::get_agents;
use crate::dto::AgentStatus;
use leptos::prelude::*;

#[component]
fn AgentRow(a: AgentStatus) -> impl IntoView {
    let health = match a.reachable {
        Some(true) => "reachable".to_string(),
        Some(false) => "unreachable".to_string(),
        None => "not checked yet".to_string(),
    };
    view! {
        <tr data-agent=a.name.clone() class=format!("health-{}", a.reachable.map_or("unknown", |r| if r { "ok" } else { "down" }))>
            <td><strong>{a.name.clone()}</strong><div class="roles">{a.roles.join(", ")}</div></td>
            <td>{a.kind.clone()}</td>
            <td class="endpoint">{a.endpoint.clone()}</td>
            <td>{a.model.clone().map(|m| format!("{m} → version {}", a.model_version.clone().unwrap_or_else(|| "?".into()))).unwrap_or_else(|| "—".into())}</td>
            <td class="health">{health}{a.latency_ms.map(|ms| format!(" · {ms} ms"))}</td>
            <td class="breaker">{a.breaker.to_string()}</td>
            <td class="last-error">{a.last_error.clone().map(|e| format!("{e} ({})", a.last_error_at.clone().unwrap_or_default().get(0..19).unwrap_or_default().replace('T', " "))).unwrap_or_else(|| "—".into())}</td>
            <td>{format!("{} s · {} at once · token {}", a.timeout_secs, a.max_concurrency, if a.token_configured { "set" } else { "none" })}</td>
        </tr>
    }
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let check = RwSignal::new(false);
    let agents = Resource::new(
        move || check.get(),
        |check| get_agents(crate::dto::AgentsQuery { check: Some(check) }),
    );
    view! {
        <div class="page-head">
            <h1>"Agents"</h1>
            <p class="hint">"Configured in opsight-agents.toml or AGENT_* variables. Tokens stay on the server."</p>
            <button class="check-now" on:click=move |_| { check.set(true); agents.refetch(); }>"Check now"</button>
        </div>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match agents.await {
                    Ok(list) => view! {
                        <table class="agents">
                            <thead><tr><th>"agent"</th><th>"kind"</th><th>"endpoint"</th><th>"model"</th>
                                <th>"health"</th><th>"breaker"</th><th>"last error"</th><th>"limits"</th></tr></thead>
                            <tbody>{list.into_iter().map(|a| view! { <AgentRow a/> }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
