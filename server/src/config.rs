//! Configuration from the environment and an optional agents file, validated at start-up.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `sqlite:data/opsight.db` | SQLite file (created when missing), or `postgres://…` shared by replicas |
//! | `OPSIGHT_AGENTS_FILE` | `opsight-agents.toml` if present | named agent profiles (below) |
//! | `AGENT_URL` | none | one agent without a file: its base or invocation URL |
//! | `AGENT_KIND` | `mlflow-serve` | kind of that agent |
//! | `AGENT_TOKEN` | none | its bearer token; never logged or sent to browsers |
//! | `AGENT_TIMEOUT_SECS` | 30 | its per-call timeout (keep it below the server's own) |
//! | `AGENT_ENDPOINT` / `AGENT_LLM_MODEL` | none | Databricks endpoint name / OpenAI model |
//! | `AGENT_MODEL` / `MLFLOW_TRACKING_URI` | none | `models:/NAME@ALIAS` and where to resolve it |
//! | `OPSIGHT_ADDR` | `127.0.0.1:3000` | listen address |
//! | `OPSIGHT_AS_OF` | today (UTC) | reference date `YYYY-MM-DD` for demos, tests, replays |
//! | `LOG_FORMAT` | `pretty` | `json` for structured logs |
//! | `OPSIGHT_JOB_CONCURRENCY` | cards agent's `max_concurrency` | refresh jobs this replica runs at once |
//! | `OPSIGHT_JOB_LEASE_SECS` | 30 | a claim's lease: a dead replica's jobs are taken over after it |
//! | `OPSIGHT_SHUTDOWN_GRACE_SECS` | 10 | in-flight jobs may finish this long at shutdown, then are released |
//! | `OPSIGHT_SOURCES_FILE` | `opsight-sources.toml` if present | data sources synced into the metric store (below) |
//! | `OPSIGHT_NOTIFY_FILE` | `opsight-notify.toml` if present | digest and alert channels, SMTP (below) |
//! | `OPSIGHT_SLACK_WEBHOOK_URL` | none | one Slack-compatible channel `slack` without a file |
//! | `OPSIGHT_WEBHOOK_URL` | none | one generic JSON channel `webhook` without a file |
//! | `OPSIGHT_BASE_URL` | none | the dashboard's public address, for links in messages |
//! | `OPSIGHT_ALERT_CHECK_SECS` | 60 | how often alerts are observed (0: only on `POST /api/v1/alerts/check`) |
//! | `OPSIGHT_SESSION_HOURS` | 12 | a sign-in's lifetime (1 to 720) |
//! | `OPSIGHT_SECURE_COOKIES` | true when `OPSIGHT_BASE_URL` is https | mark the session cookie `Secure` |
//! | `OPSIGHT_TRUSTED_PROXIES` | none | comma-separated proxy IPs whose user header is believed (single sign-on) |
//! | `OPSIGHT_PROXY_USER_HEADER` | `x-forwarded-user` | the header such a proxy sets to the signed-in user |
//! | `OPSIGHT_ANONYMOUS_ROLE` | none | the role of requests without credentials (`viewer` for a wall screen); none: sign in |
//! | `OPSIGHT_AGENT_CALLS_PER_USER_PER_MIN` | 30 | agent calls (refreshes, questions, runs) a user or token may start a minute |
//! | `OPSIGHT_AGENT_CALLS_PER_MIN` | 300 | agent calls this replica starts a minute, for everyone |
//! | `OPSIGHT_CA_BUNDLE` | none | a PEM file of CA certificates every outbound TLS connection trusts beside the built-in roots (agents, tracking, webhooks, SMTP, data sources, the database) |
//! | `OPSIGHT_SIGNIN_PER_ACCOUNT` | 10 | sign-in attempts one account gets per 15 minutes (a success restores them) |
//! | `OPSIGHT_SIGNIN_PER_ADDRESS` | 30 | sign-in attempts one client address gets per 15 minutes |
//!
//! The built-in analyst is always configured, as agent `builtin`; with no other agent it
//! answers cards and questions. The agents file (TOML) names several agents and their
//! roles. Tokens are never written in it: `token_env` names the variable holding one.
//!
//! ```toml
//! [roles]
//! cards = "analyst"            # refreshed and scheduled cards
//! questions = "analyst-stream" # "why is this down?" drill-downs
//!
//! [[agent]]
//! name = "analyst"
//! kind = "mlflow-serve"        # mlflow-serve | mlflow-agent-server | databricks | openai-responses | builtin
//! url = "http://127.0.0.1:5001"
//! model = "models:/opsight-analyst@prod"
//! tracking_uri = "http://127.0.0.1:5000"
//! timeout_secs = 30
//! max_concurrency = 6
//! token_env = "ANALYST_TOKEN"
//! alias_ttl_secs = 30          # how often the alias is re-resolved
//! ```
//!
//! The notifications file: where digests and alerts go. Webhook URLs are credentials
//! (Slack's is): `url_env` names the variable holding one; `url` is for unauthenticated
//! receivers. E-mail is optional and needs `[smtp]`.
//!
//! ```toml
//! base_url = "https://ops.example.com"
//!
//! [[channel]]
//! name = "ops-slack"
//! kind = "slack"               # slack | json | email
//! url_env = "OPS_SLACK_WEBHOOK"
//! digests = true               # default true
//! alerts = true                # default true
//!
//! [[channel]]
//! name = "ops-mail"
//! kind = "email"
//! to = ["dc-managers@example.com"]
//!
//! [smtp]
//! host = "smtp.example.com"
//! port = 587
//! security = "starttls"        # starttls | tls | none
//! username = "opsight"
//! password_env = "SMTP_PASSWORD"
//! from = "opsight@example.com"
//!
//! [retry]
//! max_attempts = 5             # then the delivery is marked failed
//! base_secs = 30               # wait after the first failure; ×4 each time, at most 1 h
//! ```
//!
//! The sources file: where order lines are synced from. Connection strings are never
//! written in it: `url_env` names the variable holding one. A csv source's `path` is
//! relative to the file's folder.
//!
//! ```toml
//! [[source]]
//! name = "wms"
//! kind = "postgres"            # postgres | mysql (MariaDB too) | databricks | csv
//! url_env = "WMS_DATABASE_URL"
//! table = "shipments"          # or: query = "SELECT … WHERE due_date >= :since"
//! schedule = "*/15 * * * *"    # optional; timezone = "Europe/Berlin" (UTC by default)
//! window_days = 35             # lines due in the last 35 days are read again each sync
//! watermark = "updated_at"     # optional: then only rows at or above the last value seen
//! timeout_secs = 600
//! [source.columns]             # Opsight field = source column
//! order_id = "so_number"
//! line_no = "line"
//! site = "dc_code"
//! # … every field of `opsight import orders`; reason_code is optional
//! ```
//!
//! A `databricks` source names `host`, `warehouse_id` and `token_env` (or `client_id` and
//! `client_secret_env` for a service principal) instead of `url_env`.

