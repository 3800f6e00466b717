//! The grounding check: every root cause an agent names is checked against the evidence
//! pack it was given. A cause is supported when its dimension and member exist in the
//! pack, its sign matches the data and its impact is within tolerance of the segment's
//! contribution; a `data` cause is supported when the data checks flagged the data.
//!
//! Tolerance: |claimed − actual| ≤ max(0.5 points, 30% of |actual|), against the effect's
//! own part (rate or mix) or the segment's total (agents often quote the total). Points are
//! percentage points for ratio KPIs and lines for volume KPIs.

use super::evidence::{EvidencePack, Segment};
use super::insight::{Effect, Insight, RootCause};
use serde::{Deserialize, Serialize};

/// Absolute part of the tolerance, in points.
pub const ABS_TOLERANCE: f64 = 0.5;
/// Relative part of the tolerance, as a share of |actual|.
pub const REL_TOLERANCE: f64 = 0.3;
/// Below this size (points) a contribution has no meaningful sign.
const SIGN_FLOOR: f64 = 0.05;

/// The verdict on one root cause, in the order of the insight's causes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Grounding {
    pub dimension: String,
    pub member: String,
    pub supported: bool,
    /// What the data says, for the card: "rate −3.20 pp, total −3.40 pp in the data;
    /// claimed −3.10 pp", or why the cause is not supported.
    pub note: String,
    /// The matching contribution from the pack, when the member exists.
    pub actual: Option<f64>,
}

/// Whether a reply may replace the last good insight: not when it names causes and none
/// of them is supported by the data.
pub fn all_unsupported(checks: &[Grounding]) -> bool {
    !checks.is_empty() && checks.iter().all(|g| !g.supported)
}

/// Checks every cause of `insight` against `pack`.
pub fn check(pack: &EvidencePack, insight: &Insight) -> Vec<Grounding> {
    insight
        .root_causes
        .iter()
        .map(|c| check_cause(pack, c))
        .collect()
}

fn unit(pack: &EvidencePack) -> &'static str {
    pack.scope.metric.change_unit()
}

fn within(claimed: f64, actual: f64) -> bool {
    (claimed - actual).abs() <= ABS_TOLERANCE.max(REL_TOLERANCE * actual.abs())
}

fn same_sign(claimed: f64, actual: f64) -> bool {
    actual.abs() < SIGN_FLOOR || claimed.abs() < SIGN_FLOOR || claimed.signum() == actual.signum()
}

