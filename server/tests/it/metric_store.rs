//! The metric store: its tallies equal an independent count of the raw lines for every
//! KPI, dimension and period kind; a late correction changes exactly the days it touches;
//! a scoring edit re-scores so that tiles, packs and a direct count agree; a bad row at
//! the end of a large file leaves everything untouched.
//!
//! The independent count here scores lines with its own few lines of arithmetic (not the
//! app's `Tally`), so a bug in either shows up as a difference.

use crate::common::{as_of, seed, spawn_app, test_db};
use app::domain::evidence::EvidencePack;
use app::domain::kpi::Metric;
use app::domain::period::{fmt_date, parse_date, Compare, Period};
use app::domain::tally::Breakdown;
use app::dto::{Dashboard, UnitCost};
use app::ssr::data::{costs, import};
use app::ssr::store::{facts, Db};
use chrono::NaiveDate;
use serde_json::json;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// One line as stored, read back raw.
#[derive(Clone, Debug)]
struct Raw {
    site: String,
    carrier: String,
    customer: String,
    category: String,
    sku: String,
    ordered: i64,
    delivered: i64,
    due: NaiveDate,
    delivered_on: Option<NaiveDate>,
    reason: Option<String>,
}

async fn raw_lines(db: &Db) -> Vec<Raw> {
    sqlx::query(
        "SELECT site, carrier, customer, category, sku, ordered_qty, delivered_qty, due_date, \
         delivered_date, reason_code FROM order_lines",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| Raw {
        site: r.get(0),
        carrier: r.get(1),
        customer: r.get(2),
        category: r.get(3),
        sku: r.get(4),
        ordered: r.get(5),
        delivered: r.get(6),
        due: parse_date(&r.get::<String, _>(7)).unwrap(),
        delivered_on: r
            .get::<Option<String>, _>(8)
            .as_deref()
            .and_then(parse_date),
        reason: r.get(9),
    })
    .collect()
}

/// The ten stored counts, in `kpi_facts` column order.
type Counts = [i64; 10];

/// Scoring and costs, as the rules and the cost book say.
struct Scoring {
    window: i64,
    tolerance: f64,
    costs: HashMap<String, f64>,
}

fn counts_of(l: &Raw, s: &Scoring) -> Counts {
    let on_time = l
        .delivered_on
        .is_some_and(|d| (d - l.due).num_days() <= s.window);
    let in_full = l.delivered as f64 >= l.ordered as f64 * (1.0 - s.tolerance) - 1e-9;
    let otif = on_time && in_full;
    let reason = l.reason.as_deref().unwrap_or("").trim();
    let cost = (!otif).then(|| s.costs.get(&l.sku)).flatten();
    [
        1,
        otif as i64,
        on_time as i64,
        in_full as i64,
        l.ordered,
        l.delivered,
        l.delivered_on.is_none() as i64,
        (!otif && reason.is_empty()) as i64,
        cost.map_or(0, |c| (l.ordered as f64 * c * 100.0).round() as i64),
        (!otif && cost.is_none()) as i64,
    ]
}

fn add(into: &mut Counts, c: &Counts) {
    for (a, b) in into.iter_mut().zip(c) {
        *a += b;
    }
}

type Key = (String, String, String, String);

/// Every (site, day, dimension, member) the store must hold, counted directly.
fn direct(lines: &[Raw], s: &Scoring) -> BTreeMap<Key, Counts> {
    let mut out: BTreeMap<Key, Counts> = BTreeMap::new();
    for l in lines {
        let c = counts_of(l, s);
        let day = fmt_date(l.due);
        let reason = l.reason.clone().unwrap_or_default();
        let mut members = vec![
            ("", String::new()),
            ("carrier", l.carrier.clone()),
            ("customer", l.customer.clone()),
            ("category", l.category.clone()),
            ("reason", reason),
        ];
        if let Some(d) = l.delivered_on {
            members.push(("delivered_on", fmt_date(d)));
        }
        // Each site's rows, and the network's (site `*`: the sum over sites).
        for (dim, member) in members {
            for site in [l.site.as_str(), facts::ALL_SITES] {
                add(
                    out.entry((
                        site.to_string(),
                        day.clone(),
                        dim.to_string(),
                        member.clone(),
                    ))
                    .or_default(),
                    &c,
                );
            }
        }
    }
    out
}

