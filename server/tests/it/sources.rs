//! Data sources against the real servers this machine runs: a PostgreSQL table and a
//! MariaDB query, each with its own column names, types and an extra column, give the
//! dashboard the CSV import of the same lines gives; syncs are idempotent, see updates,
//! fail whole (naming the column or the row) while the last good data stays on the
//! dashboard, marked stale; one sync of a source at a time, one scheduled tick across
//! replicas; no connection string in any answer.

use crate::common::{as_of, spawn_app_tuned, TestApp};
use app::domain::status::{SyncStatus, SyncTrigger};
use app::ssr::data::import::import_orders;
use app::ssr::sources::{ColumnsSpec, SourceDef, SourceSpec, Sources};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The servers the source databases are made on (`OPSIGHT_TEST_PG_URL`,
/// `OPSIGHT_TEST_MYSQL_URL`).
pub(crate) fn pg_server() -> String {
    std::env::var("OPSIGHT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub(crate) fn mariadb_server() -> String {
    std::env::var("OPSIGHT_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// One generated order line.
#[derive(Clone)]
struct Line {
    order: String,
    line: i64,
    site: &'static str,
    customer: &'static str,
    carrier: &'static str,
    sku: String,
    category: &'static str,
    ordered: i64,
    delivered: i64,
    due: String,
    delivered_on: Option<String>,
    reason: Option<&'static str>,
}

/// Lines due over the 60 days before the tests' date at three sites, with late and short
/// ones (a simple deterministic generator, not the app's).
fn lines() -> Vec<Line> {
    let mut state: u64 = 42;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let sites = ["DAL", "ATL", "SEA"];
    let customers = ["MegaMart", "FreshCo", "Corner Shops"];
    let carriers = ["RoadRunner Freight", "Coastal Haul"];
    let categories = ["Beverages", "Snacks", "Frozen"];
    let mut out = Vec::new();
    for day in 1..=60 {
        let due = as_of() - chrono::Duration::days(day);
        for (s, site) in sites.iter().enumerate() {
            for k in 0..12 {
                let ordered = 1 + next(20) as i64;
                let short = next(10) == 0;
                let late = next(8) == 0 || (*site == "DAL" && day < 8 && next(3) == 0);
                let open = day < 3 && next(5) == 0;
                out.push(Line {
                    order: format!("SO-{day}-{s}-{k}"),
                    line: 1 + (k % 3) as i64,
                    site,
                    customer: customers[next(3) as usize],
                    carrier: carriers[next(2) as usize],
                    sku: format!("SKU-{}", next(40)),
                    category: categories[next(3) as usize],
                    ordered,
                    delivered: if short { ordered / 2 } else { ordered },
                    due: due.format("%Y-%m-%d").to_string(),
                    delivered_on: (!open).then(|| {
                        (due + chrono::Duration::days(if late { 2 } else { 0 }))
                            .format("%Y-%m-%d")
                            .to_string()
                    }),
                    reason: if late {
                        Some("carrier_late")
                    } else if short {
                        Some("stockout")
                    } else {
                        None
                    },
                });
            }
        }
    }
    out
}

fn csv_of(lines: &[Line]) -> String {
    let mut out = String::from(
        "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            l.order,
            l.line,
            l.site,
            l.customer,
            l.carrier,
            l.sku,
            l.category,
            l.ordered,
            l.delivered,
            l.due,
            l.delivered_on.as_deref().unwrap_or(""),
            l.reason.unwrap_or("")
        ));
    }
    out
}

/// A database of its own on a server, dropped at the end.
pub(crate) struct SourceDb {
    pub(crate) url: String,
    pool: sqlx::AnyPool,
    admin: sqlx::AnyPool,
    name: String,
    postgres: bool,
}

impl SourceDb {
    pub(crate) async fn new(server: &str, postgres: bool) -> SourceDb {
        sqlx::any::install_default_drivers();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("opsight_src_{}_{n}", std::process::id());
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(server)
            .await
            .unwrap_or_else(|e| panic!("this test needs the database server at {server}: {e}"));
        let drop = if postgres {
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        } else {
            format!("DROP DATABASE IF EXISTS {name}")
        };
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(server).unwrap();
        url.set_path(&name);
        let url = url.to_string();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        SourceDb {
            url,
            pool,
            admin,
            name,
            postgres,
        }
    }

    pub(crate) async fn exec(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub(crate) async fn drop_db(self) {
        self.pool.close().await;
        let drop = if self.postgres {
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
        } else {
            format!("DROP DATABASE IF EXISTS {}", self.name)
        };
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&self.admin)
            .await;
    }
}

pub(crate) fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The WMS's table on PostgreSQL: its own names and types (numeric quantities, a
/// timestamp for the delivery), an update timestamp and a region nobody maps.
async fn postgres_wms(lines: &[Line]) -> SourceDb {
    let db = SourceDb::new(&pg_server(), true).await;
    db.exec(
        "CREATE TABLE shipments (so_number TEXT, line INTEGER, dc_code VARCHAR(8), \
         account TEXT, haulier TEXT, item TEXT, item_group TEXT, qty_ordered NUMERIC(12,2), \
         qty_shipped INTEGER, must_arrive DATE, arrived_at TIMESTAMP, why TEXT, region TEXT, \
         updated_at TIMESTAMP NOT NULL DEFAULT '2026-11-01 00:00:00')",
    )
    .await;
    for chunk in lines.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 'South')",
                    quote(&l.order),
                    l.line,
                    quote(&l.site.to_lowercase()),
                    quote(l.customer),
                    quote(l.carrier),
                    quote(&l.sku),
                    quote(l.category),
                    l.ordered,
                    l.delivered,
                    quote(&l.due),
                    l.delivered_on
                        .as_deref()
                        .map_or("NULL".into(), |d| quote(&format!("{d} 14:30:00"))),
                    l.reason.map_or("NULL".into(), quote),
                )
            })
            .collect();
        db.exec(&format!(
            "INSERT INTO shipments (so_number, line, dc_code, account, haulier, item, item_group, \
             qty_ordered, qty_shipped, must_arrive, arrived_at, why, region) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    db
}

/// The ERP's order lines on MariaDB, read through a query with `:since`.
async fn mariadb_erp(lines: &[Line]) -> SourceDb {
    let db = SourceDb::new(&mariadb_server(), false).await;
    db.exec(
        "CREATE TABLE order_rows (OrderNo VARCHAR(40), LineNo INT, Site VARCHAR(8), \
         Customer VARCHAR(60), Carrier VARCHAR(60), Sku VARCHAR(40), Category VARCHAR(40), \
         Ordered DECIMAL(12,3), Shipped INT, DueDate DATE, DeliveredAt DATETIME NULL, \
         Reason VARCHAR(40) NULL, Lane VARCHAR(20))",
    )
    .await;
    for chunk in lines.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 'L1')",
                    quote(&l.order),
                    l.line,
                    quote(l.site),
                    quote(l.customer),
                    quote(l.carrier),
                    quote(&l.sku),
                    quote(l.category),
                    l.ordered,
                    l.delivered,
                    quote(&l.due),
                    l.delivered_on
                        .as_deref()
                        .map_or("NULL".into(), |d| quote(&format!("{d} 09:00:00"))),
                    l.reason.map_or("NULL".into(), quote),
                )
            })
            .collect();
        db.exec(&format!(
            "INSERT INTO order_rows VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    db
}

fn mapping(pairs: &[(&str, &str)]) -> ColumnsSpec {
    ColumnsSpec {
        own: pairs
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect(),
        ..ColumnsSpec::default()
    }
}

fn wms_spec() -> SourceSpec {
    SourceSpec {
        name: "wms".into(),
        kind: "postgres".into(),
        url_env: Some("WMS_DATABASE_URL".into()),
        table: Some("shipments".into()),
        window_days: Some(90),
        watermark: None,
        columns: mapping(&[
            ("order_id", "so_number"),
            ("line_no", "line"),
            ("site", "dc_code"),
            ("customer", "account"),
            ("carrier", "haulier"),
            ("sku", "item"),
            ("category", "item_group"),
            ("ordered_qty", "qty_ordered"),
            ("delivered_qty", "qty_shipped"),
            ("due_date", "must_arrive"),
            ("delivered_date", "arrived_at"),
            ("reason_code", "why"),
            ("region", "region"),
        ]),
        ..SourceSpec::default()
    }
}

fn erp_spec() -> SourceSpec {
    SourceSpec {
        name: "erp".into(),
        kind: "mariadb".into(),
        url_env: Some("ERP_DATABASE_URL".into()),
        query: Some("SELECT * FROM order_rows WHERE DueDate >= :since".into()),
        window_days: Some(90),
        columns: mapping(&[
            ("order_id", "OrderNo"),
            ("line_no", "LineNo"),
            ("site", "site"), // another case than the table's: resolved
            ("customer", "Customer"),
            ("carrier", "Carrier"),
            ("sku", "Sku"),
            ("category", "Category"),
            ("ordered_qty", "Ordered"),
            ("delivered_qty", "Shipped"),
            ("due_date", "DueDate"),
            ("delivered_date", "DeliveredAt"),
            ("reason_code", "Reason"),
        ]),
        ..SourceSpec::default()
    }
}

pub(crate) fn def(spec: SourceSpec, var: &str, url: &str) -> SourceDef {
    let (var, url) = (var.to_string(), url.to_string());
    SourceDef::from_spec(
        spec,
        &move |k| (k == var).then(|| url.clone()),
        Path::new("."),
    )
    .expect("a valid source")
}

async fn app_with(defs: Vec<SourceDef>) -> TestApp {
    spawn_app_tuned(0, move |c| c.sources = defs).await
}

pub(crate) async fn sync(app: &TestApp, name: &str) -> Value {
    let r = app
        .post_json(
            &format!("/api/v1/sources/{name}/sync"),
            &json!({"wait": true}),
        )
        .await;
    assert_eq!(r.status(), 202, "sync {name}");
    r.json().await.unwrap()
}

/// What the dashboard shows of the data: every tile of the network and of each site, and
/// the stale-source warnings.
pub(crate) async fn figures(app: &TestApp) -> (Value, Value) {
    let d: Value = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let mut tiles = vec![d["network"]["tiles"].clone()];
    let mut sites: Vec<&Value> = d["sites"].as_array().unwrap().iter().collect();
    sites.sort_by_key(|s| s["site"].as_str().unwrap_or_default().to_string());
    for s in sites {
        tiles.push(json!([s["site"], s["tiles"]]));
    }
    (Value::Array(tiles), d["stale_sources"].clone())
}

/// Every tile's numerator and denominator, in the order of [`figures`].
pub(crate) fn counts(tiles: &Value) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut walk = |t: &Value| {
        for tile in t.as_array().into_iter().flatten() {
            out.push((
                tile["numerator"].as_i64().unwrap_or(-1),
                tile["denominator"].as_i64().unwrap_or(-1),
            ));
        }
    };
    let rows = tiles.as_array().unwrap();
    walk(&rows[0]);
    for site in &rows[1..] {
        walk(&site[1]);
    }
    out
}

