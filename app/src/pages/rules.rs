//! The business rules and their editor: KPI definitions, targets, thresholds, anomaly
//! sensitivity, parameters, triggers and playbooks. Every row can be edited and disabled;
//! per-KPI overrides, custom parameters, targets, triggers and playbooks can be added and
//! deleted. The form is checked as you type by the same code the server runs on save
//! ([`crate::domain::rulebook::check`]); each save is a new rules version, which marks
//! earlier insights stale.

use crate::api::{get_rules, EditRules};
use crate::domain::kpi::Metric;
use crate::domain::rulebook::{
    self, known_rule, EditOp, Problem, RuleEdit, RuleItem, DIMENSIONS, KINDS, PRIORITIES,
};
use crate::domain::rules::{Condition, Playbook, RuleEntry, Rules, Target, Trigger};
use crate::dto::RulesView;
use leptos::prelude::*;

type Editing = RwSignal<Option<(EditOp, RuleItem)>>;

fn blank_rule() -> RuleItem {
    RuleItem::Rule(RuleEntry {
        key: "anomaly_z.otif".into(),
        kind: "sensitivity".into(),
        metric: Some("otif".into()),
        value: 3.5,
        description: String::new(),
        enabled: true,
    })
}

fn blank_target() -> RuleItem {
    RuleItem::Target(Target {
        metric: "otif".into(),
        site: String::new(),
        target: 95.0,
        enabled: true,
    })
}

fn blank_trigger() -> RuleItem {
    RuleItem::Trigger(Trigger {
        key: String::new(),
        metric: "otif".into(),
        condition: Condition::BelowTarget,
        value: 1.0,
        periods: 3,
        description: String::new(),
        enabled: true,
    })
}

fn blank_playbook() -> RuleItem {
    RuleItem::Playbook(Playbook {
        key: String::new(),
        cause: "reason:".into(),
        action: String::new(),
        owner: String::new(),
        priority: "medium".into(),
        enabled: true,
    })
}

// Accessors for the row the form edits (the form edits one kind of row; the default is
// never seen).
fn rule_of(i: &RuleItem) -> RuleEntry {
    match i {
        RuleItem::Rule(e) => e.clone(),
        _ => RuleEntry::default(),
    }
}
fn target_of(i: &RuleItem) -> Target {
    match i {
        RuleItem::Target(t) => t.clone(),
        _ => Target::default(),
    }
}
fn trigger_of(i: &RuleItem) -> Trigger {
    match i {
        RuleItem::Trigger(t) => t.clone(),
        _ => Trigger::default(),
    }
}
fn playbook_of(i: &RuleItem) -> Playbook {
    match i {
        RuleItem::Playbook(p) => p.clone(),
        _ => Playbook::default(),
    }
}

/// A text field bound to one part of the item being edited.
fn text_field(
    item: RwSignal<RuleItem>,
    problems: Memo<Vec<Problem>>,
    field: &'static str,
    label: &'static str,
    get: fn(&RuleItem) -> String,
    set: fn(&mut RuleItem, String),
    locked: bool,
) -> AnyView {
    // What was typed is shown as typed: re-rendering the parsed number would turn "2." into
    // "2" (and "2.5" into "25") while typing.
    let typed = RwSignal::new(None::<String>);
    // Fields with suggestions name their datalist after themselves.
    let list = match field {
        "site" => Some("site-codes"),
        "cause" => Some("causes"),
        _ => None,
    };
    view! {
        <label class=move || if problems.get().iter().any(|p| p.field == field) { "invalid" } else { "" }>
            {label}
            <input name=field list=list prop:value=move || typed.get().unwrap_or_else(|| item.with(get)) disabled=locked
                on:input=move |ev| {
                    let v = event_target_value(&ev);
                    typed.set(Some(v.clone()));
                    item.update(|i| set(i, v));
                }/>
            {move || problems.get().into_iter().filter(|p| p.field == field).map(|p| view! {
                <span class="field-error">{p.message}</span>
            }).collect_view()}
        </label>
    }
    .into_any()
}

fn number(v: String) -> f64 {
    v.trim().parse().unwrap_or(f64::NAN)
}