async fn stored(db: &Db) -> BTreeMap<Key, Counts> {
    sqlx::query(
        "SELECT site, day, dimension, member, lines, otif_lines, on_time_lines, in_full_lines, \
         units_ordered, units_delivered, open_lines, unreasoned_failures, failed_cost_cents, \
         uncosted_failures FROM kpi_facts",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let mut c = [0; 10];
        for (i, v) in c.iter_mut().enumerate() {
            *v = r.get(4 + i);
        }
        ((r.get(0), r.get(1), r.get(2), r.get(3)), c)
    })
    .collect()
}

fn counts_from_breakdown(t: &app::domain::tally::Tally) -> Counts {
    let c = &t.counts;
    [
        c.lines,
        c.otif_lines,
        c.on_time_lines,
        c.in_full_lines,
        c.units_ordered,
        c.units_delivered,
        t.open_lines,
        t.unreasoned_failures,
        t.failed_cost_cents,
        t.uncosted_failures,
    ]
}

/// The store's breakdown of a scope and period equals the direct count of its lines: the
/// total, each member of each dimension, and (network) each site.
async fn assert_period_matches(db: &Db, lines: &[Raw], s: &Scoring, site: Option<&str>, p: Period) {
    let b: Breakdown = facts::breakdown(db, site, p.start, p.end).await.unwrap();
    let scope: Vec<&Raw> = lines
        .iter()
        .filter(|l| p.contains(l.due) && site.is_none_or(|x| l.site == x))
        .collect();
    let mut total = [0; 10];
    let mut members: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for l in &scope {
        let c = counts_of(l, s);
        add(&mut total, &c);
        let mut dims = vec![
            ("carrier", l.carrier.clone()),
            ("customer", l.customer.clone()),
            ("category", l.category.clone()),
            ("reason", l.reason.clone().unwrap_or_default()),
        ];
        if site.is_none() {
            dims.push(("site", l.site.clone()));
        }
        for (dim, m) in dims {
            add(members.entry((dim.to_string(), m)).or_default(), &c);
        }
    }
    let label = format!("{} {}", site.unwrap_or("network"), p.label());
    assert!(total[0] > 0, "{label}: the period has lines");
    assert_eq!(counts_from_breakdown(&b.total), total, "{label}: total");
    let got: BTreeMap<(String, String), Counts> = b
        .dimensions
        .iter()
        .flat_map(|(d, ms)| {
            ms.iter()
                .map(move |(m, t)| ((d.clone(), m.clone()), counts_from_breakdown(t)))
        })
        .collect();
    assert_eq!(got, members, "{label}: members");
}

async fn demo_scoring(db: &Db) -> Scoring {
    let rules = app::ssr::store::rules::load(db).await.unwrap();
    let book = facts::cost_book(db).await.unwrap();
    let p = rules.scoring();
    Scoring {
        window: p.on_time_window_days,
        tolerance: p.in_full_tolerance,
        costs: book.by_sku,
    }
}

