//! The team's catalogue: an extra dimension (`lane`), an extra field (`ship_date`) and
//! KPIs defined as data (one where lower is better, one an average in days). A
//! PostgreSQL table and a MariaDB query with their own column names give the dashboard
//! and the packs the CSV import of the same lines gives, the KPIs' counts agree with an
//! independent count of the lines, and a KPI where lower is better gets the status, the
//! causes and the next action its direction calls for.

use crate::common::{as_of, spawn_app_tuned, TestApp};
use crate::sources::{counts, def, figures, mariadb_server, pg_server, quote, sync, SourceDb};
use app::domain::catalogue::{Catalogue, KpiDef, Unit};
use app::domain::period::{fmt_date, parse_date};
use app::ssr::data::import::import_orders;
use app::ssr::sources::{ColumnsSpec, SourceDef, SourceSpec};
use chrono::{Duration, NaiveDate};
use serde_json::{json, Value};

/// Lanes of the generated lines.
const LANES: [&str; 3] = ["L1", "L2", "L3"];

/// The catalogue of these tests (the same in every app: the KPIs are registered per
/// process).
fn catalogue() -> Catalogue {
    Catalogue {
        dimensions: vec!["lane".into()],
        fields: vec!["ship_date".into()],
        kpis: vec![
            KpiDef {
                key: "slow_transit".into(),
                name: "Slow transit".into(),
                description: "Shipped lines more than 2 days on the road.".into(),
                unit: Unit::Pct,
                higher_is_better: false,
                numerator: "days(ship_date, delivered_date) > 2".into(),
                denominator: Some("not is_empty(ship_date)".into()),
                target: Some(10.0),
                at_risk: Some(5.0),
            },
            // Returned by a source per site, day and zone (no expressions).
            KpiDef {
                key: "pick_accuracy".into(),
                name: "Pick accuracy".into(),
                description: "Picks without an error, from the WMS's pick statistics.".into(),
                unit: Unit::Pct,
                higher_is_better: true,
                numerator: String::new(),
                denominator: None,
                target: Some(99.0),
                at_risk: Some(0.5),
            },
            KpiDef {
                key: "transit_days".into(),
                name: "Transit time".into(),
                description: String::new(),
                unit: Unit::Average("days".into()),
                higher_is_better: false,
                numerator: "days(ship_date, delivered_date)".into(),
                denominator: None,
                target: Some(2.5),
                at_risk: None,
            },
        ],
    }
}

#[derive(Clone)]
struct Line {
    order: String,
    line: i64,
    site: &'static str,
    carrier: &'static str,
    lane: &'static str,
    ordered: i64,
    delivered: i64,
    due: NaiveDate,
    shipped: Option<NaiveDate>,
    delivered_on: Option<NaiveDate>,
}

/// Ten weeks of lines at two sites. Transit is 1 or 2 days, now and then 3; in the
/// dashboard's week (the latest complete one) lane L2 at DAL takes 4 days on most of its
/// lines. Some lines are not shipped yet (no ship date), some not delivered.
fn lines() -> Vec<Line> {
    let mut state: u64 = 7;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let week_start = parse_date("2026-11-09").unwrap();
    let mut out = Vec::new();
    for day in 1..=70 {
        let due = as_of() - Duration::days(day);
        for site in ["DAL", "ATL"] {
            for k in 0..12 {
                let lane = LANES[k % 3];
                let planted = site == "DAL"
                    && lane == "L2"
                    && due >= week_start
                    && due < week_start + Duration::days(7)
                    && next(5) != 0;
                let transit = if planted {
                    4
                } else if next(12) == 0 {
                    3
                } else {
                    1 + next(2) as i64
                };
                // Few open lines: more would (rightly) make the data suspect.
                let shipped = (next(60) != 0).then(|| due - Duration::days(2));
                let delivered_on = match shipped {
                    Some(s) if next(80) != 0 => Some(s + Duration::days(transit)),
                    _ => None,
                };
                let ordered = 1 + next(9) as i64;
                out.push(Line {
                    order: format!("SO-{day}-{site}-{k}"),
                    line: 1 + (k % 2) as i64,
                    site,
                    carrier: ["Northway", "Coastal"][next(2) as usize],
                    lane,
                    ordered,
                    delivered: if next(10) == 0 { ordered - 1 } else { ordered },
                    due,
                    shipped,
                    delivered_on,
                });
            }
        }
    }
    out
}

