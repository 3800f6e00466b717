//! Reading a source: its rows as order lines, for [`import_lines`]
//! (crate::ssr::data::import::import_lines), numbered as the source numbers them.

use super::databricks::{Client, Disposition};
use super::def::{SourceDef, SourceKind};
use crate::domain::kpi::{KpiCounts, ScoringParams};
use crate::domain::tally::Tally;
use crate::ssr::data::import::{
    parse_values, site_code, InputRow, OptionalColumns, OptionalValues, OrderReader, MAX_FIELD,
    REQUIRED,
};
use crate::ssr::store::facts::PushedRow;
use crate::ssr::store::foreign::{self, Relation, Since};
use chrono::NaiveDate;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows sent from the source's reader at a time.
const CHUNK: usize = 1_000;
/// Chunks the reader may be ahead of the import.
const CHUNKS_AHEAD: usize = 8;
/// How long connecting may take.
const CONNECT: Duration = Duration::from_secs(15);
/// Files' rows are numbered file index × 2⁴⁰ + line.
const FILE_SHIFT: u32 = 40;

/// The window's first day: today less the window's days (a query's `:since`).
pub fn window_start(def: &SourceDef, today: NaiveDate) -> String {
    (today - chrono::Duration::days(i64::from(def.window_days)))
        .format("%Y-%m-%d")
        .to_string()
}

/// What a sync asks for: rows from the watermark synced so far, or else the window's days
/// by due date, ending today.
pub fn since(def: &SourceDef, watermark: Option<&str>, today: NaiveDate) -> Since {
    match (&def.watermark, watermark) {
        (Some(column), Some(value)) => Since {
            column: column.clone(),
            value: value.to_string(),
        },
        _ => Since {
            column: def.due_column().to_string(),
            value: window_start(def, today),
        },
    }
}

/// How a source's rows are numbered in messages.
pub enum Numbering {
    /// Rows of a query's result, from 1.
    Rows,
    /// Lines of files (the header is line 1).
    Files(Vec<String>),
}

impl Numbering {
    pub fn name(&self, n: u64) -> String {
        match self {
            Numbering::Rows => format!("row {n}"),
            Numbering::Files(names) => {
                let file = names
                    .get((n >> FILE_SHIFT) as usize)
                    .map_or("?", String::as_str);
                format!("{file} line {}", n & ((1 << FILE_SHIFT) - 1))
            }
        }
    }
}

/// A task stopped when its handle is dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An opened source: its rows, the highest watermark value they carried (known once they
/// are read), the task reading a database (stopped when this is dropped: the import
/// ended, failed or timed out).
pub struct Input {
    pub rows: Box<dyn Iterator<Item = InputRow> + Send>,
    /// Bytes of values read so far (databases and warehouses).
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
    pub watermark: Arc<Mutex<Option<String>>>,
    pub reader: Option<AbortOnDrop>,
    pub numbering: Numbering,
}

/// Opens a source: connects (or lists its files) and checks the mapping against its
/// columns, so a missing column fails before anything is written.
pub async fn open(def: &SourceDef, since: &Since, window: &str) -> Result<Input, String> {
    match def.kind {
        SourceKind::Csv => open_files(def),
        SourceKind::Postgres | SourceKind::Mysql | SourceKind::Databricks => {
            open_query(def, since, window).await
        }
    }
}

/// A database's or warehouse's rows: the mapping checked against the relation's columns
/// (a statement that reads no row), then the lines streamed by a task feeding the import.
async fn open_query(def: &SourceDef, since: &Since, window: &str) -> Result<Input, String> {
    let (Some(dialect), Some(relation)) = (def.kind.dialect(), def.relation.as_ref()) else {
        return Err("the source is not fully configured".into());
    };
    let available = columns_of(def, relation, window).await?;
    let columns = resolve_columns(def, relation, &available)?;
    let since = resolved_since(since, &available);
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let sql = foreign::select(dialect, relation, &refs, &since, window);
    let width = columns.len();
    let (rx, reader) = reader(def, sql, width).await?;
    Ok(database_input(def, rx, reader, width))
}

