//! "Unusual" on the demo network: the planted problems are flagged, ordinary cards are not,
//! and the evidence pack sent to the agent carries the verdict.

mod common;

use app::domain::kpi::Metric;
use app::dto::Dashboard;
use common::spawn_app;

#[tokio::test]
async fn the_planted_problems_are_unusual_and_ordinary_weeks_are_not() {
    let app = spawn_app(60_000, None).await;
    let d: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let mut unusual = Vec::new();
    let mut total = 0;
    for row in std::iter::once(&d.network).chain(&d.sites) {
        for t in &row.tiles {
            total += 1;
            let a = t.anomaly.as_ref().expect("every tile is judged");
            if a.unusual {
                unusual.push(format!("{}:{} {}", row.site, t.metric.key(), a.summary));
            }
        }
    }
    eprintln!(
        "{} of {total} unusual:\n{}",
        unusual.len(),
        unusual.join("\n")
    );
    let has = |card: &str| unusual.iter().any(|u| u.starts_with(card));
    assert!(has("DAL:otif"), "RoadRunner Freight late at Dallas");
    assert!(has("ATL:in_full"), "the beverage stockout at Atlanta");
    assert!(
        has("CHI:on_time"),
        "missing delivery confirmations at Chicago"
    );
    assert!(
        has("PHX:lines_due"),
        "the volume surge at Phoenix (volumes are two-sided)"
    );
    assert!(has("network:otif"), "the network feels Dallas and Phoenix");
    // Nothing else: the other DCs' weeks and days are ordinary, weekends included.
    for u in &unusual {
        let site = u.split(':').next().unwrap();
        assert!(
            ["DAL", "ATL", "CHI", "PHX", "network"].contains(&site),
            "{u} is flagged without a planted cause"
        );
    }
    // The evidence pack the agent gets carries the verdict.
    let rules = app::ssr::db::rules(&app.state.db).await.unwrap();
    let pack =
        app::ssr::evidence::load(&app.state.db, &rules, "DAL", Metric::Otif, common::as_of())
            .await
            .unwrap();
    let a = pack.anomaly.expect("the pack has the verdict");
    assert!(a.unusual && a.summary.contains("robust z"), "{a:?}");
    let pack =
        app::ssr::evidence::load(&app.state.db, &rules, "SEA", Metric::Otif, common::as_of())
            .await
            .unwrap();
    assert!(!pack.anomaly.unwrap().unusual);
}
