//! `opsight import orders FILE.csv`: order lines streamed into the store in one
//! transaction, all or nothing, in constant memory whatever the file's size.
//!
//! Columns (header row, any order): order_id, line_no, site, customer, carrier, sku,
//! category, ordered_qty, delivered_qty, due_date (YYYY-MM-DD, must-arrive-by),
//! delivered_date (YYYY-MM-DD, empty if not delivered), reason_code (optional column and
//! value), site_name and region (optional: they name and group a site the file creates). Every bad row is reported with its line number (the header is line 1) and
//! nothing is imported. Unknown sites are created from their code. Re-importing an
//! (order_id, line_no) updates that line; the same key twice in one file is an error.
//!
//! How: a blocking thread reads, validates and tallies rows a batch at a time; the
//! [`LineWriter`] streams each batch into the import's transaction ([`store::staging`]: on
//! SQLite new keys straight into `order_lines` and the rest into a temporary table, on
//! PostgreSQL `COPY` into an unlogged table) and adds its tallies to the metric store; at
//! the end a few set-based statements settle the staged lines (new keys inserted, earlier
//! imports' keys updated and their days re-tallied from the lines, a key twice in the file
//! reported with both lines) and it commits. Nothing is visible until the commit, and a
//! bad row anywhere rolls it all back. The seed writes through the same [`LineWriter`],
//! data sources through the same [`import_lines`].

use crate::domain::catalogue::Catalogue;
use crate::domain::evidence::LineFact;
use crate::domain::kpi::ScoringParams;
use crate::domain::materiality::CostBook;
use crate::domain::period::parse_date;
use crate::domain::tally::{Breakdown, OrderLine, Scorer};
use crate::ssr::clock;
use crate::ssr::store::facts::{self, BULK_ROWS};
use crate::ssr::store::staging::{self, Encoded, Moved, Stage};
use crate::ssr::store::{self, Db, StoreError, Tx};
use chrono::NaiveDate;
use sha2::Digest;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;

/// The columns every order line has, in this order (sources map theirs onto these).
pub const REQUIRED: [&str; 11] = [
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
pub const MAX_FIELD: usize = 200;

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
    /// The input failed mid-way (a source's connection dropped): nothing was imported.
    #[error("{0} — nothing was imported")]
    Input(String),
    /// The thread reading the file died (a bug): nothing was imported.
    #[error("the file's reader failed ({0}) — nothing was imported")]
    Reader(String),
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
    /// Where each of [`REQUIRED`] is in a row, in that order.
    idx: [usize; REQUIRED.len()],
    /// Where the optional columns are, when the file has them.
    optional: [Option<usize>; 3],
    /// The catalogue's dimensions and fields the file has: (name, position).
    attrs: Vec<(String, usize)>,
}

/// The optional columns of an order line, by their name in the input: the reason code,
/// and the site's name and region (which name a site the line creates).
#[derive(Clone, Copy, Debug, Default)]
pub struct OptionalColumns<'a> {
    pub reason_code: Option<&'a str>,
    pub site_name: Option<&'a str>,
    pub region: Option<&'a str>,
    /// The catalogue's dimensions and fields: (name, column). A column the file lacks
    /// leaves the attribute out.
    pub attrs: &'a [(String, String)],
}

impl OptionalColumns<'static> {
    /// The optional columns under Opsight's own names.
    pub const OWN: OptionalColumns<'static> = OptionalColumns {
        reason_code: Some("reason_code"),
        site_name: Some("site_name"),
        region: Some("region"),
        attrs: &[],
    };
}

/// The optional values of a row.
#[derive(Clone, Copy, Debug, Default)]
pub struct OptionalValues<'a> {
    pub reason_code: Option<&'a str>,
    pub site_name: Option<&'a str>,
    pub region: Option<&'a str>,
    /// The catalogue's dimensions and fields: (name, value).
    pub attrs: &'a [(&'a str, &'a str)],
}

impl<R: Read> OrderReader<R> {
    pub fn new(input: R) -> Result<Self, RowError> {
        Self::with_columns(input, REQUIRED, OptionalColumns::OWN)
    }