/// The columns `relation` has, from a statement that reads no row.
async fn columns_of(
    def: &SourceDef,
    relation: &Relation,
    window: &str,
) -> Result<Vec<String>, String> {
    let dialect = def
        .kind
        .dialect()
        .ok_or("the source is not fully configured")?;
    let probe = foreign::probe(dialect, relation, window);
    match (&def.url, &def.workspace) {
        (Some(url), _) => foreign::columns(
            dialect,
            &def.trust.database_url(url.expose()),
            &probe,
            CONNECT,
        )
        .await
        .map_err(|e| e.0),
        (None, Some(ws)) => {
            let mut client = Client::sign_in(ws, def.timeout, &def.trust).await?;
            let answer = client.execute(&probe, Disposition::Inline).await?;
            Ok(Client::columns(&answer))
        }
        (None, None) => Err("the source is not fully configured".into()),
    }
}

/// A task reading `sql`'s rows (`width` values each, as text) into the channel it returns,
/// [`CHUNK`] at a time, ending with an empty chunk (a reader that stops without one
/// failed) or the reason it failed.
async fn reader(
    def: &SourceDef,
    sql: String,
    width: usize,
) -> Result<
    (
        tokio::sync::mpsc::Receiver<Chunk>,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let idle = (def.timeout / 10).max(Duration::from_secs(10));
    let handle = match (&def.url, &def.workspace) {
        (Some(url), _) => {
            let mut conn = foreign::connect(&def.trust.database_url(url.expose()), CONNECT)
                .await
                .map_err(|e| e.0)?;
            tokio::spawn(async move {
                let end = match foreign::stream(&mut conn, &sql, width, CHUNK, idle, &tx).await {
                    Ok(()) => Ok(Vec::new()),
                    Err(e) => Err(e.0),
                };
                let _ = tx.send(end).await;
            })
        }
        (None, Some(ws)) => {
            let mut client = Client::sign_in(ws, def.timeout, &def.trust).await?;
            tokio::spawn(async move {
                let read = async {
                    let first = client.execute(&sql, Disposition::ExternalLinks).await?;
                    let mut chunk = first["result"].clone();
                    loop {
                        let (rows, next) = client.chunk(&chunk).await?;
                        for part in rows.chunks(CHUNK) {
                            let part: Vec<Vec<Option<String>>> = part
                                .iter()
                                .map(|r| {
                                    let mut r = r.clone();
                                    r.resize(width, None);
                                    r
                                })
                                .collect();
                            if tx.send(Ok(part)).await.is_err() {
                                return Ok(());
                            }
                        }
                        match next {
                            Some(link) => chunk = client.next_chunk(&link).await?,
                            None => return Ok::<(), String>(()),
                        }
                    }
                };
                let end = read.await.map(|()| Vec::new());
                let _ = tx.send(end).await;
            })
        }
        (None, None) => return Err("the source is not fully configured".into()),
    };
    Ok((rx, handle))
}

