//! Refresh runs through the API against a stub agent that counts calls: every card in
//! scope becomes one job and one insight; unchanged cards make no agent call; changed data
//! for one site calls the agent only for the cards that data feeds; one failing card does
//! not stop the run; a replica that lost its lease cannot store a second insight. Runs on
//! SQLite and, with OPSIGHT_TEST_DATABASE=postgres, PostgreSQL.

use crate::common::stub::StubAgent;
use crate::common::{spawn_app, TestApp};
use std::collections::BTreeSet;
use std::time::Duration;

async fn app_with_stub(stub: &StubAgent) -> TestApp {
    let url = stub.serve().await;
    spawn_app(3000, Some(&url)).await
}

/// An application (never run: no background worker, the test hands out claims and
/// refreshes itself) on `tdb` whose cards agent is the stub at `url`, with this reference
/// date and job lease.
async fn quiet_state(
    tdb: &crate::common::TestDb,
    url: &str,
    as_of: chrono::NaiveDate,
    lease: Duration,
) -> app::ssr::state::AppState {
    let mut c = crate::common::config(&tdb.url);
    c.as_of = Some(as_of);
    c.job_lease = lease;
    crate::common::set_agents(
        &mut c,
        vec![crate::common::profile(
            app::ssr::agent::AgentKind::MlflowServe,
            url,
            Duration::from_secs(5),
            None,
        )],
    );
    server::Application::build_with(c, tdb.db.clone())
        .await
        .unwrap()
        .state()
        .clone()
}

/// A fresh seeded database.
async fn seeded() -> crate::common::TestDb {
    let tdb = crate::common::test_db().await;
    crate::common::seed(&tdb.db, 3000).await;
    tdb
}

async fn insights_with_job(state: &app::ssr::state::AppState) -> i64 {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM insights WHERE job_id IS NOT NULL")
        .fetch_one(state.db())
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
    assert_eq!(
        insights_with_job(&app.state).await,
        65,
        "one insight per job"
    );
    // The cards show the new insights.
    let card = app.card("DAL", app::domain::kpi::Metric::OTIF).await;
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
    app::ssr::data::import::import_orders(
        app.state.db(),
        std::io::Cursor::new(csv.as_bytes().to_vec()),
    )
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
    let card = app.card("DAL", app::domain::kpi::Metric::OTIF).await;
    assert_eq!(
        card.insight.unwrap().id,
        ok.jobs
            .iter()
            .find(|j| j.metric == app::domain::kpi::Metric::OTIF)
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
        // An unknown metric is 404, like an unknown site (it was 400 before).
        (
            serde_json::json!({"scope": "metric", "scope_value": "speed"}),
            404,
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

/// A replica that stalls past its lease loses the job: its late result is discarded and the
/// replica that took over stores the job's one insight.
#[tokio::test]
async fn a_replica_that_lost_its_lease_cannot_store_a_second_insight() {
    use app::domain::scope::Scope;
    use app::domain::status::{JobStatus, RunOrigin};
    use app::ssr::runs::JobOutcome;
    let stub = StubAgent::default();
    let url = stub.serve().await;
    // Two replicas without background workers: the test hands out the claims. A's claims
    // hold for a millisecond, B's for 30 s.
    let tdb = seeded().await;
    let as_of = crate::common::as_of();
    let a = quiet_state(&tdb, &url, as_of, Duration::from_millis(1)).await;
    let b = quiet_state(&tdb, &url, as_of, Duration::from_secs(30)).await;
    let run = a
        .runs()
        .start_scope(
            &Scope::Card("DAL".into(), app::domain::kpi::Metric::OTIF),
            false,
            RunOrigin::Manual,
            &Default::default(),
        )
        .await
        .unwrap();
    // A claims with a lease that expires at once; B takes the job over.
    let claim_a = a.runs().claim(5, None).await.unwrap();
    assert_eq!(claim_a.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claim_b = b.runs().claim(5, None).await.unwrap();
    assert_eq!(claim_b.len(), 1);
    assert_eq!(
        (claim_b[0].id.as_str(), claim_b[0].attempts),
        (claim_a[0].id.as_str(), 2)
    );
    // A wakes up and finishes its work: the agent is called, nothing is stored.
    assert_eq!(a.runs().execute(&claim_a[0]).await, JobOutcome::Superseded);
    assert_eq!(insights_with_job(&a).await, 0);
    assert_eq!(b.runs().execute(&claim_b[0]).await, JobOutcome::Done);
    assert_eq!(insights_with_job(&a).await, 1);
    assert_eq!(stub.call_count(), 2);
    assert!(
        !app::ssr::store::runs::finish_job(a.db(), &claim_a[0], JobStatus::Done, None, None)
            .await
            .unwrap()
    );
    a.runs().close_finished().await.unwrap();
    let d = a
        .runs()
        .detail(&run.id, &app::domain::access::Reach::All)
        .await
        .unwrap();
    assert_eq!((d.run.status.as_str(), d.run.done), ("finished", 1));
    assert_eq!(
        d.jobs[0].claimed_by.as_deref(),
        Some(&*b.runs().queue().replica)
    );
}

/// "Unchanged" survives the reference date moving within the week (a daily schedule does
/// not call the agent again for the same evidence), and new feedback on the card counts as
/// a change.
#[tokio::test]
async fn unchanged_across_days_of_the_week_but_not_after_new_feedback() {
    use app::domain::kpi::Metric;
    use app::ssr::cards::{RefreshOptions, Refreshed};
    let stub = StubAgent::default();
    let url = stub.serve().await;
    let tdb = seeded().await;
    let lease = Duration::from_secs(30);
    let saturday = quiet_state(&tdb, &url, crate::common::as_of(), lease).await;
    // Sunday: the same latest complete week, one day later.
    let sunday = quiet_state(
        &tdb,
        &url,
        crate::common::as_of() + chrono::Duration::days(1),
        lease,
    )
    .await;
    let skip = RefreshOptions {
        skip_unchanged: true,
        ..Default::default()
    };
    let first = match saturday
        .cards()
        .refresh_card("DAL", Metric::OTIF, skip)
        .await
        .unwrap()
    {
        Refreshed::Made(v) => v,
        other => panic!("a first refresh calls the agent: {other:?}"),
    };
    assert!(matches!(
        sunday
            .cards()
            .refresh_card("DAL", Metric::OTIF, skip)
            .await
            .unwrap(),
        Refreshed::Unchanged { .. }
    ));
    assert_eq!(stub.call_count(), 1);
    sunday
        .cards()
        .give_feedback(
            &first.id,
            app::dto::FeedbackInput {
                helpful: false,
                reason: Some("Names the wrong carrier".into()),
            },
            "test",
            &app::domain::access::Reach::All,
        )
        .await
        .unwrap();
    assert!(matches!(
        sunday
            .cards()
            .refresh_card("DAL", Metric::OTIF, skip)
            .await
            .unwrap(),
        Refreshed::Made(_)
    ));
    assert_eq!(
        stub.call_count(),
        2,
        "new feedback: the agent is asked again"
    );
}
