//! Database access: one `AnyPool` over SQLite (embedded default) or PostgreSQL (shared by
//! several replicas).
//! SQL here is portable: `$n` placeholders, text dates, integer flags, and sums cast to
//! BIGINT (PostgreSQL widens `SUM(bigint)` to numeric, which `Any` cannot decode).
//! KPI scoring is not done in SQL: the roll-up is computed in Rust with
//! [`crate::domain::kpi::score_line`], so there is one definition of OTIF.

use crate::domain::evidence::LineFact;
use crate::domain::kpi::{score_line, KpiCounts, Metric, ScoringParams};
use crate::domain::period::{fmt_date, parse_date, Week};
use crate::domain::rules::{Condition, Playbook, RuleEntry, Rules, Target, Trigger};
use crate::dto::{
    ConversationView, FeedbackView, InsightView, Lineage, MetricDefinition, TurnView,
};
use anyhow::Context;
use chrono::NaiveDate;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use std::collections::BTreeMap;
use std::time::Duration;

pub type Db = AnyPool;

/// Rows per multi-row statement. Binding gets slower than linear in the number of
/// parameters (measured with seed-demo, 500k lines, release: 400 rows per INSERT wrote
/// 13k lines/s, 50 rows 61k lines/s, 20 rows 74k lines/s), so batches stay small.
const INSERT_BATCH: usize = 20;

/// `($1,$2,..),($n+1,..)`: placeholders for a multi-row VALUES clause.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects, creating a SQLite file (and its folder) when missing, and applies migrations.
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    let mut url = url.to_string();
    if is_sqlite && !url.contains(":memory:") {
        let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("Failed to create the database folder {}", dir.display())
            })?;
        }
        if !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
    }
    let memory = url.contains(":memory:");
    let pool = AnyPoolOptions::new()
        // An in-memory SQLite database exists per connection: keep exactly one.
        .max_connections(if memory { 1 } else if is_sqlite { 8 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    // WAL lets readers run while an import writes; busy_timeout waits for locks.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .context("Failed to connect to the database (check DATABASE_URL)")?;
    migrate(&pool).await?;
    Ok(pool)
}

/// True when the pool talks to PostgreSQL. The only statements that differ by backend
/// are job claims (`FOR UPDATE SKIP LOCKED` has no SQLite equivalent, and needs none: SQLite
/// has one writer at a time).
pub fn is_postgres(db: &Db) -> bool {
    db.connect_options()
        .database_url
        .scheme()
        .starts_with("postgres")
}

/// Migrations this build expects that the database has not applied successfully (empty:
/// the schema is current). For readiness checks: a replica of a newer build waits until
/// its migrations are in.
pub async fn pending_migrations(pool: &Db) -> anyhow::Result<Vec<String>> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(pool)
            .await
            .context("Failed to read the applied migrations")?;
    Ok(sqlx::migrate!("../migrations")
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}

pub async fn migrate(pool: &Db) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("Failed to apply database migrations")
}

#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    pub code: String,
    pub name: String,
    pub region: String,
}

pub async fn sites(db: &Db) -> anyhow::Result<Vec<Site>> {
    let rows = sqlx::query("SELECT code, name, region FROM sites ORDER BY code")
        .fetch_all(db)
        .await
        .context("Failed to list sites")?;
    rows.iter()
        .map(|r| {
            Ok(Site {
                code: r.try_get(0)?,
                name: r.try_get(1)?,
                region: r.try_get(2)?,
            })
        })
        .collect()
}

pub async fn count_lines(db: &Db) -> anyhow::Result<i64> {
    let n: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM order_lines")
        .fetch_one(db)
        .await
        .context("Failed to count order lines")?;
    Ok(n)
}