/// The evidence pack's breakdowns for a site (the numbers behind the card).
async fn pack(app: &TestApp, site: &str) -> Value {
    let p: Value = app
        .get(&format!("/api/v1/evidence?site={site}&metric=otif"))
        .await
        .json()
        .await
        .unwrap();
    json!([p["kpi"], p["contributions"], p["tree"], p["data_quality"]])
}

#[tokio::test]
async fn postgres_and_mariadb_sources_give_the_dashboard_of_the_same_csv() {
    let data = lines();
    let csv_app = app_with(vec![]).await;
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&data).into_bytes()),
    )
    .await
    .expect("the CSV imports");
    let pg = postgres_wms(&data).await;
    let my = mariadb_erp(&data).await;
    let secret_pg = pg.url.replace("postgres@", "postgres:pg-secret-pw@");
    let wms = app_with(vec![def(wms_spec(), "WMS_DATABASE_URL", &secret_pg)]).await;
    let erp = app_with(vec![def(erp_spec(), "ERP_DATABASE_URL", &my.url)]).await;

    let s = sync(&wms, "wms").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["rows_read"], data.len() as i64);
    assert_eq!(s["inserted"], data.len() as i64);
    assert_eq!(s["trigger"], "manual");
    let s = sync(&erp, "erp").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["inserted"], data.len() as i64);

    let expected = figures(&csv_app).await;
    assert!(expected.0.to_string().contains("\"numerator\""));
    assert_eq!(figures(&wms).await, expected, "PostgreSQL source vs CSV");
    assert_eq!(figures(&erp).await, expected, "MariaDB source vs CSV");
    for site in ["DAL", "network"] {
        let want = pack(&csv_app, site).await;
        assert_eq!(pack(&wms, site).await, want, "{site} pack from PostgreSQL");
        assert_eq!(pack(&erp, site).await, want, "{site} pack from MariaDB");
    }

    // Idempotent: the same rows again change nothing.
    let s = sync(&wms, "wms").await;
    assert_eq!(
        (s["inserted"].as_i64(), s["updated"].as_i64()),
        (Some(0), Some(data.len() as i64))
    );
    assert_eq!(figures(&wms).await, expected);

    // A line delivered short in the WMS reaches the tiles as a re-import of it would.
    // (Due in the dashboard's week, the latest complete one: eight days before the tests' date.)
    let changed = data
        .iter()
        .find(|l| l.due == "2026-11-13" && l.delivered > 1)
        .unwrap();
    pg.exec(&format!(
        "UPDATE shipments SET qty_shipped = 0, why = 'stockout' WHERE so_number = {} AND line = {}",
        quote(&changed.order),
        changed.line
    ))
    .await;
    let mut fixed = changed.clone();
    fixed.delivered = 0;
    fixed.reason = Some("stockout");
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&[fixed]).into_bytes()),
    )
    .await
    .unwrap();
    sync(&wms, "wms").await;
    let after = figures(&csv_app).await;
    assert!(after != expected, "the change moves a tile");
    assert_eq!(figures(&wms).await, after);

    // The WMS's region column groups the sites it created.
    let sites: Value = wms.get("/api/v1/sites").await.json().await.unwrap();
    assert!(
        sites
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["region"] == "South"),
        "{sites}"
    );

    // The source as listed: what it reads and its last sync, never its connection string.
    let list: Value = wms.get("/api/v1/sources").await.json().await.unwrap();
    assert_eq!(list[0]["name"], "wms");
    assert_eq!(list[0]["reads"], "table shipments");
    assert_eq!(list[0]["last_sync"]["status"], "succeeded");
    let history: Value = wms
        .get("/api/v1/sources/wms/syncs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3);
    for page in [list.to_string(), history.to_string()] {
        assert!(
            !page.contains("pg-secret-pw") && !page.contains(&pg.name),
            "{page}"
        );
    }
    pg.drop_db().await;
    my.drop_db().await;
}

