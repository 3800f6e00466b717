//! One agent behind one shared `reqwest::Client`: a call goes through the circuit
//! breaker, waits for a concurrency slot, is retried where safe, and its reply is read as
//! JSON or SSE by Content-Type (never by what was asked for), capped in size and time.
//! Stream deltas are forwarded to a sink as they arrive.

use super::mlflow;
use super::profile::{AgentKind, AgentProfile};
use super::resilience::{Breaker, BreakerState, Failure, RetryPolicy};
use super::{wire, AgentError, MAX_REPLY_BYTES};
use crate::domain::insight::{answer_from_json, AgentAnswer, SseDecoder, StreamFold, StreamStep};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open an agent's breaker, and how long it stays open.
pub const BREAKER_FAILURES: u32 = 5;
pub const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);

/// Text deltas of a streamed reply, in order.
pub type DeltaSink = tokio::sync::mpsc::UnboundedSender<String>;

/// What the settings page shows about an agent.
#[derive(Clone, Debug, Default)]
pub struct AgentHealth {
    /// `None` until checked.
    pub reachable: Option<bool>,
    pub latency_ms: Option<u64>,
    pub checked_at: Option<String>,
    /// The last failure of a check or a call (safe text).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// A successful call.
#[derive(Debug)]
pub struct Reply {
    pub answer: AgentAnswer,
    /// Wall time of the call, waiting and retries included.
    pub latency: Duration,
    pub attempts: u32,
    /// The reply body as received (JSON, or the SSE text), for lineage.
    pub body: String,
}

#[derive(Debug)]
pub struct AgentClient {
    http: reqwest::Client,
    profile: AgentProfile,
    limiter: tokio::sync::Semaphore,
    breaker: Mutex<Breaker>,
    retry: RetryPolicy,
    health: Mutex<AgentHealth>,
    version: Mutex<Option<(String, Instant)>>,
}

fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Settles the breaker when a call ends, also when the caller drops the future.
struct Admission<'a> {
    client: &'a AgentClient,
    settled: bool,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.settled {
            if let Ok(mut b) = self.client.breaker.lock() {
                b.release();
            }
        }
    }
}

impl AgentClient {
    pub fn new(http: reqwest::Client, profile: AgentProfile) -> AgentClient {
        AgentClient {
            http,
            limiter: tokio::sync::Semaphore::new(profile.max_concurrency),
            breaker: Mutex::new(Breaker::new(BREAKER_FAILURES, BREAKER_COOL_DOWN)),
            retry: RetryPolicy::default(),
            health: Mutex::new(AgentHealth::default()),
            version: Mutex::new(None),
            profile,
        }
    }

    /// Replaces the retry policy and breaker settings (tests use short ones).
    pub fn with_resilience(mut self, retry: RetryPolicy, breaker: Breaker) -> AgentClient {
        self.retry = retry;
        self.breaker = Mutex::new(breaker);
        self
    }

    pub fn name(&self) -> &str {
        &self.profile.name
    }

    pub fn kind(&self) -> AgentKind {
        self.profile.kind
    }

    pub fn profile(&self) -> &AgentProfile {
        &self.profile
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker
            .lock()
            .map(|b| b.state(Instant::now()))
            .unwrap_or(BreakerState::Closed)
    }