/// Every row of `sql` (at most `limit`), as text, and the bytes of their values.
async fn fetch(
    def: &SourceDef,
    sql: String,
    width: usize,
    limit: usize,
) -> Result<(Vec<Vec<Option<String>>>, u64), String> {
    let (mut rx, handle) = reader(def, sql, width).await?;
    // Stops the reading however this ends (a timeout drops this future mid-way).
    let handle = AbortOnDrop(handle);
    let mut rows = Vec::new();
    let mut bytes = 0u64;
    let result = loop {
        match rx.recv().await {
            Some(Ok(chunk)) if chunk.is_empty() => break Ok(()),
            Some(Ok(chunk)) => {
                bytes += chunk
                    .iter()
                    .flatten()
                    .map(|v| v.as_ref().map_or(0, |v| v.len() as u64))
                    .sum::<u64>();
                rows.extend(chunk);
                if rows.len() >= limit {
                    rows.truncate(limit);
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(e),
            None => break Err("the source's reader stopped".into()),
        }
    };
    drop(handle);
    result.map(|()| (rows, bytes))
}

/// Every row of `sql`, as text, handed to `each` as it arrives (memory stays that of a
/// chunk): how many rows, and the bytes of their values. `each` failing stops the read.
async fn each_row(
    def: &SourceDef,
    sql: String,
    width: usize,
    mut each: impl FnMut(u64, &[Option<String>]) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    let (mut rx, handle) = reader(def, sql, width).await?;
    let handle = AbortOnDrop(handle);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let result = loop {
        match rx.recv().await {
            Some(Ok(chunk)) if chunk.is_empty() => break Ok(()),
            Some(Ok(chunk)) => {
                for row in &chunk {
                    rows += 1;
                    bytes += row
                        .iter()
                        .map(|v| v.as_ref().map_or(0, |v| v.len() as u64))
                        .sum::<u64>();
                    if let Err(e) = each(rows, row) {
                        drop(handle);
                        return Err(e);
                    }
                }
            }
            Some(Err(e)) => break Err(e),
            None => break Err("the source's reader stopped".into()),
        }
    };
    drop(handle);
    result.map(|()| (rows, bytes))
}

/// What a push-down read: the tallies, the bytes of values received, and the lines they
/// count.
pub struct Pushed {
    pub rows: Vec<PushedRow>,
    /// Names of sites the source named otherwise than by a code, by their code.
    pub names: std::collections::BTreeMap<String, String>,
    pub bytes: u64,
    pub lines: i64,
}

/// The day-level tallies of the window's lines, computed by the source (a generated
/// `GROUP BY`, scored with `params`), after checking that no row of the window would be
/// refused as a line (named by order).
pub async fn aggregates(
    def: &SourceDef,
    window: &str,
    params: ScoringParams,
    catalogue_dimensions: &[String],
) -> Result<Pushed, String> {
    let (Some(dialect), Some(relation)) = (def.kind.dialect(), def.relation.as_ref()) else {
        return Err("the source is not fully configured".into());
    };
    let available = columns_of(def, relation, window).await?;
    let columns = resolve_columns(def, relation, &available)?;
    let p = foreign::Pushdown {
        order_id: &columns[0],
        line_no: &columns[1],
        site: &columns[2],
        customer: &columns[3],
        carrier: &columns[4],
        sku: &columns[5],
        category: &columns[6],
        ordered: &columns[7],
        delivered: &columns[8],
        due: &columns[9],
        delivered_on: &columns[10],
        reason: def
            .reason_code
            .as_ref()
            .map(|_| columns[REQUIRED.len()].as_str()),
        // After the reason code (push-down maps no site name, region or field); the
        // catalogue's dimensions this source does not map are the member '' of each line.
        dimensions: catalogue_dimensions
            .iter()
            .map(|name| {
                let mapped = def.dimensions.iter().position(|(d, _)| d == name);
                let column = mapped.map_or("", |i| {
                    columns[REQUIRED.len() + usize::from(def.reason_code.is_some()) + i].as_str()
                });
                (name.as_str(), column)
            })
            .collect(),
        on_time_window_days: params.on_time_window_days,
        in_full_tolerance: params.in_full_tolerance,
    };
    // Rows the line path would refuse, named by their keys (at most five of them).
    let checks = [
        (
            foreign::duplicates(dialect, relation, &p, window),
            "keys are in the window more than once",
        ),
        (
            foreign::violations(dialect, relation, &p, window),
            "rows due in the window are not valid lines (an empty field, a quantity below 1, \
             above 10^9 or not whole, a line number below 1)",
        ),
    ];
    for (sql, what) in checks {
        let (found, _) = fetch(def, sql, 2, 5).await?;
        if !found.is_empty() {
            let named: Vec<String> = found
                .iter()
                .map(|r| {
                    let v = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                    format!("order_id '{}' line {}", v(0), v(1))
                })
                .collect();
            return Err(format!(
                "{what}, such as {} — nothing was imported",
                named.join(", ")
            ));
        }
    }
    let (rows, bytes) = fetch(
        def,
        foreign::aggregate(dialect, relation, &p, window),
        14,
        usize::MAX,
    )
    .await?;
    // Keyed as the store keys them: members the source grouped apart (trailing tabs, say)
    // that read the same here are one.
    let mut merged: std::collections::BTreeMap<(String, NaiveDate, String, String), Tally> =
        Default::default();
    let mut lines = 0i64;
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    for (n, r) in rows.iter().enumerate() {
        let v = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("").trim();
        let at = |m: String| format!("tally row {}: {m}", n + 1);
        let (site, day) = site_and_day(v(0), v(1), "due date", &mut names).map_err(at)?;
        // A reason code is cut to the longest field, as a line's is; other members over
        // it are refused, as a line's are.
        let member: String = if v(2) == "reason" {
            v(3).chars().take(MAX_FIELD).collect()
        } else {
            v(3).to_string()
        };
        if member.chars().count() > MAX_FIELD {
            return Err(at(format!(
                "'{}…' is longer than {MAX_FIELD} characters",
                member.chars().take(40).collect::<String>()
            )));
        }
        let mut counts = [0i64; 10];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = whole(v(4 + i))
                .parse()
                .map_err(|_| at(format!("'{}' is not a count", v(4 + i))))?;
        }
        let tally = Tally {
            counts: KpiCounts {
                lines: counts[0],
                otif_lines: counts[1],
                on_time_lines: counts[2],
                in_full_lines: counts[3],
                units_ordered: counts[4],
                units_delivered: counts[5],
                // Push-down is refused with catalogue KPIs (their counts need the lines).
                measures: Default::default(),
            },
            open_lines: counts[6],
            unreasoned_failures: counts[7],
            failed_cost_cents: counts[8],
            uncosted_failures: counts[9],
        };
        if v(2).is_empty() {
            lines += tally.counts.lines;
        }
        merged
            .entry((site, day, v(2).to_string(), member))
            .or_default()
            .add(&tally);
    }
    let rows = merged
        .into_iter()
        .map(|((site, day, dimension, member), tally)| PushedRow {
            site,
            day,
            dimension,
            member,
            tally,
        })
        .collect();
    Ok(Pushed {
        rows,
        bytes,
        lines,
        names,
    })
}

/// A catalogue KPI's counts as the source returns them: its window's rows of site, day,
/// numerator and denominator (and the members of its dimensions), as tallies with the
/// counts in the KPI's `slot` (rows of the same site, day and member add up). Counts are
/// whole numbers; a row that is not one is named.
pub async fn measures(def: &SourceDef, window: &str, slot: usize) -> Result<Pushed, String> {
    let (Some(dialect), Some(relation), Some(m)) = (
        def.kind.dialect(),
        def.relation.as_ref(),
        def.measure.as_ref(),
    ) else {
        return Err("the source is not fully configured".into());
    };
    let available = columns_of(def, relation, window).await?;
    let resolve = |wanted: &str, field: &str| {
        available
            .iter()
            .find(|a| a.as_str() == wanted)
            .or_else(|| {
                available
                    .iter()
                    .find(|a| a.to_lowercase() == wanted.to_lowercase())
            })
            .cloned()
            .ok_or_else(|| format!("'{wanted}' (for {field})"))
    };
    let mut wanted: Vec<(&str, &str)> = vec![
        (m.site.as_str(), "site"),
        (m.day.as_str(), "day"),
        (m.numerator.as_str(), "numerator"),
    ];
    if let Some(d) = &m.denominator {
        wanted.push((d, "denominator"));
    }
    wanted.extend(def.dimensions.iter().map(|(n, c)| (c.as_str(), n.as_str())));
    let (found, missing): (Vec<_>, Vec<_>) = wanted
        .iter()
        .map(|(c, f)| resolve(c, f))
        .partition(Result::is_ok);
    if !missing.is_empty() {
        let missing: Vec<String> = missing.into_iter().filter_map(Result::err).collect();
        return Err(format!(
            "{} has no column {}; its columns are {}",
            match relation {
                Relation::Table(t) => format!("table {t}"),
                Relation::Query(_) => "the query".into(),
            },
            missing.join(", "),
            available.join(", ")
        ));
    }
    let columns: Vec<String> = found.into_iter().filter_map(Result::ok).collect();
    let since = Since {
        column: columns[1].clone(),
        value: window.to_string(),
    };
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let width = refs.len();
    let sql = foreign::select(dialect, relation, &refs, &since, window);
    let dims_at = if m.denominator.is_some() { 4 } else { 3 };
    let mut merged: std::collections::BTreeMap<(String, NaiveDate, String, String), Tally> =
        Default::default();
    let mut names: std::collections::BTreeMap<String, String> = Default::default();
    let (read, bytes) = each_row(def, sql, width, |n, r| {
        let v = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("").trim();
        let at = |msg: String| format!("row {n}: {msg}");
        let (site, day) = site_and_day(v(0), v(1), "day", &mut names).map_err(at)?;
        let count = |i: usize, what: &str| -> Result<i64, String> {
            match whole(v(i)).parse::<i64>() {
                Ok(c) if c.abs() <= 1_000_000_000_000 => Ok(c),
                _ => Err(at(format!("{what} '{}' is not a whole number", v(i)))),
            }
        };
        let numerator = count(2, "numerator")?;
        let denominator = if m.denominator.is_some() {
            count(3, "denominator")?
        } else {
            1
        };
        let mut tally = Tally::default();
        if let Some(cell) = tally.counts.measures.get_mut(slot) {
            *cell = [numerator, denominator];
        }
        let mut add = |dimension: &str, member: String| {
            merged
                .entry((site.clone(), day, dimension.to_string(), member))
                .or_default()
                .add(&tally);
        };
        add("", String::new());
        for (i, (name, _)) in def.dimensions.iter().enumerate() {
            let member = v(dims_at + i);
            if member.chars().count() > MAX_FIELD {
                return Err(at(format!("{name} is longer than {MAX_FIELD} characters")));
            }
            add(name, member.to_string());
        }
        Ok(())
    })
    .await?;
    let read = read as i64;
    let rows = merged
        .into_iter()
        .map(|((site, day, dimension, member), tally)| PushedRow {
            site,
            day,
            dimension,
            member,
            tally,
        })
        .collect();
    Ok(Pushed {
        rows,
        bytes,
        lines: read,
        names,
    })
}

/// A tally row's site code and day (a push-down's or a KPI source's), keeping the name
/// of a site the source named otherwise than by a code.
fn site_and_day(
    site: &str,
    day: &str,
    day_is: &str,
    names: &mut std::collections::BTreeMap<String, String>,
) -> Result<(String, NaiveDate), String> {
    let (code, name) = site_code(site)?;
    if let Some(name) = name {
        names.entry(code.clone()).or_insert(name);
    }
    let day = crate::domain::period::parse_date(date_part(day))
        .ok_or_else(|| format!("{day_is} '{day}' is not a date"))?;
    Ok((code, day))
}

/// The source's columns resolved against what it has: each wanted column's own name
/// (exact, else without case), or the error naming those missing.
fn resolve_columns(
    def: &SourceDef,
    relation: &Relation,
    available: &[String],
) -> Result<Vec<String>, String> {
    let resolve = |wanted: &str| {
        available
            .iter()
            .find(|a| *a == wanted)
            .or_else(|| {
                available
                    .iter()
                    .find(|a| a.to_lowercase() == wanted.to_lowercase())
            })
            .cloned()
    };
    let mut wanted: Vec<(String, &str)> = REQUIRED
        .iter()
        .zip(&def.columns)
        .map(|(field, col)| (col.clone(), *field))
        .collect();
    // After the required columns, in this order (see `Extras`): the optional ones mapped,
    // then the watermark.
    for (column, field) in [
        (&def.reason_code, "reason_code"),
        (&def.site_name, "site_name"),
        (&def.region, "region"),
    ] {
        if let Some(c) = column {
            wanted.push((c.clone(), field));
        }
    }
    let attrs = def.attrs();
    for (name, column) in &attrs {
        wanted.push((column.clone(), name.as_str()));
    }
    if let Some(w) = &def.watermark {
        wanted.push((w.clone(), "the watermark"));
    }
    let mut columns = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for (col, field) in &wanted {
        match resolve(col) {
            Some(c) => columns.push(c),
            None => missing.push(format!("'{col}' (for {field})")),
        }
    }
    if missing.is_empty() {
        return Ok(columns);
    }
    let what = match relation {
        Relation::Table(t) => format!("table {t}"),
        Relation::Query(_) => "the query".into(),
    };
    Err(format!(
        "{what} has no column {}; its columns are {}",
        missing.join(", "),
        available.join(", ")
    ))
}

/// The `since` column under the source's own name for it.
fn resolved_since(since: &Since, available: &[String]) -> Since {
    let column = available
        .iter()
        .find(|a| a.to_lowercase() == since.column.to_lowercase())
        .cloned()
        .unwrap_or_else(|| since.column.clone());
    Since {
        column,
        value: since.value.clone(),
    }
}

/// The input of a database's rows arriving over `rx`, ending with an empty chunk.
fn database_input(
    def: &SourceDef,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    reader: tokio::task::JoinHandle<()>,
    width: usize,
) -> Input {
    let watermark = Arc::new(Mutex::new(None));
    let bytes: Arc<std::sync::atomic::AtomicU64> = Default::default();
    let rows = DatabaseRows {
        bytes: bytes.clone(),
        rx,
        buffered: VecDeque::new(),
        n: 0,
        extras: Extras::of(def),
        attr_names: def.attrs().into_iter().map(|(n, _)| n).collect(),
        watermark_at: def.watermark.as_ref().map(|_| width - 1),
        watermark: watermark.clone(),
        done: false,
    };
    Input {
        rows: Box::new(rows),
        watermark,
        bytes,
        reader: Some(AbortOnDrop(reader)),
        numbering: Numbering::Rows,
    }
}

type Chunk = Result<Vec<Vec<Option<String>>>, String>;

/// A database's rows as they arrive from its reader, validated one by one.
struct DatabaseRows {
    bytes: Arc<std::sync::atomic::AtomicU64>,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    buffered: VecDeque<Vec<Option<String>>>,
    n: u64,
    extras: Extras,
    /// The catalogue's dimensions and fields the row holds, from `extras.attrs` on.
    attr_names: Vec<String>,
    watermark_at: Option<usize>,
    watermark: Arc<Mutex<Option<String>>>,
    done: bool,
}

impl Iterator for DatabaseRows {
    type Item = InputRow;

    fn next(&mut self) -> Option<InputRow> {
        while self.buffered.is_empty() {
            if self.done {
                return None;
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Some(Ok(chunk)) => {
                    let bytes: u64 = chunk
                        .iter()
                        .flatten()
                        .map(|v| v.as_ref().map_or(0, |v| v.len() as u64))
                        .sum();
                    self.bytes
                        .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                    self.buffered.extend(chunk)
                }
                Some(Err(failure)) => {
                    self.done = true;
                    return Some(Err(failure));
                }
                None => {
                    self.done = true;
                    return Some(Err("the source's reader stopped".into()));
                }
            }
        }
        let values = self.buffered.pop_front()?;
        self.n += 1;
        if let Some(at) = self.watermark_at {
            if let Some(v) = values.get(at).cloned().flatten() {
                if let Ok(mut held) = self.watermark.lock() {
                    if held.as_deref().is_none_or(|h| later(&v, h)) {
                        *held = Some(v);
                    }
                }
            }
        }
        Some(Ok((
            self.n,
            line_of(&values, self.extras, &self.attr_names),
        )))
    }
}

/// Where a database row's optional values are: after the required ones, those mapped, in
/// the order reason code, site name, region, then the catalogue's dimensions and fields.
#[derive(Clone, Copy, Debug, Default)]
struct Extras {
    reason_code: Option<usize>,
    site_name: Option<usize>,
    region: Option<usize>,
    /// Where the catalogue's values start.
    attrs: usize,
}

impl Extras {
    fn of(def: &SourceDef) -> Extras {
        let mut next = REQUIRED.len();
        let mut at = |mapped: bool| {
            mapped.then(|| {
                next += 1;
                next - 1
            })
        };
        Extras {
            reason_code: at(def.reason_code.is_some()),
            site_name: at(def.site_name.is_some()),
            region: at(def.region.is_some()),
            attrs: next,
        }
    }
}

/// A database row (text values in [`REQUIRED`] order, then the optional ones) as an order
/// line. Database types render differently from a file's cells: a timestamp's time and a
/// numeric's zero fraction are dropped ("2026-11-02 14:00:00" is the date, "12.000" is 12).
fn line_of(
    values: &[Option<String>],
    extras: Extras,
    attr_names: &[String],
) -> Result<crate::domain::tally::OrderLine, String> {
    let text = |i: usize| {
        values
            .get(i)
            .and_then(|v| v.as_deref())
            .unwrap_or("")
            .trim()
    };
    let fields: [&str; REQUIRED.len()] = std::array::from_fn(|i| match REQUIRED[i] {
        "due_date" | "delivered_date" => date_part(text(i)),
        "line_no" | "ordered_qty" | "delivered_qty" => whole(text(i)),
        _ => text(i),
    });
    let attrs: Vec<(&str, &str)> = attr_names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), text(extras.attrs + i)))
        .collect();
    let optional = OptionalValues {
        reason_code: extras.reason_code.map(text),
        site_name: extras.site_name.map(text),
        region: extras.region.map(text),
        attrs: &attrs,
    };
    parse_values(&fields, optional).map_err(|m| {
        let order = text(0);
        if order.is_empty() {
            m
        } else {
            format!(
                "{m} (order_id '{}')",
                order.chars().take(60).collect::<String>()
            )
        }
    })
}