    /// A reader of a file whose columns have other names: `columns[i]` holds
    /// `REQUIRED[i]`, `optional` the optional ones (header names compare without case).
    pub fn with_columns(
        input: R,
        columns: [&str; REQUIRED.len()],
        optional: OptionalColumns,
    ) -> Result<Self, RowError> {
        // Fields are trimmed as they are read (`str::trim`, no copy): the reader's own
        // trimming rebuilt every record, a twentieth of an import's instructions.
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| RowError {
                line: 1,
                message: format!("cannot read the header row: {e}"),
            })?
            .iter()
            .map(|h| {
                h.trim()
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_lowercase()
            })
            .collect::<Vec<_>>();
        let columns = columns.map(|c| c.trim().to_lowercase());
        let missing: Vec<String> = REQUIRED
            .iter()
            .zip(&columns)
            .filter(|(_, c)| !headers.iter().any(|h| h == *c))
            .map(|(field, c)| {
                if field == c {
                    c.clone()
                } else {
                    format!("{c} (for {field})")
                }
            })
            .collect();
        if !missing.is_empty() {
            return Err(RowError {
                line: 1,
                message: format!("missing column(s): {}", missing.join(", ")),
            });
        }
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| *h == name.trim().to_lowercase())
        };
        let idx = columns.map(|c| col(&c).unwrap_or_default()); // all present (checked)
        let attrs = optional
            .attrs
            .iter()
            .filter_map(|(name, column)| Some((name.clone(), col(column)?)))
            .collect();
        let optional =
            [optional.reason_code, optional.site_name, optional.region].map(|c| c.and_then(col));
        Ok(OrderReader {
            records: reader.into_records(),
            idx,
            optional,
            attrs,
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
        let field = |name: &str| {
            REQUIRED
                .iter()
                .position(|c| *c == name)
                .and_then(|at| record.get(self.idx[at]))
                .unwrap_or_default()
                .trim()
        };
        let get = |at: Option<usize>| at.and_then(|i| record.get(i));
        let [reason_code, site_name, region] = self.optional;
        let attrs: Vec<(&str, &str)> = self
            .attrs
            .iter()
            .map(|(name, at)| (name.as_str(), record.get(*at).unwrap_or_default()))
            .collect();
        Some((
            line,
            parse_row(
                &field,
                OptionalValues {
                    reason_code: get(reason_code),
                    site_name: get(site_name),
                    region: get(region),
                    attrs: &attrs,
                },
            ),
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
                        message: duplicate(&l.order_id, l.line_no, first),
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

fn duplicate(order_id: &str, line_no: i64, first: u64) -> String {
    format!("duplicate key order_id '{order_id}' line_no {line_no} (first on line {first})")
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

/// A site as the store keys it, from what the input calls it: a code of letters, digits,
/// '-' or '_' (at most 32) is the site's code, upper-cased; any other name (up to 100
/// characters: "Côte d'Ivoire", "Zürich Nord", "東京") gets a code made from it (see
/// [`code_for_name`]) and is kept as the site's name.
pub fn site_code(site: &str) -> Result<(String, Option<String>), String> {
    if site.is_empty() {
        return Err("site is empty".into());
    }
    if site.len() <= 32
        && site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok((site.to_ascii_uppercase(), None));
    }
    if site.chars().count() > 100 || site.chars().any(char::is_control) {
        return Err(format!(
            "site '{}' must be a code or a name of at most 100 characters",
            site.chars().take(40).collect::<String>()
        ));
    }
    Ok((code_for_name(site), Some(site.to_string())))
}

/// A site code made from a name: Latin letters without their accents, upper-cased, runs
/// of anything else as one '-', at most 24 characters ("Côte d'Ivoire" →
/// `COTE-D-IVOIRE`); a name with no Latin letter or digit gets `S-` and 8 hex digits of
/// its SHA-256 (the same name, the same code).
pub fn code_for_name(name: &str) -> String {
    let mut code = String::new();
    for c in name.chars() {
        let folded = fold(c);
        if folded.is_empty() {
            if !code.ends_with('-') {
                code.push('-');
            }
        } else {
            code.push_str(&folded.to_ascii_uppercase());
        }
    }
    let mut code: String = code.trim_matches('-').chars().take(24).collect();
    while code.ends_with('-') {
        code.pop();
    }
    if code.chars().any(|c| c.is_ascii_alphanumeric()) {
        code
    } else {
        let digest = sha2::Sha256::digest(name.as_bytes());
        format!(
            "S-{}",
            digest
                .iter()
                .take(4)
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        )
    }
}

/// A character as ASCII letters or digits: itself, its letter without accents (Latin),
/// or nothing.
fn fold(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        return c.to_string();
    }
    let base = match c {
        'À'..='Å' | 'à'..='å' | 'Ā'..='ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć'..='č' => "c",
        'Ď'..='đ' | 'Ð' | 'ð' => "d",
        'È'..='Ë' | 'è'..='ë' | 'Ē'..='ě' => "e",
        'Ĝ'..='ģ' => "g",
        'Ĥ'..='ħ' => "h",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ'..='ı' => "i",
        'Ĳ' | 'ĳ' => "ij",
        'Ĵ' | 'ĵ' => "j",
        'Ķ' | 'ķ' => "k",
        'Ĺ'..='ł' => "l",
        'Ñ' | 'ñ' | 'Ń'..='ň' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō'..='ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ'..='ř' => "r",
        'Ś'..='š' => "s",
        'ß' => "ss",
        'Ţ'..='ŧ' => "t",
        'Ù'..='Ü' | 'ù'..='ü' | 'Ũ'..='ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ' | 'ŷ' | 'Ÿ' => "y",
        'Ź'..='ž' => "z",
        'Þ' | 'þ' => "th",
        _ => "",
    };
    base.to_string()
}

/// Validates one row given as text in [`REQUIRED`] order (a source's row), as a file's
/// row is validated.
pub fn parse_values(
    values: &[&str; REQUIRED.len()],
    optional: OptionalValues,
) -> Result<OrderLine, String> {
    let field = |name: &str| {
        REQUIRED
            .iter()
            .position(|c| *c == name)
            .map_or("", |at| values[at].trim())
    };
    parse_row(&field, optional)
}

fn parse_row<'a>(
    field: &dyn Fn(&str) -> &'a str,
    optional: OptionalValues<'a>,
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
    let (site, derived_name) = site_code(&text("site")?)?;
    // A name or region the input gives (names a site the line creates).
    let named = |v: Option<&str>, what: &str| -> Result<Option<String>, String> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() > 100 || v.chars().any(char::is_control) => {
                Err(format!("{what} is longer than 100 characters"))
            }
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    let site_name = named(optional.site_name, "site_name")?.or(derived_name);
    let site_region = named(optional.region, "region")?;
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
    let reason_code = optional
        .reason_code
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(MAX_FIELD).collect());
    let mut attrs: Vec<(String, String)> = Vec::with_capacity(optional.attrs.len());
    for (name, value) in optional.attrs {
        let v = value.trim();
        if v.chars().count() > MAX_FIELD {
            return Err(format!("{name} is longer than {MAX_FIELD} characters"));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("{name} holds a control character"));
        }
        if !v.is_empty() {
            attrs.push((name.to_string(), v.to_string()));
        }
    }
    attrs.sort();
    Ok(OrderLine {
        order_id: text("order_id")?,
        line_no,
        fact: LineFact {
            site,
            customer: text("customer")?,
            carrier: text("carrier")?,
            sku: text("sku")?,
            category: text("category")?,
            ordered_qty,
            delivered_qty: qty("delivered_qty")?,
            due_date,
            delivered_date,
            reason_code,
            attrs,
        },
        site_name,
        site_region,
    })
}

