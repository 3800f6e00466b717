//! Pure domain logic, shared by the server and the browser (it compiles to wasm).
//!
//! - [`access`]: roles and the shape of an access policy.
//! - [`status`]: the status vocabularies (insights, turns, runs, jobs, deliveries, …).
//! - [`scope`]: what a run or schedule covers.
//! - [`card`]: a card's state (stale or not, would a refresh change anything) and tiles.
//! - [`materiality`]: money at stake on failed lines (unit costs × the penalty rule).
//! - [`period`]: ISO weeks and "the latest complete week" relative to a reference date.
//! - [`catalogue`]: the team's own dimensions, fields and KPIs defined as data.
//! - [`kpi`]: the KPI catalogue, line-level scoring and exact numerator/denominator counts.
//! - [`actions`]: next actions' lifecycle and whether the KPI recovered after one.
//! - [`anomaly`]: "unusual" moves: robust z against the same weekday and recent weeks.
//! - [`rules`]: business rules (parameters, thresholds, triggers, playbooks) and KPI status.
//! - [`rulebook`]: editing the rules: one validated edit at a time, each a new version.
//! - [`evidence`]: the evidence pack: one deterministic analysis per (site, metric, period).
//! - [`forecast`]: pace and forecast of the current, incomplete week.
//! - [`insight`]: the insight contract agents return, and its parsing from agent replies.
//! - [`grounding`]: checks every root cause an agent names against the evidence pack.
//! - [`claims`]: checks every number and name an answer writes against its evidence.
//! - [`digest`]: the digest of cards needing attention and its Slack, JSON and e-mail forms.
//! - [`alerts`]: alerts on trigger state changes, with flap suppression.
//! - [`analyst`]: the built-in analyst, the reference implementation of the contract.
//! - [`answer`]: the built-in analyst's answers to each kind of question.
//! - [`question`]: what a drill-down question asks, and what is looked up for it.

pub mod access;
pub mod actions;
pub mod alerts;
pub mod analyst;
pub mod anomaly;
pub mod answer;
pub mod card;
pub mod catalogue;
pub mod claims;
pub mod digest;
pub mod evidence;
pub mod forecast;
pub mod grounding;
pub mod insight;
pub mod kpi;
pub mod materiality;
pub mod period;
pub mod question;
pub mod rulebook;
pub mod rules;
pub mod scope;
pub mod status;
pub mod tally;
