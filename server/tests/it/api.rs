//! Router tests: the JSON API, SSR pages and the built-in analyst route, each on a fresh
//! SQLite database, through a real socket.

use crate::common::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn healthz_reports_ok() {
    let app = spawn_app(0, None).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn dashboard_lists_every_site_and_kpi_for_the_latest_complete_week() {
    let app = spawn_app(30_000, None).await;
    let r = app.get("/api/v1/dashboard").await;
    assert_eq!(r.status(), 200);
    let d: app::dto::Dashboard = r.json().await.unwrap();
    assert_eq!(d.period.start, "2026-11-09");
    assert_eq!(d.period.end, "2026-11-15");
    assert_eq!(d.previous_period.start, "2026-11-02");
    assert_eq!(d.sites.len(), 12);
    for row in d.sites.iter().chain(std::iter::once(&d.network)) {
        assert_eq!(row.tiles.len(), 5, "{}", row.site);
        assert_eq!(row.cards.len(), 5);
        assert!(
            row.cards.iter().all(|c| c.insight.is_none()),
            "no insight before a refresh"
        );
        for t in &row.tiles {
            assert_eq!(t.spark.len(), 12);
        }
    }
    // The network's lines equal the sum of the sites' lines.
    let lines = |row: &app::dto::SiteRow| {
        row.tiles
            .iter()
            .find(|t| t.metric.key() == "lines_due")
            .unwrap()
            .numerator
    };
    assert_eq!(lines(&d.network), d.sites.iter().map(lines).sum::<i64>());
    // Planted: Chicago's OTIF drops because PODs are missing.
    let chi = d.sites.iter().find(|s| s.site == "CHI").unwrap();
    let otif = chi.tiles.iter().find(|t| t.metric.key() == "otif").unwrap();
    assert!(
        otif.change.unwrap() < -10.0,
        "CHI OTIF change {:?}",
        otif.change
    );
    assert_eq!(otif.trigger.as_deref(), Some("otif_drop_trigger_pp"));
}

#[tokio::test]
async fn refresh_returns_a_new_insight_and_the_dashboard_shows_it() {
    let app = spawn_app(30_000, None).await;
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let view: app::dto::InsightView = r.json().await.unwrap();
    assert_eq!(view.status, "ok");
    assert_eq!(view.agent, "test-agent");
    assert_eq!(view.period_label, "2026-W46");
    let insight = view.insight.expect("contract from custom_outputs");
    assert!(insight.headline.contains("Dallas"), "{}", insight.headline);

    let listed: Vec<app::dto::InsightView> = app
        .get("/api/v1/insights?site=DAL&metric=otif")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, view.id);

    let card = app.card("DAL", app::domain::kpi::Metric::OTIF).await;
    assert_eq!(card.insight.as_ref().unwrap().id, view.id);
    assert_eq!(card.stale, None);
}

#[tokio::test]
async fn unknown_site_or_metric_is_a_json_404() {
    let app = spawn_app(2_000, None).await;
    for (path, body) in [
        (
            "/api/v1/insights/refresh",
            Some(json!({"site": "NOPE", "metric": "otif"})),
        ),
        (
            "/api/v1/insights/refresh",
            Some(json!({"site": "DAL", "metric": "nps"})),
        ),
        ("/api/v1/insights?site=NOPE", None),
        ("/api/v1/insights?metric=nps", None),
    ] {
        let r = match &body {
            Some(b) => app.post_json(path, b).await,
            None => app.get(path).await,
        };
        assert_eq!(r.status(), 404, "{path} {body:?}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("unknown"), "{v}");
    }
}

#[tokio::test]
async fn malformed_refresh_body_is_a_json_400() {
    let app = spawn_app(0, None).await;
    let r = app
        .http
        .post(format!("{}/api/v1/insights/refresh", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = app.get("/api/v1/insights?limit=lots").await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn network_view_has_a_site_dimension() {
    let app = spawn_app(20_000, None).await;
    let r = app.refresh("network", "otif").await;
    assert_eq!(r.status(), 200);
    let detail = app
        .state
        .cards()
        .kpi_detail(
            app::dto::KpiQuery {
                site: "network".into(),
                metric: "otif".into(),
                view: Default::default(),
                filter: None,
            },
            &app::domain::access::Reach::All,
        )
        .await
        .unwrap();
    let dims: Vec<&str> = detail
        .evidence
        .contributions
        .iter()
        .map(|d| d.dimension.as_str())
        .collect();
    assert_eq!(dims, ["site", "carrier", "customer", "category"]);
    assert_eq!(detail.history.len(), 1);
}

#[tokio::test]
async fn overview_page_is_server_rendered_with_hydration_scripts() {
    let app = spawn_app(5_000, None).await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("/pkg/opsight.js"),
        "hydration script missing: {}",
        &html[..html.len().min(1500)]
    );
    assert!(
        html.contains("Dallas DC") && html.contains("Network"),
        "rows missing"
    );
    assert!(
        html.contains("data-card=\"DAL:otif\""),
        "insight card missing"
    );
    assert!(html.contains("Refresh insight"));
}

#[tokio::test]
async fn kpi_detail_and_rules_pages_render() {
    let app = spawn_app(5_000, None).await;
    let html = app.get("/kpi/ATL/in_full").await.text().await.unwrap();
    assert!(
        html.contains("In-full · Atlanta DC"),
        "detail heading missing"
    );
    assert!(
        html.contains("By category") && html.contains("OTIF tree") && html.contains("Data checks")
    );
    let html = app.get("/kpi/ATL/bogus").await.text().await.unwrap();
    assert!(html.contains("unknown metric"));
    let html = app.get("/rules").await.text().await.unwrap();
    assert!(html.contains("otif_drop_trigger_pp") && html.contains("Playbooks"));
}

#[tokio::test]
async fn builtin_analyst_speaks_the_protocol() {
    let app = spawn_app(5_000, None).await;
    let rules = app::ssr::store::rules::load(app.state.db()).await.unwrap();
    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &rules,
        "ATL",
        app::domain::kpi::Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();
    let mut request = app::ssr::agent::build_request(&pack, &rules, "why?");
    let r = app.post_json("/agent/invocations", &request).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["output"][0]["type"], "message");
    assert!(v["custom_outputs"]["insight"]["headline"].is_string());

    request["stream"] = json!(true);
    let r = app.post_json("/agent/invocations", &request).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("response.output_item.done") && body.trim_end().ends_with("data: [DONE]")
    );
    let answer = app::domain::insight::answer_from_sse(&body).unwrap();
    assert!(answer.insight.is_some());

    let r = app
        .post_json("/agent/invocations", &json!({"input": []}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_code"],
        "BAD_REQUEST"
    );
}