/// Imports a CSV file of order lines (see the module docs): all or nothing.
pub async fn import_orders(
    db: &Db,
    input: impl Read + Send + 'static,
) -> Result<ImportReport, ImportError> {
    import_orders_with_progress(db, input, |_| ()).await
}

/// [`import_orders`], calling `progress` with the number of rows read every
/// [`PROGRESS_EVERY`] rows (the CLI prints it for large files).
pub async fn import_orders_with_progress(
    db: &Db,
    input: impl Read + Send + 'static,
    progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    // The catalogue's dimensions and fields are read under their own names.
    let catalogue = facts::catalogue(db).await?;
    let attrs: Vec<(String, String)> = catalogue
        .attributes()
        .map(|a| (a.to_string(), a.to_string()))
        .collect();
    let reader = OrderReader::with_columns(
        input,
        REQUIRED,
        OptionalColumns {
            attrs: &attrs,
            ..OptionalColumns::OWN
        },
    )
    .map_err(|e| ImportError::Invalid(vec![e]))?;
    import_lines(db, "csv", reader.map(Ok), PROGRESS_EVERY, progress).await
}

/// One row of an input: its number (a file's line, a query result's row) and the order
/// line or why it is bad; or the input failing (`Err`: a source dropped mid-way).
pub type InputRow = Result<(u64, Result<OrderLine, String>), String>;

