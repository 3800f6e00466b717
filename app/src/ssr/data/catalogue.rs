//! The team's catalogue (extra dimensions, fields and KPIs defined as data; see
//! [`crate::domain::catalogue`]) put in force: recorded with the metric store, its KPIs
//! registered in this process and written into the rule book.
//!
//! The catalogue comes from the sources file. A process started without one (a command
//! run elsewhere) keeps the catalogue the store holds rather than dropping it.

use crate::domain::catalogue::{Catalogue, KpiDef, Unit};
use crate::domain::rulebook::RuleItem;
use crate::domain::rules::{RuleEntry, Target};
use crate::dto::{MetricDefinition, RuleChange};
use crate::ssr::clock;
use crate::ssr::store::{self, facts, Db, StoreError};

/// Registers the catalogue's KPIs in this process (each in the slot of its place).
pub fn register(catalogue: &Catalogue) {
    catalogue.register();
}

/// Puts `file`'s catalogue in force (`None`: the one the store holds), registers its
/// KPIs, and returns it. A new catalogue is recorded with the store (its fingerprint
/// then differs: the caller's [`super::import::bring_store_up_to_date`] re-tallies), its
/// KPIs' definitions written, and their targets and at-risk bands added to the rule book
/// as a new version where the book has none yet (edits made since win).
pub async fn install(db: &Db, file: Option<&Catalogue>) -> Result<Catalogue, StoreError> {
    let stored = facts::catalogue(db).await?;
    let Some(wanted) = file.filter(|c| **c != stored) else {
        register(&stored);
        return Ok(stored);
    };
    // Registered first: the rule book's targets are converted by their KPI's unit.
    register(wanted);
    let mut tx = store::begin(db).await?;
    facts::set_catalogue(&mut tx, wanted).await?;
    // Counts sources returned live in their KPI's slot, its place in the list: moved with
    // it when the list changes (the lines' own are re-tallied whole).
    let moved: Vec<Option<usize>> = (0..crate::domain::catalogue::MAX_KPIS)
        .map(|slot| {
            let key = &wanted.kpis.get(slot)?.key;
            stored.kpis.iter().position(|k| &k.key == key && k.is_fed())
        })
        .collect();
    if moved.iter().enumerate().any(|(i, m)| *m != Some(i))
        && stored.kpis.iter().any(|k| k.is_fed())
    {
        facts::move_pushed_measures(&mut tx, &moved).await?;
    }
    let mut added: Vec<String> = Vec::new();
    for (i, kpi) in wanted.kpis.iter().enumerate() {
        store::rules::upsert_definition(
            &mut tx,
            &definition(kpi),
            kpi.higher_is_better,
            100 + i as i64,
        )
        .await?;
        if let Some(target) = kpi.target {
            let item = RuleItem::Target(Target {
                metric: kpi.key.clone(),
                site: "*".into(),
                target,
                enabled: true,
            });
            if store::rules::add_if_absent(&mut tx, &item).await? {
                added.push(format!("{} target {target}", kpi.key));
            }
        }
        if let Some(band) = kpi.at_risk {
            let item = RuleItem::Rule(RuleEntry {
                key: format!("at_risk_band_pp.{}", kpi.key),
                kind: "threshold".into(),
                metric: Some(kpi.key.clone()),
                value: band,
                description: format!("At risk within {band} of the target ({})", kpi.name),
                enabled: true,
            });
            if store::rules::add_if_absent(&mut tx, &item).await? {
                added.push(format!("{} at-risk band {band}", kpi.key));
            }
        }
    }
    if !added.is_empty() {
        let base = store::rules::version(&mut *tx).await?;
        let rules = store::rules::load_on(&mut tx).await?;
        let next = crate::domain::rules::Rules {
            version: base + 1,
            ..rules
        };
        let change = RuleChange {
            version: base + 1,
            changed_at: clock::now(),
            changed_by: Some("catalogue".into()),
            summary: format!("From the sources file's KPIs: {}", added.join(", ")),
        };
        let json = serde_json::to_string(&next).map_err(|e| StoreError::Corrupt {
            what: "Failed to encode the rules",
            detail: e.to_string(),
        })?;
        store::rules::bump_version(&mut *tx, base, base + 1).await?;
        store::rules::insert_change(&mut *tx, &change, &json).await?;
    }
    store::commit(tx).await?;
    tracing::info!(
        dimensions = wanted.dimensions.len(),
        fields = wanted.fields.len(),
        kpis = wanted.kpis.len(),
        "catalogue changed: the metric store is re-tallied with it"
    );
    Ok(wanted.clone())
}

/// A catalogue KPI's definition as cards and agents read it.
fn definition(kpi: &KpiDef) -> MetricDefinition {
    let how = match (&kpi.unit, &kpi.denominator) {
        (Unit::Count, _) => format!("Lines due counted by: {}.", kpi.numerator),
        (_, Some(d)) => format!("{} over {}, per line due.", kpi.numerator, d),
        (_, None) => format!("{} over lines due.", kpi.numerator),
    };
    let better = if kpi.higher_is_better {
        "Higher is better."
    } else {
        "Lower is better."
    };
    let text = if kpi.description.trim().is_empty() {
        format!("{how} {better}")
    } else {
        format!("{} {how} {better}", kpi.description.trim())
    };
    MetricDefinition {
        metric: kpi.key.clone(),
        name: kpi.name.clone(),
        definition: text,
        unit: kpi.unit.key().to_string(),
    }
}
