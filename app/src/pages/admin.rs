//! Admin: users (add, change role and sites, disable), API tokens (create, shown once;
//! revoke) and the audit log. The server refuses all of it to non-admins; the page is only hidden.

use crate::api::{get_admin, CreateToken, CreateUser, RevokeToken, UpdateUser};
use crate::domain::access::Role;
use crate::dto::{AuditEntry, NewToken, NewUser, TokenView, UserChange, UserView};
use leptos::prelude::*;

fn when(t: &str) -> String {
    t.get(0..19).unwrap_or(t).replace('T', " ") + " UTC"
}

fn role_options(selected: Role) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|r| view! { <option value=r.as_str() selected=r == selected>{r.as_str()}</option> })
        .collect_view()
}

fn user_row(u: UserView, update: ServerAction<UpdateUser>) -> impl IntoView {
    let (name, name2, name3) = (u.username.clone(), u.username.clone(), u.username.clone());
    let disabled = u.disabled;
    view! {
        <tr data-user=u.username.clone() class:disabled=disabled>
            <td>{u.username.clone()}</td>
            <td>
                <select class="role" on:change=move |ev| {
                    if let Ok(role) = Role::parse(&event_target_value(&ev)) {
                        update.dispatch(UpdateUser { username: name.clone(), change: UserChange { role: Some(role), ..Default::default() } });
                    }
                }>{role_options(u.role)}</select>
            </td>
            <td>
                // Site codes and regions, comma-separated; blank: every site. Saved on change.
                <input class="sites" placeholder="all sites" aria-label="sites"
                    value=u.sites.clone().unwrap_or_default()
                    on:change=move |ev| {
                        let sites = Some(event_target_value(&ev));
                        update.dispatch(UpdateUser { username: name3.clone(), change: UserChange { sites, ..Default::default() } });
                    }/>
            </td>
            <td>{if disabled { "disabled" } else { "active" }}
                {(!u.has_password).then_some(" · proxy sign-in only")}</td>
            <td>{when(&u.created_at)}</td>
            <td><button class="toggle-user" on:click=move |_| {
                update.dispatch(UpdateUser { username: name2.clone(), change: UserChange { disabled: Some(!disabled), ..Default::default() } });
            }>{if disabled { "Enable" } else { "Disable" }}</button></td>
        </tr>
    }
}

fn token_row(t: TokenView, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    let id = t.id.clone();
    let active = t.revoked_at.is_none();
    view! {
        <tr data-token=t.id.clone()>
            <td>{t.name.clone()}</td>
            <td><code>{t.prefix.clone()}"…"</code></td>
            <td>{t.role.as_str()}</td>
            <td>{t.sites.clone().unwrap_or_else(|| "all".into())}</td>
            <td>{t.created_by.clone()}" · "{when(&t.created_at)}</td>
            <td>{t.last_used_at.as_deref().map(when).unwrap_or_else(|| "never".into())}</td>
            <td>{match t.revoked_at.as_deref() {
                Some(r) => view! { <span>{format!("revoked {}", when(r))}</span> }.into_any(),
                None => view! { <span>"active"</span> }.into_any(),
            }}</td>
            <td>{active.then(|| view! {
                <button class="revoke" on:click=move |_| { revoke.dispatch(RevokeToken { id: id.clone() }); }>"Revoke"</button>
            })}</td>
        </tr>
    }
}