/// The date of a timestamp rendered as text ("2026-11-02 14:00:00+00", "…T14:00:00Z").
fn date_part(v: &str) -> &str {
    match v.get(10..11) {
        Some(" ") | Some("T") => &v[..10],
        _ => v,
    }
}

/// A whole number rendered with a zero fraction ("12.000") without it.
fn whole(v: &str) -> &str {
    match v.split_once('.') {
        Some((int, frac)) if !int.is_empty() && frac.chars().all(|c| c == '0') => int,
        _ => v,
    }
}

/// Whether watermark `a` is later than `b`: as numbers when both are, else as text (ISO
/// timestamps in one format order as text).
fn later(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

fn open_files(def: &SourceDef) -> Result<Input, String> {
    let Some((dir, pattern)) = &def.files else {
        return Err("the source is not fully configured".into());
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the folder {}: {}", dir.display(), e.kind()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .filter(|name| matches(pattern, name))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no file in {} matches {pattern}", dir.display()));
    }
    let columns: [&str; REQUIRED.len()] = std::array::from_fn(|i| def.columns[i].as_str());
    let attrs = def.attrs();
    let mut readers = Vec::with_capacity(names.len());
    for name in &names {
        let file = std::fs::File::open(dir.join(name))
            .map_err(|e| format!("cannot open {name}: {}", e.kind()))?;
        let reader = OrderReader::with_columns(
            std::io::BufReader::with_capacity(1 << 16, file),
            columns,
            OptionalColumns {
                reason_code: def.reason_code.as_deref(),
                site_name: def.site_name.as_deref(),
                region: def.region.as_deref(),
                attrs: &attrs,
            },
        )
        .map_err(|e| format!("{name} line {}: {}", e.line, e.message))?;
        readers.push(reader);
    }
    let rows = readers.into_iter().enumerate().flat_map(|(i, reader)| {
        reader.map(move |(line, row)| Ok(((i as u64) << FILE_SHIFT | line, row)))
    });
    Ok(Input {
        rows: Box::new(rows),
        watermark: Arc::new(Mutex::new(None)),
        bytes: Default::default(),
        reader: None,
        numbering: Numbering::Files(names),
    })
}

