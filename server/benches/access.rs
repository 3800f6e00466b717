//! What sign-in and the guard cost (`cargo bench -p server --bench access`, or `.ci/bench`).
//!
//! On a fresh SQLite database with the demo network (60k lines by default):
//! 1. Argon2id: hashing and verifying one password (the blocking pool), and `POST /login`
//!    end to end, sequentially and 4 at once;
//! 2. the overview page `/` and `/api/v1/dashboard`, p50/p99 over 600 requests at
//!    concurrency 8: without the guard, and with it for a session cookie, an API token and
//!    an anonymous viewer;
//! 3. the checks a state-changing request adds: the same-origin (CSRF) check and a
//!    rate-limit charge, per call;
//! 4. a `/metrics` scrape (its size, and p50/p99 over 200 scrapes).
//!
//! `OPSIGHT_BENCH_LINES` overrides the demo size.

#[path = "shared/mod.rs"]
mod shared;

use app::domain::access::Role;
use app::dto::{NewToken, NewUser};
use app::ssr::access::{self as accounts, Principal};
use app::ssr::data::seed;
use app::ssr::store as db;
use shared::{ms, on_own_runtime, percentile};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PASSWORD: &str = "a bench password, long enough";

/// A load case: its label, the server, the headers sent.
type Case = (&'static str, SocketAddr, Vec<(&'static str, String)>);

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("opsight-bench-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(run(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "p50 {}  p99 {}  (n={})",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        times.len()
    )
}

async fn serve(state: app::ssr::state::AppState, guarded: bool) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let router = server::router(state, guarded);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(local)
}

