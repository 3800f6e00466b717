//! Other databases: the `SELECT` a data source's column mapping makes, in its dialect, and
//! its rows read as text.
//!
//! Every mapped column is cast to text in the source (`CAST(… AS TEXT)`, `AS CHAR` on
//! MySQL, `AS STRING` on Databricks), so one validation reads any source's values as it
//! reads a CSV file's, whatever the column types (dates, timestamps, numerics, integers).
//! The source's own query (or table) is wrapped, never edited: the window and watermark
//! are a `WHERE` on the wrapped result. The only value written into the SQL is a date or
//! watermark Opsight produced, as a quoted literal (a literal adapts to the column's type
//! on every engine, where a bound text parameter would not compare with a date in
//! PostgreSQL); the user's `:since` in a query is replaced by the same literal.

use sqlx::{AnyConnection, Column, Connection, Executor, Row};
use std::time::Duration;

/// The SQL dialect of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Databricks,
}

impl Dialect {
    /// A quoted identifier; a dotted name (`schema.table`) is quoted part by part.
    pub fn quote(self, name: &str) -> String {
        let q = match self {
            Dialect::Postgres => '"',
            Dialect::Mysql | Dialect::Databricks => '`',
        };
        name.split('.')
            .map(|part| {
                let escaped = part.replace(q, &format!("{q}{q}"));
                format!("{q}{escaped}{q}")
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    fn text(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS TEXT)"),
            Dialect::Mysql => format!("CAST({expr} AS CHAR)"),
            Dialect::Databricks => format!("CAST({expr} AS STRING)"),
        }
    }
}

/// A quoted SQL string literal. MySQL (and Databricks) also read `\` as an escape.
pub fn literal(dialect: Dialect, value: &str) -> String {
    let value = match dialect {
        Dialect::Postgres => value.to_string(),
        Dialect::Mysql | Dialect::Databricks => value.replace('\\', "\\\\"),
    };
    format!("'{}'", value.replace('\'', "''"))
}

/// What a source reads: its own query, or a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relation {
    Query(String),
    Table(String),
}

impl Relation {
    /// As a `FROM` item, with `:since` in a query replaced by `window` (the window's first
    /// day, a literal). The query sits on lines of its own, so a trailing `--` comment
    /// cannot swallow the wrapper.
    fn as_from_item(&self, dialect: Dialect, window: &str) -> String {
        match self {
            Relation::Table(t) => format!("{} AS src", dialect.quote(t)),
            Relation::Query(q) => format!(
                "(\n{}\n) AS src",
                replace_since(q, &literal(dialect, window))
            ),
        }
    }
}

/// `:since` as a whole word (not `::since`, not `:since_x`) replaced by `with`.
pub fn replace_since(query: &str, with: &str) -> String {
    let key = ":since";
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find(key) {
        let before = &rest[..at];
        let after = &rest[at + key.len()..];
        let glued_before = before.ends_with(':');
        let glued_after = after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(before);
        out.push_str(if glued_before || glued_after {
            key
        } else {
            with
        });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Which rows a sync asks for: those whose column is at or after the value (the window's
/// first day on the due date, or the watermark synced so far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    pub column: String,
    pub value: String,
}

/// `SELECT CAST(col AS TEXT), … FROM (<query>) AS src WHERE col >= '<since>'`: the mapped
/// columns, in the order given, as text. `window` is the window's first day (a query's
/// `:since`), whether or not the rows are asked for by watermark.
pub fn select(
    dialect: Dialect,
    relation: &Relation,
    columns: &[&str],
    since: &Since,
    window: &str,
) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| dialect.text(&format!("src.{}", dialect.quote(c))))
        .collect();
    format!(
        "SELECT {} FROM {} WHERE src.{} >= {}",
        cols.join(", "),
        relation.as_from_item(dialect, window),
        dialect.quote(&since.column),
        literal(dialect, &since.value)
    )
}