/// Imports order lines from any input (a CSV file, a data source's rows), all or nothing:
/// every bad row is named, an input that fails mid-way imports nothing. `source` names
/// where the lines come from (kept with each line). `progress` gets the number of rows
/// read every `every` rows.
///
/// The rows are read (and parsed) on a blocking thread, at most [`BATCHES_AHEAD`] batches
/// ahead of the writer, so parsing, the writer and the database (SQLite's own thread, or
/// the PostgreSQL server) work at the same time and memory stays bounded.
pub async fn import_lines(
    db: &Db,
    source: &str,
    rows: impl Iterator<Item = InputRow> + Send + 'static,
    every: u64,
    progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    import_lines_uncommitted(db, source, rows, every, progress)
        .await?
        .commit()
        .await
}

/// [`import_lines`] without the commit: the caller commits (or drops, rolling back).
pub async fn import_lines_uncommitted(
    db: &Db,
    source: &str,
    mut rows: impl Iterator<Item = InputRow> + Send + 'static,
    every: u64,
    mut progress: impl FnMut(u64),
) -> Result<Uncommitted, ImportError> {
    let mut writer = LineWriter::begin(db, source).await?;
    let (batches, mut parsed) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    // Reads, validates, tallies and encodes for the stage; stops at the end of the input,
    // when the input fails, or when the writer stops listening (an error, or enough bad
    // rows listed).
    let scoring = writer.scoring().clone();
    let encoder = writer.stage.encoder();
    let parser = tokio::task::spawn_blocking(move || loop {
        let mut batch = Parsed::default();
        for row in rows.by_ref().take(BULK_ROWS) {
            let (line, row) = match row {
                Ok(r) => r,
                Err(failure) => {
                    batch.failure = Some(failure);
                    break;
                }
            };
            batch.rows += 1;
            match row {
                Ok(l) => {
                    tally(&scoring, &mut batch.tallies, &l.fact);
                    batch.lines.push((line, l));
                }
                Err(message) => batch.errors.push(RowError { line, message }),
            }
        }
        let last = batch.failure.is_some();
        if batch.rows == 0 && !last {
            break;
        }
        // A batch with a bad row is not written (nothing will be): no need to encode it.
        if batch.errors.is_empty() && !last {
            batch.encoded = Some(encoder.encode(&batch.lines));
        }
        if batches.blocking_send(batch).is_err() || last {
            break;
        }
    });
    let mut read = 0u64;
    let every = every.max(1);
    while let Some(batch) = parsed.recv().await {
        if let Some(failure) = batch.failure {
            drop(parsed);
            writer.abandon().await;
            let _ = parser.await;
            return Err(ImportError::Input(failure));
        }
        let before = read;
        read += batch.rows;
        for e in batch.errors {
            writer.reject(e);
        }
        if writer.errors.len() >= MAX_REPORTED {
            break;
        }
        // Once a row was refused nothing more is written (nor is a failed encoding news).
        let encoded = if writer.errors.is_empty() {
            batch.encoded.transpose()?
        } else {
            None
        };
        writer
            .write_batch(batch.lines, Some(batch.tallies), encoded)
            .await?;
        if read / every > before / every {
            progress(read - read % every);
        }
    }
    drop(parsed);
    parser
        .await
        .map_err(|e| ImportError::Reader(e.to_string()))?;
    writer.finish_uncommitted().await
}

/// A batch of rows, read on the parser's thread: the good ones with their tallies (and
/// encoded for the stage when all were good) and the bad ones.
#[derive(Default)]
struct Parsed {
    rows: u64,
    lines: Vec<(u64, OrderLine)>,
    errors: Vec<RowError>,
    tallies: DayTallies,
    encoded: Option<Result<Encoded, StoreError>>,
    /// The input failed after this batch's rows: nothing is imported.
    failure: Option<String>,
}

/// Parsed batches waiting for the writer.
const BATCHES_AHEAD: usize = 2;

