//! `opsight import orders FILE.csv`: order lines streamed into the store in one
//! transaction, all or nothing, in constant memory whatever the file's size.
//!
//! Columns (header row, any order): order_id, line_no, site, customer, carrier, sku,
//! category, ordered_qty, delivered_qty, due_date (YYYY-MM-DD, must-arrive-by),
//! delivered_date (YYYY-MM-DD, empty if not delivered), reason_code (optional column and
//! value). Every bad row is reported with its line number (the header is line 1) and
//! nothing is imported. Unknown sites are created from their code. Re-importing an
//! (order_id, line_no) updates that line; the same key twice in one file is an error.
//!
//! How: rows are validated as they are read and written in bulk batches
//! ([`LineWriter`]); each new line's tally is added to the metric store, and the days of
//! lines that were updated are re-tallied from the lines at the end. The transaction is
//! the staging area: nothing is visible until the commit, and a bad row anywhere rolls it
//! all back. The seed and, later, data sources write through the same [`LineWriter`].

use crate::domain::evidence::LineFact;
use crate::domain::kpi::ScoringParams;
use crate::domain::materiality::CostBook;
use crate::domain::period::parse_date;
use crate::domain::tally::{Breakdown, OrderLine};
use crate::ssr::clock;
use crate::ssr::store::facts::{self, BULK_ROWS};
use crate::ssr::store::{self, Db, StoreError, Tx};
use chrono::NaiveDate;
use sha2::Digest;
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// Reads order lines from CSV, one validated row at a time: `(line number, line or the
/// reason it is bad)`. A header that lacks a column fails at once, as line 1.
pub struct OrderReader<R: Read> {
    records: csv::StringRecordsIntoIter<R>,
    idx: HashMap<&'static str, usize>,
    reason_idx: Option<usize>,
}

impl<R: Read> OrderReader<R> {
    pub fn new(input: R) -> Result<Self, RowError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| RowError {
                line: 1,
                message: format!("cannot read the header row: {e}"),
            })?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect::<Vec<_>>();
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| !headers.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            return Err(RowError {
                line: 1,
                message: format!("missing column(s): {}", missing.join(", ")),
            });
        }
        let col = |name: &str| headers.iter().position(|h| h == name);
        let idx = REQUIRED
            .iter()
            .filter_map(|c| Some((*c, col(c)?)))
            .collect();
        let reason_idx = col("reason_code");
        Ok(OrderReader {
            records: reader.into_records(),
            idx,
            reason_idx,
        })
    }
}

impl<R: Read> Iterator for OrderReader<R> {
    type Item = (u64, Result<OrderLine, String>);

