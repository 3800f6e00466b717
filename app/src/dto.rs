//! Wire types shared by the server functions, the JSON API and the browser.

use crate::domain::claims::Claim;
use crate::domain::evidence::{EvidencePack, PeriodRef};
use crate::domain::grounding::Grounding;
use crate::domain::insight::Insight;
use crate::domain::kpi::Metric;
use crate::domain::rules::{Rules, Status};
use crate::domain::status::{
    AnswerStatus, BreakerState, ChannelKind, DeliveryStatus, FeedbackSync, JobStatus,
    NotificationKind, RunOrigin, RunStatus, SyncStatus, SyncTrigger, TurnStatus,
};
use serde::{Deserialize, Serialize};

/// One KPI tile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tile {
    pub metric: Metric,
    pub name: String,
    pub definition: String,
    /// Display units: percent for ratios, lines for volume.
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub change: Option<f64>,
    pub target: Option<f64>,
    pub status: Status,
    /// Key of the rule trigger fired by this week's change, if any.
    pub trigger: Option<String>,
    pub numerator: i64,
    pub denominator: i64,
    /// The last 12 weeks, oldest first.
    pub spark: Vec<Option<f64>>,
    /// Whether this week's move is unusual (seasonality-aware), beyond its status.
    #[serde(default)]
    pub anomaly: Option<crate::domain::anomaly::Anomaly>,
}

/// One stored insight, as shown on a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InsightView {
    pub id: String,
    pub site: String,
    pub metric: Metric,
    /// The card's lens: `week`, `month`, `quarter`, `year`, `range`, with `/year_ago` when
    /// it compares with a year before.
    #[serde(default = "weekly")]
    pub lens: String,
    pub period_start: String,
    pub period_label: String,
    pub created_at: String,
    pub agent: String,
    pub value: Option<f64>,
    pub headline: String,
    pub narrative: String,
    pub insight: Option<Insight>,
    pub evidence_hash: String,
    pub rules_version: i64,
    pub latency_ms: i64,
    pub status: AnswerStatus,
    /// A safe, user-facing message for failed attempts.
    pub error: Option<String>,
    /// `mlflow-serve`, `databricks`, ... (absent on rows from before lineage was kept).
    pub agent_kind: Option<String>,
    /// The registered model version that answered, when the agent names its model.
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    /// One verdict per root cause, in order.
    pub grounding: Vec<Grounding>,
    /// Every number and name the answer wrote, checked against the evidence.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// What people did with its next actions (only those someone acted on), with the
    /// KPI's recovery for done ones.
    #[serde(default)]
    pub actions: Vec<crate::domain::actions::ActionView>,
}

/// The state of one (site, metric) insight card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Card {
    pub site: String,
    pub metric: Metric,
    /// The period the card explains and its comparison (its lens), so a refresh asks for
    /// the same card.
    #[serde(default)]
    pub view: PeriodChoice,
    /// The last good insight, if any.
    pub insight: Option<InsightView>,
    /// Why the shown insight may no longer hold (newer week, data changed, last refresh
    /// failed), or `None` when it is current.
    pub stale: Option<String>,
    /// The latest attempt's error when it failed after (or without) a good insight.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SiteRow {
    /// A site code, or `network`.
    pub site: String,
    pub name: String,
    pub tiles: Vec<Tile>,
    /// One card per metric, in tile order.
    pub cards: Vec<Card>,
}

impl SiteRow {
    pub fn card(&self, metric: Metric) -> Option<&Card> {
        self.cards.iter().find(|c| c.metric == metric)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Dashboard {
    pub as_of: String,
    pub period: PeriodRef,
    pub previous_period: PeriodRef,
    /// What the period is compared with.
    #[serde(default)]
    pub compare: crate::domain::period::Compare,
    /// The whole network, or (for a principal limited to some sites) the sum of its
    /// sites, with `site` empty and no cards.
    pub network: SiteRow,
    pub sites: Vec<SiteRow>,
    /// The sites the viewer is limited to (none: every site).
    #[serde(default)]
    pub reach: Option<Vec<String>>,
    pub rules_version: i64,
    /// Data sources whose last sync failed: their data on this page is as old as their last
    /// good sync (shown above the tiles).
    #[serde(default)]
    pub stale_sources: Vec<StaleSource>,
}

/// The KPI detail page for one (site, metric).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KpiDetail {
    pub tile: Tile,
    pub evidence: EvidencePack,
    pub card: Card,
    pub history: Vec<InsightView>,
    /// The current, incomplete week: so far, pace needed, forecast.
    #[serde(default)]
    pub pace: Option<crate::domain::forecast::Pace>,
}

/// The rules page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RulesView {
    pub rules: Rules,
    pub metrics: Vec<MetricDefinition>,
    /// Site codes, for targets.
    pub sites: Vec<String>,
    /// The latest rules versions, newest first.
    pub history: Vec<RuleChange>,
}

