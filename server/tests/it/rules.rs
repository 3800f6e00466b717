//! The rules and playbooks editor through the API: validation with named problems, a new
//! version per change (recorded with a summary), optimistic concurrency, insights going
//! stale on a rule change, triggers over consecutive weeks, and disabled rows kept from
//! agents.

use crate::common::{spawn_app, TestApp};
use app::domain::kpi::Metric;
use app::dto::{Dashboard, InsightView, Lineage, RuleChange, RulesView};
use serde_json::{json, Value};

async fn rules(app: &TestApp) -> RulesView {
    app.get("/api/v1/rules").await.json().await.unwrap()
}

async fn edit(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post_json("/api/v1/rules/edits", &body).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

fn band(value: f64, version: i64) -> Value {
    json!({"op": "update", "expected_version": version, "item": {"type": "rule",
        "key": "at_risk_band_pp", "kind": "threshold", "metric": null, "value": value,
        "description": "On target at or above target; at risk within this many points below.",
        "enabled": true}})
}

/// Each site's OTIF tile: (site, trigger fired, weekly values oldest first).
async fn otif_tiles(app: &TestApp) -> Vec<(String, Option<String>, Vec<Option<f64>>)> {
    let d: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    d.sites
        .iter()
        .map(|s| {
            let t = s.tiles.iter().find(|t| t.metric == Metric::OTIF).unwrap();
            (s.site.clone(), t.trigger.clone(), t.spark.clone())
        })
        .collect()
}

#[tokio::test]
async fn edits_are_validated_versioned_and_make_insights_stale() {
    let app = spawn_app(20_000, None).await;
    let r = app.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 200);
    let first: InsightView = r.json().await.unwrap();
    assert_eq!(first.rules_version, 1);
    assert_eq!(app.card("DAL", Metric::OTIF).await.stale, None);

    let book = rules(&app).await;
    assert_eq!(book.rules.version, 1);
    assert!(book.history.is_empty());
    assert!(book.sites.contains(&"DAL".to_string()));
    assert!(book
        .rules
        .triggers
        .iter()
        .any(|t| t.key == "otif_drop_trigger_pp"));
    assert!(book
        .rules
        .entries
        .iter()
        .any(|e| e.key == "anomaly_z" && e.kind == "sensitivity"));

    // Out of range: 400 naming the field and the range, and nothing changes.
    let (status, body) = edit(&app, band(80.0, 1)).await;
    assert_eq!(status, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("value: at_risk_band_pp is from 0.1 to 50 (points)"),
        "{msg}"
    );
    assert_eq!(rules(&app).await.rules.version, 1);
    // Malformed JSON: 400 with the expected shape.
    let (status, body) = edit(&app, json!({"op": "rename"})).await;
    assert_eq!(status, 400, "{body}");

    // A valid change is version 2, recorded with a summary; the insight is now stale.
    let (status, change) = edit(&app, band(3.0, 1)).await;
    assert_eq!(status, 200, "{change}");
    let change: RuleChange = serde_json::from_value(change).unwrap();
    assert_eq!(change.version, 2);
    assert_eq!(change.summary, "changed rule at_risk_band_pp: 2 → 3");
    let stale = app
        .card("DAL", Metric::OTIF)
        .await
        .stale
        .unwrap_or_default();
    assert!(
        stale.contains("business rules changed") && stale.contains("version 1 → 2"),
        "{stale}"
    );

    // An edit made against version 1 is refused: someone else saved first.
    let (status, body) = edit(&app, band(4.0, 1)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("now version 2"));

    // A refresh records the version it used and is current again.
    let again: InsightView = app.refresh("DAL", "otif").await.json().await.unwrap();
    assert_eq!(again.rules_version, 2);
    assert_eq!(app.card("DAL", Metric::OTIF).await.stale, None);

    let book = rules(&app).await;
    assert_eq!(book.rules.version, 2);
    assert_eq!(book.history.len(), 1);
    assert_eq!(book.history[0].summary, change.summary);
    // The stored snapshot is the whole rule book after the change.
    let snapshot: String =
        sqlx::query_scalar("SELECT rules_json FROM rule_changes WHERE version = 2")
            .fetch_one(app.state.db())
            .await
            .unwrap();
    let snapshot: app::domain::rules::Rules = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot, book.rules);
}