use anyhow::{bail, Context};
use app::domain::access::Role;
use app::domain::catalogue::{Catalogue, KpiDef, Unit};
use app::domain::period::{parse_date, Grain};
use app::domain::status::ChannelKind;
use app::ssr::access::limits::Allowance;
use app::ssr::access::AuthSettings;
use app::ssr::agent::{AgentKind, AgentProfile, ModelRef, Secret};
use app::ssr::notify::{Channel, Notifier, RetryPolicy, Smtp};
use app::ssr::sources::{SourceDef, SourceSpec};
use app::ssr::trust::Trust;
use chrono::NaiveDate;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/opsight.db";
pub const DEFAULT_AGENTS_FILE: &str = "opsight-agents.toml";
pub const DEFAULT_NOTIFY_FILE: &str = "opsight-notify.toml";
pub const DEFAULT_SOURCES_FILE: &str = "opsight-sources.toml";
/// The built-in analyst's agent name.
pub const BUILTIN: &str = "builtin";

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    /// Every agent; the `builtin` one has an empty URL until the listener's address is
    /// known ([`Config::agents_at`]).
    pub agents: Vec<AgentProfile>,
    pub cards_agent: String,
    pub questions_agent: String,
    pub addr: SocketAddr,
    pub as_of: Option<NaiveDate>,
    /// What a page, run or digest naming no period shows: the latest complete one of this
    /// grain (`OPSIGHT_DEFAULT_PERIOD`, week by default).
    pub default_grain: Grain,
    /// How long a replica's claim on a job lasts without renewal (a killed replica's jobs
    /// are taken over after this).
    pub job_lease: Duration,
    /// How long in-flight jobs may finish at shutdown before they are released.
    pub shutdown_grace: Duration,
    /// Jobs this replica executes at once; the cards agent's `max_concurrency` by default.
    pub job_concurrency: Option<usize>,
    /// Digest and alert channels (none by default).
    pub notifier: Notifier,
    /// Sessions, the trusted proxy and the anonymous role.
    pub auth: AuthSettings,
    /// Agent calls a minute, per principal and for this replica.
    pub allowance: Allowance,
    /// Data sources synced into the metric store (none by default).
    pub sources: Vec<SourceDef>,
    /// The sources file's catalogue (extra dimensions, fields and KPIs); `None` without a
    /// sources file (the store keeps the one it holds).
    pub catalogue: Option<Catalogue>,
    /// The CA bundle outbound TLS trusts beside the built-in roots (`OPSIGHT_CA_BUNDLE`).
    pub trust: Trust,
    /// Where the site (wasm, styles, static files) is served from (`LEPTOS_SITE_ROOT`,
    /// `target/site` by default).
    pub site: leptos::config::LeptosOptions,
}

/// The notifications file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    base_url: Option<String>,
    #[serde(default, rename = "channel")]
    channels: Vec<ChannelEntry>,
    smtp: Option<SmtpEntry>,
    retry: Option<RetryEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelEntry {
    name: String,
    kind: String,
    url: Option<String>,
    url_env: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    digests: Option<bool>,
    alerts: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpEntry {
    host: String,
    port: Option<u16>,
    security: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    from: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryEntry {
    max_attempts: Option<i64>,
    base_secs: Option<f64>,
}

/// Channels and SMTP from the notifications file and the environment shortcuts.
fn notifier(
    get: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&Path) -> Option<String>,
) -> anyhow::Result<Notifier> {
    let file = get("OPSIGHT_NOTIFY_FILE").map(PathBuf::from);
    let text =
        match &file {
            Some(path) => Some(read(path).with_context(|| {
                format!("OPSIGHT_NOTIFY_FILE '{}' cannot be read", path.display())
            })?),
            None => read(Path::new(DEFAULT_NOTIFY_FILE)),
        };
    let shown = file
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_NOTIFY_FILE))
        .display()
        .to_string();
    let parsed: NotifyFile = match text {
        Some(t) => toml::from_str(&t)
            .with_context(|| format!("notifications file '{shown}' is not valid"))?,
        None => NotifyFile::default(),
    };
    let mut n = Notifier {
        base_url: get("OPSIGHT_BASE_URL").or(parsed.base_url),
        ..Notifier::default()
    };
    for c in parsed.channels {
        let kind = match c.kind.as_str() {
            "slack" => ChannelKind::Slack,
            "json" => ChannelKind::Json,
            "email" => ChannelKind::Email,
            other => bail!(
                "notification channel '{}': kind '{other}' is slack, json or email",
                c.name
            ),
        };
        let url = match (&c.url, &c.url_env) {
            (Some(_), Some(_)) => bail!(
                "notification channel '{}': give url or url_env, not both",
                c.name
            ),
            (Some(u), None) => Some(Secret::new(u.clone())),
            (None, Some(var)) => Some(Secret::new(get(var).with_context(|| {
                format!(
                    "notification channel '{}': url_env names {var}, which is not set",
                    c.name
                )
            })?)),
            (None, None) => None,
        };
        n.channels.push(Channel {
            name: c.name,
            kind,
            url,
            to: c.to,
            digests: c.digests.unwrap_or(true),
            alerts: c.alerts.unwrap_or(true),
        });
    }
    for (var, name, kind) in [
        ("OPSIGHT_SLACK_WEBHOOK_URL", "slack", ChannelKind::Slack),
        ("OPSIGHT_WEBHOOK_URL", "webhook", ChannelKind::Json),
    ] {
        if let Some(url) = get(var) {
            n.channels.push(Channel {
                name: name.into(),
                kind,
                url: Some(Secret::new(url)),
                to: vec![],
                digests: true,
                alerts: true,
            });
        }
    }
    if let Some(s) = parsed.smtp {
        let password = match &s.password_env {
            Some(var) => Some(Secret::new(get(var).with_context(|| {
                format!("smtp.password_env names {var}, which is not set")
            })?)),
            None => None,
        };
        n.smtp = Some(Smtp {
            port: s.port.unwrap_or(587),
            security: s.security.unwrap_or_else(|| "starttls".into()),
            host: s.host,
            username: s.username,
            password,
            from: s.from,
            trust: Trust::default(),
        });
    }
    if let Some(r) = parsed.retry {
        let d = RetryPolicy::default();
        let attempts = r.max_attempts.unwrap_or(d.max_attempts);
        let base = r.base_secs.unwrap_or(d.base.as_secs_f64());
        if !(1..=20).contains(&attempts) || !(0.01..=3600.0).contains(&base) {
            bail!("retry.max_attempts is 1 to 20 and retry.base_secs 0.01 to 3600");
        }
        n.retry = RetryPolicy {
            max_attempts: attempts,
            base: Duration::from_secs_f64(base),
            cap: d.cap,
        };
    }
    n.alert_every = match get("OPSIGHT_ALERT_CHECK_SECS") {
        None => Some(Duration::from_secs(60)),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(s) if s <= 86_400 => Some(Duration::from_secs(s)),
            _ => bail!("OPSIGHT_ALERT_CHECK_SECS '{v}' must be 0 (off) to 86400 seconds"),
        },
    };
    n.validate().map_err(anyhow::Error::msg)?;
    Ok(n)
}

