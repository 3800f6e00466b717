//! Agent profiles and the registry of configured agents.

use super::client::AgentClient;
use super::Secret;
use std::sync::Arc;
use std::time::Duration;

/// How an agent is served, which decides its paths, request shape and streaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// `mlflow models serve`: POST `/invocations`, JSON only (ignores `stream`).
    MlflowServe,
    /// MLflow AgentServer: POST `/invocations`, SSE when `stream` is true.
    MlflowAgentServer,
    /// Databricks Model Serving: POST `/serving-endpoints/NAME/invocations`, bearer token.
    Databricks,
    /// Any OpenAI Responses-compatible server: POST `/v1/responses`, no `custom_inputs`.
    OpenaiResponses,
    /// The analyst built into this server (`/agent/invocations`).
    Builtin,
}

impl AgentKind {
    pub const ALL: [AgentKind; 5] = [
        AgentKind::MlflowServe,
        AgentKind::MlflowAgentServer,
        AgentKind::Databricks,
        AgentKind::OpenaiResponses,
        AgentKind::Builtin,
    ];

    pub fn key(self) -> &'static str {
        match self {
            AgentKind::MlflowServe => "mlflow-serve",
            AgentKind::MlflowAgentServer => "mlflow-agent-server",
            AgentKind::Databricks => "databricks",
            AgentKind::OpenaiResponses => "openai-responses",
            AgentKind::Builtin => "builtin",
        }
    }

    pub fn parse(s: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.key() == s.trim())
    }

    /// Whether the server can stream (it is still asked; the reply's Content-Type decides).
    pub fn streams(self) -> bool {
        !matches!(self, AgentKind::MlflowServe)
    }
}

/// A registered MLflow model: `models:/NAME@ALIAS` or `models:/NAME/VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub alias: Option<String>,
    pub version: Option<String>,
}

impl ModelRef {
    pub fn parse(uri: &str) -> Option<ModelRef> {
        let rest = uri.trim().strip_prefix("models:/")?;
        if let Some((name, alias)) = rest.split_once('@') {
            if name.is_empty() || alias.is_empty() || alias.contains('/') {
                return None;
            }
            return Some(ModelRef {
                name: name.into(),
                alias: Some(alias.into()),
                version: None,
            });
        }
        let (name, version) = rest.rsplit_once('/')?;
        (!name.is_empty() && !version.is_empty() && version.chars().all(|c| c.is_ascii_digit()))
            .then(|| ModelRef {
                name: name.into(),
                alias: None,
                version: Some(version.into()),
            })
    }

    pub fn uri(&self) -> String {
        match (&self.alias, &self.version) {
            (Some(a), _) => format!("models:/{}@{a}", self.name),
            (None, Some(v)) => format!("models:/{}/{v}", self.name),
            (None, None) => format!("models:/{}", self.name),
        }
    }
}

/// One configured agent.
#[derive(Clone, Debug)]
pub struct AgentProfile {
    /// Unique; shown on cards and stored with every insight.
    pub name: String,
    pub kind: AgentKind,
    /// The server's base URL (`http://host:port`, optional path prefix) or the full
    /// invocation URL.
    pub url: String,
    /// Databricks serving endpoint name (`kind = databricks`).
    pub endpoint: Option<String>,
    /// The `model` field for OpenAI Responses servers.
    pub llm_model: Option<String>,
    pub token: Option<Secret>,
    /// Per call, retries included.
    pub timeout: Duration,
    /// Calls in flight at once; more wait for a slot (up to the timeout).
    pub max_concurrency: usize,
    pub model: Option<ModelRef>,
    /// MLflow tracking server, for alias resolution and feedback.
    pub tracking_uri: Option<String>,
    /// How long a resolved alias → version is trusted before MLflow is asked again.
    pub alias_ttl: Duration,
}

impl AgentProfile {
    pub fn new(name: &str, kind: AgentKind, url: &str) -> AgentProfile {
        AgentProfile {
            name: name.into(),
            kind,
            url: url.trim_end_matches('/').into(),
            endpoint: None,
            llm_model: None,
            token: None,
            timeout: Duration::from_secs(30),
            max_concurrency: 4,
            model: None,
            tracking_uri: None,
            alias_ttl: Duration::from_secs(30),
        }
    }

