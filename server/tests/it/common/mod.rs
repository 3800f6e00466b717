//! Test helpers: a fresh SQLite database per test and the whole server on an ephemeral
//! port, with the agent pointed at the built-in analyst or at a mock.
#![allow(dead_code)] // each test file uses a different subset

pub mod serve;
pub mod stub;

use app::domain::access::Role;
use app::dto::NewToken;
use app::ssr::access::limits::Allowance;
use app::ssr::access::Principal;
use app::ssr::agent::{AgentKind, AgentProfile, Agents, Secret};
use app::ssr::data::seed::{seed_demo, SeedOptions};
use app::ssr::state::AppState;
use app::ssr::store::{self, Db};
use chrono::NaiveDate;
use server::config::Config;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The reference date of every test: a Saturday, so the latest complete week is
/// 2026-11-09..15.
pub const AS_OF: &str = "2026-11-21";

pub fn as_of() -> NaiveDate {
    app::domain::period::parse_date(AS_OF).unwrap()
}

/// A fresh database for one test, dropped (or deleted) when the test ends: a SQLite file in
/// its own temporary folder by default, or a new PostgreSQL database when
/// `OPSIGHT_TEST_DATABASE=postgres` (server: `OPSIGHT_TEST_PG_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub struct TestDb {
    pub db: Db,
    pub dir: PathBuf,
    /// The URL other processes (CLI, replicas) use to reach the same database.
    pub url: String,
    /// The PostgreSQL database to drop, when there is one.
    pg_name: Option<String>,
}

impl TestDb {
    /// A database made elsewhere (a restored backup), dropped with `dir`.
    pub fn existing(db: Db, dir: PathBuf, url: String) -> TestDb {
        TestDb {
            db,
            dir,
            url,
            pg_name: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime: use a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = admin_pool().await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                    }
                })
            })
            .join();
        }
    }
}

/// True when this test run uses PostgreSQL.
pub fn on_postgres() -> bool {
    matches!(
        std::env::var("OPSIGHT_TEST_DATABASE").as_deref(),
        Ok("postgres") | Ok("postgresql") | Ok("pg")
    )
}