/// A choice among fixed options.
fn select_field(
    item: RwSignal<RuleItem>,
    field: &'static str,
    label: &'static str,
    options: Vec<(String, String)>,
    get: fn(&RuleItem) -> String,
    set: fn(&mut RuleItem, String),
) -> AnyView {
    view! {
        <label>{label}
            <select name=field prop:value=move || item.with(get)
                on:change=move |ev| { let v = event_target_value(&ev); item.update(|i| set(i, v)); }>
                {options.into_iter().map(|(v, l)| view! { <option value=v>{l}</option> }).collect_view()}
            </select>
        </label>
    }
    .into_any()
}

fn metric_options(all: bool) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    if all {
        v.push((String::new(), "all KPIs".into()));
    }
    v.extend(
        Metric::all()
            .iter()
            .map(|m| (m.key().to_string(), m.label().to_string())),
    );
    v
}

fn plain(options: &[&str]) -> Vec<(String, String)> {
    options
        .iter()
        .map(|o| (o.to_string(), o.to_string()))
        .collect()
}

#[component]
fn Editor(editing: Editing, view: RulesView, saved: Callback<RulesView>) -> AnyView {
    let Some((op, start)) = editing.get_untracked() else {
        return ().into_any();
    };
    let item = RwSignal::new(start);
    let (rules, sites) = (view.rules.clone(), view.sites.clone());
    let problems = Memo::new(move |_| {
        rulebook::check(
            &rules,
            &RuleEdit {
                op,
                item: item.get(),
                expected_version: rules.version,
            },
            &sites,
        )
    });
    let save = ServerAction::<EditRules>::new();
    Effect::new(move |_| {
        if let Some(Ok(v)) = save.value().get() {
            save.value().set(None);
            editing.set(None);
            saved.run(v.view);
        }
    });
    let version = view.rules.version;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if problems.get_untracked().is_empty() {
            save.dispatch(EditRules {
                edit: RuleEdit {
                    op,
                    item: item.get_untracked(),
                    expected_version: version,
                },
            });
        }
    };
    let creating = op == EditOp::Create;
    let fields = match item.get_untracked() {
        RuleItem::Rule(_) => {
            let get = rule_of;
            fn with(i: &mut RuleItem, f: impl FnOnce(&mut RuleEntry)) {
                if let RuleItem::Rule(e) = i {
                    f(e)
                }
            }
            let meaning = move || {
                let e = item.with(get);
                known_rule(&e.key)
                    .map(|k| format!("{}: {} to {} ({})", k.kind, k.min, k.max, k.unit))
            };
            view! {
                {text_field(item, problems, "key", "Rule (name, or name.kpi for one KPI)", |i| rule_of(i).key, |i, v| with(i, |e| e.key = v.trim().to_string()), !creating)}
                {select_field(item, "kind", "Kind", plain(&KINDS), |i| rule_of(i).kind, |i, v| with(i, |e| e.kind = v))}
                {select_field(item, "metric", "KPI", metric_options(true), |i| rule_of(i).metric.unwrap_or_default(), |i, v| with(i, |e| e.metric = (!v.is_empty()).then_some(v)))}
                {text_field(item, problems, "value", "Value", |i| rule_of(i).value.to_string(), |i, v| with(i, |e| e.value = number(v)), false)}
                <p class="hint range">{meaning}</p>
                {text_field(item, problems, "description", "Meaning", |i| rule_of(i).description, |i, v| with(i, |e| e.description = v), false)}
            }
            .into_any()
        }
        RuleItem::Target(_) => {
            fn with(i: &mut RuleItem, f: impl FnOnce(&mut Target)) {
                if let RuleItem::Target(t) = i {
                    f(t)
                }
            }
            let sites = view.sites.clone();
            view! {
                {select_field(item, "metric", "KPI", metric_options(false), |i| target_of(i).metric, |i, v| with(i, |t| t.metric = v))}
                {text_field(item, problems, "site", "Site code (* for all sites)", |i| target_of(i).site, |i, v| with(i, |t| t.site = v.trim().to_string()), !creating)}
                <datalist id="site-codes">{sites.into_iter().map(|s| view! { <option value=s/> }).collect_view()}</datalist>
                {text_field(item, problems, "target", "Target (% for rates, lines for volume)", |i| target_of(i).target.to_string(), |i, v| with(i, |t| t.target = number(v)), false)}
            }
            .into_any()
        }
        RuleItem::Trigger(_) => {
            let get = trigger_of;
            fn with(i: &mut RuleItem, f: impl FnOnce(&mut Trigger)) {
                if let RuleItem::Trigger(t) = i {
                    f(t)
                }
            }
            let conditions = Condition::ALL
                .iter()
                .map(|c| {
                    (
                        c.key().to_string(),
                        c.describe(Metric::OTIF, 0.0).replace('0', "N"),
                    )
                })
                .collect();
            view! {
                {text_field(item, problems, "key", "Trigger name", |i| trigger_of(i).key, |i, v| with(i, |t| t.key = v.trim().to_string()), !creating)}
                {select_field(item, "metric", "KPI", metric_options(false), |i| trigger_of(i).metric, |i, v| with(i, |t| t.metric = v))}
                {select_field(item, "condition", "Condition", conditions, |i| trigger_of(i).condition.key().to_string(), |i, v| with(i, |t| if let Some(c) = Condition::parse(&v) { t.condition = c }))}
                {text_field(item, problems, "value", "N (points; percent change or lines for volume)", |i| trigger_of(i).value.to_string(), |i, v| with(i, |t| t.value = number(v)), false)}
                {text_field(item, problems, "periods", "Weeks in a row", |i| trigger_of(i).periods.to_string(), |i, v| with(i, |t| t.periods = v.trim().parse().unwrap_or(0)), false)}
                {text_field(item, problems, "description", "Meaning", |i| trigger_of(i).description, |i, v| with(i, |t| t.description = v), false)}
                <p class="hint reads-as">{move || format!("Fires when {} is {}.", item.with(get).metric, item.with(get).describe())}</p>
            }
            .into_any()
        }
        RuleItem::Playbook(_) => {
            fn with(i: &mut RuleItem, f: impl FnOnce(&mut Playbook)) {
                if let RuleItem::Playbook(p) = i {
                    f(p)
                }
            }
            let causes = DIMENSIONS
                .iter()
                .map(|d| format!("dimension:{d}"))
                .chain(["effect:mix".to_string(), "data".to_string()])
                .chain(
                    [
                        "carrier_late",
                        "short_pick",
                        "stockout",
                        "appointment_missed",
                        "data_mismatch",
                    ]
                    .map(|r| format!("reason:{r}")),
                );
            view! {
                {text_field(item, problems, "key", "Playbook name", |i| playbook_of(i).key, |i, v| with(i, |p| p.key = v.trim().to_string()), !creating)}
                {text_field(item, problems, "cause", "Cause (reason:<code>, dimension:<name>, effect:mix, data)", |i| playbook_of(i).cause, |i, v| with(i, |p| p.cause = v.trim().to_string()), false)}
                <datalist id="causes">{causes.map(|c| view! { <option value=c/> }).collect_view()}</datalist>
                {text_field(item, problems, "action", "Next action", |i| playbook_of(i).action, |i, v| with(i, |p| p.action = v), false)}
                {text_field(item, problems, "owner", "Owner", |i| playbook_of(i).owner, |i, v| with(i, |p| p.owner = v), false)}
                {select_field(item, "priority", "Priority", plain(&PRIORITIES), |i| playbook_of(i).priority, |i, v| with(i, |p| p.priority = v))}
            }
            .into_any()
        }
    };
    let title = move || {
        let i = item.get();
        match op {
            EditOp::Create => format!("New {}", i.noun()),
            _ => format!("Edit {} {}", i.noun(), i.id()),
        }
    };
    view! {
        <form class="rule-editor" on:submit=submit>
            <h2>{title}</h2>
            {fields}
            {move || problems.get().into_iter().filter(|p| p.field == "cause" || p.field == "version").map(|p| view! {
                <p class="badge error-badge">{p.message}</p>
            }).collect_view()}
            {move || save.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="badge error-badge save-error">{e.to_string()}</p>
            })}
            <div class="editor-buttons">
                <button type="submit" class="save" disabled=move || save.pending().get() || !problems.get().is_empty()>"Save"</button>
                <button type="button" class="cancel" on:click=move |_| editing.set(None)>"Cancel"</button>
            </div>
        </form>
    }
    .into_any()
}

