//! The rule book (rules, targets, triggers, playbooks), KPI definitions, the rules version
//! and its change log.
//!
//! Targets are stored as ratios (0..1) for ratio metrics and shown in percent; the
//! conversion happens here, in both directions.

use super::{Acq, Conn, Ctx, Exec, Result};
use crate::domain::kpi::Metric;
use crate::domain::rulebook::RuleItem;
use crate::domain::rules::{Condition, Playbook, RuleEntry, Rules, Target, Trigger};
use crate::dto::{MetricDefinition, RuleChange};

#[derive(sqlx::FromRow)]
struct RuleRow {
    rule_key: String,
    kind: String,
    metric: Option<String>,
    value: f64,
    description: String,
    enabled: i64,
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    metric: String,
    site: String,
    target: f64,
    enabled: i64,
}

#[derive(sqlx::FromRow)]
struct TriggerRow {
    trigger_key: String,
    metric: String,
    condition: String,
    value: f64,
    periods: i64,
    description: String,
    enabled: i64,
}

#[derive(sqlx::FromRow)]
struct PlaybookRow {
    playbook_key: String,
    cause: String,
    action: String,
    owner: String,
    priority: String,
    enabled: i64,
}

/// The full rule book, disabled rows included (lookups skip them; agents get
/// [`Rules::in_force`]), with targets in display units (percent for ratios).
pub async fn load<'a>(conn: impl Acq<'a>) -> Result<Rules> {
    let mut conn = conn.acquire().await.ctx("Failed to read the rules")?;
    load_on(&mut conn).await
}

