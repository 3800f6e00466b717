//! Unit costs for materiality: a CSV import (`sku` or `category`, `unit_cost`; all or
//! nothing, bad rows named by line) and the same through the API.

use crate::dto::{CostsSaved, UnitCost};
use crate::ssr::clock;
use crate::ssr::error::ServiceError;
use crate::ssr::store::facts::{self, CostKey};
use crate::ssr::store::{self, Db};

/// Largest unit cost accepted (one item of any currency).
pub const MAX_UNIT_COST: f64 = 1_000_000.0;

fn check(c: &UnitCost) -> Result<(CostKey, String), String> {
    let pick = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let item = match (pick(&c.sku), pick(&c.category)) {
        (Some(s), None) => (CostKey::Sku, s),
        (None, Some(c)) => (CostKey::Category, c),
        (Some(_), Some(_)) => return Err("give a sku or a category, not both".into()),
        (None, None) => return Err("a sku or a category is required".into()),
    };
    // The cap keeps money at stake (kept in integer cents) far from overflowing.
    if !c.unit_cost.is_finite() || c.unit_cost < 0.0 || c.unit_cost > MAX_UNIT_COST {
        return Err(format!(
            "unit_cost {} must be a number ≥ 0 (at most {MAX_UNIT_COST})",
            c.unit_cost
        ));
    }
    Ok(item)
}

/// Stores unit costs (insert or replace), in one transaction: a bad entry stores nothing.
/// `label(i)` names entry `i` in errors (a CSV line, or an array index).
pub async fn save(
    db: &Db,
    costs: &[UnitCost],
    label: impl Fn(usize) -> String,
) -> Result<usize, ServiceError> {
    let mut checked = Vec::with_capacity(costs.len());
    let mut errors = Vec::new();
    for (i, c) in costs.iter().enumerate() {
        match check(c) {
            Ok((kind, item)) => checked.push((kind, item, c.unit_cost)),
            Err(e) => errors.push(format!("{}: {e}", label(i))),
        }
    }
    if !errors.is_empty() {
        errors.truncate(20);
        return Err(ServiceError::BadRequest(format!(
            "nothing was saved: {}",
            errors.join("; ")
        )));
    }
    let mut tx = store::begin(db).await?;
    facts::upsert_costs(&mut tx, &checked, &clock::now()).await?;
    // Money at stake is tallied with the costs: re-tally in the same transaction, so no
    // page ever shows money from the old costs next to the new ones.
    super::import::rescore_if_changed(&mut tx).await?;
    store::commit(tx).await?;
    Ok(checked.len())
}

/// Stores unit costs given through the API (entries named by their index in errors).
pub async fn put(db: &Db, costs: Vec<UnitCost>) -> Result<CostsSaved, ServiceError> {
    Ok(CostsSaved {
        saved: save(db, &costs, |i| format!("entry {i}")).await?,
    })
}

/// Every unit cost.
pub async fn list(db: &Db) -> Result<Vec<UnitCost>, ServiceError> {
    let book = facts::cost_book(db).await?;
    let mut out: Vec<UnitCost> = book
        .by_sku
        .into_iter()
        .map(|(s, c)| UnitCost {
            sku: Some(s),
            category: None,
            unit_cost: c,
        })
        .chain(book.by_category.into_iter().map(|(k, c)| UnitCost {
            sku: None,
            category: Some(k),
            unit_cost: c,
        }))
        .collect();
    out.sort_by(|a, b| (&a.sku, &a.category).cmp(&(&b.sku, &b.category)));
    Ok(out)
}

/// Imports a CSV with a header naming `sku` and/or `category`, and `unit_cost`.
pub async fn import_csv(db: &Db, reader: impl std::io::Read) -> Result<usize, ServiceError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| ServiceError::BadRequest(format!("line 1: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (sku, category, cost) = (col("sku"), col("category"), col("unit_cost"));
    if cost.is_none() || (sku.is_none() && category.is_none()) {
        return Err(ServiceError::BadRequest(
            "line 1: the header needs unit_cost and sku or category".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).map(str::to_string);
        let raw = get(cost).unwrap_or_default();
        match raw.parse::<f64>() {
            Ok(unit_cost) => rows.push((
                line,
                UnitCost {
                    sku: get(sku),
                    category: get(category),
                    unit_cost,
                },
            )),
            Err(_) => errors.push(format!("line {line}: unit_cost '{raw}' is not a number")),
        }
    }
    if !errors.is_empty() {
        errors.truncate(20);
        return Err(ServiceError::BadRequest(format!(
            "nothing was imported: {}",
            errors.join("; ")
        )));
    }
    let lines: Vec<usize> = rows.iter().map(|(l, _)| *l).collect();
    let costs: Vec<UnitCost> = rows.into_iter().map(|(_, c)| c).collect();
    save(db, &costs, |i| format!("line {}", lines[i])).await
}
