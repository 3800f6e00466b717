//! Reading a source: its rows as order lines, for [`import_lines`]
//! (crate::ssr::data::import::import_lines), numbered as the source numbers them.

use super::def::{SourceDef, SourceKind};
use crate::ssr::data::import::{parse_values, InputRow, OrderReader, REQUIRED};
use crate::ssr::store::foreign::{self, Dialect, Relation, Since};
use chrono::NaiveDate;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows sent from the source's reader at a time.
const CHUNK: usize = 1_000;
/// Chunks the reader may be ahead of the import.
const CHUNKS_AHEAD: usize = 8;
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

/// An opened source: its rows, the highest watermark value they carried (known once they
/// are read), the task reading a database (aborted when the import stops early).
pub struct Input {
    pub rows: Box<dyn Iterator<Item = InputRow> + Send>,
    pub watermark: Arc<Mutex<Option<String>>>,
    pub reader: Option<tokio::task::JoinHandle<()>>,
    pub numbering: Numbering,
}

/// Opens a source: connects (or lists its files) and checks the mapping against its
/// columns, so a missing column fails before anything is written.
pub async fn open(def: &SourceDef, since: &Since, window: &str) -> Result<Input, String> {
    match def.kind {
        SourceKind::Csv => open_files(def),
        SourceKind::Postgres | SourceKind::Mysql => open_database(def, since, window).await,
        SourceKind::Databricks => open_databricks(def, since, window).await,
    }
}

async fn open_database(def: &SourceDef, since: &Since, window: &str) -> Result<Input, String> {
    let (Some(dialect), Some(url), Some(relation)) =
        (def.kind.dialect(), def.url.as_ref(), def.relation.as_ref())
    else {
        return Err("the source is not fully configured".into());
    };
    let connect = Duration::from_secs(15);
    let probe = foreign::probe(dialect, relation, window);
    let available = foreign::columns(dialect, url.expose(), &probe, connect)
        .await
        .map_err(|e| e.0)?;
    let mut conn = foreign::connect(url.expose(), connect)
        .await
        .map_err(|e| e.0)?;
    let columns = resolve_columns(def, relation, &available)?;
    let since = resolved_since(since, &available);
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let sql = foreign::select(dialect, relation, &refs, &since, window);
    let width = columns.len();
    let idle = (def.timeout / 10).max(Duration::from_secs(10));
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let reader = tokio::spawn(async move {
        match foreign::stream(&mut conn, &sql, width, CHUNK, idle, &tx).await {
            // An empty chunk marks the end: a reader that stops without one failed.
            Ok(()) => {
                let _ = tx.send(Ok(Vec::new())).await;
            }
            Err(e) => {
                let _ = tx.send(Err(e.0)).await;
            }
        }
    });
    Ok(database_input(def, rx, reader, width))
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
    if let Some(r) = &def.reason_code {
        wanted.push((r.clone(), "reason_code"));
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

/// A Databricks warehouse's rows: the mapping checked on a statement that reads no row,
/// then the lines fetched chunk by chunk (external links) by a task feeding the import.
async fn open_databricks(def: &SourceDef, since: &Since, window: &str) -> Result<Input, String> {
    use super::databricks::{Client, Disposition};
    let (Some(ws), Some(relation)) = (def.workspace.as_ref(), def.relation.as_ref()) else {
        return Err("the source is not fully configured".into());
    };
    let mut client = Client::sign_in(ws, def.timeout).await?;
    let probe = foreign::probe(Dialect::Databricks, relation, window);
    let answer = client.execute(&probe, Disposition::Inline).await?;
    let available = Client::columns(&answer);
    let columns = resolve_columns(def, relation, &available)?;
    let since = resolved_since(since, &available);
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let sql = foreign::select(Dialect::Databricks, relation, &refs, &since, window);
    let width = columns.len();
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    let reader = tokio::spawn(async move {
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
        // An empty chunk marks the end: a reader that stops without one failed.
        match read.await {
            Ok(()) => {
                let _ = tx.send(Ok(Vec::new())).await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Ok(database_input(def, rx, reader, width))
}

/// The input of a database's rows arriving over `rx`, ending with an empty chunk.
fn database_input(
    def: &SourceDef,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    reader: tokio::task::JoinHandle<()>,
    width: usize,
) -> Input {
    let watermark = Arc::new(Mutex::new(None));
    let rows = DatabaseRows {
        rx,
        buffered: VecDeque::new(),
        n: 0,
        reason: def.reason_code.is_some(),
        watermark_at: def.watermark.as_ref().map(|_| width - 1),
        watermark: watermark.clone(),
        done: false,
    };
    Input {
        rows: Box::new(rows),
        watermark,
        reader: Some(reader),
        numbering: Numbering::Rows,
    }
}

type Chunk = Result<Vec<Vec<Option<String>>>, String>;

/// A database's rows as they arrive from its reader, validated one by one.
struct DatabaseRows {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    buffered: VecDeque<Vec<Option<String>>>,
    n: u64,
    reason: bool,
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
                Some(Ok(chunk)) => self.buffered.extend(chunk),
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
        Some(Ok((self.n, line_of(&values, self.reason))))
    }
}

/// A database row (text values in [`REQUIRED`] order, then the reason code) as an order
/// line. Database types render differently from a file's cells: a timestamp's time and a
/// numeric's zero fraction are dropped ("2026-11-02 14:00:00" is the date, "12.000" is 12).
fn line_of(
    values: &[Option<String>],
    with_reason: bool,
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
    let reason = with_reason.then(|| text(REQUIRED.len()));
    parse_values(&fields, reason).map_err(|m| {
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
    let mut readers = Vec::with_capacity(names.len());
    for name in &names {
        let file = std::fs::File::open(dir.join(name))
            .map_err(|e| format!("cannot open {name}: {}", e.kind()))?;
        let reader = OrderReader::with_columns(
            std::io::BufReader::with_capacity(1 << 16, file),
            columns,
            def.reason_code.as_deref(),
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
        let line = line_of(&row("12"), true).unwrap();
        assert_eq!(
            (line.fact.site.as_str(), line.fact.ordered_qty),
            ("DAL", 12)
        );
        assert_eq!(line.fact.delivered_date, None);
        assert_eq!(
            line_of(&row("twelve"), true).unwrap_err(),
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
