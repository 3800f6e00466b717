//! The storage layer: the only place in Opsight with SQL.
//!
//! One `AnyPool` over SQLite (the embedded default) or PostgreSQL (shared by several
//! replicas), one file per aggregate:
//!
//! - [`facts`]: the seam every read of order data goes through: sites, order lines, the
//!   metric store (tallies per site, day and dimension member), the latest data date and
//!   unit costs (and their writes: bulk import, re-scoring).
//! - [`rules`]: the rule book, KPI definitions, rule versions and their change log.
//! - [`insights`]: insights, the agent calls behind them (lineage), feedback, next actions.
//! - [`conversations`]: drill-down conversations and their turns.
//! - [`runs`]: refresh runs and their jobs (claims, leases, fencing).
//! - [`schedules`]: cron schedules and their ticks.
//! - [`notifications`]: digests and alerts, their deliveries, alert states.
//! - [`staging`]: how an import's lines reach `order_lines` in its transaction (SQLite: new
//!   keys directly, the rest through a temporary table; PostgreSQL: `COPY` into an unlogged
//!   table, moved in at the end).
//! - [`sources`]: data sources' shared state (lease, schedule tick, watermark, last
//!   outcome) and their syncs.
//! - [`foreign`]: other databases: the `SELECT` a source's mapping makes in its dialect,
//!   its rows read as text.
//! - [`accounts`]: users, sessions, API tokens.
//! - [`audit`]: the audit log.
//! - [`backup`]: `VACUUM INTO` backups of a SQLite store, and their restore.
//!
//! Conventions, so the SQL stays portable: `$n` placeholders, dates as `YYYY-MM-DD` text,
//! timestamps as fixed-width RFC 3339 UTC text (text order is time order), flags as
//! integers, sums cast to BIGINT (PostgreSQL widens `SUM(bigint)` to numeric, which `Any`
//! cannot decode), status columns holding the text of the vocabularies in
//! [`crate::domain::status`]. What differs by backend is the job claim, how bulk writes
//! unpack their JSON rows ([`Backend`], [`json_rows`]) and an import's staging area
//! ([`staging`]).
//!
//! Callers own transactions: functions take an executor (the pool, or `&mut *tx`), and
//! those that run several statements take a connection. Rows are read into `*Row`
//! structs (`FromRow`, by column name) and turned into views here. Every sqlx error is
//! mapped once, in [`Ctx::ctx`], into a [`StoreError`] that says what failed.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod conversations;
pub mod facts;
pub mod foreign;
pub mod insights;
pub mod notifications;
pub mod rules;
pub mod runs;
pub mod schedules;
pub mod sources;
pub mod staging;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

/// The database: a pool over SQLite or PostgreSQL.
pub type Db = AnyPool;
/// The pool's connections now, for `/metrics`: (open, idle, maximum).
pub fn pool_figures(db: &Db) -> (u32, usize, u32) {
    (db.size(), db.num_idle(), db.options().get_max_connections())
}

/// A transaction the caller commits.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;
/// A connection (or a transaction, dereferenced) for functions running several statements.
pub type Conn = sqlx::AnyConnection;

/// An executor: the pool, a connection or `&mut *tx`.
pub trait Exec<'e>: Executor<'e, Database = sqlx::Any> {}
impl<'e, T: Executor<'e, Database = sqlx::Any>> Exec<'e> for T {}

/// What a function running several statements takes: the pool (a connection is taken
/// from it), a connection, or a transaction (`&mut tx`).
pub trait Acq<'a>: sqlx::Acquire<'a, Database = sqlx::Any> + Send {}
impl<'a, T: sqlx::Acquire<'a, Database = sqlx::Any> + Send> Acq<'a> for T {}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed; `what` says which step ("Failed to read runs").
    #[error("{what}")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value that does not read back (a status a newer Opsight wrote, a broken
    /// JSON document).
    #[error("{what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("Failed to apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Setup(String),
}

/// Maps a sqlx result into the store's error, saying what was being done. Lookups that
/// may find nothing use `fetch_optional`; a `fetch_one` that finds nothing (`RowNotFound`)
/// is an inconsistency, an internal error like any other database failure.
pub trait Ctx<T> {
    fn ctx(self, what: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Database { what, source })
    }
}