/// One rules version: what changed, when, by whom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleChange {
    pub version: i64,
    pub changed_at: String,
    pub changed_by: Option<String>,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricDefinition {
    pub metric: String,
    pub name: String,
    pub definition: String,
    pub unit: String,
}

/// Where an insight or a conversation turn came from: the agent call that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lineage {
    /// The insight or turn id.
    pub id: String,
    pub created_at: String,
    pub agent: String,
    pub kind: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub trace_id: Option<String>,
    pub evidence_hash: String,
    pub rules_version: i64,
    /// The request body sent, pretty-printed.
    pub request_json: String,
    /// The reply as received (JSON or SSE text).
    pub response_body: Option<String>,
    pub status: AnswerStatus,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub attempts: i64,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// Numbers and names read in the reply (absent when there was none, or on calls from
    /// before claims were checked).
    #[serde(default)]
    pub claims_checked: Option<i64>,
    /// How many of them the evidence does not support.
    #[serde(default)]
    pub claims_unsupported: Option<i64>,
}

/// One question and its answer in a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TurnView {
    pub id: String,
    pub seq: i64,
    pub question: String,
    pub status: TurnStatus,
    pub answer: String,
    pub insight: Option<Insight>,
    pub grounding: Vec<Grounding>,
    /// Every number and name the answer wrote, checked against the evidence.
    #[serde(default)]
    pub claims: Vec<Claim>,
    pub error: Option<String>,
    pub created_at: String,
}

/// A drill-down conversation about one card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConversationView {
    pub id: String,
    pub site: String,
    pub metric: Metric,
    pub period_start: String,
    pub period_label: String,
    /// What the period is compared with.
    #[serde(default)]
    pub compare: crate::domain::period::Compare,
    pub agent: String,
    pub title: String,
    pub created_at: String,
    pub turns: Vec<TurnView>,
}

/// A question accepted: its answer streams from `/api/v1/turns/{turn_id}/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TurnStarted {
    pub conversation_id: String,
    pub turn_id: String,
}

/// What the turn event stream sends (SSE `data:` JSON, tagged by `type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// The answer's text so far: replaces what is shown (first event of a subscription,
    /// so a reconnecting browser does not repeat text).
    Snapshot { text: String },
    /// Text to append to the answer being written.
    Delta { text: String },
    /// The turn finished (ok or error); the final structured answer.
    Final { turn: Box<TurnView> },
}

/// A thumbs up/down on an insight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeedbackView {
    pub id: String,
    pub insight_id: String,
    pub helpful: bool,
    pub reason: Option<String>,
    pub created_at: String,
    /// Whether it reached MLflow as an assessment (`not_applicable`: no trace or no
    /// tracking server).
    pub mlflow_state: FeedbackSync,
    pub assessment_id: Option<String>,
}

/// An agent as the settings page shows it. Never carries the token, only whether one is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentStatus {
    pub name: String,
    pub kind: String,
    pub endpoint: String,
    pub roles: Vec<String>,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub reachable: Option<bool>,
    pub latency_ms: Option<u64>,
    pub checked_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub breaker: BreakerState,
    pub token_configured: bool,
    pub max_concurrency: usize,
    pub timeout_secs: u64,
}

/// The lineage of an insight or answer: the agent call (its fields at the top level), the
/// insight it produced (if any) and that insight's feedback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineagePage {
    #[serde(flatten)]
    pub lineage: Lineage,
    pub insight: Option<InsightView>,
    pub feedback: Vec<FeedbackView>,
}

/// A schedule as the operator edits it (create and update).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleInput {
    pub name: String,
    /// Crontab: 5 fields (Sunday = 0 or 7), 6 with seconds first, or `@daily` etc.
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// `all` | `site` | `metric` | `flagged`.
    pub scope: String,
    /// The site code or metric key for `site` and `metric` scopes.
    #[serde(default)]
    pub scope_value: Option<String>,
    /// Ticks missed while no replica ran: `once` (run once on start-up) or `skip`.
    #[serde(default = "default_catch_up")]
    pub catch_up: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The cards' period: a grain (`month`: the latest complete month when the tick
    /// fires, e.g. monthly cards on the 1st) or a fixed period; and the comparison.
    /// Default: the default grain's latest complete period (`OPSIGHT_DEFAULT_PERIOD`, the
    /// week unless set) against the one before.
    #[serde(flatten)]
    pub view: PeriodChoice,
}