/// The full rule book, disabled rows included (lookups skip them; agents get
/// [`Rules::in_force`]), with targets converted to display units (percent for ratios).
pub async fn rules(db: &Db) -> anyhow::Result<Rules> {
    let version: String =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'rules_version'")
            .fetch_one(db)
            .await
            .context("Failed to read the rules version")?;
    let entries = sqlx::query(
        "SELECT rule_key, kind, metric, value, description, enabled FROM business_rules \
         ORDER BY kind, rule_key",
    )
    .fetch_all(db)
    .await
    .context("Failed to read business rules")?
    .iter()
    .map(|r| {
        Ok(RuleEntry {
            key: r.try_get(0)?,
            kind: r.try_get(1)?,
            metric: r.try_get(2)?,
            value: r.try_get(3)?,
            description: r.try_get(4)?,
            enabled: r.try_get::<i64, _>(5)? != 0,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let targets =
        sqlx::query("SELECT metric, site, target, enabled FROM targets ORDER BY metric, site")
            .fetch_all(db)
            .await
            .context("Failed to read targets")?
            .iter()
            .map(|r| {
                let metric: String = r.try_get(0)?;
                let raw: f64 = r.try_get(2)?;
                Ok(Target {
                    site: r.try_get(1)?,
                    target: display_target(&metric, raw),
                    metric,
                    enabled: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let triggers = sqlx::query(
        "SELECT trigger_key, metric, condition, value, periods, description, enabled \
         FROM triggers ORDER BY metric, trigger_key",
    )
    .fetch_all(db)
    .await
    .context("Failed to read triggers")?
    .iter()
    .map(|r| {
        let condition: String = r.try_get(2)?;
        Ok(Trigger {
            key: r.try_get(0)?,
            metric: r.try_get(1)?,
            // Only the editor writes this column, and it validates; an unknown value from
            // a newer Opsight is read as the safest condition rather than failing the page.
            condition: Condition::parse(&condition).unwrap_or(Condition::Drop),
            value: r.try_get(3)?,
            periods: r.try_get::<i64, _>(4)?.clamp(1, 52) as u32,
            description: r.try_get(5)?,
            enabled: r.try_get::<i64, _>(6)? != 0,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let playbooks = sqlx::query(
        "SELECT playbook_key, cause, action, owner, priority, enabled FROM playbooks \
         ORDER BY playbook_key",
    )
    .fetch_all(db)
    .await
    .context("Failed to read playbooks")?
    .iter()
    .map(|r| {
        Ok(Playbook {
            key: r.try_get(0)?,
            cause: r.try_get(1)?,
            action: r.try_get(2)?,
            owner: r.try_get(3)?,
            priority: r.try_get(4)?,
            enabled: r.try_get::<i64, _>(5)? != 0,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Rules {
        version: version.trim().parse().unwrap_or(1),
        entries,
        targets,
        triggers,
        playbooks,
    })
}

/// Targets are stored as ratios (0..1) for ratio metrics and shown in percent.
fn display_target(metric: &str, stored: f64) -> f64 {
    if Metric::parse(metric).is_none_or(Metric::is_ratio) {
        stored * 100.0
    } else {
        stored
    }
}

/// The inverse of [`display_target`].
pub fn stored_target(metric: &str, display: f64) -> f64 {
    if Metric::parse(metric).is_none_or(Metric::is_ratio) {
        display / 100.0
    } else {
        display
    }
}

pub async fn metric_definitions(db: &Db) -> anyhow::Result<Vec<MetricDefinition>> {
    let rows = sqlx::query(
        "SELECT metric, name, definition, unit FROM metric_definitions ORDER BY sort_order",
    )
    .fetch_all(db)
    .await
    .context("Failed to read metric definitions")?;
    rows.iter()
        .map(|r| {
            Ok(MetricDefinition {
                metric: r.try_get(0)?,
                name: r.try_get(1)?,
                definition: r.try_get(2)?,
                unit: r.try_get(3)?,
            })
        })
        .collect()
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
pub async fn upsert_lines(
    conn: &mut sqlx::AnyConnection,
    lines: &[OrderLine],
) -> anyhow::Result<()> {
    for chunk in lines.chunks(INSERT_BATCH) {
        let mut sql = String::from(
            "INSERT INTO order_lines (order_id, line_no, site, customer, carrier, sku, category, \
             ordered_qty, delivered_qty, due_date, delivered_date, reason_code) VALUES ",
        );
        sql.push_str(&placeholders(chunk.len(), 12));
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
            .context("Failed to write order lines")?;
    }
    Ok(())
}

/// Existing due dates of lines, so a re-import that moves a line's due date also
/// refreshes the roll-up of the day it left.
pub async fn due_dates_of(
    conn: &mut sqlx::AnyConnection,
    keys: &[(String, i64)],
) -> anyhow::Result<Vec<(String, NaiveDate)>> {
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
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, no) in chunk {
            q = q.bind(id.clone()).bind(*no);
        }
        for row in q
            .fetch_all(&mut *conn)
            .await
            .context("Failed to read existing lines")?
        {
            let site: String = row.try_get(0)?;
            let due: String = row.try_get(1)?;
            if let Some(d) = parse_date(&due) {
                out.push((site, d));
            }
        }
    }
    Ok(out)
}

/// Recomputes `kpi_daily` for the given sites over [from, to] (inclusive), from the lines.
pub async fn rebuild_rollup(
    conn: &mut sqlx::AnyConnection,
    params: ScoringParams,
    sites: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<()> {
    for site in sites {
        let rows = sqlx::query(
            "SELECT due_date, ordered_qty, delivered_qty, delivered_date FROM order_lines \
             WHERE site = $1 AND due_date >= $2 AND due_date <= $3",
        )
        .bind(site.clone())
        .bind(fmt_date(from))
        .bind(fmt_date(to))
        .fetch_all(&mut *conn)
        .await
        .context("Failed to read lines for the roll-up")?;
        let mut days: BTreeMap<NaiveDate, KpiCounts> = BTreeMap::new();
        for r in &rows {
            let due: String = r.try_get(0)?;
            let Some(due) = parse_date(&due) else {
                continue;
            };
            let ordered: i64 = r.try_get(1)?;
            let delivered: i64 = r.try_get(2)?;
            let delivered_date: Option<String> = r.try_get(3)?;
            let score = score_line(
                params,
                ordered,
                delivered,
                due,
                delivered_date.as_deref().and_then(parse_date),
            );
            days.entry(due)
                .or_default()
                .add_line(score, ordered, delivered);
        }
        sqlx::query("DELETE FROM kpi_daily WHERE site = $1 AND day >= $2 AND day <= $3")
            .bind(site.clone())
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .execute(&mut *conn)
            .await
            .context("Failed to clear the roll-up")?;
        let days: Vec<_> = days.into_iter().collect();
        for chunk in days.chunks(INSERT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO kpi_daily (site, day, week_start, lines, otif_lines, on_time_lines, in_full_lines, units_ordered, units_delivered) VALUES ",
            );
            sql.push_str(&placeholders(chunk.len(), 9));
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
                .context("Failed to write the roll-up")?;
        }
    }
    Ok(())
}

/// The six roll-up counts, in `kpi_daily` column order, starting at column `first`.
fn counts_at(r: &AnyRow, first: usize) -> Result<KpiCounts, sqlx::Error> {
    Ok(KpiCounts {
        lines: r.try_get(first)?,
        otif_lines: r.try_get(first + 1)?,
        on_time_lines: r.try_get(first + 2)?,
        in_full_lines: r.try_get(first + 3)?,
        units_ordered: r.try_get(first + 4)?,
        units_delivered: r.try_get(first + 5)?,
    })
}

/// Weekly counts per site between two weeks (inclusive), summed by the database from the
/// roll-up; one site or all of them.
pub async fn weekly_counts(
    db: &Db,
    site: Option<&str>,
    from: Week,
    to: Week,
) -> anyhow::Result<Vec<(String, Week, KpiCounts)>> {
    let rows = sqlx::query(
        "SELECT site, week_start, CAST(SUM(lines) AS BIGINT), CAST(SUM(otif_lines) AS BIGINT), \
         CAST(SUM(on_time_lines) AS BIGINT), CAST(SUM(in_full_lines) AS BIGINT), \
         CAST(SUM(units_ordered) AS BIGINT), CAST(SUM(units_delivered) AS BIGINT) \
         FROM kpi_daily WHERE week_start >= $1 AND week_start <= $2 AND ($3 = '' OR site = $3) \
         GROUP BY site, week_start",
    )
    .bind(fmt_date(from.start))
    .bind(fmt_date(to.start))
    .bind(site.unwrap_or_default().to_string())
    .fetch_all(db)
    .await
    .context("Failed to read the KPI roll-up")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let site: String = r.try_get(0)?;
        let week: String = r.try_get(1)?;
        let Some(week) = parse_date(&week) else {
            continue;
        };
        out.push((site, Week::containing(week), counts_at(r, 2)?));
    }
    Ok(out)
}

/// Daily counts per site between two days (inclusive), from the roll-up; one site or all.
pub async fn daily_counts(
    db: &Db,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<Vec<(String, NaiveDate, KpiCounts)>> {
    let rows = sqlx::query(
        "SELECT site, day, lines, otif_lines, on_time_lines, in_full_lines, units_ordered, units_delivered \
         FROM kpi_daily WHERE day >= $1 AND day <= $2 AND ($3 = '' OR site = $3)",
    )
    .bind(fmt_date(from))
    .bind(fmt_date(to))
    .bind(site.unwrap_or_default().to_string())
    .fetch_all(db)
    .await
    .context("Failed to read the daily roll-up")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let day: String = r.try_get(1)?;
        let Some(day) = parse_date(&day) else {
            continue;
        };
        out.push((r.try_get(0)?, day, counts_at(r, 2)?));
    }
    Ok(out)
}

fn line_fact(r: &AnyRow) -> Result<Option<LineFact>, sqlx::Error> {
    let due: String = r.try_get("due_date")?;
    let delivered: Option<String> = r.try_get("delivered_date")?;
    let Some(due_date) = parse_date(&due) else {
        return Ok(None);
    };
    Ok(Some(LineFact {
        site: r.try_get("site")?,
        customer: r.try_get("customer")?,
        carrier: r.try_get("carrier")?,
        sku: r.try_get("sku")?,
        category: r.try_get("category")?,
        ordered_qty: r.try_get("ordered_qty")?,
        delivered_qty: r.try_get("delivered_qty")?,
        due_date,
        delivered_date: delivered.as_deref().and_then(parse_date),
        reason_code: r.try_get("reason_code")?,
    }))
}

/// Lines due in [from, to] for one site, or for the whole network when `site` is `None`.
pub async fn line_facts(
    db: &Db,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<Vec<LineFact>> {
    const COLS: &str = "site, customer, carrier, sku, category, ordered_qty, delivered_qty, due_date, delivered_date, reason_code";
    let rows = match site {
        Some(site) => {
            sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM order_lines WHERE site = $1 AND due_date >= $2 AND due_date <= $3"
        )))
            .bind(site.to_string())
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .fetch_all(db)
            .await
        }
        None => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLS} FROM order_lines WHERE due_date >= $1 AND due_date <= $2"
            )))
            .bind(fmt_date(from))
            .bind(fmt_date(to))
            .fetch_all(db)
            .await
        }
    }
    .context("Failed to read order lines")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(f) = line_fact(r)? {
            out.push(f);
        }
    }
    Ok(out)
}

/// Latest delivered_date among lines due since `since` (a bounded scan on the due-date
/// index), no later than `as_of`.
pub async fn latest_data_date(
    db: &Db,
    site: Option<&str>,
    since: NaiveDate,
    as_of: NaiveDate,
) -> anyhow::Result<Option<NaiveDate>> {
    let latest: Option<String> = match site {
        Some(site) => sqlx::query_scalar(
            "SELECT MAX(delivered_date) FROM order_lines WHERE site = $1 AND due_date >= $2 AND delivered_date <= $3",
        )
        .bind(site.to_string())
        .bind(fmt_date(since))
        .bind(fmt_date(as_of))
        .fetch_one(db)
        .await,
        None => sqlx::query_scalar(
            "SELECT MAX(delivered_date) FROM order_lines WHERE due_date >= $1 AND delivered_date <= $2",
        )
        .bind(fmt_date(since))
        .bind(fmt_date(as_of))
        .fetch_one(db)
        .await,
    }
    .context("Failed to read the latest data date")?;
    Ok(latest.as_deref().and_then(parse_date))
}

/// A new insight attempt to store.
pub struct NewInsight<'a> {
    pub id: &'a str,
    pub site: &'a str,
    pub metric: Metric,
    pub period_start: NaiveDate,
    pub created_at: &'a str,
    pub status: &'a str,
    pub agent: &'a str,
    pub value: Option<f64>,
    pub headline: &'a str,
    pub narrative: &'a str,
    pub insight_json: Option<String>,
    pub evidence_hash: &'a str,
    pub rules_version: i64,
    pub error: Option<&'a str>,
    pub latency_ms: i64,
    pub agent_kind: &'a str,
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    pub grounding_json: Option<String>,
    /// The run job that made it, for scheduled and batch refreshes.
    pub job_id: Option<&'a str>,
}

/// Stores an insight attempt, on the pool or inside a transaction.
pub async fn insert_insight<'e, E>(ex: E, i: &NewInsight<'_>) -> anyhow::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO insights (id, site, metric, period_start, created_at, status, agent, value, headline, \
         narrative, insight_json, evidence_hash, rules_version, error, latency_ms, agent_kind, \
         model_version, trace_id, grounding_json, job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(i.id.to_string())
    .bind(i.site.to_string())
    .bind(i.metric.key())
    .bind(fmt_date(i.period_start))
    .bind(i.created_at.to_string())
    .bind(i.status.to_string())
    .bind(i.agent.to_string())
    .bind(i.value)
    .bind(i.headline.to_string())
    .bind(i.narrative.to_string())
    .bind(i.insight_json.clone())
    .bind(i.evidence_hash.to_string())
    .bind(i.rules_version)
    .bind(i.error.map(str::to_string))
    .bind(i.latency_ms)
    .bind(i.agent_kind.to_string())
    .bind(i.model_version.clone())
    .bind(i.trace_id.clone())
    .bind(i.grounding_json.clone())
    .bind(i.job_id.map(str::to_string))
    .execute(ex)
    .await
    .context("Failed to store the insight")?;
    Ok(())
}

const INSIGHT_COLS: &str = "id, site, metric, period_start, created_at, status, agent, value, headline, narrative, insight_json, evidence_hash, rules_version, error, latency_ms, agent_kind, model_version, trace_id, grounding_json";

fn insight_view(r: &AnyRow) -> Result<Option<InsightView>, sqlx::Error> {
    let metric: String = r.try_get("metric")?;
    let Some(metric) = Metric::parse(&metric) else {
        return Ok(None);
    };
    let period_start: String = r.try_get("period_start")?;
    let json: Option<String> = r.try_get("insight_json")?;
    let grounding: Option<String> = r.try_get("grounding_json")?;
    Ok(Some(InsightView {
        id: r.try_get("id")?,
        site: r.try_get("site")?,
        metric,
        period_label: parse_date(&period_start)
            .map(|d| Week::containing(d).label())
            .unwrap_or_default(),
        actions: vec![],
        period_start,
        created_at: r.try_get("created_at")?,
        agent: r.try_get("agent")?,
        value: r.try_get("value")?,
        headline: r.try_get("headline")?,
        narrative: r.try_get("narrative")?,
        insight: json.and_then(|j| serde_json::from_str(&j).ok()),
        evidence_hash: r.try_get("evidence_hash")?,
        rules_version: r.try_get("rules_version")?,
        latency_ms: r.try_get("latency_ms")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        agent_kind: r.try_get("agent_kind")?,
        model_version: r.try_get("model_version")?,
        trace_id: r.try_get("trace_id")?,
        grounding: grounding
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or_default(),
    }))
}

/// One insight (or failed attempt) by id.
pub async fn insight(db: &Db, id: &str) -> anyhow::Result<Option<InsightView>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the insight")?;
    Ok(match row {
        Some(r) => insight_view(&r)?,
        None => None,
    })
}

/// Insight attempts for one card (or all of a site's, or all), latest first.
pub async fn insights(
    db: &Db,
    site: Option<&str>,
    metric: Option<Metric>,
    limit: i64,
) -> anyhow::Result<Vec<InsightView>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE ($1 = '' OR site = $1) AND ($2 = '' OR metric = $2) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    )))
    .bind(site.unwrap_or_default().to_string())
    .bind(metric.map(Metric::key).unwrap_or_default())
    .bind(limit)
    .fetch_all(db)
    .await
    .context("Failed to read insights")?;
    let mut out = Vec::new();
    for r in &rows {
        out.extend(insight_view(r)?);
    }
    Ok(out)
}