/// Edit, enable/disable and delete buttons for one row.
#[component]
fn RowButtons(
    item: RuleItem,
    enabled: bool,
    version: i64,
    can_delete: bool,
    can_disable: bool,
    editing: Editing,
    act: Callback<RuleEdit>,
) -> AnyView {
    let (i1, i2, i3) = (item.clone(), item.clone(), item);
    if !crate::app::can(crate::domain::access::Role::Editor) {
        return view! { <td class="row-buttons"></td> }.into_any();
    }
    view! {
        <td class="row-buttons">
            <button class="edit" on:click=move |_| editing.set(Some((EditOp::Update, i1.clone())))>"Edit"</button>
            {can_disable.then(|| view! {
                <button class="toggle" on:click=move |_| act.run(RuleEdit {
                    op: if enabled { EditOp::Disable } else { EditOp::Enable },
                    item: i2.clone(),
                    expected_version: version,
                })>{if enabled { "Disable" } else { "Enable" }}</button>
            })}
            {can_delete.then(|| view! {
                <button class="delete" on:click=move |_| act.run(RuleEdit {
                    op: EditOp::Delete,
                    item: i3.clone(),
                    expected_version: version,
                })>"Delete"</button>
            })}
        </td>
    }
    .into_any()
}

fn row_class(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn state_tag(enabled: bool) -> Option<AnyView> {
    (!enabled).then(|| view! { <span class="tag off">"disabled"</span> }.into_any())
}

/// The rule book's tables.
fn tables(v: &RulesView, editing: Editing, act: Callback<RuleEdit>) -> AnyView {
    let version = v.rules.version;
    let rules: &Rules = &v.rules;
    let entries = |kinds: &[&str]| -> Vec<RuleEntry> {
        rules
            .entries
            .iter()
            .filter(|e| kinds.contains(&e.kind.as_str()))
            .cloned()
            .collect()
    };
    let entry_rows = move |list: Vec<RuleEntry>| {
        list.into_iter()
            .map(|e| {
                let known = known_rule(&e.key);
                let builtin = known.is_some() && !e.key.contains('.');
                let can_disable = known.is_none_or(|k| k.can_disable);
                let enabled = e.enabled;
                let item = RuleItem::Rule(e.clone());
                view! {
                    <tr data-rule=e.key.clone() class=row_class(enabled)>
                        <td><code>{e.key.clone()}</code>{state_tag(enabled)}</td>
                        <td>{e.metric.clone().unwrap_or_else(|| "all".into())}</td>
                        <td class="value">{e.value}{known.filter(|k| !k.unit.starts_with(|c: char| c.is_ascii_digit())).map(|k| format!(" {}", k.unit))}</td>
                        <td>{e.description.clone()}</td>
                        <RowButtons item enabled version can_delete=!builtin can_disable editing act/>
                    </tr>
                }
            })
            .collect_view()
    };
    let section_head = move |title: &'static str, add: Option<fn() -> RuleItem>| {
        view! {
            <div class="section-head"><h2>{title}</h2>
                {add.filter(|_| crate::app::can(crate::domain::access::Role::Editor)).map(|f| view! {
                    <button class="add" on:click=move |_| editing.set(Some((EditOp::Create, f())))>"Add"</button>
                })}
            </div>
        }
    };
    let entry_table = move |list: Vec<RuleEntry>| {
        view! {
            <table class="rules">
                <thead><tr><th>"rule"</th><th>"KPI"</th><th>"value"</th><th>"meaning"</th><th></th></tr></thead>
                <tbody>{entry_rows(list)}</tbody>
            </table>
        }
    };
    view! {
        <section class="targets">{section_head("Targets", Some(blank_target as fn() -> RuleItem))}
            <table class="rules">
                <thead><tr><th>"KPI"</th><th>"site"</th><th>"target"</th><th></th></tr></thead>
                <tbody>{rules.targets.iter().map(|t| {
                    let enabled = t.enabled;
                    let item = RuleItem::Target(t.clone());
                    view! {
                        <tr data-target=format!("{}@{}", t.metric, t.site) class=row_class(enabled)>
                            <td>{t.metric.clone()}{state_tag(enabled)}</td>
                            <td>{if t.site == "*" { "all sites".to_string() } else { t.site.clone() }}</td>
                            <td class="value">{format!("{:.1}", t.target)}</td>
                            <RowButtons item enabled version can_delete=true can_disable=true editing act/>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="thresholds">{section_head("Status and data-quality thresholds", None)}
            {entry_table(entries(&["threshold"]))}</section>
        <section class="sensitivity">{section_head("Anomaly sensitivity", Some(blank_rule as fn() -> RuleItem))}
            <p class="hint">"anomaly_z: how unusual a week or day must be (robust z); anomaly_two_sided: 1 flags moves both ways, 0 only bad ones. Add name.kpi to override for one KPI; disable anomaly_z to stop flagging."</p>
            {entry_table(entries(&["sensitivity"]))}</section>
        <section class="triggers">{section_head("Triggers", Some(blank_trigger as fn() -> RuleItem))}
            <table class="rules">
                <thead><tr><th>"trigger"</th><th>"KPI"</th><th>"fires when"</th><th>"meaning"</th><th></th></tr></thead>
                <tbody>{rules.triggers.iter().map(|t| {
                    let enabled = t.enabled;
                    let item = RuleItem::Trigger(t.clone());
                    view! {
                        <tr data-trigger=t.key.clone() class=row_class(enabled)>
                            <td><code>{t.key.clone()}</code>{state_tag(enabled)}</td>
                            <td>{t.metric.clone()}</td>
                            <td class="condition">{t.describe()}</td>
                            <td>{t.description.clone()}</td>
                            <RowButtons item enabled version can_delete=true can_disable=true editing act/>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="playbooks">{section_head("Playbooks", Some(blank_playbook as fn() -> RuleItem))}
            <table class="rules">
                <thead><tr><th>"cause"</th><th>"next action"</th><th>"owner"</th><th>"priority"</th><th></th></tr></thead>
                <tbody>{rules.playbooks.iter().map(|p| {
                    let enabled = p.enabled;
                    let item = RuleItem::Playbook(p.clone());
                    view! {
                        <tr data-playbook=p.key.clone() class=row_class(enabled)>
                            <td><code>{p.cause.clone()}</code>{state_tag(enabled)}</td>
                            <td>{p.action.clone()}</td>
                            <td>{p.owner.clone()}</td>
                            <td>{p.priority.clone()}</td>
                            <RowButtons item enabled version can_delete=true can_disable=true editing act/>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="parameters">{section_head("KPI and money parameters", None)}
            {entry_table(entries(&["parameter"]))}</section>
        <section class="definitions"><h2>"KPI definitions"</h2><table class="rules">
            <thead><tr><th>"KPI"</th><th>"definition"</th><th>"unit"</th></tr></thead>
            <tbody>{v.metrics.iter().map(|m| view! {
                <tr><td>{m.name.clone()}</td><td>{m.definition.clone()}</td><td>{m.unit.clone()}</td></tr>
            }).collect_view()}</tbody></table></section>
        <section class="history"><h2>"Recent versions"</h2>
            <ol class="rule-history">{v.history.iter().map(|c| view! {
                <li data-version=c.version><strong>{format!("v{}", c.version)}</strong>" "
                    <span class="when">{c.changed_at.get(0..16).unwrap_or_default().replace('T', " ")}" UTC"</span>" "
                    {c.summary.clone()}</li>
            }).collect_view()}</ol>
        </section>
    }
    .into_any()
}

#[component]
pub fn RulesPage() -> impl IntoView {
    let rules = Resource::new(|| (), |_| get_rules());
    // After a save the page shows the saved rule book without another round trip.
    let latest = RwSignal::new(None::<RulesView>);
    let editing: Editing = RwSignal::new(None);
    let quick = ServerAction::<EditRules>::new();
    let saved = Callback::new(move |v: RulesView| latest.set(Some(v)));
    Effect::new(move |_| {
        if let Some(Ok(v)) = quick.value().get() {
            latest.set(Some(v.view));
        }
    });
    let act = Callback::new(move |edit: RuleEdit| {
        quick.dispatch(EditRules { edit });
    });
    view! {
        <div class="page-head">
            <h1>"Business rules"</h1>
            <p class="hint">"Sent with every agent request. Each change is a new rules version; insights made under an older version are marked stale until refreshed."</p>
        </div>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || {
                // Read outside the async block so that a save re-renders the page.
                let fresh = latest.get();
                Suspend::new(async move {
                let loaded = rules.await;
                match fresh.map(Ok).unwrap_or(loaded) {
                    Ok(v) => {
                        let v2 = v.clone();
                        view! {
                            <p class="period rules-version">{format!("Rules version {}", v.rules.version)}</p>
                            {move || quick.value().get().and_then(|r| r.err()).map(|e| view! {
                                <p class="badge error-badge action-error">{e.to_string()}</p>
                            })}
                            {move || editing.get().map(|_| view! { <Editor editing view=v2.clone() saved/> })}
                            {tables(&v, editing, act)}
                        }.into_any()
                    }
                    Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
                }
            })}}
        </Suspense>
    }
}
