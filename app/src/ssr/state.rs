//! `AppState`: the capabilities of one running Opsight, assembled once (by
//! `server::Application::build`) and read-only afterwards. Transports (server functions,
//! the JSON API, the background loops) take what they need from it and call the
//! capability's service; no service takes `AppState` itself.

use super::access::limits::RateLimits;
use super::access::{Accounts, AuthSettings};
use super::agent::Agents;
use super::cards::Cards;
use super::clock::Clock;
use super::notify::{Notifier, Notify};
use super::rules::Rulebook;
use super::runs::{JobQueue, Runs, Schedules};
use super::sources::{SourceDef, Sources};
use super::store::Db;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// Everything `AppState` is made of.
pub struct Parts {
    pub db: Db,
    pub agents: Agents,
    pub clock: Clock,
    pub queue: JobQueue,
    pub notifier: Notifier,
    pub auth: AuthSettings,
    pub limits: RateLimits,
    pub leptos_options: LeptosOptions,
    /// The sources file's sources (none by default).
    pub sources: Vec<SourceDef>,
}

#[derive(Clone, Debug)]
pub struct AppState {
    db: Db,
    agents: Agents,
    cards: Cards,
    runs: Runs,
    schedules: Schedules,
    notify: Notify,
    rules: Rulebook,
    accounts: Accounts,
    sources: Sources,
    limits: Arc<RateLimits>,
    leptos_options: LeptosOptions,
}

impl AppState {
    /// Wires the capabilities together (each gets only what it uses).
    pub fn new(p: Parts) -> AppState {
        let cards = Cards::new(p.db.clone(), p.agents.clone(), p.clock)
            .with_sources(p.sources.iter().map(|d| d.name.clone()).collect());
        let notify = Notify::new(
            p.db.clone(),
            cards.clone(),
            p.notifier,
            p.agents.http().clone(),
            p.queue.replica.clone(),
        );
        let (replica, lease) = (p.queue.replica.clone(), p.queue.lease);
        let runs = Runs::new(p.db.clone(), cards.clone(), p.queue);
        let schedules = Schedules::new(p.db.clone(), runs.clone(), notify.clone());
        let sources = Sources::new(p.db.clone(), p.clock, p.sources, replica, lease);
        AppState {
            sources,
            rules: Rulebook::new(p.db.clone()),
            accounts: Accounts::new(p.db.clone(), p.auth),
            limits: Arc::new(p.limits),
            leptos_options: p.leptos_options,
            db: p.db,
            agents: p.agents,
            cards,
            runs,
            schedules,
            notify,
        }
    }

    /// The store, for the operations that need nothing else (unit costs, health).
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn agents(&self) -> &Agents {
        &self.agents
    }

    pub fn cards(&self) -> &Cards {
        &self.cards
    }

    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    pub fn schedules(&self) -> &Schedules {
        &self.schedules
    }

    pub fn notify(&self) -> &Notify {
        &self.notify
    }

    pub fn rules(&self) -> &Rulebook {
        &self.rules
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    pub fn leptos_options(&self) -> &LeptosOptions {
        &self.leptos_options
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