/// A file name against a pattern with `*` (any run of characters) and `?` (one).
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard match with one backtrack point (the last `*`).
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_values_read_like_file_cells() {
        assert_eq!(date_part("2026-11-02 14:00:00+00"), "2026-11-02");
        assert_eq!(date_part("2026-11-02T14:00:00Z"), "2026-11-02");
        assert_eq!(date_part("2026-11-02"), "2026-11-02");
        assert_eq!(date_part("2026-11-0"), "2026-11-0");
        assert_eq!(whole("12.000"), "12");
        assert_eq!(whole("12.5"), "12.5");
        assert_eq!(whole(".0"), ".0");
        assert!(later("10", "9") && !later("9", "10"));
        assert!(later("2026-11-02 10:00:01", "2026-11-02 10:00:00"));
        let row = |qty: &str| -> Vec<Option<String>> {
            [
                "SO-1",
                "1",
                "dal",
                "Acme",
                "Zephyr",
                "SKU1",
                "Food",
                qty,
                "10.00",
                "2026-11-02 00:00:00",
                "",
                "",
            ]
            .iter()
            .map(|v| (!v.is_empty()).then(|| v.to_string()))
            .collect()
        };
        let extras = Extras {
            reason_code: Some(REQUIRED.len()),
            ..Extras::default()
        };
        let line = line_of(&row("12"), extras, &[]).unwrap();
        assert_eq!(
            (line.fact.site.as_str(), line.fact.ordered_qty),
            ("DAL", 12)
        );
        assert_eq!(line.fact.delivered_date, None);
        assert_eq!(
            line_of(&row("twelve"), extras, &[]).unwrap_err(),
            "ordered_qty 'twelve' is not a whole number (order_id 'SO-1')"
        );
    }

    #[test]
    fn file_patterns_and_numbering() {
        assert!(matches("*.csv", "orders-1.csv"));
        assert!(matches("orders-?.csv", "orders-1.csv"));
        assert!(!matches("*.csv", "orders.csv.tmp"));
        assert!(matches("orders.csv", "orders.csv"));
        assert!(matches("a*b*c", "aXbYbZc"));
        let files = Numbering::Files(vec!["a.csv".into(), "b.csv".into()]);
        assert_eq!(files.name(1 << FILE_SHIFT | 7), "b.csv line 7");
        assert_eq!(Numbering::Rows.name(3), "row 3");
    }
}
