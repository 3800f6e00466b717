//! A data source as the sources file defines it (`opsight-sources.toml`), validated: its
//! kind, where it reads (a connection string from the environment, or files), what (a
//! query or a table), how often, and the mapping of Opsight's fields onto its columns.

use crate::ssr::agent::Secret;
use crate::ssr::data::import::REQUIRED;
use crate::ssr::runs::crontab::Crontab;
use crate::ssr::store::foreign::{Dialect, Relation};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a source's lines live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Postgres,
    Mysql,
    /// A Databricks SQL warehouse, through the SQL Statement Execution API.
    Databricks,
    Csv,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Postgres,
        SourceKind::Mysql,
        SourceKind::Databricks,
        SourceKind::Csv,
    ];

    pub fn key(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
            SourceKind::Databricks => "databricks",
            SourceKind::Csv => "csv",
        }
    }

    pub fn parse(text: &str) -> Option<SourceKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.key() == text.trim().to_ascii_lowercase())
            .or_else(|| (text.trim().eq_ignore_ascii_case("mariadb")).then_some(SourceKind::Mysql))
    }

    pub fn dialect(self) -> Option<Dialect> {
        match self {
            SourceKind::Postgres => Some(Dialect::Postgres),
            SourceKind::Mysql => Some(Dialect::Mysql),
            SourceKind::Databricks => Some(Dialect::Databricks),
            SourceKind::Csv => None,
        }
    }
}

/// One `[[source]]` of the sources file, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    pub kind: String,
    /// The variable holding the connection string (postgres, mysql).
    pub url_env: Option<String>,
    /// A file or a pattern (`drop/*.csv`), relative to the sources file (csv).
    pub path: Option<String>,
    /// The workspace's address, `https://adb-….azuredatabricks.net` (databricks).
    pub host: Option<String>,
    /// The SQL warehouse that runs the statements (databricks).
    pub warehouse_id: Option<String>,
    /// The variable holding a personal access token (databricks)…
    pub token_env: Option<String>,
    /// …or a service principal's OAuth client id, with the variable holding its secret
    /// (machine-to-machine).
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub query: Option<String>,
    pub table: Option<String>,
    /// Cron (five fields) in `timezone` (UTC by default).
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    /// Days of lines, by due date, each sync reads again (35 by default).
    pub window_days: Option<u32>,
    /// A column that grows with every change (an update timestamp, a sequence): once a
    /// sync has seen it, the next ones read only rows at or above the highest value seen.
    pub watermark: Option<String>,
    /// Seconds a sync may take (600 by default); a source silent for a tenth of it mid-way
    /// fails the sync.
    pub timeout_secs: Option<u64>,
    /// Let the source compute the day-level tallies (a generated GROUP BY) and send those
    /// instead of its lines (databases and warehouses; not with a watermark).
    pub pushdown: Option<bool>,
    /// The catalogue KPI whose numerator and denominator this source returns per site and
    /// day (and member of its dimensions), instead of order lines: `columns` then maps
    /// `site`, `day`, `numerator` and `denominator`.
    pub kpi: Option<String>,
    /// Opsight field = source column, and the catalogue's.
    #[serde(default)]
    pub columns: ColumnsSpec,
}

/// A source's mapping: Opsight's fields, then the catalogue's dimensions and fields
/// (`dimensions = { lane = "lane_id" }`, `fields = { ship_date = "shipped_on" }`), each
/// `name = "source column"`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ColumnsSpec {
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(flatten)]
    pub own: BTreeMap<String, String>,
}

/// A validated source.
#[derive(Clone, Debug)]
pub struct SourceDef {
    pub name: String,
    pub kind: SourceKind,
    /// The connection string (never shown, logged or sent).
    pub url: Option<Secret>,
    /// The Databricks workspace, warehouse and credentials.
    pub workspace: Option<Workspace>,
    /// The files' folder and name pattern (csv).
    pub files: Option<(PathBuf, String)>,
    pub relation: Option<Relation>,
    pub schedule: Option<Crontab>,
    pub schedule_text: Option<String>,
    pub window_days: u32,
    pub watermark: Option<String>,
    /// The source sends tallies, not lines.
    pub pushdown: bool,
    pub timeout: Duration,
    /// The source column of each of [`REQUIRED`], in that order.
    pub columns: [String; REQUIRED.len()],
    pub reason_code: Option<String>,
    /// Columns naming and grouping the sites the lines create.
    pub site_name: Option<String>,
    pub region: Option<String>,
    /// The catalogue's dimensions this source maps: (name, source column).
    pub dimensions: Vec<(String, String)>,
    /// The catalogue's fields this source maps: (name, source column).
    pub fields: Vec<(String, String)>,
    /// Set when the source returns a catalogue KPI's counts rather than lines.
    pub measure: Option<MeasureColumns>,
    /// The CA bundle its TLS connections trust beside the built-in roots (the process's).
    pub trust: crate::ssr::trust::Trust,
}

