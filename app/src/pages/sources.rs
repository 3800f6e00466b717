//! Data sources: each source of the sources file with what it reads, its schedule, its
//! last sync (counts, duration, or why it failed) and, for editors, "Sync now". While a
//! sync runs the page polls, so the rows read climb and the outcome appears in place.
//! Connection strings stay on the server.

use crate::api::{get_sources, SyncSource};
use crate::domain::status::SyncStatus;
use crate::dto::{SourceView, SyncView};
use leptos::prelude::*;

/// How often the page asks again while a sync runs, in milliseconds.
const POLL_MS: u64 = 1_000;

fn when(t: &str) -> String {
    t.get(0..19).unwrap_or(t).replace('T', " ") + " UTC"
}

fn last_sync(s: &SyncView) -> String {
    match s.status {
        SyncStatus::Running => format!(
            "syncing since {} · {} rows read",
            when(&s.started_at),
            s.rows_read
        ),
        SyncStatus::Succeeded => format!(
            "{} · {} rows read{}, {} new, {} updated in {:.1} s",
            when(s.finished_at.as_deref().unwrap_or(&s.started_at)),
            s.rows_read,
            if s.bytes_read > 0 {
                format!(" ({:.1} MB)", s.bytes_read as f64 / 1e6)
            } else {
                String::new()
            },
            s.inserted,
            s.updated,
            s.duration_ms.unwrap_or(0) as f64 / 1000.0
        ),
        _ => format!(
            "{} · {}",
            when(s.finished_at.as_deref().unwrap_or(&s.started_at)),
            s.error.as_deref().unwrap_or("failed")
        ),
    }
}

fn row(s: SourceView, sync: ServerAction<SyncSource>) -> impl IntoView {
    let name = s.name.clone();
    let state = match (&s.last_sync, &s.last_error) {
        (Some(l), _) if l.status == SyncStatus::Running => "running",
        (_, Some(_)) => "failing",
        (Some(_), None) => "ok",
        (None, None) => "never",
    };
    let freshness = match (s.age_hours, &s.last_error) {
        (Some(h), Some(e)) => format!("data is {h:.1} h old: {e}"),
        (None, Some(e)) => format!("never synced: {e}"),
        (Some(h), None) => format!("synced {h:.1} h ago"),
        (None, None) => "never synced".to_string(),
    };
    view! {
        <tr data-source=s.name.clone() class=format!("source {state}")>
            <td><strong>{s.name.clone()}</strong><div class="hint">{format!("{} · {}{}", s.kind, s.reads, if s.pushdown { " · tallies pushed down" } else { "" })}</div></td>
            <td>{s.schedule.clone().unwrap_or_else(|| "on demand".into())}
                <div class="hint">{match &s.watermark_column {
                    Some(w) => format!("rows from watermark {w}{}", s.watermark.as_deref().map(|v| format!(" ≥ {v}")).unwrap_or_default()),
                    None => format!("lines due in the last {} days", s.window_days),
                }}</div></td>
            <td class="freshness">{freshness}</td>
            <td class="last-sync">{s.last_sync.as_ref().map(last_sync).unwrap_or_default()}</td>
            <td>{crate::app::can(crate::domain::access::Role::Editor).then(|| view! {
                <button class="sync-now" disabled=move || sync.pending().get() || state == "running"
                    on:click=move |_| { sync.dispatch(SyncSource { name: name.clone() }); }>"Sync now"</button>
            })}</td>
        </tr>
    }
}

#[component]
pub fn SourcesPage() -> impl IntoView {
    let tick = RwSignal::new(0u64);
    let sync = ServerAction::<SyncSource>::new();
    let page = Resource::new(
        move || (tick.get(), sync.version().get()),
        |_| get_sources(),
    );
    // Browser only (effects do not run on the server): poll while a sync runs.
    Effect::new(move |_| {
        let running = page.get().and_then(|r| r.ok()).is_some_and(|list| {
            list.iter().any(|s| {
                s.last_sync
                    .as_ref()
                    .is_some_and(|l| l.status == SyncStatus::Running)
            })
        });
        if running {
            set_timeout(
                move || tick.update(|t| *t += 1),
                std::time::Duration::from_millis(POLL_MS),
            );
        }
    });
    view! {
        <div class="page-head">
            <h1>"Data sources"</h1>
            <p class="hint">"Order lines synced from where they live into the metric store, all or nothing: a failed sync keeps the last good data (the overview says which source is behind). Sources are defined in the sources file (OPSIGHT_SOURCES_FILE); connection strings stay in the server's environment."</p>
            {move || sync.value().get().and_then(|r| r.err()).map(|e| view! { <span class="badge error-badge">{e.to_string()}</span> })}
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading sources…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No data source is configured: order lines arrive with opsight import orders FILE.csv. See README, Data sources."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="sources">
                            <thead><tr><th>"Source"</th><th>"Schedule"</th><th>"Data"</th><th>"Last sync"</th><th></th></tr></thead>
                            <tbody>{list.into_iter().map(|s| row(s, sync)).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{format!("The sources could not be loaded: {e}")}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
