//! Digests and alerts: the configured channels (names and kinds; addresses stay on the
//! server), "send the digest now", "check alerts now", and every recent notification with
//! each delivery's status, attempts and last error.

use crate::api::{get_notifications, CheckAlerts, SendDigest};
use crate::domain::status::DeliveryStatus;
use crate::dto::{DeliveryView, NotificationView, NotificationsQuery};
use leptos::prelude::*;

fn when(t: &str) -> String {
    t.get(0..19).unwrap_or(t).replace('T', " ") + " UTC"
}

fn delivery(d: DeliveryView) -> impl IntoView {
    let detail = match (d.status, &d.last_error) {
        (DeliveryStatus::Sent, _) => d.sent_at.as_deref().map(when).unwrap_or_default(),
        (DeliveryStatus::Pending, Some(e)) => format!("{e}; retry at {}", when(&d.next_attempt_at)),
        (_, Some(e)) => e.clone(),
        _ => String::new(),
    };
    view! {
        <li class=format!("delivery {}", d.status) data-channel=d.channel.clone()>
            <strong>{d.channel.clone()}</strong>" ("{d.format.to_string()}") "
            <span class="status">{d.status.to_string()}</span>
            {format!(" · {} attempt(s)", d.attempts)}
            {(!detail.is_empty()).then(|| view! { <span class="detail">{format!(" · {detail}")}</span> })}
        </li>
    }
}

fn row(n: NotificationView) -> impl IntoView {
    let email = format!("/api/v1/notifications/{}/email", n.id);
    view! {
        <tr data-notification=n.id.clone() class=n.kind.to_string()>
            <td>{when(&n.created_at)}</td>
            <td>{n.kind.to_string()}</td>
            <td><strong>{n.title.clone()}</strong>
                <div class="hint">{format!("{} card(s)", n.items)}
                    {n.generation_ms.map(|ms| format!(" · built in {ms:.0} ms"))}
                    " · "<a href=email rel="external" target="_blank">"e-mail body"</a></div></td>
            <td>{if n.deliveries.is_empty() {
                view! { <span class="hint">"no channel takes it"</span> }.into_any()
            } else {
                view! { <ul class="deliveries">{n.deliveries.into_iter().map(delivery).collect_view()}</ul> }.into_any()
            }}</td>
        </tr>
    }
}

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let page = Resource::new(
        move || version.get(),
        |_| get_notifications(NotificationsQuery::default()),
    );
    let send = ServerAction::<SendDigest>::new();
    let check = ServerAction::<CheckAlerts>::new();
    Effect::new(move |_| {
        // Read both before deciding: `||` would stop tracking the second once the first is set.
        let (sent, checked) = (send.value().get().is_some(), check.value().get().is_some());
        if sent || checked {
            version.update(|v| *v += 1);
        }
    });
    view! {
        <div class="page-head">
            <h1>"Digests & alerts"</h1>
            <p class="hint">"Digests list off-target and unusual KPIs with their insights, most money at stake first; schedule one on the Schedules page (\"Send the digest\"). Alerts go out when a trigger starts or stops firing, never once per refresh, and pause while a trigger flaps."</p>
            {crate::app::can(crate::domain::access::Role::Editor).then(|| view! {
            <div class="run-buttons">
                <button class="send-digest" on:click=move |_| { send.dispatch(SendDigest { request: Default::default() }); } disabled=move || send.pending().get()>"Send digest now"</button>
                <button class="check-alerts" on:click=move |_| { check.dispatch(CheckAlerts {}); } disabled=move || check.pending().get()>"Check alerts now"</button>
                {move || check.value().get().map(|r| match r {
                    Ok(n) => view! { <span class="hint checked">{format!("{} alert(s) queued", n.queued.len())}</span> }.into_any(),
                    Err(e) => view! { <span class="badge error-badge">{e.to_string()}</span> }.into_any(),
                })}
                {move || send.value().get().and_then(|r| r.err()).map(|e| view! { <span class="badge error-badge">{e.to_string()}</span> })}
            </div>
            })}
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Ok(p) => view! {
                    <section class="channels"><h2>"Channels"</h2>
                        {if p.channels.is_empty() {
                            view! { <p class="empty">"No channel is configured: digests and alerts are kept here only. Add channels in opsight-notify.toml (see README)."</p> }.into_any()
                        } else {
                            view! { <ul>{p.channels.into_iter().map(|c| view! {
                                <li data-channel=c.name.clone()><strong>{c.name.clone()}</strong>{format!(" · {} · {}{}", c.kind,
                                    if c.digests { "digests" } else { "" },
                                    if c.alerts { if c.digests { ", alerts" } else { "alerts" } } else { "" })}</li>
                            }).collect_view()}</ul> }.into_any()
                        }}
                    </section>
                    <section><h2>"Recent"</h2>
                        {if p.notifications.is_empty() {
                            view! { <p class="empty">"Nothing sent yet."</p> }.into_any()
                        } else {
                            view! {
                                <table class="runs notifications">
                                    <thead><tr><th>"when"</th><th>"kind"</th><th>"what"</th><th>"deliveries"</th></tr></thead>
                                    <tbody>{p.notifications.into_iter().map(row).collect_view()}</tbody>
                                </table>
                            }.into_any()
                        }}
                    </section>
                }.into_any(),
                Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}
