//! The facts: sites, order lines, the metric store and unit costs. This is the one seam
//! through which Opsight reads order data; nothing outside it does.
//!
//! The metric store (`kpi_facts`) holds a [`Tally`] per site, due day and dimension member
//! (the site's total is dimension `''`). Lines are tallied in Rust
//! ([`Breakdown::add_line`]), so there is one definition of OTIF; the database only sums.
//! Every read a page or a pack makes is a sum over it: the network is a sum over sites, a
//! month a sum over days, never a rescan of lines.
//!
//! Writes: an import writes lines through its stage ([`super::staging`]) and
//! adds their tallies ([`add_tallies`]); days whose lines were corrected, and a change of
//! scoring rules or unit costs, re-tally from the lines ([`retally`], [`retally_all`]).
//! The one row of `kpi_store` says what the store was tallied with and versions it.

use super::{json_rows, Backend, Col, Conn, Ctx, Db, Exec, Result};
use crate::domain::catalogue::{Catalogue, MAX_KPIS};
use crate::domain::evidence::LineFact;
use crate::domain::kpi::{score_line, KpiCounts, LineScore, Metric, ScoringParams};
use crate::domain::materiality::CostBook;
use crate::domain::period::{fmt_date, parse_date, Week};
use crate::domain::question::{FailedLine, LineSample};
use crate::domain::tally::{Breakdown, Scorer, Tally, DELIVERED_ON};
use chrono::{Duration, NaiveDate};
use serde_json::{json, Value};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap};

/// Rows per bulk statement (sent as one JSON parameter).
pub const BULK_ROWS: usize = 2000;
/// Days of one site's lines read at a time when re-tallying (bounds memory).
const RETALLY_DAYS: i64 = 7;

/// A distribution centre.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Site {
    pub code: String,
    pub name: String,
    pub region: String,
}

pub async fn sites<'e>(ex: impl Exec<'e>) -> Result<Vec<Site>> {
    sqlx::query_as("SELECT code, name, region FROM sites ORDER BY code")
        .fetch_all(ex)
        .await
        .ctx("Failed to list sites")
}

pub async fn site<'e>(ex: impl Exec<'e>, code: &str) -> Result<Option<Site>> {
    sqlx::query_as("SELECT code, name, region FROM sites WHERE code = $1")
        .bind(code.to_string())
        .fetch_optional(ex)
        .await
        .ctx("Failed to read the site")
}

/// Creates these sites (named after their code) unless they exist.
/// Creates the sites not there yet (a site that exists keeps its name and region:
/// renames are the sites file's and the API's).
pub async fn ensure_sites(conn: &mut Conn, sites: &[Site]) -> Result<()> {
    for site in sites {
        sqlx::query(
            "INSERT INTO sites (code, name, region) VALUES ($1, $2, $3) ON CONFLICT (code) DO NOTHING",
        )
        .bind(site.code.clone())
        .bind(site.name.clone())
        .bind(site.region.clone())
        .execute(&mut *conn)
        .await
        .ctx("Failed to create a site")?;
    }
    Ok(())
}

/// Writes sites with their names and regions (insert or update).
pub async fn upsert_sites(conn: &mut Conn, sites: &[Site]) -> Result<()> {
    for s in sites {
        sqlx::query(
            "INSERT INTO sites (code, name, region) VALUES ($1, $2, $3) ON CONFLICT (code) \
             DO UPDATE SET name = excluded.name, region = excluded.region",
        )
        .bind(s.code.clone())
        .bind(s.name.clone())
        .bind(s.region.clone())
        .execute(&mut *conn)
        .await
        .ctx("Failed to write sites")?;
    }
    Ok(())
}

/// Removes every order line, the metric store, the sites and the insights about them (the
/// demo's `--reset`).
pub async fn clear(conn: &mut Conn) -> Result<()> {
    for (table, what) in [
        ("insights", "Failed to clear insights"),
        ("kpi_facts", "Failed to clear the metric store"),
        ("pushed_facts", "Failed to clear the pushed-down tallies"),
        ("order_lines", "Failed to clear order lines"),
        ("sites", "Failed to clear sites"),
    ] {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *conn)
            .await
            .ctx(what)?;
    }
    Ok(())
}

pub async fn count_lines<'e>(ex: impl Exec<'e>) -> Result<i64> {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM order_lines")
        .fetch_one(ex)
        .await
        .ctx("Failed to count order lines")
}

/// Totals that the lines and the metric store must agree on: lines, units ordered and
/// delivered, lines delivered. A difference means `order_lines` was written by something
/// other than Opsight's import (which keeps both in one transaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Totals {
    pub lines: i64,
    pub units_ordered: i64,
    pub units_delivered: i64,
    pub delivered_lines: i64,
}

/// [`Totals`] of the lines themselves (a scan of `order_lines`).
pub async fn line_totals<'e>(ex: impl Exec<'e>) -> Result<Totals> {
    sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) AS lines, \
         CAST(COALESCE(SUM(ordered_qty), 0) AS BIGINT) AS units_ordered, \
         CAST(COALESCE(SUM(delivered_qty), 0) AS BIGINT) AS units_delivered, \
         CAST(COUNT(delivered_date) AS BIGINT) AS delivered_lines FROM order_lines",
    )
    .fetch_one(ex)
    .await
    .ctx("Failed to total the order lines")
}