/// Sessions, the trusted reverse proxy and the anonymous role.
fn auth(
    get: &impl Fn(&str) -> Option<String>,
    base_url: Option<&str>,
) -> anyhow::Result<AuthSettings> {
    let mut a = AuthSettings::default();
    if let Some(v) = get("OPSIGHT_SESSION_HOURS") {
        match v.parse::<u64>() {
            Ok(h) if (1..=720).contains(&h) => a.session_ttl = Duration::from_secs(h * 3600),
            _ => bail!("OPSIGHT_SESSION_HOURS '{v}' must be 1 to 720 hours"),
        }
    }
    if let Some(url) = base_url {
        check_url(url, "OPSIGHT_BASE_URL")?;
    }
    a.secure_cookies = match get("OPSIGHT_SECURE_COOKIES").as_deref() {
        None => base_url.is_some_and(|u| u.starts_with("https://")),
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(v) => bail!("OPSIGHT_SECURE_COOKIES '{v}' must be true or false"),
    };
    if let Some(list) = get("OPSIGHT_TRUSTED_PROXIES") {
        for ip in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            a.trusted_proxies.push(ip.parse().with_context(|| {
                format!("OPSIGHT_TRUSTED_PROXIES: '{ip}' is not an IP address")
            })?);
        }
    }
    if let Some(h) = get("OPSIGHT_PROXY_USER_HEADER") {
        axum::http::HeaderName::from_bytes(h.as_bytes())
            .with_context(|| format!("OPSIGHT_PROXY_USER_HEADER '{h}' is not a header name"))?;
        a.proxy_user_header = h.to_ascii_lowercase();
    }
    let attempts = |key: &str, default: u32| match get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => bail!("{key} '{v}' must be a number of sign-in attempts from 1 to 10000"),
        },
    };
    a.sign_in_limits.per_account =
        attempts("OPSIGHT_SIGNIN_PER_ACCOUNT", a.sign_in_limits.per_account)?;
    a.sign_in_limits.per_address =
        attempts("OPSIGHT_SIGNIN_PER_ADDRESS", a.sign_in_limits.per_address)?;
    a.anonymous_role =
        match get("OPSIGHT_ANONYMOUS_ROLE").as_deref() {
            None | Some("none") => None,
            Some(r) => Some(Role::parse(r).map_err(|e| {
                anyhow::anyhow!("OPSIGHT_ANONYMOUS_ROLE: {e} (or none, the default)")
            })?),
        };
    Ok(a)
}

/// An absolute http(s) URL with a host.
fn check_url(url: &str, what: &str) -> anyhow::Result<()> {
    let uri: axum::http::Uri = url
        .parse()
        .with_context(|| format!("{what} '{url}' is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => bail!("{what} '{url}' must be an http:// or https:// URL with a host"),
    }
}

/// The sources file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    /// Extra dimensions a CSV import reads under their own names (sources map theirs).
    #[serde(default)]
    dimensions: Vec<String>,
    /// Extra fields kept with each line for the KPIs' expressions.
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default, rename = "source")]
    sources: Vec<SourceSpec>,
    #[serde(default, rename = "kpi")]
    kpis: Vec<KpiSpec>,
}

/// A KPI defined as data (see `app::domain::catalogue`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiSpec {
    key: String,
    name: String,
    #[serde(default)]
    description: String,
    /// `pct` (default), `count`, or an average's unit (`days`).
    unit: Option<String>,
    /// `higher` (default) or `lower` is better.
    direction: Option<String>,
    /// Absent when a source returns the KPI's counts (its `kpi = "<key>"`).
    numerator: Option<String>,
    denominator: Option<String>,
    target: Option<f64>,
    at_risk: Option<f64>,
}