/// A source returning a catalogue KPI's numerator and denominator (see
/// [`SourceSpec::kpi`]): its key and the source's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasureColumns {
    pub kpi: String,
    pub site: String,
    pub day: String,
    pub numerator: String,
    /// `None`: 1 per row (a count KPI's).
    pub denominator: Option<String>,
}

pub const DEFAULT_WINDOW_DAYS: u32 = 35;
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Optional fields a mapping may name besides [`REQUIRED`].
const OPTIONAL: [&str; 3] = ["reason_code", "site_name", "region"];

impl SourceDef {
    /// Validates a spec: every message names the source and what is wrong. `env` reads the
    /// connection string's variable; `base` is the sources file's folder.
    pub fn from_spec(
        spec: SourceSpec,
        env: &impl Fn(&str) -> Option<String>,
        base: &Path,
    ) -> Result<SourceDef, String> {
        let name = spec.name.trim().to_string();
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "source '{name}': a name is 1 to 40 letters, digits, '-' or '_'"
            ));
        }
        let at = |m: String| format!("source '{name}': {m}");
        let kind = SourceKind::parse(&spec.kind).ok_or_else(|| {
            at(format!(
                "kind '{}' is not one of {}",
                spec.kind,
                SourceKind::ALL.map(|k| k.key()).join(", ")
            ))
        })?;
        let mut def = SourceDef {
            trust: crate::ssr::trust::Trust::default(),
            name: name.clone(),
            kind,
            url: None,
            workspace: None,
            files: None,
            relation: None,
            schedule: None,
            schedule_text: None,
            window_days: spec.window_days.unwrap_or(DEFAULT_WINDOW_DAYS),
            watermark: spec.watermark.map(|w| w.trim().to_string()),
            pushdown: spec.pushdown.unwrap_or(false),
            timeout: Duration::from_secs(spec.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            columns: Default::default(),
            reason_code: None,
            site_name: None,
            region: None,
            dimensions: Vec::new(),
            fields: Vec::new(),
            measure: None,
        };
        if !(1..=3660).contains(&def.window_days) {
            return Err(at("window_days must be 1 to 3660".into()));
        }
        if !(10..=86_400).contains(&def.timeout.as_secs()) {
            return Err(at("timeout_secs must be 10 to 86400".into()));
        }
        match kind {
            SourceKind::Csv => {
                if spec.url_env.is_some() || spec.query.is_some() || spec.table.is_some() {
                    return Err(at(
                        "a csv source reads `path`, not url_env, query or table".into()
                    ));
                }
                let path = spec.path.filter(|p| !p.trim().is_empty()).ok_or_else(|| {
                    at("path is required (a file, or a pattern such as drop/*.csv)".into())
                })?;
                let path = base.join(path.trim());
                let pattern = path
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .ok_or_else(|| at("path names no file".into()))?;
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                def.files = Some((dir, pattern));
                if def.watermark.is_some() {
                    return Err(at(
                        "a csv source has no watermark: every file is read whole".into(),
                    ));
                }
            }
            SourceKind::Databricks => {
                if spec.path.is_some() || spec.url_env.is_some() {
                    return Err(at(
                        "a databricks source reads host, warehouse_id and token_env (or client_id and client_secret_env), not path or url_env".into(),
                    ));
                }
                let host = spec
                    .host
                    .map(|h| h.trim().trim_end_matches('/').to_string())
                    .filter(|h| h.starts_with("https://") || loopback_http(h))
                    .ok_or_else(|| {
                        at("host (https://… the workspace's address; http only to this machine) is required".into())
                    })?;
                let warehouse = spec
                    .warehouse_id
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .ok_or_else(|| at("warehouse_id is required".into()))?;
                let secret = |var: &str| {
                    env(var.trim())
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| Secret::new(v.trim()))
                        .ok_or_else(|| at(format!("{var} is not set")))
                };
                let auth = match (spec.token_env, spec.client_id, spec.client_secret_env) {
                    (Some(t), None, None) => DatabricksAuth::Token(secret(&t)?),
                    (None, Some(id), Some(var)) if !id.trim().is_empty() => DatabricksAuth::OAuth {
                        client_id: id.trim().to_string(),
                        secret: secret(&var)?,
                    },
                    _ => {
                        return Err(at(
                            "either token_env, or client_id with client_secret_env, is required"
                                .into(),
                        ))
                    }
                };
                def.workspace = Some(Workspace {
                    host,
                    warehouse,
                    auth,
                });
                def.relation = Some(relation(spec.query, spec.table).map_err(at)?);
            }
            _ => {
                if spec.path.is_some() {
                    return Err(at(format!(
                        "a {} source reads url_env, not path",
                        kind.key()
                    )));
                }
                let var = spec
                    .url_env
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        at(
                            "url_env (the variable holding the connection string) is required"
                                .into(),
                        )
                    })?;
                let url = env(var.trim())
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| at(format!("url_env names {var}, which is not set")))?;
                let schemes: &[&str] = match kind {
                    SourceKind::Postgres => &["postgres://", "postgresql://"],
                    _ => &["mysql://", "mariadb://"],
                };
                let url = url.trim().replacen("mariadb://", "mysql://", 1);
                if !schemes.iter().any(|s| url.starts_with(s)) {
                    return Err(at(format!(
                        "the connection string in {var} must start with {}",
                        schemes.join(" or ")
                    )));
                }
                def.url = Some(Secret::new(url));
                def.relation = Some(relation(spec.query, spec.table).map_err(at)?);
            }
        }
        if def.pushdown && (kind == SourceKind::Csv || def.watermark.is_some()) {
            return Err(at(
                "pushdown needs a database or warehouse source without a watermark (it re-reads the window's days whole)".into(),
            ));
        }
        if let Some(expr) = spec.schedule.filter(|s| !s.trim().is_empty()) {
            let tz = spec.timezone.unwrap_or_else(|| "UTC".into());
            let crontab = Crontab::parse(expr.trim(), tz.trim())
                .map_err(|e| at(format!("schedule: {}", e.0)))?;
            def.schedule = Some(crontab);
            def.schedule_text = Some(format!("{} ({})", expr.trim(), tz.trim()));
        }
        // The mapping: every required field, optional ones, nothing unknown.
        let ColumnsSpec {
            dimensions,
            fields,
            own: mut columns,
        } = spec.columns;
        for (what, map, out) in [
            ("dimensions", dimensions, &mut def.dimensions),
            ("fields", fields, &mut def.fields),
        ] {
            for (name, column) in map {
                crate::domain::catalogue::check_name(&name, &format!("columns.{what}"))
                    .map_err(&at)?;
                if column.trim().is_empty() || column.chars().any(char::is_control) {
                    return Err(at(format!("columns.{what}.{name} must name a column")));
                }
                out.push((name, column.trim().to_string()));
            }
        }
        if let Some((name, _)) = def
            .dimensions
            .iter()
            .find(|(d, _)| def.fields.iter().any(|(f, _)| f == d))
        {
            return Err(at(format!("'{name}' is both a dimension and a field")));
        }
        if def.pushdown && !def.fields.is_empty() {
            return Err(at(
                "fields are read with lines (for the catalogue's KPIs): pushdown sends tallies"
                    .into(),
            ));
        }
        if let Some(kpi) = spec.kpi {
            return measure_source(def, kpi, columns).map_err(at);
        }
        for (field, column) in &columns {
            if column.trim().is_empty() || column.chars().any(char::is_control) {
                return Err(at(format!("columns.{field} must name a column")));
            }
            if !REQUIRED.contains(&field.as_str()) && !OPTIONAL.contains(&field.as_str()) {
                return Err(at(format!(
                    "columns.{field} is not an Opsight field (fields: {}, {})",
                    REQUIRED.join(", "),
                    OPTIONAL.join(", ")
                )));
            }
        }
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|f| !columns.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            return Err(at(format!(
                "the mapping lacks {} (columns.FIELD = \"source column\")",
                missing.join(", ")
            )));
        }
        def.columns = REQUIRED.map(|f| columns.remove(f).unwrap_or_default().trim().to_string());
        def.reason_code = columns.remove("reason_code").map(|c| c.trim().to_string());
        def.site_name = columns.remove("site_name").map(|c| c.trim().to_string());
        def.region = columns.remove("region").map(|c| c.trim().to_string());
        if def.pushdown && (def.site_name.is_some() || def.region.is_some()) {
            return Err(at(
                "site_name and region are read with lines: with pushdown, name and group sites with the sites API or opsight import sites".into(),
            ));
        }
        if let Some(w) = &def.watermark {
            if w.is_empty() || w.chars().any(char::is_control) {
                return Err(at("watermark must name a column".into()));
            }
        }
        Ok(def)
    }

    /// The catalogue's dimensions and fields this source maps, dimensions first:
    /// (name, source column).
    pub fn attrs(&self) -> Vec<(String, String)> {
        self.dimensions
            .iter()
            .chain(&self.fields)
            .cloned()
            .collect()
    }

    /// The due date's source column (the window filters on it).
    pub fn due_column(&self) -> &str {
        if let Some(m) = &self.measure {
            return &m.day;
        }
        let at = REQUIRED.iter().position(|f| *f == "due_date").unwrap_or(0);
        &self.columns[at]
    }

    /// What the source reads, for people: "table shipments", "a query", "files drop/*.csv".
    pub fn reads(&self) -> String {
        match (&self.relation, &self.files) {
            (Some(Relation::Table(t)), _) => format!("table {t}"),
            (Some(Relation::Query(_)), _) => "a query".into(),
            (None, Some((_, pattern))) => format!("files {pattern}"),
            _ => String::new(),
        }
    }
}

