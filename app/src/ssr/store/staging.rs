//! The staging area an import streams its lines into before its transaction moves them
//! into `order_lines` with a few set-based statements: new keys inserted, keys of earlier
//! imports updated (and the days they touch listed, for re-tallying), a key twice in the
//! file reported with both of its lines. Nothing reaches `order_lines` until then, and the
//! database does the moving in one statement per step instead of one per batch.
//!
//! - **SQLite**: a `TEMP` table on the import's own connection, written in its transaction
//!   (no index to maintain while streaming; its pages spill to a temporary file, so memory
//!   stays bounded).
//! - **PostgreSQL**: an `UNLOGGED` table written with `COPY` over a connection of its own
//!   (the `Any` driver cannot `COPY`); it is emptied when an import opens it (rows an
//!   interrupted import left behind), when one commits and when one is refused. `UNLOGGED` is PostgreSQL's, so the
//!   store creates the table on first use rather than in a migration. Imports are
//!   serialized by the metric store's lock (the caller's transaction holds it before a
//!   stage opens), so one import at a time uses the table.

use super::{Backend, Conn, Ctx, Db, Result, StoreError};
use crate::domain::period::{fmt_date, parse_date};
use crate::domain::tally::OrderLine;
use chrono::NaiveDate;
use sqlx::{AssertSqlSafe, Connection, Executor};

/// Versioned: PostgreSQL's stage is made outside migrations, so a build that changes its
/// columns names a new table rather than meeting an old one.
const TABLE: &str = "order_lines_staging_v1";
/// `order_lines`' columns, in the order lines are staged in.
const COLUMNS: [&str; 14] = [
    "order_id",
    "line_no",
    "site",
    "customer",
    "carrier",
    "sku",
    "category",
    "ordered_qty",
    "delivered_qty",
    "due_date",
    "delivered_date",
    "reason_code",
    "import_id",
    "import_line",
];

/// Where an import's lines wait for its transaction (see the module docs).
pub struct Stage {
    import_id: String,
    kind: Kind,
}

enum Kind {
    /// A temporary table on the transaction's connection.
    Temp,
    /// PostgreSQL: a connection of its own for `COPY`, and one `COPY`'s rows as CSV.
    Copy {
        conn: Box<sqlx::PgConnection>,
        buf: Vec<u8>,
    },
}

/// What moving the staged lines into `order_lines` did.
#[derive(Debug, Default)]
pub struct Moved {
    pub inserted: u64,
    pub updated: u64,
    /// (site, due day) of every line an update moved from or to: re-tallied from lines.
    pub dirty: Vec<(String, NaiveDate)>,
    /// Keys staged twice: (line, first line, order_id, line_no), at most the limit asked.
    pub duplicates: Vec<(u64, u64, String, i64)>,
}

#[derive(sqlx::FromRow)]
struct DuplicateRow {
    order_id: String,
    line_no: i64,
    first_line: i64,
    line: i64,
}

#[derive(sqlx::FromRow)]
struct DayRow {
    site: String,
    due_date: String,
}

fn columns() -> String {
    COLUMNS.join(", ")
}

/// The stage's columns: `order_lines`' own, with the import's key required.
fn create_columns() -> &'static str {
    "order_id TEXT NOT NULL, line_no BIGINT NOT NULL, site TEXT NOT NULL, \
     customer TEXT NOT NULL, carrier TEXT NOT NULL, sku TEXT NOT NULL, \
     category TEXT NOT NULL, ordered_qty BIGINT NOT NULL, delivered_qty BIGINT NOT NULL, \
     due_date TEXT NOT NULL, delivered_date TEXT, reason_code TEXT, \
     import_id TEXT NOT NULL, import_line BIGINT NOT NULL"
}

/// Makes `tx`, just begun, an import's transaction: on PostgreSQL it must see what `COPY`
/// commits over the stage's own connection after it began, so it reads committed data
/// statement by statement even where the database defaults to a stricter isolation (a
/// snapshot taken at its first statement would find the stage empty). The first statement
/// of the transaction.
pub async fn prepare_transaction(tx: &mut Conn) -> Result<()> {
    if Backend::of_conn(tx) == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *tx)
            .await
            .ctx("Failed to start the import's transaction")?;
    }
    Ok(())
}

