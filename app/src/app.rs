//! The application shell, routes and layout.

use crate::domain::access::{Me, Role};
use crate::pages::{
    admin::AdminPage, conversation::ConversationPage, kpi_detail::KpiDetailPage,
    lineage::LineagePage, notifications::NotificationsPage, overview::OverviewPage,
    rules::RulesPage, runs::RunDetailPage, runs::RunsPage, schedules::SchedulesPage,
    settings::SettingsPage, sources::SourcesPage,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::path;

/// The HTML document the server renders around the app.
/// The element holding the catalogue's KPIs for the browser.
pub const KPIS_ELEMENT: &str = "opsight-kpis";

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
                // Data, not a script: the catalogue's KPIs for the browser (`hydrate`), in
                // the head (the body is what hydration walks); nonced like every script of
                // the page, for the policy names one nonce.
                <script type="application/json" id=KPIS_ELEMENT nonce=leptos::nonce::use_nonce() inner_html=crate::domain::kpi::registered_for_page()></script>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in, for the whole page (`None`: nobody).
#[derive(Clone, Debug)]
struct SignedIn(Option<Me>);

/// Whether the signed-in user's role includes `needed`. Only for hiding controls: the
/// server checks every request whatever the page shows.
pub fn can(needed: Role) -> bool {
    use_context::<SignedIn>()
        .and_then(|s| s.0)
        .is_some_and(|me| me.role.can(needed))
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // The server renders with the request's user (its guard put it in the context); the
    // browser takes the same value from the page during hydration.
    let me = SharedValue::new(use_context::<Me>).into_inner();
    provide_context(SignedIn(me.clone()));
    // Effects only run in the browser: this flips once hydration has happened, which the
    // browser test (and a curious user) can see.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Stylesheet id="leptos" href="/pkg/opsight.css"/>
        <Title text="Opsight: KPI insight for operations"/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.get().to_string()>
                <header class="topbar">
                    <A href="/" attr:class="brand">"Opsight"</A>
                    <nav>
                        <A href="/">"Overview"</A>
                        <A href="/rules">"Rules"</A>
                        <A href="/schedules">"Schedules"</A>
                        <A href="/runs">"Runs"</A>
                        <A href="/notifications">"Digests & alerts"</A>
                        <A href="/sources">"Data sources"</A>
                        <A href="/settings">"Agents"</A>
                        {can(Role::Admin).then(|| view! { <A href="/admin">"Admin"</A> })}
                    </nav>
                    <div class="who">
                        {match me {
                            Some(me) => view! {
                                <span class="me" data-role=me.role.as_str()>{me.name.clone()}" · "{me.role.as_str()}</span>
                                <form method="post" action="/logout" class="inline">
                                    <button type="submit" class="signout">"Sign out"</button>
                                </form>
                            }.into_any(),
                            None => view! { <a href="/login" rel="external">"Sign in"</a> }.into_any(),
                        }}
                    </div>
                </header>
                <main>
                    <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                        <Route path=path!("/") view=OverviewPage/>
                        <Route path=path!("/kpi/:site/:metric") view=KpiDetailPage/>
                        <Route path=path!("/rules") view=RulesPage/>
                        <Route path=path!("/conversations/:id") view=ConversationPage/>
                        <Route path=path!("/insights/:id/lineage") view=LineagePage/>
                        <Route path=path!("/settings") view=SettingsPage/>
                        <Route path=path!("/schedules") view=SchedulesPage/>
                        <Route path=path!("/runs") view=RunsPage/>
                        <Route path=path!("/runs/:id") view=RunDetailPage/>
                        <Route path=path!("/notifications") view=NotificationsPage/>
                        <Route path=path!("/sources") view=SourcesPage/>
                        <Route path=path!("/admin") view=AdminPage/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