/// Unit costs: per SKU, and per category as the fallback.
pub async fn cost_book(db: &Db) -> anyhow::Result<crate::domain::materiality::CostBook> {
    let mut book = crate::domain::materiality::CostBook::default();
    for r in sqlx::query("SELECT kind, item, unit_cost FROM unit_costs")
        .fetch_all(db)
        .await
        .context("Failed to read unit costs")?
    {
        let kind: String = r.try_get(0)?;
        let item: String = r.try_get(1)?;
        let cost: f64 = r.try_get(2)?;
        match kind.as_str() {
            "sku" => book.by_sku.insert(item, cost),
            _ => book.by_category.insert(item, cost),
        };
    }
    Ok(book)
}

/// The latest good insight of one card.
pub async fn latest_ok_insight(
    db: &Db,
    site: &str,
    metric: Metric,
) -> anyhow::Result<Option<InsightView>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {INSIGHT_COLS} FROM insights WHERE site = $1 AND metric = $2 AND status = 'ok' \
         ORDER BY created_at DESC, id DESC LIMIT 1"
    )))
    .bind(site.to_string())
    .bind(metric.key())
    .fetch_optional(db)
    .await
    .context("Failed to read the card's latest insight")?;
    Ok(match row {
        Some(r) => insight_view(&r)?,
        None => None,
    })
}