/// The columns a relation has, without reading a row.
pub fn probe(dialect: Dialect, relation: &Relation, since: &str) -> String {
    format!(
        "SELECT * FROM {} WHERE 1 = 0",
        relation.as_from_item(dialect, since)
    )
}

impl Dialect {
    /// A date of a date, timestamp or `YYYY-MM-DD…` text.
    fn date(self, expr: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::Mysql => format!("CAST({expr} AS DATE)"),
            Dialect::Databricks => format!("to_date({expr})"),
        }
    }

    /// A whole number (an integer type of the engine).
    fn integer(self, expr: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::Databricks => format!("CAST({expr} AS BIGINT)"),
            Dialect::Mysql => format!("CAST({expr} AS SIGNED)"),
        }
    }

    /// Text compared and grouped byte for byte.
    fn exact(self, expr: &str) -> String {
        match self {
            Dialect::Mysql => format!("{expr} COLLATE utf8mb4_bin"),
            Dialect::Postgres | Dialect::Databricks => expr.to_string(),
        }
    }

    fn add_days(self, date: &str, days: i64) -> String {
        match self {
            Dialect::Postgres => format!("({date} + {days})"),
            Dialect::Mysql => format!("DATE_ADD({date}, INTERVAL {days} DAY)"),
            Dialect::Databricks => format!("date_add({date}, {days})"),
        }
    }
}

/// The source columns a push-down reads, and how lines are scored.
#[derive(Clone, Debug)]
pub struct Pushdown<'a> {
    pub order_id: &'a str,
    pub line_no: &'a str,
    pub site: &'a str,
    pub customer: &'a str,
    pub carrier: &'a str,
    pub sku: &'a str,
    pub category: &'a str,
    pub ordered: &'a str,
    pub delivered: &'a str,
    pub due: &'a str,
    pub delivered_on: &'a str,
    pub reason: Option<&'a str>,
    /// The catalogue's dimensions: (name, source column; empty where the source maps
    /// none: every line is then the member `''`, as on the line path).
    pub dimensions: Vec<(&'a str, &'a str)>,
    /// Days after the due date a delivery still counts as on time.
    pub on_time_window_days: i64,
    /// Share of the ordered quantity that may be missing for a line to count in full.
    pub in_full_tolerance: f64,
}