fn find<'a>(pack: &'a EvidencePack, dimension: &str, member: &str) -> Result<&'a Segment, String> {
    let dim = pack
        .contributions
        .iter()
        .find(|d| d.dimension.eq_ignore_ascii_case(dimension.trim()))
        .ok_or_else(|| {
            format!(
                "the evidence has no dimension '{dimension}' (it has {})",
                pack.contributions
                    .iter()
                    .map(|d| d.dimension.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    dim.segments
        .iter()
        .find(|s| s.member.eq_ignore_ascii_case(member.trim()))
        .ok_or_else(|| format!("no {dimension} named '{member}' in the evidence"))
}

impl Grounding {
    /// The verdict on `cause`.
    fn of(cause: &RootCause, supported: bool, note: String, actual: Option<f64>) -> Grounding {
        Grounding {
            dimension: cause.dimension.clone(),
            member: cause.member.clone(),
            supported,
            note,
            actual,
        }
    }
}

fn check_cause(pack: &EvidencePack, cause: &RootCause) -> Grounding {
    let u = unit(pack);
    let verdict = |supported: bool, note: String, actual: Option<f64>| {
        Grounding::of(cause, supported, note, actual)
    };
    if cause.effect == Effect::Data || cause.dimension.eq_ignore_ascii_case("data") {
        let checks = &pack.data_checks;
        return if checks.suspect() {
            verdict(
                true,
                format!("data checks flag {}", checks.suspect_reasons.join("; ")),
                None,
            )
        } else {
            verdict(
                false,
                format!(
                    "the data checks found no problem ({} of {} lines due without a delivered date)",
                    checks.past_due_open, checks.lines_due
                ),
                None,
            )
        };
    }
    if cause.effect == Effect::Process && !pack.data_checks.suspect() {
        return check_process(pack, cause);
    }
    // Suspect data explains nothing else: a carrier, a customer or a process named over
    // a period the data checks flag is not supported, whoever names it.
    if pack.data_checks.suspect() {
        return verdict(
            false,
            format!(
                "not supported: the data checks flag this period ({})",
                pack.data_checks.suspect_reasons.join("; ")
            ),
            None,
        );
    }
    let seg = match find(pack, &cause.dimension, &cause.member) {
        Ok(s) => s,
        Err(note) => return verdict(false, note, None),
    };
    let part = match cause.effect {
        Effect::Mix => seg.mix,
        _ => seg.rate,
    };
    let effect = if cause.effect == Effect::Mix {
        "mix"
    } else {
        "rate"
    };
    let numbers = format!(
        "{effect} {:+.2} {u}, total {:+.2} {u} in the data; claimed {:+.2} {u}",
        part, seg.total, cause.impact_pp
    );
    let claimed = cause.impact_pp;
    if !same_sign(claimed, part) && !same_sign(claimed, seg.total) {
        return verdict(false, format!("wrong sign ({numbers})"), Some(part));
    }
    if within(claimed, part) {
        return verdict(true, numbers, Some(part));
    }
    if within(claimed, seg.total) {
        return verdict(true, numbers, Some(seg.total));
    }
    verdict(
        false,
        format!("impact off by more than the tolerance ({numbers})"),
        Some(part),
    )
}

/// A process cause: the reason code's part of the change in the pack's KPI tree.
fn check_process(pack: &EvidencePack, cause: &RootCause) -> Grounding {
    let u = unit(pack);
    let verdict = |supported: bool, note: String, actual: Option<f64>| {
        Grounding::of(cause, supported, note, actual)
    };
    let Some(tree) = &pack.tree_change else {
        return verdict(
            false,
            "this KPI has no failure tree to find a process in".into(),
            None,
        );
    };
    let Some(points) = tree.reason_points(&cause.member) else {
        return verdict(
            false,
            format!("no failure has the reason code '{}'", cause.member),
            None,
        );
    };
    let numbers = format!(
        "{:+.2} {u} in the KPI tree; claimed {:+.2} {u}",
        points, cause.impact_pp
    );
    if !same_sign(cause.impact_pp, points) {
        verdict(false, format!("wrong sign ({numbers})"), Some(points))
    } else if within(cause.impact_pp, points) {
        verdict(true, numbers, Some(points))
    } else {
        verdict(
            false,
            format!("impact off by more than the tolerance ({numbers})"),
            Some(points),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::analyst::analyse;
    use crate::domain::rules::sample_rules;

    fn pack() -> EvidencePack {
        crate::domain::evidence::late_carrier_pack()
    }

    fn insight(causes: Vec<RootCause>) -> Insight {
        Insight {
            headline: "h".into(),
            root_causes: causes,
            next_actions: vec![],
            confidence: 0.5,
        }
    }

    fn cause(dimension: &str, member: &str, effect: Effect, impact_pp: f64) -> RootCause {
        RootCause {
            dimension: dimension.into(),
            member: member.into(),
            effect,
            impact_pp,
            evidence: String::new(),
        }
    }

    #[test]
    fn the_builtin_analysts_causes_are_all_supported() {
        let p = pack();
        let (_, i) = analyse(&p, &sample_rules(), None);
        assert!(!i.root_causes.is_empty());
        let checks = check(&p, &i);
        assert!(checks.iter().all(|g| g.supported), "{checks:?}");
    }

    #[test]
    fn an_invented_carrier_wrong_sign_or_size_is_not_supported() {
        let p = pack();
        let rr = p.segment("carrier", "RoadRunner").unwrap().rate;
        assert!(rr < -5.0, "RoadRunner's rate effect is large: {rr}");
        let checks = check(
            &p,
            &insight(vec![
                cause("carrier", "SpeedyCargo", Effect::Rate, -10.0),
                cause("carrier", "roadrunner", Effect::Rate, -rr),
                cause("carrier", "RoadRunner", Effect::Rate, rr * 3.0),
                cause("warehouse", "A", Effect::Rate, -1.0),
                cause("carrier", "RoadRunner", Effect::Rate, rr + 0.3),
                cause("data", "missing delivered dates", Effect::Data, -2.0),
            ]),
        );
        let supported: Vec<bool> = checks.iter().map(|g| g.supported).collect();
        assert_eq!(supported, [false, false, false, false, true, false]);
        assert!(checks[0].note.contains("no carrier named 'SpeedyCargo'"));
        assert!(checks[1].note.contains("wrong sign"));
        assert!(checks[2].note.contains("tolerance"));
        assert!(checks[3].note.contains("no dimension 'warehouse'"));
        assert!(checks[5].note.contains("no problem"));
        assert!(!all_unsupported(&checks));
        assert!(all_unsupported(&checks[..4]));
        assert!(
            !all_unsupported(&[]),
            "no causes named is not a hallucination"
        );
    }

    #[test]
    fn on_suspect_data_only_data_causes_are_supported() {
        let mut p = pack();
        p.data_checks.suspect_reasons = vec!["no delivery recorded for 9 days".into()];
        let seg = p.top_segments()[0];
        let (dimension, member, total) = (seg.0.to_string(), seg.1.member.clone(), seg.1.total);
        let insight = Insight {
            headline: "h".into(),
            root_causes: vec![
                RootCause {
                    dimension,
                    member,
                    effect: Effect::Rate,
                    impact_pp: total,
                    evidence: String::new(),
                },
                RootCause {
                    dimension: "data".into(),
                    member: "missing delivered dates".into(),
                    effect: Effect::Data,
                    impact_pp: 0.0,
                    evidence: String::new(),
                },
            ],
            next_actions: vec![],
            confidence: 0.5,
        };
        let checks = check(&p, &insight);
        assert!(!checks[0].supported);
        assert!(checks[0]
            .note
            .starts_with("not supported: the data checks flag this period"));
        assert!(checks[1].supported, "{:?}", checks[1]);
    }
}
