//! Schedules: the API (validation, preview, edit, pause, delete), ticks claimed exactly
//! once when replicas race, catch-up after downtime, and the tick loop's timing on a
//! paused tokio clock (time zones, DST changes, catch-up).

use crate::common::{spawn_app, test_db, TestDb};
use app::dto::{RunView, ScheduleInput, ScheduleView};
use app::ssr::agent::AgentKind;
use app::ssr::runs::crontab::Crontab;
use app::ssr::runs::schedules::{decide, Tick};
use app::ssr::state::AppState;
use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;
use server::scheduler::{tick_loop, Clock};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A replica (an application never run: no background work, the test drives ticks) on
/// the test database; each call is another replica with its own identity.
async fn replica(tdb: &TestDb) -> AppState {
    let mut c = crate::common::config(&tdb.url);
    crate::common::set_agents(
        &mut c,
        vec![crate::common::profile(
            AgentKind::MlflowServe,
            "http://127.0.0.1:9",
            Duration::from_secs(1),
            None,
        )],
    );
    server::Application::build_with(c, tdb.db.clone())
        .await
        .unwrap()
        .state()
        .clone()
}

/// A replica on a freshly seeded test database.
async fn quiet_state(tdb: &TestDb) -> AppState {
    crate::common::seed(&tdb.db, 3000).await;
    replica(tdb).await
}

fn input(name: &str, cron: &str, catch_up: &str) -> ScheduleInput {
    ScheduleInput {
        name: name.into(),
        cron: cron.into(),
        timezone: "UTC".into(),
        scope: "site".into(),
        scope_value: Some("DAL".into()),
        catch_up: catch_up.into(),
        enabled: true,
        view: Default::default(),
    }
}

async fn runs_of(state: &AppState) -> Vec<RunView> {
    let mut r = state
        .runs()
        .list(
            app::dto::RunsQuery {
                limit: Some(500),
                active: None,
            },
            &app::domain::access::Reach::All,
        )
        .await
        .unwrap();
    r.reverse();
    r
}