#[tokio::test]
async fn the_store_equals_an_independent_count_for_every_dimension_and_period() {
    let t = test_db().await;
    seed(&t.db, 30_000).await;
    // Costs for a few SKUs: money at stake is tallied too (saving them re-tallies).
    let lines = raw_lines(&t.db).await;
    let skus: Vec<String> = {
        let mut s: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
        s.sort();
        s.dedup();
        s.into_iter().step_by(3).collect()
    };
    let entries: Vec<UnitCost> = skus
        .iter()
        .enumerate()
        .map(|(i, sku)| UnitCost {
            sku: Some(sku.clone()),
            category: None,
            unit_cost: 1.25 + i as f64,
        })
        .collect();
    costs::put(&t.db, entries).await.unwrap();
    let s = demo_scoring(&t.db).await;
    assert!(!s.costs.is_empty());
    assert_eq!(stored(&t.db).await, direct(&lines, &s));

    // Every period kind, for a site and for the network; and a year-ago comparison.
    let a = as_of();
    let week = Period::latest_complete(app::domain::period::Grain::Week, a);
    let month = Period::latest_complete(app::domain::period::Grain::Month, a);
    let quarter = Period::parse(&format!("{}-Q{}", a.format("%Y"), 3)).unwrap();
    let year = Period::parse(&a.format("%Y").to_string()).unwrap();
    let range = Period::parse(&format!(
        "{}..{}",
        fmt_date(a - chrono::Duration::days(45)),
        fmt_date(a - chrono::Duration::days(3))
    ))
    .unwrap();
    for p in [
        week,
        month,
        quarter,
        year,
        range,
        week.previous(),
        month.compared(Compare::Previous),
    ] {
        for site in [Some("DAL"), None] {
            assert_period_matches(&t.db, &lines, &s, site, p).await;
        }
    }
    // A year-ago week: the demo holds 180 days, so the comparison has no lines at all,
    // and the store says so rather than inventing any.
    let ago = week.compared(Compare::YearAgo);
    let b = facts::breakdown(&t.db, None, ago.start, ago.end)
        .await
        .unwrap();
    assert_eq!(b.total.counts.lines, 0);
}

#[tokio::test]
async fn a_year_ago_comparison_sums_the_same_week_a_year_before() {
    let t = test_db().await;
    // Two years of a small network, one line per site and day.
    let mut csv = String::from(
        "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code\n",
    );
    let start = parse_date("2025-01-01").unwrap();
    for d in 0..700 {
        let due = start + chrono::Duration::days(d);
        for (i, site) in ["DAL", "ATL"].iter().enumerate() {
            let late = (d + i as i64) % 5 == 0;
            csv.push_str(&format!(
                "O{d}-{i},1,{site},C{},K{},S{},G,10,{},{},{},{}\n",
                d % 3,
                d % 2,
                d % 7,
                if d % 11 == 0 { 7 } else { 10 },
                fmt_date(due),
                fmt_date(due + chrono::Duration::days(if late { 2 } else { 0 })),
                if late { "carrier_late" } else { "" }
            ));
        }
    }
    import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap();
    let lines = raw_lines(&t.db).await;
    let s = demo_scoring(&t.db).await;
    assert_eq!(stored(&t.db).await, direct(&lines, &s));
    let week = Period::parse("2026-W40").unwrap();
    let ago = week.compared(Compare::YearAgo);
    assert_eq!(ago.label(), "2025-W40");
    for site in [Some("ATL"), None] {
        assert_period_matches(&t.db, &lines, &s, site, ago).await;
    }
    for p in ["2025-Q2", "2025", "2026-03", "2025-12-20..2026-01-10"] {
        for site in [Some("DAL"), None] {
            assert_period_matches(&t.db, &lines, &s, site, Period::parse(p).unwrap()).await;
        }
    }
}

const HEADER: &str = "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code";