/// [`Totals`] of the metric store's lines: the network's total rows less the tallies
/// sources pushed down (which have no lines in `order_lines`).
pub async fn store_totals(conn: &mut Conn) -> Result<Totals> {
    const SUMS: &str = "CAST(COALESCE(SUM(lines), 0) AS BIGINT) AS lines, \
         CAST(COALESCE(SUM(units_ordered), 0) AS BIGINT) AS units_ordered, \
         CAST(COALESCE(SUM(units_delivered), 0) AS BIGINT) AS units_delivered, \
         CAST(COALESCE(SUM(lines - open_lines), 0) AS BIGINT) AS delivered_lines";
    let all: Totals = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SUMS} FROM kpi_facts WHERE site = $1 AND dimension = ''"
    )))
    .bind(ALL_SITES)
    .fetch_one(&mut *conn)
    .await
    .ctx("Failed to total the metric store")?;
    let pushed: Totals = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {SUMS} FROM pushed_facts WHERE dimension = ''"
    )))
    .fetch_one(&mut *conn)
    .await
    .ctx("Failed to total the pushed-down tallies")?;
    Ok(Totals {
        lines: all.lines - pushed.lines,
        units_ordered: all.units_ordered - pushed.units_ordered,
        units_delivered: all.units_delivered - pushed.units_delivered,
        delivered_lines: all.delivered_lines - pushed.delivered_lines,
    })
}

/// The sources holding pushed-down tallies, with their first day.
pub async fn pushed_sources<'e>(ex: impl Exec<'e>) -> Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT source, MIN(day) AS first_day FROM pushed_facts GROUP BY source ORDER BY source",
    )
    .fetch_all(ex)
    .await
    .ctx("Failed to read the pushed-down tallies' sources")
}

/// What the metric store was tallied with, and its version.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoreState {
    /// Fingerprint of the scoring rules and unit costs the tallies use.
    pub scoring: String,
    /// Moves on with every write to the store (read models are cached by it).
    pub data_version: i64,
}

/// Moves the store's version on and returns its state. The update takes the store's lock
/// (PostgreSQL's row lock, SQLite's write lock) until the caller's transaction ends, so
/// imports and re-scorings of the store never interleave.
pub async fn lock_store(conn: &mut Conn, now: &str) -> Result<StoreState> {
    sqlx::query(
        "UPDATE kpi_store SET data_version = data_version + 1, updated_at = $1 WHERE id = 1",
    )
    .bind(now.to_string())
    .execute(&mut *conn)
    .await
    .ctx("Failed to lock the metric store")?;
    store_state(&mut *conn).await
}

pub async fn store_state<'e>(ex: impl Exec<'e>) -> Result<StoreState> {
    sqlx::query_as("SELECT scoring, data_version FROM kpi_store WHERE id = 1")
        .fetch_one(ex)
        .await
        .ctx("Failed to read the metric store's state")
}

/// Records what the store is now tallied with.
pub async fn set_scoring(conn: &mut Conn, scoring: &str) -> Result<()> {
    sqlx::query("UPDATE kpi_store SET scoring = $1 WHERE id = 1")
        .bind(scoring.to_string())
        .execute(&mut *conn)
        .await
        .ctx("Failed to record the metric store's scoring")?;
    Ok(())
}

/// A tally's columns, in [`tally_values`]' order: ten counts, then each catalogue KPI's
/// numerator and denominator (`m0_num`, `m0_den`, …).
const TALLY_COLS: [&str; TALLY_WIDTH] = [
    "lines",
    "otif_lines",
    "on_time_lines",
    "in_full_lines",
    "units_ordered",
    "units_delivered",
    "open_lines",
    "unreasoned_failures",
    "failed_cost_cents",
    "uncosted_failures",
    "m0_num",
    "m0_den",
    "m1_num",
    "m1_den",
    "m2_num",
    "m2_den",
    "m3_num",
    "m3_den",
    "m4_num",
    "m4_den",
    "m5_num",
    "m5_den",
    "m6_num",
    "m6_den",
    "m7_num",
    "m7_den",
];
const TALLY_WIDTH: usize = 10 + 2 * MAX_KPIS;

fn tally_values(t: &Tally) -> [i64; TALLY_WIDTH] {
    let c = &t.counts;
    let mut out = [0; TALLY_WIDTH];
    out[..10].copy_from_slice(&[
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
    ]);
    for (i, [n, d]) in c.measures.iter().enumerate() {
        out[10 + 2 * i] = *n;
        out[11 + 2 * i] = *d;
    }
    out
}

/// The inverse of [`tally_values`].
fn tally_of(v: &[i64; TALLY_WIDTH]) -> Tally {
    let mut measures = [[0; 2]; MAX_KPIS];
    for (i, m) in measures.iter_mut().enumerate() {
        *m = [v[10 + 2 * i], v[11 + 2 * i]];
    }
    Tally {
        counts: KpiCounts {
            lines: v[0],
            otif_lines: v[1],
            on_time_lines: v[2],
            in_full_lines: v[3],
            units_ordered: v[4],
            units_delivered: v[5],
            measures,
        },
        open_lines: v[6],
        unreasoned_failures: v[7],
        failed_cost_cents: v[8],
        uncosted_failures: v[9],
    }
}