/// The latest insight of each status ('ok', 'error') for every card.
pub async fn latest_insights(db: &Db) -> anyhow::Result<Vec<InsightView>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {cols} FROM insights i JOIN (SELECT site, metric, status, MAX(created_at) AS latest \
         FROM insights GROUP BY site, metric, status) l ON i.site = l.site AND i.metric = l.metric \
         AND i.status = l.status AND i.created_at = l.latest",
        cols = INSIGHT_COLS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ")
    )))
    .fetch_all(db)
    .await
    .context("Failed to read the latest insights")?;
    let mut out = Vec::new();
    for r in &rows {
        out.extend(insight_view(r)?);
    }
    Ok(out)
}

/// One agent call, for lineage.
pub struct NewAgentCall<'a> {
    pub id: &'a str,
    pub created_at: &'a str,
    pub agent: &'a str,
    pub kind: &'a str,
    pub endpoint: &'a str,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    pub evidence_hash: &'a str,
    pub rules_version: i64,
    pub request_json: &'a str,
    pub response_body: Option<&'a str>,
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub latency_ms: i64,
    pub attempts: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
}

pub async fn insert_agent_call(db: &Db, c: &NewAgentCall<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO agent_calls (id, created_at, agent, kind, endpoint, model, model_version, trace_id, \
         evidence_hash, rules_version, request_json, response_body, status, error, latency_ms, attempts, \
         input_tokens, output_tokens) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(c.id.to_string())
    .bind(c.created_at.to_string())
    .bind(c.agent.to_string())
    .bind(c.kind.to_string())
    .bind(c.endpoint.to_string())
    .bind(c.model.clone())
    .bind(c.model_version.clone())
    .bind(c.trace_id.clone())
    .bind(c.evidence_hash.to_string())
    .bind(c.rules_version)
    .bind(c.request_json.to_string())
    .bind(c.response_body.map(str::to_string))
    .bind(c.status.to_string())
    .bind(c.error.map(str::to_string))
    .bind(c.latency_ms)
    .bind(c.attempts)
    .bind(c.input_tokens)
    .bind(c.output_tokens)
    .execute(db)
    .await
    .context("Failed to store the agent call")?;
    Ok(())
}

