//! Data sources: order lines synced from where they live (a PostgreSQL or MySQL/MariaDB
//! database, a Databricks SQL warehouse, CSV files in a folder) into the metric store,
//! on a schedule or on demand.
//!
//! A sync:
//! 1. claims the source (a lease in `sources`, renewed while it runs: one replica syncs a
//!    source at a time; a killed replica's claim runs out) and records a sync (`running`);
//! 2. connects and checks the mapping against the source's columns before anything is
//!    written (a missing column is named);
//! 3. reads the rows (the window's days by due date, or from the watermark on) as text,
//!    streamed: the source's reader sends rows while the import parses, validates and
//!    writes them ([`import_lines`], the CSV import's path: all or nothing, upserts by
//!    (order_id, line_no), the metric store kept consistent);
//! 4. records the outcome: counts, duration and the new watermark; or the error, with the
//!    last good data kept (the import's transaction never committed).

mod databricks;
pub mod def;
mod read;

pub use def::{ColumnsSpec, SourceDef, SourceKind, SourceSpec};

use crate::domain::period::{fmt_date, parse_date};
use crate::domain::status::{SyncStatus, SyncTrigger};
use crate::dto::{SourceView, SyncView};
use crate::ssr::clock::{self, parse_timestamp, timestamp, Clock};
use crate::ssr::data::import::{
    current_fingerprint, import_lines_uncommitted, rescore_if_changed, ImportError, ImportReport,
    RowError, Uncommitted,
};
use crate::ssr::error::chain;
use crate::ssr::store::facts;
use crate::ssr::store::{self, sources::NewSync, sources::SyncEnd, Db};
use crate::ssr::ServiceError;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The sources of one running Opsight, and their syncs.
#[derive(Clone, Debug)]
pub struct Sources {
    db: Db,
    clock: Clock,
    defs: Arc<Vec<SourceDef>>,
    replica: Arc<str>,
    /// How long a sync's claim lasts without renewal (renewed every third of it).
    lease: Duration,
}

/// Rows between two progress records of a running sync.
const PROGRESS_EVERY: u64 = 10_000;
/// Syncs listed per source.
const HISTORY: i64 = 20;

impl Sources {
    pub fn new(
        db: Db,
        clock: Clock,
        defs: Vec<SourceDef>,
        replica: Arc<str>,
        lease: Duration,
    ) -> Sources {
        Sources {
            db,
            clock,
            defs: Arc::new(defs),
            replica,
            lease,
        }
    }

    pub fn defs(&self) -> &[SourceDef] {
        &self.defs
    }

