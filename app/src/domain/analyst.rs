//! The built-in analyst: a deterministic agent that reads an evidence pack and the business
//! rules and returns a narrative plus the insight contract. It is served over the
//! ResponsesAgent protocol at `POST /agent/invocations` and is the reference implementation
//! of the contract.
//!
//! Its reasoning, in order:
//! 1. Data first: when the pack's data checks are suspect, it names the data problem and
//!    blames no one in operations.
//! 2. Noise: when the change is within noise it says so and names no cause.
//! 3. Otherwise the segments that explain at least [`MIN_EXPLAINED_SHARE`] of the change (in
//!    its direction) and, for rate causes, clearly more than their share of volume
//!    ([`MIN_CONCENTRATION`]), labelled `rate` or `mix` by their larger term, plus the largest
//!    material mix effect when none of them is one;
//! 4. Processes: a reason code whose points in the KPI tree explain a material part of the
//!    change the segments named leave unexplained (and are not one named segment's
//!    failures again) is a `process` cause; segments and processes are ranked together by
//!    points. Actions come from the playbooks for the failure reason that grew most and for
//!    the causes' dimensions and processes.
//!
//! Drill-down questions other than "why?" are answered by [`super::answer`].

use super::evidence::EvidencePack;
use super::insight::{Effect, Insight, NextAction, RootCause};
use super::kpi::{format_change, format_value, signed};
use super::rules::Rules;
use std::collections::BTreeMap;

/// A segment must explain this share of the total change to be named as a root cause.
pub const MIN_EXPLAINED_SHARE: f64 = 0.2;
/// A rate cause must explain this many times its share of volume (1.0 = no more than its
/// size would predict, i.e. a projection of a cause that lives in another dimension).
pub const MIN_CONCENTRATION: f64 = 1.5;
/// A mix effect must explain this share of the change to be named alongside rate causes.
pub const MIN_MIX_SHARE: f64 = 0.1;
/// At most this many root causes (plus one mix cause) and actions per insight.
pub const MAX_ITEMS: usize = 3;

/// A failure branch for people.
fn branch_words(branch: &str) -> &'static str {
    match branch {
        "late_only" => "late (in full)",
        "short_only" => "short (on time)",
        _ => "late and short",
    }
}