impl KpiSpec {
    fn into_def(self) -> anyhow::Result<KpiDef> {
        let higher_is_better = match self.direction.as_deref().map(str::trim) {
            None | Some("higher") => true,
            Some("lower") => false,
            Some(other) => bail!(
                "KPI '{}': direction '{other}' is not higher or lower",
                self.key
            ),
        };
        Ok(KpiDef {
            key: self.key.trim().to_string(),
            name: self.name.trim().to_string(),
            description: self.description.trim().to_string(),
            unit: Unit::parse(self.unit.as_deref().unwrap_or("pct")),
            higher_is_better,
            numerator: self.numerator.unwrap_or_default(),
            denominator: self.denominator.filter(|d| !d.trim().is_empty()),
            target: self.target,
            at_risk: self.at_risk,
        })
    }
}

/// The sources file's sources and catalogue.
type SourcesAndCatalogue = (Vec<SourceDef>, Option<Catalogue>);

/// The sources of the sources file (`OPSIGHT_SOURCES_FILE`, else `opsight-sources.toml`
/// when present), validated (names are unique), and its catalogue: the dimensions and
/// fields it lists and those its sources map, and its KPIs.
fn sources(
    get: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&Path) -> Option<String>,
) -> anyhow::Result<SourcesAndCatalogue> {
    let file = get("OPSIGHT_SOURCES_FILE").map(PathBuf::from);
    let text = match &file {
        Some(path) => Some(read(path).with_context(|| {
            format!("OPSIGHT_SOURCES_FILE '{}' cannot be read", path.display())
        })?),
        None => read(Path::new(DEFAULT_SOURCES_FILE)),
    };
    let Some(text) = text else {
        return Ok((Vec::new(), None));
    };
    let path = file.unwrap_or_else(|| PathBuf::from(DEFAULT_SOURCES_FILE));
    let parsed: SourcesFile = toml::from_str(&text)
        .with_context(|| format!("sources file '{}' is not valid", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut defs: Vec<SourceDef> = Vec::new();
    for spec in parsed.sources {
        let def = SourceDef::from_spec(spec, get, &base).map_err(anyhow::Error::msg)?;
        if defs.iter().any(|d| d.name == def.name) {
            bail!("source '{}' is defined twice", def.name);
        }
        defs.push(def);
    }
    let mut catalogue = Catalogue {
        dimensions: parsed.dimensions,
        fields: parsed.fields,
        kpis: parsed
            .kpis
            .into_iter()
            .map(KpiSpec::into_def)
            .collect::<anyhow::Result<_>>()?,
    };
    // Line sources' dimensions break lines down; a KPI source's are its own rows' (they
    // reach its packs through its tallies).
    for def in defs.iter().filter(|d| d.measure.is_none()) {
        for (name, _) in &def.dimensions {
            if !catalogue.dimensions.contains(name) {
                catalogue.dimensions.push(name.clone());
            }
        }
        for (name, _) in &def.fields {
            if !catalogue.fields.contains(name) {
                catalogue.fields.push(name.clone());
            }
        }
    }
    catalogue
        .validate()
        .map_err(|e| anyhow::anyhow!("sources file '{}': {e}", path.display()))?;
    // A KPI without expressions is a source's, and a source's KPI has none.
    for kpi in &catalogue.kpis {
        let feeds: Vec<&str> = defs
            .iter()
            .filter(|d| d.measure.as_ref().is_some_and(|m| m.kpi == kpi.key))
            .map(|d| d.name.as_str())
            .collect();
        match (kpi.is_fed(), feeds.len()) {
            (true, 0) => bail!(
                "KPI '{}' has no numerator and no source returns it (a source's kpi = \"{}\")",
                kpi.key,
                kpi.key
            ),
            (false, n) if n > 0 => bail!(
                "KPI '{}' is counted from lines (it has a numerator); source '{}' cannot also return it",
                kpi.key,
                feeds[0]
            ),
            _ => {}
        }
    }
    if let Some((d, m)) = defs
        .iter()
        .filter_map(|d| Some((d, d.measure.as_ref()?)))
        .find(|(_, m)| catalogue.kpi(&m.kpi).is_none())
    {
        bail!(
            "source '{}' returns KPI '{}', which the file does not define",
            d.name,
            m.kpi
        );
    }
    // A rate or an average needs its denominator; only a count does without.
    if let Some((d, m)) = defs
        .iter()
        .filter_map(|d| Some((d, d.measure.as_ref()?)))
        .find(|(_, m)| {
            m.denominator.is_none() && catalogue.kpi(&m.kpi).is_some_and(|k| k.unit != Unit::Count)
        })
    {
        bail!(
            "source '{}': KPI '{}' is a rate or an average: map its denominator (columns.denominator)",
            d.name,
            m.kpi
        );
    }
    if catalogue.kpis.iter().any(|k| !k.is_fed()) {
        if let Some(d) = defs.iter().find(|d| d.pushdown) {
            bail!(
                "source '{}': pushdown sends tallies without the counts of the file's KPIs ({}); read its lines instead",
                d.name,
                catalogue.kpis.iter().map(|k| k.key.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok((defs, Some(catalogue)))
}

/// The agents file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(default)]
    roles: Roles,
    #[serde(default, rename = "agent")]
    agents: Vec<AgentEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Roles {
    cards: Option<String>,
    questions: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    name: String,
    kind: String,
    url: Option<String>,
    endpoint: Option<String>,
    llm_model: Option<String>,
    model: Option<String>,
    tracking_uri: Option<String>,
    timeout_secs: Option<u64>,
    max_concurrency: Option<usize>,
    token_env: Option<String>,
    alias_ttl_secs: Option<u64>,
}

fn timeout(secs: Option<u64>, what: &str) -> anyhow::Result<Duration> {
    match secs {
        Some(t) if (1..=600).contains(&t) => Ok(Duration::from_secs(t)),
        Some(_) => bail!("{what} must be 1..600 seconds"),
        None => Ok(Duration::from_secs(30)),
    }
}

fn model_ref(uri: Option<String>, agent: &str) -> anyhow::Result<Option<ModelRef>> {
    uri.map(|m| {
        ModelRef::parse(&m).with_context(|| {
            format!(
                "agent '{agent}': model '{m}' is not models:/NAME@ALIAS or models:/NAME/VERSION"
            )
        })
    })
    .transpose()
}

fn builtin_profile() -> AgentProfile {
    let mut p = AgentProfile::new(BUILTIN, AgentKind::Builtin, "");
    // The analyst is local and fast; it answers many cards at once.
    p.max_concurrency = 16;
    p
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_lookup(
            |k| std::env::var(k).ok(),
            |p| std::fs::read_to_string(p).ok(),
        )
    }

    /// Reads settings through `get` and files through `read` (tests pass maps); empty
    /// values count as unset.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let addr = get("OPSIGHT_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let addr = addr.parse().with_context(|| {
            format!("OPSIGHT_ADDR '{addr}' is not an address such as 127.0.0.1:3000")
        })?;
        let as_of = match get("OPSIGHT_AS_OF") {
            Some(d) => Some(
                parse_date(&d)
                    .with_context(|| format!("OPSIGHT_AS_OF '{d}' is not a date (YYYY-MM-DD)"))?,
            ),
            None => None,
        };
        let default_grain = match get("OPSIGHT_DEFAULT_PERIOD") {
            Some(g) => Grain::parse(&g).with_context(|| {
                format!("OPSIGHT_DEFAULT_PERIOD '{g}' is week, month, quarter or year")
            })?,
            None => Grain::Week,
        };
        let trust = match get("OPSIGHT_CA_BUNDLE") {
            Some(path) => Trust::from_file(Path::new(&path)).context("OPSIGHT_CA_BUNDLE")?,
            None => Trust::default(),
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p))
        {
            bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        let database_url = trust.database_url(&database_url);

        let mut agents = vec![builtin_profile()];
        let mut roles = Roles::default();
        let file = get("OPSIGHT_AGENTS_FILE").map(PathBuf::from);
        let text = match &file {
            Some(path) => Some(read(path).with_context(|| {
                format!("OPSIGHT_AGENTS_FILE '{}' cannot be read", path.display())
            })?),
            None => read(Path::new(DEFAULT_AGENTS_FILE)),
        };
        if let Some(text) = text {
            let shown = file
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_AGENTS_FILE))
                .display()
                .to_string();
            let parsed: AgentsFile = toml::from_str(&text)
                .with_context(|| format!("agents file '{shown}' is not valid"))?;
            roles = parsed.roles;
            for entry in parsed.agents {
                agents.push(profile_from_entry(entry, &get)?);
            }
        }
        if let Some(url) = get("AGENT_URL") {
            let kind_text = get("AGENT_KIND").unwrap_or_else(|| "mlflow-serve".into());
            let entry = AgentEntry {
                name: "default".into(),
                kind: kind_text,
                url: Some(url),
                endpoint: get("AGENT_ENDPOINT"),
                llm_model: get("AGENT_LLM_MODEL"),
                model: get("AGENT_MODEL"),
                tracking_uri: get("MLFLOW_TRACKING_URI"),
                timeout_secs: get("AGENT_TIMEOUT_SECS").map(|t| t.parse::<u64>().unwrap_or(0)),
                max_concurrency: None,
                token_env: Some("AGENT_TOKEN".into()),
                alias_ttl_secs: None,
            };
            agents.push(profile_from_entry(entry, &get).map_err(|e| {
                anyhow::anyhow!("{}", e.to_string().replace("agent 'default'", "AGENT_URL"))
            })?);
        }
        // Without roles, the last configured agent (or the built-in analyst) does both.
        let fallback = agents.last().map(|p| p.name.clone()).unwrap_or_default();
        let cards_agent = roles.cards.unwrap_or_else(|| fallback.clone());
        let questions_agent = roles.questions.unwrap_or(fallback);
        for (role, name) in [("cards", &cards_agent), ("questions", &questions_agent)] {
            if !agents.iter().any(|a| &a.name == name) {
                bail!("roles.{role} names agent '{name}', which is not configured");
            }
        }
        let secs = |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| match get(key) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(Duration::from_secs(n)),
                _ => bail!(
                    "{key} '{v}' must be a number of seconds from {} to {}",
                    range.start(),
                    range.end()
                ),
            },
        };
        let job_lease = secs("OPSIGHT_JOB_LEASE_SECS", 30, 2..=3600)?;
        let shutdown_grace = secs("OPSIGHT_SHUTDOWN_GRACE_SECS", 10, 0..=600)?;
        let job_concurrency = match get("OPSIGHT_JOB_CONCURRENCY") {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => Some(n),
                _ => bail!("OPSIGHT_JOB_CONCURRENCY '{v}' must be 1 to 256"),
            },
        };
        let mut notifier = notifier(&get, &read)?;
        let (mut sources, catalogue) = sources(&get, &read)?;
        // Every outbound TLS client trusts the same bundle.
        if let Some(smtp) = notifier.smtp.as_mut() {
            smtp.trust = trust.clone();
        }
        for source in &mut sources {
            source.trust = trust.clone();
        }
        let auth = auth(&get, notifier.base_url.as_deref())?;
        let count = |key: &str, default: u32| match get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => bail!("{key} '{v}' must be a number of calls a minute from 1 to 100000"),
            },
        };
        let d = Allowance::default();
        let allowance = Allowance {
            per_user: count("OPSIGHT_AGENT_CALLS_PER_USER_PER_MIN", d.per_user)?,
            global: count("OPSIGHT_AGENT_CALLS_PER_MIN", d.global)?,
        };
        Ok(Config {
            trust,
            sources,
            catalogue,
            site: crate::application::leptos_options(),
            notifier,
            auth,
            allowance,
            database_url,
            agents,
            cards_agent,
            questions_agent,
            addr,
            as_of,
            default_grain,
            job_lease,
            shutdown_grace,
            job_concurrency,
        })
    }

    /// The profiles with the built-in analyst's URL pointing at the server on `local`.
    pub fn agents_at(&self, local: SocketAddr) -> Vec<AgentProfile> {
        let ip = if local.ip().is_unspecified() {
            if local.is_ipv4() {
                "127.0.0.1".to_string()
            } else {
                "[::1]".to_string()
            }
        } else if local.is_ipv6() {
            format!("[{}]", local.ip())
        } else {
            local.ip().to_string()
        };
        self.agents
            .iter()
            .cloned()
            .map(|mut p| {
                if p.kind == AgentKind::Builtin && p.url.is_empty() {
                    p.url = format!("http://{ip}:{}", local.port());
                }
                p
            })
            .collect()
    }
}