/// The tallies the metric store keeps, computed by the source: one row per site, due day,
/// dimension and member (`''`/`''` for the site's total) with the ten counts of a tally,
/// every value as text. Scored as Opsight scores a line (`domain::kpi::score_line`): on
/// time when delivered no later than the due date plus the window, in full when the
/// delivered quantity reaches the ordered one less the tolerance (with the same 1e-9
/// slack); costs are not pushed down (failing lines count as uncosted).
pub fn aggregate(dialect: Dialect, relation: &Relation, p: &Pushdown, window: &str) -> String {
    let c = |name: &str| format!("src.{}", dialect.quote(name));
    let t = |e: &str| dialect.text(e);
    // A member as the line path reads it: trimmed text, compared byte for byte (MySQL's
    // default collation would merge "DHL" and "dhl").
    let member = |e: &str| dialect.exact(&format!("TRIM({})", t(e)));
    let due = dialect.date(&c(p.due));
    // An empty delivered date is no date (an open line), as in a file.
    let dd = dialect.date(&format!("NULLIF(TRIM({}), '')", t(&c(p.delivered_on))));
    // Quantities as whole numbers (checked whole by `violations`), so sums print as such.
    let oq = dialect.integer(&c(p.ordered));
    let dq = dialect.integer(&c(p.delivered));
    // The shortest text that reads back as the same f64 as the line path's factor.
    let factor = format!("{}", 1.0 - p.in_full_tolerance);
    let reason = match p.reason {
        Some(r) => format!("COALESCE({}, '')", member(&c(r))),
        None => "''".into(),
    };
    // The catalogue's dimensions, as `d_<name>` (names are checked slugs); a line without
    // a value is the member '' (as the line path's).
    let extra: String = p
        .dimensions
        .iter()
        .map(|(name, col)| {
            if col.is_empty() {
                format!("'' AS d_{name}, ")
            } else {
                format!("COALESCE({}, '') AS d_{name}, ", member(&c(col)))
            }
        })
        .collect();
    let lines = format!(
        "SELECT {site} AS site, {day} AS day, {carrier} AS carrier, \
         {customer} AS customer, {category} AS category, {reason} AS reason, {extra}\
         {dd_text} AS delivered_on, \
         {oq} AS oq, {dq} AS dq, \
         CASE WHEN {dd} IS NOT NULL AND {dd} <= {deadline} THEN 1 ELSE 0 END AS on_time, \
         CASE WHEN {dq} * 1.0 >= {oq} * 1.0 * {factor} - 0.000000001 THEN 1 ELSE 0 END AS in_full, \
         CASE WHEN {dd} IS NULL THEN 1 ELSE 0 END AS open_line \
         FROM {from} WHERE {due_col} >= {since}",
        site = dialect.exact(&format!("UPPER(TRIM({}))", t(&c(p.site)))),
        day = t(&due),
        carrier = member(&c(p.carrier)),
        customer = member(&c(p.customer)),
        category = member(&c(p.category)),
        dd_text = t(&dd),
        deadline = dialect.add_days(&due, p.on_time_window_days),
        from = relation.as_from_item(dialect, window),
        due_col = c(p.due),
        since = literal(dialect, window),
    );
    const SUMS: [&str; 10] = [
        "COUNT(*)",
        "SUM(on_time * in_full)",
        "SUM(on_time)",
        "SUM(in_full)",
        "SUM(oq)",
        "SUM(dq)",
        "SUM(open_line)",
        "SUM(CASE WHEN on_time * in_full = 0 AND reason = '' THEN 1 ELSE 0 END)",
        "0",
        "COUNT(*) - SUM(on_time * in_full)",
    ];
    // (the dimension's name, its column in the lines)
    let dims: Vec<(String, String)> = ["carrier", "customer", "category", "reason"]
        .iter()
        .map(|d| (d.to_string(), d.to_string()))
        .chain(
            p.dimensions
                .iter()
                .map(|(name, _)| (name.to_string(), format!("d_{name}"))),
        )
        .chain(std::iter::once((
            "delivered_on".to_string(),
            "delivered_on".to_string(),
        )))
        .collect();
    if dialect == Dialect::Postgres {
        // One pass over the lines: a grouping set per dimension (and the total). A
        // delivered-on set's group of undelivered lines (no member) is not a row.
        let which = |value: &dyn Fn(&str, &str) -> String| {
            let arms: Vec<String> = dims
                .iter()
                .map(|(name, col)| format!("WHEN GROUPING({col}) = 0 THEN {}", value(name, col)))
                .collect();
            format!("CASE {} ELSE '' END", arms.join(" "))
        };
        let sets: Vec<String> = std::iter::once("(site, day)".to_string())
            .chain(dims.iter().map(|(_, col)| format!("(site, day, {col})")))
            .collect();
        let sums: Vec<String> = SUMS
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS c{i}"))
            .collect();
        let out: Vec<String> = (0..SUMS.len()).map(|i| t(&format!("c{i}"))).collect();
        return format!(
            "SELECT {}, {}, {}, {}, {} FROM (SELECT site, day, {} AS dim, {} AS member, {} \
             FROM ({lines}) AS l GROUP BY GROUPING SETS ({})) AS g WHERE member IS NOT NULL",
            t("site"),
            t("day"),
            t("dim"),
            t("member"),
            out.join(", "),
            which(&|name: &str, _: &str| format!("'{name}'")),
            which(&|_: &str, col: &str| col.to_string()),
            sums.join(", "),
            sets.join(", ")
        );
    }
    // Engines without grouping sets here (MySQL, MariaDB; the Databricks double): a branch
    // per dimension over the lines.
    let cols = "site, day, on_time, in_full, oq, dq, open_line, reason";
    let branches = std::iter::once(("''".to_string(), "''".to_string(), ""))
        .chain(dims.iter().map(|(name, col)| {
            let filter = if name == "delivered_on" {
                " WHERE delivered_on IS NOT NULL"
            } else {
                ""
            };
            (format!("'{name}'"), col.clone(), filter)
        }))
        .map(|(dim, member, filter)| {
            format!("SELECT {dim} AS dim, {member} AS member, {cols} FROM l{filter}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let sums = SUMS.iter().map(|e| t(e)).collect::<Vec<_>>().join(", ");
    format!(
        "WITH l AS ({lines}) SELECT {}, {}, {}, {}, {sums} FROM ({branches}) AS f \
         GROUP BY site, day, dim, member",
        t("site"),
        t("day"),
        t("dim"),
        t("member")
    )
}

/// Rows of the window that cannot be lines (what the line-by-line path refuses by row):
/// how many, with up to five of their order ids.
pub fn violations(dialect: Dialect, relation: &Relation, p: &Pushdown, window: &str) -> String {
    let c = |name: &str| format!("src.{}", dialect.quote(name));
    let t = |e: &str| dialect.text(e);
    let text_missing = [p.order_id, p.site, p.customer, p.carrier, p.sku, p.category]
        .iter()
        .map(|col| format!("{} IS NULL OR TRIM({}) = ''", c(col), t(&c(col))))
        .collect::<Vec<_>>()
        .join(" OR ");
    let bad = format!(
        "{text_missing} OR {line} IS NULL OR {line} < 1 OR {line} <> FLOOR({line}) \
         OR {oq} IS NULL OR {oq} <= 0 OR {oq} > 1000000000 OR {oq} <> FLOOR({oq}) \
         OR {dq} IS NULL OR {dq} < 0 OR {dq} > 1000000000 OR {dq} <> FLOOR({dq})",
        line = c(p.line_no),
        oq = c(p.ordered),
        dq = c(p.delivered),
    );
    format!(
        "SELECT {}, {} FROM {} WHERE {} >= {} AND ({bad})",
        t(&c(p.order_id)),
        t(&c(p.line_no)),
        relation.as_from_item(dialect, window),
        c(p.due),
        literal(dialect, window)
    )
}

/// Keys of the window that are there more than once (the line path refuses them; a
/// push-down would count them twice): up to the caller's limit of them.
pub fn duplicates(dialect: Dialect, relation: &Relation, p: &Pushdown, window: &str) -> String {
    let c = |name: &str| format!("src.{}", dialect.quote(name));
    let t = |e: &str| dialect.text(e);
    format!(
        "SELECT {}, {} FROM {} WHERE {} >= {} GROUP BY {}, {} HAVING COUNT(*) > 1",
        t(&c(p.order_id)),
        t(&c(p.line_no)),
        relation.as_from_item(dialect, window),
        c(p.due),
        literal(dialect, window),
        c(p.order_id),
        c(p.line_no),
    )
}

/// Why reading another database failed: a message naming what failed, safe to show (the
/// connection string is never in it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ForeignError(pub String);

/// A database error's message, without sqlx's wrapping and never with the URL.
fn reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                "the connection was closed".into()
            }
            _ => format!("I/O error ({})", io.kind()),
        },
        sqlx::Error::Tls(_) => "TLS failed".into(),
        sqlx::Error::Configuration(_) => "the connection string is not valid".into(),
        sqlx::Error::Protocol(p) => format!("protocol error ({p})"),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => {
            // Other variants' texts do not carry the URL, but keep them short.
            let text = other.to_string();
            text.chars().take(200).collect()
        }
    }
}