pub async fn lineage(db: &Db, id: &str) -> anyhow::Result<Option<Lineage>> {
    let row = sqlx::query(
        "SELECT id, created_at, agent, kind, endpoint, model, model_version, trace_id, evidence_hash, \
         rules_version, request_json, response_body, status, error, latency_ms, attempts, input_tokens, \
         output_tokens FROM agent_calls WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the lineage")?;
    let Some(r) = row else { return Ok(None) };
    let request: String = r.try_get("request_json")?;
    Ok(Some(Lineage {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        agent: r.try_get("agent")?,
        kind: r.try_get("kind")?,
        endpoint: r.try_get("endpoint")?,
        model: r.try_get("model")?,
        model_version: r.try_get("model_version")?,
        trace_id: r.try_get("trace_id")?,
        evidence_hash: r.try_get("evidence_hash")?,
        rules_version: r.try_get("rules_version")?,
        request_json: serde_json::from_str::<serde_json::Value>(&request)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(request),
        response_body: r.try_get("response_body")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        latency_ms: r.try_get("latency_ms")?,
        attempts: r.try_get("attempts")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
    }))
}

/// A conversation's anchor.
pub struct NewConversation<'a> {
    pub id: &'a str,
    pub site: &'a str,
    pub metric: Metric,
    pub period_start: NaiveDate,
    pub agent: &'a str,
    pub title: &'a str,
    pub created_at: &'a str,
}