impl Stage {
    /// Opens the import's stage, empty. `tx` is the import's transaction.
    pub async fn open(db: &Db, tx: &mut Conn, import_id: &str) -> Result<Stage> {
        let kind = match Backend::of_conn(tx) {
            Backend::Sqlite => {
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {TABLE} ({})",
                    create_columns()
                )))
                .execute(&mut *tx)
                .await
                .ctx("Failed to create the import's staging table")?;
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {TABLE}")))
                    .execute(&mut *tx)
                    .await
                    .ctx("Failed to clear the import's staging table")?;
                Kind::Temp
            }
            Backend::Postgres => {
                let url = db.connect_options().database_url.clone();
                let mut conn = sqlx::PgConnection::connect(url.as_str())
                    .await
                    .ctx("Failed to open a connection for the import")?;
                // Clearing the stage waits for readers of the table (a backup, say); fail
                // after a while rather than hold the store's lock behind them.
                conn.execute("SET lock_timeout = '30s'")
                    .await
                    .ctx("Failed to open a connection for the import")?;
                conn.execute(AssertSqlSafe(format!(
                    "CREATE UNLOGGED TABLE IF NOT EXISTS {TABLE} ({})",
                    create_columns()
                )))
                .await
                .ctx("Failed to create the import's staging table")?;
                conn.execute(AssertSqlSafe(format!("TRUNCATE {TABLE}")))
                    .await
                    .ctx("Failed to clear the import's staging table")?;
                Kind::Copy {
                    conn: Box::new(conn),
                    buf: Vec::with_capacity(1 << 20),
                }
            }
        };
        Ok(Stage {
            import_id: import_id.to_string(),
            kind,
        })
    }

    /// Adds lines to the stage: `(line in the file, line)`.
    pub async fn send(&mut self, tx: &mut Conn, lines: &[(u64, OrderLine)]) -> Result<()> {
        match &mut self.kind {
            Kind::Temp => insert_json(tx, lines, &self.import_id).await,
            Kind::Copy { conn, buf } => copy(conn, buf, lines, &self.import_id).await,
        }
    }

    /// Moves the staged lines into `order_lines` in the import's transaction: new keys are
    /// inserted; a key staged twice is a duplicate (listed, at most `limit`, and nothing
    /// else is done); a key another import wrote is updated, and the days it moved from and
    /// to are listed. `staged` is how many lines were sent.
    pub async fn move_into_lines(&self, tx: &mut Conn, staged: u64, limit: usize) -> Result<Moved> {
        let cols = columns();
        let id = || self.import_id.clone();
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO order_lines ({cols}) SELECT {cols} FROM {TABLE} WHERE import_id = $1 \
             ON CONFLICT (order_id, line_no) DO NOTHING"
        )))
        .bind(id())
        .execute(&mut *tx)
        .await
        .ctx("Failed to write order lines")?
        .rows_affected();
        let mut moved = Moved {
            inserted,
            ..Moved::default()
        };
        if staged == inserted {
            return Ok(moved); // Every key was new: the usual case, and the fast one.
        }
        if staged < inserted {
            return Err(StoreError::Corrupt {
                what: "More lines were written than staged",
                detail: format!("{staged} staged, {inserted} inserted"),
            });
        }
        // A key twice in the file: the first row was inserted and the second finds it, or
        // both find a line of an earlier import.
        let on_key = "o.order_id = s.order_id AND o.line_no = s.line_no";
        let earlier = "s.import_id = $1 AND COALESCE(o.import_id, '') <> $1";
        let duplicates: Vec<DuplicateRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT s.order_id, s.line_no, o.import_line AS first_line, s.import_line AS line \
             FROM {TABLE} s JOIN order_lines o ON {on_key} \
             WHERE s.import_id = $1 AND o.import_id = $1 AND o.import_line <> s.import_line \
             UNION ALL \
             SELECT s.order_id, s.line_no, MIN(s.import_line) AS first_line, \
                    MAX(s.import_line) AS line \
             FROM {TABLE} s JOIN order_lines o ON {on_key} WHERE {earlier} \
             GROUP BY s.order_id, s.line_no HAVING COUNT(*) > 1 \
             ORDER BY line LIMIT {limit}"
        )))
        .bind(id())
        .fetch_all(&mut *tx)
        .await
        .ctx("Failed to look for duplicate order lines")?;
        if !duplicates.is_empty() {
            moved.duplicates = duplicates
                .into_iter()
                .map(|d| {
                    let line = |n: i64| n.max(0) as u64;
                    (line(d.line), line(d.first_line), d.order_id, d.line_no)
                })
                .collect();
            return Ok(moved);
        }
        // Updates: the days the old lines were in and the days the new ones are in.
        let days: Vec<DayRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT o.site, o.due_date FROM {TABLE} s JOIN order_lines o ON {on_key} \
             WHERE {earlier} \
             UNION \
             SELECT s.site, s.due_date FROM {TABLE} s JOIN order_lines o ON {on_key} \
             WHERE {earlier}"
        )))
        .bind(id())
        .fetch_all(&mut *tx)
        .await
        .ctx("Failed to read the days of updated order lines")?;
        moved.dirty = days
            .into_iter()
            .filter_map(|d| Some((d.site, parse_date(&d.due_date)?)))
            .collect();
        let set = COLUMNS[2..]
            .iter()
            .map(|c| format!("{c} = s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        moved.updated = sqlx::query(AssertSqlSafe(format!(
            "UPDATE order_lines AS o SET {set} FROM {TABLE} AS s WHERE {on_key} AND {earlier}"
        )))
        .bind(id())
        .execute(&mut *tx)
        .await
        .ctx("Failed to update order lines")?
        .rows_affected();
        // Every staged line is new or an update: anything else means lines were lost on
        // the way (fail rather than commit tallies without their lines).
        if moved.inserted + moved.updated != staged {
            return Err(StoreError::Corrupt {
                what: "Imported lines went missing between the stage and the store",
                detail: format!(
                    "{staged} staged, {} inserted, {} updated",
                    moved.inserted, moved.updated
                ),
            });
        }
        Ok(moved)
    }

    /// Empties a refused import's stage, after its transaction rolled back (SQLite's went
    /// with the rollback; PostgreSQL's is cleared over its own connection). Best effort:
    /// a failure is logged, and the next import clears what is left.
    pub async fn abandon(self) {
        if let Kind::Copy { mut conn, .. } = self.kind {
            if let Err(e) = conn
                .execute(AssertSqlSafe(format!("TRUNCATE {TABLE}")))
                .await
            {
                tracing::warn!(error = %e, "clearing a refused import's stage failed");
            }
            let _ = conn.close().await;
        }
    }

    /// Empties the stage in the import's transaction (and closes PostgreSQL's `COPY`
    /// connection). The stage is this import's alone, so it is emptied whole, which both
    /// databases do without visiting its rows.
    pub async fn discard(self, tx: &mut Conn) -> Result<()> {
        match self.kind {
            Kind::Temp => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {TABLE}")))
                    .execute(&mut *tx)
                    .await
                    .ctx("Failed to clear the import's staging table")?;
            }
            Kind::Copy { conn, .. } => {
                // In the import's transaction, which read the table (a TRUNCATE over the
                // stage's own connection would wait for it forever); should the commit
                // fail, the next import clears the rows.
                sqlx::query(AssertSqlSafe(format!("TRUNCATE {TABLE}")))
                    .execute(&mut *tx)
                    .await
                    .ctx("Failed to clear the import's staging table")?;
                // Closing politely is a courtesy.
                let _ = conn.close().await;
            }
        }
        Ok(())
    }
}