#[tokio::test]
async fn a_failing_source_keeps_the_last_good_data_and_says_so() {
    let data = lines();
    let pg = postgres_wms(&data).await;
    let wms = app_with(vec![
        def(wms_spec(), "WMS_DATABASE_URL", &pg.url),
        def(
            SourceSpec {
                name: "down".into(),
                ..wms_spec()
            },
            "WMS_DATABASE_URL",
            "postgres://postgres:down-secret@127.0.0.1:1/nothing",
        ),
    ])
    .await;
    assert_eq!(sync(&wms, "wms").await["status"], "succeeded");
    let (good, stale) = figures(&wms).await;
    assert_eq!(stale, json!([]));
    let lines_before = app::ssr::store::facts::count_lines(wms.db()).await.unwrap();

    // A value that does not parse, deep in the result: named by row and order, nothing written.
    pg.exec("ALTER TABLE shipments ALTER COLUMN qty_shipped TYPE TEXT")
        .await;
    pg.exec(&format!(
        "UPDATE shipments SET qty_shipped = 'lots' WHERE so_number = {}",
        quote(&data[1000].order)
    ))
    .await;
    pg.exec("UPDATE shipments SET qty_ordered = qty_ordered + 1")
        .await;
    let s = sync(&wms, "wms").await;
    assert_eq!(s["status"], "failed");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with("row ")
            && error.contains("delivered_qty 'lots' is not a whole number")
            && error.contains(&format!("(order_id '{}')", data[1000].order))
            && error.ends_with("nothing was imported"),
        "{error}"
    );
    assert_eq!(figures(&wms).await.0, good, "nothing half-written");
    assert_eq!(
        app::ssr::store::facts::count_lines(wms.db()).await.unwrap(),
        lines_before
    );

    // A mapped column that is gone: named, with the columns the table has.
    pg.exec("ALTER TABLE shipments RENAME COLUMN haulier TO carrier_code")
        .await;
    let s = sync(&wms, "wms").await;
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with("table shipments has no column 'haulier' (for carrier); its columns are so_number, line,"),
        "{error}"
    );
    // The dashboard keeps the last good figures and says where they come from.
    let (now, stale) = figures(&wms).await;
    assert_eq!(now, good);
    assert_eq!(stale[0]["name"], "wms");
    assert!(stale[0]["error"]
        .as_str()
        .unwrap()
        .contains("has no column 'haulier'"));
    assert!(stale[0]["age_hours"].as_f64().unwrap() < 1.0);

    // A server that is not there.
    let s = sync(&wms, "down").await;
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error"], "cannot connect: connection refused");
    let (_, stale) = figures(&wms).await;
    assert_eq!(stale[0]["name"], "down");
    assert_eq!(stale[0]["age_hours"], Value::Null, "never synced");
    let everything = format!(
        "{}{}{}",
        wms.get("/api/v1/sources").await.text().await.unwrap(),
        wms.get("/api/v1/sources/down/syncs")
            .await
            .text()
            .await
            .unwrap(),
        wms.get("/api/v1/dashboard").await.text().await.unwrap(),
    );
    assert!(!everything.contains("down-secret"), "{everything}");

    // Fixed at the source: the next sync brings it up to date and the warning goes.
    pg.exec("ALTER TABLE shipments RENAME COLUMN carrier_code TO haulier")
        .await;
    pg.exec("UPDATE shipments SET qty_shipped = '0' WHERE qty_shipped = 'lots'")
        .await;
    assert_eq!(sync(&wms, "wms").await["status"], "succeeded");
    let (fixed, stale) = figures(&wms).await;
    assert!(fixed != good, "the source's changes arrived");
    assert_eq!(
        stale.as_array().unwrap().len(),
        1,
        "only 'down' is still stale: {stale}"
    );
    pg.drop_db().await;
}

