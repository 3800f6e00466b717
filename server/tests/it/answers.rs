//! The built-in analyst answers drill-down questions: each kind of question gets its own
//! answer from the pack and the look-ups Opsight makes (the metric store, the order
//! lines, the last insight), follow-ups keep their context, questions outside the data are
//! refused plainly, and every figure and name of every answer is supported by the evidence.

use crate::common::{spawn_app, TestApp};
use app::domain::kpi::Metric;
use app::dto::TurnView;

/// Asks in a conversation (a new one when `conversation` is `None`) and checks what every
/// answer must be: answered (what streamed, when the turn was still live, is the answer),
/// and with no claim the evidence does not support.
async fn ask(app: &TestApp, conversation: Option<&str>, question: &str) -> (String, TurnView) {
    let (id, deltas, turn) = app.ask("DAL", "otif", conversation, question).await;
    assert_eq!(turn.status, "ok", "{question}: {turn:?}");
    // The built-in analyst answers in milliseconds: a turn already finished when the
    // events are read comes as its final answer alone.
    if !deltas.is_empty() {
        assert_eq!(
            deltas.concat().trim_end(),
            turn.answer.trim_end(),
            "{question}"
        );
    }
    assert!(
        !turn.claims.is_empty(),
        "{question}: the answer's claims were read"
    );
    let bad: Vec<_> = turn.claims.iter().filter(|c| !c.supported).collect();
    assert!(
        bad.is_empty(),
        "{question}: unsupported claims {bad:?}\n{}",
        turn.answer
    );
    (id, turn)
}