/// A value read back through a fallible conversion (a status, a JSON document).
pub(crate) fn decode<T, E: std::fmt::Display>(
    what: &'static str,
    r: std::result::Result<T, E>,
) -> Result<T> {
    r.map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Which database a pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(db: &Db) -> Backend {
        if db
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
        {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

impl Backend {
    /// The backend of a connection (or of a transaction, dereferenced).
    pub fn of_conn(conn: &Conn) -> Backend {
        if conn
            .backend_name()
            .to_ascii_lowercase()
            .starts_with("postgres")
        {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// How a column of a bulk write reads its JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Col {
    Text,
    Int,
}

/// `SELECT <one expression per column> FROM <the JSON array bound as $1>`: bulk writes
/// send their rows as one JSON array of arrays in one parameter, so a statement carries
/// thousands of rows without thousands of bound values (binding grows slower than linear
/// in the number of parameters through the `Any` driver). The database unpacks it in C;
/// the one place this differs by backend.
/// Each column is read from its position in the row arrays and named `name`.
pub(crate) fn json_rows(backend: Backend, cols: &[(&str, Col)]) -> String {
    let exprs: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, c))| match (backend, c) {
            (Backend::Postgres, Col::Int) => format!("CAST(j.value->>{i} AS BIGINT) AS {name}"),
            _ => format!("j.value->>{i} AS {name}"),
        })
        .collect();
    match backend {
        // `WHERE true` lets an upsert clause follow (SQLite's parser needs it).
        // `jsonb_each`: each row's `value` is a binary array, so reading its columns does
        // not render and re-parse it as text once per column (`json_each` did: a fifth of
        // an import's time in a profile).
        Backend::Sqlite => format!(
            "SELECT {} FROM jsonb_each($1) AS j WHERE true",
            exprs.join(", ")
        ),
        // `jsonb`, for the same reason: `->>` on a `json` value re-reads its text.
        Backend::Postgres => format!(
            "SELECT {} FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j",
            exprs.join(", ")
        ),
    }
}

/// The file of a SQLite URL (`sqlite:data/opsight.db?mode=rwc` → `data/opsight.db`); none
/// for PostgreSQL or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// Connects, creating a SQLite file (and its folder) when missing, and applies migrations.
pub async fn connect(url: &str) -> Result<Db> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    let mut url = url.to_string();
    if let Some(path) = sqlite_file(&url) {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Setup(format!(
                    "Failed to create the database folder {}: {e}",
                    dir.display()
                ))
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
        .ctx("Failed to connect to the database (check DATABASE_URL)")?;
    migrate(&pool).await?;
    Ok(pool)
}

pub async fn migrate(db: &Db) -> Result<()> {
    sqlx::migrate!("../migrations").run(db).await?;
    Ok(())
}

/// Migrations this build expects that the database has not applied successfully (empty:
/// the schema is current). For readiness checks: a replica of a newer build waits until
/// its migrations are in.
pub async fn pending_migrations(db: &Db) -> Result<Vec<String>> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(db)
            .await
            .ctx("Failed to read the applied migrations")?;
    Ok(sqlx::migrate!("../migrations")
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}

/// The database answers (liveness).
pub async fn ping(db: &Db) -> Result<()> {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(db)
        .await
        .ctx("The database does not answer")?;
    Ok(())
}

/// Starts a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
/// a deferred transaction that reads and then writes cannot be upgraded while another
/// writer holds the lock, and fails at once with "database is locked" instead of waiting
/// (`busy_timeout` applies only to taking the lock).
pub async fn begin(db: &Db) -> Result<Tx> {
    match Backend::of(db) {
        Backend::Sqlite => db.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => db.begin().await,
    }
    .ctx("Failed to start a transaction")
}

pub async fn commit(tx: Tx) -> Result<()> {
    tx.commit().await.ctx("Failed to commit")
}

/// Rolls back now (dropping a transaction rolls it back too, but later, in the background).
pub async fn rollback(tx: Tx) -> Result<()> {
    tx.rollback().await.ctx("Failed to roll back")
}

/// `$first, $first+1, …`: placeholders for an `IN (…)` list.
fn list(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_and_lists() {
        assert_eq!(super::list(3, 2), "$2,$3,$4");
        use super::{json_rows, Backend, Col};
        let cols = [("a", Col::Text), ("b", Col::Int)];
        assert_eq!(
            json_rows(Backend::Sqlite, &cols),
            "SELECT j.value->>0 AS a, j.value->>1 AS b FROM jsonb_each($1) AS j WHERE true"
        );
        assert!(json_rows(Backend::Postgres, &cols).contains(
            "j.value->>0 AS a, CAST(j.value->>1 AS BIGINT) AS b FROM jsonb_array_elements"
        ));
    }
}
