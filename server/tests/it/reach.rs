//! Site-scoped access: a viewer limited to two sites (DAL and PHX) sees nothing of a third
//! (ATL) through the JSON API, the server functions, the pages, the exports (evidence
//! JSON, digests, e-mails) and the event stream; its network row is the sum of its sites.

use crate::common::*;
use app::domain::access::Role;
use app::dto::{NewToken, NewUser, UserChange};
use app::ssr::access::Principal;
use serde_json::{json, Value};

const SCOPE: &str = "DAL,PHX";

/// A client sending `token` (and nothing else), following no redirects.
fn as_token(token: &str) -> reqwest::Client {
    client_with(Some(token), false)
}

#[tokio::test]
async fn a_viewer_limited_to_two_sites_sees_nothing_of_a_third() {
    let app = spawn_app(6_000, None).await;
    // What exists at ATL: an insight, a conversation with an answered turn, a run.
    let atl = app.refresh("ATL", "otif").await;
    assert_eq!(atl.status(), 200);
    let atl_insight: Value = atl.json().await.unwrap();
    let atl_insight = atl_insight["id"].as_str().unwrap().to_string();
    let (atl_conversation, _, atl_turn) = app.ask("ATL", "otif", None, "Why is OTIF down?").await;
    let atl_run = app.run("site", Some("ATL")).await.run.id;
    // And at DAL, for contrast.
    assert_eq!(app.refresh("DAL", "otif").await.status(), 200);

    let accounts = app.state.accounts();
    accounts
        .add_user(
            NewUser {
                username: "dana".into(),
                password: Some("dallas and phoenix".into()),
                role: Role::Viewer,
                sites: Some(SCOPE.into()),
            },
            "test",
        )
        .await
        .unwrap();
    let dana = Principal {
        name: "dana".into(),
        role: Role::Viewer,
        via: app::ssr::access::Via::Session,
        reach: app::domain::access::Reach::Sites(["DAL".to_string(), "PHX".to_string()].into()),
    };
    // Her token (made as her: it can reach no further than she does).
    let token = accounts
        .create_token(
            NewToken {
                name: "dana-notebook".into(),
                role: Role::Viewer,
                sites: None,
            },
            &dana,
        )
        .await
        .unwrap();
    assert_eq!(token.token.sites.as_deref(), Some("DAL,PHX"));
    let http = as_token(&token.secret);
    let get = |path: String| {
        let http = http.clone();
        let base = app.base.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let post = |path: String, body: Value| {
        let http = http.clone();
        let base = app.base.clone();
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let nothing_of_atl = |what: &str, body: &str| {
        for leak in [
            "\"ATL\"",
            "Atlanta",
            atl_insight.as_str(),
            atl_conversation.as_str(),
            atl_turn.id.as_str(),
            atl_run.as_str(),
        ] {
            assert!(!body.contains(leak), "{what} shows {leak}: {body:.400}");
        }
    };

    // Who she is.
    let (status, me) = get("/api/v1/me".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&me).unwrap()["sites"],
        json!(["DAL", "PHX"])
    );

    // The dashboard: her two sites, and their sum in place of the network.
    let (status, body) = get("/api/v1/dashboard".into()).await;
    assert_eq!(status, 200);
    nothing_of_atl("the dashboard", &body);
    let mine: app::dto::Dashboard = serde_json::from_str(&body).unwrap();
    let sites: Vec<&str> = mine.sites.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(sites, ["DAL", "PHX"]);
    assert_eq!(mine.reach, Some(vec!["DAL".to_string(), "PHX".to_string()]));
    assert_eq!(mine.network.site, "");
    assert!(mine.network.cards.is_empty(), "no whole-network insight");
    let all: app::dto::Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let lines = |d: &app::dto::Dashboard, site: &str| -> i64 {
        let row = std::iter::once(&d.network)
            .chain(&d.sites)
            .find(|r| r.site == site)
            .unwrap();
        row.tiles
            .iter()
            .find(|t| t.metric.key() == "otif")
            .unwrap()
            .denominator
    };
    assert_eq!(
        lines(&mine, ""),
        lines(&all, "DAL") + lines(&all, "PHX"),
        "her network figures are her sites' sum"
    );
    assert!(lines(&all, "network") > lines(&mine, ""));

    // The API, one operation after another.
    for (path, what) in [
        (
            "/api/v1/evidence?site=ATL&metric=otif".to_string(),
            "ATL's pack",
        ),
        (
            "/api/v1/evidence?site=network&metric=otif".into(),
            "the network's pack",
        ),
        ("/api/v1/insights?site=ATL".into(), "ATL's insights"),
        (
            format!("/api/v1/insights/{atl_insight}/lineage"),
            "an ATL lineage",
        ),
        (
            format!("/api/v1/insights/{atl_insight}/feedback"),
            "an ATL insight's feedback",
        ),
        (
            format!("/api/v1/conversations/{atl_conversation}"),
            "an ATL conversation",
        ),
        (
            format!("/api/v1/turns/{}/events", atl_turn.id),
            "an ATL answer's event stream",
        ),
        (format!("/api/v1/runs/{atl_run}"), "an ATL run"),
        (
            "/api/v1/notifications".into(),
            "the deliveries (digests of every site)",
        ),
    ] {
        let (status, body) = get(path.clone()).await;
        assert_eq!(status, 403, "{what}: {path} answered {body}");
        assert!(
            body.contains("your access covers DAL, PHX"),
            "{what}: {body}"
        );
        nothing_of_atl(what, &body);
    }
    for (path, body, what) in [
        (
            "/api/v1/conversations".to_string(),
            json!({"site": "ATL", "metric": "otif", "question": "why?"}),
            "a question about ATL",
        ),
        (
            format!("/api/v1/conversations/{atl_conversation}/turns"),
            json!({"question": "and then?"}),
            "a follow-up in an ATL conversation",
        ),
        (
            format!("/api/v1/insights/{atl_insight}/feedback"),
            json!({"helpful": true}),
            "feedback on an ATL insight",
        ),
    ] {
        let (status, answer) = post(path, body).await;
        assert_eq!(status, 403, "{what}: {answer}");
    }
    // Lists hold her sites only.
    for path in [
        "/api/v1/insights",
        "/api/v1/runs",
        "/api/v1/sites",
        "/api/v1/digests/preview",
        "/api/v1/digests/preview?format=email",
        "/api/v1/digests/preview?format=slack",
    ] {
        let (status, body) = get(path.into()).await;
        assert_eq!(status, 200, "{path}: {body:.300}");
        nothing_of_atl(path, &body);
    }
    let (_, insights) = get("/api/v1/insights".into()).await;
    assert!(insights.contains("\"DAL\""), "her own insights are listed");
    let (_, sites) = get("/api/v1/sites".into()).await;
    let sites: Vec<Value> = serde_json::from_str(&sites).unwrap();
    assert_eq!(sites.len(), 2);
    // Her own sites answer.
    let (status, _) = get("/api/v1/evidence?site=PHX&metric=otif".into()).await;
    assert_eq!(status, 200);

    // Server functions (what the pages call).
    for (endpoint, body) in [
        ("kpi_detail", json!({"site": "ATL", "metric": "otif"})),
        ("kpi_detail", json!({"site": "network", "metric": "otif"})),
        ("conversation", json!({"id": atl_conversation})),
        ("lineage", json!({"id": atl_insight})),
        ("run_detail", json!({"id": atl_run})),
        (
            "ask_question",
            json!({"site": "ATL", "metric": "otif", "question": "why?"}),
        ),
    ] {
        let (status, answer) = post(format!("/api/{endpoint}"), body).await;
        assert_eq!(status, 403, "/api/{endpoint}: {answer}");
        nothing_of_atl(endpoint, &answer);
    }
    let (status, body) = post("/api/dashboard".into(), json!({})).await;
    assert_eq!(status, 200);
    nothing_of_atl("the dashboard server function", &body);

    // Pages, signed in with her password.
    let browser = client_with(None, false);
    let r = browser
        .post(format!("{}/login", app.base))
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "dana"), ("password", "dallas and phoenix")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = |path: &'static str| {
        let browser = browser.clone();
        let cookie = cookie.clone();
        let base = app.base.clone();
        async move {
            let r = browser
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, overview) = page("/").await;
    assert_eq!(status, 200);
    assert!(overview.contains("Your sites"), "{overview:.300}");
    assert!(overview.contains("data-site=\"DAL\""));
    nothing_of_atl("the overview page", &overview);
    for path in ["/kpi/ATL/otif", "/kpi/network/otif"] {
        let (_, body) = page(path).await;
        assert!(
            body.contains("your access covers DAL, PHX"),
            "{path}: {body:.300}"
        );
        nothing_of_atl(path, &body);
    }
    let (status, _) = page("/notifications").await;
    assert_eq!(status, 403);
    let (status, dal) = page("/kpi/DAL/otif").await;
    assert_eq!(status, 200);
    assert!(!dal.contains("your access covers"));

    // Operations over every site are refused outright (whatever the role would allow).
    accounts
        .update_user(
            "dana",
            UserChange {
                role: Some(Role::Editor),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
    for (path, body) in [
        ("/api/v1/digests", json!({})),
        ("/api/v1/runs", json!({"scope": "all"})),
        (
            "/api/v1/runs",
            json!({"scope": "site", "scope_value": "ATL"}),
        ),
        (
            "/api/v1/insights/refresh",
            json!({"site": "ATL", "metric": "otif"}),
        ),
        ("/api/v1/alerts/check", json!({})),
    ] {
        let r = browser
            .post(format!("{}{path}", app.base))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-origin")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path} {body}");
    }
    let r = browser
        .post(format!("{}/api/v1/runs", app.base))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"scope": "site", "scope_value": "DAL"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "a run of her own site");

    // Lifting the limit shows everything again, at the next request.
    accounts
        .update_user(
            "dana",
            UserChange {
                sites: Some(String::new()),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
    let (status, body) = get(format!("/api/v1/insights/{atl_insight}/lineage")).await;
    assert_eq!(
        (status, body.contains("your access")),
        (403, true),
        "the token keeps its own limit"
    );
    let r = browser
        .get(format!("{}/api/v1/evidence?site=ATL&metric=otif", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the user's session sees every site again");
}

#[tokio::test]
async fn grants_are_checked_and_regions_expand() {
    let app = spawn_app(1_500, None).await;
    let accounts = app.state.accounts();
    let add = |name: &'static str, sites: &'static str| {
        accounts.add_user(
            NewUser {
                username: name.into(),
                password: None,
                role: Role::Viewer,
                sites: Some(sites.into()),
            },
            "test",
        )
    };
    let e = add("typo", "DAL,HOU").await.unwrap_err();
    assert!(e.to_string().contains("no site 'HOU'"), "{e}");
    let e = add("typo2", "region:Atlantis").await.unwrap_err();
    assert!(e.to_string().contains("no region 'Atlantis'"), "{e}");
    let user = add("wes", "region:west, dal").await.unwrap();
    assert_eq!(user.sites.as_deref(), Some("region:west,dal"));
    let token = accounts
        .create_token(
            NewToken {
                name: "wes".into(),
                role: Role::Viewer,
                sites: Some("region:West,DAL".into()),
            },
            &Principal::cli(),
        )
        .await
        .unwrap();
    let me: Value = as_token(&token.secret)
        .get(format!("{}/api/v1/me", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sites"], json!(["DAL", "DEN", "LAX", "PHX", "SEA"]));
    // A limited creator cannot make a token that reaches further.
    let limited = Principal {
        name: "wes".into(),
        role: Role::Admin,
        via: app::ssr::access::Via::Session,
        reach: app::domain::access::Reach::Sites(["DAL".to_string()].into()),
    };
    let e = accounts
        .create_token(
            NewToken {
                name: "wider".into(),
                role: Role::Viewer,
                sites: Some("DAL,ATL".into()),
            },
            &limited,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("its creator does not"), "{e}");
    // Nor can one reaching no site (its sites gone) make a token that reads as unlimited.
    let nowhere = Principal {
        reach: app::domain::access::Reach::Sites(Default::default()),
        ..limited.clone()
    };
    let e = accounts
        .create_token(
            NewToken {
                name: "nowhere".into(),
                role: Role::Viewer,
                sites: None,
            },
            &nowhere,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("covers no site"), "{e}");
    // The audit log says who was limited to what.
    let audit = accounts
        .audit(app::dto::AuditQuery {
            action: Some("user.create".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|a| a.detail.contains("sites region:west,dal")));
}
