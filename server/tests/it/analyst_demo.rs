//! The built-in analyst finds the problems planted in the demo network, and stays quiet
//! where nothing moved beyond noise.

use app::domain::analyst::analyse;
use app::domain::evidence::EvidencePack;
use app::domain::insight::{Effect, Insight};
use app::domain::kpi::Metric;
use app::ssr::cards::evidence;
use app::ssr::store::{self as db, Db};

async fn insight(db: &Db, site: &str, metric: Metric) -> (EvidencePack, Insight) {
    let rules = db::rules::load(db).await.unwrap();
    let pack = evidence::load(db, &rules, site, metric, crate::common::as_of())
        .await
        .unwrap();
    let (_, insight) = analyse(&pack, &rules, None);
    (pack, insight)
}

#[tokio::test]
async fn names_the_planted_causes() {
    let t = crate::common::test_db().await;
    crate::common::seed(&t.db, 120_000).await;

    // Dallas: RoadRunner Freight got late (a carrier rate effect), carrier_late grew.
    let (pack, i) = insight(&t.db, "DAL", Metric::OTIF).await;
    assert!(pack.noise.significant);
    let top = &i.root_causes[0];
    assert_eq!(
        (top.dimension.as_str(), top.member.as_str(), top.effect),
        ("carrier", "RoadRunner Freight", Effect::Rate),
        "{i:#?}"
    );
    assert!(top.impact_pp < -3.0);
    assert!(i.headline.contains("carrier_late"), "{}", i.headline);
    assert!(
        i.next_actions
            .iter()
            .any(|a| a.owner == "Transport manager"),
        "{i:#?}"
    );

    // Atlanta: beverage stockout, seen on in-full as a category rate effect.
    let (_, i) = insight(&t.db, "ATL", Metric::IN_FULL).await;
    let top = &i.root_causes[0];
    assert_eq!(
        (top.dimension.as_str(), top.member.as_str(), top.effect),
        ("category", "Beverages", Effect::Rate),
        "{i:#?}"
    );
    // The stockout lowers every carrier in proportion to its volume: not causes of their own.
    assert!(
        i.root_causes.iter().all(|c| c.dimension != "carrier"),
        "{i:#?}"
    );
    assert!(
        i.next_actions
            .iter()
            .any(|a| a.owner == "Inventory planner"),
        "{i:#?}"
    );

    // Chicago: missing delivery confirmations are a data problem, not an operational one.
    let (pack, i) = insight(&t.db, "CHI", Metric::OTIF).await;
    assert!(pack.data_checks.suspect());
    assert!(i.headline.starts_with("Data problem"), "{}", i.headline);
    assert!(
        i.root_causes.iter().all(|c| c.effect == Effect::Data),
        "{i:#?}"
    );
    assert_eq!(i.next_actions[0].owner, "Data steward");

    // Network: Phoenix's volume surge pulls network OTIF down through mix.
    let (pack, i) = insight(&t.db, "network", Metric::OTIF).await;
    let phx = pack.segment("site", "PHX").unwrap();
    assert!(phx.mix < -0.3 && phx.mix.abs() > phx.rate.abs(), "{phx:?}");
    assert!(
        i.root_causes
            .iter()
            .any(|c| c.member == "PHX" && c.effect == Effect::Mix),
        "{i:#?}"
    );
}

#[tokio::test]
async fn says_so_when_nothing_moved_beyond_noise() {
    let t = crate::common::test_db().await;
    crate::common::seed(&t.db, 120_000).await;
    // Sites without a planted problem: any change within noise must name no cause.
    let mut quiet = 0;
    for site in ["COL", "DEN", "KCY", "LAX", "MEM", "NWK", "ORL", "SEA"] {
        let (pack, i) = insight(&t.db, site, Metric::OTIF).await;
        if !pack.noise.significant {
            quiet += 1;
            assert!(i.root_causes.is_empty(), "{site}: {i:#?}");
            assert!(
                i.headline.contains("no cause") || i.headline.contains("no new cause"),
                "{site}: {}",
                i.headline
            );
        }
    }
    assert!(
        quiet >= 5,
        "only {quiet} of 8 quiet sites were within noise"
    );
}