    fn def(&self, name: &str) -> Result<&SourceDef, ServiceError> {
        self.defs
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("no data source is named '{name}'")))
    }

    /// Every source with where its syncs stand.
    pub async fn list(&self) -> Result<Vec<SourceView>, ServiceError> {
        // Read-only (it is polled while an import may hold SQLite's write lock).
        let now = Utc::now();
        let states = store::sources::states(&self.db).await?;
        let mut out = Vec::with_capacity(self.defs.len());
        for def in self.defs.iter() {
            let state = states
                .iter()
                .find(|s| s.name == def.name)
                .cloned()
                .unwrap_or_default();
            let last_sync = store::sources::syncs(&self.db, Some(&def.name), 1)
                .await?
                .into_iter()
                .next();
            out.push(view(def, state, last_sync, now));
        }
        Ok(out)
    }

    /// Takes out of the store the pushed-down tallies of sources no longer configured to
    /// push down (removed, renamed, or reading lines now), so they are not counted on
    /// top of what replaced them. Run at start-up; returns the sources cleared.
    pub async fn drop_unowned_tallies(&self) -> Result<Vec<String>, ServiceError> {
        let mut cleared = Vec::new();
        for (source, first_day) in facts::pushed_sources(&self.db).await? {
            // Push-downs and sources of a KPI's counts keep theirs.
            if self
                .defs
                .iter()
                .any(|d| d.name == source && (d.pushdown || d.measure.is_some()))
            {
                continue;
            }
            let Some(from) = parse_date(&first_day) else {
                continue;
            };
            let mut tx = store::begin(&self.db).await?;
            rescore_if_changed(&mut tx).await?;
            facts::replace_pushed(&mut tx, &source, from, &[], "").await?;
            store::commit(tx).await?;
            tracing::info!(source = %source, "pushed-down tallies of a source no longer pushing down were taken out");
            cleared.push(source);
        }
        Ok(cleared)
    }

    /// A source's syncs, newest first.
    pub async fn history(&self, name: &str) -> Result<Vec<SyncView>, ServiceError> {
        self.def(name)?;
        Ok(store::sources::syncs(&self.db, Some(name), HISTORY).await?)
    }

    /// Syncs a source: at once in the background (the sync `running`), or, with `wait`,
    /// when it has finished (the sync as it ended). 409 while another sync of it runs.
    pub async fn sync(
        &self,
        name: &str,
        trigger: SyncTrigger,
        actor: Option<&str>,
        wait: bool,
    ) -> Result<SyncView, ServiceError> {
        let def = self.def(name)?.clone();
        let started = self.claim(&def, trigger, actor).await?;
        let id = started.id.clone();
        let this = self.clone();
        // Spawned either way: a caller that goes away (a closed connection) does not stop
        // the sync half-way.
        let handle =
            crate::ssr::tasks::spawn("source sync", async move { this.run(&def, started).await });
        if wait {
            let _ = handle.await;
        }
        store::sources::sync(&self.db, &id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no sync {id}")))
    }

    /// Fires the scheduled syncs that are due (each tick claimed by one replica) and
    /// returns when the next one is due. A source's first tick is set, not fired.
    pub async fn fire_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ServiceError> {
        let mut next_wake: Option<DateTime<Utc>> = None;
        for def in self.defs.iter() {
            let Some(crontab) = &def.schedule else {
                continue;
            };
            // Read first: writes wait behind an import on SQLite, and most ticks find
            // nothing due.
            let state = match store::sources::state(&self.db, &def.name).await? {
                Some(state) => state,
                None => {
                    store::sources::ensure(&self.db, &def.name).await?;
                    store::sources::SourceState::default()
                }
            };
            let Some(next) = crontab.next_after(now) else {
                continue;
            };
            let due = state.next_due.as_deref().and_then(parse_timestamp);
            match due {
                None => {
                    store::sources::claim_tick(&self.db, &def.name, None, &timestamp(next)).await?;
                }
                Some(due_at) if due_at <= now => {
                    let won = store::sources::claim_tick(
                        &self.db,
                        &def.name,
                        state.next_due.as_deref(),
                        &timestamp(next),
                    )
                    .await?;
                    if won {
                        match self
                            .sync(&def.name, SyncTrigger::Schedule, None, false)
                            .await
                        {
                            Ok(_) => {}
                            // Still syncing from an earlier tick, here or elsewhere.
                            Err(ServiceError::Conflict(m)) => {
                                tracing::info!(source = %def.name, "{m}")
                            }
                            Err(e) => {
                                tracing::error!(source = %def.name, error = %chain(&e), "scheduled sync could not start")
                            }
                        }
                    }
                }
                Some(_) => {}
            }
            let wake = store::sources::state(&self.db, &def.name)
                .await?
                .and_then(|s| s.next_due.as_deref().and_then(parse_timestamp))
                .unwrap_or(next);
            next_wake = Some(next_wake.map_or(wake, |w| w.min(wake)));
        }
        Ok(next_wake)
    }

    /// Claims the source and records a running sync.
    async fn claim(
        &self,
        def: &SourceDef,
        trigger: SyncTrigger,
        actor: Option<&str>,
    ) -> Result<Started, ServiceError> {
        let now = Utc::now();
        store::sources::ensure(&self.db, &def.name).await?;
        store::sources::abandon_orphans(&self.db, &timestamp(now)).await?;
        // The claim is the sync's own (its id), so a claim that ran out and was taken again
        // is not renewed or released by the first sync (see `lease_for` for how long).
        let id = clock::new_id(now, "sync");
        let until = timestamp(now + self.lease_for(def));
        if !store::sources::claim(&self.db, &def.name, &id, &timestamp(now), &until).await? {
            return Err(ServiceError::Conflict(format!(
                "a sync of '{}' is already running",
                def.name
            )));
        }
        let state = store::sources::state(&self.db, &def.name)
            .await?
            .unwrap_or_default();
        let since = read::since(def, state.watermark.as_deref(), self.clock.today());
        let window = read::window_start(def, self.clock.today());
        store::sources::insert_sync(
            &self.db,
            &NewSync {
                id: &id,
                source: &def.name,
                trigger,
                actor,
                replica: &self.replica,
                since: Some(&since.value),
                started_at: &timestamp(now),
            },
        )
        .await?;
        Ok(Started {
            id,
            since,
            window,
            at: std::time::Instant::now(),
        })
    }

    /// How long a sync's claim lasts without renewal. On PostgreSQL, the lease (renewed
    /// every third of it while the sync runs: a killed replica's source is free within
    /// it). On SQLite renewals wait behind the import's write lock, so the claim lasts as
    /// long as the sync may (reading, then importing, each within the timeout) plus the
    /// lease.
    fn lease_for(&self, def: &SourceDef) -> chrono::Duration {
        let lease = match store::Backend::of(&self.db) {
            store::Backend::Postgres => self.lease,
            store::Backend::Sqlite => def.timeout * 2 + self.lease,
        };
        chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(1_230))
    }

    /// Runs a claimed sync to its end and records it; never fails (the outcome is in the
    /// sync's record and on the source). A sync's success is recorded in the import's own
    /// transaction: the lines, the watermark and the record land together or not at all.
    #[tracing::instrument(skip_all, fields(source = %def.name, sync = %started.id))]
    async fn run(&self, def: &SourceDef, started: Started) {
        let rows_read = Arc::new(AtomicU64::new(0));
        let keeper = Keeper(self.keep_claim(def, started.id.clone(), rows_read.clone()));
        let result = self.read_and_import(def, &started, rows_read.clone()).await;
        drop(keeper);
        let duration_ms = || started.at.elapsed().as_millis() as i64;
        let failure = match result {
            Ok(Imported {
                mut pending,
                watermark,
                bytes,
            }) => {
                let now = timestamp(Utc::now());
                let report = pending.report.clone();
                let end = SyncEnd {
                    status: SyncStatus::Succeeded,
                    finished_at: &now,
                    // Lines read, or a push-down's tally rows.
                    rows_read: rows_read.load(Ordering::Relaxed) as i64,
                    inserted: report.inserted as i64,
                    updated: report.updated as i64,
                    bytes_read: bytes as i64,
                    duration_ms: duration_ms(),
                    error: None,
                };
                let recorded = async {
                    store::sources::finish_sync(&mut *pending.tx, &started.id, &end).await?;
                    store::sources::release(
                        &mut *pending.tx,
                        &def.name,
                        &started.id,
                        Ok((now.as_str(), watermark.as_deref())),
                    )
                    .await
                };
                match recorded.await {
                    Ok(()) => match pending.commit().await {
                        Ok(_) => {
                            tracing::info!(
                                rows = report.lines,
                                inserted = report.inserted,
                                updated = report.updated,
                                ms = end.duration_ms,
                                "source synced"
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::error!(error = %chain(&e), "committing a sync failed");
                            "the lines could not be written (see the server's log)".to_string()
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %chain(&e), "recording a sync's end failed");
                        "the sync could not be recorded (see the server's log)".to_string()
                    }
                }
            }
            Err(message) => message,
        };
        tracing::warn!(error = %failure, ms = duration_ms(), "source sync failed");
        let now = timestamp(Utc::now());
        let end = SyncEnd {
            status: SyncStatus::Failed,
            finished_at: &now,
            rows_read: rows_read.load(Ordering::Relaxed) as i64,
            inserted: 0,
            updated: 0,
            bytes_read: 0,
            duration_ms: duration_ms(),
            error: Some(failure.as_str()),
        };
        let recorded = async {
            store::sources::finish_sync(&self.db, &started.id, &end).await?;
            store::sources::release(&self.db, &def.name, &started.id, Err(failure.as_str())).await
        };
        if let Err(e) = recorded.await {
            tracing::error!(error = %chain(&e), "recording the sync's end failed");
        }
    }

    /// Renews the claim and records the rows read, every third of the lease, until aborted.
    /// On SQLite both wait while the import holds the write lock (the claim lasts long
    /// enough not to need them then), so their failures are only logged.
    fn keep_claim(
        &self,
        def: &SourceDef,
        id: String,
        rows_read: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        let name = def.name.clone();
        let every = self.lease / 3;
        let lease = self.lease_for(def);
        crate::ssr::tasks::spawn("source sync lease", async move {
            loop {
                tokio::time::sleep(every).await;
                let until = timestamp(Utc::now() + lease);
                match store::sources::renew(&db, &name, &id, &until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(sync = %id, "the sync's claim was lost"),
                    Err(e) => {
                        tracing::debug!(error = %chain(&e), "renewing a sync's claim waited too long")
                    }
                }
                let read = rows_read.load(Ordering::Relaxed) as i64;
                if let Err(e) = store::sources::progress(&db, &id, read).await {
                    tracing::debug!(error = %chain(&e), "recording a sync's progress waited too long");
                }
            }
        })
    }

    /// Reads the source and imports its rows: the report and the highest watermark seen,
    /// or the reason it failed (safe to show: names the source's column or row, never its
    /// connection string).
    async fn read_and_import(
        &self,
        def: &SourceDef,
        started: &Started,
        rows_read: Arc<AtomicU64>,
    ) -> Result<Imported, String> {
        if def.pushdown || def.measure.is_some() {
            return self.push_down(def, started, &rows_read).await;
        }
        let input = tokio::time::timeout(
            def.timeout,
            read::open(def, &started.since, &started.window),
        )
        .await
        .map_err(|_| format!("no answer within {} s", def.timeout.as_secs()))??;
        let read::Input {
            rows,
            watermark,
            bytes,
            reader,
            numbering,
        } = input;
        let counter = rows_read.clone();
        let import =
            import_lines_uncommitted(&self.db, &def.name, rows, PROGRESS_EVERY, move |n| {
                counter.store(n, Ordering::Relaxed)
            });
        let result = tokio::time::timeout(def.timeout, import).await;
        drop(reader);
        let pending = match result {
            Err(_) => return Err(format!("not finished within {} s", def.timeout.as_secs())),
            Ok(Ok(pending)) => pending,
            Ok(Err(ImportError::Invalid(errors))) => {
                return Err(describe_rows(&errors, &numbering));
            }
            Ok(Err(ImportError::Input(m))) => return Err(m),
            Ok(Err(e)) => {
                tracing::error!(error = %chain(&e), "importing a source's rows failed");
                return Err("the lines could not be written (see the server's log)".into());
            }
        };
        rows_read.store(pending.report.lines as u64, Ordering::Relaxed);
        let watermark = watermark.lock().map(|w| w.clone()).unwrap_or_default();
        Ok(Imported {
            pending,
            watermark,
            bytes: bytes.load(Ordering::Relaxed),
        })
    }

    /// A push-down: the source computes the window's day-level tallies (scored with the
    /// rules in force; every day it holds again when they were scored otherwise), which
    /// replace this source's earlier ones in the store, in one transaction holding the
    /// store's lock. A source of a catalogue KPI's counts is written the same way (its
    /// counts depend on no rule: its window only).
    async fn push_down(
        &self,
        def: &SourceDef,
        started: &Started,
        rows_read: &AtomicU64,
    ) -> Result<Imported, String> {
        let internal = |e: crate::ssr::store::StoreError| {
            tracing::error!(error = %chain(&e), "writing a source's tallies failed");
            "the tallies could not be written (see the server's log)".to_string()
        };
        let rules = store::rules::load(&self.db).await.map_err(internal)?;
        let fingerprint = {
            let mut conn = self.db.acquire().await.map_err(|source| {
                internal(crate::ssr::store::StoreError::Database {
                    what: "Failed to take a connection",
                    source,
                })
            })?;
            current_fingerprint(&mut conn).await.map_err(internal)?
        };
        let mut from = parse_date(&started.window).unwrap_or_else(|| self.clock.today());
        let read = async {
            match &def.measure {
                Some(m) => {
                    let catalogue = facts::catalogue(&self.db).await.map_err(internal)?;
                    let slot = catalogue
                        .kpis
                        .iter()
                        .position(|k| k.key == m.kpi && k.is_fed())
                        .ok_or_else(|| {
                            format!("KPI '{}' is not in force (restart with the sources file that defines it)", m.kpi)
                        })?;
                    read::measures(def, &fmt_date(from), slot).await
                }
                None => {
                    if let Some(day) = facts::pushed_rescore_from(&self.db, &def.name, &fingerprint)
                        .await
                        .map_err(internal)?
                    {
                        from = from.min(day);
                    }
                    let catalogue = facts::catalogue(&self.db).await.map_err(internal)?;
                    read::aggregates(def, &fmt_date(from), rules.scoring(), &catalogue.dimensions)
                        .await
                }
            }
        };
        let pushed = tokio::time::timeout(def.timeout, read)
            .await
            .map_err(|_| format!("no answer within {} s", def.timeout.as_secs()))??;
        // Rows the source sent: tallies for a push-down, its own rows for a KPI's counts.
        let sent = if def.measure.is_some() {
            pushed.lines.max(0) as u64
        } else {
            pushed.rows.len() as u64
        };
        rows_read.store(sent, Ordering::Relaxed);
        let mut tx = store::begin(&self.db).await.map_err(internal)?;
        rescore_if_changed(&mut tx).await.map_err(internal)?;
        if current_fingerprint(&mut tx).await.map_err(internal)? != fingerprint {
            return Err(
                "the scoring rules changed during the sync: nothing was written (the next sync scores with the new ones)"
                    .into(),
            );
        }
        let known: std::collections::BTreeSet<String> = facts::sites(&mut *tx)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|s| s.code)
            .collect();
        let new_sites: Vec<String> = pushed
            .rows
            .iter()
            .map(|r| r.site.clone())
            .filter(|s| !known.contains(s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let named: Vec<facts::Site> = new_sites
            .iter()
            .map(|code| facts::Site {
                code: code.clone(),
                name: pushed.names.get(code).unwrap_or(code).clone(),
                region: String::new(),
            })
            .collect();
        facts::ensure_sites(&mut tx, &named)
            .await
            .map_err(internal)?;
        facts::replace_pushed(&mut tx, &def.name, from, &pushed.rows, &fingerprint)
            .await
            .map_err(internal)?;
        Ok(Imported {
            pending: Uncommitted {
                report: ImportReport {
                    lines: pushed.lines as usize,
                    inserted: pushed.lines as usize,
                    updated: 0,
                    sites_created: new_sites,
                },
                tx,
            },
            watermark: None,
            bytes: pushed.bytes,
        })
    }
}

/// A sync's writes, not yet committed, with what it read.
struct Imported {
    pending: Uncommitted,
    watermark: Option<String>,
    bytes: u64,
}

/// Stops the claim's renewal when the sync ends, however it ends (even dropped midway).
struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A claimed sync about to run.
struct Started {
    id: String,
    since: crate::ssr::store::foreign::Since,
    /// The window's first day (a query's `:since`).
    window: String,
    at: std::time::Instant,
}

/// Bad rows named as the source numbers them: "row 17" of a query's result, "orders.csv
/// line 5" of a file.
fn describe_rows(errors: &[RowError], numbering: &read::Numbering) -> String {
    let mut text = errors
        .iter()
        .map(|e| format!("{}: {}", numbering.name(e.line), e.message))
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() >= 20 {
        text.push_str("; (further errors not listed)");
    }
    format!("{text} — nothing was imported")
}

fn view(
    def: &SourceDef,
    state: store::sources::SourceState,
    last_sync: Option<SyncView>,
    now: DateTime<Utc>,
) -> SourceView {
    let age_hours = state
        .last_success_at
        .as_deref()
        .and_then(parse_timestamp)
        .map(|t| ((now - t).num_seconds().max(0) as f64 / 3600.0 * 10.0).round() / 10.0);
    SourceView {
        name: def.name.clone(),
        kind: def.kind.key().into(),
        reads: def.reads(),
        schedule: def.schedule_text.clone(),
        window_days: def.window_days,
        watermark_column: def.watermark.clone(),
        pushdown: def.pushdown,
        watermark: state.watermark,
        next_due: state.next_due,
        last_success_at: state.last_success_at,
        last_attempt_at: state.last_attempt_at,
        last_error: state.last_error,
        age_hours,
        last_sync,
    }
}
