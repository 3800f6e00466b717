//! Next actions after the insight: their lifecycle, and whether the KPI recovered after one
//! was done.
//!
//! States: an untouched action is `open`; it can be `acknowledged`, `assigned` (to
//! someone), marked `done`, or `dismissed` with a reason. Done and dismissed are final.
//! Recovery compares the week the insight explained with the complete weeks after the week
//! the action was done in (up to [`WEEKS_AFTER`]).

use crate::domain::kpi::Metric;
use crate::domain::period::{fmt_date, Week};
use crate::domain::status::vocabulary;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Complete weeks after the action that the outcome averages.
pub const WEEKS_AFTER: usize = 2;

vocabulary! {
    /// A next action's state. Untouched actions are `open`; done and dismissed are final.
    ActionState {
        Open = "open",
        Acknowledged = "acknowledged",
        Assigned = "assigned",
        Done = "done",
        Dismissed = "dismissed",
    }
}

impl ActionState {
    pub fn is_final(self) -> bool {
        matches!(self, ActionState::Done | ActionState::Dismissed)
    }
}

/// An action's state as someone set it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionView {
    pub insight_id: String,
    pub position: i64,
    pub state: ActionState,
    pub assignee: Option<String>,
    pub reason: Option<String>,
    pub done_on: Option<String>,
    pub updated_at: Option<String>,
    /// For done actions: did the KPI recover afterwards?
    pub outcome: Option<Outcome>,
}

/// The KPI before and after a done action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    /// The value of the week the insight explained.
    pub before: Option<f64>,
    /// The mean of the complete weeks after the action's week (None: too early).
    pub after: Option<f64>,
    pub weeks_after: usize,
    pub change: Option<f64>,
    /// Improved by more than `min_change` points (or lines), or reached the target.
    pub recovered: Option<bool>,
    pub summary: String,
}

/// The state a change asks for, or why it is refused: an unknown or initial state, a
/// final one already reached, an assignment without an assignee, a dismissal without a
/// reason.
pub fn check_transition(
    from: ActionState,
    to: &str,
    assignee: Option<&str>,
    reason: Option<&str>,
) -> Result<ActionState, String> {
    let to = match ActionState::parse(to) {
        Ok(s) if s != ActionState::Open => s,
        _ => {
            return Err(format!(
                "unknown state '{to}'; use acknowledged, assigned, done or dismissed"
            ))
        }
    };
    if from.is_final() {
        return Err(format!("the action is already {from}"));
    }
    if to == ActionState::Assigned && assignee.is_none_or(|a| a.trim().is_empty()) {
        return Err("assigning needs an assignee".into());
    }
    if to == ActionState::Dismissed && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err("dismissing needs a reason (it is sent to the agent next time)".into());
    }
    Ok(to)
}