fn date(d: Option<NaiveDate>) -> String {
    d.map(fmt_date).unwrap_or_default()
}

fn csv_of(lines: &[Line]) -> String {
    let mut out = String::from(
        "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,lane,ship_date\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{},{},{},Acme,{},SKU-1,Dry,{},{},{},{},{},{}\n",
            l.order,
            l.line,
            l.site,
            l.carrier,
            l.ordered,
            l.delivered,
            fmt_date(l.due),
            date(l.delivered_on),
            l.lane,
            date(l.shipped)
        ));
    }
    out
}

/// A value for SQL: a quoted text, or NULL.
fn sql(v: Option<String>) -> String {
    v.map_or("NULL".into(), |v| quote(&v))
}

/// The WMS on PostgreSQL: its own names, a timestamp for the shipment.
async fn postgres_wms(lines: &[Line]) -> SourceDb {
    let db = SourceDb::new(&pg_server(), true).await;
    db.exec(
        "CREATE TABLE despatch (so TEXT, ln INTEGER, dc TEXT, haulier TEXT, lane_code TEXT, \
         qty NUMERIC(10,2), shipped_qty INTEGER, due DATE, shipped_at TIMESTAMP, \
         pod_at TIMESTAMP, account TEXT DEFAULT 'Acme', item TEXT DEFAULT 'SKU-1', \
         grp TEXT DEFAULT 'Dry')",
    )
    .await;
    for chunk in lines.chunks(400) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    quote(&l.order),
                    l.line,
                    quote(l.site),
                    quote(l.carrier),
                    quote(l.lane),
                    l.ordered,
                    l.delivered,
                    quote(&fmt_date(l.due)),
                    sql(l.shipped.map(|d| format!("{} 17:45:00", fmt_date(d)))),
                    sql(l.delivered_on.map(|d| format!("{} 08:10:00", fmt_date(d)))),
                )
            })
            .collect();
        db.exec(&format!(
            "INSERT INTO despatch (so, ln, dc, haulier, lane_code, qty, shipped_qty, due, \
             shipped_at, pod_at) VALUES {}",
            rows.join(", ")
        ))
        .await;
    }
    db
}

/// The ERP on MariaDB, read through a query.
async fn mariadb_erp(lines: &[Line]) -> SourceDb {
    let db = SourceDb::new(&mariadb_server(), false).await;
    db.exec(
        "CREATE TABLE lines_out (OrderNo VARCHAR(40), LineNo INT, Plant VARCHAR(8), \
         Carrier VARCHAR(40), Route VARCHAR(8), Ordered INT, Shipped INT, DueDate DATE, \
         ShipDate DATE NULL, DeliveredAt DATETIME NULL)",
    )
    .await;
    for chunk in lines.chunks(400) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    quote(&l.order),
                    l.line,
                    quote(l.site),
                    quote(l.carrier),
                    quote(l.lane),
                    l.ordered,
                    l.delivered,
                    quote(&fmt_date(l.due)),
                    sql(l.shipped.map(fmt_date)),
                    sql(l.delivered_on.map(|d| format!("{} 11:00:00", fmt_date(d)))),
                )
            })
            .collect();
        db.exec(&format!("INSERT INTO lines_out VALUES {}", rows.join(", ")))
            .await;
    }
    db
}

fn columns(own: &[(&str, &str)], lane: &str, ship: &str) -> ColumnsSpec {
    ColumnsSpec {
        own: own
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect(),
        dimensions: [("lane".to_string(), lane.to_string())].into(),
        fields: [("ship_date".to_string(), ship.to_string())].into(),
    }
}

fn wms() -> SourceSpec {
    SourceSpec {
        name: "wms".into(),
        kind: "postgres".into(),
        url_env: Some("WMS_URL".into()),
        table: Some("despatch".into()),
        window_days: Some(120),
        columns: columns(
            &[
                ("order_id", "so"),
                ("line_no", "ln"),
                ("site", "dc"),
                ("customer", "account"),
                ("carrier", "haulier"),
                ("sku", "item"),
                ("category", "grp"),
                ("ordered_qty", "qty"),
                ("delivered_qty", "shipped_qty"),
                ("due_date", "due"),
                ("delivered_date", "pod_at"),
            ],
            "lane_code",
            "shipped_at",
        ),
        ..SourceSpec::default()
    }
}

