//! Backups: a SQLite backup taken while a run writes insights restores to a store with the
//! same lines, metric store and insights, and the dashboard serves from it; restore's
//! refusals (data in the way, a newer schema, a file that is not Opsight's); the CLI; and
//! PostgreSQL's documented `pg_dump`/`pg_restore` round trip.

use crate::common::{builtin, pg_test_db, set_agents, spawn_app_on, sqlite_test_db};
use app::ssr::store::{self, backup};
use std::path::Path;
use std::process::Command;

/// What a store holds, counted in SQL: order lines, metric-store rows and their lines and
/// OTIF lines, insights (ok ones) and their distinct headlines.
async fn counts(db: &store::Db) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT CAST(COUNT(*) AS BIGINT) FROM order_lines",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM kpi_facts",
        "SELECT CAST(COALESCE(SUM(lines), 0) AS BIGINT) FROM kpi_facts",
        "SELECT CAST(COALESCE(SUM(otif_lines), 0) AS BIGINT) FROM kpi_facts",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM insights WHERE status = 'ok'",
        "SELECT CAST(COUNT(DISTINCT headline) AS BIGINT) FROM insights",
    ] {
        out.push(
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db)
                .await
                .unwrap(),
        );
    }
    out
}

async fn open(path: &Path) -> store::Db {
    store::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_backup_taken_while_a_run_writes_restores_to_the_same_store() {
    let app = spawn_app_on(sqlite_test_db().await, 20_000, |c| set_agents(c, builtin())).await;
    let dir = app._db.dir.clone();
    let file = dir.join("backups/opsight-backup.db");
    // A run refreshing every card writes insights while the backup reads.
    let started = app
        .post_json(
            "/api/v1/runs",
            &serde_json::json!({"scope": "all", "scope_value": null}),
        )
        .await;
    assert_eq!(started.status(), 202);
    let run: app::dto::RunView = started.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let taken = backup::backup(app.db(), &file).await.unwrap();
    let done = app.wait_run(&run.id).await;
    assert!(
        done.run.finished_at.is_some() && done.run.failed == 0 && done.run.done > 0,
        "{done:?}"
    );
    assert_eq!(taken.schema_version, backup::schema_version());

    // The copy is consistent and holds what it says.
    let copy = open(&file).await;
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&copy)
        .await
        .unwrap();
    assert_eq!(ok, "ok");
    let in_backup = counts(&copy).await;
    copy.close().await;
    let live = counts(app.db()).await;
    assert_eq!(taken.order_lines, live[0]);
    assert!(live[0] > 10_000);
    assert_eq!(
        in_backup[..4],
        live[..4],
        "lines and metric store as they were"
    );
    assert!(
        in_backup[4] <= live[4],
        "insights up to the backup's moment"
    );

    // A backup never overwrites a file.
    let again = backup::backup(app.db(), &file).await.unwrap_err();
    assert!(again.to_string().contains("exists"), "{again}");

    // Restored into an empty store: the same counts and insights, and it serves.
    let target = dir.join("restored/opsight.db");
    let url = format!("sqlite:{}", target.display());
    let restored = backup::restore(&url, &file, false).await.unwrap();
    assert_eq!(restored, taken);
    let db = open(&target).await;
    assert_eq!(counts(&db).await, in_backup);
    let headlines = |db: store::Db| async move {
        let h: Vec<String> = sqlx::query_scalar("SELECT headline FROM insights ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
        h
    };
    assert_eq!(
        headlines(db.clone()).await,
        headlines(open(&file).await).await
    );
    // The dashboard serves from it, the card showing the backup's insight.
    let served = spawn_app_on(
        // Its scratch folder (removed when it stops) is not the store's.
        crate::common::TestDb::existing(db, dir.join("scratch"), url.clone()),
        0,
        |c| set_agents(c, builtin()),
    )
    .await;
    let card = served.card("DAL", app::domain::kpi::Metric::OTIF).await;
    assert_eq!(
        card.insight.map(|i| i.headline),
        card_headline_in(&file).await
    );
    // The run the backup caught mid-way goes on there; let it finish before stopping.
    served.wait_run(&run.id).await;
    drop(served);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // It now holds data (more insights: the run the backup caught mid-way went on in the
    // restored store): a second restore is refused without --force, and changes nothing.
    let before = backup::contents_of(&target).await.unwrap();
    assert!(before.insights >= taken.insights && before.order_lines == taken.order_lines);
    let refused = backup::restore(&url, &file, false).await.unwrap_err();
    assert!(refused.to_string().contains("holds data"), "{refused}");
    assert_eq!(backup::contents_of(&target).await.unwrap(), before);
    assert_eq!(backup::restore(&url, &file, true).await.unwrap(), taken);
}

/// The DAL OTIF card's newest ok insight in a backup file.
async fn card_headline_in(file: &Path) -> Option<String> {
    let db = open(file).await;
    let h: Option<String> = sqlx::query_scalar(
        "SELECT headline FROM insights WHERE site = 'DAL' AND metric = 'otif' AND status = 'ok' \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(&db)
    .await
    .unwrap();
    db.close().await;
    h
}

#[tokio::test]
async fn restore_refuses_a_newer_schema_and_a_file_that_is_not_opsights() {
    let tdb = sqlite_test_db().await;
    crate::common::seed(&tdb.db, 2_000).await;
    let file = tdb.dir.join("b.db");
    backup::backup(&tdb.db, &file).await.unwrap();
    let target = format!("sqlite:{}", tdb.dir.join("t.db").display());

    // A backup made by a newer build.
    let newer = open(&file).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', '2099-01-01', TRUE, x'00', 0)",
    )
    .execute(&newer)
    .await
    .unwrap();
    newer.close().await;
    let e = backup::restore(&target, &file, true).await.unwrap_err();
    assert!(e.to_string().contains("newer than this Opsight's"), "{e}");
    assert!(!tdb.dir.join("t.db").exists(), "nothing written");

    // Not a database, and not Opsight's.
    let text = tdb.dir.join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let e = backup::restore(&target, &text, true).await.unwrap_err();
    assert!(e.to_string().contains("not a"), "{e}");
    let other = tdb.dir.join("other.db");
    let db = store::connect(&format!("sqlite:{}", other.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let e = backup::restore(&target, &other, true).await.unwrap_err();
    assert!(e.to_string().contains("not an Opsight database"), "{e}");
}

#[test]
fn the_command_line_backs_up_and_restores() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tdb = rt.block_on(sqlite_test_db());
    rt.block_on(crate::common::seed(&tdb.db, 2_000));
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_opsight"))
            .args(args)
            .env("DATABASE_URL", url)
            .env("OPSIGHT_AS_OF", "2026-11-21")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let file = tdb.dir.join("cli-backup.db");
    let o = run(&tdb.url, &["backup", file.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: i64 = rt.block_on(async {
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM order_lines")
            .fetch_one(&tdb.db)
            .await
            .unwrap()
    });
    assert!(out.contains(&format!("{lines} order lines")), "{out}");
    let target = format!("sqlite:{}", tdb.dir.join("cli-restored.db").display());
    let o = run(&target, &["restore", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&target, &["restore", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = run(&target, &["restore", "--force", file.to_str().unwrap()]);
    assert!(o.status.success());
}

/// PostgreSQL stores are backed up with pg_dump and restored with pg_restore, as the
/// README says: the round trip gives the same counts.
#[tokio::test]
async fn postgres_round_trips_through_pg_dump_and_pg_restore() {
    let source = pg_test_db().await;
    crate::common::seed(&source.db, 3_000).await;
    let target = pg_test_db().await;
    // The target as `createdb` leaves it: empty (pg_restore creates the schema).
    sqlx::query("DROP SCHEMA public CASCADE")
        .execute(&target.db)
        .await
        .unwrap();
    sqlx::query("CREATE SCHEMA public")
        .execute(&target.db)
        .await
        .unwrap();
    let dump = source.dir.join("opsight.dump");
    let o = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&source.url)
        .output()
        .expect("pg_dump (Debian postgresql-client)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("pg_restore")
        .args(["--no-owner", "--dbname"])
        .arg(&target.url)
        .arg(&dump)
        .output()
        .expect("pg_restore");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&target.db).await, counts(&source.db).await);
    assert!(counts(&target.db).await[0] > 1_000);
    // Opsight opens the restored store as its own: nothing left to migrate.
    assert!(store::pending_migrations(&target.db)
        .await
        .unwrap()
        .is_empty());
}