/// A connection to a source, within `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<AnyConnection, ForeignError> {
    sqlx::any::install_default_drivers();
    match tokio::time::timeout(timeout, AnyConnection::connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ForeignError(format!("cannot connect: {}", reason(&e)))),
        Err(_) => Err(ForeignError(format!(
            "cannot connect: no answer within {} s",
            timeout.as_secs()
        ))),
    }
}

/// The column names a [`probe`] returns, asked over a connection of the source's own
/// driver: the `Any` driver refuses to describe some column types (PostgreSQL's numeric),
/// which the rows themselves never carry (every value is cast to text).
pub async fn columns(
    dialect: Dialect,
    url: &str,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<String>, ForeignError> {
    async fn names<C>(url: &str, sql: &str, timeout: Duration) -> Result<Vec<String>, ForeignError>
    where
        C: Connection,
        for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    {
        let mut conn = match tokio::time::timeout(timeout, C::connect(url)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(ForeignError(format!("cannot connect: {}", reason(&e)))),
            Err(_) => {
                return Err(ForeignError(format!(
                    "cannot connect: no answer within {} s",
                    timeout.as_secs()
                )))
            }
        };
        let stmt = (&mut conn)
            .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
                sql.to_string(),
            )))
            .await
            .map_err(|e| ForeignError(format!("the query fails: {}", reason(&e))))?;
        let names = sqlx::Statement::columns(&stmt)
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        drop(stmt);
        let _ = conn.close().await;
        Ok(names)
    }
    match dialect {
        Dialect::Postgres => names::<sqlx::PgConnection>(url, sql, timeout).await,
        Dialect::Mysql => names::<sqlx::MySqlConnection>(url, sql, timeout).await,
        Dialect::Databricks => Err(ForeignError("not a database connection".into())),
    }
}