/// SQLite: the lines as one JSON array of rows in one parameter, unpacked by the database
/// ([`super::json_rows`]), the import's id bound once. (Bound `VALUES` were a fifth slower:
/// every value is converted and copied twice through the `Any` driver, and `$n`
/// placeholders cost the square of their number to bind.)
async fn insert_json(tx: &mut Conn, lines: &[(u64, OrderLine)], import_id: &str) -> Result<()> {
    let rows: Vec<_> = lines
        .iter()
        .map(|(src, l)| {
            let f = &l.fact;
            (
                &l.order_id,
                l.line_no,
                &f.site,
                &f.customer,
                &f.carrier,
                &f.sku,
                &f.category,
                f.ordered_qty,
                f.delivered_qty,
                fmt_date(f.due_date),
                f.delivered_date.map(fmt_date),
                &f.reason_code,
                src,
            )
        })
        .collect();
    let json = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt {
        what: "Failed to encode order lines",
        detail: e.to_string(),
    })?;
    // SQLite's `->>` gives numbers back as integers: every column reads as it is.
    let cols: Vec<(&str, super::Col)> = COLUMNS
        .iter()
        .filter(|c| **c != "import_id")
        .map(|c| (*c, super::Col::Text))
        .collect();
    let names = cols.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "INSERT INTO {TABLE} ({names}, import_id) SELECT *, $2 FROM ({})",
        super::json_rows(Backend::Sqlite, &cols)
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(json)
        .bind(import_id)
        .execute(&mut *tx)
        .await
        .ctx("Failed to stage order lines")?;
    Ok(())
}

/// PostgreSQL: the lines as one `COPY … FROM STDIN (FORMAT csv)`.
async fn copy(
    conn: &mut sqlx::PgConnection,
    buf: &mut Vec<u8>,
    lines: &[(u64, OrderLine)],
    import_id: &str,
) -> Result<()> {
    let encoding = |e: csv::Error| StoreError::Corrupt {
        what: "Failed to encode order lines for COPY",
        detail: e.to_string(),
    };
    buf.clear();
    {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut *buf);
        for (src, l) in lines {
            let f = &l.fact;
            // An empty unquoted field is NULL to COPY; text fields are never empty
            // (validated), so only the optional ones can be.
            let record = [
                l.order_id.clone(),
                l.line_no.to_string(),
                f.site.clone(),
                f.customer.clone(),
                f.carrier.clone(),
                f.sku.clone(),
                f.category.clone(),
                f.ordered_qty.to_string(),
                f.delivered_qty.to_string(),
                fmt_date(f.due_date),
                f.delivered_date.map(fmt_date).unwrap_or_default(),
                f.reason_code.clone().unwrap_or_default(),
                import_id.to_string(),
                src.to_string(),
            ];
            w.write_record(&record).map_err(encoding)?;
        }
        w.flush().map_err(|e| encoding(e.into()))?;
    }
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {TABLE} ({}) FROM STDIN (FORMAT csv)",
            columns()
        ))
        .await
        .ctx("Failed to start copying order lines")?;
    copy.send(buf.as_slice())
        .await
        .ctx("Failed to copy order lines")?;
    copy.finish().await.ctx("Failed to copy order lines")?;
    Ok(())
}