#[tokio::test]
async fn a_late_correction_changes_exactly_the_days_it_touches() {
    let t = test_db().await;
    seed(&t.db, 8_000).await;
    let before = stored(&t.db).await;
    // Move one delivered line to another day (and make it short and late), and add a line.
    let moved: (String, i64, String, String) = sqlx::query_as(
        "SELECT order_id, line_no, site, due_date FROM order_lines WHERE site = 'DAL' \
         AND delivered_date IS NOT NULL ORDER BY order_id, line_no LIMIT 1",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    let old_day = parse_date(&moved.3).unwrap();
    let new_day = old_day + chrono::Duration::days(2);
    let csv = format!(
        "{HEADER}\n{},{},DAL,MegaMart,Coastal Haul,BEV-0001,Beverages,10,3,{},{},carrier_late\n\
         LATE-1,1,DAL,MegaMart,Coastal Haul,BEV-0001,Beverages,4,4,{},{},\n",
        moved.0,
        moved.1,
        fmt_date(new_day),
        fmt_date(new_day + chrono::Duration::days(1)),
        fmt_date(new_day),
        fmt_date(new_day),
    );
    let r = import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!((r.lines, r.inserted, r.updated), (2, 1, 1));
    let after = stored(&t.db).await;
    let lines = raw_lines(&t.db).await;
    assert_eq!(after, direct(&lines, &demo_scoring(&t.db).await));
    // Only rows of DAL (and of the network, its sum) on the old and the new day differ.
    let touched = [fmt_date(old_day), fmt_date(new_day)];
    let keys: std::collections::BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
    let changed: Vec<&&Key> = keys
        .iter()
        .filter(|k| before.get(**k) != after.get(**k))
        .collect();
    assert!(!changed.is_empty());
    for k in &changed {
        assert!(
            (k.0 == "DAL" || k.0 == facts::ALL_SITES) && touched.contains(&k.1),
            "unexpected change {k:?}"
        );
    }
    assert!(changed.iter().any(|k| k.1 == touched[0]));
    assert!(changed.iter().any(|k| k.1 == touched[1]));
}

#[tokio::test]
async fn a_bad_row_at_the_end_of_a_large_file_leaves_the_database_untouched() {
    let t = test_db().await;
    seed(&t.db, 3_000).await;
    let lines_before = facts::count_lines(&t.db).await.unwrap();
    let store_before = stored(&t.db).await;
    let state_before = facts::store_state(&t.db).await.unwrap();
    // 120,000 good rows (many bulk batches, new sites among them), then one bad row.
    let mut csv = String::from(HEADER);
    for i in 0..120_000 {
        csv.push_str(&format!(
            "\nBIG-{i},1,NEW{},C,K,S,G,10,10,2026-10-{:02},2026-10-{:02},",
            i % 7,
            1 + i % 28,
            1 + i % 28
        ));
    }
    csv.push_str("\nBIG-bad,1,DAL,C,K,S,G,ten,10,2026-10-01,2026-10-01,");
    let err = import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 120002: ordered_qty 'ten' is not a whole number"),
        "{msg}"
    );
    assert!(msg.contains("nothing was imported"));
    assert_eq!(facts::count_lines(&t.db).await.unwrap(), lines_before);
    assert_eq!(stored(&t.db).await, store_before);
    assert_eq!(facts::store_state(&t.db).await.unwrap(), state_before);
    let sites = facts::site_codes(&t.db).await.unwrap();
    assert!(!sites.iter().any(|s| s.starts_with("NEW")), "{sites:?}");
    // A key twice in one file, far apart: both lines named, nothing imported.
    let mut csv = String::from(HEADER);
    for i in 0..5_000 {
        csv.push_str(&format!(
            "\nDUP-{i},1,DAL,C,K,S,G,10,10,2026-10-01,2026-10-01,"
        ));
    }
    csv.push_str("\nDUP-17,1,DAL,C,K,S,G,10,10,2026-10-02,2026-10-02,");
    let err = import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("line 5002: duplicate key order_id 'DUP-17' line_no 1 (first on line 19)"),
        "{err}"
    );
    assert_eq!(facts::count_lines(&t.db).await.unwrap(), lines_before);
}

