//! Materiality: unit costs through the API and a CSV (all or nothing, errors named), money at
//! stake in the evidence pack and on the KPI page, root causes ranked by money.

use crate::common::spawn_app;
use app::domain::kpi::Metric;
use app::dto::InsightView;
use app::ssr::data::seed::CATEGORIES;
use serde_json::json;

#[tokio::test]
async fn unit_costs_put_money_at_stake_and_rank_causes_by_it() {
    let app = spawn_app(60_000, None).await;

    // A bad entry saves nothing and says which.
    let r = app
        .http
        .put(format!("{}/api/v1/unit-costs", app.base))
        .json(&json!([{"category": "Beverages", "unit_cost": 12.5}, {"unit_cost": 3.0}, {"sku": "X", "unit_cost": -1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("nothing was saved")
            && msg.contains("entry 1: a sku or a category is required")
            && msg.contains("entry 2: unit_cost -1"),
        "{msg}"
    );
    let none: Vec<serde_json::Value> = app.get("/api/v1/unit-costs").await.json().await.unwrap();
    assert!(none.is_empty());
    // Without costs there is no money in the pack.
    let rules = app::ssr::store::rules::load(app.state.db()).await.unwrap();
    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &rules,
        "DAL",
        Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();
    assert!(pack.materiality.is_none());

    // A CSV with a bad line imports nothing and names the line.
    let bad = "category,unit_cost\nBeverages,12.5\nFrozen,lots\n";
    let err = app::ssr::data::costs::import_csv(app.state.db(), bad.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 3: unit_cost 'lots' is not a number"),
        "{err}"
    );
    assert!(app::ssr::data::costs::list(app.state.db())
        .await
        .unwrap()
        .is_empty());
    // Every demo category costs something; one SKU costs more than its category.
    let mut csv = String::from("sku,category,unit_cost\n");
    for (i, c) in CATEGORIES.iter().enumerate() {
        csv.push_str(&format!(",{c},{}\n", 2.0 + i as f64));
    }
    csv.push_str("BEV-0001,,150\n");
    let n = app::ssr::data::costs::import_csv(app.state.db(), csv.as_bytes())
        .await
        .unwrap();
    assert_eq!(n, CATEGORIES.len() + 1);

    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &rules,
        "DAL",
        Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();
    let m = pack.materiality.expect("money at stake with costs");
    assert!(m.at_stake > 0.0 && m.failed_lines > 0, "{m:?}");
    assert_eq!(m.uncosted_failed_lines, 0, "every category has a cost");
    // Segments are ordered by money, and a dimension's members add up to the total.
    assert!(m
        .by_segment
        .windows(2)
        .all(|w| w[0].at_stake >= w[1].at_stake));

    // The analyst ranks its causes by money and says how much.
    let i: InsightView = app.refresh("DAL", "otif").await.json().await.unwrap();
    let causes = i.insight.unwrap().root_causes;
    let money: Vec<f64> = causes
        .iter()
        .filter_map(|c| m.of(&c.dimension, &c.member))
        .collect();
    assert!(!money.is_empty(), "{causes:?}");
    assert!(
        money.windows(2).all(|w| w[0] >= w[1]),
        "ranked by money: {money:?}"
    );
    assert!(
        causes.iter().any(|c| c.evidence.contains(" at stake")),
        "{causes:?}"
    );
    let page = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(page.contains("Money at stake") && page.contains("penalty on cost of goods"));
}
