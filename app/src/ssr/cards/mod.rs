//! Insight cards: everything about one (site, metric) card and the dashboard of them.
//!
//! - [`evidence`]: loads a card's evidence pack through the store's fact seam.
//! - [`refresh`]: refreshing a card, as named stages (inputs → decide → compose → ask →
//!   record → store).
//! - [`ask`]: the call to an agent, its grounding check and lineage (refreshes and
//!   questions share it).
//! - [`board`]: the dashboard and the KPI page (read models).
//! - [`questions`]: streamed "why is this down?" conversations.
//! - [`lookups`]: what a question asks, and the look-ups made for it before the agent answers.
//! - [`actions`]: next actions moved on, recovery after done, and the card's feedback for
//!   its next request.
//! - [`feedback`]: thumbs up/down, forwarded to MLflow.
//!
//! [`Cards`] holds what these need (the store, the agents, the clock, this process's live
//! turns) and nothing else.

pub mod actions;
pub mod ask;
pub mod board;
pub mod evidence;
pub mod feedback;
pub mod lookups;
pub mod questions;
pub mod refresh;

pub use questions::LiveTurns;
pub use refresh::{RefreshOptions, Refreshed};

use crate::domain::access::Reach;
use crate::ssr::agent::Agents;
use crate::ssr::clock::Clock;
use crate::ssr::error::ServiceError;
use crate::ssr::store::Db;

/// The cards capability.
#[derive(Clone, Debug)]
pub struct Cards {
    db: Db,
    agents: Agents,
    clock: Clock,
    /// Questions being answered by this process.
    live: LiveTurns,
    /// The dashboards' tiles, by data and rules version.
    tiles: board::TilesCache,
    /// The configured data sources' names (the dashboard warns of those failing).
    sources: std::sync::Arc<[String]>,
}

/// `site` is within `reach`, or 403 saying what the reach covers. Checked before the
/// site's existence, so a limited principal learns nothing about other sites.
pub fn within(reach: &Reach, site: &str) -> Result<(), ServiceError> {
    if reach.sees(site) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(reach.refusal(site)))
    }
}

impl Cards {
    /// The site an insight or a conversation turn is about (their ids name an agent call's
    /// lineage too), or `NotFound`.
    pub async fn site_of(&self, id: &str) -> Result<String, ServiceError> {
        use crate::ssr::store::{conversations, insights};
        if let Some(site) = insights::site_of(&self.db, id).await? {
            return Ok(site);
        }
        conversations::site_of_turn(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no insight or question '{id}'")))
    }

    /// [`Cards::site_of`] `id`, within `reach`.
    pub async fn check_reach(&self, reach: &Reach, id: &str) -> Result<(), ServiceError> {
        if reach.is_all() || reach.sees(&self.site_of(id).await?) {
            return Ok(());
        }
        Err(ServiceError::Forbidden(reach.refusal_of_other()))
    }

    pub fn new(db: Db, agents: Agents, clock: Clock) -> Cards {
        Cards {
            db,
            agents,
            clock,
            live: LiveTurns::default(),
            tiles: Default::default(),
            sources: std::sync::Arc::new([]),
        }
    }

    /// These cards with the configured data sources' names.
    pub fn with_sources(mut self, names: Vec<String>) -> Cards {
        self.sources = names.into();
        self
    }

    pub fn agents(&self) -> &Agents {
        &self.agents
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Turns being answered by this process (for shutdown and metrics).
    pub fn live_turns(&self) -> &LiveTurns {
        &self.live
    }
}

/// The longest question sent to an agent, in characters (the question box allows 500).
pub const MAX_QUESTION_CHARS: usize = 2000;

/// A question trimmed (`None` when empty), or a clear refusal when it is too long: it is
/// never cut silently, since a cut question may ask something else.
pub fn clean_question(question: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(q) = question.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let n = q.chars().count();
    if n > MAX_QUESTION_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "a question is at most {MAX_QUESTION_CHARS} characters; this one has {n}"
        )));
    }
    Ok(Some(q.to_string()))
}