#[tokio::test]
async fn an_earlier_imports_key_twice_in_a_file_names_both_lines() {
    let t = test_db().await;
    seed(&t.db, 2_000).await;
    let (order_id, line_no): (String, i64) =
        sqlx::query_as("SELECT order_id, line_no FROM order_lines ORDER BY order_id LIMIT 1")
            .fetch_one(&t.db)
            .await
            .unwrap();
    let lines_before = facts::count_lines(&t.db).await.unwrap();
    let store_before = stored(&t.db).await;
    // The stored key on line 3 and again on line 4,503: an update, then a duplicate of it
    // (the seed's own line number for the key must not be the one reported).
    let mut csv = String::from(HEADER);
    for i in 0..4_502 {
        let key = if i == 1 {
            format!("{order_id},{line_no}")
        } else {
            format!("TWICE-{i},1")
        };
        csv.push_str(&format!("\n{key},DAL,C,K,S,G,10,10,2026-10-01,2026-10-01,"));
    }
    csv.push_str(&format!(
        "\n{order_id},{line_no},DAL,C,K,S,G,9,9,2026-10-02,2026-10-02,"
    ));
    let err = import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap_err();
    let expected = format!(
        "line 4504: duplicate key order_id '{order_id}' line_no {line_no} (first on line 3)"
    );
    assert!(err.to_string().contains(&expected), "{err}");
    assert_eq!(facts::count_lines(&t.db).await.unwrap(), lines_before);
    assert_eq!(stored(&t.db).await, store_before);
}

#[tokio::test]
async fn updates_spread_over_a_large_import_are_applied_and_tallied_exactly() {
    let t = test_db().await;
    seed(&t.db, 2_000).await;
    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT order_id, line_no FROM order_lines ORDER BY order_id, line_no")
            .fetch_all(&t.db)
            .await
            .unwrap();
    let lines_before = facts::count_lines(&t.db).await.unwrap();
    // 5,000 rows (three batches): every seventh one rewrites a stored line (short, on
    // another day and site), the rest are new, so batches mix new keys and updates.
    let mut csv = String::from(HEADER);
    let mut updates = 0;
    for i in 0..5_000usize {
        let key = if i % 7 == 3 {
            updates += 1;
            let (order_id, line_no) = &keys[i / 7 % keys.len()];
            format!("{order_id},{line_no}")
        } else {
            format!("BIG-{i},1")
        };
        csv.push_str(&format!(
            "\n{key},AUS,C{},K{},S,G,10,{},2026-10-0{},2026-10-0{},",
            i % 5,
            i % 3,
            10 - i % 4,
            1 + i % 9,
            2 + i % 8
        ));
    }
    let r = import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!(
        (r.lines, r.inserted, r.updated),
        (5_000, 5_000 - updates, updates)
    );
    assert_eq!(
        facts::count_lines(&t.db).await.unwrap(),
        lines_before + (5_000 - updates) as i64
    );
    let lines = raw_lines(&t.db).await;
    assert_eq!(
        stored(&t.db).await,
        direct(&lines, &demo_scoring(&t.db).await)
    );
    // The next import counts only its own lines (its stage and counts start afresh).
    let next = format!("{HEADER}\nNEXT-1,1,AUS,C,K,S,G,4,4,2026-10-03,2026-10-03,");
    let r = import::import_orders(&t.db, std::io::Cursor::new(next.as_bytes().to_vec()))
        .await
        .unwrap();
    assert_eq!((r.lines, r.inserted, r.updated), (1, 1, 0));
}

#[tokio::test]
async fn lines_centuries_apart_are_tallied_and_rescored_exactly() {
    let t = test_db().await;
    seed(&t.db, 2_000).await;
    // The oldest and the latest dates Opsight accepts, for one site, next to the demo's:
    // imported, then re-scored, each counted exactly (re-scoring visits the days that hold
    // lines, not the three million in between, so this runs in a second).
    let csv = format!(
        "{HEADER}\nSTRAY-1,1,DAL,C,K,S,G,10,10,1900-01-01,1900-01-09,\n\
         STRAY-2,1,DAL,C,K,S,G,10,4,9998-12-31,9998-12-31,short_pick\n"
    );
    import::import_orders(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()))
        .await
        .unwrap();
    // Saving unit costs re-tallies the whole store.
    costs::put(
        &t.db,
        vec![UnitCost {
            sku: Some("S".into()),
            category: None,
            unit_cost: 3.5,
        }],
    )
    .await
    .unwrap();
    let s = demo_scoring(&t.db).await;
    let lines = raw_lines(&t.db).await;
    assert_eq!(stored(&t.db).await, direct(&lines, &s));
    let far = facts::breakdown(
        &t.db,
        None,
        parse_date("9998-01-01").unwrap(),
        parse_date("9998-12-31").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        (far.total.counts.lines, far.total.counts.in_full_lines),
        (1, 0)
    );
}

