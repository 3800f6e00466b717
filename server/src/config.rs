//! Configuration from the environment, validated at start-up.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `sqlite:data/opsight.db` | SQLite file (created when missing) |
//! | `AGENT_URL` | the built-in analyst on this server | ResponsesAgent invocations URL |
//! | `AGENT_TOKEN` | none | bearer token for the agent; never logged or sent to browsers |
//! | `AGENT_TIMEOUT_SECS` | 30 | per-call timeout (keep it below the agent server's own) |
//! | `OPSIGHT_ADDR` | `127.0.0.1:3000` | listen address |
//! | `OPSIGHT_AS_OF` | today (UTC) | reference date `YYYY-MM-DD` for demos, tests, replays |
//! | `LOG_FORMAT` | `pretty` | `json` for structured logs |

use anyhow::{bail, Context};
use app::domain::period::parse_date;
use app::ssr::agent::Secret;
use chrono::NaiveDate;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/opsight.db";

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    /// `None`: the built-in analyst at `/agent/invocations` on this process.
    pub agent_url: Option<String>,
    pub agent_token: Option<Secret>,
    pub agent_timeout: Duration,
    pub addr: SocketAddr,
    pub as_of: Option<NaiveDate>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests pass a map); empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let agent_url = get("AGENT_URL");
        if let Some(url) = &agent_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("AGENT_URL must be an http:// or https:// URL");
            }
        }
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
        let timeout = match get("AGENT_TIMEOUT_SECS") {
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|t| (1..=600).contains(t))
                .context("AGENT_TIMEOUT_SECS must be 1..600")?,
            None => 30,
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !database_url.starts_with("sqlite:") {
            bail!("DATABASE_URL must be a sqlite: URL (PostgreSQL support is planned)");
        }
        Ok(Config {
            database_url,
            agent_url,
            agent_token: get("AGENT_TOKEN").map(Secret::new),
            agent_timeout: Duration::from_secs(timeout),
            addr,
            as_of,
        })
    }
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
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_embedded() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.agent_url.is_none());
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.agent_timeout, Duration::from_secs(30));
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
        assert!(cfg(&[("OPSIGHT_ADDR", "nope")])
            .unwrap_err()
            .to_string()
            .contains("OPSIGHT_ADDR"));
        assert!(cfg(&[("AGENT_TIMEOUT_SECS", "0")]).is_err());
    }

    #[test]
    fn token_is_redacted_in_debug_output() {
        let c = cfg(&[("AGENT_TOKEN", "dapi-secret-123")]).unwrap();
        assert!(!format!("{c:?}").contains("dapi-secret-123"));
    }
}