fn audit_row(e: AuditEntry) -> impl IntoView {
    view! {
        <tr class="audit-entry">
            <td>{when(&e.at)}</td><td>{e.actor}</td><td><code>{e.action}</code></td>
            <td>{e.target}</td><td class="detail">{e.detail}</td>
        </tr>
    }
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let page = Resource::new(move || version.get(), |_| get_admin());
    let add_user = ServerAction::<CreateUser>::new();
    let update = ServerAction::<UpdateUser>::new();
    let create_token = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    Effect::new(move |_| {
        // Read every action's value (`||` would stop tracking the rest once one is set).
        let changed = [
            add_user.value().get().is_some_and(|r| r.is_ok()),
            update.value().get().is_some(),
            create_token.value().get().is_some_and(|r| r.is_ok()),
            revoke.value().get().is_some(),
        ];
        if changed.contains(&true) {
            version.update(|v| *v += 1);
        }
    });
    let (username, password, user_role, user_sites) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(Role::Viewer),
        RwSignal::new(String::new()),
    );
    let (token_name, token_role, token_sites) = (
        RwSignal::new(String::new()),
        RwSignal::new(Role::Viewer),
        RwSignal::new(String::new()),
    );
    let blank_is_all = |s: String| (!s.trim().is_empty()).then_some(s);
    let error = move || {
        [
            add_user.value().get().and_then(|r| r.err()),
            update.value().get().and_then(|r| r.err()),
            create_token.value().get().and_then(|r| r.err()),
            revoke.value().get().and_then(|r| r.err()),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(|e| view! { <p class="badge error-badge" role="alert">{e.to_string()}</p> })
    };
    view! {
        <div class="page-head">
            <h1>"Admin"</h1>
            <p class="hint">"Users sign in with a password (or through the trusted proxy); API tokens are for machine clients. Every change here is in the audit log below."</p>
        </div>
        {error}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || page.get().map(|r| match r {
                Ok(p) => view! {
                    <h2>"Users"</h2>
                    <table class="users">
                        <thead><tr><th>"user"</th><th>"role"</th><th>"sites"</th><th>"status"</th><th>"added"</th><th></th></tr></thead>
                        <tbody>{p.users.into_iter().map(|u| user_row(u, update)).collect_view()}</tbody>
                    </table>
                    <h2>"API tokens"</h2>
                    <table class="tokens">
                        <thead><tr><th>"name"</th><th>"token"</th><th>"role"</th><th>"sites"</th><th>"created"</th><th>"last used"</th><th>"status"</th><th></th></tr></thead>
                        <tbody>{p.tokens.into_iter().map(|t| token_row(t, revoke)).collect_view()}</tbody>
                    </table>
                    <h2>"Audit log"</h2>
                    <table class="audit">
                        <thead><tr><th>"when"</th><th>"who"</th><th>"what"</th><th>"on"</th><th>"change"</th></tr></thead>
                        <tbody>{p.audit.into_iter().map(audit_row).collect_view()}</tbody>
                    </table>
                }.into_any(),
                Err(e) => view! { <p class="badge error-badge" data-page-error="true">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <section class="admin-forms">
            <form class="add-user" on:submit=move |ev| {
                ev.prevent_default();
                add_user.dispatch(CreateUser::from(NewUser {
                    username: username.get(),
                    password: Some(password.get()),
                    role: user_role.get(),
                    sites: blank_is_all(user_sites.get()),
                }));
                password.set(String::new());
            }>
                <h2>"Add a user"</h2>
                <label>"User name "<input name="username" required maxlength="64" prop:value=move || username.get()
                    on:input=move |ev| username.set(event_target_value(&ev))/></label>
                <label>"Password "<input name="password" type="password" required minlength="10" autocomplete="new-password"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/></label>
                <label>"Role "<select name="role" on:change=move |ev| {
                    if let Ok(r) = Role::parse(&event_target_value(&ev)) { user_role.set(r) }
                }>{role_options(Role::Viewer)}</select></label>
                <label>"Sites "<input name="sites" placeholder="all sites, or DAL, region:South"
                    prop:value=move || user_sites.get() on:input=move |ev| user_sites.set(event_target_value(&ev))/></label>
                <button type="submit" disabled=move || add_user.pending().get()>"Add user"</button>
            </form>
            <form class="add-token" on:submit=move |ev| {
                ev.prevent_default();
                create_token.dispatch(CreateToken::from(NewToken {
                    name: token_name.get(),
                    role: token_role.get(),
                    sites: blank_is_all(token_sites.get()),
                }));
            }>
                <h2>"Create an API token"</h2>
                <label>"Used by "<input name="token-name" required maxlength="64" placeholder="slack-bot"
                    prop:value=move || token_name.get() on:input=move |ev| token_name.set(event_target_value(&ev))/></label>
                <label>"Role "<select name="token-role" on:change=move |ev| {
                    if let Ok(r) = Role::parse(&event_target_value(&ev)) { token_role.set(r) }
                }>{role_options(Role::Viewer)}</select></label>
                <label>"Sites "<input name="token-sites" placeholder="all sites, or DAL, region:South"
                    prop:value=move || token_sites.get() on:input=move |ev| token_sites.set(event_target_value(&ev))/></label>
                <button type="submit" disabled=move || create_token.pending().get()>"Create token"</button>
                {move || create_token.value().get().and_then(|r| r.ok()).map(|t| view! {
                    <p class="new-token">"Copy this token now; it will not be shown again: "<code>{t.secret}</code></p>
                })}
            </form>
        </section>
    }
}