/// Rows of a [`select`] as text, sent `chunk` at a time to `out` as they arrive; stops
/// when `out` is closed (the import stopped listening). A row that takes longer than
/// `idle` to arrive fails the read (a source that stalls mid-way).
pub async fn stream(
    conn: &mut AnyConnection,
    sql: &str,
    width: usize,
    chunk: usize,
    idle: Duration,
    out: &tokio::sync::mpsc::Sender<Result<Vec<Vec<Option<String>>>, String>>,
) -> Result<(), ForeignError> {
    use futures::StreamExt;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch(&mut *conn);
    let mut batch = Vec::with_capacity(chunk);
    loop {
        let next = match tokio::time::timeout(idle, rows.next()).await {
            Ok(n) => n,
            Err(_) => {
                return Err(ForeignError(format!(
                    "the source sent nothing for {} s mid-way",
                    idle.as_secs()
                )))
            }
        };
        let Some(row) = next else { break };
        let row = row.map_err(|e| ForeignError(format!("reading rows failed: {}", reason(&e))))?;
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let v: Option<String> = row.try_get(i).map_err(|e| {
                ForeignError(format!("a value does not read as text: {}", reason(&e)))
            })?;
            values.push(v);
        }
        batch.push(values);
        if batch.len() >= chunk {
            if out.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                return Ok(());
            }
            batch.reserve(chunk);
        }
    }
    if !batch.is_empty() {
        let _ = out.send(Ok(batch)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_reads_its_columns_as_text_after_the_window() {
        let since = Since {
            column: "due".into(),
            value: "2026-10-01".into(),
        };
        let sql = select(
            Dialect::Postgres,
            &Relation::Table("wms.shipments".into()),
            &["so_number", "Ship \"Date\""],
            &since,
            "2026-10-01",
        );
        assert_eq!(
            sql,
            "SELECT CAST(src.\"so_number\" AS TEXT), CAST(src.\"Ship \"\"Date\"\"\" AS TEXT) \
             FROM \"wms\".\"shipments\" AS src WHERE src.\"due\" >= '2026-10-01'"
        );
        let sql = select(
            Dialect::Mysql,
            &Relation::Query("SELECT * FROM t WHERE d >= :since AND x::text = 'a'".into()),
            &["a"],
            &Since {
                column: "updated".into(),
                value: "it\\'s".into(),
            },
            "2026-10-01",
        );
        assert_eq!(
            sql,
            "SELECT CAST(src.`a` AS CHAR) FROM (\nSELECT * FROM t WHERE d >= '2026-10-01' AND \
             x::text = 'a'\n) AS src WHERE src.`updated` >= 'it\\\\''s'"
        );
    }

    #[test]
    fn a_pushdown_scores_lines_in_the_source_as_opsight_does() {
        let p = Pushdown {
            order_id: "so",
            line_no: "ln",
            site: "dc",
            customer: "cust",
            carrier: "car",
            sku: "sku",
            category: "cat",
            ordered: "oq",
            delivered: "dq",
            due: "due",
            delivered_on: "dd",
            reason: Some("why"),
            dimensions: Vec::new(),
            on_time_window_days: 1,
            in_full_tolerance: 0.02,
        };
        let sql = aggregate(
            Dialect::Postgres,
            &Relation::Table("t".into()),
            &p,
            "2026-10-01",
        );
        assert!(
            sql.contains("CAST(NULLIF(TRIM(CAST(src.\"dd\" AS TEXT)), '') AS DATE) <= (CAST(src.\"due\" AS DATE) + 1)"),
            "{sql}"
        );
        assert!(
            sql.contains("CAST(src.\"dq\" AS BIGINT) * 1.0 >= CAST(src.\"oq\" AS BIGINT) * 1.0 * 0.98 - 0.000000001"),
            "{sql}"
        );
        assert!(sql.contains("WHERE src.\"due\" >= '2026-10-01'"), "{sql}");
        assert!(
            sql.contains("GROUP BY GROUPING SETS ((site, day), (site, day, carrier)"),
            "{sql}"
        );
        assert!(
            sql.contains("WHEN GROUPING(delivered_on) = 0 THEN delivered_on ELSE '' END AS member"),
            "{sql}"
        );
        let sql = aggregate(
            Dialect::Mysql,
            &Relation::Table("t".into()),
            &p,
            "2026-10-01",
        );
        assert!(
            sql.contains("DATE_ADD(CAST(src.`due` AS DATE), INTERVAL 1 DAY)")
                && sql.contains("TRIM(CAST(src.`car` AS CHAR)) COLLATE utf8mb4_bin AS carrier")
                && sql.matches(" UNION ALL ").count() == 5,
            "{sql}"
        );
        // The catalogue's dimensions are grouped by too, under their own names.
        let lanes = Pushdown {
            dimensions: vec![("lane", "lane_id"), ("shift", "")],
            ..p.clone()
        };
        let sql = aggregate(
            Dialect::Postgres,
            &Relation::Table("t".into()),
            &lanes,
            "2026-10-01",
        );
        assert!(
            sql.contains("COALESCE(TRIM(CAST(src.\"lane_id\" AS TEXT)), '') AS d_lane")
                && sql.contains("(site, day, d_lane)")
                && sql.contains("WHEN GROUPING(d_lane) = 0 THEN 'lane'")
                && sql.contains("'' AS d_shift"),
            "{sql}"
        );
        let sql = aggregate(
            Dialect::Mysql,
            &Relation::Table("t".into()),
            &lanes,
            "2026-10-01",
        );
        assert!(
            sql.contains("SELECT 'lane' AS dim, d_lane AS member")
                && sql.matches(" UNION ALL ").count() == 7,
            "{sql}"
        );
        let sql = aggregate(
            Dialect::Databricks,
            &Relation::Table("t".into()),
            &p,
            "2026-10-01",
        );
        assert!(
            sql.contains("to_date(NULLIF(TRIM(CAST(src.`dd` AS STRING)), '')) <= date_add(to_date(src.`due`), 1)"),
            "{sql}"
        );
    }

    #[test]
    fn since_is_replaced_only_as_a_word() {
        assert_eq!(replace_since("a >= :since", "X"), "a >= X");
        assert_eq!(
            replace_since("a::since :sinced :since)", "X"),
            "a::since :sinced X)"
        );
        assert_eq!(literal(Dialect::Postgres, "it's\\"), "'it''s\\'");
        assert_eq!(literal(Dialect::Mysql, "it\\'s"), "'it\\\\''s'");
    }
}
