//! `opsight import orders FILE.csv`: order lines in one transaction, all or nothing.
//!
//! Columns (header row, any order): order_id, line_no, site, customer, carrier, sku,
//! category, ordered_qty, delivered_qty, due_date (YYYY-MM-DD, must-arrive-by),
//! delivered_date (YYYY-MM-DD, empty if not delivered), reason_code (optional column and
//! value). Every bad row is reported with its line number (the header is line 1) and
//! nothing is imported. Unknown sites are created from their code. Re-importing an
//! (order_id, line_no) updates that line.

use crate::domain::kpi::ScoringParams;
use crate::domain::period::parse_date;
use crate::ssr::store::facts::{self, OrderLine};
use crate::ssr::store::{self, Db, StoreError};
use chrono::NaiveDate;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;

const REQUIRED: [&str; 11] = [
    "order_id",
    "line_no",
    "site",
    "customer",
    "carrier",
    "sku",
    "category",
    "ordered_qty",
    "delivered_qty",
    "due_date",
    "delivered_date",
];
/// Errors listed before the report stops counting (the file is rejected either way).
const MAX_REPORTED: usize = 20;
/// Longest accepted text field, in characters.
const MAX_FIELD: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} — nothing was imported", describe(.0))]
    Invalid(Vec<RowError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(errors: &[RowError]) -> String {
    let mut text = errors
        .iter()
        .map(|e| format!("line {}: {}", e.line, e.message))
        .collect::<Vec<_>>()
        .join("\n");
    if errors.len() >= MAX_REPORTED {
        text.push_str("\n(further errors not listed)");
    }
    text
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: usize,
    pub inserted: usize,
    pub updated: usize,
    pub sites_created: Vec<String>,
}

/// Parses and validates the whole file. Pure: no database.
pub fn parse_orders(input: impl Read) -> Result<Vec<OrderLine>, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect::<Vec<_>>(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                message: format!("cannot read the header row: {e}"),
            }])
        }
    };
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !headers.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Err(vec![RowError {
            line: 1,
            message: format!("missing column(s): {}", missing.join(", ")),
        }]);
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let idx: HashMap<&str, usize> = REQUIRED
        .iter()
        .filter_map(|c| Some((*c, col(c)?)))
        .collect();
    let reason_idx = col("reason_code");

    let mut errors = Vec::new();
    let mut lines = Vec::new();
    let mut seen: HashMap<(String, i64), u64> = HashMap::new();
    for record in reader.records() {
        if errors.len() >= MAX_REPORTED {
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    message: format!("not a valid CSV row ({})", csv_reason(&e)),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |name: &str| record.get(idx[name]).unwrap_or_default();
        match parse_row(&field, reason_idx.and_then(|i| record.get(i))) {
            Ok(l) => {
                if let Some(first) = seen.insert((l.order_id.clone(), l.line_no), line) {
                    errors.push(RowError {
                        line,
                        message: format!(
                            "duplicate key order_id '{}' line_no {} (first on line {first})",
                            l.order_id, l.line_no
                        ),
                    });
                } else {
                    lines.push(l);
                }
            }
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, expected {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => "unreadable".to_string(),
    }
}

fn parse_row<'a>(
    field: &dyn Fn(&str) -> &'a str,
    reason: Option<&'a str>,
) -> Result<OrderLine, String> {
    let text = |name: &str| -> Result<String, String> {
        let v = field(name);
        if v.is_empty() {
            Err(format!("{name} is empty"))
        } else if v.chars().count() > MAX_FIELD {
            Err(format!("{name} is longer than {MAX_FIELD} characters"))
        } else {
            Ok(v.to_string())
        }
    };
    let qty = |name: &str| -> Result<i64, String> {
        let v = field(name);
        match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(format!("{name} '{v}' is negative")),
            Ok(n) if n > 1_000_000_000 => Err(format!("{name} '{v}' is too large")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("{name} '{v}' is not a whole number")),
        }
    };
    let date = |name: &str| -> Result<Option<NaiveDate>, String> {
        let v = field(name);
        if v.is_empty() {
            return Ok(None);
        }
        parse_date(v)
            .map(Some)
            .ok_or_else(|| format!("{name} '{v}' is not a date (YYYY-MM-DD)"))
    };
    let site = text("site")?;
    if !site
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || site.len() > 32
    {
        return Err(format!(
            "site '{site}' must be a code of letters, digits, '-' or '_' (at most 32)"
        ));
    }
    let line_no = match field("line_no").parse::<i64>() {
        Ok(n) if n >= 1 => n,
        _ => {
            return Err(format!(
                "line_no '{}' is not a positive whole number",
                field("line_no")
            ))
        }
    };
    let ordered_qty = qty("ordered_qty")?;
    if ordered_qty == 0 {
        return Err("ordered_qty is 0: a line must order something".into());
    }
    let due_date = date("due_date")?.ok_or("due_date is empty")?;
    let delivered_date = date("delivered_date")?;
    let reason_code = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_FIELD).collect());
    Ok(OrderLine {
        order_id: text("order_id")?,
        line_no,
        site: site.to_ascii_uppercase(),
        customer: text("customer")?,
        carrier: text("carrier")?,
        sku: text("sku")?,
        category: text("category")?,
        ordered_qty,
        delivered_qty: qty("delivered_qty")?,
        due_date,
        delivered_date,
        reason_code,
    })
}

/// Validates the file, then writes every line, creates unknown sites and refreshes the
/// roll-up for the affected days, all in one transaction.
pub async fn import_orders(
    db: &Db,
    input: impl Read,
    params: ScoringParams,
) -> Result<ImportReport, ImportError> {
    let lines = parse_orders(input).map_err(ImportError::Invalid)?;
    let known: BTreeSet<String> = facts::site_codes(db).await?.into_iter().collect();
    let new_sites: Vec<String> = lines
        .iter()
        .map(|l| l.site.clone())
        .filter(|s| !known.contains(s))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut tx = store::begin(db).await?;
    facts::ensure_sites(&mut tx, &new_sites).await?;
    let keys: Vec<(String, i64)> = lines
        .iter()
        .map(|l| (l.order_id.clone(), l.line_no))
        .collect();
    let previous = facts::due_dates_of(&mut tx, &keys).await?;
    facts::upsert_lines(&mut tx, &lines).await?;
    // Days to re-roll per site: where lines land now, and where updated lines were before.
    let mut span: HashMap<String, (NaiveDate, NaiveDate)> = HashMap::new();
    for (site, day) in lines
        .iter()
        .map(|l| (l.site.clone(), l.due_date))
        .chain(previous.iter().cloned())
    {
        let e = span.entry(site).or_insert((day, day));
        e.0 = e.0.min(day);
        e.1 = e.1.max(day);
    }
    for (site, (from, to)) in &span {
        facts::rebuild_rollup(&mut tx, params, std::slice::from_ref(site), *from, *to).await?;
    }
    store::commit(tx).await?;
    Ok(ImportReport {
        lines: lines.len(),
        inserted: lines.len() - previous.len(),
        updated: previous.len(),
        sites_created: new_sites,
    })
}
