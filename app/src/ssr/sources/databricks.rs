//! Databricks SQL: statements run on a SQL warehouse through the SQL Statement Execution
//! API 2.0, results read chunk by chunk as they are fetched.
//!
//! A statement is posted with a short `wait_timeout` and polled until it ends
//! (`SUCCEEDED`, or `FAILED` with the warehouse's message). Results come as `JSON_ARRAY`
//! chunks, inline or (for the lines, which may be large) as external links: short-lived
//! presigned URLs fetched without the `Authorization` header (storage refuses a second
//! credential, and the token must not travel to it). Each chunk names the next one
//! (`next_chunk_internal_link`). Sign-in is a personal access token or OAuth
//! machine-to-machine (a service principal's client id and secret exchanged at
//! `/oidc/v1/token` for a bearer token).

use super::def::{DatabricksAuth, Workspace};
use serde_json::{json, Value};
use std::time::Duration;

/// How often a running statement is polled.
const POLL: Duration = Duration::from_millis(300);

/// A signed-in client of one workspace.
pub struct Client {
    http: reqwest::Client,
    workspace: Workspace,
    host: String,
    warehouse: String,
    bearer: String,
    /// When an OAuth token is to be renewed (a minute before it expires).
    renew_at: Option<std::time::Instant>,
    /// Bytes of result data read (the benchmark compares lines with aggregates).
    pub bytes: u64,
}

/// A statement's result, chunk by chunk.
pub enum Disposition {
    Inline,
    ExternalLinks,
}

fn failed(what: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{what}: timed out")
    } else if e.is_connect() {
        format!("{what}: cannot connect")
    } else {
        format!("{what}: the connection failed")
    }
}

/// The API's own message for a refused call ("error_code: message"), short.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["error_code"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or("");
    let message = v["message"]
        .as_str()
        .or(v["error_description"].as_str())
        .unwrap_or("");
    let text: String = format!("{code} {message}")
        .trim()
        .chars()
        .take(300)
        .collect();
    match status.as_u16() {
        401 | 403 => format!("the workspace refused the credentials (HTTP {status}) {text}")
            .trim()
            .to_string(),
        _ => format!("the workspace answered HTTP {status} {text}")
            .trim()
            .to_string(),
    }
}