    /// The MLflow tracking server (alias resolution, feedback): the one configured, or for
    /// Databricks its workspace (whose registry, Unity Catalog and traces live there).
    pub fn tracking(&self) -> Option<String> {
        self.tracking_uri
            .clone()
            .or_else(|| (self.kind == AgentKind::Databricks).then(|| self.base_url()))
    }

    fn path(&self) -> String {
        match self.kind {
            AgentKind::MlflowServe | AgentKind::MlflowAgentServer => "/invocations".into(),
            AgentKind::Builtin => "/agent/invocations".into(),
            AgentKind::OpenaiResponses => "/v1/responses".into(),
            AgentKind::Databricks => format!(
                "/serving-endpoints/{}/invocations",
                self.endpoint.as_deref().unwrap_or("")
            ),
        }
    }

    /// Where calls go: the base URL plus the kind's path, unless the URL already ends
    /// with it.
    pub fn invoke_url(&self) -> String {
        let path = self.path();
        let base = self.url.trim_end_matches('/');
        if base.ends_with(&path)
            || (self.kind == AgentKind::OpenaiResponses && base.ends_with("/responses"))
        {
            base.to_string()
        } else {
            format!("{base}{path}")
        }
    }

    /// The base URL, without an invocation path.
    pub fn base_url(&self) -> String {
        let url = self.invoke_url();
        let path = self.path();
        url.strip_suffix(&path).unwrap_or(&url).to_string()
    }

    /// Where the health check goes (GET), per kind.
    pub fn health_url(&self) -> String {
        let base = self.base_url();
        match self.kind {
            AgentKind::MlflowServe => format!("{base}/ping"),
            AgentKind::MlflowAgentServer => format!("{base}/health"),
            AgentKind::Builtin => format!("{base}/healthz"),
            AgentKind::OpenaiResponses => format!("{base}/v1/models"),
            AgentKind::Databricks => format!(
                "{base}/api/2.0/serving-endpoints/{}",
                self.endpoint.as_deref().unwrap_or("")
            ),
        }
    }

    /// Host and path for display: no credentials, no query string.
    pub fn label(&self) -> String {
        let url = self.invoke_url();
        let rest = url.split("://").nth(1).unwrap_or(&url);
        let rest = rest.rsplit('@').next().unwrap_or(rest);
        rest.split(['?', '#']).next().unwrap_or(rest).to_string()
    }

    /// Checks what start-up can check: a URL, a Databricks endpoint, an OpenAI model.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "agent name '{n}' must be letters, digits, '-', '_' or '.'"
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "agent '{n}': url must be an http:// or https:// URL"
            ));
        }
        if self.kind == AgentKind::Databricks && self.endpoint.as_deref().unwrap_or("").is_empty() {
            return Err(format!(
                "agent '{n}': kind databricks needs endpoint (the serving endpoint name)"
            ));
        }
        if self.kind == AgentKind::OpenaiResponses && self.llm_model.is_none() {
            return Err(format!("agent '{n}': kind openai-responses needs model"));
        }
        if self.max_concurrency == 0 {
            return Err(format!("agent '{n}': max_concurrency must be at least 1"));
        }
        if let Some(t) = &self.tracking_uri {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(format!("agent '{n}': tracking_uri must be an http(s) URL"));
            }
        }
        if self.model.as_ref().is_some_and(|m| m.alias.is_some()) && self.tracking().is_none() {
            return Err(format!(
                "agent '{n}': a model alias needs tracking_uri to resolve it"
            ));
        }
        Ok(())
    }
}

/// The configured agents and which one does what. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Agents {
    all: Arc<Vec<Arc<AgentClient>>>,
    cards: usize,
    questions: usize,
    http: reqwest::Client,
}