fn default_catch_up() -> String {
    "once".into()
}

fn default_true() -> bool {
    true
}

/// A stored schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleView {
    pub id: String,
    #[serde(flatten)]
    pub input: ScheduleInput,
    /// Human-readable scope, e.g. "site DAL" or "flagged cards".
    pub scope_label: String,
    /// The next tick, UTC (none when paused).
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    /// The next five ticks in the schedule's time zone, e.g. "Mon 2026-11-23 06:00 CST".
    pub upcoming: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The editor's check of a cron expression: the next five ticks, or why it is invalid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SchedulePreview {
    pub upcoming: Vec<String>,
    pub error: Option<String>,
}

/// One refresh run with its job counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunView {
    pub id: String,
    pub origin: RunOrigin,
    pub schedule_id: Option<String>,
    pub schedule_name: Option<String>,
    pub scope: String,
    pub scope_value: Option<String>,
    pub scope_label: String,
    pub scheduled_for: Option<String>,
    pub force: bool,
    /// The cards' period (a label; empty for the default grain's latest complete period when each job ran)
    /// and comparison.
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub compare: crate::domain::period::Compare,
    pub status: RunStatus,
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub note: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Seconds from start to finish (or to now while running).
    pub duration_secs: f64,
    /// Estimated seconds left, from the pace so far (running runs with progress only).
    pub eta_secs: Option<f64>,
}

impl RunView {
    /// Jobs that reached an end state.
    pub fn finished_jobs(&self) -> i64 {
        self.done + self.unchanged + self.failed
    }
}

/// One card of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobView {
    pub id: String,
    pub site: String,
    pub metric: Metric,
    pub status: JobStatus,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub insight_id: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A run and its jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunDetail {
    pub run: RunView,
    pub jobs: Vec<JobView>,
}

/// A request to refresh a scope now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRequest {
    pub scope: String,
    #[serde(default)]
    pub scope_value: Option<String>,
    /// The cards' period and comparison (the default view when none is named).
    #[serde(flatten)]
    pub view: PeriodChoice,
    /// Call the agent even for cards whose evidence, rules and agent version are unchanged.
    #[serde(default)]
    pub force: bool,
}

/// A digest or alert as listed on the notifications page and in the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotificationView {
    pub id: String,
    pub kind: NotificationKind,
    /// Alerts: the card and the notice (`fired`, `resolved`, `flapping`).
    pub site: Option<String>,
    pub metric: Option<String>,
    pub notice: Option<String>,
    pub created_at: String,
    pub title: String,
    pub items: i64,
    pub generation_ms: Option<f64>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryView {
    pub id: String,
    pub channel: String,
    pub format: ChannelKind,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub http_status: Option<i64>,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
}

/// A configured channel, as the notifications page shows it (never its address).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelView {
    pub name: String,
    pub kind: ChannelKind,
    pub digests: bool,
    pub alerts: bool,
}

/// The notifications page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotificationsView {
    pub channels: Vec<ChannelView>,
    pub notifications: Vec<NotificationView>,
}

/// A user account, as admins see it (never a password hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserView {
    pub username: String,
    pub role: crate::domain::access::Role,
    pub disabled: bool,
    /// False for accounts that sign in only through the trusted proxy.
    pub has_password: bool,
    pub created_at: String,
    /// The sites it is limited to (`DAL,ATL,region:South`); none: every site.
    #[serde(default)]
    pub sites: Option<String>,
}

/// An API token, as lists show it: its prefix, never the secret or its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub role: crate::domain::access::Role,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The sites it is limited to; none: every site.
    #[serde(default)]
    pub sites: Option<String>,
}

/// A new token and its secret, returned once at creation and never again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenCreated {
    pub token: TokenView,
    pub secret: String,
}

/// One audit log entry: who changed what, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub at: String,
    /// `user:NAME`, `token:NAME`, `cli` or `system`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// The admin page: users, tokens and the latest audit entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AdminView {
    pub users: Vec<UserView>,
    pub tokens: Vec<TokenView>,
    pub audit: Vec<AuditEntry>,
}

