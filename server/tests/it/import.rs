//! CSV import: all or nothing, every bad row named by its line, re-import updates, and the
//! roll-up always equals a direct count of the lines.

use app::domain::kpi::{score_line, KpiCounts, ScoringParams};
use app::domain::period::parse_date;
use app::ssr::data::import::{import_orders, ImportError};
use app::ssr::store::{facts as db, Db};
use sqlx::Row;

const HEADER: &str = "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code";

fn csv(rows: &[&str]) -> String {
    std::iter::once(HEADER)
        .chain(rows.iter().copied())
        .collect::<Vec<_>>()
        .join("\n")
}

const GOOD: [&str; 4] = [
    "SO-1,1,DAL,MegaMart,RoadRunner Freight,BEV-1,Beverages,10,10,2026-11-10,2026-11-10,",
    "SO-1,2,DAL,MegaMart,RoadRunner Freight,BEV-2,Beverages,10,6,2026-11-10,2026-11-10,stockout",
    "SO-2,1,NEWDC,FreshCo,Coastal Haul,SNA-1,Snacks,5,5,2026-11-11,2026-11-13,carrier_late",
    "SO-3,1,NEWDC,FreshCo,Coastal Haul,SNA-1,Snacks,5,0,2026-11-12,,",
];

async fn line_count(db: &Db) -> i64 {
    db::count_lines(db).await.unwrap()
}

/// Recomputes every (site, day) total from the raw lines and compares with the metric
/// store (every dimension is checked in `metric_store`).
async fn assert_rollup_matches_direct_count(db: &Db) {
    let rows = sqlx::query(
        "SELECT site, due_date, ordered_qty, delivered_qty, delivered_date FROM order_lines",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut direct: std::collections::BTreeMap<(String, String), KpiCounts> = Default::default();
    for r in &rows {
        let due: String = r.get(1);
        let delivered: Option<String> = r.get(4);
        let (o, d): (i64, i64) = (r.get(2), r.get(3));
        let s = score_line(
            ScoringParams::default(),
            o,
            d,
            parse_date(&due).unwrap(),
            delivered.as_deref().and_then(parse_date),
        );
        direct.entry((r.get(0), due)).or_default().add_line(s, o, d);
    }
    let rolled = sqlx::query("SELECT site, day, lines, otif_lines, on_time_lines, in_full_lines, units_ordered, units_delivered FROM kpi_facts WHERE dimension = '' AND site <> '*'")
        .fetch_all(db)
        .await
        .unwrap();
    let rolled: std::collections::BTreeMap<(String, String), KpiCounts> = rolled
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                KpiCounts {
                    lines: r.get(2),
                    otif_lines: r.get(3),
                    on_time_lines: r.get(4),
                    in_full_lines: r.get(5),
                    units_ordered: r.get(6),
                    units_delivered: r.get(7),
                },
            )
        })
        .collect();
    assert_eq!(rolled, direct);
}

