//! The built-in analyst answers drill-down questions: each kind of question gets its own
//! answer from the pack and the look-ups Opsight makes (the metric store, the order
//! lines, the last insight), follow-ups keep their context, questions outside the data are
//! refused plainly, and every figure and name of every answer is supported by the evidence.

use crate::common::{spawn_app, TestApp};
use app::domain::kpi::Metric;
use app::dto::TurnView;

/// Asks in a conversation (a new one when `conversation` is `None`) and checks what every
/// answer must be: answered, streamed, and with no claim the evidence does not support.
async fn ask(app: &TestApp, conversation: Option<&str>, question: &str) -> (String, TurnView) {
    let (id, deltas, turn) = app.ask("DAL", "otif", conversation, question).await;
    assert_eq!(turn.status, "ok", "{question}: {turn:?}");
    assert_eq!(
        deltas.concat().trim_end(),
        turn.answer.trim_end(),
        "{question}"
    );
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

    // The late lines, counted against the pack's own figures for the carrier.
    let (_, lines) = ask(
        &app,
        Some(&c),
        "Show me the late lines for RoadRunner Freight",
    )
    .await;
    let rr = pack.segment("carrier", "RoadRunner Freight").unwrap();
    let failing =
        rr.denominator - (rr.value.unwrap() * rr.denominator as f64 / 100.0).round() as i64;
    assert!(
        lines.answer.starts_with(&format!(
            "{failing} of {} lines due at Dallas DC (carrier = RoadRunner Freight)",
            rr.denominator
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
