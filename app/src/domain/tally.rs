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

use super::catalogue::{Catalogue, Measure, Value};
use super::evidence::LineFact;
use super::kpi::{score_line, KpiCounts, LineScore, ScoringParams};
use super::materiality::CostBook;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The dimensions every line is broken down by (the site is the store's own key, and the
/// network's "site" dimension is the sum of each site's total). `reason` is the reason
/// code, empty when the line has none. The catalogue adds its own ([`Scorer`]).
pub const DIMENSIONS: [&str; 4] = ["carrier", "customer", "category", "reason"];

/// Everything a line's tally depends on: the scoring rules, the unit costs and the
/// catalogue's dimensions and KPIs. Cheap to clone into the thread that parses a file.
#[derive(Clone, Debug, Default)]
pub struct Scorer {
    pub params: ScoringParams,
    pub costs: CostBook,
    /// The catalogue's dimensions (after [`DIMENSIONS`]).
    pub dimensions: Vec<String>,
    /// The catalogue's KPIs, each in its slot of [`KpiCounts::measures`].
    pub measures: Vec<(usize, Measure)>,
}

impl Scorer {
    /// Opsight's own KPIs and dimensions only.
    pub fn new(params: ScoringParams, costs: CostBook) -> Scorer {
        Scorer {
            params,
            costs,
            ..Scorer::default()
        }
    }

    /// With the catalogue's dimensions and KPIs (a KPI's slot is its place in the list).
    pub fn with_catalogue(params: ScoringParams, costs: CostBook, catalogue: &Catalogue) -> Scorer {
        let measures = catalogue
            .measures()
            .into_iter()
            .filter_map(|m| Some((catalogue.kpis.iter().position(|k| k.key == m.key)?, m)))
            .collect();
        Scorer {
            params,
            costs,
            dimensions: catalogue.dimensions.clone(),
            measures,
        }
    }

    /// Every dimension a line is broken down by.
    pub fn dimensions(&self) -> impl Iterator<Item = &str> {
        DIMENSIONS
            .into_iter()
            .chain(self.dimensions.iter().map(String::as_str))
    }
}

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
            counts: self.counts.negated(),
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
    pub fn of_line(line: &LineFact, scorer: &Scorer) -> Tally {
        let costs = &scorer.costs;
        let score = score_line(
            scorer.params,
            line.ordered_qty,
            line.delivered_qty,
            line.due_date,
            line.delivered_date,
        );
        let mut counts = KpiCounts::default();
        counts.add_line(score, line.ordered_qty, line.delivered_qty);
        for (slot, m) in &scorer.measures {
            if let Some(cell) = counts.measures.get_mut(*slot) {
                *cell = measure_line(m, line, score);
            }
        }
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

/// A line's member of a dimension (a catalogue dimension the line lacks: empty).
pub fn member_of<'a>(line: &'a LineFact, dimension: &str) -> &'a str {
    match dimension {
        "carrier" => &line.carrier,
        "customer" => &line.customer,
        "category" => &line.category,
        "site" => &line.site,
        "reason" => reason_of(line),
        other => line.attr(other).unwrap_or(""),
    }
}