    pub fn health(&self) -> AgentHealth {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The body this agent gets for a ResponsesAgent request.
    pub fn wire_body(&self, request: &Value, stream: bool) -> Value {
        wire::for_kind(
            &self.profile,
            request,
            stream && self.profile.kind.streams(),
        )
    }

    /// Sends one request body and interprets the reply. Deltas of a streamed reply go to
    /// `deltas` as they arrive.
    pub async fn call(
        &self,
        body: &Value,
        deltas: Option<&DeltaSink>,
    ) -> Result<Reply, AgentError> {
        let started = Instant::now();
        if let Ok(mut b) = self.breaker.lock() {
            if let Err(wait) = b.admit(started) {
                return Err(AgentError::CircuitOpen(wait.as_secs().max(1)));
            }
        }
        let mut admission = Admission {
            client: self,
            settled: false,
        };
        // A client span (traces, when exported): the agent, its kind and the outcome.
        let span = tracing::info_span!(
            "agent_call",
            agent = %self.profile.name,
            agent_kind = self.profile.kind.key(),
            streamed = deltas.is_some(),
            otel.kind = "client",
            error = tracing::field::Empty,
        );
        let result = tracing::Instrument::instrument(
            self.call_admitted(body, deltas, started),
            span.clone(),
        )
        .await;
        if let Ok(mut b) = self.breaker.lock() {
            match &result {
                Ok(_) => b.success(),
                Err(e) if e.counts_against_agent() => b.failure(Instant::now()),
                Err(_) => b.release(),
            }
        }
        admission.settled = true;
        // The variant's name is the error kind: `Timeout`, `Crashed`, … (few label values).
        let kind = result.as_ref().err().map(|e| {
            let name = format!("{e:?}");
            name.split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        });
        crate::ssr::metrics::observe_agent(
            &self.profile.name,
            started.elapsed().as_secs_f64(),
            kind.as_deref(),
        );
        if let Some(kind) = &kind {
            span.record("error", kind.as_str());
        }
        if let Err(e) = &result {
            if let Ok(mut h) = self.health.lock() {
                h.last_error = Some(e.to_string());
                h.last_error_at = Some(now_text());
            }
        }
        result
    }

    async fn call_admitted(
        &self,
        body: &Value,
        deltas: Option<&DeltaSink>,
        started: Instant,
    ) -> Result<Reply, AgentError> {
        let timeout = self.profile.timeout;
        let deadline = started + timeout;
        let _permit = tokio::time::timeout(timeout, self.limiter.acquire())
            .await
            .map_err(|_| AgentError::Busy(self.profile.max_concurrency))?
            .map_err(|_| AgentError::Busy(self.profile.max_concurrency))?;
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(AgentError::Timeout(timeout.as_secs()));
            }
            match self.attempt(&bytes, remaining, deltas).await {
                Ok((answer, body)) => {
                    return Ok(Reply {
                        answer,
                        latency: started.elapsed(),
                        attempts: attempt,
                        body,
                    })
                }
                Err((error, failure)) => {
                    let seed = started.elapsed().as_nanos() as u64 ^ u64::from(attempt);
                    match self.retry.delay(attempt, failure, seed) {
                        Some(wait) if Instant::now() + wait < deadline => {
                            tracing::warn!(agent = %self.profile.name, attempt, wait_ms = wait.as_millis() as u64, error = %error, "agent call failed, retrying");
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        _ => return Err(error),
                    }
                }
            }
        }
    }