/// The store's site key for the whole network: every day's rows summed over the sites, so
/// a network read costs what one site's does. Never a site code (codes are letters,
/// digits, `-` and `_`).
pub const ALL_SITES: &str = "*";

/// Adds tallies per (site, due day) to the store, summing with what it holds: rows for
/// the total (dimension `''`) and for every member, for the site and for the network.
pub async fn add_tallies(
    conn: &mut Conn,
    days: &HashMap<(String, NaiveDate), Breakdown>,
) -> Result<()> {
    // The network's rows: one per key in a statement (PostgreSQL refuses to update a row
    // twice in one upsert), so the sites' days are merged here first.
    let mut network: HashMap<(String, NaiveDate), Breakdown> = HashMap::new();
    for ((_, day), b) in days {
        network
            .entry((ALL_SITES.to_string(), *day))
            .or_default()
            .merge(b);
    }
    write_tallies(conn, days).await?;
    write_tallies(conn, &network).await
}

/// Adds tallies to the rows of exactly the keys given (no network rows).
async fn write_tallies(
    conn: &mut Conn,
    days: &HashMap<(String, NaiveDate), Breakdown>,
) -> Result<()> {
    let backend = Backend::of_conn(conn);
    let mut cols: Vec<(&str, Col)> = vec![
        ("site", Col::Text),
        ("day", Col::Text),
        ("dimension", Col::Text),
        ("member", Col::Text),
    ];
    cols.extend(TALLY_COLS.iter().map(|c| (*c, Col::Int)));
    let names = cols.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let add = TALLY_COLS
        .iter()
        .map(|c| format!("{c} = kpi_facts.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO kpi_facts ({names}) {} ON CONFLICT (site, day, dimension, member) DO UPDATE SET {add}",
        json_rows(backend, &cols)
    );
    let mut rows: Vec<Value> = Vec::new();
    let mut keys: Vec<&(String, NaiveDate)> = days.keys().collect();
    keys.sort();
    for key in keys {
        let (site, day) = key;
        let b = &days[key];
        let day = fmt_date(*day);
        let row = |dim: &str, member: &str, t: &Tally| {
            let mut r = vec![json!(site), json!(day), json!(dim), json!(member)];
            r.extend(tally_values(t).iter().map(|v| json!(v)));
            Value::Array(r)
        };
        rows.push(row("", "", &b.total));
        for (dim, members) in &b.dimensions {
            for (member, t) in members {
                rows.push(row(dim, member, t));
            }
        }
        if rows.len() >= BULK_ROWS {
            write_rows(conn, &sql, std::mem::take(&mut rows)).await?;
        }
    }
    if !rows.is_empty() {
        write_rows(conn, &sql, rows).await?;
    }
    Ok(())
}

async fn write_rows(conn: &mut Conn, sql: &str, rows: Vec<Value>) -> Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_string()))
        .bind(Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await
        .ctx("Failed to write the metric store")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct LineRow {
    site: String,
    customer: String,
    carrier: String,
    sku: String,
    category: String,
    ordered_qty: i64,
    delivered_qty: i64,
    due_date: String,
    delivered_date: Option<String>,
    reason_code: Option<String>,
    attrs: Option<String>,
}

impl LineRow {
    fn into_fact(self) -> Option<LineFact> {
        Some(LineFact {
            due_date: parse_date(&self.due_date)?,
            delivered_date: self.delivered_date.as_deref().and_then(parse_date),
            site: self.site,
            customer: self.customer,
            carrier: self.carrier,
            sku: self.sku,
            category: self.category,
            ordered_qty: self.ordered_qty,
            delivered_qty: self.delivered_qty,
            reason_code: self.reason_code,
            attrs: super::staging::decode_attrs(self.attrs.as_deref()),
        })
    }
}

const FACT_COLS: &str = "site, customer, carrier, sku, category, ordered_qty, delivered_qty, \
                         due_date, delivered_date, reason_code, attrs";

/// One site's lines due in [from, to] (drill-through, re-tallying; bounded by the caller's
/// span).
pub async fn line_facts<'e>(
    ex: impl Exec<'e>,
    site: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<LineFact>> {
    let rows: Vec<LineRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {FACT_COLS} FROM order_lines WHERE site = $1 AND due_date >= $2 AND due_date <= $3"
    )))
    .bind(site.to_string())
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .fetch_all(ex)
    .await
    .ctx("Failed to read order lines")?;
    Ok(rows.into_iter().filter_map(LineRow::into_fact).collect())
}

/// Which lines to list: a site (or every site), the due days, a member, what failing means.
pub struct LineQuery<'a> {
    /// `None` for every site.
    pub site: Option<&'a str>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `(dimension, member)`: a line column, `reason`, or a catalogue dimension.
    pub filter: Option<(&'a str, &'a str)>,
    pub scoring: ScoringParams,
    /// `late`, `short` or `late and short` for a failing line (by the KPI), else `None`.
    pub fails: fn(LineScore) -> Option<&'static str>,
    pub limit: usize,
    /// Count every line and failing line of the scope (a whole scan); otherwise stop at
    /// the `limit`-th failing line and leave the counts to the caller (the metric store
    /// has them).
    pub count_all: bool,
}