pub async fn insert_conversation(db: &Db, c: &NewConversation<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO conversations (id, site, metric, period_start, agent, title, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id.to_string())
    .bind(c.site.to_string())
    .bind(c.metric.key())
    .bind(fmt_date(c.period_start))
    .bind(c.agent.to_string())
    .bind(c.title.to_string())
    .bind(c.created_at.to_string())
    .execute(db)
    .await
    .context("Failed to store the conversation")?;
    Ok(())
}

/// Adds a running turn with the next sequence number; the unique (conversation, seq) key
/// refuses a concurrent second turn with the same number.
pub async fn insert_turn(
    db: &Db,
    id: &str,
    conversation_id: &str,
    question: &str,
    input_items_json: &str,
    created_at: &str,
) -> anyhow::Result<i64> {
    let seq: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM conversation_turns WHERE conversation_id = $1",
    )
    .bind(conversation_id.to_string())
    .fetch_one(db)
    .await
    .context("Failed to number the turn")?;
    sqlx::query(
        "INSERT INTO conversation_turns (id, conversation_id, seq, question, input_items_json, \
         output_items_json, status, answer, created_at) VALUES ($1, $2, $3, $4, $5, '[]', 'running', '', $6)",
    )
    .bind(id.to_string())
    .bind(conversation_id.to_string())
    .bind(seq)
    .bind(question.to_string())
    .bind(input_items_json.to_string())
    .bind(created_at.to_string())
    .execute(db)
    .await
    .context("Failed to store the turn")?;
    Ok(seq)
}

