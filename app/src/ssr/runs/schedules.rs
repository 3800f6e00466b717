//! Cron schedules stored in the database, and their ticks.
//!
//! Every replica runs the same tick loop (`server/src/scheduler.rs`). A tick is claimed
//! with a compare-and-set on the schedule's `next_fire_at`, in the transaction that also
//! creates the run (or queues the digest), so each tick becomes exactly one run whichever
//! replica sees it first; the `(schedule_id, scheduled_for)` unique key backs that up.
//!
//! Ticks missed while no replica was running (the due tick is more than
//! [`ON_TIME_GRACE`] late, or more than one tick is due) follow the schedule's catch-up
//! choice: `once` runs the latest missed tick once, `skip` records it as skipped.

use super::crontab::Crontab;
use super::{insert, Runs};
use crate::domain::evidence::NETWORK;
use crate::domain::scope::Scope;
use crate::domain::status::RunOrigin;
use crate::dto::{PeriodChoice, RunView, ScheduleInput, SchedulePreview, ScheduleView};
use crate::ssr::clock::{new_id, parse_timestamp, timestamp, Clock};
use crate::ssr::error::{chain, ServiceError};
use crate::ssr::notify::Notify;
use crate::ssr::store::runs::NewRun;
use crate::ssr::store::schedules::ScheduleRow;
use crate::ssr::store::{self, audit, facts, Db};
use chrono::{DateTime, Duration, Utc};

/// A tick fired within this long after its time is on time; later means every replica
/// was down (or stalled) when it was due.
pub const ON_TIME_GRACE: Duration = Duration::seconds(60);

/// How far back the latest missed tick is looked for when too many were missed to count.
const MISSED_LOOKBACK: Duration = Duration::days(31);
/// Missed ticks counted one by one at most (the note then says "at least").
const MAX_COUNTED: usize = 1000;

/// What to do with a schedule whose tick is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Run for the tick `at`; `missed` ticks before it were not run (catch-up).
    Fire { at: DateTime<Utc>, missed: usize },
    /// Do not run; `missed` ticks up to `at` were missed and are skipped.
    Skip { at: DateTime<Utc>, missed: usize },
}

/// Decides a due schedule's tick at `now` (pure: the tick loop and its tests use it).
/// `due` is the stored next tick (≤ now). Returns the decision and the next tick after now.
pub fn decide(
    crontab: &Crontab,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: &str,
) -> (Tick, Option<DateTime<Utc>>) {
    let next = crontab.next_after(now);
    // Ticks in [due, now], counted up to MAX_COUNTED (a per-second schedule after a long
    // outage would otherwise cost millions of steps); the latest is then found from now.
    let mut ticks = 1usize;
    let mut latest = due;
    let mut t = due;
    while let Some(n) = crontab.next_after(t) {
        if n > now {
            break;
        }
        if ticks >= MAX_COUNTED {
            latest = crontab
                .latest_at_or_before(now, Duration::days(2))
                .or_else(|| crontab.latest_at_or_before(now, MISSED_LOOKBACK))
                .unwrap_or(n);
            break;
        }
        ticks += 1;
        latest = n;
        t = n;
    }
    let on_time = ticks == 1 && now - due <= ON_TIME_GRACE;
    let tick = if on_time {
        Tick::Fire { at: due, missed: 0 }
    } else if catch_up == "skip" {
        Tick::Skip {
            at: latest,
            missed: ticks,
        }
    } else {
        Tick::Fire {
            at: latest,
            missed: ticks - 1,
        }
    };
    (tick, next)
}