#[derive(sqlx::FromRow)]
struct ListedRow {
    order_id: String,
    line_no: i64,
    #[sqlx(flatten)]
    line: LineRow,
}

/// The first `limit` failing lines of a query by due date, and (with `count_all`) how many
/// lines it covers and how many fail. Rows stream from the database, so memory stays
/// bounded whatever the period; without `count_all` the read stops at the last line shown.
pub async fn failing_lines(db: &Db, q: &LineQuery<'_>) -> Result<LineSample> {
    use futures::TryStreamExt;
    // Line columns are filtered in SQL; catalogue dimensions in the line's attributes.
    let column = q.filter.and_then(|(d, _)| match d {
        "carrier" | "customer" | "sku" | "category" => Some(d),
        "reason" => Some("reason_code"),
        _ => None,
    });
    let sql = format!(
        "SELECT order_id, line_no, {FACT_COLS} FROM order_lines \
         WHERE ($1 = '' OR site = $1) AND due_date >= $2 AND due_date <= $3{} \
         ORDER BY due_date, order_id, line_no",
        column.map(|c| format!(" AND {c} = $4")).unwrap_or_default()
    );
    let mut query = sqlx::query_as::<_, ListedRow>(AssertSqlSafe(sql))
        .bind(q.site.unwrap_or_default().to_string())
        .bind(fmt_date(q.from))
        .bind(fmt_date(q.to));
    if column.is_some() {
        query = query.bind(q.filter.map(|f| f.1).unwrap_or_default().to_string());
    }
    let mut rows = query.fetch(db);
    let mut sample = LineSample {
        filter: q.filter.map(|(d, m)| format!("{d} = {m}")),
        ..LineSample::default()
    };
    while let Some(row) = rows.try_next().await.ctx("Failed to read order lines")? {
        let (order_id, line_no) = (row.order_id, row.line_no);
        let Some(l) = row.line.into_fact() else {
            continue;
        };
        if let (None, Some((dimension, member))) = (column, q.filter) {
            if !l.attrs.iter().any(|(k, v)| k == dimension && v == member) {
                continue;
            }
        }
        sample.lines += 1;
        let score = score_line(
            q.scoring,
            l.ordered_qty,
            l.delivered_qty,
            l.due_date,
            l.delivered_date,
        );
        let Some(failure) = (q.fails)(score) else {
            continue;
        };
        sample.failing += 1;
        if sample.shown.len() < q.limit {
            sample.shown.push(FailedLine {
                order_id,
                line_no,
                site: l.site,
                customer: l.customer,
                carrier: l.carrier,
                sku: l.sku,
                category: l.category,
                due_date: fmt_date(l.due_date),
                delivered_date: l.delivered_date.map(fmt_date),
                ordered_qty: l.ordered_qty,
                delivered_qty: l.delivered_qty,
                reason_code: l.reason_code,
                failure: failure.to_string(),
            });
        }
        if !q.count_all && sample.shown.len() >= q.limit {
            break;
        }
    }
    Ok(sample)
}

/// Rebuilds one site's tallies for the days in [from, to] from its lines, under these
/// rules and costs, and the network's rows of those days.
pub async fn retally(
    conn: &mut Conn,
    site: &str,
    from: NaiveDate,
    to: NaiveDate,
    scorer: &Scorer,
) -> Result<()> {
    retally_site(conn, site, from, to, scorer).await?;
    add_pushed(conn, Some(site), from, to).await?;
    renetwork(conn, from, to).await
}

/// Recomputes the network's rows for the days in [from, to] as the sum of the sites'.
async fn renetwork(conn: &mut Conn, from: NaiveDate, to: NaiveDate) -> Result<()> {
    sqlx::query("DELETE FROM kpi_facts WHERE site = $1 AND day >= $2 AND day <= $3")
        .bind(ALL_SITES)
        .bind(fmt_date(from))
        .bind(fmt_date(to))
        .execute(&mut *conn)
        .await
        .ctx("Failed to clear the network's tallies")?;
    let cols = TALLY_COLS.join(", ");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO kpi_facts (site, day, dimension, member, {cols}) \
         SELECT $1, day, dimension, member, {} FROM kpi_facts \
         WHERE site <> $1 AND day >= $2 AND day <= $3 GROUP BY day, dimension, member",
        sums()
    )))
    .bind(ALL_SITES)
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .execute(&mut *conn)
    .await
    .ctx("Failed to sum the network's tallies")?;
    Ok(())
}