fn pg_server_url() -> String {
    std::env::var("OPSIGHT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_pool() -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&pg_server_url())
        .await
}

pub async fn test_db() -> TestDb {
    if on_postgres() {
        pg_test_db().await
    } else {
        sqlite_test_db().await
    }
}

fn test_dir() -> (u32, PathBuf) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("opsight-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (n, dir)
}

/// A fresh PostgreSQL database whatever `OPSIGHT_TEST_DATABASE` says (replica tests).
pub async fn pg_test_db() -> TestDb {
    let (n, dir) = test_dir();
    {
        let name = format!("opsight_test_{}_{n}", std::process::id());
        let admin = admin_pool().await.unwrap_or_else(|e| {
            panic!(
                "this test needs PostgreSQL at {} (OPSIGHT_TEST_PG_URL), which is not reachable: {e}. \
                 See README, Tests, for how to run without it.",
                pg_server_url()
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&pg_server_url()).unwrap();
        url.set_path(&name);
        let url = url.to_string();
        let db = store::connect(&url).await.expect("test database");
        TestDb {
            db,
            dir,
            url,
            pg_name: Some(name),
        }
    }
}

/// A fresh SQLite database whatever `OPSIGHT_TEST_DATABASE` says (backup tests).
pub async fn sqlite_test_db() -> TestDb {
    let (_, dir) = test_dir();
    let url = format!("sqlite:{}/test.db", dir.display());
    let db = store::connect(&url).await.expect("test database");
    TestDb {
        db,
        dir,
        url,
        pg_name: None,
    }
}

pub async fn seed(db: &Db, lines: usize) {
    seed_demo(
        db,
        SeedOptions {
            lines,
            as_of: as_of(),
            seed: 7,
        },
        false,
    )
    .await
    .expect("seed");
}

/// A profile named "test agent" for a server of `kind` at `url`.
pub fn profile(kind: AgentKind, url: &str, timeout: Duration, token: Option<&str>) -> AgentProfile {
    let mut p = AgentProfile::new("test-agent", kind, url);
    p.timeout = timeout;
    p.token = token.map(Secret::new);
    p
}

/// One agent of `kind` doing cards and questions.
pub fn agents(kind: AgentKind, url: &str, timeout: Duration, token: Option<&str>) -> Agents {
    Agents::single(profile(kind, url, timeout, token)).unwrap()
}

/// The client of an MLflow-serve style agent at `url` (tests of the client alone).
pub fn agent(
    url: &str,
    timeout: Duration,
    token: Option<&str>,
) -> std::sync::Arc<app::ssr::agent::AgentClient> {
    agents(AgentKind::MlflowServe, url, timeout, token)
        .cards()
        .clone()
}

/// The server, listening on 127.0.0.1:<ephemeral>, stopped on drop.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    /// Sends the admin API token on every request.
    pub http: reqwest::Client,
    /// Sends no credentials.
    pub anon: reqwest::Client,
    /// The admin API token `http` sends.
    pub admin_token: String,
    pub _db: TestDb,
    /// Stops the application (its loops, then HTTP).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The configuration of a test application: the test database, an ephemeral port, the
/// tests' reference date, no agents or notifications file, and agent-call limits far above
/// what tests make in a burst (the rate-limit tests set their own).
pub fn config(database_url: &str) -> Config {
    let mut c = Config::from_lookup(
        |k| match k {
            "DATABASE_URL" => Some(database_url.to_string()),
            "OPSIGHT_ADDR" => Some("127.0.0.1:0".into()),
            "OPSIGHT_AS_OF" => Some(AS_OF.into()),
            _ => None,
        },
        |_| None,
    )
    .expect("test configuration");
    c.allowance = Allowance {
        per_user: 100_000,
        global: 100_000,
    };
    c
}

/// Spawns the app. `agent_url = None` uses the app's own built-in analyst; a URL is an
/// `mlflow-serve` agent there.
pub async fn spawn_app(lines: usize, agent_url: Option<&str>) -> TestApp {
    match agent_url {
        Some(url) => {
            spawn_app_with(lines, || {
                vec![profile(
                    AgentKind::MlflowServe,
                    url,
                    Duration::from_secs(5),
                    None,
                )]
            })
            .await
        }
        None => spawn_app_with(lines, builtin).await,
    }
}

/// Spawns the app with these agent profiles; the first does cards, the last questions.
pub async fn spawn_app_with(lines: usize, profiles: impl FnOnce() -> Vec<AgentProfile>) -> TestApp {
    spawn_app_tuned(lines, |c| set_agents(c, profiles())).await
}

/// The built-in analyst, served by the app itself (its URL is filled in once the app
/// listens).
pub fn builtin() -> Vec<AgentProfile> {
    vec![profile(
        AgentKind::Builtin,
        "",
        Duration::from_secs(5),
        None,
    )]
}

/// Makes these the configured agents: the first does cards, the last questions.
pub fn set_agents(c: &mut Config, profiles: Vec<AgentProfile>) {
    c.cards_agent = profiles.first().unwrap().name.clone();
    c.questions_agent = profiles.last().unwrap().name.clone();
    c.agents = profiles;
}

/// The built-in analyst's app with notification channels.
pub async fn spawn_app_notifying(lines: usize, notifier: app::ssr::notify::Notifier) -> TestApp {
    spawn_app_tuned(lines, |c| {
        set_agents(c, builtin());
        c.notifier = notifier;
    })
    .await
}

/// The built-in analyst's app, with `tune` changing the configuration (auth settings,
/// rate limits) before it is built.
pub async fn spawn_builtin_tuned(lines: usize, tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_tuned(lines, |c| {
        set_agents(c, builtin());
        tune(c);
    })
    .await
}

/// The app on a fresh database seeded with `lines` demo lines, configured by [`config`]
/// and then `tune`.
pub async fn spawn_app_tuned(lines: usize, tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(test_db().await, lines, tune).await
}

/// [`spawn_app_tuned`] on this database.
pub async fn spawn_app_on(tdb: TestDb, lines: usize, tune: impl FnOnce(&mut Config)) -> TestApp {
    if lines > 0 {
        seed(&tdb.db, lines).await;
    }
    let mut config = config(&tdb.url);
    tune(&mut config);
    let app = server::Application::build_with(config, tdb.db.clone())
        .await
        .expect("the application builds")
        .with_worker(server::scheduler::WorkerOptions {
            capacity: 4,
            poll: Duration::from_millis(100),
            grace: Duration::from_secs(1),
        });
    let state = app.state().clone();
    let base = format!("http://{}", app.local_addr());
    let admin_token = state
        .accounts()
        .create_token(
            NewToken {
                name: "tests".into(),
                role: Role::Admin,
                sites: None,
            },
            &Principal::cli(),
        )
        .await
        .expect("admin token")
        .secret;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("the application stops cleanly");
    });
    TestApp {
        base,
        state,
        http: client(Some(&admin_token)),
        anon: client(None),
        admin_token,
        _db: tdb,
        stop: Some(tx),
    }
}

/// An HTTP client sending `token` as a bearer token on every request.
pub fn client(token: Option<&str>) -> reqwest::Client {
    client_with(token, true)
}

/// [`client`], following redirects or (`follow = false`) showing them.
pub fn client_with(token: Option<&str>, follow: bool) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .redirect(if follow {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        })
        .build()
        .unwrap()
}

