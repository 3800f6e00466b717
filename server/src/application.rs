//! Process assembly: [`Application::build`] turns a [`Config`] into a running-ready
//! Opsight (database connected and migrated, listener bound, agents pointed at it, state
//! wired), used alike by `opsight serve`, the command line and the tests.
//! [`Application::run_until_stopped`] serves HTTP and supervises the background loops.
//!
//! Supervision: every long-running task (HTTP, the tick loop, the job worker, the
//! notification loop, the agent checks, the sources' ticks) is awaited together. A task
//! that ends before the shutdown signal, or panics, is logged with its cause and brings
//! the process down with an error (exit code 1), so an orchestrator restarts it rather
//! than leaving a replica that serves pages but no longer runs schedules.

use crate::config::Config;
use crate::scheduler::{self, WorkerOptions, WorkerReport};
use app::ssr::access::limits::RateLimits;
use app::ssr::agent::Agents;
use app::ssr::clock::Clock;
use app::ssr::runs::JobQueue;
use app::ssr::state::{AppState, Parts};
use app::ssr::store::{self, Db};
use axum::serve::ListenerExt;
use leptos::config::LeptosOptions;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Where Leptos finds the site (`target/site` by default; `LEPTOS_SITE_ROOT` moves it).
pub fn leptos_options() -> LeptosOptions {
    match leptos::config::get_configuration(None) {
        Ok(conf) if !conf.leptos_options.output_name.is_empty() => conf.leptos_options,
        // Built without cargo-leptos (plain `cargo test`): same names, default site root.
        _ => LeptosOptions::builder()
            .output_name("opsight")
            .site_root("target/site")
            .build(),
    }
}

/// Connects to the database (migrating it) and puts the sources file's catalogue in force
/// (its KPIs known to this process): what every command that reads or writes data opens.
pub async fn open_store(config: &Config) -> anyhow::Result<Db> {
    let db = store::connect(&config.database_url).await?;
    app::ssr::data::catalogue::install(&db, config.catalogue.as_ref()).await?;
    Ok(db)
}

/// A built Opsight, not yet serving.
pub struct Application {
    state: AppState,
    listener: TcpListener,
    worker: WorkerOptions,
}