/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 500_000;
/// Site-days of tallies held before they are added to the store (bounds memory).
const TALLY_DAYS_HELD: usize = 2_000;

/// Fingerprint of what tallies depend on: the scoring rules, the unit costs and the
/// catalogue. The store records the one it was tallied with; a different one means
/// re-tally.
pub fn scoring_fingerprint(
    params: ScoringParams,
    costs: &CostBook,
    catalogue: &Catalogue,
) -> String {
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
    let base = format!(
        "window={};tolerance={};costs={hex}",
        params.on_time_window_days, params.in_full_tolerance
    );
    if catalogue.is_empty() {
        // As before catalogues existed: a store without one is not re-tallied.
        return base;
    }
    let digest = sha2::Sha256::digest(catalogue.tally_text().as_bytes());
    let cat: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{base};catalogue={cat}")
}

/// [`scoring_fingerprint`] of what is in force now.
pub async fn current_fingerprint(conn: &mut store::Conn) -> Result<String, StoreError> {
    let rules = store::rules::load_on(&mut *conn).await?;
    let costs = facts::cost_book(&mut *conn).await?;
    let catalogue = facts::catalogue(&mut *conn).await?;
    Ok(scoring_fingerprint(rules.scoring(), &costs, &catalogue))
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
        let fingerprint = current_fingerprint(&mut *conn).await?;
        if state.scoring == fingerprint {
            return Ok(false);
        }
        let scorer = facts::scorer(&mut *conn).await?;
        facts::retally_all(&mut *conn, &scorer).await?;
        facts::set_scoring(&mut *conn, &fingerprint).await?;
        Ok(true)
    })
}

/// Brings the metric store in line with the rules in force ([`rescore_if_changed`]) and
/// with the lines, in its own transaction: run on start-up (and by `opsight retally`),
/// so a store migrated from an older version is filled before any page reads it, and
/// lines written into `order_lines` by other programs (which do not tally them) are
/// counted. Those are found by the totals the lines and the store must share
/// ([`facts::Totals`]: a scan of the lines); `force` re-tallies whatever they say.
/// Returns whether it re-tallied.
pub async fn bring_store_up_to_date(db: &Db) -> Result<bool, StoreError> {
    retally_store(db, false).await
}

/// [`bring_store_up_to_date`], re-tallying every line when `force` is set.
pub async fn retally_store(db: &Db, force: bool) -> Result<bool, StoreError> {
    let mut tx = store::begin(db).await?;
    if rescore_if_changed(&mut tx).await? {
        store::commit(tx).await?;
        return Ok(true);
    }
    store::rollback(tx).await?;
    // Compared outside the store's lock (a scan of the lines), then settled under it.
    let mut conn = db.acquire().await.map_err(|source| StoreError::Database {
        what: "Failed to take a connection",
        source,
    })?;
    let lines = facts::line_totals(&mut *conn).await?;
    let tallied = facts::store_totals(&mut conn).await?;
    drop(conn);
    if !force && lines == tallied {
        return Ok(false);
    }
    let mut tx = store::begin(db).await?;
    if !force {
        tracing::warn!(
            lines = lines.lines,
            tallied = tallied.lines,
            "order lines were written outside Opsight's import: re-tallying the metric store"
        );
    }
    facts::lock_store(&mut tx, &clock::now()).await?;
    let scorer = facts::scorer(&mut tx).await?;
    facts::retally_all(&mut tx, &scorer).await?;
    store::commit(tx).await?;
    Ok(true)
}

/// Tallies of lines per (site, due day): what the metric store gains from them.
pub type DayTallies = HashMap<(String, NaiveDate), Breakdown>;

/// Adds a line's tally to its site and due day.
pub fn tally(scorer: &Scorer, into: &mut DayTallies, line: &LineFact) {
    let key = (line.site.clone(), line.due_date);
    into.entry(key).or_default().add_stored_line(line, scorer);
}

/// Writes order lines into the store in one transaction (see the module docs): lines
/// streamed through a stage ([`store::staging`]), updates and duplicates settled at the
/// end, their tallies added to the metric store as they come (updated lines' days are
/// re-tallied from the lines instead). Rows rejected by the caller
/// ([`LineWriter::reject`]) stop the writing; `finish` then rolls everything back and
/// names them.
pub struct LineWriter {
    tx: Tx,
    stage: Stage,
    scoring: Scorer,
    known_sites: BTreeSet<String>,
    sites_created: Vec<String>,
    pending: Vec<(u64, OrderLine)>,
    /// Tallies of staged lines not yet added to the store.
    tallies: DayTallies,
    errors: Vec<RowError>,
    lines: usize,
}