/// [`load`] on a connection (or a transaction, dereferenced): its future is `Send` for
/// every lifetime, which generic executors' futures are not when nested in a boxed one.
pub async fn load_on(conn: &mut Conn) -> Result<Rules> {
    let version = version(&mut *conn).await?;
    let entries = sqlx::query_as::<_, RuleRow>(
        "SELECT rule_key, kind, metric, value, description, enabled FROM business_rules \
         ORDER BY kind, rule_key",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read business rules")?
    .into_iter()
    .map(|r| RuleEntry {
        key: r.rule_key,
        kind: r.kind,
        metric: r.metric,
        value: r.value,
        description: r.description,
        enabled: r.enabled != 0,
    })
    .collect();
    let targets = sqlx::query_as::<_, TargetRow>(
        "SELECT metric, site, target, enabled FROM targets ORDER BY metric, site",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read targets")?
    .into_iter()
    .map(|r| Target {
        target: display_target(&r.metric, r.target),
        metric: r.metric,
        site: r.site,
        enabled: r.enabled != 0,
    })
    .collect();
    let triggers = sqlx::query_as::<_, TriggerRow>(
        "SELECT trigger_key, metric, condition, value, periods, description, enabled \
         FROM triggers ORDER BY metric, trigger_key",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read triggers")?
    .into_iter()
    .map(|r| Trigger {
        key: r.trigger_key,
        metric: r.metric,
        // Only the editor writes this column, and it validates; an unknown value from
        // a newer Opsight is read as the safest condition rather than failing the page.
        condition: Condition::parse(&r.condition).unwrap_or(Condition::Drop),
        value: r.value,
        periods: r.periods.clamp(1, 52) as u32,
        description: r.description,
        enabled: r.enabled != 0,
    })
    .collect();
    let playbooks = sqlx::query_as::<_, PlaybookRow>(
        "SELECT playbook_key, cause, action, owner, priority, enabled FROM playbooks \
         ORDER BY playbook_key",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("Failed to read playbooks")?
    .into_iter()
    .map(|r| Playbook {
        key: r.playbook_key,
        cause: r.cause,
        action: r.action,
        owner: r.owner,
        priority: r.priority,
        enabled: r.enabled != 0,
    })
    .collect();
    Ok(Rules {
        version,
        entries,
        targets,
        triggers,
        playbooks,
    })
}

/// The rules version in force.
pub async fn version<'e>(ex: impl Exec<'e>) -> Result<i64> {
    let version: String =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'rules_version'")
            .fetch_one(ex)
            .await
            .ctx("Failed to read the rules version")?;
    Ok(version.trim().parse().unwrap_or(1))
}

/// Targets are stored as ratios (0..1) for ratio metrics and shown in percent.
fn display_target(metric: &str, stored: f64) -> f64 {
    if Metric::parse(metric).is_none_or(Metric::is_percent) {
        stored * 100.0
    } else {
        stored
    }
}

/// The inverse of [`display_target`].
fn stored_target(metric: &str, display: f64) -> f64 {
    if Metric::parse(metric).is_none_or(Metric::is_percent) {
        display / 100.0
    } else {
        display
    }
}

#[derive(sqlx::FromRow)]
struct DefinitionRow {
    metric: String,
    name: String,
    definition: String,
    unit: String,
}

pub async fn metric_definitions<'e>(ex: impl Exec<'e>) -> Result<Vec<MetricDefinition>> {
    let rows: Vec<DefinitionRow> = sqlx::query_as(
        "SELECT metric, name, definition, unit FROM metric_definitions ORDER BY sort_order",
    )
    .fetch_all(ex)
    .await
    .ctx("Failed to read metric definitions")?;
    Ok(rows
        .into_iter()
        .map(|r| MetricDefinition {
            metric: r.metric,
            name: r.name,
            definition: r.definition,
            unit: r.unit,
        })
        .collect())
}

/// Writes a catalogue KPI's definition (insert or update): what cards and agents show.
pub async fn upsert_definition(
    conn: &mut Conn,
    def: &MetricDefinition,
    higher_is_better: bool,
    sort_order: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO metric_definitions (metric, name, definition, unit, higher_is_better, sort_order)          VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (metric) DO UPDATE SET name = excluded.name,          definition = excluded.definition, unit = excluded.unit,          higher_is_better = excluded.higher_is_better, sort_order = excluded.sort_order",
    )
    .bind(def.metric.clone())
    .bind(def.name.clone())
    .bind(def.definition.clone())
    .bind(def.unit.clone())
    .bind(i64::from(higher_is_better))
    .bind(sort_order)
    .execute(&mut *conn)
    .await
    .ctx("Failed to write a KPI definition")?;
    Ok(())
}

/// Adds a rule-book row unless one with its identity exists (the editor's rows win over
/// a catalogue's defaults); whether it added it.
pub async fn add_if_absent(conn: &mut Conn, item: &RuleItem) -> Result<bool> {
    let exists: Option<i64> = match item {
        RuleItem::Rule(e) => {
            sqlx::query_scalar("SELECT 1 FROM business_rules WHERE rule_key = $1")
                .bind(e.key.clone())
                .fetch_optional(&mut *conn)
                .await
        }
        RuleItem::Target(t) => {
            sqlx::query_scalar("SELECT 1 FROM targets WHERE metric = $1 AND site = $2")
                .bind(t.metric.clone())
                .bind(t.site.clone())
                .fetch_optional(&mut *conn)
                .await
        }
        _ => Ok(Some(1)),
    }
    .ctx("Failed to read the rule book")?;
    if exists.is_some() {
        return Ok(false);
    }
    replace(conn, item, Some(item)).await?;
    Ok(true)
}

/// Moves the rules version from `base` to `next` unless someone moved it first (false).
pub async fn bump_version<'e>(ex: impl Exec<'e>, base: i64, next: i64) -> Result<bool> {
    let r =
        sqlx::query("UPDATE settings SET value = $1 WHERE key = 'rules_version' AND value = $2")
            .bind(next.to_string())
            .bind(base.to_string())
            .execute(ex)
            .await
            .ctx("Failed to bump the rules version")?;
    Ok(r.rows_affected() == 1)
}