fn profile_from_entry(
    e: AgentEntry,
    get: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<AgentProfile> {
    let name = e.name.trim().to_string();
    if name == BUILTIN {
        bail!("agent name '{BUILTIN}' is reserved for the built-in analyst");
    }
    let kind = AgentKind::parse(&e.kind).with_context(|| {
        format!(
            "agent '{name}': kind '{}' is not one of {}",
            e.kind,
            AgentKind::ALL.map(|k| k.key()).join(", ")
        )
    })?;
    let url = e
        .url
        .with_context(|| format!("agent '{name}': url is required"))?;
    check_url(url.trim(), &format!("agent '{name}': url"))?;
    let mut p = AgentProfile::new(&name, kind, url.trim());
    p.endpoint = e.endpoint;
    p.llm_model = e.llm_model;
    p.model = model_ref(e.model, &name)?;
    p.tracking_uri = e.tracking_uri.map(|t| t.trim_end_matches('/').to_string());
    p.timeout = timeout(e.timeout_secs, &format!("agent '{name}': timeout_secs"))?;
    if let Some(t) = e.alias_ttl_secs {
        p.alias_ttl = Duration::from_secs(t);
    }
    if let Some(c) = e.max_concurrency {
        p.max_concurrency = c;
    }
    if let Some(var) = e.token_env {
        p.token = get(&var).map(Secret::new);
        // AGENT_TOKEN is optional for a single agent; a file's token_env is a promise.
        if p.token.is_none() && var != "AGENT_TOKEN" {
            bail!("agent '{name}': token_env names {var}, which is not set");
        }
    }
    p.validate().map_err(anyhow::Error::msg)?;
    if kind == AgentKind::Databricks && p.token.is_none() {
        bail!("agent '{name}': kind databricks needs a token (token_env, or AGENT_TOKEN)");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned(), |_| None)
    }

    /// `file` served as the agents file (`notify` false) or the notifications file.
    fn with(pairs: &[(&str, &str)], file: &str, notify: bool) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = file.to_string();
        Config::from_lookup(
            |k| map.get(k).cloned(),
            move |p| {
                (!p.ends_with(DEFAULT_SOURCES_FILE) && p.ends_with(DEFAULT_NOTIFY_FILE) == notify)
                    .then(|| file.clone())
            },
        )
    }

    fn with_file(pairs: &[(&str, &str)], file: &str) -> anyhow::Result<Config> {
        with(pairs, file, false)
    }

    fn with_notify_file(pairs: &[(&str, &str)], file: &str) -> anyhow::Result<Config> {
        with(pairs, file, true)
    }

    #[test]
    fn a_sources_file_names_sources_whose_connection_strings_stay_in_the_environment() {
        let file = r#"
            [[source]]
            name = "wms"
            kind = "postgres"
            url_env = "WMS_URL"
            table = "shipments"
            schedule = "*/15 * * * *"
            [source.columns]
            order_id = "so_number"
            line_no = "line"
            site = "dc_code"
            customer = "account"
            carrier = "haulier"
            sku = "item"
            category = "item_group"
            ordered_qty = "qty_ordered"
            delivered_qty = "qty_shipped"
            due_date = "must_arrive"
            delivered_date = "arrived_at"
        "#;
        let map: HashMap<String, String> = [
            ("OPSIGHT_SOURCES_FILE", "/etc/opsight/sources.toml"),
            ("WMS_URL", "postgres://u:pw-secret@db/wms"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sources_file = |text: &'static str| {
            let map = map.clone();
            Config::from_lookup(
                move |k| map.get(k).cloned(),
                move |p| (p == Path::new("/etc/opsight/sources.toml")).then(|| text.to_string()),
            )
        };
        let c = sources_file(file).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].reads(), "table shipments");
        assert_eq!(
            c.sources[0].schedule_text.as_deref(),
            Some("*/15 * * * * (UTC)")
        );
        assert!(!format!("{c:?}").contains("pw-secret"));
        let twice = Box::leak(format!("{file}\n{file}").into_boxed_str());
        assert_eq!(
            sources_file(twice).unwrap_err().to_string(),
            "source 'wms' is defined twice"
        );
        let unknown = Box::leak(file.replace("table =", "tabel =").into_boxed_str());
        assert!(
            format!("{:#}", sources_file(unknown).unwrap_err()).contains("unknown field `tabel`")
        );
    }

    #[test]
    fn a_sources_file_defines_dimensions_fields_and_kpis() {
        let file = r#"
            dimensions = ["shift"]
            [[source]]
            name = "wms"
            kind = "postgres"
            url_env = "WMS_URL"
            table = "shipments"
            [source.columns]
            order_id = "so_number"
            line_no = "line"
            site = "dc_code"
            customer = "account"
            carrier = "haulier"
            sku = "item"
            category = "item_group"
            ordered_qty = "qty_ordered"
            delivered_qty = "qty_shipped"
            due_date = "must_arrive"
            delivered_date = "arrived_at"
            dimensions = { lane = "lane_id" }
            fields = { ship_date = "shipped_on" }

            [[kpi]]
            key = "slow_transit"
            name = "Slow transit"
            direction = "lower"
            numerator = "days(ship_date, delivered_date) > 2"
            denominator = "not is_empty(ship_date)"
            target = 10
            at_risk = 5
        "#;
        let lookup = |text: String| {
            let env: HashMap<String, String> = [
                ("OPSIGHT_SOURCES_FILE", "/etc/opsight/sources.toml"),
                ("WMS_URL", "postgres://u:pw@db/wms"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            Config::from_lookup(
                move |k| env.get(k).cloned(),
                move |p| (p == Path::new("/etc/opsight/sources.toml")).then(|| text.clone()),
            )
        };
        let c = lookup(file.to_string()).unwrap();
        let cat = c.catalogue.expect("a catalogue");
        assert_eq!(cat.dimensions, ["shift", "lane"]);
        assert_eq!(cat.fields, ["ship_date"]);
        assert_eq!(cat.kpis[0].unit, Unit::Pct);
        assert!(!cat.kpis[0].higher_is_better);
        assert_eq!(c.sources[0].dimensions, [("lane".into(), "lane_id".into())]);
        let err = |text: String| format!("{:#}", lookup(text).unwrap_err());
        assert!(
            err(file.replace("days(ship_date", "days(shipdate")).contains("names 'shipdate'"),
            "an expression naming an unknown field"
        );
        assert!(err(file.replace("\"lower\"", "\"down\"")).contains("not higher or lower"));
        assert!(
            err(file.replace("key = \"slow_transit\"", "key = \"otif\"")).contains("Opsight's own")
        );
        let pushed = file
            .replace(
                "table = \"shipments\"",
                "table = \"shipments\"\npushdown = true",
            )
            .replace("fields = { ship_date = \"shipped_on\" }", "");
        let pushed = pushed.replace(
            "dimensions = [\"shift\"]",
            "dimensions = [\"shift\"]\nfields = [\"ship_date\"]",
        );
        assert!(err(pushed).contains("pushdown sends tallies without the counts"));
        // A KPI without expressions needs a source returning its counts, and has one.
        let fed = format!("{file}\n[[kpi]]\nkey = \"pick_accuracy\"\nname = \"Pick accuracy\"\n");
        assert!(err(fed.clone()).contains("no source returns it"));
        let picks = r#"
            [[source]]
            name = "picks"
            kind = "postgres"
            url_env = "WMS_URL"
            table = "pick_stats"
            kpi = "pick_accuracy"
            [source.columns]
            site = "dc"
            day = "pick_day"
            numerator = "good"
            denominator = "picks"
            dimensions = { zone = "zone" }
        "#;
        let c = lookup(format!("{fed}{picks}")).unwrap();
        let m = c.sources[1].measure.as_ref().expect("a KPI's source");
        assert_eq!(
            (m.kpi.as_str(), m.day.as_str()),
            ("pick_accuracy", "pick_day")
        );
        // Its zone is its own: lines are not broken down by it.
        assert_eq!(c.catalogue.unwrap().dimensions, ["shift", "lane"]);
        assert!(err(format!("{file}{picks}")).contains("which the file does not define"));
        let no_denominator = picks.replace("denominator = \"picks\"", "");
        assert!(err(format!("{fed}{no_denominator}")).contains("map its denominator"));
        assert!(err(format!("{fed}{}", picks.replace("day = ", "due = "))).contains("columns.due"));
        // Without a sources file there is no catalogue: the store keeps its own.
        let none = Config::from_lookup(|_| None, |_| None).unwrap();
        assert!(none.catalogue.is_none());
    }

    #[test]
    fn a_notifications_file_names_channels_without_writing_secrets_in_it() {
        let file = r#"
            base_url = "https://ops.example.com"
            [[channel]]
            name = "ops-slack"
            kind = "slack"
            url_env = "OPS_SLACK"
            alerts = false
            [[channel]]
            name = "mail"
            kind = "email"
            to = ["dc@example.com"]
            [smtp]
            host = "smtp.example.com"
            password_env = "SMTP_PW"
            username = "opsight"
            from = "opsight@example.com"
            [retry]
            max_attempts = 3
            base_secs = 0.5
        "#;
        let c = with_notify_file(
            &[
                ("OPS_SLACK", "https://hooks.slack.com/services/T/B/secret"),
                ("SMTP_PW", "pw-secret"),
                ("OPSIGHT_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ],
            file,
        )
        .unwrap();
        let n = &c.notifier;
        let names: Vec<&str> = n.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ops-slack", "mail", "webhook"]);
        assert!(!n.channels[0].alerts && n.channels[0].digests);
        assert_eq!(n.retry.max_attempts, 3);
        assert_eq!(n.alert_every, Some(Duration::from_secs(60)));
        assert_eq!(
            n.link("/kpi/DAL/otif").as_deref(),
            Some("https://ops.example.com/kpi/DAL/otif")
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "secrets in Debug: {shown}");
        // A missing variable, an unknown kind and e-mail without SMTP are refused.
        let err = with_notify_file(&[], file).unwrap_err().to_string();
        assert!(
            err.contains("url_env names OPS_SLACK, which is not set"),
            "{err}"
        );
        let err = with_notify_file(&[], "[[channel]]\nname = \"x\"\nkind = \"teams\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kind 'teams' is slack, json or email"),
            "{err}"
        );
        let err = with_notify_file(
            &[],
            "[[channel]]\nname = \"m\"\nkind = \"email\"\nto = [\"a@b.c\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("configure [smtp]"), "{err}");
        let err = cfg(&[("OPSIGHT_ALERT_CHECK_SECS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OPSIGHT_ALERT_CHECK_SECS"), "{err}");
        assert_eq!(
            cfg(&[("OPSIGHT_ALERT_CHECK_SECS", "0")])
                .unwrap()
                .notifier
                .alert_every,
            None
        );
    }

    #[test]
    fn an_agents_file_names_several_agents_and_their_roles() {
        let c = with_file(
            &[("ANALYST_TOKEN", "dapi-file-secret")],
            r#"
            [roles]
            cards = "serve"
            questions = "stream"

            [[agent]]
            name = "serve"
            kind = "mlflow-serve"
            url = "http://127.0.0.1:5001"
            model = "models:/opsight-analyst@prod"
            tracking_uri = "http://127.0.0.1:5000/"
            max_concurrency = 6

            [[agent]]
            name = "stream"
            kind = "databricks"
            url = "https://adb.example.net"
            endpoint = "opsight"
            token_env = "ANALYST_TOKEN"
            timeout_secs = 90
            "#,
        )
        .unwrap();
        assert_eq!(c.agents.len(), 3, "builtin + 2");
        assert_eq!(
            (c.cards_agent.as_str(), c.questions_agent.as_str()),
            ("serve", "stream")
        );
        let stream = &c.agents[2];
        assert_eq!(stream.token.as_ref().unwrap().expose(), "dapi-file-secret");
        assert_eq!(stream.timeout, Duration::from_secs(90));
        assert_eq!(
            c.agents[1].tracking_uri.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert!(!format!("{c:?}").contains("dapi-file-secret"));
    }

    #[test]
    fn bad_agents_files_say_what_is_wrong() {
        let err = |file: &str| with_file(&[], file).unwrap_err().to_string();
        let chain = |file: &str| format!("{:#}", with_file(&[], file).unwrap_err());
        assert!(
            chain("[[agent]]\nname='a'\nkind='telepathy'\nurl='http://x'")
                .contains("kind 'telepathy'")
        );
        assert!(
            err("[[agent]]\nname='a'\nkind='databricks'\nurl='http://x'")
                .contains("needs endpoint")
        );
        assert!(err("[roles]\ncards='ghost'").contains("'ghost'"));
        assert!(chain(
            "[[agent]]\nname='a'\nkind='mlflow-serve'\nurl='http://x'\nmodel='models:/m@prod'"
        )
        .contains("tracking_uri"));
        assert!(
            chain("[[agent]]\nname='a'\nkind='mlflow-serve'\nurl='http://x'\ntoken='t'")
                .contains("not valid")
        );
    }

    #[test]
    fn start_up_refuses_missing_tokens_bad_urls_and_bad_auth_settings() {
        let err = |pairs: &[(&str, &str)], file: &str| {
            format!("{:#}", with_file(pairs, file).unwrap_err())
        };
        let databricks =
            "[[agent]]\nname='d'\nkind='databricks'\nurl='https://adb.example.net'\nendpoint='e'";
        assert!(err(&[], databricks).contains("kind databricks needs a token"));
        assert!(err(&[], &format!("{databricks}\ntoken_env='DBX'"))
            .contains("token_env names DBX, which is not set"));
        assert!(with_file(
            &[("DBX", "dapi-x")],
            &format!("{databricks}\ntoken_env='DBX'")
        )
        .is_ok());
        assert!(err(
            &[],
            "[[agent]]\nname='a'\nkind='mlflow-serve'\nurl='http://'"
        )
        .contains("agent 'a': url"));
        assert!(format!(
            "{:#}",
            cfg(&[("OPSIGHT_BASE_URL", "ops.example.com")]).unwrap_err()
        )
        .contains("base_url 'ops.example.com' must start with http"));
        assert!(format!(
            "{:#}",
            cfg(&[("OPSIGHT_TRUSTED_PROXIES", "10.0.0.1, proxy")]).unwrap_err()
        )
        .contains("'proxy' is not an IP address"));
        assert!(format!(
            "{:#}",
            cfg(&[("OPSIGHT_ANONYMOUS_ROLE", "root")]).unwrap_err()
        )
        .contains("OPSIGHT_ANONYMOUS_ROLE"));
        assert!(format!(
            "{:#}",
            cfg(&[("OPSIGHT_AGENT_CALLS_PER_MIN", "0")]).unwrap_err()
        )
        .contains("1 to 100000"));
        let c = cfg(&[
            ("OPSIGHT_BASE_URL", "https://ops.example.com"),
            ("OPSIGHT_TRUSTED_PROXIES", "10.0.0.1,::1"),
            ("OPSIGHT_ANONYMOUS_ROLE", "viewer"),
            ("OPSIGHT_SESSION_HOURS", "8"),
        ])
        .unwrap();
        assert!(c.auth.secure_cookies, "https base URL: Secure cookies");
        assert_eq!(c.auth.trusted_proxies.len(), 2);
        assert_eq!(c.auth.anonymous_role, Some(Role::Viewer));
        assert_eq!(c.auth.session_ttl, Duration::from_secs(8 * 3600));
        assert!(!cfg(&[]).unwrap().auth.secure_cookies);
    }

    #[test]
    fn defaults_are_embedded() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.agents.len(), 1);
        assert_eq!(c.agents[0].kind, AgentKind::Builtin);
        assert_eq!(
            (c.cards_agent.as_str(), c.questions_agent.as_str()),
            (BUILTIN, BUILTIN)
        );
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.default_grain, Grain::Week);
        assert_eq!(
            cfg(&[("OPSIGHT_DEFAULT_PERIOD", "month")])
                .unwrap()
                .default_grain,
            Grain::Month
        );
        let local: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(
            c.agents_at(local)[0].invoke_url(),
            "http://127.0.0.1:4000/agent/invocations"
        );
    }

    #[test]
    fn bad_values_get_clear_messages() {
        assert!(cfg(&[("AGENT_URL", "ftp://x")])
            .unwrap_err()
            .to_string()
            .contains("AGENT_URL"));
        assert!(cfg(&[("OPSIGHT_AS_OF", "21/11/2026")])
            .unwrap_err()
            .to_string()
            .contains("YYYY-MM-DD"));
        assert!(cfg(&[("OPSIGHT_DEFAULT_PERIOD", "fortnight")])
            .unwrap_err()
            .to_string()
            .contains("OPSIGHT_DEFAULT_PERIOD 'fortnight' is week, month, quarter or year"));
        assert!(cfg(&[("OPSIGHT_ADDR", "nope")])
            .unwrap_err()
            .to_string()
            .contains("OPSIGHT_ADDR"));
        assert!(cfg(&[("AGENT_URL", "http://x"), ("AGENT_TIMEOUT_SECS", "0")]).is_err());
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let c = cfg(&[
            ("AGENT_URL", "http://x:1"),
            ("AGENT_TOKEN", "dapi-secret-123"),
        ])
        .unwrap();
        assert_eq!(
            c.agents[1].token.as_ref().unwrap().expose(),
            "dapi-secret-123"
        );
        assert_eq!(c.cards_agent, "default");
        assert!(!format!("{c:?}").contains("dapi-secret-123"));
    }
}