impl Application {
    /// Connects to the database (migrating it), binds `config.addr`, builds the agents
    /// (the built-in analyst is served by this listener) and wires the state.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let db = store::connect(&config.database_url).await?;
        Application::build_with(config, db).await
    }

    /// [`Application::build`] on a database already connected.
    pub async fn build_with(config: Config, db: Db) -> anyhow::Result<Application> {
        app::ssr::data::catalogue::install(&db, config.catalogue.as_ref()).await?;
        if app::ssr::data::import::bring_store_up_to_date(&db).await? {
            tracing::info!("metric store re-tallied for the rules in force");
        }
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
        let local = listener.local_addr()?;
        let agents = Agents::new(
            config.agents_at(local),
            &config.cards_agent,
            &config.questions_agent,
            &config.trust,
        )?;
        let mut worker = WorkerOptions::for_agents(&agents);
        worker.grace = config.shutdown_grace;
        if let Some(n) = config.job_concurrency {
            worker.capacity = n;
        }
        let state = AppState::new(Parts {
            db,
            agents,
            clock: Clock {
                as_of: config.as_of,
                grain: config.default_grain,
            },
            queue: JobQueue::new(config.job_lease),
            notifier: config.notifier,
            auth: config.auth,
            limits: RateLimits::new(config.allowance),
            leptos_options: config.site,
            sources: config.sources,
        });
        state
            .sources()
            .drop_unowned_tallies()
            .await
            .map_err(|e| anyhow::anyhow!("settling the pushed-down tallies: {e}"))?;
        Ok(Application {
            state,
            listener,
            worker,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// How this replica's worker runs jobs.
    pub fn worker_options(&self) -> WorkerOptions {
        self.worker
    }

    /// Replaces how the worker runs jobs (tests and benchmarks poll faster).
    pub fn with_worker(mut self, worker: WorkerOptions) -> Application {
        self.worker = worker;
        self
    }

    /// Serves HTTP and runs the background loops until `shutdown` resolves, then stops
    /// in order: the loops first (the worker finishing or releasing its jobs, which may
    /// still be calling this process's built-in analyst), then HTTP. Returns an error when
    /// a task died before the signal.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<WorkerReport> {
        let Application {
            state,
            listener,
            worker,
        } = self;
        let (stop, stopped) = watch::channel(false);
        let (http_stop, mut http_stopped) = watch::channel(false);
        let mut http = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = http_stopped.wait_for(|s| *s).await;
        }));
        let mut loops: JoinSet<(&'static str, Option<WorkerReport>)> = JoinSet::new();
        let (schedules, rx) = (state.schedules().clone(), stopped.clone());
        loops.spawn(async move {
            scheduler::ticks(schedules, rx).await;
            ("schedule tick loop", None)
        });
        let (notify, rx) = (state.notify().clone(), stopped.clone());
        loops.spawn(async move {
            scheduler::notifications(notify, rx).await;
            ("notification loop", None)
        });
        let (agents, rx) = (state.agents().clone(), stopped.clone());
        loops.spawn(async move {
            scheduler::agent_checks(agents, rx).await;
            ("agent health checks", None)
        });
        let (sources, rx) = (state.sources().clone(), stopped.clone());
        loops.spawn(async move {
            scheduler::source_ticks(sources, rx).await;
            ("source tick loop", None)
        });
        let (runs, rx) = (state.runs().clone(), stopped);
        loops.spawn(async move {
            let report = scheduler::work(runs, worker, rx, None).await;
            ("job worker", Some(report))
        });

        // Until the signal, any task that ends is a failure.
        let mut died: Option<String> = None;
        let mut http_done = false;
        tokio::select! {
            _ = shutdown => {}
            joined = loops.join_next() => {
                died = Some(match joined {
                    Some(Ok((name, _))) => format!("the {name} ended unexpectedly"),
                    Some(Err(e)) => format!("a background task panicked: {}", join_error(e)),
                    None => "no background task is running".into(),
                });
            }
            served = &mut http => {
                http_done = true;
                died = Some(match served {
                    Ok(Ok(())) => "the http server ended unexpectedly".into(),
                    Ok(Err(e)) => format!("the http server failed: {e:#}"),
                    Err(e) => format!("the http server panicked: {}", join_error(e)),
                });
            }
        }
        if let Some(why) = &died {
            tracing::error!(error = %why, "stopping the process");
        }
        // Stop in order: the loops, then HTTP.
        let _ = stop.send(true);
        let mut report = WorkerReport::default();
        while let Some(joined) = loops.join_next().await {
            match joined {
                Ok((_, Some(r))) => {
                    report = r;
                    tracing::info!(?report, "the job worker stopped");
                }
                Ok(_) => {}
                Err(e) => {
                    let why = join_error(e);
                    tracing::error!(error = %why, "a background task panicked while stopping");
                    died.get_or_insert(format!("a background task panicked: {why}"));
                }
            }
        }
        let _ = http_stop.send(true);
        if !http_done {
            match http.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    died.get_or_insert(format!("the http server failed: {e:#}"));
                }
                Err(e) => {
                    died.get_or_insert(format!("the http server panicked: {}", join_error(e)));
                }
            }
        }
        match died {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(report),
        }
    }

    /// Serves only the built-in analyst on this application's listener until `shutdown`:
    /// for commands that run jobs here (`opsight refresh`) without serving the dashboard.
    pub fn serve_analyst(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (
        AppState,
        WorkerOptions,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let analyst = axum::Router::new().route(
            "/agent/invocations",
            axum::routing::post(crate::routes::analyst::invocations),
        );
        let handle = tokio::spawn(async move {
            axum::serve(self.listener, analyst)
                .with_graceful_shutdown(shutdown)
                .await
        });
        (self.state, self.worker, handle)
    }
}

/// What a failed task left: its panic message, or why it was cancelled.
fn join_error(e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        app::ssr::tasks::panic_message(e.into_panic().as_ref())
    } else {
        e.to_string()
    }
}

/// Serves the router on `listener` until `shutdown` resolves, then finishes in-flight
/// requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // TCP_NODELAY: responses written in several chunks (static files, streamed pages)
    // would otherwise wait ~40 ms for delayed ACKs (Nagle).
    let listener = crate::connections::Counting(listener).tap_io(|tcp| {
        if let Err(e) = tcp.stream().set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    // The peer address lets the guard believe a trusted proxy's user header.
    axum::serve(
        listener,
        crate::routes::router(state, true).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