#[tokio::test]
async fn schedules_are_validated_previewed_edited_paused_and_deleted() {
    let app = spawn_app(3000, None).await;
    // Preview: the next five ticks in the schedule's zone.
    let r = app
        .post_json(
            "/api/v1/schedules/preview",
            &json!({"cron": "0 6 * * 1-5", "timezone": "America/Chicago"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let p: serde_json::Value = r.json().await.unwrap();
    let upcoming: Vec<String> = serde_json::from_value(p["upcoming"].clone()).unwrap();
    assert_eq!(upcoming.len(), 5);
    assert!(upcoming
        .iter()
        .all(|t| t.contains("06:00:00") && (t.contains("CST") || t.contains("CDT"))));
    assert!(upcoming
        .iter()
        .all(|t| !t.starts_with("Sat") && !t.starts_with("Sun")));

    // Bad input: each gets a clear 400 and nothing is stored.
    for (body, says) in [
        (
            json!({"name": "x", "cron": "0 6 * *", "timezone": "UTC", "scope": "all"}),
            "5 fields",
        ),
        (
            json!({"name": "x", "cron": "0 25 * * *", "timezone": "UTC", "scope": "all"}),
            "not a valid cron expression",
        ),
        (
            json!({"name": "x", "cron": "0 6 * * 8", "timezone": "UTC", "scope": "all"}),
            "day-of-week",
        ),
        (
            json!({"name": "x", "cron": "0 6 * * *", "timezone": "Moon/Base", "scope": "all"}),
            "not a time zone",
        ),
        (
            json!({"name": "x", "cron": "0 6 * * *", "timezone": "UTC", "scope": "site", "scope_value": "NOPE"}),
            "no site 'NOPE'",
        ),
        (
            json!({"name": "", "cron": "0 6 * * *", "timezone": "UTC", "scope": "all"}),
            "name",
        ),
        (
            json!({"name": "x", "cron": "0 6 * * *", "timezone": "UTC", "scope": "all", "catch_up": "maybe"}),
            "catch_up",
        ),
    ] {
        let r = app.post_json("/api/v1/schedules", &body).await;
        // A site that does not exist is 404, as everywhere (it was 400 here before).
        let status = if says.starts_with("no site") {
            404
        } else {
            400
        };
        assert_eq!(r.status(), status, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains(says), "{says}: {e}");
    }
    let none: Vec<ScheduleView> = app.get("/api/v1/schedules").await.json().await.unwrap();
    assert!(none.is_empty());

    // Create: Sunday written as 7 is accepted and shown as written.
    let r = app
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "Morning OTIF", "cron": "30 6 * * 7", "timezone": "Europe/Berlin",
                    "scope": "metric", "scope_value": "otif", "catch_up": "skip"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let s: ScheduleView = r.json().await.unwrap();
    assert_eq!(s.input.cron, "30 6 * * 7");
    assert_eq!(s.scope_label, "metric OTIF");
    assert!(s.upcoming.iter().all(|t| t.starts_with("Sun")), "{s:?}");
    assert!(s.next_fire_at.is_some());
    // Names are unique.
    let dup = app
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "Morning OTIF", "cron": "@daily", "timezone": "UTC", "scope": "all"}),
        )
        .await;
    assert_eq!(dup.status(), 400);

    // Pause: no next tick. Resume: a new one.
    let mut edit = s.input.clone();
    edit.enabled = false;
    let r = app
        .http
        .put(format!("{}/api/v1/schedules/{}", app.base, s.id))
        .json(&edit)
        .send()
        .await
        .unwrap();
    let paused: ScheduleView = r.json().await.unwrap();
    assert!(!paused.input.enabled && paused.next_fire_at.is_none() && paused.upcoming.is_empty());
    edit.enabled = true;
    edit.cron = "0 7 * * 1".into();
    let r = app
        .http
        .put(format!("{}/api/v1/schedules/{}", app.base, s.id))
        .json(&edit)
        .send()
        .await
        .unwrap();
    let resumed: ScheduleView = r.json().await.unwrap();
    assert!(resumed.upcoming.iter().all(|t| t.starts_with("Mon")));

    // Run now: a manual run of the schedule's scope (13 OTIF cards).
    let r = app
        .post_json(&format!("/api/v1/schedules/{}/run", s.id), &json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let run: RunView = r.json().await.unwrap();
    assert_eq!((run.origin.as_str(), run.total), ("manual", 13));
    app.wait_run(&run.id).await;

    // Delete; its runs stay in the history.
    let r = app
        .http
        .delete(format!("{}/api/v1/schedules/{}", app.base, s.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get(&format!("/api/v1/schedules/{}", s.id))
            .await
            .status(),
        404
    );
    let history: Vec<RunView> = app.get("/api/v1/runs").await.json().await.unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test]
async fn a_tick_becomes_exactly_one_run_when_replicas_race_for_it() {
    let tdb = test_db().await;
    let a = quiet_state(&tdb).await;
    // A second replica: same database, its own identity.
    let b = replica(&tdb).await;
    let s = a
        .schedules()
        .create(input("hourly", "0 * * * *", "once"), "test")
        .await
        .unwrap();
    let due = utc(s.next_fire_at.as_deref().unwrap());
    // Not due yet.
    let early = a
        .schedules()
        .fire_due(due - Span::seconds(1))
        .await
        .unwrap();
    assert!(early.runs.is_empty());
    // Both replicas see the tick at once, several times over.
    let now = due + Span::milliseconds(300);
    let (ra, rb) = tokio::join!(a.schedules().fire_due(now), b.schedules().fire_due(now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.runs.len() + rb.runs.len(), 1, "{ra:?} {rb:?}");
    let again = b.schedules().fire_due(now).await.unwrap();
    assert!(again.runs.is_empty());
    assert_eq!(again.next_wake, Some(due + Span::hours(1)));
    let runs = runs_of(&a).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].scheduled_for.as_deref().map(utc), Some(due));
    assert_eq!((runs[0].origin.as_str(), runs[0].total), ("schedule", 5));
    assert_eq!(runs[0].schedule_name.as_deref(), Some("hourly"));
    // The next three ticks, each raced: three more runs.
    for h in 1..=3 {
        let now = due + Span::hours(h) + Span::milliseconds(5);
        let (x, y) = tokio::join!(a.schedules().fire_due(now), b.schedules().fire_due(now));
        assert_eq!(x.unwrap().runs.len() + y.unwrap().runs.len(), 1);
    }
    let ticks: Vec<DateTime<Utc>> = runs_of(&a)
        .await
        .iter()
        .map(|r| utc(r.scheduled_for.as_deref().unwrap()))
        .collect();
    assert_eq!(
        ticks,
        (0..4).map(|h| due + Span::hours(h)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_digest_schedule_queues_one_digest_per_tick_and_refreshes_nothing() {
    let tdb = test_db().await;
    let a = quiet_state(&tdb).await;
    let b = replica(&tdb).await;
    let s = a
        .schedules()
        .create(
            ScheduleInput {
                scope: "digest".into(),
                scope_value: None,
                ..input("morning digest", "0 7 * * 1-5", "once")
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(s.scope_label, "digest to the notification channels");
    // "Run now" is for refreshes; a digest is sent with POST /api/v1/digests.
    let err = a.schedules().run_now(&s.id).await.unwrap_err().to_string();
    assert!(err.contains("sends the digest"), "{err}");
    let due = utc(s.next_fire_at.as_deref().unwrap());
    let now = due + Span::milliseconds(200);
    let (ra, rb) = tokio::join!(a.schedules().fire_due(now), b.schedules().fire_due(now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.digests.len() + rb.digests.len(), 1, "{ra:?} {rb:?}");
    assert!(
        ra.runs.is_empty() && rb.runs.is_empty(),
        "a digest refreshes no card"
    );
    let listed = a
        .notify()
        .notifications(app::dto::NotificationsQuery { limit: Some(10) })
        .await
        .unwrap()
        .notifications;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, "digest");
    assert!(listed[0].title.starts_with("Opsight digest "));
    assert!(runs_of(&a).await.is_empty());
}

#[tokio::test]
async fn missed_ticks_run_once_or_are_skipped_as_chosen() {
    let tdb = test_db().await;
    let state = quiet_state(&tdb).await;
    let once = state
        .schedules()
        .create(input("catch up", "0 * * * *", "once"), "test")
        .await
        .unwrap();
    let skip = state
        .schedules()
        .create(input("skip", "30 * * * *", "skip"), "test")
        .await
        .unwrap();
    let due_once = utc(once.next_fire_at.as_deref().unwrap());
    let due_skip = utc(skip.next_fire_at.as_deref().unwrap());
    // Every replica was down for five hours.
    let now = due_once + Span::hours(5) + Span::minutes(10);
    let report = state.schedules().fire_due(now).await.unwrap();
    assert_eq!((report.runs.len(), report.skipped), (1, 1));
    let runs = runs_of(&state).await;
    let caught = runs
        .iter()
        .find(|r| r.schedule_name.as_deref() == Some("catch up"))
        .unwrap();
    assert_eq!(caught.status, "running");
    assert_eq!(caught.total, 5);
    assert_eq!(
        caught.scheduled_for.as_deref().map(utc),
        Some(due_once + Span::hours(5)),
        "the latest missed tick"
    );
    assert!(caught
        .note
        .as_deref()
        .unwrap()
        .contains("5 earlier tick(s) missed"));
    let skipped = runs
        .iter()
        .find(|r| r.schedule_name.as_deref() == Some("skip"))
        .unwrap();
    assert_eq!((skipped.status.as_str(), skipped.total), ("skipped", 0));
    assert!(skipped.scheduled_for.as_deref().map(utc) > Some(due_skip));
    // Both resume at their next tick after now.
    let list = state.schedules().list().await.unwrap();
    for s in list {
        let next = utc(s.next_fire_at.as_deref().unwrap());
        assert!(next > now && next - now <= Span::hours(1), "{s:?}");
    }
}

/// An in-memory schedule driven by the real decision code, for the loop's timing.
struct Sim {
    crontab: Crontab,
    catch_up: &'static str,
    next: Option<DateTime<Utc>>,
    /// (decision, the loop's clock when it fired).
    fired: Vec<(Tick, DateTime<Utc>)>,
}

fn run_loop(
    sim: Arc<Mutex<Sim>>,
    clock: Clock,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(tick_loop(
        clock,
        Duration::from_secs(3600),
        move |now| {
            let mut s = sim.lock().unwrap();
            if let Some(due) = s.next.filter(|d| *d <= now) {
                let (tick, next) = decide(&s.crontab, due, now, s.catch_up);
                s.fired.push((tick, now));
                s.next = next;
            }
            let next = s.next;
            async move { next }
        },
        stopped,
    ));
    (stop, handle)
}

fn sim(expr: &str, tz: &str, catch_up: &'static str, start: DateTime<Utc>) -> Arc<Mutex<Sim>> {
    let crontab = Crontab::parse(expr, tz).unwrap();
    let next = crontab.next_after(start);
    Arc::new(Mutex::new(Sim {
        crontab,
        catch_up,
        next,
        fired: vec![],
    }))
}

/// What fired, as text. With `on_time`, every fire must have happened exactly at its tick
/// (catch-ups happen later, when the loop is back).
fn fired(sim: &Arc<Mutex<Sim>>, on_time: bool) -> Vec<String> {
    sim.lock()
        .unwrap()
        .fired
        .iter()
        .map(|(tick, now)| match tick {
            Tick::Fire { at, missed } => {
                if on_time {
                    assert_eq!(at, now, "fired exactly at its tick");
                }
                format!("{} fire missed={missed}", at.to_rfc3339())
            }
            Tick::Skip { at, missed } => format!("{} skip missed={missed}", at.to_rfc3339()),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_tick_loop_fires_on_time_across_dst_changes() {
    // Fall back in New York (2026-11-01): 01:30 happens twice, the job runs once.
    let start = utc("2026-10-30T12:00:00Z");
    let s = sim("30 1 * * *", "America/New_York", "once", start);
    let (stop, handle) = run_loop(s.clone(), Clock::tokio_from(start));
    tokio::time::sleep(Duration::from_secs(4 * 86_400)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(
        fired(&s, true),
        [
            "2026-10-31T05:30:00+00:00 fire missed=0", // 01:30 EDT
            "2026-11-01T05:30:00+00:00 fire missed=0", // the first 01:30 (EDT); not again at EST
            "2026-11-02T06:30:00+00:00 fire missed=0", // 01:30 EST
            "2026-11-03T06:30:00+00:00 fire missed=0",
        ]
    );

    // Spring forward in Berlin (2026-03-29): 02:30 does not exist; the job runs at 03:00.
    let start = utc("2026-03-27T12:00:00Z");
    let s = sim("30 2 * * *", "Europe/Berlin", "once", start);
    let (stop, handle) = run_loop(s.clone(), Clock::tokio_from(start));
    tokio::time::sleep(Duration::from_secs(3 * 86_400)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(
        fired(&s, true),
        [
            "2026-03-28T01:30:00+00:00 fire missed=0", // 02:30 CET
            "2026-03-29T01:00:00+00:00 fire missed=0", // 03:00 CEST, the end of the gap
            "2026-03-30T00:30:00+00:00 fire missed=0", // 02:30 CEST
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_tick_loop_catches_up_once_or_skips_after_downtime() {
    for (catch_up, after_restart) in [
        ("once", "2026-11-21T15:00:00+00:00 fire missed=4"),
        ("skip", "2026-11-21T15:00:00+00:00 skip missed=5"),
    ] {
        let start = utc("2026-11-21T08:30:00Z");
        let s = sim("0 * * * *", "UTC", catch_up, start);
        let clock = Clock::tokio_from(start);
        let (stop, handle) = run_loop(s.clone(), clock);
        // Up until 10:45: ticks at 09:00 and 10:00.
        tokio::time::sleep(Duration::from_secs(2 * 3600 + 15 * 60)).await;
        stop.send(true).unwrap();
        handle.await.unwrap();
        // Down from 10:45 to 15:20 (ticks 11..15 missed), then back.
        tokio::time::sleep(Duration::from_secs(4 * 3600 + 35 * 60)).await;
        let (stop, handle) = run_loop(s.clone(), clock);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        stop.send(true).unwrap();
        handle.await.unwrap();
        let fired = fired(&s, false);
        assert_eq!(
            fired,
            [
                "2026-11-21T09:00:00+00:00 fire missed=0".to_string(),
                "2026-11-21T10:00:00+00:00 fire missed=0".into(),
                after_restart.into(),
                "2026-11-21T16:00:00+00:00 fire missed=0".into(),
            ],
            "{catch_up}"
        );
        // The catch-up happened as soon as the loop was back (15:20), not at a later tick.
        assert_eq!(s.lock().unwrap().fired[2].1, utc("2026-11-21T15:20:00Z"));
    }
}
