//! Schedules: cron expressions (as in crontab) with a time zone and a scope. Create, edit,
//! pause, resume, run now, delete; the editor validates the expression as you type and
//! previews its next five ticks in the schedule's time zone.

use crate::api::{
    list_schedules, preview_schedule, CreateSchedule, DeleteSchedule, RunScheduleNow,
    SetScheduleEnabled, UpdateSchedule,
};
use crate::domain::kpi::Metric;
use crate::dto::{ScheduleInput, ScheduleView};
use leptos::prelude::*;

/// Zones offered in the editor; any IANA name may be typed.
const ZONES: [&str; 10] = [
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
];

fn blank() -> ScheduleInput {
    ScheduleInput {
        name: String::new(),
        cron: "0 6 * * 1-5".into(),
        timezone: "UTC".into(),
        scope: "flagged".into(),
        scope_value: None,
        catch_up: "once".into(),
        enabled: true,
        view: Default::default(),
    }
}

/// The editor: `editing` holds (id, input) for an existing schedule, or (None, input).
#[component]
fn Editor(editing: RwSignal<(Option<String>, ScheduleInput)>, saved: Callback<()>) -> AnyView {
    // A new schedule is created, an existing one replaced: two operations, one form.
    let create = ServerAction::<CreateSchedule>::new();
    let update = ServerAction::<UpdateSchedule>::new();
    let saved_result = move || create.value().get().or_else(|| update.value().get());
    let pending = move || create.pending().get() || update.pending().get();
    let field = move |f: fn(&mut ScheduleInput, String)| {
        move |ev: leptos::ev::Event| {
            let v = event_target_value(&ev);
            editing.update(|(_, i)| f(i, v));
        }
    };
    // The preview follows the expression and zone as they are typed.
    let preview = Resource::new(
        move || {
            let (_, i) = editing.get();
            (i.cron, i.timezone)
        },
        |(cron, timezone)| preview_schedule(crate::dto::PreviewRequest { cron, timezone }),
    );
    Effect::new(move |_| {
        if let Some(Ok(_)) = saved_result() {
            editing.set((None, blank()));
            create.value().set(None);
            update.value().set(None);
            saved.run(());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        create.value().set(None);
        update.value().set(None);
        match editing.get_untracked() {
            (Some(id), input) => {
                update.dispatch(UpdateSchedule { id, input });
            }
            (None, input) => {
                create.dispatch(CreateSchedule { input });
            }
        }
    };
    let scope_needs_value = move || matches!(editing.get().1.scope.as_str(), "site" | "metric");
    view! {
        <form class="schedule-editor" on:submit=submit>
            <h2>{move || if editing.get().0.is_some() { "Edit schedule" } else { "New schedule" }}</h2>
            <label>"Name"
                <input name="name" required maxlength="80" prop:value=move || editing.get().1.name
                    on:input=field(|i, v| i.name = v)/>
            </label>
            <label>"Cron (crontab: minute hour day month weekday; Sunday is 0 or 7)"
                <input name="cron" class="cron" required prop:value=move || editing.get().1.cron
                    on:input=field(|i, v| i.cron = v)/>
            </label>
            <label>"Time zone"
                <input name="timezone" list="zones" prop:value=move || editing.get().1.timezone
                    on:input=field(|i, v| i.timezone = v)/>
                <datalist id="zones">{ZONES.iter().map(|z| view! { <option value=*z/> }).collect_view()}</datalist>
            </label>
            <label>"What"
                <select name="scope" prop:value=move || editing.get().1.scope on:change=field(|i, v| i.scope = v)>
                    <option value="flagged">"Flagged cards (off target or triggered)"</option>
                    <option value="all">"All cards"</option>
                    <option value="site">"One site"</option>
                    <option value="metric">"One metric"</option>
                    <option value="digest">"Send the digest (no refresh)"</option>
                </select>
            </label>
            <Show when=scope_needs_value>
                <label>{move || if editing.get().1.scope == "site" { "Site code (or network)" } else { "Metric" }}
                    <input name="scope_value" list="metrics"
                        prop:value=move || editing.get().1.scope_value.unwrap_or_default()
                        on:input=field(|i, v| i.scope_value = Some(v))/>
                    <datalist id="metrics">{Metric::all().iter().map(|m| view! { <option value=m.key()/> }).collect_view()}</datalist>
                </label>
            </Show>
            <label>"If ticks were missed while Opsight was down"
                <select name="catch_up" prop:value=move || editing.get().1.catch_up on:change=field(|i, v| i.catch_up = v)>
                    <option value="once">"run once when back"</option>
                    <option value="skip">"skip them"</option>
                </select>
            </label>
            <div class="preview">
                <Transition fallback=|| ()>
                    {move || preview.get().map(|p| match p.map_err(|e| e.to_string()).and_then(|p| match p.error {
                        Some(e) => Err(e),
                        None => Ok(p.upcoming),
                    }) {
                        Ok(times) => view! {
                            <div class="next-runs"><h3>"Next runs"</h3>
                                <ol>{times.into_iter().map(|t| view! { <li>{t}</li> }).collect_view()}</ol></div>
                        }.into_any(),
                        Err(e) => view! { <p class="badge error-badge cron-error">{e}</p> }.into_any(),
                    })}
                </Transition>
            </div>
            {move || saved_result().and_then(|r| r.err()).map(|e| view! {
                <p class="badge error-badge save-error">{e.to_string()}</p>
            })}
            <div class="editor-buttons">
                <button type="submit" class="save" disabled=pending>"Save"</button>
                <button type="button" on:click=move |_| editing.set((None, blank()))>"Clear"</button>
            </div>
        </form>
    }
    .into_any()
}

#[component]
fn Row(
    s: ScheduleView,
    editing: RwSignal<(Option<String>, ScheduleInput)>,
    changed: Callback<()>,
) -> AnyView {
    let toggle = ServerAction::<SetScheduleEnabled>::new();
    let delete = ServerAction::<DeleteSchedule>::new();
    let run_now = ServerAction::<RunScheduleNow>::new();
    Effect::new(move |_| {
        // Read both before deciding: `||` would stop tracking the second once the first is set.
        let (toggled, deleted) = (
            toggle.value().get().is_some(),
            delete.value().get().is_some(),
        );
        if toggled || deleted {
            changed.run(());
        }
    });
    let (id, enabled, input) = (s.id.clone(), s.input.enabled, s.input.clone());
    let (id2, id3, id4) = (id.clone(), id.clone(), id.clone());
    view! {
        <tr data-schedule=s.input.name.clone() class=if enabled { "enabled" } else { "paused" }>
            <td><strong>{s.input.name.clone()}</strong>
                <div class="state">{if enabled { "active" } else { "paused" }}</div></td>
            <td><code>{s.input.cron.clone()}</code><div class="tz">{s.input.timezone.clone()}</div></td>
            <td>{s.scope_label.clone()}</td>
            <td>{if s.input.catch_up == "once" { "run once" } else { "skip" }}</td>
            <td class="upcoming">
                {if s.upcoming.is_empty() { view! { <span>"—"</span> }.into_any() } else {
                    view! { <ol>{s.upcoming.iter().map(|t| view! { <li>{t.clone()}</li> }).collect_view()}</ol> }.into_any()
                }}
            </td>
            <td>{s.last_fire_at.clone().map(|t| t.get(0..19).unwrap_or_default().replace('T', " ") + " UTC").unwrap_or_else(|| "never".into())}</td>
            <td class="row-buttons">
                {crate::app::can(crate::domain::access::Role::Editor).then(|| view! {
                <button class="toggle" on:click=move |_| { toggle.dispatch(SetScheduleEnabled { id: id.clone(), input: crate::dto::ScheduleSwitch { enabled: !enabled } }); }>
                    {if enabled { "Pause" } else { "Resume" }}
                </button>
                {(s.input.scope != "digest").then(|| view! {
                    <button class="run-now" on:click=move |_| { run_now.dispatch(RunScheduleNow { id: id2.clone() }); }>"Run now"</button>
                })}
                <button class="edit" on:click=move |_| editing.set((Some(id3.clone()), input.clone()))>"Edit"</button>
                <button class="delete" on:click=move |_| { delete.dispatch(DeleteSchedule { id: id4.clone() }); }>"Delete"</button>
                })}
                {move || run_now.value().get().map(|r| match r {
                    Ok(run) => view! { <a class="started" href=format!("/runs/{}", run.id)>{format!("started: {} cards", run.total)}</a> }.into_any(),
                    Err(e) => view! { <span class="badge error-badge">{e.to_string()}</span> }.into_any(),
                })}
            </td>
        </tr>
    }
    .into_any()
}

#[component]
pub fn SchedulesPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let schedules = Resource::new(move || version.get(), |_| list_schedules());
    let editing = RwSignal::new((None::<String>, blank()));
    let changed = Callback::new(move |_| version.update(|v| *v += 1));
    view! {
        <div class="page-head">
            <h1>"Schedules"</h1>
            <p class="hint">"Cards are refreshed on these schedules by whichever Opsight replica sees the tick first; cards whose data, rules and agent are unchanged are not sent to the agent again."</p>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || schedules.get().map(|r| match r {
                Ok(list) if list.is_empty() => view! { <p class="empty">"No schedules yet."</p> }.into_any(),
                Ok(list) => view! {
                    <table class="schedules">
                        <thead><tr><th>"schedule"</th><th>"cron"</th><th>"cards"</th><th>"missed ticks"</th>
                            <th>"next runs"</th><th>"last tick"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(|s| view! { <Row s editing changed/> }).collect_view()}</tbody>
                    </table>
                }.into_any(),
                Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        {crate::app::can(crate::domain::access::Role::Editor).then(|| view! { <Editor editing saved=changed/> })}
    }
}