/// How a turn ended.
pub struct TurnOutcome {
    pub status: &'static str,
    pub answer: String,
    pub output_items_json: String,
    pub insight_json: Option<String>,
    pub grounding_json: Option<String>,
    pub error: Option<String>,
    pub finished_at: String,
}

pub async fn finish_turn(db: &Db, id: &str, o: &TurnOutcome) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE conversation_turns SET status = $2, answer = $3, output_items_json = $4, insight_json = $5, \
         grounding_json = $6, error = $7, finished_at = $8 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(o.status.to_string())
    .bind(o.answer.clone())
    .bind(o.output_items_json.clone())
    .bind(o.insight_json.clone())
    .bind(o.grounding_json.clone())
    .bind(o.error.clone())
    .bind(o.finished_at.clone())
    .execute(db)
    .await
    .context("Failed to finish the turn")?;
    Ok(())
}

const TURN_COLS: &str = "id, conversation_id, seq, question, input_items_json, output_items_json, status, answer, insight_json, grounding_json, error, created_at";

fn turn_view(r: &AnyRow) -> Result<TurnView, sqlx::Error> {
    let insight: Option<String> = r.try_get("insight_json")?;
    let grounding: Option<String> = r.try_get("grounding_json")?;
    Ok(TurnView {
        id: r.try_get("id")?,
        seq: r.try_get("seq")?,
        question: r.try_get("question")?,
        status: r.try_get("status")?,
        answer: r.try_get("answer")?,
        insight: insight.and_then(|j| serde_json::from_str(&j).ok()),
        grounding: grounding
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or_default(),
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
    })
}

