//! Test helpers: a fresh SQLite database per test and the whole server on an ephemeral
//! port, with the agent pointed at the built-in analyst or at a mock.
#![allow(dead_code)] // each test file uses a different subset

use app::ssr::agent::{AgentClient, AgentConfig, Secret};
use app::ssr::db::{self, Db};
use app::ssr::seed::{seed_demo, SeedOptions};
use app::ssr::state::AppState;
use chrono::NaiveDate;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The reference date of every test: a Saturday, so the latest complete week is
/// 2026-11-09..15.
pub const AS_OF: &str = "2026-11-21";

pub fn as_of() -> NaiveDate {
    app::domain::period::parse_date(AS_OF).unwrap()
}

/// A database file in its own temporary folder, removed on drop.
pub struct TestDb {
    pub db: Db,
    pub dir: PathBuf,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn test_db() -> TestDb {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "opsight-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}/test.db", dir.display());
    let db = db::connect(&url).await.expect("test database");
    TestDb { db, dir }
}

pub async fn seed(db: &Db, lines: usize) {
    let rules = db::rules(db).await.unwrap();
    seed_demo(
        db,
        SeedOptions {
            lines,
            as_of: as_of(),
            seed: 7,
        },
        rules.scoring(),
        false,
    )
    .await
    .expect("seed");
}

pub fn agent(url: &str, timeout: Duration, token: Option<&str>) -> AgentClient {
    AgentClient::new(AgentConfig {
        url: url.to_string(),
        name: "test agent".into(),
        token: token.map(Secret::new),
        timeout,
    })
    .unwrap()
}

/// The server, listening on 127.0.0.1:<ephemeral>, stopped on drop.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub _db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Spawns the app. `agent_url = None` uses the app's own built-in analyst.
pub async fn spawn_app(lines: usize, agent_url: Option<&str>) -> TestApp {
    let tdb = test_db().await;
    if lines > 0 {
        seed(&tdb.db, lines).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let url = agent_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("http://{local}/agent/invocations"));
    let state = server::app_state(
        tdb.db.clone(),
        agent(&url, Duration::from_secs(5), None),
        Some(as_of()),
        server::leptos_options(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = state.clone();
    tokio::spawn(async move {
        server::run(listener, s, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        base: format!("http://{local}"),
        state,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        _db: tdb,
        stop: Some(tx),
    }
}

impl TestApp {
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

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}
