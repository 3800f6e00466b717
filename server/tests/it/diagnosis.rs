//! Deeper diagnosis on the demo network: "unusual" flags the planted problems and no
//! ordinary card, the evidence pack carries the verdict; the KPI page shows the current
//! week's pace and forecast.

use crate::common::spawn_app;
use app::domain::kpi::Metric;
use app::dto::Dashboard;

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
    let a = pack.anomaly.expect("the pack has the verdict");
    assert!(a.unusual && a.summary.contains("robust z"), "{a:?}");
    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &rules,
        "SEA",
        Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();
    assert!(!pack.anomaly.unwrap().unusual);
}

#[tokio::test]
async fn the_kpi_page_shows_this_weeks_pace_and_forecast() {
    let app = spawn_app(60_000, None).await;
    // As of Saturday 2026-11-21: five days of 2026-W47 have passed.
    let d = app
        .state
        .cards()
        .kpi_detail(
            app::dto::KpiQuery {
                site: "DAL".into(),
                metric: "otif".into(),
                view: Default::default(),
                filter: None,
            },
            &app::domain::access::Reach::All,
        )
        .await
        .unwrap();
    let p = d.pace.expect("pace");
    assert_eq!((p.week_label.as_str(), p.days_elapsed), ("2026-W47", 5));
    assert!(
        p.denominator_so_far > 0 && p.expected_remaining > 0.0,
        "{p:?}"
    );
    let (f, lo, hi) = (p.forecast.unwrap(), p.low.unwrap(), p.high.unwrap());
    assert!(lo <= f && f <= hi && (0.0..=100.0).contains(&f), "{p:?}");
    // The needed pace follows from the counts: target × (so far + expected) − OTIF so far.
    let target = p.target.unwrap();
    let needed = (target / 100.0 * (p.denominator_so_far as f64 + p.expected_remaining)
        - p.numerator_so_far as f64)
        / p.expected_remaining
        * 100.0;
    assert!((p.needed_rate.unwrap() - needed).abs() < 1e-9);
    let page = app.get("/kpi/DAL/otif").await.text().await.unwrap();
    assert!(
        page.contains("This week so far (2026-W47)"),
        "pace section rendered"
    );
    assert!(page.contains("Forecast:"));
    // Volumes forecast a count.
    let v = app
        .state
        .cards()
        .kpi_detail(
            app::dto::KpiQuery {
                site: "PHX".into(),
                metric: "lines_due".into(),
                view: Default::default(),
                filter: None,
            },
            &app::domain::access::Reach::All,
        )
        .await
        .unwrap()
        .pace
        .unwrap();
    assert!(v.forecast.unwrap() >= v.numerator_so_far as f64 && v.needed_rate.is_none());
}