fn validate(input: &ScheduleInput) -> Result<(ScheduleInput, Crontab, Scope), ServiceError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(ServiceError::BadRequest(
            "a schedule needs a name of 1 to 80 characters".into(),
        ));
    }
    let timezone = if input.timezone.trim().is_empty() {
        "UTC"
    } else {
        input.timezone.trim()
    };
    let crontab = Crontab::parse(&input.cron, timezone)
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let scope = Scope::parse(&input.scope, input.scope_value.as_deref())?;
    if !matches!(input.catch_up.as_str(), "once" | "skip") {
        return Err(ServiceError::BadRequest(
            "catch_up is 'once' (run once after missed ticks) or 'skip'".into(),
        ));
    }
    // A grain word or a period, and a comparison: checked now (400 naming the parameter),
    // resolved against the day each tick fires.
    Clock::default().resolve(&input.view)?;
    let clean = ScheduleInput {
        name: name.to_string(),
        view: crate::dto::PeriodChoice::new(
            input.view.period.as_deref().unwrap_or_default().trim(),
            input.view.compare.as_deref().unwrap_or_default().trim(),
        ),
        cron: crontab.source.clone(),
        timezone: timezone.to_string(),
        scope: scope.key().to_string(),
        scope_value: scope.value(),
        catch_up: input.catch_up.clone(),
        enabled: input.enabled,
    };
    Ok((clean, crontab, scope))
}

/// The next five ticks of an expression, shown in its time zone, or why it is invalid (a
/// verdict, not an error: the editor asks on every keystroke).
pub fn preview(cron: &str, timezone: &str) -> SchedulePreview {
    let tz = if timezone.trim().is_empty() {
        "UTC"
    } else {
        timezone
    };
    match Crontab::parse(cron, tz) {
        Ok(c) => SchedulePreview {
            upcoming: upcoming(&c, Utc::now()),
            error: None,
        },
        Err(e) => SchedulePreview {
            upcoming: vec![],
            error: Some(e.to_string()),
        },
    }
}