async fn run(dir: &std::path::Path) -> anyhow::Result<()> {
    let lines: usize = std::env::var("OPSIGHT_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let as_of = app::domain::period::parse_date("2026-11-21").unwrap();
    let pool = db::connect(&format!("sqlite:{}/bench.db", dir.display())).await?;
    seed::seed_demo(
        &pool,
        seed::SeedOptions {
            lines,
            as_of,
            seed: 7,
        },
        false,
    )
    .await?;
    println!("demo network: {lines} lines");

    // 1. Argon2id.
    let mut hashing = Vec::new();
    let mut verifying = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let hash = accounts::hash_password(PASSWORD.into()).await?;
        hashing.push(t.elapsed());
        let t = Instant::now();
        assert!(accounts::verify_password(PASSWORD.into(), Some(hash)).await?);
        verifying.push(t.elapsed());
    }
    println!("Argon2id (m=19 MiB, t=2, p=1) hash:   {}", summary(hashing));
    println!(
        "Argon2id verify:                      {}",
        summary(verifying)
    );

    // The states are built but their background loops never run: only the router is
    // measured.
    let state = shared::app(pool.clone(), as_of, |_| {})
        .await?
        .state()
        .clone();
    let failed = |e: app::ssr::ServiceError| anyhow::anyhow!("{}", app::error::AppError::from(e));
    state
        .accounts()
        .add_user(
            NewUser {
                username: "bench".into(),
                password: Some(PASSWORD.into()),
                role: Role::Viewer,
                sites: None,
            },
            "bench",
        )
        .await
        .map_err(failed)?;
    let token = state
        .accounts()
        .create_token(
            NewToken {
                name: "bench".into(),
                role: Role::Viewer,
                sites: None,
            },
            &Principal::cli(),
        )
        .await
        .map_err(failed)?
        .secret;
    let guarded = serve(state.clone(), true).await?;
    let open = serve(state, false).await?;
    let anonymous_state = shared::app(pool.clone(), as_of, |c| {
        c.auth.anonymous_role = Some(Role::Viewer);
    })
    .await?
    .state()
    .clone();
    let anonymous = serve(anonymous_state, true).await?;

    // POST /login end to end.
    let base = format!("http://{guarded}");
    let (sequential, parallel, cookie) = on_own_runtime(move || async move {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let login = |http: reqwest::Client, base: String| async move {
            let t = Instant::now();
            let r = http
                .post(format!("{base}/login"))
                .form(&[("username", "bench"), ("password", PASSWORD)])
                .send()
                .await?;
            anyhow::ensure!(r.status() == 303, "login: {}", r.status());
            let cookie = r.headers()["set-cookie"]
                .to_str()?
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string();
            Ok::<_, anyhow::Error>((t.elapsed(), cookie))
        };
        let mut sequential = Vec::new();
        let mut cookie = String::new();
        for _ in 0..30 {
            let (d, c) = login(http.clone(), base.clone()).await?;
            sequential.push(d);
            cookie = c;
        }
        let mut parallel = Vec::new();
        for _ in 0..8 {
            let batch: Vec<_> = (0..4)
                .map(|_| tokio::spawn(login(http.clone(), base.clone())))
                .collect();
            for b in batch {
                parallel.push(b.await??.0);
            }
        }
        Ok((sequential, parallel, cookie))
    })?;
    println!(
        "POST /login, one at a time:           {}",
        summary(sequential)
    );
    println!(
        "POST /login, 4 at once:               {}",
        summary(parallel)
    );

    // 2. The guard on pages and the API.
    for path in ["/", "/api/v1/dashboard"] {
        let cases: Vec<Case> = vec![
            ("no guard", open, vec![]),
            (
                "guard, session cookie",
                guarded,
                vec![("cookie", cookie.clone())],
            ),
            (
                "guard, API token",
                guarded,
                vec![("authorization", format!("Bearer {token}"))],
            ),
            ("guard, anonymous viewer", anonymous, vec![]),
        ];
        for (label, addr, headers) in cases {
            let url = format!("http://{addr}{path}");
            let (p50, p99, rps) = on_own_runtime(move || async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                shared::load(&url, &headers, 600, 8).await
            })?;
            println!(
                "GET {path:<18} {label:<24} p50 {}  p99 {}  ({rps:.0} req/s)",
                ms(p50),
                ms(p99)
            );
        }
    }

    // 3. Per-call cost of the checks a state-changing request adds.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("origin", "http://127.0.0.1:3000".parse()?);
    headers.insert("host", "127.0.0.1:3000".parse()?);
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(server::guard::same_origin(std::hint::black_box(&headers)).is_ok());
    }
    let csrf = t.elapsed();
    let limits = accounts::limits::RateLimits::new(accounts::limits::Allowance {
        per_user: u32::MAX / 2,
        global: u32::MAX / 2,
    });
    let t = Instant::now();
    for i in 0..n {
        let who = if i % 2 == 0 { "user:a" } else { "user:b" };
        std::hint::black_box(limits.charge(who, Instant::now()).is_ok());
    }
    let charge = t.elapsed();
    println!(
        "same-origin check {:.0} ns/call, rate-limit charge {:.0} ns/call ({n} calls each)",
        csrf.as_nanos() as f64 / n as f64,
        charge.as_nanos() as f64 / n as f64
    );

    // 4. /metrics.
    let url = format!("http://{open}/metrics");
    let (times, bytes) = on_own_runtime(move || async move {
        let http = reqwest::Client::new();
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let body = http.get(&url).send().await?.bytes().await?;
            times.push(t.elapsed());
            bytes = body.len();
        }
        Ok((times, bytes))
    })?;
    println!("GET /metrics ({bytes} bytes):         {}", summary(times));

    // 5. A burst of 100 wrong passwords, at once: with the default throttle, and with the
    // throttle opened wide (so only the hashing cap bounds it). Peak RSS is this process's
    // high-water mark, reset just before each burst.
    for (label, per) in [
        ("default throttle", None),
        ("throttle off, hashing cap only", Some(10_000)),
    ] {
        let state = shared::app(pool.clone(), as_of, |c| {
            if let Some(n) = per {
                c.auth.sign_in_limits.per_account = n;
                c.auth.sign_in_limits.per_address = n;
            }
        })
        .await?
        .state()
        .clone();
        let addr = serve(state, true).await?;
        let rss_before = shared::rss_bytes();
        shared::reset_peak_rss();
        let started = Instant::now();
        let statuses = on_own_runtime(move || async move {
            let http = reqwest::Client::new();
            let burst: Vec<_> = (0..100)
                .map(|i| {
                    let http = http.clone();
                    tokio::spawn(async move {
                        http.post(format!("http://{addr}/login"))
                            .form(&[("username", "bench"), ("password", &format!("wrong {i}"))])
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                    })
                })
                .collect();
            let mut statuses = Vec::new();
            for b in burst {
                statuses.push(b.await??);
            }
            Ok(statuses)
        })?;
        let took = started.elapsed();
        let peak = shared::peak_rss_bytes();
        let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
        println!(
            "100 wrong passwords at once, {label}: {} × 401, {} × 429 in {}; \
             peak RSS {:.0} MiB ({:+.0} MiB over the {:.0} MiB before; {} hashes at most at once)",
            count(401),
            count(429),
            ms(took),
            peak as f64 / 1048576.0,
            (peak as f64 - rss_before as f64) / 1048576.0,
            rss_before as f64 / 1048576.0,
            accounts::throttle::hashing_permits()
        );
    }
    Ok(())
}