/// The outcome of an action done on `done_on`, from weekly values (`weeks`: (week, value)
/// in any order). `explained` is the week the insight explained; `today` bounds which
/// weeks are complete.
pub fn outcome(
    metric: Metric,
    explained: Week,
    done_on: NaiveDate,
    today: NaiveDate,
    weeks: &[(Week, Option<f64>)],
    target: Option<f64>,
    min_change: f64,
) -> Outcome {
    let value = |w: Week| weeks.iter().find(|(x, _)| *x == w).and_then(|(_, v)| *v);
    let before = value(explained);
    let first_after = Week::containing(done_on).next();
    let after: Vec<f64> = std::iter::successors(Some(first_after), |w| Some(w.next()))
        .take(WEEKS_AFTER)
        .filter(|w| w.end() < today)
        .filter_map(value)
        .collect();
    let unit = match metric.change_unit() {
        "pp" => " pts".to_string(),
        other => format!(" {other}"),
    };
    if after.is_empty() {
        return Outcome {
            before,
            after: None,
            weeks_after: 0,
            change: None,
            recovered: None,
            summary: format!(
                "too early to tell: the first full week after the action ends {}",
                fmt_date(first_after.end())
            ),
        };
    }
    let mean = after.iter().sum::<f64>() / after.len() as f64;
    let change = before.map(|b| mean - b);
    // Recovered: moved the good way (up, or down when lower is better) by more than
    // noise, or back on the good side of the target.
    let recovered = change.map(|c| {
        metric.good(c) > min_change || target.is_some_and(|t| metric.good(mean - t) >= 0.0)
    });
    let summary = match (change, recovered) {
        (Some(c), Some(true)) => format!(
            "recovered: {mean:.1} over the {} week(s) after, {c:+.1}{unit} vs the week explained",
            after.len()
        ),
        (Some(c), _) => format!(
            "not recovered yet: {mean:.1} over the {} week(s) after, {c:+.1}{unit} vs the week explained",
            after.len()
        ),
        _ => format!("{mean:.1} over the {} week(s) after", after.len()),
    };
    Outcome {
        before,
        after: Some(mean),
        weeks_after: after.len(),
        change,
        recovered,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    fn week(d: &str) -> Week {
        Week::containing(parse_date(d).unwrap())
    }

    fn series() -> Vec<(Week, Option<f64>)> {
        // Explained week 2026-11-02: 80 %; after: 91, 93.
        vec![
            (week("2026-10-26"), Some(94.0)),
            (week("2026-11-02"), Some(80.0)),
            (week("2026-11-09"), Some(85.0)),
            (week("2026-11-16"), Some(91.0)),
            (week("2026-11-23"), Some(93.0)),
        ]
    }

    #[test]
    fn lifecycle_rules() {
        use ActionState::*;
        assert_eq!(
            check_transition(Open, "acknowledged", None, None),
            Ok(Acknowledged)
        );
        assert!(check_transition(Acknowledged, "assigned", Some("Ana"), None).is_ok());
        assert!(check_transition(Open, "assigned", None, None)
            .unwrap_err()
            .contains("assignee"));
        assert!(check_transition(Assigned, "dismissed", None, Some(" "))
            .unwrap_err()
            .contains("reason"));
        assert!(check_transition(Done, "dismissed", None, Some("x"))
            .unwrap_err()
            .contains("already done"));
        assert!(check_transition(Open, "finished", None, None).is_err());
        assert!(check_transition(Open, "open", None, None).is_err());
    }

    #[test]
    fn recovery_before_and_after() {
        // Done on Wednesday 2026-11-11: the weeks after are 2026-W47 and W48.
        let o = outcome(
            Metric::OTIF,
            week("2026-11-02"),
            parse_date("2026-11-11").unwrap(),
            parse_date("2026-12-01").unwrap(),
            &series(),
            Some(95.0),
            0.5,
        );
        assert_eq!(
            (o.before, o.after, o.weeks_after),
            (Some(80.0), Some(92.0), 2)
        );
        assert_eq!(o.change, Some(12.0));
        assert_eq!(o.recovered, Some(true));
        assert!(o.summary.starts_with("recovered: 92.0"), "{}", o.summary);
        // As of 2026-11-24 only W47 is complete.
        let o = outcome(
            Metric::OTIF,
            week("2026-11-02"),
            parse_date("2026-11-11").unwrap(),
            parse_date("2026-11-24").unwrap(),
            &series(),
            Some(95.0),
            0.5,
        );
        assert_eq!((o.after, o.weeks_after), (Some(91.0), 1));
        // Too early: done this week.
        let o = outcome(
            Metric::OTIF,
            week("2026-11-02"),
            parse_date("2026-11-18").unwrap(),
            parse_date("2026-11-21").unwrap(),
            &series(),
            Some(95.0),
            0.5,
        );
        assert_eq!(o.recovered, None);
        assert!(o.summary.contains("too early"), "{}", o.summary);
        // Not recovered: worse after.
        let flat = vec![
            (week("2026-11-02"), Some(80.0)),
            (week("2026-11-16"), Some(79.0)),
        ];
        let o = outcome(
            Metric::OTIF,
            week("2026-11-02"),
            parse_date("2026-11-11").unwrap(),
            parse_date("2026-11-24").unwrap(),
            &flat,
            Some(95.0),
            0.5,
        );
        assert_eq!(o.recovered, Some(false));
        assert!(o.summary.starts_with("not recovered yet"));
    }
}
