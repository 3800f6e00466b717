//! Tallies: the additive counts the metric store keeps per site, day and dimension member,
//! and that every evidence pack, tile, trend and money figure is summed from.
//!
//! A [`Tally`] holds everything a KPI, the OTIF failure tree, the mix/rate split, the data
//! checks and money at stake need, as integers, so any sum (a week, a month, the network)
//! is exact and the same whichever order it is added in. The failure branches are not
//! stored: late only = in full − OTIF, short only = on time − OTIF, late and short =
//! lines − on time − in full + OTIF.
//!
//! [`Breakdown::add_line`] is the one definition of how a line is tallied: the import, the
//! re-scoring of the store and the tests' independent counts all go through it.

use super::evidence::LineFact;
use super::kpi::{score_line, KpiCounts, ScoringParams};
use super::materiality::CostBook;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The dimensions every line is broken down by (the site is the store's own key, and the
/// network's "site" dimension is the sum of each site's total). `reason` is the reason
/// code, empty when the line has none.
pub const DIMENSIONS: [&str; 4] = ["carrier", "customer", "category", "reason"];

/// Additive counts for a set of lines under the scoring and unit costs in force.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Tally {
    #[serde(flatten)]
    pub counts: KpiCounts,
    /// Lines with no delivered date.
    pub open_lines: i64,
    /// Lines failing OTIF with no reason code.
    pub unreasoned_failures: i64,
    /// Cost of goods on failing lines that have a unit cost: Σ ordered_qty × unit cost,
    /// in hundredths of the cost currency (integers, so sums are exact).
    pub failed_cost_cents: i64,
    /// Failing lines with no unit cost (left out of the money).
    pub uncosted_failures: i64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.counts.add(&other.counts);
        self.open_lines += other.open_lines;
        self.unreasoned_failures += other.unreasoned_failures;
        // Saturating: absurd costs must not wrap (or panic) the money.
        self.failed_cost_cents = self
            .failed_cost_cents
            .saturating_add(other.failed_cost_cents);
        self.uncosted_failures += other.uncosted_failures;
    }

    /// This tally taken away (added to a sum, it removes these lines).
    pub fn negated(&self) -> Tally {
        Tally {
            counts: KpiCounts {
                lines: -self.counts.lines,
                otif_lines: -self.counts.otif_lines,
                on_time_lines: -self.counts.on_time_lines,
                in_full_lines: -self.counts.in_full_lines,
                units_ordered: -self.counts.units_ordered,
                units_delivered: -self.counts.units_delivered,
            },
            open_lines: -self.open_lines,
            unreasoned_failures: -self.unreasoned_failures,
            failed_cost_cents: -self.failed_cost_cents,
            uncosted_failures: -self.uncosted_failures,
        }
    }

    pub fn failures(&self) -> i64 {
        self.counts.lines - self.counts.otif_lines
    }

    /// Late but in full.
    pub fn late_only(&self) -> i64 {
        self.counts.in_full_lines - self.counts.otif_lines
    }

    /// On time but short.
    pub fn short_only(&self) -> i64 {
        self.counts.on_time_lines - self.counts.otif_lines
    }

    pub fn late_and_short(&self) -> i64 {
        self.counts.lines - self.counts.on_time_lines - self.counts.in_full_lines
            + self.counts.otif_lines
    }

    /// Failing lines that have a unit cost.
    pub fn costed_failures(&self) -> i64 {
        self.failures() - self.uncosted_failures
    }

    /// One line's tally.
    pub fn of_line(line: &LineFact, params: ScoringParams, costs: &CostBook) -> Tally {
        let score = score_line(
            params,
            line.ordered_qty,
            line.delivered_qty,
            line.due_date,
            line.delivered_date,
        );
        let mut counts = KpiCounts::default();
        counts.add_line(score, line.ordered_qty, line.delivered_qty);
        let failed = !score.otif();
        let cost = failed
            .then(|| costs.unit_cost(&line.sku, &line.category))
            .flatten();
        Tally {
            counts,
            open_lines: i64::from(line.delivered_date.is_none()),
            unreasoned_failures: i64::from(failed && reason_of(line).is_empty()),
            failed_cost_cents: cost.map_or(0, |c| {
                (line.ordered_qty.max(0) as f64 * c * 100.0).round() as i64
            }),
            uncosted_failures: i64::from(failed && cost.is_none()),
        }
    }
}

/// A line's member of the `reason` dimension: its reason code, or empty.
pub fn reason_of(line: &LineFact) -> &str {
    line.reason_code.as_deref().map(str::trim).unwrap_or("")
}

/// A line's member of a dimension.
pub fn member_of<'a>(line: &'a LineFact, dimension: &str) -> &'a str {
    match dimension {
        "carrier" => &line.carrier,
        "customer" => &line.customer,
        "category" => &line.category,
        "site" => &line.site,
        _ => reason_of(line),
    }
}

/// An order line with its key, as imported.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderLine {
    pub order_id: String,
    pub line_no: i64,
    pub fact: LineFact,
    /// The site's name when the input named it otherwise than by its code ("Côte
    /// d'Ivoire" for the code `COTE-D-IVOIRE`): a new site is created with it.
    pub site_name: Option<String>,
    /// The site's region, when the input gives one (for a site the line creates).
    pub site_region: Option<String>,
}