/// One site's tallies for [from, to], rebuilt from its lines: deleted, then a week of
/// lines read and tallied at a time (bounded memory).
async fn retally_site(
    conn: &mut Conn,
    site: &str,
    from: NaiveDate,
    to: NaiveDate,
    scorer: &Scorer,
) -> Result<()> {
    sqlx::query("DELETE FROM kpi_facts WHERE site = $1 AND day >= $2 AND day <= $3")
        .bind(site.to_string())
        .bind(fmt_date(from))
        .bind(fmt_date(to))
        .execute(&mut *conn)
        .await
        .ctx("Failed to clear the metric store")?;
    let mut start = Some(from);
    while let Some(first) = start.filter(|d| *d <= to) {
        let end = (first + Duration::days(RETALLY_DAYS - 1)).min(to);
        let mut days: HashMap<(String, NaiveDate), Breakdown> = HashMap::new();
        for line in line_facts(&mut *conn, site, first, end).await? {
            days.entry((line.site.clone(), line.due_date))
                .or_default()
                .add_stored_line(&line, scorer);
        }
        write_tallies(conn, &days).await?;
        // Skip the days without lines: a stray date years away costs one lookup, not a
        // walk through every week in between.
        start = if end >= to {
            None
        } else {
            next_line_day(&mut *conn, site, end, to).await?
        };
    }
    Ok(())
}

/// The first day after `after`, up to `to`, on which the site has a line due.
async fn next_line_day(
    conn: &mut Conn,
    site: &str,
    after: NaiveDate,
    to: NaiveDate,
) -> Result<Option<NaiveDate>> {
    let day: Option<String> = sqlx::query_scalar(
        "SELECT MIN(due_date) FROM order_lines WHERE site = $1 AND due_date > $2 AND due_date <= $3",
    )
    .bind(site.to_string())
    .bind(fmt_date(after))
    .bind(fmt_date(to))
    .fetch_one(&mut *conn)
    .await
    .ctx("Failed to read order lines")?;
    Ok(day.as_deref().and_then(parse_date))
}

#[derive(sqlx::FromRow)]
struct SpanRow {
    site: String,
    first_day: Option<String>,
    last_day: Option<String>,
}

/// Re-tallies the whole store from the lines (a change of scoring rules or unit costs).
pub async fn retally_all(conn: &mut Conn, scorer: &Scorer) -> Result<()> {
    sqlx::query("DELETE FROM kpi_facts")
        .execute(&mut *conn)
        .await
        .ctx("Failed to clear the metric store")?;
    let spans: Vec<SpanRow> = sqlx::query_as(
        "SELECT site, MIN(due_date) AS first_day, MAX(due_date) AS last_day FROM order_lines GROUP BY site",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read the lines' spans")?;
    let mut span: Option<(NaiveDate, NaiveDate)> = None;
    for s in spans {
        let (Some(from), Some(to)) = (
            s.first_day.as_deref().and_then(parse_date),
            s.last_day.as_deref().and_then(parse_date),
        ) else {
            continue;
        };
        retally_site(conn, &s.site, from, to, scorer).await?;
        span = Some(span.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
    }
    // Pushed-down tallies come back as they are (their source re-reads them at its next
    // sync when they were scored otherwise).
    let pushed: SpanRow = sqlx::query_as(
        "SELECT '' AS site, MIN(day) AS first_day, MAX(day) AS last_day FROM pushed_facts",
    )
    .fetch_one(&mut *conn)
    .await
    .ctx("Failed to read the pushed-down tallies' span")?;
    if let (Some(from), Some(to)) = (
        pushed.first_day.as_deref().and_then(parse_date),
        pushed.last_day.as_deref().and_then(parse_date),
    ) {
        add_pushed(conn, None, from, to).await?;
        span = Some(span.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
    }
    match span {
        Some((from, to)) => renetwork(conn, from, to).await,
        None => Ok(()),
    }
}

/// One day-level tally a source computed itself (push-down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedRow {
    pub site: String,
    pub day: NaiveDate,
    /// `''` for the site's total.
    pub dimension: String,
    pub member: String,
    pub tally: Tally,
}

/// Adds the pushed-down tallies of one site (or every site) for the days in [from, to]
/// to the store's site rows (not the network's: the caller sums those).
async fn add_pushed(
    conn: &mut Conn,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<()> {
    let cols = TALLY_COLS.join(", ");
    let add = TALLY_COLS
        .iter()
        .map(|c| format!("{c} = kpi_facts.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sums = TALLY_COLS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ");
    // `WHERE true` before the upsert clause: SQLite's parser needs it after a SELECT.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO kpi_facts (site, day, dimension, member, {cols}) \
         SELECT site, day, dimension, member, {sums} FROM pushed_facts \
         WHERE ($1 IS NULL OR site = $1) AND day >= $2 AND day <= $3 AND true \
         GROUP BY site, day, dimension, member \
         ON CONFLICT (site, day, dimension, member) DO UPDATE SET {add}"
    )))
    .bind(site.map(str::to_string))
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .execute(&mut *conn)
    .await
    .ctx("Failed to add the pushed-down tallies")?;
    Ok(())
}

/// Moves the catalogue KPIs' counts sources returned to new slots: slot `i` takes what
/// slot `from[i]` held (nothing when `None`), in one statement (every right-hand side
/// reads the row as it was). The caller re-tallies the store from them.
pub async fn move_pushed_measures(conn: &mut Conn, from: &[Option<usize>]) -> Result<()> {
    let set: Vec<String> = (0..MAX_KPIS)
        .flat_map(|i| {
            let old = from.get(i).copied().flatten().filter(|o| *o < MAX_KPIS);
            ["num", "den"].map(|part| match old {
                Some(o) => format!("m{i}_{part} = m{o}_{part}"),
                None => format!("m{i}_{part} = 0"),
            })
        })
        .collect();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE pushed_facts SET {}",
        set.join(", ")
    )))
    .execute(&mut *conn)
    .await
    .ctx("Failed to move the sources' KPI counts")?;
    Ok(())
}