/// The rest of a source returning a catalogue KPI's counts: a database or warehouse
/// (read whole over its window, like a push-down), its four columns, dimensions only.
fn measure_source(
    mut def: SourceDef,
    kpi: String,
    mut columns: BTreeMap<String, String>,
) -> Result<SourceDef, String> {
    crate::domain::catalogue::check_name(kpi.trim(), "kpi")?;
    if def.kind == SourceKind::Csv || def.pushdown || def.watermark.is_some() {
        return Err(
            "a source of a KPI's counts is a database or warehouse, without pushdown or a watermark (it re-reads its window whole)"
                .into(),
        );
    }
    if !def.fields.is_empty() {
        return Err("a source of a KPI's counts maps dimensions, not fields".into());
    }
    const KPI_COLUMNS: [&str; 4] = ["site", "day", "numerator", "denominator"];
    if let Some(field) = columns.keys().find(|f| !KPI_COLUMNS.contains(&f.as_str())) {
        return Err(format!(
            "columns.{field}: a source of a KPI's counts maps {}",
            KPI_COLUMNS.join(", ")
        ));
    }
    let mut take = |field: &str| -> Result<Option<String>, String> {
        match columns.remove(field).map(|c| c.trim().to_string()) {
            Some(c) if c.is_empty() || c.chars().any(char::is_control) => {
                Err(format!("columns.{field} must name a column"))
            }
            other => Ok(other),
        }
    };
    let need = |v: Option<String>, field: &str| {
        v.ok_or_else(|| format!("the mapping lacks {field} (columns.{field} = \"source column\")"))
    };
    def.measure = Some(MeasureColumns {
        kpi: kpi.trim().to_string(),
        site: need(take("site")?, "site")?,
        day: need(take("day")?, "day")?,
        numerator: need(take("numerator")?, "numerator")?,
        denominator: take("denominator")?,
    });
    Ok(def)
}