// Operation inputs and replies: one typed input per operation, shared by its server
// function (the browser), its JSON API route and its service. Defaults live here, once.

/// The default page size of every list (insights, runs, notifications).
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page any list returns.
pub const MAX_LIMIT: i64 = 500;

fn page(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// One card's KPI page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KpiQuery {
    /// A site code, or `network`.
    pub site: String,
    pub metric: String,
    #[serde(flatten)]
    pub view: PeriodChoice,
    /// One member of a dimension only: `lane:L2` (its value, trend and checks; no split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

fn weekly() -> String {
    "week".to_string()
}

/// Which period a page, a card, a run or a question is about, and what it is compared
/// with. Both are text, as in a URL's query: `?period=2026-11&compare=year_ago`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeriodChoice {
    /// ISO week `2026-W46`, month `2026-11`, quarter `2026-Q4`, year `2026`, a range
    /// `2026-10-01..2026-10-31`, or a grain (`week`, `month`, `quarter`, `year`) for its
    /// latest complete period. Default: the latest complete period of the configured
    /// grain (`OPSIGHT_DEFAULT_PERIOD`; the week unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// `previous` (the period before, of the same length; the default) or `year_ago`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
}

impl PeriodChoice {
    pub fn new(period: &str, compare: &str) -> PeriodChoice {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        PeriodChoice {
            period: some(period),
            compare: some(compare),
        }
    }

    /// The query string for a link (`?period=…&compare=…`), empty for the defaults.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.period.as_deref().filter(|p| !p.is_empty()) {
            parts.push(format!("period={}", urlencode(p)));
        }
        if let Some(c) = self
            .compare
            .as_deref()
            .filter(|c| !c.is_empty() && *c != "previous")
        {
            parts.push(format!("compare={}", urlencode(c)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes what a period may hold that a query string must not (periods are
/// ASCII digits, letters, `-` and `.`).
fn urlencode(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32 & 0xff)
            }
        })
        .collect()
}

/// The dashboard's choice of period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DashboardQuery {
    #[serde(flatten)]
    pub view: PeriodChoice,
}

/// One evidence pack, as JSON: the numbers behind a card, for other apps and notebooks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvidenceQuery {
    /// A site code, or `network`.
    pub site: String,
    pub metric: String,
    #[serde(flatten)]
    pub view: PeriodChoice,
    /// One member of a dimension only: `lane:L2` (its value, trend and checks; no split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Insight attempts for one card, one site, or all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InsightsQuery {
    pub site: Option<String>,
    pub metric: Option<String>,
    /// At most this many, latest first (50 by default, at most 500).
    pub limit: Option<i64>,
}

impl InsightsQuery {
    pub fn limit(&self) -> i64 {
        page(self.limit)
    }
}

/// Refresh one card now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefreshRequest {
    pub site: String,
    pub metric: String,
    #[serde(flatten)]
    pub view: PeriodChoice,
    /// "Why is this down?" in the user's words; the default question when absent.
    #[serde(default)]
    pub question: Option<String>,
}

/// Thumbs up or down on an insight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeedbackInput {
    pub helpful: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A next action moved on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionChange {
    /// `acknowledged`, `assigned` (with `assignee`), `done` or `dismissed` (with `reason`).
    pub state: String,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A "why is this down?" question about one card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StartConversation {
    pub site: String,
    pub metric: String,
    pub question: String,
    /// The card's period and comparison (the default view when none is named).
    #[serde(flatten)]
    pub view: PeriodChoice,
}

/// A follow-up question in a conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FollowUp {
    pub question: String,
}

/// The configured agents; `check` runs health checks first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentsQuery {
    pub check: Option<bool>,
}

/// A cron expression to preview in a time zone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreviewRequest {
    pub cron: String,
    /// IANA time zone; UTC when empty.
    #[serde(default)]
    pub timezone: String,
}

/// Pause or resume a schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleSwitch {
    pub enabled: bool,
}

/// Runs, latest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunsQuery {
    /// At most this many (50 by default, at most 500).
    pub limit: Option<i64>,
    /// Only runs still running or finished in the last 10 seconds.
    pub active: Option<bool>,
}

impl RunsQuery {
    pub fn limit(&self) -> i64 {
        page(self.limit)
    }
}

/// Recent notifications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotificationsQuery {
    /// At most this many, newest first (50 by default, at most 500).
    pub limit: Option<i64>,
}

