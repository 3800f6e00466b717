//! Run history (`/runs`): every run with its origin, scope, counts and duration; and one
//! run's jobs (`/runs/:id`): which replica did each card, attempts, errors, insights.

use crate::api::{get_run, list_runs};
use crate::components::runs::{duration_text, RunBar};
use crate::domain::status::RunOrigin;
use crate::dto::{JobView, RunView, RunsQuery};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

fn when(ts: &str) -> String {
    ts.get(0..19).unwrap_or_default().replace('T', " ") + " UTC"
}

#[component]
fn HistoryRow(run: RunView) -> AnyView {
    let origin = match (run.origin, &run.schedule_name) {
        (RunOrigin::Schedule, Some(name)) => format!("schedule “{name}”"),
        (o, _) => o.to_string(),
    };
    view! {
        <tr data-run=run.id.clone() class=format!("run-{}", run.status)>
            <td><a href=format!("/runs/{}", run.id)>{when(&run.created_at)}</a>
                {run.scheduled_for.as_deref().map(|t| view! { <div class="tick">{format!("tick {}", when(t))}</div> })}</td>
            <td>{origin}</td>
            <td>{run.scope_label.clone()}{run.force.then_some(" (forced)")}</td>
            <td class="status">{run.status.to_string()}</td>
            <td class="num">{run.total}</td>
            <td class="num done">{run.done}</td>
            <td class="num unchanged">{run.unchanged}</td>
            <td class="num failed">{run.failed}</td>
            <td class="num">{duration_text(run.duration_secs)}</td>
            <td class="note">{run.note.clone().unwrap_or_default()}</td>
        </tr>
    }
    .into_any()
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let runs = Resource::new(|| (), |_| list_runs(RunsQuery::default()));
    view! {
        <div class="page-head">
            <h1>"Run history"</h1>
            <p class="hint">"Scheduled and on-demand refreshes, latest first. Unchanged cards made no agent call."</p>
        </div>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No runs yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="runs">
                            <thead><tr><th>"started"</th><th>"by"</th><th>"cards"</th><th>"status"</th>
                                <th>"jobs"</th><th>"refreshed"</th><th>"unchanged"</th><th>"failed"</th>
                                <th>"duration"</th><th>"note"</th></tr></thead>
                            <tbody>{list.into_iter().map(|run| view! { <HistoryRow run/> }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn JobRow(job: JobView) -> AnyView {
    view! {
        <tr data-job=job.id.clone() class=format!("job-{}", job.status)>
            <td>{format!("{} · {}", job.site, job.metric.label())}</td>
            <td class="status">{job.status.to_string()}</td>
            <td class="num">{job.attempts}</td>
            <td class="replica">{job.claimed_by.clone().unwrap_or_default()}</td>
            <td>{job.finished_at.as_deref().map(when).unwrap_or_default()}</td>
            <td>{job.insight_id.clone().map(|id| view! { <a href=format!("/insights/{id}/lineage")>"lineage"</a> })}</td>
            <td class="error">{job.error.clone().unwrap_or_default()}</td>
        </tr>
    }
    .into_any()
}

#[component]
pub fn RunDetailPage() -> impl IntoView {
    let params = use_params_map();
    let run = Resource::new(move || params.read().get("id").unwrap_or_default(), get_run);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Ok(d) => view! {
                        <div class="page-head">
                            <h1>"Run"</h1>
                            <p class="period"><a href="/runs">"← run history"</a></p>
                        </div>
                        <RunBar run=d.run.clone()/>
                        {d.run.note.clone().map(|n| view! { <p class="note">{n}</p> })}
                        <table class="jobs">
                            <thead><tr><th>"card"</th><th>"status"</th><th>"attempts"</th><th>"replica"</th>
                                <th>"finished"</th><th>"insight"</th><th>"error"</th></tr></thead>
                            <tbody>{d.jobs.into_iter().map(|job| view! { <JobRow job/> }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