/// A Databricks workspace: where, which warehouse, and how to sign in.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub host: String,
    pub warehouse: String,
    pub auth: DatabricksAuth,
}

#[derive(Clone, Debug)]
pub enum DatabricksAuth {
    /// A personal access token.
    Token(Secret),
    /// OAuth machine-to-machine: a service principal's client id and secret.
    OAuth { client_id: String, secret: Secret },
}

/// `http://` to this machine only (a local double or proxy): a token must not cross a
/// network in clear text.
fn loopback_http(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let name = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// What a database source reads: exactly one of a query and a table.
fn relation(query: Option<String>, table: Option<String>) -> Result<Relation, String> {
    match (query, table) {
        (Some(q), None) if !q.trim().is_empty() => {
            Ok(Relation::Query(q.trim().trim_end_matches(';').to_string()))
        }
        (None, Some(t)) if valid_table(&t) => Ok(Relation::Table(t.trim().to_string())),
        (None, Some(t)) => Err(format!(
            "table '{t}' must be a name such as shipments or wms.shipments"
        )),
        _ => Err("exactly one of query and table is required".into()),
    }
}

fn valid_table(t: &str) -> bool {
    let t = t.trim();
    !t.is_empty()
        && t.len() <= 200
        && t.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str) -> SourceSpec {
        let mut columns = BTreeMap::new();
        for f in REQUIRED {
            columns.insert(f.to_string(), format!("src_{f}"));
        }
        SourceSpec {
            name: "wms".into(),
            kind: kind.into(),
            url_env: Some("WMS_URL".into()),
            table: Some("wms.shipments".into()),
            columns: ColumnsSpec {
                own: columns,
                ..ColumnsSpec::default()
            },
            ..SourceSpec::default()
        }
    }

    fn env(k: &str) -> Option<String> {
        (k == "WMS_URL").then(|| "postgres://u:hunter2@db/wms".to_string())
    }

    #[test]
    fn a_source_maps_every_field_and_keeps_its_url_secret() {
        let def = SourceDef::from_spec(spec("postgres"), &env, Path::new(".")).unwrap();
        assert_eq!(def.columns[0], "src_order_id");
        assert_eq!(def.due_column(), "src_due_date");
        assert_eq!(def.reads(), "table wms.shipments");
        assert_eq!(def.window_days, DEFAULT_WINDOW_DAYS);
        assert!(!format!("{def:?}").contains("hunter2"));
    }

    #[test]
    fn bad_sources_say_what_is_wrong() {
        let err = |s: SourceSpec| SourceDef::from_spec(s, &env, Path::new(".")).unwrap_err();
        let mut s = spec("postgres");
        s.columns.own.remove("carrier");
        s.columns.own.remove("sku");
        assert_eq!(
            err(s),
            "source 'wms': the mapping lacks carrier, sku (columns.FIELD = \"source column\")"
        );
        let mut s = spec("postgres");
        s.columns.own.insert("colour".into(), "c".into());
        assert!(err(s).contains("columns.colour is not an Opsight field"));
        // The catalogue's dimensions and fields: names checked, not both at once.
        let mut s = spec("postgres");
        s.columns.dimensions.insert("Lane".into(), "lane_id".into());
        assert!(err(s).contains("lower-case"));
        let mut s = spec("postgres");
        s.columns.dimensions.insert("lane".into(), "lane_id".into());
        s.columns.fields.insert("lane".into(), "lane_id".into());
        assert!(err(s).contains("'lane' is both a dimension and a field"));
        let mut s = spec("postgres");
        s.columns
            .fields
            .insert("ship_date".into(), "shipped".into());
        s.pushdown = Some(true);
        assert!(err(s).contains("fields are read with lines"));
        let mut s = spec("postgres");
        s.columns.dimensions.insert("lane".into(), "lane_id".into());
        s.columns
            .fields
            .insert("ship_date".into(), "shipped".into());
        let def = SourceDef::from_spec(s, &env, Path::new(".")).unwrap();
        assert_eq!(
            def.attrs(),
            vec![
                ("lane".to_string(), "lane_id".to_string()),
                ("ship_date".to_string(), "shipped".to_string())
            ]
        );
        let mut s = spec("postgres");
        s.url_env = Some("NOPE".into());
        assert_eq!(err(s), "source 'wms': url_env names NOPE, which is not set");
        let mut s = spec("mysql");
        assert!(err(s.clone()).contains("must start with mysql:// or mariadb://"));
        s.kind = "oracle".into();
        assert!(err(s).contains("kind 'oracle' is not one of postgres, mysql, databricks, csv"));
        let mut s = spec("databricks");
        s.url_env = None;
        s.host = Some("https://adb-1.azuredatabricks.net/".into());
        s.warehouse_id = Some("wh".into());
        assert!(err(s.clone()).contains("either token_env, or client_id with client_secret_env"));
        s.token_env = Some("DBX_TOKEN".into());
        assert_eq!(err(s.clone()), "source 'wms': DBX_TOKEN is not set");
        s.token_env = Some("WMS_URL".into());
        s.host = Some("http://adb-1.azuredatabricks.net".into());
        assert!(err(s.clone()).contains("http only to this machine"));
        s.host = Some("http://127.0.0.1:8080".into());
        assert!(SourceDef::from_spec(s.clone(), &env, Path::new(".")).is_ok());
        s.host = Some("https://adb-1.azuredatabricks.net/".into());
        let def = SourceDef::from_spec(s, &env, Path::new(".")).unwrap();
        let ws = def.workspace.unwrap();
        assert_eq!(ws.host, "https://adb-1.azuredatabricks.net");
        assert!(!format!("{ws:?}").contains("hunter2"));
        let mut s = spec("postgres");
        s.query = Some("a query".into());
        assert!(err(s).contains("exactly one of query and table"));
        let mut s = spec("postgres");
        s.table = Some("x; DROP TABLE y".into());
        assert!(err(s).contains("must be a name such as"));
        let mut s = spec("postgres");
        s.schedule = Some("every day".into());
        assert!(err(s).starts_with("source 'wms': schedule: "));
        let mut s = spec("csv");
        s.url_env = None;
        s.table = None;
        assert!(err(s).contains("path is required"));
    }
}