/// OTIF of a site's latest week three ways: the dashboard tile, the KPI page's pack and a
/// direct count under `s`.
async fn otif_three_ways(
    app: &crate::common::TestApp,
    s: &Scoring,
) -> (Option<f64>, Option<f64>, f64) {
    let d: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let tile = d
        .sites
        .iter()
        .find(|x| x.site == "DAL")
        .and_then(|x| x.tiles.iter().find(|t| t.metric == Metric::OTIF))
        .and_then(|t| t.value);
    let pack: EvidencePack = app
        .get("/api/v1/evidence?site=DAL&metric=otif")
        .await
        .json()
        .await
        .unwrap();
    let week = Period::latest_complete(app::domain::period::Grain::Week, as_of());
    let lines = raw_lines(app.state.db()).await;
    let mut c = [0; 10];
    for l in lines
        .iter()
        .filter(|l| l.site == "DAL" && week.contains(l.due))
    {
        add(&mut c, &counts_of(l, s));
    }
    (tile, pack.value, 100.0 * c[1] as f64 / c[0] as f64)
}

#[tokio::test]
async fn scoring_edits_rescore_so_tiles_packs_and_a_direct_count_agree() {
    let app = spawn_app(20_000, None).await;
    let strict = demo_scoring(app.state.db()).await;
    let (tile, pack, count) = otif_three_ways(&app, &strict).await;
    assert_eq!(tile, pack);
    assert!((pack.unwrap() - count).abs() < 1e-9, "{pack:?} vs {count}");

    for (v, (key, value, description)) in [
        ("on_time_window_days", 2.0, "Days after the due date that still count as on time."),
        (
            "in_full_tolerance",
            0.25,
            "Share of the ordered quantity that may be missing and still count as in full (0.02 = 2 %).",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let v = v + 1;
        let r = app
            .post_json(
                "/api/v1/rules/edits",
                &json!({"op": "update", "expected_version": v, "item": {"type": "rule",
                    "key": key, "kind": "parameter", "metric": null, "value": value,
                    "description": description, "enabled": true}}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let lenient = Scoring {
        window: 2,
        tolerance: 0.25,
        costs: strict.costs.clone(),
    };
    let (tile2, pack2, count2) = otif_three_ways(&app, &lenient).await;
    assert_eq!(tile2, pack2);
    assert!(
        (pack2.unwrap() - count2).abs() < 1e-9,
        "{pack2:?} vs {count2}"
    );
    assert!(
        pack2.unwrap() > pack.unwrap() + 1.0,
        "{pack:?} -> {pack2:?}"
    );
    // And every row of the store, not only DAL's week.
    let lines = raw_lines(app.state.db()).await;
    assert_eq!(stored(app.state.db()).await, direct(&lines, &lenient));
}

#[tokio::test]
async fn any_period_through_the_api_with_bad_ones_named() {
    let app = spawn_app(20_000, None).await;
    // A month, as a deep link: the dashboard's tiles and the evidence endpoint agree, and
    // the trend follows the grain.
    let d: Dashboard = app
        .get("/api/v1/dashboard?period=2026-10&compare=previous")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d.period.label.as_str(), d.previous_period.label.as_str()),
        ("2026-10", "2026-09")
    );
    let tile = d.sites.iter().find(|r| r.site == "ATL").unwrap().tiles[0].clone();
    assert_eq!(tile.spark.len(), 12);
    let pack: EvidencePack = app
        .get("/api/v1/evidence?site=ATL&metric=otif&period=2026-10")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (pack.value, pack.previous_value),
        (tile.value, tile.previous)
    );
    assert_eq!(pack.series.len(), 12);
    assert_eq!(pack.series.last().unwrap().label, "2026-10");
    assert_eq!(pack.period.label, "2026-10");
    // A grain word: the latest complete one; a year ago: the same month a year before.
    let q: Dashboard = app
        .get("/api/v1/dashboard?period=quarter")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q.period.label, "2026-Q3");
    assert_eq!(q.sites[0].tiles[0].spark.len(), 8);
    assert!(
        pack.anomaly
            .as_ref()
            .is_some_and(|a| !a.unusual && a.summary.starts_with("not judged: a month")),
        "{:?}",
        pack.anomaly
    );
    let y: EvidencePack = app
        .get("/api/v1/evidence?site=network&metric=otif&period=2026-10&compare=year_ago")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(y.previous_period.label, "2025-10");
    assert_eq!(y.previous_value, None, "the demo has no data a year back");
    // Bad input: 400 naming the parameter, through every door.
    for path in [
        "/api/v1/dashboard?period=2026-W54",
        "/api/v1/dashboard?period=2026-13",
        "/api/v1/evidence?site=DAL&metric=otif&period=2026-10-31..2026-10-01",
        "/api/v1/evidence?site=DAL&metric=otif&period=2026-10&compare=last_year",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.starts_with("period: ") || msg.starts_with("compare: "),
            "{path}: {msg}"
        );
    }
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "otif", "period": "2026-W54"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = app.get("/api/v1/evidence?site=NOPE&metric=otif").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn monthly_and_weekly_cards_live_side_by_side() {
    let app = spawn_app(20_000, None).await;
    let weekly = app.refresh("DAL", "otif").await;
    assert_eq!(weekly.status(), 200);
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "otif", "period": "month"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let monthly: app::dto::InsightView = r.json().await.unwrap();
    assert_eq!(
        (monthly.lens.as_str(), monthly.period_label.as_str()),
        ("month", "2026-10")
    );
    let card_of = |d: &Dashboard| {
        d.sites.iter().find(|r| r.site == "DAL").unwrap().cards[0]
            .insight
            .clone()
            .map(|i| (i.lens, i.period_label))
    };
    let w: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let m: Dashboard = app
        .get("/api/v1/dashboard?period=month")
        .await
        .json()
        .await
        .unwrap();
    let q: Dashboard = app
        .get("/api/v1/dashboard?period=quarter")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(card_of(&w), Some(("week".into(), "2026-W46".into())));
    assert_eq!(card_of(&m), Some(("month".into(), "2026-10".into())));
    assert_eq!(card_of(&q), None);
    // Each current in its own lens.
    let dal = |d: &Dashboard| {
        d.sites.iter().find(|r| r.site == "DAL").unwrap().cards[0]
            .stale
            .clone()
    };
    assert_eq!((dal(&w), dal(&m)), (None, None));
    // An earlier month: never next month's insight; once refreshed, its own, while the
    // latest month keeps its own, current.
    let sep: Dashboard = app
        .get("/api/v1/dashboard?period=2026-09")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(card_of(&sep), None);
    let r = app
        .post_json(
            "/api/v1/insights/refresh",
            &json!({"site": "DAL", "metric": "otif", "period": "2026-09"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sep: Dashboard = app
        .get("/api/v1/dashboard?period=2026-09")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(card_of(&sep), Some(("month".into(), "2026-09".into())));
    let m: Dashboard = app
        .get("/api/v1/dashboard?period=month")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(card_of(&m), Some(("month".into(), "2026-10".into())));
    assert_eq!(dal(&m), None);
    // A run of monthly cards, as a monthly schedule starts it.
    let r = app
        .post_json(
            "/api/v1/runs",
            &json!({"scope": "site", "scope_value": "ATL", "period": "month", "force": true}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let run: app::dto::RunView = r.json().await.unwrap();
    assert_eq!(
        run.period, "2026-10",
        "the run says which month it refreshes"
    );
    let done = app.wait_run(&run.id).await;
    assert_eq!(done.run.done, 5, "{:?}", done.run);
    let m: Dashboard = app
        .get("/api/v1/dashboard?period=month")
        .await
        .json()
        .await
        .unwrap();
    let atl = m.sites.iter().find(|r| r.site == "ATL").unwrap();
    assert!(atl.cards.iter().all(|c| c
        .insight
        .as_ref()
        .is_some_and(|i| i.period_label == "2026-10")));
    let w: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let atl = w.sites.iter().find(|r| r.site == "ATL").unwrap();
    assert!(
        atl.cards.iter().all(|c| c.insight.is_none()),
        "weekly ATL cards untouched"
    );
    // Flagged means flagged in the run's own period: the month's off-target or triggered
    // tiles, not the week's.
    let flagged = |d: &Dashboard| -> usize {
        std::iter::once(&d.network)
            .chain(&d.sites)
            .flat_map(|r| &r.tiles)
            .filter(|t| t.status == app::domain::rules::Status::OffTarget || t.trigger.is_some())
            .count()
    };
    let m: Dashboard = app
        .get("/api/v1/dashboard?period=month")
        .await
        .json()
        .await
        .unwrap();
    let w: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let r = app
        .post_json(
            "/api/v1/runs",
            &json!({"scope": "flagged", "period": "month"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let run: app::dto::RunView = r.json().await.unwrap();
    // The demo's planted problems are in its latest week: the month flags other cards.
    assert_ne!(flagged(&m), flagged(&w));
    assert_eq!(run.total as usize, flagged(&m));
    app.wait_run(&run.id).await;
}

#[tokio::test]
async fn a_default_grain_and_digests_follow_the_period_asked_for() {
    use app::domain::period::Grain;
    let app = crate::common::spawn_app_tuned(6_000, |c| {
        c.default_grain = Grain::Month;
        c.notifier.base_url = Some("https://ops.example.com".into());
    })
    .await;
    let month = Period::latest_complete(Grain::Month, as_of()).label();
    // No period named: the configured grain's latest complete period.
    let d: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    assert_eq!(d.period.label, month);
    let preview: serde_json::Value = app
        .get("/api/v1/digests/preview")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["digest"]["period"], month.as_str());
    // A digest of a named week: its figures, and links that open the same view.
    let week = Period::latest_complete(Grain::Week, as_of())
        .previous()
        .label();
    let preview: serde_json::Value = app
        .get(&format!(
            "/api/v1/digests/preview?period={week}&compare=year_ago"
        ))
        .await
        .json()
        .await
        .unwrap();
    let digest = &preview["digest"];
    assert_eq!(digest["period"], week.as_str());
    let view = format!("?period={week}&compare=year_ago");
    assert!(digest["link"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/{view}")));
    let items = digest["items"].as_array().unwrap();
    assert!(!items.is_empty(), "the demo has cards needing attention");
    for i in items {
        assert!(i["link"].as_str().unwrap().ends_with(&view), "{i}");
    }
    // A digest's value is the tile of that period's dashboard.
    let d: Dashboard = app
        .get(&format!("/api/v1/dashboard?period={week}&compare=year_ago"))
        .await
        .json()
        .await
        .unwrap();
    let first = &items[0];
    let row = std::iter::once(&d.network)
        .chain(&d.sites)
        .find(|r| r.site == first["site"].as_str().unwrap())
        .unwrap();
    let tile = row
        .tiles
        .iter()
        .find(|t| t.metric.key() == first["metric"].as_str().unwrap())
        .unwrap();
    assert_eq!(first["value"].as_f64(), tile.value);
    // Sent with no body at all (`curl -X POST`): the default view; a bad period is a 400.
    let r = app
        .http
        .post(format!("{}/api/v1/digests", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = app
        .http
        .post(format!("{}/api/v1/digests", app.base))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = app
        .post_json("/api/v1/digests", &json!({"period": "2026-13"}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("period"));
}