/// What one line adds to a catalogue KPI: `[numerator, denominator]`. A line counts in
/// the denominator when its denominator is non-zero (every line without one), and adds
/// its numerator only then; a line whose numerator is missing (a date not there yet) is
/// left out of both, as SQL's `AVG` leaves out NULL. Amounts are rounded to whole numbers.
fn measure_line(m: &Measure, line: &LineFact, score: LineScore) -> [i64; 2] {
    let field = |name: &str| -> Value {
        let text = |s: &str| {
            if s.trim().is_empty() {
                Value::Missing
            } else {
                Value::Text(s.to_string())
            }
        };
        match name {
            "ordered_qty" => Value::Num(line.ordered_qty as f64),
            "delivered_qty" => Value::Num(line.delivered_qty as f64),
            "due_date" => Value::Date(line.due_date),
            "delivered_date" => line.delivered_date.map_or(Value::Missing, Value::Date),
            "reason_code" => text(reason_of(line)),
            "on_time" => Value::Bool(score.on_time),
            "in_full" => Value::Bool(score.in_full),
            "otif" => Value::Bool(score.otif()),
            "sku" => text(&line.sku),
            other => text(member_of(line, other)),
        }
    };
    let whole = |v: f64| v.round().clamp(-1e15, 1e15) as i64;
    let den = match &m.denominator {
        None => 1,
        Some(e) => match e.eval(&field).amount() {
            Some(v) => whole(v),
            None => return [0, 0],
        },
    };
    if den == 0 {
        return [0, 0];
    }
    match m.numerator.eval(&field).amount() {
        Some(v) => [whole(v), den],
        None => [0, 0],
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
    /// Adds one line: its total and its member in each of the scorer's dimensions.
    pub fn add_line(&mut self, line: &LineFact, scorer: &Scorer) {
        self.add_scored(line, &Tally::of_line(line, scorer), scorer);
    }

    /// Adds a line already scored as `t`: its total and its member in each dimension.
    fn add_scored(&mut self, line: &LineFact, t: &Tally, scorer: &Scorer) {
        self.total.add(t);
        for dim in scorer.dimensions() {
            self.add(dim, member_of(line, dim), t);
        }
    }

    /// What the metric store keeps of a line: [`Breakdown::add_line`] plus its delivery
    /// in [`DELIVERED_ON`].
    pub fn add_stored_line(&mut self, line: &LineFact, scorer: &Scorer) {
        // Scored once: this runs for every imported line.
        let t = Tally::of_line(line, scorer);
        self.add_scored(line, &t, scorer);
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
        scorer: &Scorer,
        keep: impl Fn(&LineFact) -> bool,
    ) -> Breakdown {
        let mut b = Breakdown::default();
        for l in lines.into_iter().filter(|l| keep(l)) {
            b.add_line(l, scorer);
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
            attrs: Vec::new(),
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
        let b = Breakdown::of_lines(
            &lines,
            &Scorer::new(ScoringParams::default(), costs.clone()),
            |_| true,
        );
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
        let l = Breakdown::of_lines(&lines, &Scorer::new(lenient, costs), |_| true).total;
        assert_eq!((l.counts.otif_lines, l.failures()), (3, 1));
    }

    #[test]
    fn catalogue_kpis_and_dimensions_are_tallied_per_line() {
        use crate::domain::catalogue::{Catalogue, KpiDef, Unit};
        use crate::domain::kpi::Metric;
        let kpi = |key: &str, unit: Unit, num: &str, den: Option<&str>| KpiDef {
            key: key.into(),
            name: key.into(),
            description: String::new(),
            unit,
            higher_is_better: false,
            numerator: num.into(),
            denominator: den.map(Into::into),
            target: None,
            at_risk: None,
        };
        let catalogue = Catalogue {
            dimensions: vec!["lane".into()],
            fields: vec!["ship_date".into()],
            kpis: vec![
                kpi(
                    "tally_test_slow",
                    Unit::Pct,
                    "days(ship_date, delivered_date) > 1",
                    Some("not is_empty(ship_date)"),
                ),
                kpi(
                    "tally_test_transit",
                    Unit::Average("days".into()),
                    "days(ship_date, delivered_date)",
                    None,
                ),
            ],
        };
        assert_eq!(catalogue.validate(), Ok(()));
        let slow = Metric::register(&catalogue.kpis[0], 0);
        let transit = Metric::register(&catalogue.kpis[1], 1);
        let with = |l: LineFact, lane: &str, ship: Option<i64>| {
            let mut l = l;
            l.attrs.push(("lane".into(), lane.into()));
            if let Some(days) = ship {
                let ship = l.due_date - chrono::Duration::days(days);
                l.attrs
                    .push(("ship_date".into(), crate::domain::period::fmt_date(ship)));
            }
            l.attrs.sort();
            l
        };
        let lines = [
            with(line("A", 10, 10, Some(0), None), "L1", Some(1)), // 1 day in transit
            with(line("A", 10, 10, Some(2), None), "L2", Some(1)), // 3 days: slow
            with(line("B", 10, 10, Some(0), None), "L2", None),    // not shipped: left out
            with(line("B", 10, 0, None, None), "L1", Some(2)),     // not delivered yet
        ];
        let scorer =
            Scorer::with_catalogue(ScoringParams::default(), CostBook::default(), &catalogue);
        let b = Breakdown::of_lines(&lines, &scorer, |_| true);
        // Slow: 1 of the 3 shipped lines; the open one counts in the denominator only.
        assert_eq!(b.total.counts.fraction(slow), (1, 3));
        // Transit: 1 + 3 days over the 2 lines with both dates (the rest left out).
        assert_eq!(b.total.counts.fraction(transit), (4, 2));
        assert_eq!(b.total.counts.value(transit), Some(2.0));
        let lanes: Vec<(&str, (i64, i64))> = b
            .members("lane")
            .map(|(m, t)| (m, t.counts.fraction(slow)))
            .collect();
        assert_eq!(lanes, vec![("L1", (0, 2)), ("L2", (1, 1))]);
        // Sums of parts stay exact, and negation takes them out again.
        let mut sum = b.total;
        sum.add(&b.total.negated());
        assert_eq!(sum, Tally::default());
        // Without the catalogue the lines tally as before, with no measure.
        let plain = Breakdown::of_lines(
            &lines,
            &Scorer::new(ScoringParams::default(), CostBook::default()),
            |_| true,
        );
        assert_eq!(
            plain.total.counts.measures,
            [[0; 2]; crate::domain::catalogue::MAX_KPIS]
        );
        assert!(!plain.dimensions.contains_key("lane"));
    }
}