/// The first day a source's pushed-down tallies were scored otherwise than `scoring`
/// (its next sync reads from there), if any.
pub async fn pushed_rescore_from<'e>(
    ex: impl Exec<'e>,
    source: &str,
    scoring: &str,
) -> Result<Option<NaiveDate>> {
    let day: Option<String> =
        sqlx::query_scalar("SELECT MIN(day) FROM pushed_facts WHERE source = $1 AND scoring <> $2")
            .bind(source.to_string())
            .bind(scoring.to_string())
            .fetch_one(ex)
            .await
            .ctx("Failed to read the pushed-down tallies")?;
    Ok(day.as_deref().and_then(parse_date))
}

/// Replaces a source's pushed-down tallies from `from` on with `rows`, in the caller's
/// transaction (which holds the store's lock): the old ones are taken out of the store
/// (site and network rows), the new ones put in.
pub async fn replace_pushed(
    conn: &mut Conn,
    source: &str,
    from: NaiveDate,
    rows: &[PushedRow],
    scoring: &str,
) -> Result<()> {
    let old: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT site, day, dimension, member, {} FROM pushed_facts WHERE source = $1 AND day >= $2",
        TALLY_COLS.join(", ")
    )))
    .bind(source.to_string())
    .bind(fmt_date(from))
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read the pushed-down tallies")?;
    let mut taken: HashMap<(String, NaiveDate), Breakdown> = HashMap::new();
    for r in &old {
        let Some(day) = parse_date(&r.day) else {
            continue;
        };
        let b = taken.entry((r.site.clone(), day)).or_default();
        let t = r.tally().negated();
        if r.dimension.is_empty() {
            b.total.add(&t);
        } else {
            b.add(&r.dimension, &r.member, &t);
        }
    }
    add_tallies(conn, &taken).await?;
    // Rows left at zero are members nothing counts any more (every column: a catalogue
    // KPI's counts from a source have no lines).
    let empty = TALLY_COLS
        .iter()
        .map(|c| format!("{c} = 0"))
        .collect::<Vec<_>>()
        .join(" AND ");
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM kpi_facts WHERE day >= $1 AND {empty}"
    )))
    .bind(fmt_date(from))
    .execute(&mut *conn)
    .await
    .ctx("Failed to clear emptied tallies")?;
    sqlx::query("DELETE FROM pushed_facts WHERE source = $1 AND day >= $2")
        .bind(source.to_string())
        .bind(fmt_date(from))
        .execute(&mut *conn)
        .await
        .ctx("Failed to clear the pushed-down tallies")?;
    let backend = Backend::of_conn(conn);
    let mut cols: Vec<(&str, Col)> = vec![
        ("source", Col::Text),
        ("site", Col::Text),
        ("day", Col::Text),
        ("dimension", Col::Text),
        ("member", Col::Text),
    ];
    cols.extend(TALLY_COLS.iter().map(|c| (*c, Col::Int)));
    cols.push(("scoring", Col::Text));
    let names = cols.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "INSERT INTO pushed_facts ({names}) {}",
        json_rows(backend, &cols)
    );
    let mut added: HashMap<(String, NaiveDate), Breakdown> = HashMap::new();
    for chunk in rows.chunks(BULK_ROWS) {
        let values: Vec<Value> = chunk
            .iter()
            .map(|r| {
                let mut v = vec![
                    json!(source),
                    json!(r.site),
                    json!(fmt_date(r.day)),
                    json!(r.dimension),
                    json!(r.member),
                ];
                v.extend(tally_values(&r.tally).iter().map(|x| json!(x)));
                v.push(json!(scoring));
                Value::Array(v)
            })
            .collect();
        write_rows(conn, &sql, values).await?;
        for r in chunk {
            let b = added.entry((r.site.clone(), r.day)).or_default();
            if r.dimension.is_empty() {
                b.total.add(&r.tally);
            } else {
                b.add(&r.dimension, &r.member, &r.tally);
            }
        }
        if added.len() > 2_000 {
            add_tallies(conn, &std::mem::take(&mut added)).await?;
        }
    }
    add_tallies(conn, &added).await
}

/// One summed row of the store.
struct TallyRow {
    site: String,
    day: String,
    dimension: String,
    member: String,
    values: [i64; TALLY_WIDTH],
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for TallyRow {
    fn from_row(row: &'r sqlx::any::AnyRow) -> std::result::Result<Self, sqlx::Error> {
        use sqlx::Row;
        let mut values = [0; TALLY_WIDTH];
        for (v, c) in values.iter_mut().zip(TALLY_COLS) {
            *v = row.try_get(c)?;
        }
        Ok(TallyRow {
            site: row.try_get("site")?,
            day: row.try_get("day")?,
            dimension: row.try_get("dimension")?,
            member: row.try_get("member")?,
            values,
        })
    }
}

impl TallyRow {
    fn tally(&self) -> Tally {
        tally_of(&self.values)
    }
}

/// The condition on `$3` selecting one site's rows, or every site's (not the network's).
fn each_site(site: Option<&str>) -> &'static str {
    match site {
        Some(_) => "site = $3",
        None => "site <> $3",
    }
}

