//! Users, roles, sessions, API tokens, CSRF, rate limits, the trusted proxy, the audit log
//! and the OpenAPI description, through HTTP against the whole server.

use crate::common::{client, spawn_app, spawn_builtin_tuned, TestApp};
use app::domain::access::{Need, Role};
use app::dto::{NewToken, NewUser, UserChange};
use app::ssr::access::{AuthSettings, Principal};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use server::routes::operations::{self as access, PAGES};
use std::time::Duration;

/// A client that shows redirects instead of following them.
fn raw(token: Option<&str>) -> reqwest::Client {
    crate::common::client_with(token, false)
}

async fn token(app: &TestApp, role: Role) -> String {
    app.state
        .accounts()
        .create_token(
            NewToken {
                name: format!("t-{role}"),
                role,
                sites: None,
            },
            &Principal::cli(),
        )
        .await
        .unwrap()
        .secret
}

/// Adds a user (`password` None: proxy sign-in only).
async fn add_user(app: &TestApp, username: &str, password: Option<&str>, role: Role) {
    app.state
        .accounts()
        .add_user(
            NewUser {
                username: username.into(),
                password: password.map(Into::into),
                role,
                sites: None,
            },
            "test",
        )
        .await
        .unwrap();
}

/// `{id}` path parameters as the expected table writes them (`*`).
fn starred(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "*" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// A concrete path for a policy pattern (`*` segments become ids that do not exist, or a
/// real card for KPI pages).
fn concrete(pattern: &str) -> String {
    if pattern == "/kpi/*/*" {
        return "/kpi/DAL/otif".into();
    }
    pattern
        .split('/')
        .map(|s| if s == "*" { "0" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

use Role::{Admin as A, Editor as E, Viewer as V};

/// The expected matrix, written out independently of the policy table: who may call what
/// (`None`: anyone). The test also checks that this list and the policy cover the same
/// routes, so a new route needs a line here.
const EXPECTED: &[(&str, &str, Option<Role>)] = &[
    // JSON API
    ("GET", "/api/v1/dashboard", Some(V)),
    ("GET", "/api/v1/evidence", Some(V)),
    ("GET", "/api/v1/insights", Some(V)),
    ("POST", "/api/v1/insights/refresh", Some(E)),
    ("GET", "/api/v1/insights/*/lineage", Some(V)),
    ("GET", "/api/v1/insights/*/feedback", Some(V)),
    ("POST", "/api/v1/insights/*/feedback", Some(V)),
    ("POST", "/api/v1/insights/*/actions/*", Some(E)),
    ("POST", "/api/v1/conversations", Some(V)),
    ("GET", "/api/v1/conversations/*", Some(V)),
    ("POST", "/api/v1/conversations/*/turns", Some(V)),
    ("GET", "/api/v1/turns/*/events", Some(V)),
    ("GET", "/api/v1/agents", Some(V)),
    ("GET", "/api/v1/schedules", Some(V)),
    ("POST", "/api/v1/schedules", Some(E)),
    ("POST", "/api/v1/schedules/preview", Some(V)),
    ("GET", "/api/v1/schedules/*", Some(V)),
    ("PUT", "/api/v1/schedules/*", Some(E)),
    ("DELETE", "/api/v1/schedules/*", Some(E)),
    ("POST", "/api/v1/schedules/*/run", Some(E)),
    ("GET", "/api/v1/runs", Some(V)),
    ("POST", "/api/v1/runs", Some(E)),
    ("GET", "/api/v1/runs/*", Some(V)),
    ("GET", "/api/v1/unit-costs", Some(V)),
    ("PUT", "/api/v1/unit-costs", Some(E)),
    ("GET", "/api/v1/sites", Some(V)),
    ("PUT", "/api/v1/sites", Some(E)),
    ("GET", "/api/v1/sources", Some(V)),
    ("GET", "/api/v1/sources/*/syncs", Some(V)),
    ("POST", "/api/v1/sources/*/sync", Some(E)),
    ("GET", "/api/v1/rules", Some(V)),
    ("POST", "/api/v1/rules/edits", Some(E)),
    ("POST", "/api/v1/digests", Some(E)),
    ("GET", "/api/v1/digests/preview", Some(V)),
    ("POST", "/api/v1/alerts/check", Some(E)),
    ("GET", "/api/v1/notifications", Some(V)),
    ("GET", "/api/v1/notifications/*/email", Some(V)),
    ("GET", "/api/v1/me", Some(V)),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/v1/users", Some(A)),
    ("POST", "/api/v1/users", Some(A)),
    ("PATCH", "/api/v1/users/*", Some(A)),
    ("GET", "/api/v1/tokens", Some(A)),
    ("POST", "/api/v1/tokens", Some(A)),
    ("DELETE", "/api/v1/tokens/*", Some(A)),
    ("GET", "/api/v1/audit", Some(A)),
    // Server functions
    ("POST", "/api/dashboard", Some(V)),
    ("POST", "/api/kpi_detail", Some(V)),
    ("POST", "/api/rules", Some(V)),
    ("POST", "/api/conversation", Some(V)),
    ("POST", "/api/lineage", Some(V)),
    ("POST", "/api/agents", Some(V)),
    ("POST", "/api/schedules", Some(V)),
    ("POST", "/api/preview_schedule", Some(V)),
    ("POST", "/api/runs", Some(V)),
    ("POST", "/api/run_detail", Some(V)),
    ("POST", "/api/notifications", Some(V)),
    ("POST", "/api/feedback", Some(V)),
    ("POST", "/api/ask_question", Some(V)),
    ("POST", "/api/ask_follow_up", Some(V)),
    ("POST", "/api/refresh_insight", Some(E)),
    ("POST", "/api/run_schedule", Some(E)),
    ("POST", "/api/sources", Some(V)),
    ("POST", "/api/sync_source", Some(E)),
    ("POST", "/api/start_run", Some(E)),
    ("POST", "/api/edit_rules", Some(E)),
    ("POST", "/api/create_schedule", Some(E)),
    ("POST", "/api/update_schedule", Some(E)),
    ("POST", "/api/pause_schedule", Some(E)),
    ("POST", "/api/delete_schedule", Some(E)),
    ("POST", "/api/update_action", Some(E)),
    ("POST", "/api/send_digest", Some(E)),
    ("POST", "/api/check_alerts", Some(E)),
    ("POST", "/api/admin", Some(A)),
    ("POST", "/api/create_user", Some(A)),
    ("POST", "/api/update_user", Some(A)),
    ("POST", "/api/create_token", Some(A)),
    ("POST", "/api/revoke_token", Some(A)),
    // Pages
    ("GET", "/", Some(V)),
    ("GET", "/kpi/*/*", Some(V)),
    ("GET", "/rules", Some(V)),
    ("GET", "/conversations/*", Some(V)),
    ("GET", "/insights/*/lineage", Some(V)),
    ("GET", "/settings", Some(V)),
    ("GET", "/schedules", Some(V)),
    ("GET", "/runs", Some(V)),
    ("GET", "/runs/*", Some(V)),
    ("GET", "/notifications", Some(V)),
    ("GET", "/sources", Some(V)),
    ("GET", "/admin", Some(A)),
    // Public
    ("GET", "/login", None),
    ("POST", "/login", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", None),
    ("GET", "/favicon.svg", None),
    ("POST", "/agent/invocations", None),
];

/// What shows or changes every site at once (rules, schedules, digests, deliveries, unit
/// costs, sources, accounts: a limited admin could otherwise lift its own limit): refused
/// to a principal limited to some sites, whatever its role. Written out independently of
/// the policy table, like [`EXPECTED`].
const EVERY_SITE: &[(&str, &str)] = &[
    ("GET", "/api/v1/rules"),
    ("GET", "/api/v1/schedules"),
    ("GET", "/api/v1/schedules/*"),
    ("POST", "/api/v1/schedules/preview"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/*"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/*"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/rules"),
    ("POST", "/api/schedules"),
    ("POST", "/api/preview_schedule"),
    ("POST", "/api/admin"),
    ("POST", "/api/create_user"),
    ("POST", "/api/update_user"),
    ("POST", "/api/create_token"),
    ("POST", "/api/revoke_token"),
    ("GET", "/rules"),
    ("GET", "/schedules"),
    ("GET", "/admin"),
    ("POST", "/api/v1/schedules"),
    ("PUT", "/api/v1/schedules/*"),
    ("DELETE", "/api/v1/schedules/*"),
    ("POST", "/api/v1/schedules/*/run"),
    ("PUT", "/api/v1/unit-costs"),
    ("PUT", "/api/v1/sites"),
    ("GET", "/api/v1/sources"),
    ("GET", "/api/v1/sources/*/syncs"),
    ("POST", "/api/v1/sources/*/sync"),
    ("POST", "/api/sources"),
    ("GET", "/sources"),
    ("POST", "/api/v1/rules/edits"),
    ("POST", "/api/v1/digests"),
    ("POST", "/api/v1/alerts/check"),
    ("GET", "/api/v1/notifications"),
    ("GET", "/api/v1/notifications/*/email"),
    ("POST", "/api/notifications"),
    ("POST", "/api/run_schedule"),
    ("POST", "/api/sync_source"),
    ("POST", "/api/edit_rules"),
    ("POST", "/api/create_schedule"),
    ("POST", "/api/update_schedule"),
    ("POST", "/api/pause_schedule"),
    ("POST", "/api/delete_schedule"),
    ("POST", "/api/send_digest"),
    ("POST", "/api/check_alerts"),
    ("GET", "/notifications"),
];

/// The expected matrix and the policy table name the same routes.
#[test]
fn the_expected_matrix_covers_every_route_in_the_policy() {
    let mut policy: std::collections::BTreeSet<(String, String)> = access::api_routes()
        .map(|(m, p)| (m.to_string(), format!("/api/v1{}", starred(p))))
        .collect();
    policy.extend(access::server_fn_endpoints().map(|e| ("POST".to_string(), format!("/api/{e}"))));
    policy.extend(
        PAGES
            .iter()
            .map(|(p, _)| ("GET".to_string(), p.to_string())),
    );
    let expected: std::collections::BTreeSet<(String, String)> = EXPECTED
        .iter()
        .filter(|(_, p, _)| p.starts_with("/api/") || PAGES.iter().any(|(q, _)| q == p))
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(expected, policy);
}

/// Every route and server function, as anonymous, viewer, editor and admin: refused with
/// 401 (pages: a redirect to sign-in) or 403 exactly as [`EXPECTED`] says; let through
/// otherwise (then the handler answers, whatever it answers: never 401/403, and never the
/// router's "no such route").
#[tokio::test]
async fn every_route_and_server_function_checks_the_role() {
    let app = spawn_app(1_500, None).await;
    let mut clients = vec![("anonymous", None, raw(None))];
    for role in Role::ALL {
        clients.push((
            role.as_str(),
            Some(role),
            raw(Some(&token(&app, role).await)),
        ));
    }
    // An admin limited to DAL: no role check refuses it, only its reach does.
    let limited = app
        .state
        .accounts()
        .create_token(
            NewToken {
                name: "dal-admin".into(),
                role: Role::Admin,
                sites: Some("DAL".into()),
            },
            &Principal::cli(),
        )
        .await
        .unwrap()
        .secret;
    clients.push((
        "admin limited to DAL",
        Some(Role::Admin),
        raw(Some(&limited)),
    ));
    let mut failures = Vec::new();
    let mut checks = 0;
    for (method, pattern, need) in EXPECTED {
        let path = concrete(pattern);
        // Pages and static files: HTML, redirected to sign-in rather than refused.
        let page = *method == "GET" && !pattern.starts_with("/api/");
        for (who, role, http) in &clients {
            checks += 1;
            let url = format!("{}{path}", app.base);
            let mut req = http.request(method.parse().unwrap(), &url);
            if *method != "GET" {
                req = if path.starts_with("/api/v1") || path.starts_with("/agent") {
                    req.json(&json!({}))
                } else {
                    req.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body("")
                };
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let json = r
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.to_str().unwrap_or_default().contains("json"));
            let every_site = EVERY_SITE.contains(&(*method, *pattern));
            let expected = match (need, role) {
                (None, _) => "allowed",
                (Some(_), None) => "401",
                (Some(n), Some(r)) if !r.can(*n) => "403",
                _ if every_site && *who == "admin limited to DAL" => "403",
                _ => "allowed",
            };
            let ok = match expected {
                "401" if page => status == 303 && location.starts_with("/login?next="),
                "401" => status == 401 && json,
                "403" => status == 403,
                _ => {
                    // (A sign-in with no credentials is the handler's own 401.)
                    (status != 401 || path == "/login")
                        && status != 403
                        && status != 405
                        // The router's own 404 is an HTML page; handlers answer JSON.
                        && !(status == 404 && !json && !page)
                }
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {who}: expected {expected}, got {status} {location}"
                ));
            }
        }
    }
    assert_eq!(checks, EXPECTED.len() * 5);
    // Every every-site route is in the matrix.
    for (method, pattern) in EVERY_SITE {
        assert!(
            EXPECTED.iter().any(|(m, p, _)| m == method && p == pattern),
            "{method} {pattern}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {checks} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every registered server function has its own line in the policy (none falls to the
/// admin-only default unnoticed), and the policy names no server function that is gone.
#[test]
fn the_policy_lists_exactly_the_server_functions() {
    let registered: std::collections::BTreeSet<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.trim_start_matches("/api/").to_string())
        .collect();
    let listed: std::collections::BTreeSet<String> =
        access::server_fn_endpoints().map(str::to_string).collect();
    assert_eq!(registered, listed);
}

/// The OpenAPI description lists exactly the API's routes, each with the policy's role,
/// and every schema it refers to is defined.
#[tokio::test]
async fn openapi_describes_every_route_with_its_role() {
    let app = spawn_app(0, None).await;
    let r = app
        .anon
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "public");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let normalise = |p: &str| {
        p.split('/')
            .map(|s| if s.starts_with('{') { "*" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut described = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let need = access::policy(&method, &format!("/api/v1{path}")).need;
            match need {
                Need::Role(r) => assert_eq!(op["x-required-role"], r.as_str(), "{method} {path}"),
                Need::Public => assert_eq!(op["security"], json!([]), "{method} {path}"),
            }
            described.insert((method, normalise(path)));
        }
    }
    let routed: std::collections::BTreeSet<(String, String)> = access::api_routes()
        .map(|(m, p)| (m.to_string(), starred(p)))
        .collect();
    assert_eq!(described, routed);
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referred to but not defined"
        );
    }
    assert!(schemas.contains_key("Dashboard") && schemas.contains_key("InsightView"));
    // A body is required except where the operation takes none at all (`curl -X POST`).
    assert_eq!(
        doc["paths"]["/insights/refresh"]["post"]["requestBody"]["required"],
        true
    );
    assert_eq!(
        doc["paths"]["/digests"]["post"]["requestBody"]["required"],
        false
    );
    // OpenAPI 3.0's dialect throughout: no `const`, no type lists (3.1 / JSON Schema 2020).
    assert!(!text.contains("\"const\""), "const in the document");
    assert!(
        !text.contains("\"type\":["),
        "a list of types in the document"
    );
}

async fn login(
    app: &TestApp,
    user: &str,
    password: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = raw(None)
        .post(format!("{}/login", app.base))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("username", user),
            ("password", password),
            ("next", "/rules"),
        ]);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

/// `opsight_session=…` from a sign-in's Set-Cookie.
fn session_cookie(r: &reqwest::Response) -> (String, String) {
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    (set.split(';').next().unwrap().to_string(), set)
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_gets_429s_before_any_hashing() {
    // The defaults: 10 attempts per account and 30 per client address, per 15 minutes.
    let app = spawn_builtin_tuned(0, |_| {}).await;
    add_user(&app, "erin", Some("correct horse battery"), Role::Viewer).await;
    let guesses: Vec<String> = (0..100).map(|i| format!("wrong password {i}")).collect();
    let burst = guesses.iter().map(|g| login(&app, "erin", g, None));
    let responses = futures::future::join_all(burst).await;
    let mut wrong = 0;
    let mut throttled = Vec::new();
    for r in responses {
        match r.status().as_u16() {
            401 => wrong += 1,
            429 => throttled.push(r),
            other => panic!("unexpected {other}"),
        }
    }
    // Ten were checked (and were wrong); the other ninety were refused before hashing.
    assert_eq!((wrong, throttled.len()), (10, 90));
    for r in throttled.drain(..) {
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "Retry-After {retry}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Too many sign-in attempts for this account"),
            "{page}"
        );
    }
    // The right password is refused too while the account's allowance is spent.
    assert_eq!(
        login(&app, "erin", "correct horse battery", None)
            .await
            .status(),
        429
    );
    // The same address guessing other names: 20 of its 30 attempts are left.
    let names = (0..25).map(|i| format!("guess{i}"));
    let mut statuses = Vec::new();
    for name in names {
        statuses.push(login(&app, &name, "whatever it is", None).await);
    }
    let refused: Vec<_> = statuses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(refused.len(), 5, "the address's allowance");
    let last = statuses.pop().unwrap();
    assert!(last
        .text()
        .await
        .unwrap()
        .contains("Too many sign-in attempts from your address"));
    let text = app.get("/metrics").await.text().await.unwrap();
    let count = |limit: &str| -> f64 {
        let prefix = format!("opsight_sign_in_refused_total{{limit=\"{limit}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(
        count("account") >= 91.0 && count("address") >= 5.0,
        "{text}"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy() {
    let app = spawn_builtin_tuned(0, |s| {
        s.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.auth.sign_in_limits.per_address = 3;
    })
    .await;
    let from = |client: &'static str, name: &'static str| {
        let app = &app;
        async move {
            raw(None)
                .post(format!("{}/login", app.base))
                .header("sec-fetch-site", "same-origin")
                .header("x-forwarded-for", format!("198.51.100.1, {client}"))
                .form(&[("username", name), ("password", "not the password")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for name in ["a1", "a2", "a3"] {
        assert_eq!(from("203.0.113.1", name).await, 401);
    }
    // That client's fourth attempt is refused; another client behind the same proxy is
    // not (the proxy's own address is not what is counted, nor the forged left part).
    assert_eq!(from("203.0.113.1", "a4").await, 429);
    assert_eq!(from("203.0.113.2", "b1").await, 401);
}

async fn me(app: &TestApp, cookie: &str) -> reqwest::Response {
    raw(None)
        .get(format!("{}/api/v1/me", app.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_sign_in_rotate_expire_and_end() {
    let app = spawn_builtin_tuned(0, |s| {
        s.auth = AuthSettings {
            session_ttl: Duration::from_secs(3),
            ..Default::default()
        }
    })
    .await;
    add_user(&app, "Alice", Some("correct horse battery"), Role::Editor).await;
    // A wrong password: 401, the form again, no cookie, and no hint which part was wrong.
    let r = login(&app, "alice", "wrong horse battery", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password"));
    let r = login(&app, "nobody", "correct horse battery", None).await;
    assert_eq!(r.status(), 401);

    let r = login(&app, "alice", "correct horse battery", None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/rules");
    let (first, set) = session_cookie(&r);
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http: no Secure flag ({set})"
    );
    // The database holds the session's hash, not the cookie's value.
    let value = first.split_once('=').unwrap().1;
    let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_all(app.state.db())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], value);
    let who: Value = me(&app, &first).await.json().await.unwrap();
    assert_eq!(
        who,
        json!({"name": "alice", "role": "editor", "sites": null})
    );

    // Signing in again rotates: a new session, and the one the browser had is gone.
    let r = login(&app, "ALICE", "correct horse battery", Some(&first)).await;
    let (second, _) = session_cookie(&r);
    assert_ne!(first, second);
    assert_eq!(me(&app, &first).await.status(), 401);
    assert_eq!(me(&app, &second).await.status(), 200);

    // Sign-out ends it and clears the cookie.
    let r = raw(None)
        .post(format!("{}/logout", app.base))
        .header(COOKIE, &second)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(me(&app, &second).await.status(), 401);

    // Disabling a user ends their sessions at once and refuses new ones.
    let r = login(&app, "alice", "correct horse battery", None).await;
    let (third, _) = session_cookie(&r);
    let change = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    app.state
        .accounts()
        .update_user("alice", change, "test")
        .await
        .unwrap();
    assert_eq!(me(&app, &third).await.status(), 401);
    assert_eq!(
        login(&app, "alice", "correct horse battery", None)
            .await
            .status(),
        401
    );

    // Sessions expire.
    let change = UserChange {
        disabled: Some(false),
        ..Default::default()
    };
    app.state
        .accounts()
        .update_user("alice", change, "test")
        .await
        .unwrap();
    let r = login(&app, "alice", "correct horse battery", None).await;
    let (fourth, _) = session_cookie(&r);
    assert_eq!(me(&app, &fourth).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(me(&app, &fourth).await.status(), 401);
    // A page asks an expired session to sign in again, and comes back afterwards.
    let r = raw(None)
        .get(format!("{}/kpi/DAL/otif", app.base))
        .header(COOKIE, &fourth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login?next=/kpi/DAL/otif");
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let app = spawn_builtin_tuned(0, |s| {
        s.auth = AuthSettings {
            secure_cookies: true,
            ..Default::default()
        }
    })
    .await;
    add_user(&app, "bob", Some("a long password"), Role::Viewer).await;
    let r = login(&app, "bob", "a long password", None).await;
    assert!(session_cookie(&r).1.contains("; Secure"));
}

/// A cross-site form post (or fetch) carrying the session cookie is refused and changes
/// nothing; the same request from the page itself goes through.
#[tokio::test]
async fn cross_site_posts_are_refused() {
    let app = spawn_app(1_500, None).await;
    add_user(&app, "carol", Some("a long password"), Role::Editor).await;
    let (cookie, _) = session_cookie(&login(&app, "carol", "a long password", None).await);
    let version = || async {
        app.get("/api/v1/rules")
            .await
            .json::<Value>()
            .await
            .unwrap()["rules"]["version"]
            .clone()
    };
    let before = version().await;
    let edit = json!({"op": "update", "expected_version": before,
        "item": {"type": "rule", "key": "at_risk_band_pp", "kind": "threshold", "metric": null,
                 "value": 3.0, "description": "band", "enabled": true}});
    let digests = || async {
        app.get("/api/v1/notifications")
            .await
            .json::<Value>()
            .await
            .unwrap()["notifications"]
            .as_array()
            .unwrap()
            .len()
    };
    let sent_before = digests().await;
    for (site, origin) in [
        ("cross-site", "https://evil.example"),
        ("same-site", "https://ops.evil.example"),
    ] {
        // A form another site auto-submits to a server function.
        let r = raw(None)
            .post(format!("{}/api/send_digest", app.base))
            .header(COOKIE, &cookie)
            .header("sec-fetch-site", site)
            .header("origin", origin)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{site}");
        // A fetch to the JSON API, and without Sec-Fetch-Site (older browsers): Origin.
        let r = raw(None)
            .post(format!("{}/api/v1/rules/edits", app.base))
            .header(COOKIE, &cookie)
            .header("origin", origin)
            .json(&edit)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{site}");
        assert!(r.text().await.unwrap().contains("another site"));
    }
    assert_eq!(version().await, before, "no rule changed");
    assert_eq!(digests().await, sent_before, "no digest sent");
    // From Opsight's own page: allowed.
    let r = raw(None)
        .post(format!("{}/api/v1/rules/edits", app.base))
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("origin", app.base.clone())
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_ne!(version().await, before);
}

#[tokio::test]
async fn agent_calls_are_rate_limited_per_user_and_globally() {
    let app = spawn_builtin_tuned(1_500, |s| {
        s.allowance = app::ssr::access::limits::Allowance {
            per_user: 2,
            global: 3,
        }
    })
    .await;
    let viewer = client(Some(&token(&app, Role::Viewer).await));
    let editor = client(Some(&token(&app, Role::Editor).await));
    let ask = |http: reqwest::Client| {
        let url = format!("{}/api/v1/conversations", app.base);
        async move {
            http.post(url)
                .json(&json!({"site": "DAL", "metric": "otif", "question": "Why is OTIF down?"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(ask(viewer.clone()).await.status(), 202);
    assert_eq!(ask(viewer.clone()).await.status(), 202);
    let r = ask(viewer.clone()).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("your limit of 2 agent calls a minute"),
        "{body}"
    );
    // Reads are not limited.
    assert_eq!(
        viewer
            .get(format!("{}/api/v1/dashboard", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The editor has calls left, but the server's allowance (3) runs out for everyone.
    let r = editor
        .post(format!("{}/api/v1/insights/refresh", app.base))
        .json(&json!({"site": "DAL", "metric": "otif"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = ask(editor.clone()).await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("for everyone"));
    // Server functions answer the same way.
    let r = editor
        .post(format!("{}/api/refresh_insight", app.base))
        .form(&[("site", "DAL"), ("metric", "otif")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("opsight_rate_limited_total{limit=\"user\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_trusted_proxy_names_the_user_and_nobody_else_can() {
    let trusted = spawn_builtin_tuned(0, |s| {
        s.auth = AuthSettings {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..Default::default()
        }
    })
    .await;
    add_user(&trusted, "dana", None, Role::Editor).await;
    let via_proxy = |user: &'static str| {
        raw(None)
            .get(format!("{}/api/v1/me", trusted.base))
            .header("x-forwarded-user", user)
            .send()
    };
    let who: Value = via_proxy("Dana").await.unwrap().json().await.unwrap();
    assert_eq!(
        who,
        json!({"name": "dana", "role": "editor", "sites": null})
    );
    let r = via_proxy("mallory").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("no active Opsight account"));
    // A proxy-only account has no password to guess.
    assert_eq!(
        login(&trusted, "dana", "anything at all", None)
            .await
            .status(),
        401
    );

    // The same header from an address that is not a trusted proxy is ignored.
    let untrusted = spawn_builtin_tuned(0, |s| {
        s.auth = AuthSettings {
            trusted_proxies: vec!["10.9.8.7".parse().unwrap()],
            ..Default::default()
        }
    })
    .await;
    add_user(&untrusted, "dana", None, Role::Admin).await;
    let r = raw(None)
        .get(format!("{}/api/v1/me", untrusted.base))
        .header("x-forwarded-user", "dana")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// A read-only wall screen: anonymous requests get the configured role, no more.
#[tokio::test]
async fn an_anonymous_role_reads_but_changes_nothing() {
    let app = spawn_builtin_tuned(1_500, |s| {
        s.auth = AuthSettings {
            anonymous_role: Some(Role::Viewer),
            ..Default::default()
        }
    })
    .await;
    let anon = raw(None);
    assert_eq!(
        anon.get(format!("{}/", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        anon.get(format!("{}/api/v1/dashboard", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = anon
        .post(format!("{}/api/v1/insights/refresh", app.base))
        .json(&json!({"site": "DAL", "metric": "otif"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A bad token is an error, not a fall-back to anonymous.
    let r = raw(Some("opsight_not-a-token"))
        .get(format!("{}/api/v1/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn tokens_are_shown_once_scoped_and_revocable_and_secrets_stay_hidden() {
    let app = spawn_app(1_500, None).await;
    // An admin creates an editor token over the API; the secret is in that answer only.
    let r = app
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "slack-bot", "role": "editor"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: app::dto::TokenCreated = r.json().await.unwrap();
    assert!(created.secret.starts_with("opsight_") && created.secret.len() == 72);
    let bot = client(Some(&created.secret));
    let who: Value = bot
        .get(format!("{}/api/v1/me", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who,
        json!({"name": "slack-bot", "role": "editor", "sites": null})
    );
    // Its role is its scope: no users, no tokens.
    let r = bot
        .post(format!("{}/api/v1/tokens", app.base))
        .json(&json!({"name": "escalate", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A user with a password, to look for its hash everywhere.
    let r = app
        .post_json(
            "/api/v1/users",
            &json!({"username": "erin", "password": "erin's long password", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'erin'")
            .fetch_one(app.state.db())
            .await
            .unwrap();
    let token_hash: String =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE name = 'slack-bot'")
            .fetch_one(app.state.db())
            .await
            .unwrap();
    let mut seen = String::new();
    for path in [
        "/api/v1/tokens",
        "/api/v1/users",
        "/api/v1/audit",
        "/admin",
        "/",
        "/settings",
        "/api/v1/openapi.json",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        seen.push_str(&r.text().await.unwrap());
    }
    let r = app
        .http
        .post(format!("{}/api/admin", app.base))
        .form(&[("", "")])
        .send()
        .await
        .unwrap();
    seen.push_str(&r.text().await.unwrap());
    for (what, secret) in [
        ("the token", created.secret.as_str()),
        ("the token's hash", token_hash.as_str()),
        ("the password hash", hash.as_str()),
        ("any password hash", "$argon2"),
        ("the password", "erin's long password"),
    ] {
        assert!(!seen.contains(secret), "{what} is in a response");
    }
    assert!(seen.contains(&created.secret[..14]), "the prefix is listed");
    // Revoked: refused at once.
    let r = app
        .http
        .delete(format!("{}/api/v1/tokens/{}", app.base, created.token.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = bot
        .get(format!("{}/api/v1/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("unknown or revoked"));
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what() {
    let app = spawn_app(1_500, None).await;
    let admin = Principal {
        name: "admin".into(),
        role: Role::Admin,
        via: app::ssr::access::Via::Session,
        reach: app::domain::access::Reach::All,
    };
    let editor_token = app
        .state
        .accounts()
        .create_token(
            NewToken {
                name: "ops-editor".into(),
                role: Role::Editor,
                sites: None,
            },
            &admin,
        )
        .await
        .unwrap()
        .secret;
    let editor = client(Some(&editor_token));
    let version = app
        .get("/api/v1/rules")
        .await
        .json::<Value>()
        .await
        .unwrap()["rules"]["version"]
        .clone();
    let r = editor
        .post(format!("{}/api/v1/rules/edits", app.base))
        .json(&json!({"op": "disable", "expected_version": version,
            "item": {"type": "playbook", "key": "carrier_late", "cause": "reason:carrier_late", "action": "x", "owner": "x", "priority": "high"}}))
        .send()
        .await
        .unwrap();
    let edit_status = r.status();
    let edit_body = r.text().await.unwrap();
    let r = editor
        .post(format!("{}/api/v1/schedules", app.base))
        .json(&json!({"name": "weekday mornings", "cron": "0 6 * * 1-5", "timezone": "America/Chicago",
            "scope": "flagged", "catch_up": "once", "enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let schedule: Value = r.json().await.unwrap();
    let r = editor
        .delete(format!(
            "{}/api/v1/schedules/{}",
            app.base,
            schedule["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app
        .http
        .patch(format!("{}/api/v1/users/nobody", app.base))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown users are not created by a change");
    app.post_json(
        "/api/v1/users",
        &json!({"username": "frank", "password": "frank's long password", "role": "viewer"}),
    )
    .await;
    let r = app
        .http
        .patch(format!("{}/api/v1/users/frank", app.base))
        .json(&json!({"role": "editor", "disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The editor may not read the audit log; the admin may.
    assert_eq!(
        editor
            .get(format!("{}/api/v1/audit", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let log: Vec<app::dto::AuditEntry> = app.get("/api/v1/audit").await.json().await.unwrap();
    let find = |action: &str| {
        log.iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in {log:#?}"))
    };
    let e = find("schedule.create");
    assert_eq!(
        (e.actor.as_str(), e.target.as_str()),
        ("token:ops-editor", "schedule:weekday mornings")
    );
    assert!(
        e.detail.contains("0 6 * * 1-5") && e.detail.contains("America/Chicago"),
        "{}",
        e.detail
    );
    assert_eq!(find("schedule.delete").actor, "token:ops-editor");
    let e = find("user.update");
    assert_eq!(
        (e.actor.as_str(), e.target.as_str(), e.detail.as_str()),
        ("token:tests", "user:frank", "role → editor, disabled")
    );
    assert_eq!(find("user.create").target, "user:frank");
    assert_eq!(find("token.create").target, "token:ops-editor");
    if edit_status == 200 {
        let e = find("rules.edit");
        assert_eq!(e.actor, "token:ops-editor");
        assert!(e.detail.contains("carrier_late"), "{}", e.detail);
    } else {
        panic!("the rule edit failed: {edit_status} {edit_body}");
    }
    // Newest first.
    assert!(log.windows(2).all(|w| w[0].at >= w[1].at));
    // The rule history names the same actor.
    let rules: Value = app.get("/api/v1/rules").await.json().await.unwrap();
    assert_eq!(
        rules["history"][0]["changed_by"], "token:ops-editor",
        "{}",
        rules["history"]
    );
}

/// Users cannot lock every admin out: the last enabled admin can be neither disabled nor
/// demoted, and nothing of the refused change is kept.
#[tokio::test]
async fn the_last_admin_stays() {
    let app = spawn_app(0, None).await;
    let add = |name: &'static str, role: &'static str| {
        let body = json!({"username": name, "password": "a long enough password", "role": role});
        let http = app.http.clone();
        let url = format!("{}/api/v1/users", app.base);
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    assert_eq!(add("gina", "admin").await.status(), 201);
    let patch = |name: &'static str, body: Value| {
        app.http
            .patch(format!("{}/api/v1/users/{name}", app.base))
            .json(&body)
            .send()
    };
    for change in [
        json!({"disabled": true}),
        json!({"role": "editor", "password": "another long password"}),
    ] {
        let r = patch("gina", change).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("last enabled admin"));
    }
    let gina: Vec<app::dto::UserView> = app.get("/api/v1/users").await.json().await.unwrap();
    assert_eq!(
        (gina[0].role, gina[0].disabled),
        (Role::Admin, false),
        "rolled back"
    );
    assert_eq!(
        login(&app, "gina", "a long enough password", None)
            .await
            .status(),
        303,
        "password unchanged"
    );
    // With a second admin, either may go.
    assert_eq!(add("hank", "admin").await.status(), 201);
    assert_eq!(
        patch("gina", json!({"disabled": true}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        patch("hank", json!({"role": "viewer"}))
            .await
            .unwrap()
            .status(),
        400
    );
}