impl Agents {
    /// Builds one client per profile over one shared `reqwest::Client`. `cards` and
    /// `questions` name the agents for scheduled/refreshed cards and for drill-down
    /// questions.
    /// `trust`: the CA bundle the HTTP client trusts beside the built-in roots (agents,
    /// tracking servers and webhooks share this client).
    pub fn new(
        profiles: Vec<AgentProfile>,
        cards: &str,
        questions: &str,
        trust: &crate::ssr::trust::Trust,
    ) -> anyhow::Result<Agents> {
        anyhow::ensure!(!profiles.is_empty(), "no agent is configured");
        for p in &profiles {
            p.validate().map_err(anyhow::Error::msg)?;
        }
        for (i, p) in profiles.iter().enumerate() {
            anyhow::ensure!(
                !profiles[..i].iter().any(|q| q.name == p.name),
                "agent name '{}' is used twice",
                p.name
            );
        }
        let http = trust
            .http()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("opsight/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let index = |role: &str, name: &str| {
            profiles
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| anyhow::anyhow!("the {role} agent '{name}' is not configured"))
        };
        let cards = index("cards", cards)?;
        let questions = index("questions", questions)?;
        let all = profiles
            .into_iter()
            .map(|p| Arc::new(AgentClient::new(http.clone(), p)))
            .collect();
        Ok(Agents {
            all: Arc::new(all),
            cards,
            questions,
            http,
        })
    }

    /// One agent doing everything.
    pub fn single(profile: AgentProfile) -> anyhow::Result<Agents> {
        let name = profile.name.clone();
        Agents::new(
            vec![profile],
            &name,
            &name,
            &crate::ssr::trust::Trust::default(),
        )
    }

    pub fn cards(&self) -> &Arc<AgentClient> {
        &self.all[self.cards]
    }

    pub fn questions(&self) -> &Arc<AgentClient> {
        &self.all[self.questions]
    }

    pub fn get(&self, name: &str) -> Option<&Arc<AgentClient>> {
        self.all.iter().find(|a| a.name() == name)
    }

    pub fn all(&self) -> &[Arc<AgentClient>] {
        &self.all
    }

    /// The shared HTTP client (MLflow REST calls use it too).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The roles an agent has, for display.
    pub fn roles(&self, name: &str) -> Vec<&'static str> {
        let mut roles = Vec::new();
        if self.cards().name() == name {
            roles.push("cards");
        }
        if self.questions().name() == name {
            roles.push("questions");
        }
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_parse_aliases_and_versions() {
        let a = ModelRef::parse("models:/opsight-analyst@prod").unwrap();
        assert_eq!(
            (a.name.as_str(), a.alias.as_deref()),
            ("opsight-analyst", Some("prod"))
        );
        let v = ModelRef::parse("models:/cat.schema.m/3").unwrap();
        assert_eq!(
            (v.name.as_str(), v.version.as_deref()),
            ("cat.schema.m", Some("3"))
        );
        assert_eq!(a.uri(), "models:/opsight-analyst@prod");
        for bad in ["runs:/x/y", "models:/", "models:/m@", "models:/m/latest"] {
            assert!(ModelRef::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn urls_per_kind() {
        let mut p = AgentProfile::new(
            "db",
            AgentKind::Databricks,
            "https://adb-1.azuredatabricks.net/",
        );
        p.endpoint = Some("opsight".into());
        assert_eq!(
            p.invoke_url(),
            "https://adb-1.azuredatabricks.net/serving-endpoints/opsight/invocations"
        );
        assert_eq!(
            p.health_url(),
            "https://adb-1.azuredatabricks.net/api/2.0/serving-endpoints/opsight"
        );
        let s = AgentProfile::new(
            "s",
            AgentKind::MlflowServe,
            "http://127.0.0.1:5001/invocations",
        );
        assert_eq!(s.invoke_url(), "http://127.0.0.1:5001/invocations");
        assert_eq!(s.health_url(), "http://127.0.0.1:5001/ping");
        let o = AgentProfile::new("o", AgentKind::OpenaiResponses, "http://u:pw@llm:8000");
        assert_eq!(o.label(), "llm:8000/v1/responses", "no credentials");
        assert!(o.validate().unwrap_err().contains("needs model"));
    }
}