impl LineWriter {
    /// Starts the transaction, takes the store's lock, brings it in line with the rules in
    /// force (so new tallies and old ones are scored alike) and opens the stage. `source`
    /// names where the lines come from (`csv`, `demo`), kept with each line.
    pub async fn begin(db: &Db, source: &str) -> Result<LineWriter, ImportError> {
        let mut tx = store::begin(db).await?;
        staging::prepare_transaction(&mut tx).await?;
        rescore_if_changed(&mut tx).await?;
        let scoring = facts::scorer(&mut tx).await?;
        let known_sites = facts::sites(&mut *tx)
            .await?
            .into_iter()
            .map(|s| s.code)
            .collect();
        let import_id = clock::new_id(chrono::Utc::now(), source);
        let stage = Stage::open(db, &mut tx, &import_id).await?;
        Ok(LineWriter {
            tx,
            stage,
            scoring,
            known_sites,
            sites_created: Vec::new(),
            pending: Vec::with_capacity(BULK_ROWS),
            tallies: HashMap::new(),
            errors: Vec::new(),
            lines: 0,
        })
    }

    /// The scoring lines are tallied with (for a reader that tallies as it parses).
    pub fn scoring(&self) -> &Scorer {
        &self.scoring
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
            let batch = std::mem::take(&mut self.pending);
            self.write_batch(batch, None, None).await?;
        }
        Ok(())
    }

    /// Records a bad row: nothing will be imported.
    pub fn reject(&mut self, e: RowError) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(e);
        }
    }

    /// Stages a batch of lines, with their tallies and encoding when the caller made them
    /// already (under [`LineWriter::scoring`], with the stage's encoder); does nothing once
    /// a row was rejected (the import then only validates what is left).
    async fn write_batch(
        &mut self,
        batch: Vec<(u64, OrderLine)>,
        tallied: Option<DayTallies>,
        encoded: Option<Encoded>,
    ) -> Result<(), ImportError> {
        if batch.is_empty() || !self.errors.is_empty() {
            return Ok(());
        }
        // New sites, named (and grouped) by the first line that says how.
        let mut new_sites: std::collections::BTreeMap<&String, (Option<&String>, Option<&String>)> =
            Default::default();
        for (_, l) in &batch {
            if !self.known_sites.contains(&l.fact.site) {
                let (name, region) = new_sites.entry(&l.fact.site).or_default();
                if name.is_none() {
                    *name = l.site_name.as_ref();
                }
                if region.is_none() {
                    *region = l.site_region.as_ref();
                }
            }
        }
        if !new_sites.is_empty() {
            let new_sites: Vec<facts::Site> = new_sites
                .into_iter()
                .map(|(code, (name, region))| facts::Site {
                    code: code.clone(),
                    name: name.unwrap_or(code).clone(),
                    region: region.cloned().unwrap_or_default(),
                })
                .collect();
            facts::ensure_sites(&mut self.tx, &new_sites).await?;
            self.known_sites
                .extend(new_sites.iter().map(|s| s.code.clone()));
            self.sites_created
                .extend(new_sites.into_iter().map(|s| s.code));
        }
        match encoded {
            Some(e) => self.stage.send_encoded(&mut self.tx, e).await?,
            None => self.stage.send(&mut self.tx, &batch).await?,
        }
        self.lines += batch.len();
        // Every line is tallied as if new; `finish` re-tallies the days of the lines that
        // turn out to be updates from the lines themselves, dropping these tallies.
        match tallied {
            Some(t) => {
                for (key, b) in t {
                    match self.tallies.get_mut(&key) {
                        Some(held) => held.merge(&b),
                        None => {
                            self.tallies.insert(key, b);
                        }
                    }
                }
            }
            None => {
                for (_, l) in &batch {
                    tally(&self.scoring, &mut self.tallies, &l.fact);
                }
            }
        }
        if self.tallies.len() > TALLY_DAYS_HELD {
            facts::add_tallies(&mut self.tx, &std::mem::take(&mut self.tallies)).await?;
        }
        Ok(())
    }

    /// Rolls everything back (the input failed): nothing is imported.
    pub async fn abandon(self) {
        let LineWriter { tx, stage, .. } = self;
        if let Err(e) = store::rollback(tx).await {
            tracing::warn!(error = %e, "rolling back an abandoned import failed");
        }
        stage.abandon().await;
    }

    /// Moves the staged lines in, re-tallies the updated lines' days and commits; or, when
    /// any row was bad (a key twice in the input included), rolls everything back and
    /// names them.
    pub async fn finish(self) -> Result<ImportReport, ImportError> {
        self.finish_uncommitted().await?.commit().await
    }

    /// [`LineWriter::finish`] without the commit.
    pub async fn finish_uncommitted(mut self) -> Result<Uncommitted, ImportError> {
        if self.errors.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.write_batch(batch, None, None).await?;
        }
        let started = std::time::Instant::now();
        let moved = if self.errors.is_empty() {
            self.stage
                .move_into_lines(&mut self.tx, self.lines as u64, MAX_REPORTED)
                .await?
        } else {
            Moved::default()
        };
        tracing::debug!(
            lines = self.lines,
            inserted = moved.inserted,
            updated = moved.updated,
            ms = started.elapsed().as_millis() as u64,
            "staged lines moved in"
        );
        for (line, first, order_id, line_no) in moved.duplicates {
            self.reject(RowError {
                line,
                message: duplicate(&order_id, line_no, first),
            });
        }
        if !self.errors.is_empty() {
            let LineWriter {
                tx,
                stage,
                mut errors,
                ..
            } = self;
            // Rolled back first: the stage can be cleared over its own connection only
            // once this transaction no longer reads it. A failure to clean up is logged;
            // the rows' errors are what the caller needs.
            if let Err(e) = store::rollback(tx).await {
                tracing::warn!(error = %e, "rolling back a refused import failed");
            }
            stage.abandon().await;
            errors.sort_by_key(|e| e.line);
            return Err(ImportError::Invalid(errors));
        }
        // The lines are in the transaction now: the stage is emptied with it.
        self.stage.discard(&mut self.tx).await?;
        let dirty: BTreeSet<(String, NaiveDate)> = moved.dirty.into_iter().collect();
        let mut tallies = std::mem::take(&mut self.tallies);
        tallies.retain(|key, _| !dirty.contains(key));
        facts::add_tallies(&mut self.tx, &tallies).await?;
        for (site, day) in &dirty {
            facts::retally(&mut self.tx, site, *day, *day, &self.scoring).await?;
        }
        Ok(Uncommitted {
            report: ImportReport {
                lines: self.lines,
                inserted: moved.inserted as usize,
                updated: moved.updated as usize,
                sites_created: self.sites_created,
            },
            tx: self.tx,
        })
    }
}