#[tokio::test]
async fn one_sync_of_a_source_at_a_time_and_one_per_scheduled_tick_across_replicas() {
    let data = lines();
    let pg = postgres_wms(&data).await;
    let spec = SourceSpec {
        schedule: Some("*/5 * * * *".into()),
        ..wms_spec()
    };
    // The app's own tick loop does not know the schedule (only the two replicas below do),
    // so it cannot fire a tick of its own during the test.
    let app = app_with(vec![def(wms_spec(), "WMS_DATABASE_URL", &pg.url)]).await;

    // A sync while another holds the source is refused, through the API and the service.
    let now = chrono::Utc::now();
    let stamp = app::ssr::clock::timestamp;
    app::ssr::store::sources::ensure(app.db(), "wms")
        .await
        .unwrap();
    assert!(app::ssr::store::sources::claim(
        app.db(),
        "wms",
        "sync_elsewhere",
        &stamp(now),
        &stamp(now + chrono::Duration::minutes(5)),
    )
    .await
    .unwrap());
    let r = app.post_json("/api/v1/sources/wms/sync", &json!({})).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "a sync of 'wms' is already running");
    let refused = app
        .state
        .sources()
        .sync("wms", SyncTrigger::Manual, Some("tests"), false)
        .await;
    assert!(matches!(refused, Err(app::ssr::ServiceError::Conflict(_))));
    app::ssr::store::sources::release(app.db(), "wms", "sync_elsewhere", Err("test"))
        .await
        .unwrap();
    let first = app
        .state
        .sources()
        .sync("wms", SyncTrigger::Manual, Some("tests"), false)
        .await
        .unwrap();
    assert_eq!(first.status, SyncStatus::Running);
    let done = wait_sync(&app, &first.id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let r = app.post_json("/api/v1/sources/nope/sync", &json!({})).await;
    assert_eq!(r.status(), 404);

    // Two replicas (services with their own replica ids on the same database) see the
    // same due tick: one sync.
    let replica = |n: &str| {
        Sources::new(
            app.db().clone(),
            app::ssr::clock::Clock::fixed(as_of()),
            vec![def(spec.clone(), "WMS_DATABASE_URL", &pg.url)],
            n.into(),
            Duration::from_secs(30),
        )
    };
    let (a, b) = (replica("replica-a"), replica("replica-b"));
    let t0 = chrono::Utc::now();
    let next = a.fire_due(t0).await.unwrap().expect("a next tick");
    b.fire_due(t0).await.unwrap();
    let later = next + chrono::Duration::seconds(1);
    let (ra, rb) = tokio::join!(a.fire_due(later), b.fire_due(later));
    ra.unwrap();
    rb.unwrap();
    let scheduled = || async {
        app.state
            .sources()
            .history("wms")
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.trigger == SyncTrigger::Schedule)
            .collect::<Vec<_>>()
    };
    let mut waited = 0;
    while scheduled()
        .await
        .iter()
        .any(|s| s.status == SyncStatus::Running)
        || scheduled().await.is_empty()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(waited < 300, "the scheduled sync did not finish");
    }
    let runs = scheduled().await;
    assert_eq!(runs.len(), 1, "one sync for the tick: {runs:?}");
    assert_eq!(runs[0].status, SyncStatus::Succeeded);
    // The tick moved on: firing again at the same time does nothing.
    a.fire_due(later).await.unwrap();
    assert_eq!(scheduled().await.len(), 1);
    pg.drop_db().await;
}