    fn next(&mut self) -> Option<Self::Item> {
        let record = match self.records.next()? {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Some((
                    line,
                    Err(format!("not a valid CSV row ({})", csv_reason(&e))),
                ));
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |name: &str| record.get(self.idx[name]).unwrap_or_default();
        Some((
            line,
            parse_row(&field, self.reason_idx.and_then(|i| record.get(i))),
        ))
    }
}

/// Parses and validates a whole file in memory (tests, small inputs): the lines, or every
/// bad row (up to a limit), duplicates within the file included.
pub fn parse_orders(input: impl Read) -> Result<Vec<OrderLine>, Vec<RowError>> {
    let reader = OrderReader::new(input).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    let mut seen: HashMap<(String, i64), u64> = HashMap::new();
    for (line, parsed) in reader {
        if errors.len() >= MAX_REPORTED {
            break;
        }
        match parsed {
            Ok(l) => {
                if let Some(first) = seen.insert((l.order_id.clone(), l.line_no), line) {
                    errors.push(RowError {
                        line,
                        message: duplicate(&l, first),
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

fn duplicate(l: &OrderLine, first: u64) -> String {
    format!(
        "duplicate key order_id '{}' line_no {} (first on line {first})",
        l.order_id, l.line_no
    )
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
        fact: LineFact {
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
        },
    })
}

/// Imports a CSV file of order lines (see the module docs): all or nothing.
pub async fn import_orders(db: &Db, input: impl Read) -> Result<ImportReport, ImportError> {
    import_orders_with_progress(db, input, |_| ()).await
}

/// [`import_orders`], calling `progress` with the number of rows read every
/// [`PROGRESS_EVERY`] rows (the CLI prints it for large files).
pub async fn import_orders_with_progress(
    db: &Db,
    input: impl Read,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let reader = OrderReader::new(input).map_err(|e| ImportError::Invalid(vec![e]))?;
    let mut writer = LineWriter::begin(db, "csv").await?;
    for (n, (line, parsed)) in reader.enumerate() {
        match parsed {
            Ok(l) => writer.push(line, l).await?,
            Err(message) => writer.reject(RowError { line, message }),
        }
        if writer.errors.len() >= MAX_REPORTED {
            break;
        }
        if (n as u64 + 1).is_multiple_of(PROGRESS_EVERY) {
            progress(n as u64 + 1);
        }
    }
    writer.finish().await
}

/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 500_000;
/// Site-days of tallies held before they are added to the store (bounds memory).
const TALLY_DAYS_HELD: usize = 2_000;

/// Fingerprint of what tallies depend on: the scoring rules and the unit costs. The store
/// records the one it was tallied with; a different one means re-tally.
pub fn scoring_fingerprint(params: ScoringParams, costs: &CostBook) -> String {
    let mut items: Vec<String> = costs
        .by_sku
        .iter()
        .map(|(k, v)| format!("sku:{k}={v}"))
        .chain(
            costs
                .by_category
                .iter()
                .map(|(k, v)| format!("category:{k}={v}")),
        )
        .collect();
    items.sort();
    let digest = sha2::Sha256::digest(items.join("\n").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "window={};tolerance={};costs={hex}",
        params.on_time_window_days, params.in_full_tolerance
    )
}

/// Brings the metric store in line with the scoring rules and unit costs in force, in the
/// caller's transaction: re-tallies every line when they changed since it was tallied.
/// Returns whether it re-tallied.
///
/// Boxed so that callers' futures stay `Send` for every lifetime (server functions need
/// that; the generic executor bounds inside would otherwise leak a specific lifetime).
pub fn rescore_if_changed(
    conn: &mut store::Conn,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let state = facts::lock_store(&mut *conn, &clock::now()).await?;
        let rules = store::rules::load_on(&mut *conn).await?;
        let costs = facts::cost_book(&mut *conn).await?;
        let fingerprint = scoring_fingerprint(rules.scoring(), &costs);
        if state.scoring == fingerprint {
            return Ok(false);
        }
        facts::retally_all(&mut *conn, rules.scoring(), &costs).await?;
        facts::set_scoring(&mut *conn, &fingerprint).await?;
        Ok(true)
    })
}

/// [`rescore_if_changed`] in its own transaction: run on start-up, so a store migrated
/// from an older version (empty, tallied with nothing) is filled before any page reads it.
pub async fn bring_store_up_to_date(db: &Db) -> Result<bool, StoreError> {
    let mut tx = store::begin(db).await?;
    let changed = rescore_if_changed(&mut tx).await?;
    store::commit(tx).await?;
    Ok(changed)
}

/// Writes order lines into the store in one transaction (see the module docs): lines in
/// bulk batches, their tallies added to the metric store, updated lines' days re-tallied.
/// Rows rejected by the caller ([`LineWriter::reject`]) stop the writing; `finish` then
/// rolls everything back and names them.
pub struct LineWriter {
    tx: Tx,
    import_id: String,
    params: ScoringParams,
    costs: CostBook,
    known_sites: BTreeSet<String>,
    sites_created: Vec<String>,
    pending: Vec<(u64, OrderLine)>,
    /// Tallies of new lines not yet added to the store, per (site, due day).
    tallies: HashMap<(String, NaiveDate), Breakdown>,
    /// Days holding a line that was updated (before or after): re-tallied at the end.
    dirty: BTreeSet<(String, NaiveDate)>,
    errors: Vec<RowError>,
    lines: usize,
    inserted: usize,
    updated: usize,
}

impl LineWriter {
    /// Starts the transaction, takes the store's lock and brings it in line with the
    /// rules in force (so new tallies and old ones are scored alike). `source` names where
    /// the lines come from (`csv`, `demo`), kept with each line.
    pub async fn begin(db: &Db, source: &str) -> Result<LineWriter, ImportError> {
        let mut tx = store::begin(db).await?;
        rescore_if_changed(&mut tx).await?;
        let rules = store::rules::load_on(&mut tx).await?;
        let costs = facts::cost_book(&mut *tx).await?;
        let known_sites = facts::sites(&mut *tx)
            .await?
            .into_iter()
            .map(|s| s.code)
            .collect();
        Ok(LineWriter {
            tx,
            import_id: clock::new_id(chrono::Utc::now(), source),
            params: rules.scoring(),
            costs,
            known_sites,
            sites_created: Vec::new(),
            pending: Vec::with_capacity(BULK_ROWS),
            tallies: HashMap::new(),
            dirty: BTreeSet::new(),
            errors: Vec::new(),
            lines: 0,
            inserted: 0,
            updated: 0,
        })
    }

    /// Removes every line, the metric store, the sites and the insights (the demo's
    /// `--reset`), in this transaction.
    pub async fn clear(&mut self) -> Result<(), ImportError> {
        facts::clear(&mut self.tx).await?;
        self.known_sites.clear();
        Ok(())
    }

    /// Writes sites with their names and regions, in this transaction.
    pub async fn upsert_sites(&mut self, sites: &[facts::Site]) -> Result<(), ImportError> {
        facts::upsert_sites(&mut self.tx, sites).await?;
        self.known_sites
            .extend(sites.iter().map(|s| s.code.clone()));
        Ok(())
    }

    /// Adds a line read from `line` of the input (1-based, the header is line 1).
    pub async fn push(&mut self, line: u64, order: OrderLine) -> Result<(), ImportError> {
        if !self.errors.is_empty() {
            return Ok(()); // Validating only: nothing more is written.
        }
        self.pending.push((line, order));
        if self.pending.len() >= BULK_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Records a bad row: nothing will be imported.
    pub fn reject(&mut self, e: RowError) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(e);
        }
    }

    async fn flush(&mut self) -> Result<(), ImportError> {
        let batch = std::mem::take(&mut self.pending);
        if batch.is_empty() {
            return Ok(());
        }
        let new_sites: Vec<String> = batch
            .iter()
            .map(|(_, l)| &l.fact.site)
            .filter(|s| !self.known_sites.contains(*s))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !new_sites.is_empty() {
            facts::ensure_sites(&mut self.tx, &new_sites).await?;
            self.known_sites.extend(new_sites.iter().cloned());
            self.sites_created.extend(new_sites);
        }
        // A key twice in one batch: the second is a duplicate whatever line numbers the
        // caller gave (the store's check below tells lines apart by them).
        let mut in_batch: HashMap<(&str, i64), u64> = HashMap::new();
        for (line, l) in &batch {
            if let Some(first) = in_batch.insert((l.order_id.as_str(), l.line_no), *line) {
                self.reject(RowError {
                    line: *line,
                    message: duplicate(l, first),
                });
            }
        }
        if !self.errors.is_empty() {
            return Ok(());
        }
        let refs: Vec<(u64, &OrderLine)> = batch.iter().map(|(n, l)| (*n, l)).collect();
        let inserted = facts::insert_new_lines(&mut self.tx, &refs, &self.import_id).await?;
        self.lines += batch.len();
        if inserted as usize == batch.len() {
            for (_, l) in &batch {
                self.tally(&l.fact);
            }
            self.inserted += batch.len();
        } else {
            self.sort_out_conflicts(&refs).await?;
        }
        if self.tallies.len() > TALLY_DAYS_HELD {
            facts::add_tallies(&mut self.tx, &std::mem::take(&mut self.tallies)).await?;
        }
        Ok(())
    }

    /// Some keys of the batch were stored already: each is a line this batch inserted, a
    /// duplicate within the file (an error) or an update of an earlier import's line.
    async fn sort_out_conflicts(&mut self, refs: &[(u64, &OrderLine)]) -> Result<(), ImportError> {
        let keys: Vec<(&str, i64)> = refs
            .iter()
            .map(|(_, l)| (l.order_id.as_str(), l.line_no))
            .collect();
        let stored: HashMap<(String, i64), facts::StoredKey> =
            facts::stored_keys(&mut self.tx, &keys)
                .await?
                .into_iter()
                .map(|k| ((k.order_id.clone(), k.line_no), k))
                .collect();
        let mut updates: Vec<(u64, &OrderLine)> = Vec::new();
        let mut updated_keys: HashSet<(&str, i64)> = HashSet::new();
        for (line, l) in refs {
            // Every key of the batch was either inserted or already stored; a key that is
            // neither means the write went wrong: fail rather than lose the line.
            let Some(k) = stored.get(&(l.order_id.clone(), l.line_no)) else {
                return Err(ImportError::Store(StoreError::Corrupt {
                    what: "An imported line is missing after its write",
                    detail: format!("order_id '{}' line_no {}", l.order_id, l.line_no),
                }));
            };
            let ours = k.import_id.as_deref() == Some(self.import_id.as_str());
            if ours && k.import_line == Some(*line as i64) {
                self.tally(&l.fact);
                self.inserted += 1;
            } else if ours || !updated_keys.insert((l.order_id.as_str(), l.line_no)) {
                let first = k.import_line.unwrap_or_default().max(0) as u64;
                self.reject(RowError {
                    line: *line,
                    message: duplicate(l, first),
                });
            } else {
                if let Some(day) = parse_date(&k.due_date) {
                    self.dirty.insert((k.site.clone(), day));
                }
                self.dirty.insert((l.fact.site.clone(), l.fact.due_date));
                updates.push((*line, l));
            }
        }
        if self.errors.is_empty() && !updates.is_empty() {
            facts::update_lines(&mut self.tx, &updates, &self.import_id).await?;
            self.updated += updates.len();
        }
        Ok(())
    }

    fn tally(&mut self, line: &LineFact) {
        self.tallies
            .entry((line.site.clone(), line.due_date))
            .or_default()
            .add_stored_line(line, self.params, &self.costs);
    }

    /// Writes what is left, re-tallies the updated lines' days and commits; or, when any
    /// row was bad, rolls everything back and names them.
    pub async fn finish(mut self) -> Result<ImportReport, ImportError> {
        if self.errors.is_empty() {
            self.flush().await?;
        }
        if !self.errors.is_empty() {
            // Dropping the transaction rolls it back.
            return Err(ImportError::Invalid(self.errors));
        }
        let mut tallies = std::mem::take(&mut self.tallies);
        tallies.retain(|key, _| !self.dirty.contains(key));
        facts::add_tallies(&mut self.tx, &tallies).await?;
        for (site, day) in &self.dirty {
            facts::retally(&mut self.tx, site, *day, *day, self.params, &self.costs).await?;
        }
        store::commit(self.tx).await?;
        Ok(ImportReport {
            lines: self.lines,
            inserted: self.inserted,
            updated: self.updated,
            sites_created: self.sites_created,
        })
    }
}