    async fn attempt(
        &self,
        bytes: &[u8],
        remaining: Duration,
        deltas: Option<&DeltaSink>,
    ) -> Result<(AgentAnswer, String), (AgentError, Failure)> {
        use reqwest::header;
        let mut request = self
            .http
            .post(self.profile.invoke_url())
            .timeout(remaining)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(bytes.to_vec());
        if matches!(
            self.profile.kind,
            AgentKind::MlflowAgentServer | AgentKind::Builtin
        ) {
            // AgentServer then returns the trace id (metadata.trace_id or a stream event).
            request = request.header("x-mlflow-return-trace-id", "true");
        }
        if let Some(token) = &self.profile.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            let failure = if e.is_connect() {
                Failure::Connect
            } else {
                Failure::Other
            };
            (self.transport_error(&e), failure)
        })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !(200..300).contains(&status) {
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = read_capped(response).await.unwrap_or_default();
            return Err((
                classify_error(status, &content_type, &body),
                Failure::Status(status, retry_after),
            ));
        }
        let other = |e: AgentError| (e, Failure::Other);
        if content_type.starts_with("text/event-stream") {
            return self.read_stream(response, deltas).await.map_err(other);
        }
        let body = read_capped(response).await.map_err(|e| match e {
            ReadError::TooLarge => other(AgentError::TooLarge),
            ReadError::Http(e) => other(self.transport_error(&e)),
        })?;
        if content_type.starts_with("text/html") {
            return Err(other(AgentError::NotAnAgent { status }));
        }
        let answer = answer_from_json(&body).map_err(|e| other(e.into()))?;
        Ok((answer, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Reads an SSE reply event by event, forwarding text deltas. A stream cut before its
    /// end (`[DONE]` or `response.completed`) is an error, not a short answer.
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        deltas: Option<&DeltaSink>,
    ) -> Result<(AgentAnswer, String), AgentError> {
        let mut decoder = SseDecoder::default();
        let mut fold = StreamFold::default();
        let mut raw: Vec<u8> = Vec::new();
        let mut ended = false;
        'read: loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(AgentError::Timeout(self.profile.timeout.as_secs()))
                }
                // A reset mid-way: the fold reports the stream as cut.
                Err(_) => break,
            };
            if raw.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(AgentError::TooLarge);
            }
            raw.extend_from_slice(&chunk);
            for data in decoder.push(&chunk) {
                match fold.apply(&data) {
                    StreamStep::Delta(d) => {
                        if let Some(sink) = deltas {
                            let _ = sink.send(d);
                        }
                    }
                    StreamStep::Done => {
                        ended = true;
                        break 'read;
                    }
                    StreamStep::Nothing => {}
                }
            }
        }
        if !ended {
            if let Some(data) = decoder.finish() {
                fold.apply(&data);
            }
        }
        let answer = fold.finish()?;
        Ok((answer, String::from_utf8_lossy(&raw).into_owned()))
    }

    fn transport_error(&self, e: &reqwest::Error) -> AgentError {
        if e.is_timeout() {
            AgentError::Timeout(self.profile.timeout.as_secs())
        } else {
            AgentError::Connect
        }
    }

    /// GETs the kind's health route and records reachability and latency.
    pub async fn check_health(&self) -> AgentHealth {
        let started = Instant::now();
        let mut request = self
            .http
            .get(self.profile.health_url())
            .timeout(Duration::from_secs(5));
        if let Some(token) = &self.profile.token {
            request = request.bearer_auth(token.expose());
        }
        let outcome = match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "health check answered HTTP {}",
                r.status().as_u16()
            )),
            Err(e) if e.is_timeout() => Err("health check timed out after 5 s".to_string()),
            Err(_) => Err("the agent could not be reached".to_string()),
        };
        let latency = started.elapsed().as_millis() as u64;
        if let Ok(mut h) = self.health.lock() {
            h.reachable = Some(outcome.is_ok());
            h.latency_ms = Some(latency);
            h.checked_at = Some(now_text());
            if let Err(e) = outcome {
                h.last_error = Some(e);
                h.last_error_at = h.checked_at.clone();
            }
            return h.clone();
        }
        AgentHealth::default()
    }

    /// The model version behind this agent: a pinned version, or the alias resolved through
    /// MLflow (cached for the profile's `alias_ttl`; the last known version when MLflow is
    /// down).
    pub async fn model_version(&self) -> Option<String> {
        let model = self.profile.model.as_ref()?;
        if let Some(v) = &model.version {
            return Some(v.clone());
        }
        let alias = model.alias.as_ref()?;
        let tracking = self.profile.tracking()?;
        let tracking = tracking.as_str();
        if let Some((v, at)) = self.version.lock().ok()?.as_ref() {
            if at.elapsed() < self.profile.alias_ttl {
                return Some(v.clone());
            }
        }
        let token = (self.profile.kind == AgentKind::Databricks)
            .then_some(self.profile.token.as_ref())
            .flatten();
        match mlflow::resolve_alias(&self.http, tracking, token, &model.name, alias).await {
            Ok(v) => {
                if let Ok(mut cache) = self.version.lock() {
                    *cache = Some((v.clone(), Instant::now()));
                }
                Some(v)
            }
            Err(e) => {
                tracing::warn!(agent = %self.profile.name, error = %e, "could not resolve the model alias");
                self.cached_model_version()
            }
        }
    }

    /// The last resolved version, without asking MLflow (for rendering).
    pub fn cached_model_version(&self) -> Option<String> {
        let model = self.profile.model.as_ref()?;
        if let Some(v) = &model.version {
            return Some(v.clone());
        }
        self.version.lock().ok()?.as_ref().map(|(v, _)| v.clone())
    }
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_REPLY_BYTES)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns an error status and body into a safe error. `mlflow models serve` reports a crash
/// inside `predict` as HTTP 400 with a `stack_trace`: that is the agent's failure, not ours.
fn classify_error(status: u16, content_type: &str, body: &[u8]) -> AgentError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("error_code"))
        .and_then(Value::as_str)
        .map(|c| {
            c.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect()
        });
    let stack = parsed
        .as_ref()
        .and_then(|v| v.get("stack_trace"))
        .and_then(Value::as_str);
    let html = content_type.starts_with("text/html")
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    match status {
        502..=504 | 429 => AgentError::Unavailable { status },
        400 if stack.is_some() => AgentError::Crashed {
            status,
            code,
            // The exception line only, trimmed: it is for the server log, not for users.
            last_line: stack
                .and_then(|s| s.trim_end().lines().last())
                .map(|l| l.chars().take(160).collect()),
        },
        500..=599 => AgentError::Crashed {
            status,
            code,
            last_line: None,
        },
        _ if html => AgentError::NotAnAgent { status },
        _ => AgentError::Rejected { status, code },
    }
}