/// Analyses one pack. `question` is echoed into the narrative when given.
pub fn analyse(pack: &EvidencePack, rules: &Rules, question: Option<&str>) -> (String, Insight) {
    let metric = pack.scope.metric;
    let where_ = &pack.scope.site_name;
    let name = &pack.scope.metric_name;
    let fmt = |v| format_value(metric, v);
    let unit = metric.change_unit();
    let mut narrative = String::new();
    if let Some(q) = question.filter(|q| !q.trim().is_empty()) {
        narrative.push_str(&format!("Question: {}\n\n", q.trim()));
    }
    narrative.push_str(&format!(
        "{name} at {where_} was {} in {} against {} the week before ({}); target {}.\n",
        fmt(pack.value),
        pack.period.label,
        fmt(pack.previous_value),
        format_change(metric, pack.change),
        fmt(pack.target),
    ));

    let checks = &pack.data_checks;
    if checks.suspect() {
        let open_impact = if metric.is_percent() {
            -checks.past_due_open_share_pct
        } else {
            0.0
        };
        let headline = format!(
            "Data problem at {where_}: {} — fix the data before acting on {name}",
            checks.suspect_reasons[0]
        );
        narrative.push_str(&format!(
            "The data behind this number is suspect: {}. Until it is fixed the change cannot be \
             attributed to carriers, customers or the warehouse.\n",
            checks.suspect_reasons.join("; ")
        ));
        let mut root_causes = vec![];
        if checks.past_due_open > 0 {
            root_causes.push(RootCause {
                dimension: "data".into(),
                member: "missing delivered dates".into(),
                effect: Effect::Data,
                impact_pp: round2(open_impact),
                evidence: format!(
                    "{} of {} lines due have no delivered date ({:.1}%)",
                    checks.past_due_open, checks.lines_due, checks.past_due_open_share_pct
                ),
            });
        }
        if checks.failures_without_reason_share_pct > 0.0 && root_causes.is_empty() {
            root_causes.push(RootCause {
                dimension: "data".into(),
                member: "missing reason codes".into(),
                effect: Effect::Data,
                impact_pp: 0.0,
                evidence: format!(
                    "{} of {} failures have no reason code",
                    checks.failures_without_reason, checks.failures
                ),
            });
        }
        let next_actions = rules.playbook("data").map(action).into_iter().collect();
        return (
            narrative,
            Insight {
                headline,
                root_causes,
                next_actions,
                confidence: 0.7,
            },
        );
    }

    let Some(change) = pack.change else {
        let headline =
            format!("No {name} to compare at {where_}: no lines due in one of the weeks");
        narrative.push_str("There is nothing to explain yet.\n");
        return (
            narrative,
            Insight {
                headline,
                root_causes: vec![],
                next_actions: vec![],
                confidence: 0.9,
            },
        );
    };

    let reason_growth = grown_reason(pack);
    if !pack.noise.significant {
        let mut headline = format!(
            "{name} at {where_} {} ({}): within normal variation, no cause to report",
            fmt(pack.value),
            format_change(metric, pack.change)
        );
        narrative.push_str(&format!(
            "The change is within noise (standard error {:.2} {unit}), so no root cause is named.\n",
            pack.noise.standard_error
        ));
        let mut next_actions = vec![];
        // A gap on the wrong side of the target (below it, or above it when lower is
        // better).
        if let Some(gap) = pack.target_gap.filter(|g| metric.good(*g) < 0.0) {
            let side = if metric.higher_is_better() {
                "below"
            } else {
                "above"
            };
            headline = format!(
                "{name} at {where_} steady at {} but {} {unit} {side} target: no new cause this week",
                fmt(pack.value),
                signed(gap.abs(), 1).trim_start_matches('+')
            );
            // Reason codes explain OTIF's failures, not a catalogue KPI.
            if let Some(top) = pack
                .otif_tree
                .by_reason
                .first()
                .filter(|r| r.reason != "unspecified" && metric.is_built_in())
            {
                narrative.push_str(&format!(
                    "The standing gap to target is mostly {} ({} of {} failures).\n",
                    top.reason, top.failures, pack.otif_tree.failures
                ));
                next_actions.extend(
                    rules
                        .playbook(&format!("reason:{}", top.reason))
                        .map(action),
                );
            }
        }
        return (
            narrative,
            Insight {
                headline,
                root_causes: vec![],
                next_actions,
                confidence: 0.8,
            },
        );
    }

    // Segments pushing in the direction of the change and explaining enough of it.
    let mut root_causes = Vec::new();
    for (dimension, seg) in pack.top_segments() {
        if root_causes.len() == MAX_ITEMS {
            break;
        }
        if seg.total * change <= 0.0 || seg.total.abs() < MIN_EXPLAINED_SHARE * change.abs() {
            continue;
        }
        let effect = if seg.mix.abs() > seg.rate.abs() {
            Effect::Mix
        } else {
            Effect::Rate
        };
        // A cause in one dimension shows up in every other one in proportion to volume
        // (a stockout in one category lowers every carrier a little). Only a segment whose
        // share of the change clearly exceeds its share of volume is a cause of its own.
        let volume_share = seg.share_pct.max(seg.previous_share_pct) / 100.0;
        let change_share = seg.total.abs() / change.abs();
        if effect == Effect::Rate && change_share < MIN_CONCENTRATION * volume_share {
            continue;
        }
        // A total that moved beyond noise by chance is not pinned on a segment whose own
        // value did not.
        if effect == Effect::Rate && !moved_beyond_noise(metric, seg) {
            continue;
        }
        let evidence = match effect {
            Effect::Mix => format!(
                "share of volume {:.1}% → {:.1}% while running at {} (mix {} {unit}, rate {} {unit})",
                seg.previous_share_pct,
                seg.share_pct,
                fmt(seg.value),
                signed(seg.mix, 2),
                signed(seg.rate, 2)
            ),
            _ => format!(
                "{name} {} → {} on {:.1}% of volume (rate {} {unit}, mix {} {unit}); concentrated: {:.0}% of the change from {:.0}% of the volume",
                fmt(seg.previous_value),
                fmt(seg.value),
                seg.share_pct,
                signed(seg.rate, 2),
                signed(seg.mix, 2),
                100.0 * change_share,
                100.0 * volume_share
            ),
        };
        root_causes.push(RootCause {
            dimension: dimension.to_string(),
            member: seg.member.clone(),
            effect,
            impact_pp: round2(seg.total),
            evidence,
        });
    }

    // A volume shift is a different kind of cause from a performance drop: name the
    // largest mix effect too when it is material and none of the above is a mix cause.
    if !root_causes.iter().any(|c| c.effect == Effect::Mix) {
        let material = (MIN_MIX_SHARE * change.abs()).max(rules.noise_min_pp());
        let mix = pack
            .contributions
            .iter()
            .flat_map(|d| d.segments.iter().map(move |s| (d.dimension.as_str(), s)))
            .filter(|(_, s)| {
                !s.member.starts_with("other (") && s.mix * change > 0.0 && s.mix.abs() >= material
            })
            .max_by(|a, b| a.1.mix.abs().total_cmp(&b.1.mix.abs()));
        if let Some((dimension, seg)) = mix {
            root_causes.push(RootCause {
                dimension: dimension.to_string(),
                member: seg.member.clone(),
                effect: Effect::Mix,
                impact_pp: round2(seg.mix),
                evidence: format!(
                    "share of volume {:.1}% → {:.1}% while running at {} against {} overall (mix {} {unit})",
                    seg.previous_share_pct,
                    seg.share_pct,
                    fmt(seg.value),
                    fmt(pack.value),
                    signed(seg.mix, 2)
                ),
            });
        }
    }

    // A process failing across the board: a reason code accounts for a material part of
    // the change that the segments named do not. Each failure branch's points, less what
    // the named segments carry on it (their `branches`), go to the branch's reason codes,
    // largest first: a late carrier's `carrier_late` is its story told again (the carrier
    // carries the late branch), short picks everywhere beside it are not. Called broad
    // when no segment stands out at all. (Without reason-by-segment counts, two reasons on
    // one branch share its remainder by size.)
    let broad = root_causes.is_empty();
    if let Some(tree) = pack.tree_change.as_ref() {
        // What the named segments leave unexplained on each failure branch.
        let mut left: BTreeMap<&str, f64> = [
            ("late_only", tree.late_only_pp),
            ("short_only", tree.short_only_pp),
            ("late_and_short", tree.late_and_short_pp),
        ]
        .into_iter()
        .collect();
        for c in &root_causes {
            if let Some(seg) = pack.segment(&c.dimension, &c.member) {
                for b in &seg.branches {
                    *left.entry(b.branch.as_str()).or_default() -= b.points;
                }
            }
        }
        // Each branch's remainder goes to its reason codes moving the same way, largest
        // first: a reason is a process cause for the part of the change it accounts for
        // that no named segment does.
        let mut on_branches: Vec<&crate::domain::evidence::ReasonPoints> =
            tree.reasons.iter().collect();
        on_branches.sort_by(|a, b| b.points.abs().total_cmp(&a.points.abs()));
        let mut by_reason: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for r in on_branches {
            let rest = left.entry(r.branch.as_str()).or_default();
            let share = if *rest * r.points > 0.0 {
                rest.abs().min(r.points.abs()) * r.points.signum()
            } else {
                0.0
            };
            *rest -= share;
            let e = by_reason.entry(r.reason.as_str()).or_default();
            e.0 += r.points;
            e.1 += share;
        }
        // A reason's share of the lines due must move beyond its sampling noise too.
        let (n1, n0) = (
            pack.denominator.max(1) as f64,
            pack.previous_denominator.max(1) as f64,
        );
        let mut failures: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for r in &tree.reasons {
            let e = failures.entry(r.reason.as_str()).or_default();
            e.0 += r.failures;
            e.1 += r.previous_failures;
        }
        let beyond_noise = |reason: &str, points: f64| {
            let (f1, f0) = failures.get(reason).copied().unwrap_or_default();
            let var = |f: i64, n: f64| {
                let p = (f as f64 / n).clamp(0.0, 1.0);
                p * (1.0 - p) / n
            };
            points.abs() > SEGMENT_Z * 100.0 * (var(f1, n1) + var(f0, n0)).sqrt()
        };
        let mut processes: Vec<(&str, f64)> = by_reason
            .into_iter()
            .filter(|(r, (points, unexplained))| {
                *r != "unspecified"
                    && beyond_noise(r, *points)
                    && points * change > 0.0
                    && unexplained * change > 0.0
                    && unexplained.abs() >= MIN_EXPLAINED_SHARE * change.abs()
            })
            .map(|(r, (points, _))| (r, points))
            .collect();
        processes.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
        for (reason, points) in processes {
            if root_causes
                .iter()
                .filter(|c| c.effect != Effect::Mix)
                .count()
                >= MAX_ITEMS
            {
                break;
            }
            let parts: Vec<String> = tree
                .reasons
                .iter()
                .filter(|r| r.reason == reason)
                .map(|r| {
                    format!(
                        "{} {} → {} lines ({} {unit})",
                        branch_words(&r.branch),
                        r.previous_failures,
                        r.failures,
                        signed(r.points, 2)
                    )
                })
                .collect();
            root_causes.push(RootCause {
                dimension: "reason".into(),
                member: reason.to_string(),
                effect: Effect::Process,
                impact_pp: round2(points),
                evidence: if broad {
                    format!(
                        "{reason} failures: {}; broad: no carrier, customer or category explains a fifth of the change on its own",
                        parts.join(", ")
                    )
                } else {
                    format!(
                        "{reason} failures: {}; beyond the segments named, across the board",
                        parts.join(", ")
                    )
                },
            });
        }
    }
    // Segments and processes ranked together by points (the analyst's route re-ranks by
    // money where unit costs exist).
    root_causes.sort_by(|a, b| b.impact_pp.abs().total_cmp(&a.impact_pp.abs()));

    let direction = if change < 0.0 { "down" } else { "up" };
    // Worse is down, or up when lower is better.
    let worse = metric.good(change) < 0.0;
    let mut headline = format!(
        "{name} {direction} {} {unit} at {where_}",
        signed(change.abs(), 1).trim_start_matches('+')
    );
    match root_causes.first() {
        Some(c) if c.effect == Effect::Process => headline.push_str(&format!(
            ": {} across the board (a process, not one segment)",
            c.member
        )),
        Some(c) if c.effect == Effect::Mix => headline.push_str(&format!(
            ": volume shifted towards {} {}",
            c.dimension, c.member
        )),
        Some(c) => headline.push_str(&format!(
            ": {} {} {}",
            c.dimension,
            c.member,
            if worse { "got worse" } else { "improved" }
        )),
        None => headline.push_str(": spread across many segments, no single cause"),
    }
    if worse && metric.is_built_in() {
        if let Some((reason, delta)) = &reason_growth {
            headline.push_str(&format!(" ({reason} failures +{delta})"));
        }
    }
    for c in &root_causes {
        narrative.push_str(&format!(
            "- {} {} ({} effect, {} {unit}): {}.\n",
            c.dimension,
            c.member,
            match c.effect {
                Effect::Rate => "rate",
                Effect::Mix => "mix",
                Effect::Data => "data",
                Effect::Process => "process",
            },
            signed(c.impact_pp, 2),
            c.evidence
        ));
    }
    if root_causes.is_empty() {
        narrative
            .push_str("No single segment explains a fifth of the change; it is broad-based.\n");
    }

    let mut next_actions: Vec<NextAction> = Vec::new();
    if worse {
        if let Some((reason, _)) = reason_growth.as_ref().filter(|_| metric.is_built_in()) {
            next_actions.extend(rules.playbook(&format!("reason:{reason}")).map(action));
        }
        for c in &root_causes {
            let cause = match c.effect {
                Effect::Mix => "effect:mix".to_string(),
                Effect::Process => format!("reason:{}", c.member),
                _ => format!("dimension:{}", c.dimension),
            };
            if let Some(p) = rules.playbook(&cause) {
                let mut a = action(p);
                a.action = format!("{} ({} {})", a.action, c.dimension, c.member);
                next_actions.push(a);
            }
        }
        next_actions.dedup_by(|a, b| a.action == b.action);
        next_actions.truncate(MAX_ITEMS);
    }
    let explained: f64 = root_causes.iter().map(|c| c.impact_pp).sum::<f64>() / change;
    let confidence = round2((0.45 + 0.45 * explained.clamp(0.0, 1.0)).min(0.9));
    (
        narrative,
        Insight {
            headline,
            root_causes,
            next_actions,
            confidence,
        },
    )
}

