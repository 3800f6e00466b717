//! Refresh runs on the dashboard: a live progress bar per running run (done / unchanged /
//! failed of total, ETA), and buttons to start one. The browser polls the runs every
//! 1.5 s (any replica may be executing them, so the database is the source of truth) and
//! tells the page when jobs finish, so cards update without a reload.

use crate::api::{list_runs, StartRun};
use crate::domain::status::{RunOrigin, RunStatus};
use crate::dto::{RunRequest, RunView, RunsQuery};
use leptos::prelude::*;

/// How often the browser asks for progress, in milliseconds.
const POLL_MS: u64 = 1500;

fn pct(part: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// "1 min 5 s", "12 s".
pub fn duration_text(secs: f64) -> String {
    let s = secs.round() as i64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{:.1} s", secs.max(0.0))
    }
}

#[component]
pub fn RunBar(run: RunView) -> AnyView {
    let finished = run.finished_jobs();
    let origin = match (run.origin, &run.schedule_name) {
        (RunOrigin::Schedule, Some(name)) => format!("schedule “{name}”"),
        (o, _) => o.to_string(),
    };
    let eta = run
        .eta_secs
        .map(|e| format!(" · about {} left", duration_text(e)))
        .unwrap_or_default();
    let state = if run.status == RunStatus::Running {
        format!("{finished} of {} cards{eta}", run.total)
    } else {
        format!(
            "finished {finished} of {} cards in {}",
            run.total,
            duration_text(run.duration_secs)
        )
    };
    view! {
        <div class="run-progress" data-run=run.id.clone() data-status=run.status.to_string()
            data-done=run.done data-unchanged=run.unchanged data-failed=run.failed data-total=run.total>
            <div class="run-label">
                <strong>{format!("Refreshing {}", run.scope_label)}</strong>
                <span class="run-origin">{format!(" ({origin})")}</span>
                <span class="run-state">{format!(" · {state}")}</span>
                <a class="run-link" href=format!("/runs/{}", run.id)>"details"</a>
            </div>
            <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax=run.total aria-valuenow=finished>
                <span class="seg done" style=format!("width:{:.2}%", pct(run.done, run.total))></span>
                <span class="seg unchanged" style=format!("width:{:.2}%", pct(run.unchanged, run.total))></span>
                <span class="seg failed" style=format!("width:{:.2}%", pct(run.failed, run.total))></span>
            </div>
            <div class="run-counts">
                {format!("{} refreshed · {} unchanged (no agent call) · {} failed · {} waiting",
                    run.done, run.unchanged, run.failed, run.queued + run.running)}
            </div>
        </div>
    }
    .into_any()
}

/// The progress bars of active runs and the run buttons. `on_jobs_finished` runs when jobs
/// made new insights (the page refetches its cards).
#[component]
pub fn RunProgress(#[prop(into)] on_jobs_finished: Callback<()>) -> AnyView {
    let tick = RwSignal::new(0u64);
    // Browser only (effects do not run on the server).
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_millis(POLL_MS),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let runs = Resource::new(
        move || tick.get(),
        |_| {
            list_runs(RunsQuery {
                active: Some(true),
                limit: None,
            })
        },
    );
    let start = ServerAction::<StartRun>::new();
    // Refetch the cards only when jobs made new insights (not for unchanged or failed
    // jobs, nor when a finished run leaves the list), so open forms and streamed answers
    // on the page survive while a run goes on. Keyed by run, as runs come and go.
    let seen = StoredValue::new(None::<std::collections::HashMap<String, i64>>);
    Effect::new(move |_| {
        if let Some(Ok(list)) = runs.get() {
            let mut changed = false;
            seen.update_value(|seen| {
                // The first answer is what the page was rendered with: nothing to refetch.
                let first = seen.is_none();
                let seen = seen.get_or_insert_with(Default::default);
                for run in &list {
                    let before = seen.insert(run.id.clone(), run.done);
                    changed |= !first && run.done > before.unwrap_or(0);
                }
            });
            if changed {
                on_jobs_finished.run(());
            }
        }
    });
    Effect::new(move |_| {
        if start.value().get().is_some() {
            tick.update(|t| *t += 1);
        }
    });
    let run_scope = move |scope: &'static str| {
        move |_| {
            start.dispatch(StartRun::from(RunRequest {
                scope: scope.to_string(),
                scope_value: None,
                force: false,
                view: Default::default(),
            }));
        }
    };
    view! {
        <section class="runs-live">
            {crate::app::can(crate::domain::access::Role::Editor).then(|| view! {
            <div class="run-buttons">
                <button class="run-flagged" on:click=run_scope("flagged") disabled=move || start.pending().get()>
                    "Refresh flagged cards"
                </button>
                <button class="run-all" on:click=run_scope("all") disabled=move || start.pending().get()>
                    "Refresh all cards"
                </button>
                <a href="/runs">"Run history"</a>
                <a href="/schedules">"Schedules"</a>
            </div>
            })}
            {move || start.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="badge error-badge">{format!("The run could not start: {e}")}</p>
            })}
            <Transition fallback=|| ()>
                {move || runs.get().and_then(|r| r.ok()).map(|list| {
                    list.into_iter().map(|run| view! { <RunBar run/> }).collect_view()
                })}
            </Transition>
        </section>
    }
    .into_any()
}