async fn wait_sync(app: &TestApp, id: &str) -> Value {
    for _ in 0..300 {
        let list: Value = app
            .get("/api/v1/sources/wms/syncs")
            .await
            .json()
            .await
            .unwrap();
        if let Some(s) = list.as_array().unwrap().iter().find(|s| s["id"] == id) {
            if s["status"] != "running" {
                return s.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sync {id} did not finish");
}

#[tokio::test]
async fn a_csv_drop_folder_is_a_source_with_its_own_column_names() {
    let data = lines();
    let dir = std::env::temp_dir().join(format!("opsight-drop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let renamed = |text: String| text.replacen("order_id,line_no,site", "Order,Line,DC", 1);
    let (first, second) = data.split_at(data.len() / 2);
    std::fs::write(dir.join("orders-1.csv"), renamed(csv_of(first))).unwrap();
    std::fs::write(dir.join("orders-2.csv"), renamed(csv_of(second))).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an export").unwrap();
    let mut columns = wms_spec().columns;
    for f in [
        "customer",
        "carrier",
        "sku",
        "category",
        "ordered_qty",
        "delivered_qty",
        "due_date",
        "delivered_date",
        "reason_code",
    ] {
        columns.own.insert(f.into(), f.into());
    }
    columns.own.insert("order_id".into(), "Order".into());
    columns.own.insert("line_no".into(), "Line".into());
    columns.own.insert("site".into(), "DC".into());
    let spec = SourceSpec {
        name: "drop".into(),
        kind: "csv".into(),
        path: Some("*.csv".into()),
        columns,
        ..SourceSpec::default()
    };
    let drop_def = SourceDef::from_spec(spec, &|_| None, &dir).unwrap();
    let app = app_with(vec![drop_def]).await;
    let csv_app = app_with(vec![]).await;
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&data).into_bytes()),
    )
    .await
    .unwrap();
    let s = sync(&app, "drop").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["inserted"], data.len() as i64);
    assert_eq!(figures(&app).await, figures(&csv_app).await);

    // A bad cell in the second file: named by file and line, nothing written.
    let mut spoiled = renamed(csv_of(second));
    spoiled = spoiled.replacen(",RoadRunner Freight,", ",,", 1);
    std::fs::write(dir.join("orders-2.csv"), spoiled).unwrap();
    let s = sync(&app, "drop").await;
    let error = s["error"].as_str().unwrap();
    assert!(error.starts_with("orders-2.csv line "), "{error}");
    assert!(error.contains("carrier is empty"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Databricks SQL Statement Execution API double (`tests/doubles/databricks_sql.py`),
/// running the statements on SQLite over `db`; stopped when dropped.
struct Warehouse {
    child: std::process::Child,
    host: String,
}

impl Drop for Warehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Warehouse {
    fn start(db: &Path, args: &[&str]) -> Warehouse {
        use std::io::BufRead;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/doubles/databricks_sql.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg("--db")
            .arg(db)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the Databricks double");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().trim_start_matches("listening on ").to_string();
        Warehouse {
            child,
            host: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn stats(&self) -> Value {
        reqwest::get(format!("{}/double/stats", self.host))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The lakehouse's table, in a SQLite file the double runs statements on: its own names,
/// integer and real quantities, timestamps as text.
async fn lakehouse(dir: &Path, lines: &[Line]) -> std::path::PathBuf {
    sqlx::any::install_default_drivers();
    let file = dir.join("lakehouse.db");
    let _ = std::fs::remove_file(&file);
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite:{}?mode=rwc", file.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE fact_order_lines (order_number TEXT, line_number INTEGER, dc TEXT, \
         customer_name TEXT, carrier_name TEXT, material TEXT, material_group TEXT, \
         qty_ordered REAL, qty_delivered INTEGER, requested_date TEXT, pod_timestamp TEXT, \
         exception_code TEXT, plant_region TEXT)",
    )
    .execute(&db)
    .await
    .unwrap();
    for chunk in lines.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}.0, {}, {}, {}, {}, 'EMEA')",
                    quote(&l.order),
                    l.line,
                    quote(l.site),
                    quote(l.customer),
                    quote(l.carrier),
                    quote(&l.sku),
                    quote(l.category),
                    l.ordered,
                    l.delivered,
                    quote(&l.due),
                    l.delivered_on
                        .as_deref()
                        .map_or("NULL".into(), |d| quote(&format!("{d}T16:05:00.000Z"))),
                    l.reason.map_or("NULL".into(), quote),
                )
            })
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO fact_order_lines VALUES {}",
            values.join(", ")
        )))
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;
    file
}

