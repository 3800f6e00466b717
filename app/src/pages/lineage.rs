//! Where an insight came from: agent, kind, endpoint, model version, trace id, evidence
//! hash, rules version, latency, tokens, and the exact request and reply bodies.

use crate::api::get_lineage;
use crate::dto::LineagePage;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
fn Lineage(page: LineagePage) -> impl IntoView {
    let l = page.lineage;
    let row = |k: &'static str, v: String| view! { <tr><th>{k}</th><td>{v}</td></tr> };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let tokens = match (l.input_tokens, l.output_tokens) {
        (None, None) => "not reported".to_string(),
        (i, o) => format!(
            "{} in, {} out",
            i.map_or("?".into(), |n| n.to_string()),
            o.map_or("?".into(), |n| n.to_string())
        ),
    };
    view! {
        <div class="page-head">
            <p class="crumbs"><a href="/">"Overview"</a>" / lineage"</p>
            <h1>{page.insight.as_ref().map(|i| i.headline.clone()).unwrap_or_else(|| format!("Agent call {}", l.id))}</h1>
        </div>
        <section>
            <table class="lineage">
                <tbody>
                    {row("id", l.id.clone())}
                    {row("status", match &l.error { Some(e) => format!("{}: {e}", l.status), None => l.status.to_string() })}
                    {row("created", l.created_at.clone())}
                    {row("agent", l.agent.clone())}
                    {row("kind", l.kind.clone())}
                    {row("endpoint", l.endpoint.clone())}
                    {row("model", opt(l.model.clone()))}
                    {row("model version", opt(l.model_version.clone()))}
                    {row("trace id", opt(l.trace_id.clone()))}
                    {row("evidence hash", l.evidence_hash.clone())}
                    {row("rules version", l.rules_version.to_string())}
                    {row("latency", format!("{} ms over {} attempt(s)", l.latency_ms, l.attempts))}
                    {row("tokens", tokens)}
                    {row("claims checked", match (l.claims_checked, l.claims_unsupported) {
                        (Some(n), Some(0)) => format!("{n}, all supported by the evidence"),
                        (Some(n), Some(bad)) => format!("{n}, {bad} not supported by the evidence"),
                        _ => "—".to_string(),
                    })}
                </tbody>
            </table>
        </section>
        <section>
            <h2>"Feedback"</h2>
            {if page.feedback.is_empty() {
                view! { <p class="empty">"None yet."</p> }.into_any()
            } else {
                view! { <ul>{page.feedback.into_iter().map(|f| view! {
                    <li>{format!("{} {} · {}{}", if f.helpful { "✓ useful" } else { "✗ not useful" }, f.created_at.get(0..16).unwrap_or_default().replace('T', " "),
                        f.mlflow_state, f.reason.map(|r| format!(" · {r}")).unwrap_or_default())}</li>
                }).collect_view()}</ul> }.into_any()
            }}
        </section>
        <section><h2>"Request"</h2><pre class="body">{l.request_json}</pre></section>
        <section><h2>"Reply"</h2><pre class="body">{l.response_body.unwrap_or_else(|| "(no reply)".into())}</pre></section>
    }
}

#[component]
pub fn LineagePage() -> impl IntoView {
    let params = use_params_map();
    let page = Resource::new(
        move || params.with(|p| p.get("id").unwrap_or_default()),
        get_lineage,
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <Lineage page/> }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
