//! The staging area an import streams its lines into before its transaction commits
//! them: new keys into `order_lines`, keys of earlier imports updated (and the days they
//! touch listed, for re-tallying), a key twice in the file reported with both of its lines.
//! Nothing is visible to others until the import's transaction commits.
//!
//! - **SQLite**: each batch goes straight into `order_lines` (`INSERT … ON CONFLICT DO
//!   NOTHING`, in the import's transaction); only the rows whose key was already there
//!   (a line of an earlier import, or a key twice in the file) wait in a `TEMP` table on
//!   the import's connection (its pages spill to a temporary file, so memory stays
//!   bounded), to be sorted out at the end. A new line is written once, not staged and
//!   copied: the usual import (every key new) never touches the temporary table.
//! - **PostgreSQL**: every line goes into an `UNLOGGED` table written with `COPY` over a
//!   connection of its own (the `Any` driver cannot `COPY`), and moves into `order_lines`
//!   at the end with set-based statements. The table is emptied when an import opens it
//!   (rows an interrupted import left behind), when one commits and when one is refused.
//!   `UNLOGGED` is PostgreSQL's, so the store creates the table on first use rather than
//!   in a migration. Imports are serialized by the metric store's lock (the caller's
//!   transaction holds it before a stage opens), so one import at a time uses the table.

use super::{Backend, Conn, Ctx, Db, Result, StoreError};
use crate::domain::period::{fmt_date, parse_date};
use crate::domain::tally::OrderLine;
use chrono::NaiveDate;
use sqlx::{AssertSqlSafe, Connection, Executor};

/// Versioned: PostgreSQL's stage is made outside migrations, so a build that changes its
/// columns names a new table rather than meeting an old one.
const TABLE: &str = "order_lines_staging_v2";
/// `order_lines`' columns, in the order lines are staged in.
const COLUMNS: [&str; 15] = [
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
    "attrs",
    "import_id",
    "import_line",
];

/// Where an import's lines wait for its transaction (see the module docs).
pub struct Stage {
    import_id: String,
    kind: Kind,
}

enum Kind {
    /// SQLite: new lines written straight into `order_lines`; the rest in a temporary
    /// table on the transaction's connection. How many were written so far.
    Direct { inserted: u64 },
    /// PostgreSQL: a connection of its own for `COPY`.
    Copy { conn: Box<sqlx::PgConnection> },
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

/// Turns lines into what a stage sends its database. `Send` and cheap to clone, so that
/// the thread parsing a file encodes each batch while the database writes the one before.
#[derive(Clone, Debug)]
pub struct Encoder {
    import_id: String,
    copy: bool,
}

/// A batch of lines ready for [`Stage::send_encoded`], from its stage's [`Encoder`].
#[derive(Debug)]
pub struct Encoded {
    lines: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// SQLite: a JSON array of rows.
    Json(String),
    /// PostgreSQL: `COPY` rows as CSV.
    Csv(Vec<u8>),
}

impl Encoder {
    /// `lines`: `(line in the file, line)`.
    pub fn encode(&self, lines: &[(u64, OrderLine)]) -> Result<Encoded> {
        let body = if self.copy {
            Body::Csv(encode_csv(lines, &self.import_id)?)
        } else {
            Body::Json(encode_json(lines)?)
        };
        Ok(Encoded {
            lines: lines.len() as u64,
            body,
        })
    }
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
     due_date TEXT NOT NULL, delivered_date TEXT, reason_code TEXT, attrs TEXT, \
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
                Kind::Direct { inserted: 0 }
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
                }
            }
        };
        Ok(Stage {
            import_id: import_id.to_string(),
            kind,
        })
    }

    /// What encodes lines for this stage (for [`Stage::send_encoded`]).
    pub fn encoder(&self) -> Encoder {
        Encoder {
            import_id: self.import_id.clone(),
            copy: matches!(self.kind, Kind::Copy { .. }),
        }
    }

    /// Adds lines to the stage: `(line in the file, line)`.
    pub async fn send(&mut self, tx: &mut Conn, lines: &[(u64, OrderLine)]) -> Result<()> {
        let encoded = self.encoder().encode(lines)?;
        self.send_encoded(tx, encoded).await
    }

    /// Adds lines encoded by this stage's [`Encoder`].
    pub async fn send_encoded(&mut self, tx: &mut Conn, encoded: Encoded) -> Result<()> {
        match (&mut self.kind, encoded.body) {
            (Kind::Direct { inserted }, Body::Json(json)) => {
                *inserted += insert_direct(tx, &json, encoded.lines, &self.import_id).await?;
                Ok(())
            }
            (Kind::Copy { conn, .. }, Body::Csv(csv)) => copy(conn, &csv).await,
            _ => Err(StoreError::Corrupt {
                what: "Lines were encoded for another database",
                detail: format!("{} lines", encoded.lines),
            }),
        }
    }

    /// Moves the staged lines into `order_lines` in the import's transaction: new keys are
    /// inserted (on SQLite they are already); a key sent twice is a duplicate (listed, at
    /// most `limit`, and nothing else is done); a key another import wrote is updated, and
    /// the days it moved from and to are listed. `staged` is how many lines were sent.
    pub async fn move_into_lines(&self, tx: &mut Conn, staged: u64, limit: usize) -> Result<Moved> {
        let id = || self.import_id.clone();
        let inserted = match self.kind {
            Kind::Direct { inserted } => inserted,
            Kind::Copy { .. } => {
                let cols = columns();
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO order_lines ({cols}) SELECT {cols} FROM {TABLE} \
                     WHERE import_id = $1 ON CONFLICT (order_id, line_no) DO NOTHING"
                )))
                .bind(id())
                .execute(&mut *tx)
                .await
                .ctx("Failed to write order lines")?
                .rows_affected()
            }
        };
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
        // both find a line of an earlier import. (On SQLite only such rows are staged.)
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
        if let Kind::Copy { mut conn } = self.kind {
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
            Kind::Direct { .. } => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {TABLE}")))
                    .execute(&mut *tx)
                    .await
                    .ctx("Failed to clear the import's staging table")?;
            }
            Kind::Copy { conn } => {
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

/// SQLite: the lines as one JSON array of rows, for one parameter unpacked by the database
/// ([`super::json_rows`]). Measured against the alternatives (same run, 3M lines): bound
/// multi-row `VALUES` with `?` placeholders took a third longer, for the `Any` driver
/// copies every value twice and SQLite a third time; `$n` placeholders cost the square of
/// their number to bind in sqlx.
fn encode_json(lines: &[(u64, OrderLine)]) -> Result<String> {
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
                encode_attrs(&f.attrs),
                src,
            )
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt {
        what: "Failed to encode order lines",
        detail: e.to_string(),
    })
}