/// An import done but not committed: the caller may write more in its transaction (a
/// sync records its end there, so the lines and the record of them land together).
pub struct Uncommitted {
    pub report: ImportReport,
    pub tx: Tx,
}

impl Uncommitted {
    pub async fn commit(self) -> Result<ImportReport, ImportError> {
        store::commit(self.tx).await?;
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_named_otherwise_than_by_a_code_get_a_code_made_from_the_name() {
        assert_eq!(site_code("dal"), Ok(("DAL".into(), None)));
        assert_eq!(
            site_code("Côte d'Ivoire"),
            Ok(("COTE-D-IVOIRE".into(), Some("Côte d'Ivoire".into())))
        );
        assert_eq!(code_for_name("Zürich Nord"), "ZURICH-NORD");
        assert_eq!(code_for_name("  Straße / Łódź  "), "STRASSE-LODZ");
        assert_eq!(code_for_name("Æbeltoft Øst"), "AEBELTOFT-OST");
        let tokyo = code_for_name("東京");
        assert!(tokyo.starts_with("S-") && tokyo.len() == 10, "{tokyo}");
        assert_eq!(tokyo, code_for_name("東京"), "the same name, the same code");
        assert_ne!(tokyo, code_for_name("大阪"));
        assert_eq!(
            code_for_name("A very long distribution centre name indeed").len(),
            24
        );
        assert!(site_code(&"x ".repeat(60)).is_err());
        assert!(site_code("").is_err());
    }
}