/// The key a scope's own rows are stored under: a site's code, or the network's.
fn key(site: Option<&str>) -> String {
    site.unwrap_or(ALL_SITES).to_string()
}

/// `CAST(SUM(c) AS BIGINT) AS c` for every tally column.
fn sums() -> String {
    TALLY_COLS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of one site, or of the network (`None`), due in [from, to], summed from the
/// store: the total, each member of each dimension and, for the network, each site's
/// total as the `site` dimension.
pub async fn breakdown(
    db: &Db,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Breakdown> {
    let rows: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT '' AS site, '' AS day, dimension, member, {} FROM kpi_facts \
         WHERE site = $3 AND day >= $1 AND day <= $2 AND dimension <> $4 \
         GROUP BY dimension, member",
        sums()
    )))
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(key(site))
    .bind(DELIVERED_ON)
    .fetch_all(db)
    .await
    .ctx("Failed to read the metric store")?;
    let mut b = Breakdown::default();
    for r in &rows {
        if r.dimension.is_empty() {
            b.total = r.tally();
        } else {
            b.add(&r.dimension, &r.member, &r.tally());
        }
    }
    if site.is_none() {
        for (site, _, t) in totals(db, None, from, to, true).await? {
            b.add("site", &site, &t);
        }
    }
    Ok(b)
}

/// The lines of one member of a dimension, at one site or the network (`None`), due in
/// [from, to]: their total only (the store keeps no split of a member by another
/// dimension).
pub async fn member_breakdown(
    db: &Db,
    site: Option<&str>,
    (dimension, member): (&str, &str),
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Breakdown> {
    let rows: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT '' AS site, '' AS day, '' AS dimension, '' AS member, {} FROM kpi_facts \
         WHERE site = $3 AND day >= $1 AND day <= $2 AND dimension = $4 AND member = $5 \
         GROUP BY member",
        sums()
    )))
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(key(site))
    .bind(dimension.to_string())
    .bind(member.to_string())
    .fetch_all(db)
    .await
    .ctx("Failed to read the metric store")?;
    let mut b = Breakdown::default();
    for r in &rows {
        b.total.add(&r.tally());
    }
    Ok(b)
}

/// One member's total per day in [from, to], at one site or the network.
pub async fn member_day_totals<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    (dimension, member): (&str, &str),
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, Tally)>> {
    let rows: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT site, day, dimension, member, {} FROM kpi_facts \
         WHERE site = $3 AND day >= $1 AND day <= $2 AND dimension = $4 AND member = $5",
        TALLY_COLS.join(", ")
    )))
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(key(site))
    .bind(dimension.to_string())
    .bind(member.to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read the metric store")?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((parse_date(&r.day)?, r.tally())))
        .collect())
}

/// Site totals in [from, to], one site or every site (not the network's own rows): per
/// site and day, or (`by_site`) per site over the span.
async fn totals<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
    by_site: bool,
) -> Result<Vec<(String, Option<NaiveDate>, Tally)>> {
    let sql = if by_site {
        format!(
            "SELECT site, '' AS day, '' AS dimension, '' AS member, {} FROM kpi_facts \
             WHERE day >= $1 AND day <= $2 AND {} AND dimension = '' GROUP BY site",
            sums(),
            each_site(site)
        )
    } else {
        format!(
            "SELECT site, day, dimension, member, {} FROM kpi_facts \
             WHERE day >= $1 AND day <= $2 AND {} AND dimension = ''",
            TALLY_COLS.join(", "),
            each_site(site)
        )
    };
    let rows: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(fmt_date(from))
        .bind(fmt_date(to))
        .bind(key(site))
        .fetch_all(ex)
        .await
        .ctx("Failed to read the metric store")?;
    Ok(rows
        .iter()
        .map(|r| (r.site.clone(), parse_date(&r.day), r.tally()))
        .collect())
}

/// The scope's total per day in [from, to]: one site's, or the network's own rows.
pub async fn day_totals<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, Tally)>> {
    let rows: Vec<TallyRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT site, day, dimension, member, {} FROM kpi_facts \
         WHERE site = $3 AND day >= $1 AND day <= $2 AND dimension = ''",
        TALLY_COLS.join(", ")
    )))
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(key(site))
    .fetch_all(ex)
    .await
    .ctx("Failed to read the metric store")?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((parse_date(&r.day)?, r.tally())))
        .collect())
}

/// Daily counts per site between two days (inclusive); one site or all.
pub async fn daily_counts<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate, KpiCounts)>> {
    Ok(totals(ex, site, from, to, false)
        .await?
        .into_iter()
        .filter_map(|(s, d, t)| Some((s, d?, t.counts)))
        .collect())
}