#[tokio::test]
async fn good_file_imports_creates_sites_and_rolls_up() {
    let t = crate::common::test_db().await;
    let report = import_orders(&t.db, std::io::Cursor::new(csv(&GOOD).as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!((report.lines, report.inserted, report.updated), (4, 4, 0));
    assert_eq!(
        report.sites_created,
        vec!["DAL".to_string(), "NEWDC".to_string()]
    );
    assert_eq!(line_count(&t.db).await, 4);
    assert_rollup_matches_direct_count(&t.db).await;
    let dal: (i64, i64) = sqlx::query_as(
        "SELECT lines, otif_lines FROM kpi_facts WHERE site = 'DAL' AND day = '2026-11-10' AND dimension = ''",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(dal, (2, 1));
}

#[tokio::test]
async fn columns_may_come_in_any_order_and_reason_code_is_optional() {
    let t = crate::common::test_db().await;
    let file = "due_date,site,order_id,line_no,customer,carrier,sku,category,ordered_qty,delivered_qty,delivered_date\n2026-11-10,ATL,A-1,1,C,K,S,Dairy,3,3,2026-11-09\n";
    let r = import_orders(&t.db, std::io::Cursor::new(file.as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!(r.lines, 1);
}

#[tokio::test]
async fn every_kind_of_bad_row_names_its_line_and_imports_nothing() {
    let cases: Vec<(String, &str)> = vec![
        (csv(&[GOOD[0], "SO-9,1,DAL,M,C,S,Cat,10,10,2026-13-01,,"]), "line 3: due_date '2026-13-01' is not a date"),
        (csv(&[GOOD[0], GOOD[1], "SO-9,1,DAL,M,C,S,Cat,10,10,2026-11-10,11/12/2026,"]), "line 4: delivered_date '11/12/2026' is not a date"),
        (csv(&["SO-9,1,DAL,M,C,S,Cat,-5,0,2026-11-10,,"]), "line 2: ordered_qty '-5' is negative"),
        (csv(&["SO-9,1,DAL,M,C,S,Cat,ten,0,2026-11-10,,"]), "line 2: ordered_qty 'ten' is not a whole number"),
        (csv(&["SO-9,1,DAL,M,C,S,Cat,10,1.5,2026-11-10,,"]), "line 2: delivered_qty '1.5' is not a whole number"),
        (csv(&[GOOD[0], GOOD[1], GOOD[0]]), "line 4: duplicate key order_id 'SO-1' line_no 1 (first on line 2)"),
        (csv(&["SO-9,1,DAL,M,C,S,Cat,10,10,2026-11-10"]), "line 2: not a valid CSV row (10 fields, expected 12)"),
        (csv(&[",1,DAL,M,C,S,Cat,10,10,2026-11-10,,"]), "line 2: order_id is empty"),
        (csv(&["SO-9,0,DAL,M,C,S,Cat,10,10,2026-11-10,,"]), "line 2: line_no '0' is not a positive whole number"),
        (
            "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,delivered_date\nX,1,DAL,M,C,S,Cat,1,1,\n".to_string(),
            "line 1: missing column(s): due_date",
        ),
    ];
    for (file, expected) in cases {
        let t = crate::common::test_db().await;
        let err = import_orders(&t.db, std::io::Cursor::new(file.as_bytes().to_vec()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ImportError::Invalid(_)), "{text}");
        assert!(text.contains(expected), "expected {expected:?} in {text:?}");
        assert!(text.contains("nothing was imported"));
        assert_eq!(line_count(&t.db).await, 0, "partial import for {expected}");
        assert!(
            db::sites(&t.db).await.unwrap().is_empty(),
            "sites created for {expected}"
        );
    }
}

#[tokio::test]
async fn a_bad_file_leaves_earlier_data_untouched() {
    let t = crate::common::test_db().await;
    import_orders(&t.db, std::io::Cursor::new(csv(&GOOD).as_bytes().to_vec()))
        .await
        .unwrap();
    let bad = csv(&[
        "SO-1,1,DAL,MegaMart,RoadRunner Freight,BEV-1,Beverages,10,0,2026-11-10,,",
        "broken,row",
    ]);
    assert!(
        import_orders(&t.db, std::io::Cursor::new(bad.as_bytes().to_vec()))
            .await
            .is_err()
    );
    let delivered: i64 = sqlx::query_scalar(
        "SELECT delivered_qty FROM order_lines WHERE order_id = 'SO-1' AND line_no = 1",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(delivered, 10);
}

#[tokio::test]
async fn reimport_updates_lines_and_never_duplicates() {
    let t = crate::common::test_db().await;
    import_orders(&t.db, std::io::Cursor::new(csv(&GOOD).as_bytes().to_vec()))
        .await
        .unwrap();
    // The open line is delivered later, and a line's due date moves to another day.
    let update = csv(&[
        "SO-3,1,NEWDC,FreshCo,Coastal Haul,SNA-1,Snacks,5,5,2026-11-12,2026-11-12,",
        "SO-1,1,DAL,MegaMart,RoadRunner Freight,BEV-1,Beverages,10,10,2026-11-11,2026-11-11,",
    ]);
    let r = import_orders(&t.db, std::io::Cursor::new(update.as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!((r.inserted, r.updated), (0, 2));
    assert_eq!(line_count(&t.db).await, 4);
    let (qty, date): (i64, Option<String>) = sqlx::query_as(
        "SELECT delivered_qty, delivered_date FROM order_lines WHERE order_id = 'SO-3'",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!((qty, date.as_deref()), (5, Some("2026-11-12")));
    assert_rollup_matches_direct_count(&t.db).await;
}

#[tokio::test]
async fn demo_rollup_equals_a_direct_count() {
    let t = crate::common::test_db().await;
    crate::common::seed(&t.db, 20_000).await;
    assert_rollup_matches_direct_count(&t.db).await;
}