/// Standard errors a segment's own value (or a reason code's share) must move by to be a
/// cause. Higher than the total's two: a pack tests some thirty segments, and at 3.5 a
/// chance move passes about once in 2,000 tests.
pub const SEGMENT_Z: f64 = 3.5;

/// Whether a segment's own value moved beyond its sampling noise: more than [`SEGMENT_Z`]
/// standard errors of the difference of its two proportions. Averages (no variance kept)
/// and counts are not judged here.
fn moved_beyond_noise(metric: super::kpi::Metric, seg: &super::evidence::Segment) -> bool {
    if !metric.is_ratio() || matches!(metric.scale(), super::kpi::Scale::Average(_)) {
        return true;
    }
    let (Some(v0), Some(v1)) = (seg.previous_value, seg.value) else {
        return true;
    };
    let var = |v: f64, n: i64| {
        if n > 0 {
            let p = (v / 100.0).clamp(0.0, 1.0);
            p * (1.0 - p) / n as f64
        } else {
            0.0
        }
    };
    let se = 100.0 * (var(v0, seg.previous_denominator) + var(v1, seg.denominator)).sqrt();
    (v1 - v0).abs() > SEGMENT_Z * se
}

/// The failure reason (other than `unspecified`) whose count grew most week over week.
fn grown_reason(pack: &EvidencePack) -> Option<(String, i64)> {
    pack.otif_tree
        .by_reason
        .iter()
        .filter(|r| r.reason != "unspecified")
        .map(|r| {
            (
                r.reason.clone(),
                r.failures - pack.previous_failures(&r.reason),
            )
        })
        .filter(|(_, d)| *d > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
}

fn action(p: &super::rules::Playbook) -> NextAction {
    NextAction {
        action: p.action.clone(),
        owner: p.owner.clone(),
        priority: p.priority.clone(),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::evidence::{pack_from_lines, LineFact, Scope, NETWORK};
    use crate::domain::period::{parse_date, Week};
    use crate::domain::rules::sample_rules;
    use chrono::Duration;

    /// `n` lines at `site`/`carrier` due on `due`; the first `late` are delivered two days
    /// late (reason carrier_late), the first `open` of the rest are not delivered at all.
    fn lines(
        site: &str,
        carrier: &str,
        due: &str,
        n: usize,
        late: usize,
        open: usize,
    ) -> Vec<LineFact> {
        let due = parse_date(due).unwrap();
        (0..n)
            .map(|i| LineFact {
                site: site.into(),
                customer: "C".into(),
                carrier: carrier.into(),
                sku: "SKU-1".into(),
                category: "Food".into(),
                ordered_qty: 10,
                delivered_qty: 10,
                due_date: due,
                delivered_date: if i < late {
                    Some(due + Duration::days(2))
                } else if i < late + open {
                    None
                } else {
                    Some(due)
                },
                reason_code: (i < late).then(|| "carrier_late".to_string()),
                attrs: Vec::new(),
            })
            .collect()
    }

    fn analyse_lines(site: &str, facts: Vec<LineFact>) -> (EvidencePack, Insight) {
        let rules = sample_rules();
        let pack = pack_from_lines(
            Scope::otif_for_tests(site, site),
            Week::containing(parse_date("2026-11-09").unwrap()),
            parse_date("2026-11-21").unwrap(),
            &facts,
            &[],
            parse_date("2026-11-20"),
            &rules,
        );
        let (_, insight) = analyse(&pack, &rules, Some("why?"));
        (pack, insight)
    }

    #[test]
    fn no_cause_is_invented_for_a_change_within_noise() {
        let mut facts = lines("DAL", "X", "2026-11-03", 500, 10, 0);
        facts.extend(lines("DAL", "X", "2026-11-10", 500, 12, 0));
        let (pack, i) = analyse_lines("DAL", facts);
        assert!(!pack.noise.significant);
        assert!(i.root_causes.is_empty(), "{i:#?}");
        assert!(
            i.headline.contains("within normal variation"),
            "{}",
            i.headline
        );
    }

    #[test]
    fn a_carrier_that_got_late_is_a_rate_cause_with_its_playbook() {
        let mut facts = lines("DAL", "Good", "2026-11-03", 400, 4, 0);
        facts.extend(lines("DAL", "Bad", "2026-11-03", 400, 4, 0));
        facts.extend(lines("DAL", "Good", "2026-11-10", 400, 4, 0));
        facts.extend(lines("DAL", "Bad", "2026-11-10", 400, 160, 0));
        let (_, i) = analyse_lines("DAL", facts);
        let top = &i.root_causes[0];
        assert_eq!(
            (top.dimension.as_str(), top.member.as_str(), top.effect),
            ("carrier", "Bad", Effect::Rate)
        );
        assert!((top.impact_pp - -19.5).abs() < 0.6, "{}", top.impact_pp);
        assert_eq!(i.next_actions[0].action, "do carrier_late");
    }

    #[test]
    fn missing_delivery_dates_are_a_data_problem_not_an_operational_one() {
        let mut facts = lines("DAL", "X", "2026-11-03", 400, 4, 0);
        facts.extend(lines("DAL", "X", "2026-11-10", 400, 4, 100));
        let (pack, i) = analyse_lines("DAL", facts);
        assert!(pack.data_checks.suspect());
        assert!(i.headline.starts_with("Data problem"), "{}", i.headline);
        assert!(i.root_causes.iter().all(|c| c.effect == Effect::Data));
        assert_eq!(i.next_actions[0].action, "do data_quality");
    }

    #[test]
    fn volume_moving_to_a_weaker_site_is_a_mix_cause() {
        // Both sites keep their rates (A 98%, B 80%); B's share of volume triples.
        let mut facts = lines("A", "X", "2026-11-03", 900, 18, 0);
        facts.extend(lines("B", "X", "2026-11-03", 100, 20, 0));
        facts.extend(lines("A", "X", "2026-11-10", 700, 14, 0));
        facts.extend(lines("B", "X", "2026-11-10", 300, 60, 0));
        let (pack, i) = analyse_lines(NETWORK, facts);
        let b = pack.segment("site", "B").unwrap();
        assert!(b.rate.abs() < 1e-9 && b.mix < 0.0);
        assert!(
            i.root_causes
                .iter()
                .any(|c| c.member == "B" && c.effect == Effect::Mix),
            "{i:#?}"
        );
        assert!(
            i.headline.contains("volume shifted towards site B"),
            "{}",
            i.headline
        );
    }

    /// A week where every carrier and customer loses a few lines to short picks, against
    /// a clean week: a process failing everywhere, not a segment.
    fn short_picks_everywhere() -> EvidencePack {
        let mut lines = Vec::new();
        for (week_start, short_every) in [("2026-11-02", None), ("2026-11-09", Some(8))] {
            let start = parse_date(week_start).unwrap();
            let mut n = 0;
            for carrier in ["A", "B", "C", "D"] {
                for customer in ["X", "Y", "Z"] {
                    for k in 0..20 {
                        n += 1;
                        let due = start + Duration::days((k % 5) as i64);
                        let short = short_every.is_some_and(|e| n % e == 0);
                        lines.push(LineFact {
                            site: "DAL".into(),
                            customer: customer.into(),
                            carrier: carrier.into(),
                            sku: "SKU-1".into(),
                            category: "Food".into(),
                            ordered_qty: 10,
                            delivered_qty: if short { 7 } else { 10 },
                            due_date: due,
                            delivered_date: Some(due),
                            reason_code: short.then(|| "short_pick".to_string()),
                            attrs: Vec::new(),
                        });
                    }
                }
            }
        }
        let week = Week::containing(parse_date("2026-11-09").unwrap());
        let as_of = parse_date("2026-11-17").unwrap();
        pack_from_lines(
            Scope::otif_for_tests("DAL", "Dallas"),
            week,
            as_of,
            &lines,
            &[],
            Some(as_of - Duration::days(1)),
            &sample_rules(),
        )
    }

    #[test]
    fn the_kpi_tree_splits_the_change_exactly_by_branch_and_reason() {
        let pack = short_picks_everywhere();
        let tree = pack.tree_change.as_ref().expect("a tree for OTIF");
        let change = pack.change.unwrap();
        let branches = tree.late_only_pp + tree.short_only_pp + tree.late_and_short_pp;
        assert!((branches - change).abs() < 1e-9, "{branches} vs {change}");
        assert!(tree.late_only_pp.abs() < 1e-12 && tree.short_only_pp < 0.0);
        let short_pick = tree.reason_points("short_pick").unwrap();
        assert!((short_pick - tree.short_only_pp).abs() < 1e-9);
        assert_eq!(tree.reasons[0].branch, "short_only");
        assert_eq!(tree.reasons[0].failures, 30);
        assert_eq!(tree.reasons[0].previous_failures, 0);
    }

    #[test]
    fn a_process_failing_everywhere_is_named_as_one_and_called_broad() {
        let pack = short_picks_everywhere();
        let mut rules = sample_rules();
        rules.playbooks.push(crate::domain::rules::Playbook {
            key: "pick_check".into(),
            cause: "reason:short_pick".into(),
            action: "Audit pick accuracy on every shift".into(),
            owner: "Warehouse manager".into(),
            priority: "high".into(),
            enabled: true,
        });
        let (_, insight) = analyse(&pack, &rules, None);
        let cause = &insight.root_causes[0];
        assert_eq!(
            (
                cause.effect,
                cause.dimension.as_str(),
                cause.member.as_str()
            ),
            (Effect::Process, "reason", "short_pick")
        );
        assert!((cause.impact_pp - pack.change.unwrap()).abs() < 0.01);
        assert!(cause.evidence.contains("broad"), "{}", cause.evidence);
        assert!(
            insight.headline.contains("short_pick across the board"),
            "{}",
            insight.headline
        );
        assert!(insight.next_actions[0]
            .action
            .starts_with("Audit pick accuracy"));
        // It is grounded in the pack's tree.
        let checks = crate::domain::grounding::check(&pack, &insight);
        assert!(checks.iter().all(|g| g.supported), "{checks:?}");
        // A claim of another size, or of a code no failure has, is not.
        let mut wrong = insight.clone();
        wrong.root_causes[0].impact_pp = -1.0;
        wrong.root_causes.push(RootCause {
            member: "stockout".into(),
            ..cause.clone()
        });
        let checks = crate::domain::grounding::check(&pack, &wrong);
        assert!(checks.iter().all(|g| !g.supported), "{checks:?}");
    }

    #[test]
    fn a_late_carrier_and_short_picks_everywhere_are_both_named_ranked_by_points() {
        let mut facts = Vec::new();
        for c in ["A", "B", "C", "Bad"] {
            facts.extend(lines("DAL", c, "2026-11-03", 300, 6, 0));
            let late = if c == "Bad" { 150 } else { 6 };
            facts.extend(lines("DAL", c, "2026-11-10", 300, late, 0));
        }
        // Short picks everywhere this week: one on-time line in six, every carrier.
        let this_week = parse_date("2026-11-09").unwrap();
        for (n, l) in facts.iter_mut().enumerate() {
            if l.due_date >= this_week && n % 6 == 0 && l.reason_code.is_none() {
                l.delivered_qty = 7;
                l.reason_code = Some("short_pick".into());
            }
        }
        let (pack, i) = analyse_lines("DAL", facts);
        let named: Vec<(&str, &str, Effect)> = i
            .root_causes
            .iter()
            .map(|c| (c.dimension.as_str(), c.member.as_str(), c.effect))
            .collect();
        assert!(
            named.contains(&("carrier", "Bad", Effect::Rate)),
            "{named:?}"
        );
        assert!(
            named.contains(&("reason", "short_pick", Effect::Process)),
            "{named:?}"
        );
        assert!(
            !named.iter().any(|n| n.1 == "carrier_late"),
            "the late carrier's failures are not a second cause: {named:?}"
        );
        let sizes: Vec<f64> = i.root_causes.iter().map(|c| c.impact_pp.abs()).collect();
        assert!(
            sizes.windows(2).all(|w| w[0] >= w[1]),
            "ranked by points: {sizes:?}"
        );
        let process = i
            .root_causes
            .iter()
            .find(|c| c.effect == Effect::Process)
            .unwrap();
        assert!(
            process.evidence.contains("beyond the segments named"),
            "{}",
            process.evidence
        );
        // The segments' branch points add up to the tree's.
        let tree = pack.tree_change.as_ref().unwrap();
        let carriers = &pack
            .contributions
            .iter()
            .find(|d| d.dimension == "carrier")
            .unwrap()
            .segments;
        let late: f64 = carriers
            .iter()
            .flat_map(|s| s.branches.iter().filter(|b| b.branch == "late_only"))
            .map(|b| b.points)
            .sum();
        assert!(
            (late - tree.late_only_pp).abs() < 1e-9,
            "{late} vs {}",
            tree.late_only_pp
        );
        let checks = crate::domain::grounding::check(&pack, &i);
        assert!(checks.iter().all(|g| g.supported), "{checks:?}");
    }

    #[test]
    fn a_segment_cause_is_called_concentrated() {
        // Carrier B alone is late this week.
        let mut all = lines("DAL", "A", "2026-11-03", 40, 0, 0);
        all.extend(lines("DAL", "B", "2026-11-03", 40, 0, 0));
        all.extend(lines("DAL", "A", "2026-11-10", 40, 0, 0));
        all.extend(lines("DAL", "B", "2026-11-10", 40, 16, 0));
        let week = Week::containing(parse_date("2026-11-10").unwrap());
        let as_of = parse_date("2026-11-17").unwrap();
        let pack = pack_from_lines(
            Scope::otif_for_tests("DAL", "Dallas"),
            week,
            as_of,
            &all,
            &[],
            Some(as_of - Duration::days(1)),
            &sample_rules(),
        );
        let (_, insight) = analyse(&pack, &sample_rules(), None);
        let cause = &insight.root_causes[0];
        assert_eq!((cause.effect, cause.member.as_str()), (Effect::Rate, "B"));
        assert!(
            cause.evidence.contains("concentrated"),
            "{}",
            cause.evidence
        );
        assert!(!insight
            .root_causes
            .iter()
            .any(|c| c.effect == Effect::Process));
    }
}
