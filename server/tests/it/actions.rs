//! Closing the loop on next actions: the lifecycle through the API (with its refusals),
//! the card showing what was done, the recovery check, and dismiss reasons and "not
//! useful" feedback reaching the agent's next request for the same card (the built-in
//! analyst then stops suggesting the dismissed action).

use crate::common::{spawn_app, TestApp};
use app::domain::actions::ActionView;
use app::domain::kpi::Metric;
use app::dto::InsightView;
use serde_json::json;

async fn act(
    app: &TestApp,
    insight: &str,
    position: i64,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = app
        .post_json(
            &format!("/api/v1/insights/{insight}/actions/{position}"),
            &body,
        )
        .await;
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn actions_move_through_their_lifecycle_and_feedback_changes_the_next_answer() {
    let app = spawn_app(60_000, None).await;
    let first: InsightView = app.refresh("DAL", "otif").await.json().await.unwrap();
    let actions = first.insight.as_ref().unwrap().next_actions.clone();
    assert!(actions.len() >= 2, "{actions:?}");

    // Refusals, each with a clear message.
    for (position, body, status, says) in [
        (0, json!({"state": "assigned"}), 400, "assignee"),
        (
            0,
            json!({"state": "dismissed", "reason": "  "}),
            400,
            "reason",
        ),
        (0, json!({"state": "finished"}), 400, "unknown state"),
        (99, json!({"state": "done"}), 404, "no next action 99"),
    ] {
        let (s, e) = act(&app, &first.id, position, body).await;
        assert_eq!(s, status);
        assert!(e["error"].as_str().unwrap().contains(says), "{e}");
    }
    let (s, _) = act(&app, "ins_nope", 0, json!({"state": "done"})).await;
    assert_eq!(s, 404);

    // Acknowledge, assign, then dismiss action 0 with a reason.
    let (s, v) = act(&app, &first.id, 0, json!({"state": "acknowledged"})).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("acknowledged")));
    let (_, v) = act(
        &app,
        &first.id,
        0,
        json!({"state": "assigned", "assignee": "Ana Ruiz"}),
    )
    .await;
    assert_eq!(v["assignee"], "Ana Ruiz");
    const WHY: &str = "We already moved those lanes last month";
    let (_, v) = act(
        &app,
        &first.id,
        0,
        json!({"state": "dismissed", "reason": WHY}),
    )
    .await;
    assert_eq!(
        (v["state"].as_str(), v["reason"].as_str()),
        (Some("dismissed"), Some(WHY))
    );
    let (s, e) = act(&app, &first.id, 0, json!({"state": "done"})).await;
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("already dismissed"));

    // Action 1 done today: too early to tell whether OTIF recovered.
    let (_, v) = act(&app, &first.id, 1, json!({"state": "done"})).await;
    let done: ActionView = serde_json::from_value(v).unwrap();
    assert_eq!(done.done_on.as_deref(), Some(crate::common::AS_OF));
    let o = done.outcome.expect("a done action has an outcome");
    assert_eq!(o.recovered, None);
    assert!(o.summary.contains("too early"), "{}", o.summary);

    // The card shows both.
    let card = app.card("DAL", Metric::OTIF).await;
    let shown = card.insight.unwrap().actions;
    assert_eq!(
        shown.iter().map(|a| a.state.as_str()).collect::<Vec<_>>(),
        ["dismissed", "done"]
    );
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains(&format!("dismissed: {WHY}")),
        "the overview shows the dismissal"
    );

    // Thumbs down with a reason, then a new refresh: the agent gets both.
    let r = app
        .post_json(
            &format!("/api/v1/insights/{}/feedback", first.id),
            &json!({"helpful": false, "reason": "Carrier data is a week late"}),
        )
        .await;
    assert!(r.status().is_success());
    let second: InsightView = app.refresh("DAL", "otif").await.json().await.unwrap();
    let lineage: app::dto::Lineage = app
        .get(&format!("/api/v1/insights/{}/lineage", second.id))
        .await
        .json()
        .await
        .unwrap();
    let request: serde_json::Value = serde_json::from_str(&lineage.request_json).unwrap();
    let feedback = &request["custom_inputs"]["feedback"];
    assert_eq!(
        feedback["dismissed_actions"][0]["action"],
        actions[0].action.as_str()
    );
    assert_eq!(feedback["dismissed_actions"][0]["reason"], WHY);
    assert_eq!(
        feedback["not_useful"][0]["reason"],
        "Carrier data is a week late"
    );
    assert!(
        lineage
            .request_json
            .contains("was dismissed: We already moved those lanes"),
        "the user message carries it too"
    );
    // The analyst no longer suggests the dismissed action, and says why.
    let next = second.insight.unwrap().next_actions;
    assert!(
        next.iter().all(|a| a.action != actions[0].action),
        "{next:?}"
    );
    assert!(
        second.narrative.contains("Not suggested again"),
        "{}",
        second.narrative
    );
}