#[tokio::test]
async fn each_kind_of_question_gets_its_own_answer() {
    let app = spawn_app(20_000, None).await;
    let pack = app::ssr::cards::evidence::load(
        app.state.db(),
        &app::ssr::store::rules::load(app.state.db()).await.unwrap(),
        "DAL",
        Metric::OTIF,
        crate::common::as_of(),
    )
    .await
    .unwrap();

    let (c, why) = ask(&app, None, "Why is OTIF down at Dallas?").await;
    let insight = why.insight.expect("a diagnosis carries the contract");
    assert_eq!(insight.root_causes[0].member, "RoadRunner Freight");

    let (_, carriers) = ask(&app, Some(&c), "Which carriers are hit hardest?").await;
    let first = carriers.answer.lines().nth(1).unwrap_or_default();
    assert!(
        carriers
            .answer
            .starts_with("The carrier members that pulled OTIF the wrong way most at Dallas DC")
            && first.starts_with("- carrier RoadRunner Freight:"),
        "{}",
        carriers.answer
    );
    assert!(carriers.insight.is_none(), "not a diagnosis");

    let (_, month) = ask(&app, Some(&c), "How does this compare with last month?").await;
    assert!(
        month
            .answer
            .contains("Against 2026-10 (2026-10-01 to 2026-10-31)"),
        "{}",
        month.answer
    );

    let (_, money) = ask(&app, Some(&c), "How much is this costing us?").await;
    assert!(
        money.answer.contains("No unit costs are loaded"),
        "{}",
        money.answer
    );

    let (_, actions) = ask(&app, Some(&c), "What should we do, and who owns it?").await;
    assert!(actions.answer.contains("— owner: "), "{}", actions.answer);
    assert_ne!(actions.answer, why.answer);

    let (_, data) = ask(&app, Some(&c), "Is the data complete?").await;
    assert!(
        data.answer.contains(&format!(
            "{} lines were due at Dallas DC",
            pack.data_checks.lines_due
        )),
        "{}",
        data.answer
    );
    assert!(
        data.answer.contains("No data check flags this period"),
        "{}",
        data.answer
    );

    // The late lines, counted independently in SQL (the default rules: on time by the
    // due date, in full at the ordered quantity).
    let (_, lines) = ask(
        &app,
        Some(&c),
        "Show me the late lines for RoadRunner Freight",
    )
    .await;
    let count = |failing: &str| {
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM order_lines WHERE site = 'DAL' \
             AND carrier = 'RoadRunner Freight' AND due_date >= $1 AND due_date <= $2{failing}"
        );
        let (from, to) = (pack.period.start.clone(), pack.period.end.clone());
        let db = app.state.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(from)
                .bind(to)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let all = count("").await;
    let failing = count(
        " AND (delivered_date IS NULL OR delivered_date > due_date OR delivered_qty < ordered_qty)",
    )
    .await;
    assert!(failing > 5, "the planted carrier has failures: {failing}");
    assert!(
        lines.answer.starts_with(&format!(
            "{failing} of {all} lines due at Dallas DC (carrier = RoadRunner Freight)"
        )),
        "{}",
        lines.answer
    );
    let listed: Vec<&str> = lines
        .answer
        .lines()
        .filter(|l| l.starts_with("- order "))
        .collect();
    assert_eq!(listed.len(), 15.min(failing as usize));
    assert!(listed.iter().all(|l| l.contains("RoadRunner Freight")));

    // Nothing to compare with before a refresh; the card's insight afterwards.
    let (_, none) = ask(&app, Some(&c), "What changed since the last insight?").await;
    assert!(
        none.answer.contains("no earlier insight"),
        "{}",
        none.answer
    );
    assert_eq!(app.refresh("DAL", "otif").await.status(), 200);
    let (_, since) = ask(&app, Some(&c), "What changed since the last insight?").await;
    assert!(
        since.answer.starts_with("The last insight ("),
        "{}",
        since.answer
    );
    assert!(
        since
            .answer
            .contains("Causes still named: carrier RoadRunner Freight"),
        "{}",
        since.answer
    );

    // The analyst's route streams the lines of an answer as it composes them: the request
    // a turn sent, asked again with "stream": true.
    let lineage: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", lines.id))
        .await
        .json()
        .await
        .unwrap();
    let mut request: serde_json::Value = serde_json::from_str(&lineage.request_json).unwrap();
    request["stream"] = serde_json::json!(true);
    let sse = app
        .anon
        .post(format!("{}/agent/invocations", app.base))
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deltas: Vec<String> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(deltas.len() > 3, "one event per line: {sse}");
    assert_eq!(deltas.concat(), lines.answer);
    assert!(sse.trim_end().ends_with("data: [DONE]"));

    let (_, outside) = ask(&app, Some(&c), "What will the weather be on Friday?").await;
    assert!(
        outside
            .answer
            .starts_with("That is outside what this data can answer"),
        "{}",
        outside.answer
    );
    assert!(outside.insight.is_none());

    // Every answer differs from the others.
    let conversation: app::dto::ConversationView = app
        .get(&format!("/api/v1/conversations/{c}"))
        .await
        .json()
        .await
        .unwrap();
    let mut answers: Vec<&str> = conversation
        .turns
        .iter()
        .map(|t| t.answer.as_str())
        .collect();
    answers.sort();
    answers.dedup();
    assert_eq!(answers.len(), conversation.turns.len());
}

#[tokio::test]
async fn follow_ups_keep_the_question_and_move_it() {
    let app = spawn_app(20_000, None).await;
    let (c, dallas) = ask(&app, None, "Which customers are hit hardest?").await;
    assert!(
        dallas.answer.starts_with("The customer members"),
        "{}",
        dallas.answer
    );
    assert!(dallas.answer.contains("at Dallas DC"));
    // "and for Atlanta?": the same question, at Atlanta, with Atlanta's pack.
    let (_, atlanta) = ask(&app, Some(&c), "and for Atlanta?").await;
    assert!(
        atlanta.answer.starts_with("The customer members")
            && atlanta.answer.contains("at Atlanta DC"),
        "{}",
        atlanta.answer
    );
    // The next question stays at Atlanta: the diagnosis of Atlanta's pack.
    let (_, why) = ask(&app, Some(&c), "why?").await;
    let insight = why.insight.expect("a diagnosis");
    assert!(insight.headline.contains("at Atlanta DC"), "{insight:?}");
    // The lineage of a turn counts its claims.
    let lineage: serde_json::Value = app
        .get(&format!("/api/v1/insights/{}/lineage", why.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lineage["claims_unsupported"], 0);
    assert!(lineage["claims_checked"].as_i64().unwrap() > 3, "{lineage}");
    assert!(lineage["request_json"]
        .as_str()
        .unwrap()
        .contains("\"lookups\""));
}