/// A line's catalogue dimensions and fields as `order_lines.attrs` holds them: a JSON
/// object, `None` when it has none.
pub fn encode_attrs(attrs: &[(String, String)]) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = attrs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}

/// The inverse of [`encode_attrs`], sorted by name (text that is not such an object, which
/// only a hand-written row could hold, has no attributes).
pub fn decode_attrs(text: Option<&str>) -> Vec<(String, String)> {
    let Some(Ok(serde_json::Value::Object(map))) = text.map(serde_json::from_str) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    out.sort();
    out
}

/// SQLite: writes the `sent` lines of `json` ([`encode_json`]) whose key is new into
/// `order_lines` and stages the others (a key of an earlier import, or one this import
/// wrote from another line of the file), the import's id bound once; returns how many were
/// written.
async fn insert_direct(tx: &mut Conn, json: &str, sent: u64, import_id: &str) -> Result<u64> {
    // SQLite's `->>` gives numbers back as integers: every column reads as it is.
    let cols: Vec<(&str, super::Col)> = COLUMNS
        .iter()
        .filter(|c| **c != "import_id")
        .map(|c| (*c, super::Col::Text))
        .collect();
    let names = cols.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let rows_sql = super::json_rows(Backend::Sqlite, &cols);
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO order_lines ({names}, import_id) SELECT *, $2 FROM ({rows_sql}) \
         WHERE true ON CONFLICT (order_id, line_no) DO NOTHING"
    )))
    .bind(json)
    .bind(import_id)
    .execute(&mut *tx)
    .await
    .ctx("Failed to write order lines")?
    .rows_affected();
    if inserted == sent {
        return Ok(inserted);
    }
    // The rows not written are those whose key holds something other than themselves.
    let staged = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {TABLE} ({names}, import_id) SELECT s.*, $2 FROM ({rows_sql}) AS s \
         WHERE NOT EXISTS (SELECT 1 FROM order_lines o \
           WHERE o.order_id = s.order_id AND o.line_no = s.line_no \
             AND o.import_id = $2 AND o.import_line = s.import_line)"
    )))
    .bind(json)
    .bind(import_id)
    .execute(&mut *tx)
    .await
    .ctx("Failed to stage order lines")?
    .rows_affected();
    if inserted + staged != sent {
        return Err(StoreError::Corrupt {
            what: "Order lines went missing on their way into the store",
            detail: format!("{sent} sent, {inserted} written, {staged} staged"),
        });
    }
    Ok(inserted)
}

/// PostgreSQL: the lines as `COPY` rows (CSV).
fn encode_csv(lines: &[(u64, OrderLine)], import_id: &str) -> Result<Vec<u8>> {
    let encoding = |e: csv::Error| StoreError::Corrupt {
        what: "Failed to encode order lines for COPY",
        detail: e.to_string(),
    };
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(lines.len() * 160));
    for (src, l) in lines {
        let f = &l.fact;
        // An empty unquoted field is NULL to COPY; text fields are never empty
        // (validated), so only the optional ones can be.
        let (line_no, ordered, delivered, src) = (
            l.line_no.to_string(),
            f.ordered_qty.to_string(),
            f.delivered_qty.to_string(),
            src.to_string(),
        );
        let attrs = encode_attrs(&f.attrs).unwrap_or_default();
        let record: [&str; 15] = [
            &l.order_id,
            &line_no,
            &f.site,
            &f.customer,
            &f.carrier,
            &f.sku,
            &f.category,
            &ordered,
            &delivered,
            &fmt_date(f.due_date),
            &f.delivered_date.map(fmt_date).unwrap_or_default(),
            f.reason_code.as_deref().unwrap_or_default(),
            &attrs,
            import_id,
            &src,
        ];
        w.write_record(record).map_err(encoding)?;
    }
    w.into_inner().map_err(|e| encoding(e.into_error().into()))
}

/// PostgreSQL: sends encoded rows ([`encode_csv`]) as one `COPY … FROM STDIN (FORMAT csv)`.
async fn copy(conn: &mut sqlx::PgConnection, rows: &[u8]) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {TABLE} ({}) FROM STDIN (FORMAT csv)",
            columns()
        ))
        .await
        .ctx("Failed to start copying order lines")?;
    copy.send(rows).await.ctx("Failed to copy order lines")?;
    copy.finish().await.ctx("Failed to copy order lines")?;
    Ok(())
}
