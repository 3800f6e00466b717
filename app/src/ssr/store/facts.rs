//! The facts: sites, order lines, the daily KPI roll-up and unit costs. This is the one
//! seam through which Opsight reads order data; nothing outside it does.
//!
//! KPI scoring is not done in SQL: the roll-up is computed in Rust with
//! [`crate::domain::kpi::score_line`], so there is one definition of OTIF.

use super::{placeholders, Conn, Ctx, Db, Exec, Result};
use crate::domain::evidence::LineFact;
use crate::domain::kpi::{score_line, KpiCounts, ScoringParams};
use crate::domain::materiality::CostBook;
use crate::domain::period::{fmt_date, parse_date, Week};
use chrono::NaiveDate;
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;

/// Rows per multi-row statement. Binding gets slower than linear in the number of
/// parameters (measured with seed-demo, 500k lines, release: 400 rows per INSERT wrote
/// 13k lines/s, 50 rows 61k lines/s, 20 rows 74k lines/s), so batches stay small.
const INSERT_BATCH: usize = 20;

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
pub async fn ensure_sites(conn: &mut Conn, codes: &[String]) -> Result<()> {
    for code in codes {
        sqlx::query(
            "INSERT INTO sites (code, name, region) VALUES ($1, $2, '') ON CONFLICT (code) DO NOTHING",
        )
        .bind(code.clone())
        .bind(code.clone())
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

/// Removes every order line, the roll-up, the sites and the insights about them (the
/// demo's `--reset`).
pub async fn clear(conn: &mut Conn) -> Result<()> {
    for (table, what) in [
        ("insights", "Failed to clear insights"),
        ("kpi_daily", "Failed to clear the roll-up"),
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

/// An order line as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderLine {
    pub order_id: String,
    pub line_no: i64,
    pub site: String,
    pub customer: String,
    pub carrier: String,
    pub sku: String,
    pub category: String,
    pub ordered_qty: i64,
    pub delivered_qty: i64,
    pub due_date: NaiveDate,
    pub delivered_date: Option<NaiveDate>,
    pub reason_code: Option<String>,
}

/// Inserts or updates order lines keyed by (order_id, line_no), in batches.
pub async fn upsert_lines(conn: &mut Conn, lines: &[OrderLine]) -> Result<()> {
    for chunk in lines.chunks(INSERT_BATCH) {
        let mut sql = String::from(
            "INSERT INTO order_lines (order_id, line_no, site, customer, carrier, sku, category, \
             ordered_qty, delivered_qty, due_date, delivered_date, reason_code) VALUES ",
        );
        sql.push_str(&placeholders(chunk.len(), 12, 1));
        sql.push_str(
            " ON CONFLICT (order_id, line_no) DO UPDATE SET site = excluded.site, \
             customer = excluded.customer, carrier = excluded.carrier, sku = excluded.sku, \
             category = excluded.category, ordered_qty = excluded.ordered_qty, \
             delivered_qty = excluded.delivered_qty, due_date = excluded.due_date, \
             delivered_date = excluded.delivered_date, reason_code = excluded.reason_code",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for l in chunk {
            q = q
                .bind(l.order_id.clone())
                .bind(l.line_no)
                .bind(l.site.clone())
                .bind(l.customer.clone())
                .bind(l.carrier.clone())
                .bind(l.sku.clone())
                .bind(l.category.clone())
                .bind(l.ordered_qty)
                .bind(l.delivered_qty)
                .bind(fmt_date(l.due_date))
                .bind(l.delivered_date.map(fmt_date))
                .bind(l.reason_code.clone());
        }
        q.execute(&mut *conn)
            .await
            .ctx("Failed to write order lines")?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SiteDue {
    site: String,
    due_date: String,
}

/// Existing (site, due date) of lines, so a re-import that moves a line's due date also
/// refreshes the roll-up of the day it left.
pub async fn due_dates_of(
    conn: &mut Conn,
    keys: &[(String, i64)],
) -> Result<Vec<(String, NaiveDate)>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(INSERT_BATCH) {
        let mut sql = String::from("SELECT site, due_date FROM order_lines WHERE ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(order_id = ${} AND line_no = ${})",
                2 * i + 1,
                2 * i + 2
            ));
        }
        let mut q = sqlx::query_as::<_, SiteDue>(AssertSqlSafe(sql));
        for (id, no) in chunk {
            q = q.bind(id.clone()).bind(*no);
        }
        for row in q
            .fetch_all(&mut *conn)
            .await
            .ctx("Failed to read existing lines")?
        {
            if let Some(d) = parse_date(&row.due_date) {
                out.push((row.site, d));
            }
        }
    }
    Ok(out)
}

#[derive(sqlx::FromRow)]
struct ScoredLine {
    due_date: String,
    ordered_qty: i64,
    delivered_qty: i64,
    delivered_date: Option<String>,
}

/// Recomputes `kpi_daily` for the given sites over [from, to] (inclusive), from the lines.
pub async fn rebuild_rollup(
    conn: &mut Conn,
    params: ScoringParams,
    sites: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<()> {
    for site in sites {
        let rows: Vec<ScoredLine> = sqlx::query_as(
            "SELECT due_date, ordered_qty, delivered_qty, delivered_date FROM order_lines \
             WHERE site = $1 AND due_date >= $2 AND due_date <= $3",
        )
        .bind(site.clone())
        .bind(fmt_date(from))
        .bind(fmt_date(to))
        .fetch_all(&mut *conn)
        .await
        .ctx("Failed to read lines for the roll-up")?;
        let mut days: BTreeMap<NaiveDate, KpiCounts> = BTreeMap::new();
        for r in &rows {
            let Some(due) = parse_date(&r.due_date) else {
                continue;
            };
            let score = score_line(
                params,
                r.ordered_qty,
                r.delivered_qty,
                due,
                r.delivered_date.as_deref().and_then(parse_date),
            );
            days.entry(due)
                .or_default()
                .add_line(score, r.ordered_qty, r.delivered_qty);
        }
        sqlx::query("DELETE FROM kpi_daily WHERE site = $1 AND day >= $2 AND day <= $3")
            .bind(site.clone())
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .execute(&mut *conn)
            .await
            .ctx("Failed to clear the roll-up")?;
        let days: Vec<_> = days.into_iter().collect();
        for chunk in days.chunks(INSERT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO kpi_daily (site, day, week_start, lines, otif_lines, on_time_lines, \
                 in_full_lines, units_ordered, units_delivered) VALUES ",
            );
            sql.push_str(&placeholders(chunk.len(), 9, 1));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (day, c) in chunk {
                q = q
                    .bind(site.clone())
                    .bind(fmt_date(*day))
                    .bind(fmt_date(Week::containing(*day).start))
                    .bind(c.lines)
                    .bind(c.otif_lines)
                    .bind(c.on_time_lines)
                    .bind(c.in_full_lines)
                    .bind(c.units_ordered)
                    .bind(c.units_delivered);
            }
            q.execute(&mut *conn)
                .await
                .ctx("Failed to write the roll-up")?;
        }
    }
    Ok(())
}

/// One roll-up row: a site, a period key (a day or a week's Monday) and its counts.
#[derive(sqlx::FromRow)]
struct CountsRow {
    site: String,
    period: String,
    lines: i64,
    otif_lines: i64,
    on_time_lines: i64,
    in_full_lines: i64,
    units_ordered: i64,
    units_delivered: i64,
}

impl CountsRow {
    fn counts(&self) -> KpiCounts {
        KpiCounts {
            lines: self.lines,
            otif_lines: self.otif_lines,
            on_time_lines: self.on_time_lines,
            in_full_lines: self.in_full_lines,
            units_ordered: self.units_ordered,
            units_delivered: self.units_delivered,
        }
    }
}

/// Weekly counts per site between two weeks (inclusive), summed by the database from the
/// roll-up; one site or all of them.
pub async fn weekly_counts<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: Week,
    to: Week,
) -> Result<Vec<(String, Week, KpiCounts)>> {
    let rows: Vec<CountsRow> = sqlx::query_as(
        "SELECT site, week_start AS period, CAST(SUM(lines) AS BIGINT) AS lines, \
         CAST(SUM(otif_lines) AS BIGINT) AS otif_lines, CAST(SUM(on_time_lines) AS BIGINT) AS on_time_lines, \
         CAST(SUM(in_full_lines) AS BIGINT) AS in_full_lines, CAST(SUM(units_ordered) AS BIGINT) AS units_ordered, \
         CAST(SUM(units_delivered) AS BIGINT) AS units_delivered \
         FROM kpi_daily WHERE week_start >= $1 AND week_start <= $2 AND ($3 = '' OR site = $3) \
         GROUP BY site, week_start",
    )
    .bind(fmt_date(from.start))
    .bind(fmt_date(to.start))
    .bind(site.unwrap_or_default().to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read the KPI roll-up")?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let week = Week::containing(parse_date(&r.period)?);
            Some((r.site.clone(), week, r.counts()))
        })
        .collect())
}

