//! Backups of a SQLite store: `opsight backup FILE` and `opsight restore FILE`.
//!
//! A backup is SQLite's `VACUUM INTO`: one read transaction over the live database (in WAL
//! mode writers go on meanwhile), written out as a compact, self-contained file that is
//! consistent as of its start. Copying the database file while Opsight runs is not: the
//! WAL holds the newest pages.
//!
//! A restore checks that the file is an Opsight database whose schema this build knows,
//! refuses to overwrite a store that holds data unless forced, and copies the backup in
//! (`VACUUM INTO` a temporary file beside the target, renamed over it, the target's WAL
//! removed), then applies this build's newer migrations. Stop every replica first.
//! PostgreSQL stores are backed up with `pg_dump` and restored with `pg_restore` (README).

use super::{connect, sqlite_file, Backend, Ctx, Db, Result, StoreError};
use sqlx::any::AnyPoolOptions;
use std::path::Path;

/// What a backup or a store holds: its schema version (the newest migration applied) and
/// how many order lines, insights and users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contents {
    pub schema_version: i64,
    pub order_lines: i64,
    pub insights: i64,
    pub users: i64,
}

impl Contents {
    fn is_empty(&self) -> bool {
        self.order_lines + self.insights + self.users == 0
    }
}

/// The newest migration this build knows.
pub fn schema_version() -> i64 {
    sqlx::migrate!("../migrations")
        .migrations
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

fn refused(message: String) -> StoreError {
    StoreError::Setup(message)
}

/// Writes a consistent copy of the live SQLite store `db` to `file` (which must not
/// exist), and says what it holds.
pub async fn backup(db: &Db, file: &Path) -> Result<Contents> {
    if matches!(Backend::of(db), Backend::Postgres) {
        return Err(refused(
            "this store is PostgreSQL: back it up with pg_dump (README, Backups)".into(),
        ));
    }
    if file.exists() {
        return Err(refused(format!(
            "{} exists: a backup never overwrites a file",
            file.display()
        )));
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| refused(format!("cannot create {}: {e}", dir.display())))?;
    }
    sqlx::query("VACUUM INTO $1")
        .bind(file.to_string_lossy().to_string())
        .execute(db)
        .await
        .ctx("Failed to write the backup")?;
    contents_of(file).await
}

/// One connection to an existing SQLite file, read-only when SQLite allows it (a store
/// in WAL mode that another process has open may need to be opened read-write to be
/// read; nothing is written either way).
async fn open_existing(file: &Path) -> Result<Db> {
    if !file.is_file() {
        return Err(refused(format!("{} is not a file", file.display())));
    }
    sqlx::any::install_default_drivers();
    for mode in ["ro", "rw"] {
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite:{}?mode={mode}", file.display()))
            .await;
        if let Ok(pool) = pool {
            // Opening is lazy about the header: a first read tells a database from
            // another file.
            if sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
                .fetch_optional(&pool)
                .await
                .is_ok()
            {
                return Ok(pool);
            }
            pool.close().await;
        }
    }
    Err(refused(format!(
        "{} is not a SQLite database",
        file.display()
    )))
}

/// What the SQLite file `file` holds; an error when it is not an Opsight database.
pub async fn contents_of(file: &Path) -> Result<Contents> {
    let db = open_existing(file).await?;
    let contents = read_contents(&db, file).await;
    db.close().await;
    contents
}

async fn read_contents(db: &Db, file: &Path) -> Result<Contents> {
    let not_opsight = || {
        refused(format!(
            "{} is not an Opsight database (it has no schema history)",
            file.display()
        ))
    };
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(db)
            .await
            .map_err(|_| not_opsight())?;
    let count = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
        )))
        .fetch_one(db)
        .await
        .map_err(|_| not_opsight())
    };
    Ok(Contents {
        schema_version: schema_version.ok_or_else(not_opsight)?,
        order_lines: count("order_lines").await?,
        insights: count("insights").await?,
        users: count("users").await?,
    })
}

/// Restores the backup `file` into the SQLite store at `target_url`: refuses a file that
/// is not an Opsight database or is of a newer schema, and a target that holds data unless
/// `force`. Returns what the restored store holds (after this build's migrations).
pub async fn restore(target_url: &str, file: &Path, force: bool) -> Result<Contents> {
    let Some(target) = sqlite_file(target_url) else {
        return Err(refused(
            "restore writes a SQLite store; for PostgreSQL use pg_restore (README, Backups)".into(),
        ));
    };
    let backup = contents_of(file).await?;
    let ours = schema_version();
    if backup.schema_version > ours {
        return Err(refused(format!(
            "the backup's schema ({}) is newer than this Opsight's ({ours}): restore it with the build that made it, or a newer one",
            backup.schema_version
        )));
    }
    // Only an empty file, or an Opsight store without data, is overwritten unasked.
    let occupied = target.metadata().map(|m| m.len() > 0).unwrap_or(false);
    if occupied && !force {
        match contents_of(&target).await {
            Ok(held) if held.is_empty() => {}
            Ok(held) => {
                return Err(refused(format!(
                    "{} holds data ({} order lines, {} insights, {} users): restore does not overwrite it without --force",
                    target.display(),
                    held.order_lines,
                    held.insights,
                    held.users
                )))
            }
            Err(e) => {
                return Err(refused(format!(
                    "{} cannot be read as an empty Opsight store ({e}): restore does not overwrite it without --force",
                    target.display()
                )))
            }
        }
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| refused(format!("cannot create {}: {e}", dir.display())))?;
    }
    // Copied beside the target, then renamed over it: a failed copy leaves the target as
    // it was.
    let copy = target.with_extension("restoring");
    remove_if_present(&copy)?;
    let source = open_existing(file).await?;
    let written = sqlx::query("VACUUM INTO $1")
        .bind(copy.to_string_lossy().to_string())
        .execute(&source)
        .await
        .ctx("Failed to copy the backup");
    source.close().await;
    written?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        remove_if_present(Path::new(&side))?;
    }
    std::fs::rename(&copy, &target).map_err(|e| {
        refused(format!(
            "cannot move the restored copy to {}: {e}",
            target.display()
        ))
    })?;
    // This build's newer migrations, as at start-up.
    let db = connect(target_url).await?;
    db.close().await;
    contents_of(&target).await
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refused(format!("cannot remove {}: {e}", path.display()))),
    }
}