fn erp() -> SourceSpec {
    SourceSpec {
        name: "erp".into(),
        kind: "mariadb".into(),
        url_env: Some("ERP_URL".into()),
        query: Some(
            "SELECT l.*, 'Acme' AS Customer, 'SKU-1' AS Sku, 'Dry' AS Category \
             FROM lines_out l WHERE DueDate >= :since"
                .into(),
        ),
        window_days: Some(120),
        columns: columns(
            &[
                ("order_id", "OrderNo"),
                ("line_no", "LineNo"),
                ("site", "Plant"),
                ("customer", "Customer"),
                ("carrier", "Carrier"),
                ("sku", "Sku"),
                ("category", "Category"),
                ("ordered_qty", "Ordered"),
                ("delivered_qty", "Shipped"),
                ("due_date", "DueDate"),
                ("delivered_date", "DeliveredAt"),
            ],
            "Route",
            "ShipDate",
        ),
        ..SourceSpec::default()
    }
}

async fn app_with(sources: Vec<SourceDef>) -> TestApp {
    spawn_app_tuned(0, move |c| {
        c.sources = sources;
        c.catalogue = Some(catalogue());
    })
    .await
}

async fn pack(app: &TestApp, site: &str, metric: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/evidence?site={site}&metric={metric}"))
        .await;
    assert_eq!(r.status(), 200, "{site} {metric}");
    r.json().await.unwrap()
}

/// The numbers of a pack (not its date of making).
fn numbers(p: &Value) -> Value {
    json!([
        p["value"],
        p["previous_value"],
        p["status"],
        p["numerator"],
        p["denominator"],
        p["series"],
        p["contributions"],
        p["otif_tree"]
    ])
}

/// Slow-transit numerator and denominator of `lines` due in [from, to], counted here.
fn slow_transit(lines: &[&Line], from: NaiveDate, to: NaiveDate) -> (i64, i64) {
    let due = lines.iter().filter(|l| l.due >= from && l.due <= to);
    let shipped: Vec<&&Line> = due.filter(|l| l.shipped.is_some()).collect();
    let slow = shipped
        .iter()
        .filter(
            |l| matches!((l.shipped, l.delivered_on), (Some(s), Some(d)) if (d - s).num_days() > 2),
        )
        .count();
    (slow as i64, shipped.len() as i64)
}

