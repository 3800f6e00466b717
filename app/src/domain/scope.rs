//! What a run or a schedule covers: all cards, one site, one metric, one card, the cards
//! the rules flag, or (schedules only) the digest instead of a refresh.

use crate::domain::kpi::Metric;

/// The cards a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Site(String),
    Metric(Metric),
    /// Cards the rules flag: off target, or a trigger fired.
    Flagged,
    /// One card (the command line's `--site X --metric Y`).
    Card(String, Metric),
    /// Not a refresh: a schedule that sends the digest to the notification channels.
    Digest,
}

/// Why a scope was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Malformed: an unknown scope kind, a missing value.
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but naming a metric that does not exist.
    #[error("{0}")]
    UnknownMetric(String),
}

fn unknown_metric(m: &str) -> ScopeError {
    ScopeError::UnknownMetric(format!(
        "unknown metric '{m}'; use otif, on_time, in_full, fill_rate or lines_due"
    ))
}

impl Scope {
    /// A scope from its key (`all`, `site`, `metric`, `card`, `flagged`, `digest`) and value.
    pub fn parse(kind: &str, value: Option<&str>) -> Result<Scope, ScopeError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        match (kind.trim(), value) {
            ("all", _) => Ok(Scope::All),
            ("digest", _) => Ok(Scope::Digest),
            ("flagged", _) => Ok(Scope::Flagged),
            ("site", Some(site)) => Ok(Scope::Site(site.to_string())),
            ("card", Some(card)) => {
                let (site, m) = card.split_once('/').ok_or_else(|| {
                    ScopeError::Invalid(format!("card '{card}' is not SITE/metric"))
                })?;
                let metric = Metric::parse(m).ok_or_else(|| unknown_metric(m))?;
                Ok(Scope::Card(site.to_string(), metric))
            }
            ("metric", Some(m)) => Metric::parse(m)
                .map(Scope::Metric)
                .ok_or_else(|| unknown_metric(m)),
            ("site", None) | ("metric", None) | ("card", None) => {
                Err(ScopeError::Invalid(format!(
                    "a '{}' scope needs a value (a site code, or a metric key)",
                    kind.trim()
                )))
            }
            (other, _) => Err(ScopeError::Invalid(format!(
                "unknown scope '{other}'; use all, site, metric, flagged or digest"
            ))),
        }
    }

    pub fn key(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Site(_) => "site",
            Scope::Metric(_) => "metric",
            Scope::Flagged => "flagged",
            Scope::Card(..) => "card",
            Scope::Digest => "digest",
        }
    }

    pub fn value(&self) -> Option<String> {
        match self {
            Scope::Site(s) => Some(s.clone()),
            Scope::Metric(m) => Some(m.key().to_string()),
            Scope::Card(site, m) => Some(format!("{site}/{}", m.key())),
            _ => None,
        }
    }

    pub fn label(&self) -> String {
        label(self.key(), self.value().as_deref())
    }

    /// The site a scope names, if any.
    pub fn site(&self) -> Option<&str> {
        match self {
            Scope::Site(s) | Scope::Card(s, _) => Some(s),
            _ => None,
        }
    }
}

/// "all cards", "site DAL", "metric OTIF", "flagged cards".
pub fn label(scope: &str, value: Option<&str>) -> String {
    match (scope, value) {
        ("all", _) => "all cards".into(),
        ("flagged", _) => "flagged cards (off target or triggered)".into(),
        ("digest", _) => "digest to the notification channels".into(),
        ("site", Some(v)) => format!("site {v}"),
        ("card", Some(v)) => format!("card {v}"),
        ("metric", Some(v)) => format!(
            "metric {}",
            Metric::parse(v).map(|m| m.label()).unwrap_or(v)
        ),
        (s, _) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_and_refusals_say_why() {
        for (k, v) in [
            ("all", None),
            ("site", Some("DAL")),
            ("metric", Some("otif")),
            ("card", Some("DAL/otif")),
        ] {
            let s = Scope::parse(k, v).unwrap();
            assert_eq!((s.key(), s.value().as_deref()), (k, v));
        }
        assert!(matches!(
            Scope::parse("metric", Some("nope")),
            Err(ScopeError::UnknownMetric(_))
        ));
        assert!(matches!(
            Scope::parse("site", None),
            Err(ScopeError::Invalid(_))
        ));
        assert!(matches!(
            Scope::parse("weekly", None),
            Err(ScopeError::Invalid(_))
        ));
        assert_eq!(label("metric", Some("otif")), "metric OTIF");
    }
}