/// Weekly counts per site between two weeks (inclusive); one site or all.
pub async fn weekly_counts<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: Week,
    to: Week,
) -> Result<Vec<(String, Week, KpiCounts)>> {
    let mut weeks: BTreeMap<(String, Week), KpiCounts> = BTreeMap::new();
    for (s, day, c) in daily_counts(ex, site, from.start, to.end()).await? {
        weeks.entry((s, Week::containing(day))).or_default().add(&c);
    }
    Ok(weeks.into_iter().map(|((s, w), c)| (s, w, c)).collect())
}

/// Latest delivery date, no later than `as_of`, among lines due since `since`.
pub async fn latest_data_date<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    since: NaiveDate,
    as_of: NaiveDate,
) -> Result<Option<NaiveDate>> {
    let latest: Option<String> = sqlx::query_scalar(
        "SELECT MAX(member) FROM kpi_facts WHERE site = $4 AND day >= $2 AND dimension = $1 \
         AND member <= $3",
    )
    .bind(DELIVERED_ON)
    .bind(fmt_date(since))
    .bind(fmt_date(as_of))
    .bind(key(site))
    .fetch_one(ex)
    .await
    .ctx("Failed to read the latest data date")?;
    Ok(latest.as_deref().and_then(parse_date))
}

#[derive(sqlx::FromRow)]
struct CostRow {
    kind: String,
    item: String,
    unit_cost: f64,
}

/// The catalogue the store was tallied with (none when it never had one).
pub async fn catalogue<'e>(ex: impl Exec<'e>) -> Result<Catalogue> {
    let text: String = sqlx::query_scalar("SELECT catalogue FROM kpi_store WHERE id = 1")
        .fetch_one(ex)
        .await
        .ctx("Failed to read the catalogue")?;
    if text.trim().is_empty() {
        return Ok(Catalogue::default());
    }
    serde_json::from_str(&text).map_err(|e| super::StoreError::Corrupt {
        what: "The stored catalogue is not valid",
        detail: e.to_string(),
    })
}

/// The KPIs in force: Opsight's own, then the catalogue's (those registered in this
/// process, which [`crate::ssr::data::catalogue::install`] does at start-up).
pub async fn metrics<'e>(ex: impl Exec<'e>) -> Result<Vec<Metric>> {
    let catalogue = catalogue(ex).await?;
    // The store's catalogue is the truth: another process (a command with another sources
    // file) may have changed it since this one registered its KPIs.
    catalogue.register();
    Ok(Metric::BUILT_IN
        .into_iter()
        .chain(catalogue.kpis.iter().filter_map(|k| Metric::parse(&k.key)))
        .collect())
}

/// Records the catalogue (its fingerprint changes with it: the caller re-tallies).
pub async fn set_catalogue(conn: &mut Conn, catalogue: &Catalogue) -> Result<()> {
    sqlx::query("UPDATE kpi_store SET catalogue = $1 WHERE id = 1")
        .bind(if catalogue.is_empty() {
            String::new()
        } else {
            serde_json::to_string(catalogue).unwrap_or_default()
        })
        .execute(&mut *conn)
        .await
        .ctx("Failed to record the catalogue")?;
    Ok(())
}

/// What lines are tallied with now: the scoring rules in force, the unit costs and the
/// catalogue.
pub async fn scorer(conn: &mut Conn) -> Result<Scorer> {
    let rules = super::rules::load_on(&mut *conn).await?;
    let costs = cost_book(&mut *conn).await?;
    let catalogue = catalogue(&mut *conn).await?;
    catalogue.register();
    Ok(Scorer::with_catalogue(rules.scoring(), costs, &catalogue))
}

/// Unit costs: per SKU, and per category as the fallback.
pub async fn cost_book<'e>(ex: impl Exec<'e>) -> Result<CostBook> {
    let rows: Vec<CostRow> = sqlx::query_as("SELECT kind, item, unit_cost FROM unit_costs")
        .fetch_all(ex)
        .await
        .ctx("Failed to read unit costs")?;
    let mut book = CostBook::default();
    for r in rows {
        match r.kind.as_str() {
            "sku" => book.by_sku.insert(r.item, r.unit_cost),
            _ => book.by_category.insert(r.item, r.unit_cost),
        };
    }
    Ok(book)
}

/// Whether a unit cost is for a SKU or (the fallback) a whole category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostKey {
    Sku,
    Category,
}

/// Stores unit costs (insert or replace) on `conn` (the caller's transaction).
pub async fn upsert_costs(
    conn: &mut Conn,
    costs: &[(CostKey, String, f64)],
    updated_at: &str,
) -> Result<()> {
    for (kind, item, cost) in costs {
        sqlx::query(
            "INSERT INTO unit_costs (kind, item, unit_cost, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, item) DO UPDATE SET unit_cost = excluded.unit_cost, updated_at = excluded.updated_at",
        )
        .bind(match kind {
            CostKey::Sku => "sku",
            CostKey::Category => "category",
        })
        .bind(item.clone())
        .bind(*cost)
        .bind(updated_at.to_string())
        .execute(&mut *conn)
        .await
        .ctx("Failed to store unit costs")?;
    }
    Ok(())
}

/// Every site code, for checks against user input (targets, scopes).
pub async fn site_codes(db: &Db) -> Result<Vec<String>> {
    Ok(sites(db).await?.into_iter().map(|s| s.code).collect())
}