impl Client {
    /// Signs in (an OAuth token is asked for first when the source uses a service
    /// principal).
    pub async fn sign_in(
        ws: &Workspace,
        timeout: Duration,
        trust: &crate::ssr::trust::Trust,
    ) -> Result<Client, String> {
        let http = trust
            .http()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|_| "the HTTP client could not be built".to_string())?;
        let (bearer, renew_at) = bearer(&http, ws).await?;
        Ok(Client {
            http,
            workspace: ws.clone(),
            host: ws.host.clone(),
            warehouse: ws.warehouse.clone(),
            bearer,
            renew_at,
            bytes: 0,
        })
    }

    /// A new OAuth token when the one held is about to expire (a sync may outlast it).
    async fn fresh(&mut self) -> Result<(), String> {
        if self
            .renew_at
            .is_some_and(|at| std::time::Instant::now() >= at)
        {
            let (bearer, renew_at) = bearer(&self.http, &self.workspace).await?;
            self.bearer = bearer;
            self.renew_at = renew_at;
        }
        Ok(())
    }

    async fn call(&mut self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        self.fresh().await?;
        let r = request
            .bearer_auth(&self.bearer)
            .send()
            .await
            .map_err(|e| failed("the workspace did not answer", &e))?;
        let status = r.status();
        let body = r
            .text()
            .await
            .map_err(|e| failed("reading the workspace's answer failed", &e))?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        self.bytes += body.len() as u64;
        serde_json::from_str(&body).map_err(|_| "the workspace's answer is not JSON".into())
    }

    /// Runs a statement to its end: the first answer that is `SUCCEEDED` (manifest and
    /// first chunk), or the warehouse's reason it failed.
    pub async fn execute(&mut self, sql: &str, disposition: Disposition) -> Result<Value, String> {
        let body = json!({
            "statement": sql,
            "warehouse_id": self.warehouse,
            "wait_timeout": "5s",
            "on_wait_timeout": "CONTINUE",
            "format": "JSON_ARRAY",
            "disposition": match disposition {
                Disposition::Inline => "INLINE",
                Disposition::ExternalLinks => "EXTERNAL_LINKS",
            },
        });
        let url = format!("{}/api/2.0/sql/statements", self.host);
        let mut answer = self.call(self.http.post(&url).json(&body)).await?;
        loop {
            match answer["status"]["state"].as_str().unwrap_or("") {
                "SUCCEEDED" => return Ok(answer),
                "PENDING" | "RUNNING" => {
                    tokio::time::sleep(POLL).await;
                    let id = answer["statement_id"].as_str().unwrap_or("").to_string();
                    answer = self.call(self.http.get(format!("{url}/{id}"))).await?;
                }
                "FAILED" => {
                    let message = answer["status"]["error"]["message"]
                        .as_str()
                        .unwrap_or("no reason given");
                    return Err(format!(
                        "the query fails: {}",
                        message.chars().take(300).collect::<String>()
                    ));
                }
                other => return Err(format!("the statement ended {}", other.to_lowercase())),
            }
        }
    }

    /// The column names of a finished statement.
    pub fn columns(answer: &Value) -> Vec<String> {
        answer["manifest"]["schema"]["columns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rows of one chunk (inline, or fetched from its external links), and the link to
    /// the next chunk.
    pub async fn chunk(
        &mut self,
        chunk: &Value,
    ) -> Result<(Vec<Vec<Option<String>>>, Option<String>), String> {
        let mut rows = Vec::new();
        let mut next = chunk["next_chunk_internal_link"]
            .as_str()
            .map(str::to_string);
        if let Some(data) = chunk["data_array"].as_array() {
            rows.extend(data.iter().map(row));
        }
        if let Some(links) = chunk["external_links"].as_array() {
            for link in links {
                let url = link["external_link"]
                    .as_str()
                    .ok_or("an external link has no URL")?;
                // No Authorization header: the link is presigned.
                let r = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| failed("fetching a result chunk failed", &e))?;
                let status = r.status();
                let body = r
                    .text()
                    .await
                    .map_err(|e| failed("fetching a result chunk failed", &e))?;
                if !status.is_success() {
                    return Err(format!("fetching a result chunk answered HTTP {status}"));
                }
                self.bytes += body.len() as u64;
                let data: Value = serde_json::from_str(&body)
                    .map_err(|_| "a result chunk is not JSON".to_string())?;
                rows.extend(data.as_array().into_iter().flatten().map(row));
                if let Some(n) = link["next_chunk_internal_link"].as_str() {
                    next = Some(n.to_string());
                }
            }
        }
        Ok((rows, next))
    }

    /// A chunk by its internal link (a path of this API, never another host).
    pub async fn next_chunk(&mut self, link: &str) -> Result<Value, String> {
        if !link.starts_with("/api/2.0/sql/statements/") || link.contains("..") {
            return Err("the workspace named a next chunk outside its statements API".into());
        }
        let url = format!("{}{link}", self.host);
        self.call(self.http.get(url)).await
    }
}

/// The bearer token to send, and when to renew it (OAuth tokens expire: `expires_in`
/// seconds, an hour by default).
async fn bearer(
    http: &reqwest::Client,
    ws: &Workspace,
) -> Result<(String, Option<std::time::Instant>), String> {
    match &ws.auth {
        DatabricksAuth::Token(t) => Ok((t.expose().to_string(), None)),
        DatabricksAuth::OAuth { client_id, secret } => {
            let r = http
                .post(format!("{}/oidc/v1/token", ws.host))
                .basic_auth(client_id, Some(secret.expose()))
                .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
                .send()
                .await
                .map_err(|e| failed("cannot sign in", &e))?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(refusal(status, &body));
            }
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let token = v["access_token"]
                .as_str()
                .ok_or("the workspace's token answer has no access_token")?
                .to_string();
            let lasts = v["expires_in"].as_u64().unwrap_or(3600);
            let renew = Duration::from_secs(lasts.saturating_sub(60).max(lasts / 2));
            Ok((token, Some(std::time::Instant::now() + renew)))
        }
    }
}

/// A `JSON_ARRAY` row: every value a string or null.
fn row(v: &Value) -> Vec<Option<String>> {
    v.as_array()
        .map(|cells| {
            cells
                .iter()
                .map(|c| match c {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}