#[tokio::test]
async fn sources_with_their_own_columns_and_an_extra_dimension_give_the_csv_dashboard() {
    let data = lines();
    let csv = app_with(vec![]).await;
    let report = import_orders(csv.db(), std::io::Cursor::new(csv_of(&data).into_bytes()))
        .await
        .expect("the CSV imports");
    assert_eq!(report.lines, data.len());
    let pg = postgres_wms(&data).await;
    let my = mariadb_erp(&data).await;
    let wms_app = app_with(vec![def(wms(), "WMS_URL", &pg.url)]).await;
    let erp_app = app_with(vec![def(erp(), "ERP_URL", &my.url)]).await;
    for (app, name) in [(&wms_app, "wms"), (&erp_app, "erp")] {
        let s = sync(app, name).await;
        assert_eq!(s["status"], "succeeded", "{s}");
        assert_eq!(s["inserted"], data.len() as i64, "{s}");
    }

    // The dashboard: every tile, the catalogue's KPIs among them, the same everywhere.
    let want = figures(&csv).await;
    let network: Vec<&str> = want.0[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        network,
        [
            "otif",
            "on_time",
            "in_full",
            "fill_rate",
            "lines_due",
            "slow_transit",
            "pick_accuracy",
            "transit_days"
        ]
    );
    assert_eq!(figures(&wms_app).await, want, "PostgreSQL source vs CSV");
    assert_eq!(figures(&erp_app).await, want, "MariaDB source vs CSV");
    assert!(counts(&want.0).iter().all(|(n, d)| *n >= 0 && *d >= 0));

    // The packs: the lane is a dimension of every KPI's mix/rate split.
    for metric in ["otif", "slow_transit", "transit_days"] {
        for site in ["DAL", "network"] {
            let p = numbers(&pack(&csv, site, metric).await);
            let lanes = p[6]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["dimension"] == "lane")
                .unwrap_or_else(|| panic!("{metric} {site}: no lane in {}", p[6]));
            assert_eq!(lanes["segments"].as_array().unwrap().len(), 3);
            assert_eq!(
                numbers(&pack(&wms_app, site, metric).await),
                p,
                "{metric} {site} wms"
            );
            assert_eq!(
                numbers(&pack(&erp_app, site, metric).await),
                p,
                "{metric} {site} erp"
            );
        }
    }

    // The KPI's counts are the lines' own, counted independently here.
    let p = pack(&csv, "DAL", "slow_transit").await;
    let (from, to) = (
        parse_date(p["period"]["start"].as_str().unwrap()).unwrap(),
        parse_date(p["period"]["end"].as_str().unwrap()).unwrap(),
    );
    let dal: Vec<&Line> = data.iter().filter(|l| l.site == "DAL").collect();
    assert_eq!(
        (
            p["numerator"].as_i64().unwrap(),
            p["denominator"].as_i64().unwrap()
        ),
        slow_transit(&dal, from, to)
    );
    let l2: Vec<&Line> = dal.iter().copied().filter(|l| l.lane == "L2").collect();
    let lane = p["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dimension"] == "lane")
        .unwrap();
    let seg = lane["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["member"] == "L2")
        .unwrap();
    let (n, d) = slow_transit(&l2, from, to);
    assert_eq!(seg["denominator"].as_i64(), Some(d));
    // Filtered to the lane: its own value, counted the same, on every source.
    for app in [&csv, &wms_app, &erp_app] {
        let f: Value = app
            .get("/api/v1/evidence?site=DAL&metric=slow_transit&filter=lane:L2")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(f["scope"]["focus"], "lane = L2");
        assert_eq!(
            (f["numerator"].as_i64(), f["denominator"].as_i64()),
            (Some(n), Some(d))
        );
        assert!(f["series"].as_array().unwrap().len() == 12);
        assert!(f["contributions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["segments"].as_array().unwrap().is_empty()));
    }
    for bad in ["lane", "Lane Code:L2", "carrier:"] {
        let r = csv
            .get(&format!(
                "/api/v1/evidence?site=DAL&metric=otif&filter={bad}"
            ))
            .await;
        let want = if bad == "carrier:" { 200 } else { 400 };
        assert_eq!(r.status(), want, "{bad}");
    }
    assert!((seg["value"].as_f64().unwrap() - 100.0 * n as f64 / d as f64).abs() < 1e-9);
    // Transit days: an average over the lines with both dates, in days.
    let t = pack(&csv, "DAL", "transit_days").await;
    let both: Vec<i64> = dal
        .iter()
        .filter(|l| l.due >= from && l.due <= to)
        .filter_map(|l| Some((l.delivered_on? - l.shipped?).num_days()))
        .collect();
    assert_eq!(t["numerator"].as_i64(), Some(both.iter().sum::<i64>()));
    assert_eq!(t["denominator"].as_i64(), Some(both.len() as i64));
    assert_eq!(t["scope"]["unit"], "days");
    pg.drop_db().await;
    my.drop_db().await;
}

#[tokio::test]
async fn a_kpi_where_lower_is_better_gets_its_status_causes_and_next_action() {
    let data = lines();
    let app = app_with(vec![]).await;
    import_orders(app.db(), std::io::Cursor::new(csv_of(&data).into_bytes()))
        .await
        .unwrap();
    // The catalogue's target and band are in the rule book, as a version of it.
    let rules: Value = app.get("/api/v1/rules").await.json().await.unwrap();
    let text = rules.to_string();
    assert!(text.contains("at_risk_band_pp.slow_transit"), "{text}");
    assert!(text.contains("From the sources file's KPIs"), "{text}");

    // Up is worse: DAL's slow transit rose past its target (10 %, at risk within 5 pts).
    let p = pack(&app, "DAL", "slow_transit").await;
    assert_eq!(p["higher_is_better"], false);
    let (value, change) = (p["value"].as_f64().unwrap(), p["change"].as_f64().unwrap());
    assert!(value > 15.0 && change > 0.0, "{value} {change}");
    assert_eq!(p["status"], "off_target");
    // ATL's stayed low: on target although it is far below the target.
    let atl = pack(&app, "ATL", "slow_transit").await;
    assert!(atl["value"].as_f64().unwrap() < 10.0, "{}", atl["value"]);
    assert_eq!(atl["status"], "on_target");
    // The dashboard's tile says the same, with the move coloured by its direction.
    let d: Value = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let dal = d["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "DAL")
        .unwrap();
    let tile = dal["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["metric"] == "slow_transit")
        .unwrap();
    assert_eq!(tile["status"], "off_target");
    assert_eq!(tile["name"], "Slow transit");

    // A playbook for the lane, then the built-in analyst's card names lane L2 as the
    // cause of a move for the worse and proposes it.
    let version = rules["rules"]["version"].as_i64().unwrap();
    let r = app
        .post_json(
            "/api/v1/rules/edits",
            &json!({
                "op": "create",
                "expected_version": version,
                "item": {"type": "playbook", "key": "lane_review", "cause": "dimension:lane",
                         "action": "Review the lane's carrier schedule", "owner": "Transport",
                         "priority": "high"}
            }),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "slow_transit"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let card: Value = r.json().await.unwrap();
    let insight = &card["insight"];
    let headline = insight["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("Slow transit up") && headline.contains("lane L2 got worse"),
        "{headline}"
    );
    assert_eq!(insight["root_causes"][0]["dimension"], "lane");
    assert_eq!(insight["root_causes"][0]["member"], "L2");
    assert!(insight["root_causes"][0]["impact_pp"].as_f64().unwrap() > 0.0);
    assert!(
        insight["next_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"]
                .as_str()
                .unwrap()
                .starts_with("Review the lane's")),
        "{insight}"
    );
    // Every cause the card names is grounded in the pack.
    assert!(
        card["grounding"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["supported"] == true),
        "{}",
        card["grounding"]
    );
}

/// Pick statistics per DC, day and zone: `(dc, day, zone, good, picks)`. Zone B at DAL
/// has a bad week (the dashboard's).
fn pick_stats() -> Vec<(&'static str, NaiveDate, &'static str, i64, i64)> {
    let week_start = parse_date("2026-11-09").unwrap();
    let mut out = Vec::new();
    for day in 1..=40 {
        let d = as_of() - Duration::days(day);
        for dc in ["DAL", "ATL"] {
            for (z, zone) in ["A", "B"].into_iter().enumerate() {
                let picks = 400 + 10 * day + 7 * z as i64;
                let bad_week = dc == "DAL"
                    && zone == "B"
                    && d >= week_start
                    && d < week_start + Duration::days(7);
                let errors = if bad_week {
                    40
                } else {
                    1 + (day + z as i64) % 3
                };
                out.push((dc, d, zone, picks - errors, picks));
            }
        }
    }
    out
}

/// The KPI source test's own catalogue: its keys are its own, for the test process shares
/// one registry of KPIs (a key's slot follows the last catalogue that registered it).
fn picks_catalogue(first: Option<KpiDef>) -> Catalogue {
    let pick_rate = KpiDef {
        key: "pick_rate".into(),
        name: "Pick rate".into(),
        description: String::new(),
        unit: Unit::Pct,
        higher_is_better: true,
        numerator: String::new(),
        denominator: None,
        target: Some(99.0),
        at_risk: Some(0.5),
    };
    Catalogue {
        dimensions: vec![],
        fields: vec![],
        kpis: first.into_iter().chain([pick_rate]).collect(),
    }
}

fn picks_source(url: &str) -> SourceDef {
    let spec = SourceSpec {
        name: "picks".into(),
        kind: "postgres".into(),
        url_env: Some("PICKS_URL".into()),
        table: Some("pick_stats".into()),
        window_days: Some(60),
        kpi: Some("pick_rate".into()),
        columns: ColumnsSpec {
            own: [
                ("site", "dc"),
                ("day", "pick_day"),
                ("numerator", "good_picks"),
                ("denominator", "picks"),
            ]
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect(),
            dimensions: [("zone".to_string(), "zone".to_string())].into(),
            fields: Default::default(),
        },
        ..SourceSpec::default()
    };
    def(spec, "PICKS_URL", url)
}

#[tokio::test]
async fn a_source_returns_a_kpis_counts_per_site_day_and_zone() {
    let stats = pick_stats();
    let db = SourceDb::new(&pg_server(), true).await;
    db.exec(
        "CREATE TABLE pick_stats (dc TEXT, pick_day DATE, zone TEXT, good_picks TEXT, \
         picks BIGINT)",
    )
    .await;
    let rows: Vec<String> = stats
        .iter()
        .map(|(dc, d, z, good, picks)| {
            format!(
                "({}, {}, {}, '{good}', {picks})",
                quote(dc),
                quote(&fmt_date(*d)),
                quote(z)
            )
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO pick_stats VALUES {}",
        rows.join(", ")
    ))
    .await;
    let source = picks_source(&db.url);
    let app = spawn_app_tuned(0, move |c| {
        c.sources = vec![source];
        c.catalogue = Some(picks_catalogue(None));
    })
    .await;
    let s = sync(&app, "picks").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    let window = as_of() - Duration::days(60);
    assert_eq!(
        s["rows_read"],
        stats.iter().filter(|r| r.1 >= window).count() as i64
    );

    // DAL's week, counted here from the statistics.
    let p = pack(&app, "DAL", "pick_rate").await;
    let (from, to) = (
        parse_date(p["period"]["start"].as_str().unwrap()).unwrap(),
        parse_date(p["period"]["end"].as_str().unwrap()).unwrap(),
    );
    let sum = |dc: &str, zone: Option<&str>| {
        stats
            .iter()
            .filter(|r| r.0 == dc && r.1 >= from && r.1 <= to && zone.is_none_or(|z| r.2 == z))
            .fold((0, 0), |(n, d), r| (n + r.3, d + r.4))
    };
    let fraction = |p: &Value| {
        (
            p["numerator"].as_i64().unwrap(),
            p["denominator"].as_i64().unwrap(),
        )
    };
    assert_eq!(fraction(&p), sum("DAL", None));
    assert_eq!(p["status"], "off_target");
    // Zone B is the cause: the pack's split by zone, and the analyst's card.
    let zones = p["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dimension"] == "zone")
        .unwrap_or_else(|| panic!("no zone in {}", p["contributions"]));
    assert_eq!(zones["segments"][0]["member"], "B");
    assert_eq!(
        zones["segments"][0]["denominator"].as_i64(),
        Some(sum("DAL", Some("B")).1)
    );
    // The lines' own KPIs are not split by a dimension only these counts have.
    let otif = pack(&app, "DAL", "otif").await;
    assert!(!otif["contributions"].to_string().contains("\"zone\""));
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "pick_rate"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let card: Value = r.json().await.unwrap();
    assert_eq!(
        card["insight"]["root_causes"][0]["dimension"], "zone",
        "{card}"
    );
    assert_eq!(card["insight"]["root_causes"][0]["member"], "B");

    // The source's counts are replaced at each sync, not added again.
    db.exec(&format!(
        "UPDATE pick_stats SET good_picks = CAST(picks AS TEXT) WHERE dc = 'DAL' AND zone = 'B' \
         AND pick_day >= {} AND pick_day <= {}",
        quote(&fmt_date(from)),
        quote(&fmt_date(to))
    ))
    .await;
    assert_eq!(sync(&app, "picks").await["status"], "succeeded");
    let after = pack(&app, "DAL", "pick_rate").await;
    let (a, b) = sum("DAL", Some("A"));
    let (_, bd) = sum("DAL", Some("B"));
    assert_eq!(fraction(&after), (a + bd, b + bd));
    assert_eq!(after["status"], "on_target");

    // A restart keeps them (they are this source's, not a stale push-down's).
    let cleared = app.state.sources().drop_unowned_tallies().await.unwrap();
    assert!(cleared.is_empty(), "{cleared:?}");
    assert_eq!(
        numbers(&pack(&app, "DAL", "pick_rate").await),
        numbers(&after)
    );
    // A catalogue with a KPI put before it moves its counts to its new slot: the same
    // figures after the re-tally the change makes.
    let moved = picks_catalogue(Some(KpiDef {
        key: "picks_short_lines".into(),
        name: "Short lines".into(),
        description: String::new(),
        unit: Unit::Count,
        higher_is_better: false,
        numerator: "delivered_qty < ordered_qty".into(),
        denominator: None,
        target: None,
        at_risk: None,
    }));
    app::ssr::data::catalogue::install(app.db(), Some(&moved))
        .await
        .unwrap();
    assert!(app::ssr::data::import::bring_store_up_to_date(app.db())
        .await
        .unwrap());
    assert_eq!(
        numbers(&pack(&app, "DAL", "pick_rate").await),
        numbers(&after)
    );

    // A count that is not one fails the sync, naming its row; the last good counts stay.
    db.exec(
        "UPDATE pick_stats SET good_picks = 'lots' WHERE dc = 'ATL' AND zone = 'A' \
         AND pick_day = (SELECT MAX(pick_day) FROM pick_stats)",
    )
    .await;
    let s = sync(&app, "picks").await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("numerator 'lots' is not a whole number"),
        "{s}"
    );
    assert_eq!(
        numbers(&pack(&app, "DAL", "pick_rate").await),
        numbers(&after)
    );
    db.drop_db().await;
}