fn lakehouse_spec(name: &str, host: &str) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        kind: "databricks".into(),
        host: Some(host.into()),
        warehouse_id: Some("wh-1".into()),
        table: Some("fact_order_lines".into()),
        window_days: Some(90),
        columns: mapping(&[
            ("order_id", "order_number"),
            ("line_no", "line_number"),
            ("site", "dc"),
            ("customer", "customer_name"),
            ("carrier", "carrier_name"),
            ("sku", "material"),
            ("category", "material_group"),
            ("ordered_qty", "qty_ordered"),
            ("delivered_qty", "qty_delivered"),
            ("due_date", "requested_date"),
            ("delivered_date", "pod_timestamp"),
            ("reason_code", "exception_code"),
        ]),
        ..SourceSpec::default()
    }
}

#[tokio::test]
async fn a_databricks_warehouse_through_the_statement_api_gives_the_same_dashboard() {
    let data = lines();
    let dir = std::env::temp_dir().join(format!("opsight-dbx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = lakehouse(&dir, &data).await;
    // Small chunks and a slow warehouse: several chunks, and statements that are polled.
    let warehouse = Warehouse::start(
        &file,
        &[
            "--token",
            "dapi-secret-token",
            "--client-id",
            "sp-opsight",
            "--client-secret",
            "sp-secret",
            "--chunk-rows",
            "700",
            "--delay-ms",
            "700",
        ],
    );
    let env = |k: &str| match k {
        "DBX_TOKEN" => Some("dapi-secret-token".to_string()),
        "DBX_SP_SECRET" => Some("sp-secret".to_string()),
        "DBX_WRONG" => Some("dapi-wrong".to_string()),
        _ => None,
    };
    let with = |mut spec: SourceSpec, f: &dyn Fn(&mut SourceSpec)| {
        f(&mut spec);
        SourceDef::from_spec(spec, &env, Path::new(".")).unwrap()
    };
    let host = warehouse.host.clone();
    let app = app_with(vec![
        with(lakehouse_spec("lakehouse", &host), &|s| {
            s.token_env = Some("DBX_TOKEN".into())
        }),
        with(lakehouse_spec("lakehouse-sp", &host), &|s| {
            s.client_id = Some("sp-opsight".into());
            s.client_secret_env = Some("DBX_SP_SECRET".into());
        }),
        with(lakehouse_spec("wrong-token", &host), &|s| {
            s.token_env = Some("DBX_WRONG".into())
        }),
        with(lakehouse_spec("bad-query", &host), &|s| {
            s.token_env = Some("DBX_TOKEN".into());
            s.table = None;
            s.query = Some("SELECT * FROM no_such_table".into());
        }),
    ])
    .await;
    let csv_app = app_with(vec![]).await;
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&data).into_bytes()),
    )
    .await
    .unwrap();

    let s = sync(&app, "lakehouse").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["inserted"], data.len() as i64);
    assert_eq!(figures(&app).await, figures(&csv_app).await);
    let stats = warehouse.stats().await;
    assert!(stats["external_fetches"].as_i64().unwrap() >= 4, "{stats}");
    assert_eq!(
        stats["external_with_auth"], 0,
        "no token sent to a presigned link"
    );

    // A service principal (OAuth machine-to-machine) reads the same rows.
    let s = sync(&app, "lakehouse-sp").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["updated"], data.len() as i64);

    let s = sync(&app, "wrong-token").await;
    assert_eq!(s["status"], "failed");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .starts_with("the workspace refused the credentials (HTTP 401"),
        "{s}"
    );
    let s = sync(&app, "bad-query").await;
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with("the query fails: ") && error.contains("no_such_table"),
        "{error}"
    );
    // OAuth tokens that expire while a statement runs (the next chunks are asked for
    // after it): renewed before they do.
    let short = Warehouse::start(
        &file,
        &[
            "--client-id",
            "sp-opsight",
            "--client-secret",
            "sp-secret",
            "--token-ttl",
            "1",
            "--delay-ms",
            "1500",
            "--chunk-rows",
            "500",
        ],
    );
    let renewing = app_with(vec![with(
        lakehouse_spec("lakehouse-sp", &short.host),
        &|s| {
            s.client_id = Some("sp-opsight".into());
            s.client_secret_env = Some("DBX_SP_SECRET".into());
        },
    )])
    .await;
    let s = sync(&renewing, "lakehouse-sp").await;
    assert_eq!(s["status"], "succeeded", "{s}");
    let stats = short.stats().await;
    assert!(stats["oauth_tokens"].as_i64().unwrap() > 2, "{stats}");
    let page = format!(
        "{}{}",
        app.get("/api/v1/sources").await.text().await.unwrap(),
        app.get("/api/v1/dashboard").await.text().await.unwrap()
    );
    for secret in ["dapi-secret-token", "sp-secret", "dapi-wrong"] {
        assert!(!page.contains(secret), "{secret} in an answer");
    }
    drop(warehouse);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -9` of the process running a sync: nothing of it is written, the source stays
/// claimed until the claim runs out (on PostgreSQL, the lease: 5 s here), then the next
/// sync takes it over, reads everything, and the killed sync is listed as abandoned.
/// (PostgreSQL as Opsight's store: run by the PostgreSQL pass of `.ci/test`.)
#[tokio::test]
async fn multi_process_a_sync_killed_mid_way_writes_nothing_and_is_taken_over() {
    const ROWS: i64 = 200_000;
    let tdb = crate::common::pg_test_db().await;
    let pg = postgres_wms(&[]).await;
    pg.exec(&format!(
        "INSERT INTO shipments (so_number, line, dc_code, account, haulier, item, item_group, \
         qty_ordered, qty_shipped, must_arrive, arrived_at, why, region) \
         SELECT 'K-' || g, 1, 'dal', 'Acme', 'Zephyr', 'SKU-' || (g % 50), 'Food', 5, \
         CASE WHEN g % 7 = 0 THEN 3 ELSE 5 END, DATE '2026-11-10', \
         TIMESTAMP '2026-11-10 10:00:00', NULL, 'South' FROM generate_series(1, {ROWS}) g"
    ))
    .await;
    let columns: String = wms_spec()
        .columns
        .own
        .iter()
        .map(|(f, c)| format!("{f} = \"{c}\"\n"))
        .collect();
    let file = tdb.dir.join("sources.toml");
    std::fs::write(
        &file,
        format!(
            "[[source]]\nname = \"wms\"\nkind = \"postgres\"\nurl_env = \"WMS_DATABASE_URL\"\n\
             table = \"shipments\"\nwindow_days = 90\ntimeout_secs = 10\n[source.columns]\n{columns}"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opsight"))
        .args(["sources", "sync", "wms"])
        .env("DATABASE_URL", &tdb.url)
        .env("OPSIGHT_SOURCES_FILE", &file)
        .env("WMS_DATABASE_URL", &pg.url)
        .env("OPSIGHT_JOB_LEASE_SECS", "5")
        .env("OPSIGHT_AS_OF", crate::common::AS_OF)
        .env("OPSIGHT_AGENTS_FILE", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let db = tdb.db.clone();
    let running = || async {
        app::ssr::store::sources::syncs(&db, Some("wms"), 5)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.status == SyncStatus::Running)
    };
    let mut waited = 0;
    while running().await.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 400, "the sync did not start");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL, mid-sync
    child.wait().unwrap();
    let killed = running().await.expect("killed while running");
    assert_eq!(app::ssr::store::facts::count_lines(&db).await.unwrap(), 0);
    let facts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kpi_facts")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(facts, 0, "nothing of the killed sync in the metric store");

    // The next sync: refused while the dead one's claim lasts, then it takes over.
    let sources = Sources::new(
        db.clone(),
        app::ssr::clock::Clock::fixed(as_of()),
        vec![def(
            SourceSpec {
                timeout_secs: Some(10),
                ..wms_spec()
            },
            "WMS_DATABASE_URL",
            &pg.url,
        )],
        "replica-b".into(),
        Duration::from_secs(2),
    );
    let refused = sources.sync("wms", SyncTrigger::Manual, None, true).await;
    assert!(matches!(refused, Err(app::ssr::ServiceError::Conflict(_))));
    let started = std::time::Instant::now();
    let done = loop {
        match sources.sync("wms", SyncTrigger::Manual, None, true).await {
            Ok(s) => break s,
            Err(app::ssr::ServiceError::Conflict(_)) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "never taken over"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(done.status, SyncStatus::Succeeded, "{done:?}");
    assert_eq!(done.inserted, ROWS);
    assert_eq!(
        app::ssr::store::facts::count_lines(&db).await.unwrap(),
        ROWS
    );
    let history = sources.history("wms").await.unwrap();
    let old = history.iter().find(|s| s.id == killed.id).unwrap();
    assert_eq!(old.status, SyncStatus::Abandoned, "{old:?}");
    pg.drop_db().await;
}

/// Lines loaded straight into `order_lines` by another program (outside the import, so
/// not tallied) are counted at the next start-up, or by `opsight retally`.
#[tokio::test]
async fn lines_written_into_order_lines_by_others_reach_the_tiles() {
    let data = lines();
    let (imported, outside) = data.split_at(data.len() - 300);
    let app = app_with(vec![]).await;
    import_orders(
        app.db(),
        std::io::Cursor::new(csv_of(imported).into_bytes()),
    )
    .await
    .unwrap();
    let csv_app = app_with(vec![]).await;
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&data).into_bytes()),
    )
    .await
    .unwrap();
    // An ETL job's INSERTs (and one of its UPDATEs) into Opsight's own table.
    for chunk in outside.chunks(100) {
        let values: Vec<String> = chunk
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                    quote(&l.order),
                    l.line,
                    quote(l.site),
                    quote(l.customer),
                    quote(l.carrier),
                    quote(&l.sku),
                    quote(l.category),
                    l.ordered,
                    l.delivered,
                    quote(&l.due),
                    l.delivered_on.as_deref().map_or("NULL".into(), quote),
                    l.reason.map_or("NULL".into(), quote),
                )
            })
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO order_lines (order_id, line_no, site, customer, carrier, sku, category, \
             ordered_qty, delivered_qty, due_date, delivered_date, reason_code) VALUES {}",
            values.join(", ")
        )))
        .execute(app.db())
        .await
        .unwrap();
    }
    assert!(
        figures(&app).await != figures(&csv_app).await,
        "not seen yet"
    );
    assert!(app::ssr::data::import::bring_store_up_to_date(app.db())
        .await
        .unwrap());
    assert_eq!(figures(&app).await, figures(&csv_app).await);
    // Nothing changed since: nothing to do.
    assert!(!app::ssr::data::import::bring_store_up_to_date(app.db())
        .await
        .unwrap());
}

/// Push-down: PostgreSQL, MariaDB and the Databricks double compute the day-level tallies
/// themselves; the store gets exactly what the lines give, and after a change of scoring
/// rules the next sync scores every day it holds again.
#[tokio::test]
async fn pushed_down_tallies_equal_the_lines_and_follow_the_rules() {
    let data = lines();
    let pg = postgres_wms(&data).await;
    let my = mariadb_erp(&data).await;
    let dir = std::env::temp_dir().join(format!("opsight-push-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = lakehouse(&dir, &data).await;
    let warehouse = Warehouse::start(&file, &["--token", "dapi-t", "--chunk-rows", "500"]);
    // (Site names and regions come with lines: a push-down does not map them.)
    let pushed = |mut spec: SourceSpec| {
        spec.columns.own.remove("region");
        SourceSpec {
            pushdown: Some(true),
            ..spec
        }
    };
    let dbx = SourceSpec {
        token_env: Some("DBX".into()),
        ..lakehouse_spec("lakehouse", &warehouse.host)
    };
    let dbx = SourceDef::from_spec(
        pushed(dbx),
        &|k| (k == "DBX").then(|| "dapi-t".into()),
        Path::new("."),
    )
    .unwrap();
    let csv_app = app_with(vec![]).await;
    import_orders(
        csv_app.db(),
        std::io::Cursor::new(csv_of(&data).into_bytes()),
    )
    .await
    .unwrap();
    let expected = figures(&csv_app).await;
    // Each engine's tallies give what the lines give, and no line moves.
    let mut apps = Vec::new();
    for (name, source) in [
        ("wms", def(pushed(wms_spec()), "WMS_DATABASE_URL", &pg.url)),
        ("erp", def(pushed(erp_spec()), "ERP_DATABASE_URL", &my.url)),
        ("lakehouse", dbx),
    ] {
        let app = app_with(vec![source]).await;
        let s = sync(&app, name).await;
        assert_eq!(s["status"], "succeeded", "{s}");
        assert_eq!(s["inserted"], data.len() as i64, "{s}");
        assert!(s["bytes_read"].as_i64().unwrap() > 0);
        assert_eq!(figures(&app).await, expected, "{name}");
        for site in ["DAL", "network"] {
            assert_eq!(
                pack(&app, site).await,
                pack(&csv_app, site).await,
                "{name} {site}"
            );
        }
        assert_eq!(
            app::ssr::store::facts::count_lines(app.db()).await.unwrap(),
            0
        );
        apps.push(app);
    }
    let solo = &apps[0];
    // Syncing again replaces, never adds.
    assert_eq!(sync(solo, "wms").await["status"], "succeeded");
    assert_eq!(figures(solo).await, expected);

    // A scoring edit: the lines are re-scored at once; the pushed tallies at the next sync.
    let edit = json!({"op": "update", "expected_version": 1, "item": {"type": "rule",
        "key": "on_time_window_days", "kind": "parameter", "metric": null, "value": 2.0,
        "description": "Days after the due date that still count as on time.", "enabled": true}});
    for a in [solo, &csv_app] {
        let r = a.post_json("/api/v1/rules/edits", &edit).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let lenient = figures(&csv_app).await;
    assert!(lenient != expected, "the edit moves the tiles");
    // (The tiles' definitions name the new window: compare the counts.)
    assert_eq!(
        counts(&figures(solo).await.0),
        counts(&expected.0),
        "kept as pushed until the next sync"
    );
    assert_eq!(sync(solo, "wms").await["status"], "succeeded");
    assert_eq!(figures(solo).await, lenient);

    // What the line path refuses, a push-down refuses, naming orders; nothing changes.
    pg.exec("INSERT INTO shipments SELECT * FROM shipments WHERE so_number = 'SO-3-0-0'")
        .await;
    let s = sync(solo, "wms").await;
    assert_eq!(
        s["error"],
        "keys are in the window more than once, such as order_id 'SO-3-0-0' line 1 — nothing was imported"
    );
    pg.exec("DELETE FROM shipments WHERE so_number = 'SO-3-0-0'")
        .await;
    pg.exec("UPDATE shipments SET qty_ordered = 0 WHERE so_number = 'SO-4-1-2'")
        .await;
    let s = sync(solo, "wms").await;
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with("rows due in the window are not valid lines")
            && error.contains("order_id 'SO-4-1-2' line 3"),
        "{error}"
    );
    let (tiles, stale) = figures(solo).await;
    assert_eq!(tiles, lenient.0, "the last good tallies stay");
    assert_eq!(stale[0]["name"], "wms");
    drop(warehouse);
    pg.drop_db().await;
    my.drop_db().await;
    let _ = std::fs::remove_dir_all(&dir);
}