/// One turn and its conversation id.
pub async fn turn(db: &Db, id: &str) -> anyhow::Result<Option<(String, TurnView)>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TURN_COLS} FROM conversation_turns WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the turn")?;
    match row {
        Some(r) => Ok(Some((r.try_get("conversation_id")?, turn_view(&r)?))),
        None => Ok(None),
    }
}

/// A conversation with its turns in order, and the input items of its finished turns
/// (what the next turn sends back in `input`).
pub async fn conversation(
    db: &Db,
    id: &str,
) -> anyhow::Result<Option<(ConversationView, Vec<serde_json::Value>)>> {
    let Some(c) = sqlx::query(
        "SELECT id, site, metric, period_start, agent, title, created_at FROM conversations WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(db)
    .await
    .context("Failed to read the conversation")?
    else {
        return Ok(None);
    };
    let metric: String = c.try_get("metric")?;
    let Some(metric) = Metric::parse(&metric) else {
        return Ok(None);
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TURN_COLS} FROM conversation_turns WHERE conversation_id = $1 ORDER BY seq"
    )))
    .bind(id.to_string())
    .fetch_all(db)
    .await
    .context("Failed to read the conversation's turns")?;
    let mut turns = Vec::new();
    let mut history = Vec::new();
    for r in &rows {
        let t = turn_view(r)?;
        // Failed and running turns are not part of what the agent has seen answered.
        if t.status == "ok" {
            for col in ["input_items_json", "output_items_json"] {
                let items: String = r.try_get(col)?;
                if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&items) {
                    history.extend(items);
                }
            }
        }
        turns.push(t);
    }
    let period_start: String = c.try_get("period_start")?;
    Ok(Some((
        ConversationView {
            id: c.try_get("id")?,
            site: c.try_get("site")?,
            metric,
            period_label: parse_date(&period_start)
                .map(|d| Week::containing(d).label())
                .unwrap_or_default(),
            period_start,
            agent: c.try_get("agent")?,
            title: c.try_get("title")?,
            created_at: c.try_get("created_at")?,
            turns,
        },
        history,
    )))
}

pub async fn insert_feedback(db: &Db, f: &FeedbackView, user_id: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO feedback (id, insight_id, helpful, reason, user_id, created_at, mlflow_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(f.id.clone())
    .bind(f.insight_id.clone())
    .bind(i64::from(f.helpful))
    .bind(f.reason.clone())
    .bind(user_id.to_string())
    .bind(f.created_at.clone())
    .bind(f.mlflow_state.clone())
    .execute(db)
    .await
    .context("Failed to store the feedback")?;
    Ok(())
}

pub async fn set_feedback_mlflow(
    db: &Db,
    id: &str,
    state: &str,
    assessment_id: Option<&str>,
    error: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE feedback SET mlflow_state = $2, assessment_id = $3, mlflow_error = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(state.to_string())
    .bind(assessment_id.map(str::to_string))
    .bind(error.map(str::to_string))
    .execute(db)
    .await
    .context("Failed to update the feedback")?;
    Ok(())
}

pub async fn feedback_for(db: &Db, insight_id: &str) -> anyhow::Result<Vec<FeedbackView>> {
    let rows = sqlx::query(
        "SELECT id, insight_id, helpful, reason, created_at, mlflow_state, assessment_id FROM feedback \
         WHERE insight_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(insight_id.to_string())
    .fetch_all(db)
    .await
    .context("Failed to read feedback")?;
    rows.iter()
        .map(|r| {
            Ok(FeedbackView {
                id: r.try_get("id")?,
                insight_id: r.try_get("insight_id")?,
                helpful: r.try_get::<i64, _>("helpful")? != 0,
                reason: r.try_get("reason")?,
                created_at: r.try_get("created_at")?,
                mlflow_state: r.try_get("mlflow_state")?,
                assessment_id: r.try_get("assessment_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("Failed to read feedback")
}