#[tokio::test]
async fn triggers_over_consecutive_weeks_and_disabled_rows() {
    let app = spawn_app(20_000, None).await;
    let mut version = rules(&app).await.rules.version;
    let save = |body: Value| {
        let app = &app;
        async move { edit(app, body).await }
    };

    // Only the new trigger may fire: switch the built-in OTIF trigger off.
    let (s, b) = save(json!({"op": "disable", "expected_version": version, "item": {"type": "trigger",
        "key": "otif_drop_trigger_pp", "metric": "otif", "condition": "drop", "value": 3, "periods": 1,
        "description": ""}}))
    .await;
    assert_eq!(s, 200, "{b}");
    version += 1;
    assert!(otif_tiles(&app).await.iter().all(|(_, t, _)| t.is_none()));

    // Below 100 % for 3 weeks in a row: every site (no DC is perfect).
    let trigger = |periods: u32, version: i64, op: &str| {
        json!({"op": op, "expected_version": version, "item": {"type": "trigger",
            "key": "otif_imperfect", "metric": "otif", "condition": "below", "value": 100,
            "periods": periods, "description": "Any failure, several weeks running."}})
    };
    let (s, b) = save(trigger(3, version, "create")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["summary"],
        "created trigger otif_imperfect (otif below 100%, 3 weeks in a row)"
    );
    version += 1;
    // It fires exactly where the last three weeks all have data below 100 %.
    let streak = |spark: &[Option<f64>], n: usize| {
        spark.len() >= n
            && spark[spark.len() - n..]
                .iter()
                .all(|v| v.is_some_and(|v| v < 100.0))
    };
    let tiles = otif_tiles(&app).await;
    let fired = tiles.iter().filter(|(_, t, _)| t.is_some()).count();
    assert!(
        fired >= 3,
        "most demo DCs miss some lines every week: {tiles:?}"
    );
    for (site, t, spark) in &tiles {
        let expected = streak(spark, 3).then_some("otif_imperfect");
        assert_eq!(t.as_deref(), expected, "{site}: {spark:?}");
    }
    // Twelve weeks in a row: only where all twelve weeks qualify (a missing week breaks it).
    let (s, b) = save(trigger(12, version, "update")).await;
    assert_eq!(s, 200, "{b}");
    version += 1;
    let tiles = otif_tiles(&app).await;
    for (site, t, spark) in &tiles {
        assert_eq!(t.is_some(), streak(spark, 12), "{site}: {spark:?}");
    }
    assert!(
        tiles.iter().filter(|(_, t, _)| t.is_some()).count() < fired || fired == tiles.len(),
        "a longer streak fires less often"
    );

    // A disabled playbook is not sent to agents; the enabled ones are.
    let (s, b) = save(json!({"op": "disable", "expected_version": version, "item": {"type": "playbook",
        "key": "carrier_late", "cause": "reason:carrier_late", "action": "x", "owner": "x", "priority": "high"}}))
    .await;
    assert_eq!(s, 200, "{b}");
    let insight: InsightView = app.refresh("DAL", "otif").await.json().await.unwrap();
    let lineage: Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", insight.id))
        .await
        .json()
        .await
        .unwrap();
    let request: Value = serde_json::from_str(&lineage.request_json).unwrap();
    let sent = &request["custom_inputs"]["rules"];
    let keys: Vec<&str> = sent["playbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert!(
        !keys.contains(&"carrier_late") && keys.contains(&"stockout"),
        "{keys:?}"
    );
    assert!(sent["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["key"] != "otif_drop_trigger_pp"));
    assert!(!insight
        .insight
        .as_ref()
        .map(|i| i
            .next_actions
            .iter()
            .any(|a| a.action.starts_with("Review the carrier scorecard")))
        .unwrap_or(false));
    assert_eq!(rules(&app).await.history.len(), 4);
}

#[tokio::test]
async fn two_edits_checked_against_one_version_cannot_both_be_stored() {
    // Both pass their checks against version 1 before either is stored: only the version
    // compare-and-set can stop the second.
    use app::domain::rulebook::RuleEdit;
    let app = spawn_app(0, None).await;
    let rulebook = app.state.rules();
    let a: RuleEdit = serde_json::from_value(band(3.0, 1)).unwrap();
    let b: RuleEdit = serde_json::from_value(band(4.0, 1)).unwrap();
    let (pa, pb) = (
        rulebook.prepare(&a).await.unwrap(),
        rulebook.prepare(&b).await.unwrap(),
    );
    let change = rulebook.commit(pa, "test").await.unwrap();
    assert_eq!(change.version, 2);
    let err = rulebook.commit(pb, "test").await.unwrap_err();
    assert!(matches!(err, app::ssr::ServiceError::Conflict(_)), "{err}");
    let book = rules(&app).await;
    assert_eq!(book.rules.value("at_risk_band_pp", 0.0), 3.0);
    assert_eq!(book.history.len(), 1);
}

#[tokio::test]
async fn concurrent_saves_of_one_version_let_exactly_one_win() {
    let app = spawn_app(2_000, None).await;
    let (a, b) = tokio::join!(edit(&app, band(3.0, 1)), edit(&app, band(4.0, 1)));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let book = rules(&app).await;
    assert_eq!(book.rules.version, 2);
    assert_eq!(book.history.len(), 1);
    let winner = if a.0 == 200 { 3.0 } else { 4.0 };
    assert_eq!(book.rules.value("at_risk_band_pp", 0.0), winner);
}