/// The store's dimension of deliveries per delivered date: how fresh the data is, not a
/// breakdown of the KPI (packs and contributions never read it).
pub const DELIVERED_ON: &str = "delivered_on";

/// A set of lines tallied in total and per member of each dimension.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub total: Tally,
    /// dimension → member → tally.
    pub dimensions: BTreeMap<String, BTreeMap<String, Tally>>,
}

impl Breakdown {
    /// Adds one line: its total and its member in each of [`DIMENSIONS`].
    pub fn add_line(&mut self, line: &LineFact, params: ScoringParams, costs: &CostBook) {
        self.add_scored(line, &Tally::of_line(line, params, costs));
    }

    /// Adds a line already scored as `t`: its total and its member in each dimension.
    fn add_scored(&mut self, line: &LineFact, t: &Tally) {
        self.total.add(t);
        for dim in DIMENSIONS {
            self.add(dim, member_of(line, dim), t);
        }
    }

    /// What the metric store keeps of a line: [`Breakdown::add_line`] plus its delivery
    /// in [`DELIVERED_ON`].
    pub fn add_stored_line(&mut self, line: &LineFact, params: ScoringParams, costs: &CostBook) {
        // Scored once: this runs for every imported line.
        let t = Tally::of_line(line, params, costs);
        self.add_scored(line, &t);
        if let Some(d) = line.delivered_date {
            self.add(DELIVERED_ON, &super::period::fmt_date(d), &t);
        }
    }

    /// Adds a tally to one member of a dimension.
    pub fn add(&mut self, dimension: &str, member: &str, t: &Tally) {
        let members = match self.dimensions.get_mut(dimension) {
            Some(m) => m,
            None => self.dimensions.entry(dimension.to_string()).or_default(),
        };
        match members.get_mut(member) {
            Some(x) => x.add(t),
            None => {
                members.insert(member.to_string(), *t);
            }
        }
    }

    /// Adds another breakdown (another day, another site).
    pub fn merge(&mut self, other: &Breakdown) {
        self.total.add(&other.total);
        for (dim, members) in &other.dimensions {
            for (member, t) in members {
                self.add(dim, member, t);
            }
        }
    }

    /// Members of a dimension (empty when it has none).
    pub fn members(&self, dimension: &str) -> impl Iterator<Item = (&str, &Tally)> {
        self.dimensions
            .get(dimension)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// Tallies `lines` whose due date passes `keep`: the independent count the tests
    /// compare the store with, and what pure unit tests build packs from.
    pub fn of_lines<'a>(
        lines: impl IntoIterator<Item = &'a LineFact>,
        params: ScoringParams,
        costs: &CostBook,
        keep: impl Fn(&LineFact) -> bool,
    ) -> Breakdown {
        let mut b = Breakdown::default();
        for l in lines.into_iter().filter(|l| keep(l)) {
            b.add_line(l, params, costs);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;
    use std::collections::HashMap;

    fn line(
        carrier: &str,
        ordered: i64,
        got: i64,
        late_days: Option<i64>,
        reason: Option<&str>,
    ) -> LineFact {
        let due = parse_date("2026-11-10").unwrap();
        LineFact {
            site: "DAL".into(),
            customer: "MegaMart".into(),
            carrier: carrier.into(),
            sku: "TV-1".into(),
            category: "Electronics".into(),
            ordered_qty: ordered,
            delivered_qty: got,
            due_date: due,
            delivered_date: late_days.map(|d| due + chrono::Duration::days(d)),
            reason_code: reason.map(str::to_string),
        }
    }

    #[test]
    fn failure_branches_follow_from_the_stored_counts() {
        let costs = CostBook {
            by_sku: HashMap::from([("TV-1".to_string(), 400.5)]),
            by_category: HashMap::new(),
        };
        let lines = [
            line("A", 10, 10, Some(0), None),         // OTIF
            line("A", 10, 10, Some(2), Some("late")), // late only
            line("B", 10, 8, Some(0), Some("short")), // short only
            line("B", 10, 0, None, None),             // late and short, open, no reason
        ];
        let b = Breakdown::of_lines(&lines, ScoringParams::default(), &costs, |_| true);
        let t = b.total;
        assert_eq!(
            (t.counts.lines, t.counts.otif_lines, t.failures()),
            (4, 1, 3)
        );
        assert_eq!(
            (t.late_only(), t.short_only(), t.late_and_short()),
            (1, 1, 1)
        );
        assert_eq!((t.open_lines, t.unreasoned_failures), (1, 1));
        // Three failures × 10 units × 400.50 = 12,015.00.
        assert_eq!((t.failed_cost_cents, t.uncosted_failures), (1_201_500, 0));
        let reasons: Vec<(&str, i64)> = b
            .members("reason")
            .map(|(m, t)| (m, t.failures()))
            .collect();
        assert_eq!(reasons, vec![("", 1), ("late", 1), ("short", 1)]);
        let b_carrier = b.dimensions["carrier"]["B"];
        assert_eq!(
            (b_carrier.counts.lines, b_carrier.counts.units_delivered),
            (2, 8)
        );
        // A wider window and tolerance re-score the same lines.
        let lenient = ScoringParams {
            on_time_window_days: 2,
            in_full_tolerance: 0.2,
        };
        let l = Breakdown::of_lines(&lines, lenient, &costs, |_| true).total;
        assert_eq!((l.counts.otif_lines, l.failures()), (3, 1));
    }
}