fn upcoming(crontab: &Crontab, now: DateTime<Utc>) -> Vec<String> {
    crontab
        .upcoming(now, 5)
        .into_iter()
        .map(|t| {
            t.with_timezone(&crontab.tz)
                .format("%a %Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .collect()
}

fn view(r: &ScheduleRow, now: DateTime<Utc>) -> ScheduleView {
    let input = r.input();
    let upcoming = match Crontab::parse(&input.cron, &input.timezone) {
        Ok(c) if input.enabled => upcoming(&c, now),
        _ => vec![],
    };
    ScheduleView {
        id: r.id.clone(),
        scope_label: crate::domain::scope::label(&input.scope, input.scope_value.as_deref()),
        input,
        next_fire_at: r.next_fire_at.clone(),
        last_fire_at: r.last_fire_at.clone(),
        upcoming,
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
    }
}

/// One line for the audit log: the settings a schedule runs on.
fn describe(input: &ScheduleInput) -> String {
    format!(
        "cron {:?} in {}, scope {}{}, catch-up {}, {}",
        input.cron,
        input.timezone,
        input.scope,
        input
            .scope_value
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        input.catch_up,
        if input.enabled { "enabled" } else { "paused" }
    )
}

/// What one pass over the due schedules did.
#[derive(Debug, Default)]
pub struct FireReport {
    /// Runs this replica created (ticks it won).
    pub runs: Vec<String>,
    /// Digests this replica queued (ticks of digest schedules it won).
    pub digests: Vec<String>,
    /// Ticks recorded as skipped.
    pub skipped: usize,
    /// Ticks another replica claimed first.
    pub lost: usize,
    /// The earliest next tick of any enabled schedule.
    pub next_wake: Option<DateTime<Utc>>,
}

/// The schedules capability.
#[derive(Clone, Debug)]
pub struct Schedules {
    db: Db,
    runs: Runs,
    notify: Notify,
}

impl Schedules {
    pub fn new(db: Db, runs: Runs, notify: Notify) -> Schedules {
        Schedules { db, runs, notify }
    }

    pub async fn list(&self) -> Result<Vec<ScheduleView>, ServiceError> {
        let now = Utc::now();
        Ok(store::schedules::list(&self.db)
            .await?
            .iter()
            .map(|r| view(r, now))
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<ScheduleView, ServiceError> {
        let row = store::schedules::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no schedule '{id}'")))?;
        Ok(view(&row, Utc::now()))
    }

    pub async fn create(
        &self,
        input: ScheduleInput,
        actor: &str,
    ) -> Result<ScheduleView, ServiceError> {
        let view = self.save(None, &input, actor).await?;
        tracing::info!(schedule = %view.input.name, cron = %view.input.cron, tz = %view.input.timezone, "schedule created");
        Ok(view)
    }

    /// Replaces a schedule's settings; its next tick is recomputed from now.
    pub async fn update(
        &self,
        id: &str,
        input: ScheduleInput,
        actor: &str,
    ) -> Result<ScheduleView, ServiceError> {
        self.get(id).await?;
        self.save(Some(id), &input, actor).await
    }

    /// Validates and stores a new (`id` = None) or existing schedule, with its next tick
    /// from now (none while paused).
    async fn save(
        &self,
        id: Option<&str>,
        input: &ScheduleInput,
        actor: &str,
    ) -> Result<ScheduleView, ServiceError> {
        let (input, crontab, scope) = validate(input)?;
        if let Some(site) = scope.site().filter(|s| *s != NETWORK) {
            if facts::site(&self.db, site).await?.is_none() {
                return Err(ServiceError::NotFound(format!("no site '{site}'")));
            }
        }
        if store::schedules::name_taken(&self.db, &input.name, id.unwrap_or_default()).await? {
            return Err(ServiceError::BadRequest(format!(
                "a schedule named '{}' exists already",
                input.name
            )));
        }
        let now = Utc::now();
        let next = input
            .enabled
            .then(|| crontab.next_after(now))
            .flatten()
            .map(timestamp);
        let (id, create, action) = match id {
            None => (new_id(now, "sch"), true, "schedule.create"),
            Some(id) => (id.to_string(), false, "schedule.update"),
        };
        let mut tx = store::begin(&self.db).await?;
        store::schedules::save(&mut *tx, &id, create, &input, next, &timestamp(now)).await?;
        audit::record(
            &mut *tx,
            actor,
            action,
            &format!("schedule:{}", input.name),
            &describe(&input),
        )
        .await?;
        store::commit(tx).await?;
        self.get(&id).await
    }

    /// Pauses or resumes; resuming starts from the next tick after now (nothing is caught
    /// up). Only `enabled` and the next tick change: a schedule whose site has gone can
    /// still be paused.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<ScheduleView, ServiceError> {
        let s = self.get(id).await?;
        let now = Utc::now();
        let next = match (enabled, Crontab::parse(&s.input.cron, &s.input.timezone)) {
            (false, _) => None,
            (true, Ok(c)) => c.next_after(now).map(timestamp),
            (true, Err(e)) => return Err(ServiceError::BadRequest(e.to_string())),
        };
        let mut tx = store::begin(&self.db).await?;
        store::schedules::set_enabled(&mut *tx, id, enabled, next, &timestamp(now)).await?;
        audit::record(
            &mut *tx,
            actor,
            if enabled {
                "schedule.resume"
            } else {
                "schedule.pause"
            },
            &format!("schedule:{}", s.input.name),
            if enabled { "resumed" } else { "paused" },
        )
        .await?;
        store::commit(tx).await?;
        self.get(id).await
    }

    /// Deletes a schedule; its past runs stay in the history.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<(), ServiceError> {
        let s = self.get(id).await?;
        let mut tx = store::begin(&self.db).await?;
        if !store::schedules::delete(&mut *tx, id).await? {
            return Err(ServiceError::NotFound(format!("no schedule '{id}'")));
        }
        audit::record(
            &mut *tx,
            actor,
            "schedule.delete",
            &format!("schedule:{}", s.input.name),
            &describe(&s.input),
        )
        .await?;
        store::commit(tx).await?;
        Ok(())
    }

    /// Starts a run of the schedule's scope now (not a tick: it does not move the
    /// schedule).
    pub async fn run_now(&self, id: &str) -> Result<RunView, ServiceError> {
        let s = self.get(id).await?;
        let scope = Scope::parse(&s.input.scope, s.input.scope_value.as_deref())?;
        if scope == Scope::Digest {
            return Err(ServiceError::BadRequest(format!(
                "'{}' sends the digest: use Send digest now (POST /api/v1/digests)",
                s.input.name
            )));
        }
        self.runs
            .start_scope(&scope, false, RunOrigin::Manual, &s.input.view)
            .await
    }

    /// The scope of a schedule by name (`opsight refresh --schedule NAME`).
    pub async fn scope_of(&self, name: &str) -> Result<Scope, ServiceError> {
        let s = self
            .list()
            .await?
            .into_iter()
            .find(|s| s.input.name == name)
            .ok_or_else(|| ServiceError::NotFound(format!("no schedule named '{name}'")))?;
        Ok(Scope::parse(
            &s.input.scope,
            s.input.scope_value.as_deref(),
        )?)
    }

    /// Claims and runs every due tick at `now`. One schedule's failure (a bad scope, a
    /// database error) is logged and does not stop the others; its tick stays due and is
    /// tried again on the next pass.
    #[tracing::instrument(skip_all)]
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<FireReport, ServiceError> {
        let mut report = FireReport::default();
        for row in store::schedules::due(&self.db, &timestamp(now)).await? {
            if let Err(e) = self.fire_one(&row, now, &mut report).await {
                tracing::error!(schedule = %row.name, error = %chain(&e), "schedule tick failed");
            }
        }
        if !report.runs.is_empty() {
            self.runs.queue().notify.notify_one();
        }
        report.next_wake = store::schedules::next_tick(&self.db)
            .await?
            .as_deref()
            .and_then(parse_timestamp);
        Ok(report)
    }

    /// Claims and runs one due schedule's tick (see [`Schedules::fire_due`]).
    #[tracing::instrument(skip_all, fields(schedule = %s.name))]
    async fn fire_one(
        &self,
        s: &ScheduleRow,
        now: DateTime<Utc>,
        report: &mut FireReport,
    ) -> Result<(), ServiceError> {
        let Some(due) = s.next_fire_at.as_deref() else {
            return Ok(());
        };
        let Some(due_at) = parse_timestamp(due) else {
            return Ok(());
        };
        let crontab = match Crontab::parse(&s.cron, &s.timezone) {
            Ok(c) => c,
            Err(e) => {
                // Stored before a rule change made it invalid: pause it rather than spin.
                tracing::error!(error = %e, "invalid stored schedule; pausing it");
                if let Err(e) = store::schedules::disable(&self.db, &s.id).await {
                    tracing::error!(error = %chain(&e), "could not pause the invalid schedule");
                }
                return Ok(());
            }
        };
        let (tick, next) = decide(&crontab, due_at, now, &s.catch_up);
        let scope = Scope::parse(&s.scope, s.scope_value.as_deref())?;
        let digest = scope == Scope::Digest;
        let (at, missed, skipped) = match tick {
            Tick::Fire { at, missed } => (at, missed, false),
            Tick::Skip { at, missed } => (at, missed, true),
        };
        // The cards' period as of the tick, on the tick's date in the schedule's own time
        // zone (a monthly schedule at 06:00 on the 1st in Tokyo fires on the last day of the
        // month in UTC, and means the month just ended), or the pinned reference date when
        // replaying history. A stored choice that no longer parses falls back to the week.
        let clock = self.runs.clock();
        let today = clock
            .as_of
            .unwrap_or_else(|| at.with_timezone(&crontab.tz).date_naive());
        let (period, compare) = match super::run_period(&s.input().view, clock.on(today)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "schedule period invalid; using the default view");
                (String::new(), crate::domain::period::Compare::Previous)
            }
        };
        let cards = if skipped || digest {
            vec![]
        } else {
            match self.runs.cards_in_scope(&scope, &period, compare).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "schedule scope has no cards");
                    vec![]
                }
            }
        };
        // Ticks counted (the fired one included): at the cap there may have been more.
        let counted = missed + usize::from(!skipped);
        let at_least = if counted >= MAX_COUNTED {
            "at least "
        } else {
            ""
        };
        let note = match (skipped, missed) {
            (true, n) => Some(format!(
                "{at_least}{n} tick(s) missed while no replica was running; skipped"
            )),
            (false, 0) => None,
            (false, n) => Some(format!(
                "catch-up: {at_least}{n} earlier tick(s) missed while no replica ran; ran once"
            )),
        };
        // A digest is built before the claim so that claiming the tick and queueing the
        // digest commit together: if building fails, the tick stays due and is tried again.
        let built = if digest && !skipped {
            // No period named: the default grain's latest complete one as of the tick's
            // day in the schedule's time zone (not as of now in UTC).
            let label = if period.is_empty() {
                clock.on(today).default_view().0.label()
            } else {
                period.clone()
            };
            let view = PeriodChoice::new(&label, compare.key());
            Some(
                self.notify
                    .build_digest(&view, &crate::domain::access::Reach::All)
                    .await?,
            )
        } else {
            None
        };
        let mut tx = store::begin(&self.db).await?;
        if !store::schedules::claim_tick(&mut *tx, &s.id, due, next.map(timestamp), &timestamp(at))
            .await?
        {
            report.lost += 1;
            return Ok(());
        }
        if digest {
            let queued = match &built {
                Some((d, ms)) => Some(
                    self.notify
                        .queue_digest(&mut tx, d, *ms, Some(&s.id))
                        .await?,
                ),
                None => None,
            };
            store::commit(tx).await?;
            match queued {
                Some(id) => {
                    tracing::info!(tick = %timestamp(at), notification = %id, "digest schedule fired");
                    self.notify.wake();
                    report.digests.push(id);
                }
                None => report.skipped += 1,
            }
            return Ok(());
        }
        let run = insert(
            &mut tx,
            &NewRun {
                origin: RunOrigin::Schedule,
                scope: scope.key(),
                scope_value: scope.value(),
                force: false,
                schedule: Some((&s.id, &s.name)),
                scheduled_for: Some(timestamp(at)),
                note,
                skipped,
                period,
                compare,
            },
            &cards,
        )
        .await?;
        store::commit(tx).await?;
        if skipped {
            report.skipped += 1;
            tracing::info!(tick = %timestamp(at), missed, "missed ticks skipped");
        } else {
            tracing::info!(tick = %timestamp(at), run = %run, jobs = cards.len(), "schedule fired");
            report.runs.push(run);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn on_time_ticks_fire_and_missed_ticks_follow_the_catch_up_choice() {
        let hourly = Crontab::parse("0 * * * *", "UTC").unwrap();
        let due = utc("2026-11-21T10:00:00Z");
        // On time (a second late).
        let (tick, next) = decide(&hourly, due, utc("2026-11-21T10:00:01Z"), "skip");
        assert_eq!(tick, Tick::Fire { at: due, missed: 0 });
        assert_eq!(next, Some(utc("2026-11-21T11:00:00Z")));
        // Down from 09:30 to 13:10: ticks 10, 11, 12, 13 were missed.
        let now = utc("2026-11-21T13:10:00Z");
        let (tick, next) = decide(&hourly, due, now, "once");
        assert_eq!(
            tick,
            Tick::Fire {
                at: utc("2026-11-21T13:00:00Z"),
                missed: 3
            }
        );
        assert_eq!(next, Some(utc("2026-11-21T14:00:00Z")));
        let (tick, _) = decide(&hourly, due, now, "skip");
        assert_eq!(
            tick,
            Tick::Skip {
                at: utc("2026-11-21T13:00:00Z"),
                missed: 4
            }
        );
        // One tick, but far too late: also a catch-up.
        let (tick, _) = decide(&hourly, due, utc("2026-11-21T10:30:00Z"), "skip");
        assert_eq!(tick, Tick::Skip { at: due, missed: 1 });
        // A per-second schedule down for a week: counting stops at MAX_COUNTED and the latest
        // tick is still the last second before now.
        let every_second = Crontab::parse("* * * * * *", "UTC").unwrap();
        let now = utc("2026-11-28T10:00:00.5Z");
        let (tick, next) = decide(&every_second, due, now, "once");
        assert_eq!(
            tick,
            Tick::Fire {
                at: utc("2026-11-28T10:00:00Z"),
                missed: MAX_COUNTED - 1
            }
        );
        assert_eq!(next, Some(utc("2026-11-28T10:00:01Z")));
    }
}
