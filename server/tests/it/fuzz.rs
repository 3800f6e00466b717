//! Property tests (proptest) of the two parsers that take outside input: the CSV importer
//! and the agent-reply parser. Whatever the bytes, they return an answer or a clear error,
//! never panic; a file with one bad row names that row and imports nothing.

use app::domain::insight::{answer_from_json, answer_from_sse, insight_from_text, SseDecoder};
use app::ssr::data::import::{import_orders, parse_orders, ImportError};
use app::ssr::store::facts as db;
use proptest::prelude::*;
use serde_json::Value;

const HEADER: &str = "order_id,line_no,site,customer,carrier,sku,category,ordered_qty,delivered_qty,due_date,delivered_date,reason_code";

/// A valid row (line numbers make ids unique).
fn good_row(i: usize) -> String {
    format!(
        "SO-{i},1,DAL,MegaMart,RoadRunner Freight,BEV-{i},Beverages,10,{},2026-11-{:02},2026-11-{:02},",
        5 + i % 6,
        1 + i % 20,
        2 + i % 20
    )
}

/// Ways to spoil a row, each a value the importer must refuse.
fn spoil(row: &str, how: usize, junk: &str) -> String {
    let mut f: Vec<String> = row.split(',').map(str::to_string).collect();
    match how % 8 {
        0 => f[7] = format!("x{junk}"),        // ordered_qty not a number
        1 => f[8] = "-3".into(),               // negative quantity
        2 => f[9] = format!("2026-13-{junk}"), // impossible date
        3 => f[10] = "yesterday".into(),       // unreadable delivered date
        4 => f.truncate(5),                    // too few columns
        5 => f[2] = String::new(),             // empty site
        6 => f[0] = "O".repeat(500),           // a field over the length limit
        _ => f[7] = "0".into(),                // a line that orders nothing
    }
    f.join(",")
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("message"),
            Just("output_text"),
            Just("assistant"),
            Just("insight"),
            Just("headline"),
            Just("root_causes"),
            Just("next_actions"),
            Just("custom_outputs"),
            Just("response.output_item.done"),
            Just("response.output_text.delta"),
            Just("output"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let key = prop_oneof![
            Just("type".to_string()),
            Just("output".to_string()),
            Just("content".to_string()),
            Just("text".to_string()),
            Just("custom_outputs".to_string()),
            Just("insight".to_string()),
            Just("headline".to_string()),
            Just("root_causes".to_string()),
            Just("next_actions".to_string()),
            Just("item".to_string()),
            Just("delta".to_string()),
            Just("confidence".to_string()),
            Just("impact_pp".to_string()),
            Just("effect".to_string()),
            "[a-z_]{1,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Arbitrary bytes: rows or errors with line numbers inside the file, never a panic.
    #[test]
    fn the_csv_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let lines = bytes.iter().filter(|b| **b == b'\n' || **b == b'\r').count() as u64 + 2;
        match parse_orders(&bytes[..]) {
            Ok(rows) => prop_assert!(rows.len() as u64 <= lines),
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }

    /// Text that looks like a CSV: valid header, random cells.
    #[test]
    fn the_csv_parser_takes_any_cells(cells in prop::collection::vec(prop::collection::vec("[^\n\r]{0,12}", 12), 0..30)) {
        let file = std::iter::once(HEADER.to_string())
            .chain(cells.iter().map(|r| r.join(",")))
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(errors) = parse_orders(file.as_bytes()) {
            for e in errors {
                prop_assert!(e.line >= 2 && e.line <= cells.len() as u64 + 1, "line {}", e.line);
            }
        }
    }

    /// Agent replies: arbitrary JSON, arbitrary bytes, arbitrary SSE, cut anywhere.
    #[test]
    fn the_reply_parser_takes_any_json(v in arbitrary_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let _ = answer_from_json(&body);
        let wrapped = serde_json::json!({"object": "response", "output": [{"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": v.to_string()}]}], "custom_outputs": {"insight": v}});
        if let Ok(answer) = answer_from_json(&serde_json::to_vec(&wrapped).unwrap()) {
            if let Some(i) = answer.insight {
                prop_assert!(i.confidence.is_finite());
            }
        }
        let _ = insight_from_text(&format!("Here you go:\n```json\n{v}\n```"));
        let sse = format!("data: {v}\n\ndata: {}\n\ndata: [DONE]\n\n", serde_json::json!({"type": "response.output_item.done", "item": v}));
        let _ = answer_from_sse(&sse);
    }

    #[test]
    fn the_reply_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..800), cut in 0usize..800) {
        let _ = answer_from_json(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = answer_from_sse(&text);
        let _ = insight_from_text(&text);
        let mut decoder = SseDecoder::default();
        let cut = cut.min(bytes.len());
        let _ = decoder.push(&bytes[..cut]);
        let _ = decoder.push(&bytes[cut..]);
        let _ = decoder.finish();
    }
}

/// A file with one spoiled row among good ones: the error names exactly that row's line,
/// and the database is exactly as before (no partial import).
#[tokio::test]
async fn one_bad_row_names_its_line_and_imports_nothing() {
    let t = crate::common::test_db().await;
    let first: String = std::iter::once(HEADER.to_string())
        .chain((0..5).map(good_row))
        .collect::<Vec<_>>()
        .join("\n");
    import_orders(&t.db, std::io::Cursor::new(first.as_bytes().to_vec()))
        .await
        .unwrap();
    let before = db::count_lines(&t.db).await.unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        ..ProptestConfig::default()
    });
    let strategy = (
        1usize..60,
        any::<prop::sample::Index>(),
        0usize..8,
        "[0-9a-z]{0,3}",
    );
    let db = t.db.clone();
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        runner.run(&strategy, |(rows, at, how, junk)| {
            let bad = at.index(rows);
            let body: Vec<String> = (100..100 + rows)
                .enumerate()
                .map(|(i, n)| {
                    if i == bad {
                        spoil(&good_row(n), how, &junk)
                    } else {
                        good_row(n)
                    }
                })
                .collect();
            let file = std::iter::once(HEADER.to_string())
                .chain(body)
                .collect::<Vec<_>>()
                .join("\n");
            let (outcome, after) = handle.block_on(async {
                let outcome =
                    import_orders(&db, std::io::Cursor::new(file.as_bytes().to_vec())).await;
                (outcome, db::count_lines(&db).await.unwrap())
            });
            match outcome {
                Err(ImportError::Invalid(errors)) => {
                    // The header is line 1, so row `bad` is line bad + 2.
                    prop_assert_eq!(
                        errors.iter().map(|e| e.line).collect::<Vec<_>>(),
                        vec![bad as u64 + 2],
                        "{:?}",
                        errors
                    );
                }
                other => prop_assert!(
                    false,
                    "spoil {} was accepted: {:?}",
                    how % 8,
                    other.map(|r| r.lines)
                ),
            }
            prop_assert_eq!(after, before, "nothing imported");
            Ok(())
        })
    })
    .await
    .unwrap();
    if let Err(e) = result {
        panic!("{e}");
    }
}
