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
                    measures: Default::default(),
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

/// Sites as people name them: a line may name its site in any script; the site gets a
/// code made from the name (the same name, the same code), keeps the name, and its KPI
/// page answers under the code. Names and regions are then changed through the API (a
/// viewer may not; an unknown code or an empty name changes nothing).
#[tokio::test]
async fn sites_named_in_any_script_get_codes_and_keep_their_names() {
    let app = crate::common::spawn_app(0, None).await;
    let file = csv(&[
        "SO-1,1,Côte d'Ivoire,MegaMart,RoadRunner Freight,BEV-1,Beverages,10,10,2026-11-10,2026-11-10,",
        "SO-2,1,東京 第一センター,MegaMart,RoadRunner Freight,BEV-1,Beverages,10,4,2026-11-10,2026-11-10,stockout",
        "SO-3,1,Zürich Nord,FreshCo,Coastal Haul,SNA-1,Snacks,5,5,2026-11-11,2026-11-13,carrier_late",
        "SO-4,1,Côte d'Ivoire,FreshCo,Coastal Haul,SNA-1,Snacks,5,5,2026-11-11,2026-11-11,",
    ]);
    let r = import_orders(app.db(), std::io::Cursor::new(file.into_bytes()))
        .await
        .unwrap();
    assert_eq!(r.lines, 4);
    let tokyo = app::ssr::data::import::code_for_name("東京 第一センター");
    assert!(tokyo.starts_with("S-") && tokyo.len() == 10, "{tokyo}");
    let mut want = vec![
        ("COTE-D-IVOIRE".to_string(), "Côte d'Ivoire".to_string()),
        (tokyo.clone(), "東京 第一センター".to_string()),
        ("ZURICH-NORD".to_string(), "Zürich Nord".to_string()),
    ];
    want.sort();
    let sites: serde_json::Value = app.get("/api/v1/sites").await.json().await.unwrap();
    let mut got: Vec<(String, String)> = sites
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap().into(),
                s["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    let page = app.get("/kpi/COTE-D-IVOIRE/otif?period=2026-W46").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Côte d"), "the page names the site");
    let d: serde_json::Value = app
        .get("/api/v1/dashboard?period=2026-W46")
        .await
        .json()
        .await
        .unwrap();
    let ci = d["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "COTE-D-IVOIRE")
        .expect("the site is on the dashboard");
    assert_eq!(ci["name"], "Côte d'Ivoire");
    let lines_due = ci["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["metric"] == "lines_due")
        .unwrap();
    assert_eq!(lines_due["numerator"], 2);

    // A file may name and group the sites it creates (site_name, region).
    let named = "order_id,line_no,site,site_name,region,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date\n\
                 SO-9,1,GDL,Guadalajara Centro,México,MegaMart,RoadRunner Freight,BEV-1,Beverages,3,3,2026-11-10,2026-11-10\n";
    import_orders(app.db(), std::io::Cursor::new(named.as_bytes().to_vec()))
        .await
        .unwrap();
    let sites: serde_json::Value = app.get("/api/v1/sites").await.json().await.unwrap();
    let gdl = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == "GDL")
        .unwrap();
    assert_eq!(
        (gdl["name"].as_str(), gdl["region"].as_str()),
        (Some("Guadalajara Centro"), Some("México"))
    );

    // Renamed and grouped through the API.
    let put = |body: serde_json::Value| {
        let http = app.http.clone();
        let url = format!("{}/api/v1/sites", app.base);
        async move { http.put(url).json(&body).send().await.unwrap() }
    };
    let r = put(serde_json::json!([
        {"code": "COTE-D-IVOIRE", "name": "Abidjan DC", "region": "West Africa"},
        {"code": tokyo, "name": "Tokyo 1", "region": "Japan"}
    ]))
    .await;
    assert_eq!(r.status(), 200);
    let r = put(serde_json::json!([
        {"code": "ZURICH-NORD", "name": "Zürich", "region": "DACH"},
        {"code": "NOPE", "name": "x"},
        {"code": "COTE-D-IVOIRE", "name": " "}
    ]))
    .await;
    assert_eq!(r.status(), 400);
    let error = r.json::<serde_json::Value>().await.unwrap()["error"].to_string();
    assert!(
        error.contains("entry 1: no site has the code 'NOPE'")
            && error.contains("entry 2: name must be"),
        "{error}"
    );
    let sites: serde_json::Value = app.get("/api/v1/sites").await.json().await.unwrap();
    let by_code = |code: &str| {
        sites
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"] == code)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_code("COTE-D-IVOIRE")["name"], "Abidjan DC");
    assert_eq!(by_code("COTE-D-IVOIRE")["region"], "West Africa");
    assert_eq!(
        by_code("ZURICH-NORD")["name"],
        "Zürich Nord",
        "the refused edit changed nothing"
    );
    // A later import keeps the new name (lines name the site; the name is the user's).
    let again = csv(&["SO-5,1,Côte d'Ivoire,MegaMart,RoadRunner Freight,BEV-1,Beverages,1,1,2026-11-12,2026-11-12,"]);
    import_orders(app.db(), std::io::Cursor::new(again.into_bytes()))
        .await
        .unwrap();
    let sites: serde_json::Value = app.get("/api/v1/sites").await.json().await.unwrap();
    assert!(sites.to_string().contains("Abidjan DC"));
    let viewer = app.client_as(app::domain::access::Role::Viewer).await;
    let r = viewer
        .put(format!("{}/api/v1/sites", app.base))
        .json(&serde_json::json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
