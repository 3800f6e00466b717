//! The built-in analyst's answers to drill-down questions: one composer per kind of
//! question ([`Ask`]), each writing only figures and names from the evidence pack and the
//! look-ups Opsight made for the question (so the claims check supports every one).
//! Text goes to a sink line by line as it is composed, which the analyst's route streams.

use super::analyst::analyse;
use super::evidence::{EvidencePack, Segment};
use super::insight::Insight;
use super::kpi::{format_change, format_value, signed};
use super::materiality::money;
use super::question::{Against, Ask, Lookups};
use super::rules::Rules;

/// Where composed text goes: appended to the answer and handed to `sink` as it is written.
pub struct Writer<'a> {
    pub text: String,
    sink: &'a mut dyn FnMut(&str),
}

impl<'a> Writer<'a> {
    pub fn new(sink: &'a mut dyn FnMut(&str)) -> Writer<'a> {
        Writer {
            text: String::new(),
            sink,
        }
    }

    /// Writes one line (a newline is added).
    pub fn line(&mut self, line: impl AsRef<str>) {
        let piece = format!("{}\n", line.as_ref());
        (self.sink)(&piece);
        self.text.push_str(&piece);
    }
}

/// Answers `lookups.intent` from `pack` (the pack of the site asked about) and the look-ups.
/// Returns the insight contract for diagnosis questions ("why?"), none for the others.
/// `dismissed` are actions the team dismissed for this card: they are not offered.
pub fn answer(
    pack: &EvidencePack,
    rules: &Rules,
    lookups: &Lookups,
    dismissed: &[String],
    out: &mut Writer,
) -> Option<Insight> {
    let name = &pack.scope.metric_name;
    let site = &pack.scope.site_name;
    let metric = pack.scope.metric;
    let fmt = |v: Option<f64>| format_value(metric, v);
    let unit = metric.change_unit();
    match &lookups.intent.ask {
        Ask::Why => {
            let (narrative, insight) = analyse(pack, rules, None);
            for l in narrative.lines() {
                out.line(l);
            }
            Some(insight)
        }
        Ask::Segments { dimension } => {
            segments(pack, dimension.as_deref(), out);
            None
        }
        Ask::Member { dimension, member } => {
            match pack.segment(dimension, member) {
                Some(s) => {
                    out.line(format!(
                        "{dimension} {member} at {site}: {name} {} → {} in {}, on {:.1}% of the volume ({:.1}% before).",
                        fmt(s.previous_value),
                        fmt(s.value),
                        pack.period.label,
                        s.share_pct,
                        s.previous_share_pct
                    ));
                    if let Some(change) = pack.change {
                        out.line(format!(
                            "Its own performance moved {name} by {} {unit} and its share of the volume by {} {unit}: {} {unit} of the {} {unit} change.",
                            signed(s.rate, 2),
                            signed(s.mix, 2),
                            signed(s.total, 2),
                            signed(change, 2)
                        ));
                    }
                    let (_, diagnosis) = analyse(pack, rules, None);
                    let named = diagnosis
                        .root_causes
                        .iter()
                        .any(|c| c.dimension == *dimension && c.member == *member);
                    out.line(if named {
                        "The diagnosis names it as a root cause."
                    } else {
                        "The diagnosis does not name it as a root cause."
                    });
                }
                None => out.line(format!(
                    "{member} is not among the {dimension} members the evidence lists at {site}."
                )),
            }
            None
        }
        Ask::Compare { against } => {
            out.line(format!(
                "{name} at {site} was {} in {} against {} in {} ({}).",
                fmt(pack.value),
                pack.period.label,
                fmt(pack.previous_value),
                pack.previous_period.label,
                format_change(metric, pack.change)
            ));
            match (&lookups.against, against) {
                (_, Against::Previous) => {}
                (Some(a), _) => out.line(format!(
                    "Against {} ({} to {}): {} on {} lines, so {} is {} now.",
                    a.label,
                    a.start,
                    a.end,
                    fmt(a.value),
                    a.denominator,
                    pack.period.label,
                    a.difference
                        .map(|d| format_change(metric, Some(d)))
                        .unwrap_or_else(|| "not comparable".into())
                )),
                (None, _) => out.line(lookups.unavailable.clone().unwrap_or_else(|| {
                    "There are no lines due in that period to compare with.".into()
                })),
            }
            None
        }
        Ask::Money => {
            match &pack.materiality {
                Some(m) => {
                    out.line(format!(
                        "Money at stake at {site} in {}: {}.",
                        pack.period.label, m.summary
                    ));
                    let mut by: Vec<_> = m.by_segment.iter().filter(|s| s.at_stake > 0.0).collect();
                    by.sort_by(|a, b| b.at_stake.total_cmp(&a.at_stake));
                    for s in by.iter().take(5) {
                        out.line(format!(
                            "- {} {}: {} on {} failed lines",
                            s.dimension,
                            s.member,
                            money(s.at_stake),
                            s.failed_lines
                        ));
                    }
                }
                None => out.line(format!(
                    "No unit costs are loaded, so there is no money figure for {name} at {site}. \
                     Load them with `opsight import costs FILE.csv` (`sku` or `category`, \
                     `unit_cost`) or on the rules page; failed lines are then priced by the \
                     penalty rule."
                )),
            }
            None
        }
        Ask::Actions => {
            let (_, mut diagnosis) = analyse(pack, rules, None);
            diagnosis
                .next_actions
                .retain(|a| !dismissed.contains(&a.action));
            if diagnosis.next_actions.is_empty() {
                out.line(format!(
                    "No playbook applies at {site}: {}.",
                    diagnosis.headline
                ));
            } else {
                out.line(format!("What to do at {site} ({}):", diagnosis.headline));
                for a in &diagnosis.next_actions {
                    out.line(format!(
                        "- {} — owner: {}, {} priority",
                        a.action, a.owner, a.priority
                    ));
                }
            }
            Some(diagnosis)
        }
        Ask::Data => {
            let c = &pack.data_checks;
            out.line(format!(
                "{} lines were due at {site} in {}; {} of them are past due with no delivered date ({:.1}%).",
                c.lines_due, pack.period.label, c.past_due_open, c.past_due_open_share_pct
            ));
            if metric.is_built_in() {
                out.line(format!(
                    "{} of {} failures have no reason code ({:.1}%).",
                    c.failures_without_reason, c.failures, c.failures_without_reason_share_pct
                ));
            }
            if let Some(latest) = &c.latest_data_date {
                out.line(format!("The latest delivery recorded is of {latest}."));
            }
            if c.suspect() {
                out.line(format!(
                    "The data checks flag this period: {}. Fix the data before acting on {name}.",
                    c.suspect_reasons.join("; ")
                ));
            } else {
                out.line("No data check flags this period: the data looks complete.");
            }
            None
        }
        Ask::Lines { .. } => {
            match &lookups.lines {
                Some(s) => {
                    let filter = s
                        .filter
                        .as_ref()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default();
                    out.line(format!(
                        "{} of {} lines due at {site}{filter} in {} failed {name}; earliest due first:",
                        s.failing, s.lines, pack.period.label
                    ));
                    for l in &s.shown {
                        out.line(format!(
                            "- order {} line {}: {}, {}, {} ({}); due {}, {}; {} of {} units; reason {}",
                            l.order_id,
                            l.line_no,
                            l.customer,
                            l.carrier,
                            l.sku,
                            l.failure,
                            l.due_date,
                            l.delivered_date
                                .as_ref()
                                .map(|d| format!("delivered {d}"))
                                .unwrap_or_else(|| "not delivered".into()),
                            l.delivered_qty,
                            l.ordered_qty,
                            l.reason_code.as_deref().unwrap_or("none")
                        ));
                    }
                }
                None => out.line(lookups.unavailable.clone().unwrap_or_else(|| {
                    format!("The lines behind {name} at {site} could not be looked up.")
                })),
            }
            None
        }
        Ask::SinceLast => {
            match &lookups.last_insight {
                Some(last) => {
                    out.line(format!(
                        "The last insight ({} for {}) said: “{}”.",
                        last.created_at.get(0..10).unwrap_or(&last.created_at),
                        last.period_label,
                        last.headline
                    ));
                    out.line(format!(
                        "{name} at {site} was {} then and is {} in {} now.",
                        fmt(last.value),
                        fmt(pack.value),
                        pack.period.label
                    ));
                    let (_, now) = analyse(pack, rules, None);
                    let causes: Vec<String> = now
                        .root_causes
                        .iter()
                        .map(|c| format!("{} {}", c.dimension, c.member))
                        .collect();
                    let kept: Vec<&String> = causes.iter().filter(|c| last.causes.contains(c)).collect();
                    let new: Vec<&String> = causes.iter().filter(|c| !last.causes.contains(c)).collect();
                    let gone: Vec<&String> = last.causes.iter().filter(|c| !causes.contains(c)).collect();
                    let list = |v: &[&String]| {
                        if v.is_empty() {
                            "none".to_string()
                        } else {
                            v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        }
                    };
                    out.line(format!(
                        "Causes still named: {}. New: {}. No longer named: {}.",
                        list(&kept),
                        list(&new),
                        list(&gone)
                    ));
                }
                None => out.line(format!(
                    "There is no earlier insight for {name} at {site} to compare with: refresh the card first."
                )),
            }
            None
        }
        Ask::Outside => {
            let dims: Vec<&str> = pack
                .contributions
                .iter()
                .map(|d| d.dimension.as_str())
                .collect();
            out.line(format!(
                "That is outside what this data can answer. I read {name} at {site} from its order lines: \
                 its value and change, the split by {}, failure reason codes, data checks, \
                 unit costs and the playbooks.",
                dims.join(", ")
            ));
            out.line(
                "Ask, for example: why did it move? which customers are hit hardest? how does it \
                 compare with last month? how much is it costing us? what should we do? is the \
                 data complete? show me the late lines for a carrier. what changed since the last \
                 insight?",
            );
            None
        }
    }
}

/// The members that pulled the KPI the wrong way most, in one dimension or in all.
fn segments(pack: &EvidencePack, dimension: Option<&str>, out: &mut Writer) {
    let metric = pack.scope.metric;
    let name = &pack.scope.metric_name;
    let site = &pack.scope.site_name;
    let unit = metric.change_unit();
    let Some(change) = pack.change else {
        out.line(format!(
            "There is nothing to compare with at {site}: no lines were due in {}.",
            pack.previous_period.label
        ));
        return;
    };
    let mut all: Vec<(&str, &Segment)> = pack
        .contributions
        .iter()
        .filter(|d| dimension.is_none_or(|want| d.dimension == want))
        .flat_map(|d| d.segments.iter().map(move |s| (d.dimension.as_str(), s)))
        .filter(|(_, s)| !s.member.starts_with("other ("))
        .collect();
    // Hardest hit: the most harm to the KPI (a fall, or a rise when lower is better).
    all.sort_by(|a, b| {
        metric
            .good(a.1.total)
            .total_cmp(&metric.good(b.1.total))
            .then_with(|| a.1.member.cmp(&b.1.member))
    });
    let hit: Vec<&(&str, &Segment)> = all
        .iter()
        .filter(|(_, s)| metric.good(s.total) < 0.0)
        .take(5)
        .collect();
    let what = dimension.map_or("segments".to_string(), |d| format!("{d} members"));
    if hit.is_empty() {
        out.line(format!(
            "No {what} pulled {name} the wrong way at {site} in {} ({} {unit} overall).",
            pack.period.label,
            signed(change, 2)
        ));
        return;
    }
    out.line(format!(
        "The {what} that pulled {name} the wrong way most at {site} in {} ({} {unit} overall):",
        pack.period.label,
        signed(change, 2)
    ));
    for (d, s) in hit {
        out.line(format!(
            "- {d} {}: {} → {} on {:.1}% of the volume; {} {unit} of the change (rate {}, mix {})",
            s.member,
            format_value(metric, s.previous_value),
            format_value(metric, s.value),
            s.share_pct,
            signed(s.total, 2),
            signed(s.rate, 2),
            signed(s.mix, 2)
        ));
    }
}
