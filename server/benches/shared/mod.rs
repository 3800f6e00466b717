//! Helpers shared by the benchmarks: percentiles and an HTTP load generator.
#![allow(dead_code)] // each bench uses a subset

use std::time::{Duration, Instant};

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `total` GETs of `url` (with `headers`) from `concurrency` workers on keep-alive
/// connections, after a warm-up: (p50, p99, requests per second).
pub async fn load(
    url: &str,
    headers: &[(&str, &str)],
    total: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, Duration, f64)> {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes())?,
            v.parse()?,
        );
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .default_headers(map)
        .build()?;
    for _ in 0..concurrency {
        client.get(url).send().await?.bytes().await?;
    }
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, counter) = (client.clone(), url.to_string(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let t = Instant::now();
                let r = client.get(&url).send().await?;
                anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
                r.bytes().await?;
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    Ok((
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len() as f64 / wall.as_secs_f64(),
    ))
}

/// Runs `f` on a thread and runtime of its own, apart from the server's.
pub fn on_own_runtime<T: Send + 'static, F>(
    f: impl FnOnce() -> F + Send + 'static,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("load thread panicked"))?
}

/// An application (not yet running) on `db` with the built-in analyst, reference date
/// `as_of`, static files straight from `public/` (no site build needed), and `tune`
/// applied to its configuration.
pub async fn app(
    db: app::ssr::store::Db,
    as_of: chrono::NaiveDate,
    tune: impl FnOnce(&mut server::config::Config),
) -> anyhow::Result<server::Application> {
    let mut config = server::config::Config::from_lookup(
        |k| (k == "OPSIGHT_ADDR").then(|| "127.0.0.1:0".to_string()),
        |_| None,
    )?;
    config.as_of = Some(as_of);
    config.site = leptos::config::LeptosOptions::builder()
        .output_name("opsight")
        .site_root(concat!(env!("CARGO_MANIFEST_DIR"), "/../public"))
        .build();
    tune(&mut config);
    server::Application::build_with(config, db).await
}

/// This process's resident memory now (`VmRSS`), in bytes (0 where /proc is missing).
pub fn rss_bytes() -> u64 {
    app::ssr::metrics::resident_bytes().unwrap_or(0)
}

/// This process's peak resident memory (`VmHWM`) since start or the last
/// [`reset_peak_rss`], in bytes.
pub fn peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

/// Resets the peak resident memory to the current one (Linux: `5` to `clear_refs`).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