impl NotificationsQuery {
    pub fn limit(&self) -> i64 {
        page(self.limit)
    }
}

/// How to render a digest preview.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DigestFormat {
    /// `slack`, `json` (default) or `email`.
    pub format: Option<String>,
    /// The digest's period (the default grain's latest complete one when none is named).
    #[serde(flatten)]
    pub view: PeriodChoice,
}

/// Send a digest now: of the period named, or of the default view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DigestRequest {
    #[serde(flatten)]
    pub view: PeriodChoice,
}

/// A digest queued to every digest channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DigestQueued {
    pub notification_id: String,
}

/// The alert notifications an alert check queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertsChecked {
    pub queued: Vec<String>,
}

/// One unit cost: exactly one of `sku` and `category`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnitCost {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    pub unit_cost: f64,
}

/// How many unit costs were saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CostsSaved {
    pub saved: usize,
}

/// A rule-book edit stored: the new version (its fields at the top level) and the rules
/// page after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleEdited {
    #[serde(flatten)]
    pub change: RuleChange,
    pub view: RulesView,
}

/// A user to add.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewUser {
    pub username: String,
    /// None: an account that signs in only through the trusted proxy.
    #[serde(default)]
    pub password: Option<String>,
    pub role: crate::domain::access::Role,
    /// Limits the user to these sites and regions (`DAL,ATL,region:South`); none or
    /// empty: every site.
    #[serde(default)]
    pub sites: Option<String>,
}

/// What an admin may change about a user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserChange {
    #[serde(default)]
    pub role: Option<crate::domain::access::Role>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub password: Option<String>,
    /// New site limits (`DAL,region:South`); `""` lifts them (every site); absent: no
    /// change.
    #[serde(default)]
    pub sites: Option<String>,
}

/// An API token to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewToken {
    /// What uses it, e.g. "slack-bot".
    pub name: String,
    pub role: crate::domain::access::Role,
    /// Limits the token to these sites and regions; none: its creator's reach.
    #[serde(default)]
    pub sites: Option<String>,
}

/// The audit log, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditQuery {
    /// Only actions starting with this (`rules`, `user`, `schedule`, …).
    pub action: Option<String>,
    /// At most this many (100 by default, at most 1,000).
    pub limit: Option<i64>,
}

impl AuditQuery {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// A data source from the sources file, and where its syncs stand. Never carries its
/// connection string or token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceView {
    pub name: String,
    /// postgres, mysql, databricks or csv.
    pub kind: String,
    /// What is read: "table shipments", "a query", "files drop/*.csv".
    pub reads: String,
    pub schedule: Option<String>,
    /// Days of lines (by due date) each sync reads again, when there is no watermark.
    pub window_days: u32,
    pub watermark_column: Option<String>,
    /// The source computes the day-level tallies itself (its lines stay there).
    #[serde(default)]
    pub pushdown: bool,
    /// The highest watermark value synced so far.
    pub watermark: Option<String>,
    pub next_due: Option<String>,
    pub last_success_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// Why the last sync failed; empty once one succeeds.
    pub last_error: Option<String>,
    /// Hours since the last good sync (none if there never was one).
    pub age_hours: Option<f64>,
    /// The latest sync, running or finished.
    pub last_sync: Option<SyncView>,
}

/// A data source whose last sync failed, as the dashboard warns of it: "data from wms is
/// 3 h old: connection refused".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StaleSource {
    pub name: String,
    pub error: String,
    pub last_success_at: Option<String>,
    /// Hours since the last good sync (none if there never was one).
    pub age_hours: Option<f64>,
}

/// One sync of a data source: what it read and wrote, how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncView {
    pub id: String,
    pub source: String,
    pub trigger: SyncTrigger,
    pub actor: Option<String>,
    pub status: SyncStatus,
    /// The window's first day (YYYY-MM-DD), or the watermark value it read from.
    pub since: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Rows read from the source so far (for a push-down: tally rows).
    pub rows_read: i64,
    /// New lines (for a push-down: the lines the tallies count).
    pub inserted: i64,
    pub updated: i64,
    /// Bytes of values read from the source (lines', or tallies' for a push-down).
    #[serde(default)]
    pub bytes_read: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// A request to sync a source now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncRequest {
    /// Answer when the sync has finished (else at once, with the sync running).
    #[serde(default)]
    pub wait: bool,
}

/// A site: its code (how order lines name it), its name (any text) and its region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SiteInfo {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub region: String,
}
