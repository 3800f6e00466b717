//! Refresh runs through the API against a stub agent that counts calls: every card in
//! scope becomes one job and one insight; unchanged cards make no agent call; changed data
//! for one site calls the agent only for the cards that data feeds; one failing card does
//! not stop the run. Runs on SQLite and, with OPSIGHT_TEST_DATABASE=postgres, PostgreSQL.

mod common;

use common::stub::StubAgent;
use common::{spawn_app, TestApp};
use std::collections::BTreeSet;
use std::time::Duration;

async fn app_with_stub(stub: &StubAgent) -> TestApp {
    let url = stub.serve().await;
    spawn_app(3000, Some(&url)).await
}

async fn insights_with_job(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM insights WHERE job_id IS NOT NULL")
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn unchanged_cards_make_no_agent_call_and_changed_data_only_calls_its_cards() {
    let stub = StubAgent::default();
    let app = app_with_stub(&stub).await;

    // 1. Every card: 12 sites + the network, 5 KPIs each.
    let first = app.run("all", None).await;
    assert_eq!(first.run.total, 65);
    assert_eq!(
        (first.run.done, first.run.unchanged, first.run.failed),
        (65, 0, 0)
    );
    assert_eq!(stub.call_count(), 65, "one agent call per card");
    let cards: BTreeSet<_> = stub.calls().into_iter().collect();
    assert_eq!(cards.len(), 65, "each card called once");
    assert!(first
        .jobs
        .iter()
        .all(|j| j.status == "done" && j.insight_id.is_some() && j.attempts == 1));
    assert_eq!(insights_with_job(&app).await, 65, "one insight per job");
    // The cards show the new insights.
    let card = app.card("DAL", app::domain::kpi::Metric::Otif).await;
    assert!(card
        .insight
        .unwrap()
        .narrative
        .contains("otif at DAL: steady"));

    // 2. Nothing changed: no agent call at all, every job recorded as unchanged.
    let second = app.run("all", None).await;
    assert_eq!(
        (second.run.done, second.run.unchanged, second.run.failed),
        (0, 65, 0)
    );
    assert_eq!(stub.call_count(), 65, "no call for unchanged cards");
    for (a, b) in first.jobs.iter().zip(&second.jobs) {
        assert_eq!(
            a.insight_id, b.insight_id,
            "an unchanged job points at the insight it kept"
        );
    }

    // 3. New deliveries for Dallas in the reported week (2026-11-09..15).
    let csv = "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code\n\
               NEW-1,1,DAL,Acme,FastFreight,SKU-1,Dairy,10,4,2026-11-11,2026-11-14,short_pick\n\
               NEW-2,1,DAL,Acme,FastFreight,SKU-2,Dairy,10,10,2026-11-12,2026-11-13,carrier_late\n";
    let rules = app::ssr::db::rules(&app.state.db).await.unwrap();
    app::ssr::import::import_orders(&app.state.db, csv.as_bytes(), rules.scoring())
        .await
        .unwrap();
    let third = app.run("all", None).await;
    let called: BTreeSet<String> = stub.calls()[65..]
        .iter()
        .map(|(site, _)| site.clone())
        .collect();
    assert!(
        called.contains("DAL"),
        "Dallas' cards were refreshed: {called:?}"
    );
    assert!(
        called.iter().all(|s| s == "DAL" || s == "network"),
        "only Dallas' cards and the network's (which includes Dallas) were called: {called:?}"
    );
    let done_sites: BTreeSet<&str> = third
        .jobs
        .iter()
        .filter(|j| j.status == "done")
        .map(|j| j.site.as_str())
        .collect();
    assert_eq!(
        third.run.done as usize,
        stub.call_count() - 65,
        "one call per refreshed card"
    );
    assert!(done_sites.iter().all(|s| *s == "DAL" || *s == "network"));
    assert_eq!(third.run.unchanged, 65 - third.run.done);
    // The forced run calls the agent for every card.
    let r = app
        .post_json(
            "/api/v1/runs",
            &serde_json::json!({"scope": "site", "scope_value": "ATL", "force": true}),
        )
        .await;
    let run: app::dto::RunView = r.json().await.unwrap();
    let forced = app.wait_run(&run.id).await;
    assert_eq!((forced.run.total, forced.run.done), (5, 5));
}

#[tokio::test]
async fn one_failing_card_never_stops_the_run_and_keeps_its_last_good_insight() {
    let stub = StubAgent::default();
    let app = app_with_stub(&stub).await;
    let ok = app.run("site", Some("DAL")).await;
    assert_eq!(ok.run.done, 5);
    stub.fail_sites.lock().unwrap().push("DAL".into());
    // Force, so the agent is called although nothing changed.
    let r = app
        .post_json(
            "/api/v1/runs",
            &serde_json::json!({"scope": "metric", "scope_value": "otif", "force": true}),
        )
        .await;
    let run: app::dto::RunView = r.json().await.unwrap();
    let d = app.wait_run(&run.id).await;
    assert_eq!((d.run.total, d.run.done, d.run.failed), (13, 12, 1));
    let failed = d.jobs.iter().find(|j| j.status == "failed").unwrap();
    assert_eq!(failed.site, "DAL");
    assert!(
        failed.error.as_deref().unwrap().contains("rejected"),
        "{failed:?}"
    );
    let card = app.card("DAL", app::domain::kpi::Metric::Otif).await;
    assert_eq!(
        card.insight.unwrap().id,
        ok.jobs
            .iter()
            .find(|j| j.metric == app::domain::kpi::Metric::Otif)
            .unwrap()
            .insight_id
            .clone()
            .unwrap(),
        "the last good insight stays on the card"
    );
    assert!(card.stale.unwrap().contains("last refresh failed"));
}

#[tokio::test]
async fn flagged_scope_takes_only_off_target_or_triggered_cards() {
    let stub = StubAgent::default();
    let app = app_with_stub(&stub).await;
    let d: app::dto::Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let flagged: BTreeSet<(String, String)> = std::iter::once(&d.network)
        .chain(&d.sites)
        .flat_map(|row| {
            row.tiles
                .iter()
                .filter(|t| {
                    t.status == app::domain::rules::Status::OffTarget || t.trigger.is_some()
                })
                .map(|t| (row.site.clone(), t.metric.key().to_string()))
        })
        .collect();
    assert!(
        !flagged.is_empty() && flagged.len() < 65,
        "the demo has some flagged cards"
    );
    let run = app.run("flagged", None).await;
    let jobs: BTreeSet<(String, String)> = run
        .jobs
        .iter()
        .map(|j| (j.site.clone(), j.metric.key().to_string()))
        .collect();
    assert_eq!(jobs, flagged);
}

#[tokio::test]
async fn bad_run_requests_get_clear_errors() {
    let stub = StubAgent::default();
    let app = app_with_stub(&stub).await;
    for (body, status, says) in [
        (
            serde_json::json!({"scope": "everything"}),
            400,
            "unknown scope",
        ),
        (serde_json::json!({"scope": "site"}), 400, "needs a value"),
        (
            serde_json::json!({"scope": "site", "scope_value": "XXX"}),
            404,
            "no site 'XXX'",
        ),
        (
            serde_json::json!({"scope": "metric", "scope_value": "speed"}),
            400,
            "unknown metric",
        ),
        (serde_json::json!({"nope": 1}), 400, "expected JSON"),
    ] {
        let r = app.post_json("/api/v1/runs", &body).await;
        assert_eq!(r.status(), status, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(says), "{e}");
    }
    assert_eq!(app.get("/api/v1/runs/run_nope").await.status(), 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stub.call_count(), 0);
}