impl TestApp {
    /// A new API token with `role`, and a client that sends it.
    pub async fn client_as(&self, role: Role) -> reqwest::Client {
        let t = self
            .state
            .accounts()
            .create_token(
                NewToken {
                    name: format!("tests-{role}"),
                    role,
                    sites: None,
                },
                &Principal::cli(),
            )
            .await
            .unwrap();
        client(Some(&t.secret))
    }

    /// The store.
    pub fn db(&self) -> &Db {
        self.state.db()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/insights/refresh` for one card.
    pub async fn refresh(&self, site: &str, metric: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/insights/refresh",
            &serde_json::json!({"site": site, "metric": metric}),
        )
        .await
    }

    /// One card as `GET /api/v1/dashboard` reports it.
    pub async fn card(&self, site: &str, metric: app::domain::kpi::Metric) -> app::dto::Card {
        let d: app::dto::Dashboard = self.get("/api/v1/dashboard").await.json().await.unwrap();
        std::iter::once(&d.network)
            .chain(&d.sites)
            .find(|s| s.site == site)
            .and_then(|s| s.card(metric))
            .cloned()
            .expect("card on the dashboard")
    }

    /// Starts a conversation (or a follow-up when `conversation` is given) and reads the
    /// turn's SSE events to the end: (deltas in arrival order, the final turn).
    pub async fn ask(
        &self,
        site: &str,
        metric: &str,
        conversation: Option<&str>,
        question: &str,
    ) -> (String, Vec<String>, app::dto::TurnView) {
        let started = match conversation {
            None => {
                self.post_json(
                    "/api/v1/conversations",
                    &serde_json::json!({"site": site, "metric": metric, "question": question}),
                )
                .await
            }
            Some(id) => {
                self.post_json(
                    &format!("/api/v1/conversations/{id}/turns"),
                    &serde_json::json!({"question": question}),
                )
                .await
            }
        };
        assert_eq!(started.status(), 202, "question accepted");
        let started: app::dto::TurnStarted = started.json().await.unwrap();
        let (deltas, turn) = self.turn_events(&started.turn_id).await;
        (started.conversation_id, deltas, turn)
    }

    /// Reads `/api/v1/turns/{id}/events` to its final event.
    pub async fn turn_events(&self, turn_id: &str) -> (Vec<String>, app::dto::TurnView) {
        use app::dto::TurnEvent;
        let mut response = self.get(&format!("/api/v1/turns/{turn_id}/events")).await;
        assert_eq!(response.status(), 200);
        let mut decoder = app::domain::insight::SseDecoder::default();
        let mut deltas = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            for data in decoder.push(&chunk) {
                match serde_json::from_str::<TurnEvent>(&data) {
                    Ok(TurnEvent::Snapshot { text }) if !text.is_empty() => deltas.push(text),
                    Ok(TurnEvent::Delta { text }) => deltas.push(text),
                    Ok(TurnEvent::Final { turn }) => return (deltas, *turn),
                    _ => {}
                }
            }
        }
        panic!("the event stream ended without a final event");
    }

    /// Starts a run and waits (up to 60 s) until it has finished.
    pub async fn run(&self, scope: &str, value: Option<&str>) -> app::dto::RunDetail {
        let r = self
            .post_json(
                "/api/v1/runs",
                &serde_json::json!({"scope": scope, "scope_value": value}),
            )
            .await;
        assert_eq!(r.status(), 202, "run accepted");
        let run: app::dto::RunView = r.json().await.unwrap();
        self.wait_run(&run.id).await
    }

    /// Polls a run until it is no longer running.
    pub async fn wait_run(&self, id: &str) -> app::dto::RunDetail {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d: app::dto::RunDetail = self
                .get(&format!("/api/v1/runs/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if d.run.status != app::domain::status::RunStatus::Running {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} did not finish: {:?}",
                d.run
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}