/// Replaces the row identified by `item` with `row` (delete, then insert unless deleted):
/// one portable statement pair for create, update, enable and disable alike.
pub async fn replace(conn: &mut Conn, item: &RuleItem, row: Option<&RuleItem>) -> Result<()> {
    let on = |b: bool| i64::from(b);
    let what = "Failed to store the rule-book row";
    match item {
        RuleItem::Rule(e) => sqlx::query("DELETE FROM business_rules WHERE rule_key = $1")
            .bind(e.key.clone())
            .execute(&mut *conn)
            .await
            .ctx(what)?,
        RuleItem::Target(t) => sqlx::query("DELETE FROM targets WHERE metric = $1 AND site = $2")
            .bind(t.metric.clone())
            .bind(t.site.clone())
            .execute(&mut *conn)
            .await
            .ctx(what)?,
        RuleItem::Trigger(t) => sqlx::query("DELETE FROM triggers WHERE trigger_key = $1")
            .bind(t.key.clone())
            .execute(&mut *conn)
            .await
            .ctx(what)?,
        RuleItem::Playbook(p) => sqlx::query("DELETE FROM playbooks WHERE playbook_key = $1")
            .bind(p.key.clone())
            .execute(&mut *conn)
            .await
            .ctx(what)?,
    };
    match row {
        None => {}
        Some(RuleItem::Rule(e)) => {
            sqlx::query(
                "INSERT INTO business_rules (rule_key, kind, metric, value, description, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.key.clone())
            .bind(e.kind.clone())
            .bind(e.metric.clone())
            .bind(e.value)
            .bind(e.description.trim().to_string())
            .bind(on(e.enabled))
            .execute(&mut *conn)
            .await
            .ctx(what)?;
        }
        Some(RuleItem::Target(t)) => {
            sqlx::query(
                "INSERT INTO targets (metric, site, target, enabled) VALUES ($1, $2, $3, $4)",
            )
            .bind(t.metric.clone())
            .bind(t.site.clone())
            .bind(stored_target(&t.metric, t.target))
            .bind(on(t.enabled))
            .execute(&mut *conn)
            .await
            .ctx(what)?;
        }
        Some(RuleItem::Trigger(t)) => {
            sqlx::query(
                "INSERT INTO triggers (trigger_key, metric, condition, value, periods, description, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(t.key.clone())
            .bind(t.metric.clone())
            .bind(t.condition.key())
            .bind(t.value)
            .bind(i64::from(t.periods))
            .bind(t.description.trim().to_string())
            .bind(on(t.enabled))
            .execute(&mut *conn)
            .await
            .ctx(what)?;
        }
        Some(RuleItem::Playbook(p)) => {
            sqlx::query(
                "INSERT INTO playbooks (playbook_key, cause, action, owner, priority, enabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(p.key.clone())
            .bind(p.cause.clone())
            .bind(p.action.trim().to_string())
            .bind(p.owner.trim().to_string())
            .bind(p.priority.clone())
            .bind(on(p.enabled))
            .execute(&mut *conn)
            .await
            .ctx(what)?;
        }
    }
    Ok(())
}

/// Records one rules version: its summary and the whole rule book after it.
pub async fn insert_change<'e>(
    ex: impl Exec<'e>,
    change: &RuleChange,
    rules_json: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rule_changes (version, changed_at, changed_by, summary, rules_json) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(change.version)
    .bind(change.changed_at.clone())
    .bind(change.changed_by.clone())
    .bind(change.summary.clone())
    .bind(rules_json.to_string())
    .execute(ex)
    .await
    .ctx("Failed to record the rules change")?;
    Ok(())
}

/// Rules versions, newest first (at most `limit`).
#[derive(sqlx::FromRow)]
struct ChangeRow {
    version: i64,
    changed_at: String,
    changed_by: Option<String>,
    summary: String,
}

pub async fn history<'e>(ex: impl Exec<'e>, limit: i64) -> Result<Vec<RuleChange>> {
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT version, changed_at, changed_by, summary FROM rule_changes \
         ORDER BY version DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(ex)
    .await
    .ctx("Failed to read the rules history")?;
    Ok(rows
        .into_iter()
        .map(|r| RuleChange {
            version: r.version,
            changed_at: r.changed_at,
            changed_by: r.changed_by,
            summary: r.summary,
        })
        .collect())
}