/// Daily counts per site between two days (inclusive), from the roll-up; one site or all.
pub async fn daily_counts<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, NaiveDate, KpiCounts)>> {
    let rows: Vec<CountsRow> = sqlx::query_as(
        "SELECT site, day AS period, lines, otif_lines, on_time_lines, in_full_lines, units_ordered, \
         units_delivered FROM kpi_daily WHERE day >= $1 AND day <= $2 AND ($3 = '' OR site = $3)",
    )
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(site.unwrap_or_default().to_string())
    .fetch_all(ex)
    .await
    .ctx("Failed to read the daily roll-up")?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.site.clone(), parse_date(&r.period)?, r.counts())))
        .collect())
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
        })
    }
}

/// Lines due in [from, to] for one site, or for the whole network when `site` is `None`.
pub async fn line_facts<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<LineFact>> {
    const COLS: &str = "site, customer, carrier, sku, category, ordered_qty, delivered_qty, due_date, delivered_date, reason_code";
    let rows: Vec<LineRow> = match site {
        Some(site) => {
            sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {COLS} FROM order_lines WHERE site = $1 AND due_date >= $2 AND due_date <= $3"
        )))
            .bind(site.to_string())
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .fetch_all(ex)
            .await
        }
        // Without the site condition, so the due-date index serves the scan.
        None => {
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {COLS} FROM order_lines WHERE due_date >= $1 AND due_date <= $2"
            )))
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .fetch_all(ex)
            .await
        }
    }
    .ctx("Failed to read order lines")?;
    Ok(rows.into_iter().filter_map(LineRow::into_fact).collect())
}

/// Latest delivered_date among lines due since `since` (a bounded scan on the due-date
/// index), no later than `as_of`.
pub async fn latest_data_date<'e>(
    ex: impl Exec<'e>,
    site: Option<&str>,
    since: NaiveDate,
    as_of: NaiveDate,
) -> Result<Option<NaiveDate>> {
    let latest: Option<String> = match site {
        Some(site) => sqlx::query_scalar(
            "SELECT MAX(delivered_date) FROM order_lines WHERE site = $1 AND due_date >= $2 AND delivered_date <= $3",
        )
        .bind(site.to_string())
        .bind(fmt_date(since))
        .bind(fmt_date(as_of))
        .fetch_one(ex)
        .await,
        None => sqlx::query_scalar(
            "SELECT MAX(delivered_date) FROM order_lines WHERE due_date >= $1 AND delivered_date <= $2",
        )
        .bind(fmt_date(since))
        .bind(fmt_date(as_of))
        .fetch_one(ex)
        .await,
    }
    .ctx("Failed to read the latest data date")?;
    Ok(latest.as_deref().and_then(parse_date))
}

#[derive(sqlx::FromRow)]
struct CostRow {
    kind: String,
    item: String,
    unit_cost: f64,
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
