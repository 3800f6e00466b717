//! Materiality: what a KPI miss costs. With unit costs (per SKU, else per category) and the
//! penalty rule (`penalty_share_of_cost`, 3 % of cost of goods as retailer OTIF programmes
//! fine), each line that fails OTIF puts `ordered_qty × unit cost × share` at stake. Totals
//! are given for the card and per segment (site, carrier, customer, category, reason
//! code), so causes can be ranked by money, not only by points.

use crate::domain::evidence::LineFact;
use crate::domain::kpi::ScoringParams;
use crate::domain::period::Week;
use crate::domain::tally::{Breakdown, Tally};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Unit costs: by SKU, with per-category costs as the fallback.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostBook {
    pub by_sku: HashMap<String, f64>,
    pub by_category: HashMap<String, f64>,
}

impl CostBook {
    pub fn is_empty(&self) -> bool {
        self.by_sku.is_empty() && self.by_category.is_empty()
    }

    pub fn unit_cost(&self, sku: &str, category: &str) -> Option<f64> {
        self.by_sku
            .get(sku)
            .or_else(|| self.by_category.get(category))
            .copied()
    }
}

/// Money at stake in one segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SegmentMoney {
    pub dimension: String,
    pub member: String,
    pub at_stake: f64,
    pub failed_lines: i64,
}

/// Money at stake for a card's week.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Materiality {
    /// The penalty's share of cost of goods (0.03 = 3 %).
    pub penalty_share: f64,
    /// Total at stake on the week's failed lines that have a cost.
    pub at_stake: f64,
    pub failed_lines: i64,
    /// Failed lines with no unit cost (not counted in the money).
    pub uncosted_failed_lines: i64,
    /// Segments by money at stake, largest first (top 5 per dimension).
    pub by_segment: Vec<SegmentMoney>,
    pub summary: String,
}

impl Materiality {
    /// Money at stake of a segment, if it failed any costed line.
    pub fn of(&self, dimension: &str, member: &str) -> Option<f64> {
        self.by_segment
            .iter()
            .find(|s| s.dimension == dimension && s.member == member)
            .map(|s| s.at_stake)
    }
}

/// Money at stake for a scope's tallied lines under the rules in force (their penalty
/// share; the scoring and unit costs were applied when the lines were tallied): the one
/// way every card, segment and digest line gets its figure. `b` carries a `site`
/// dimension for the network.
pub fn at_stake(b: &Breakdown, rules: &crate::domain::rules::Rules) -> Materiality {
    of_breakdown(b, rules.penalty_share())
}

/// Money at stake in `week` for `lines` (others are ignored), tallied here: for tests and
/// callers that hold raw lines. `network` adds the site dimension.
pub fn materiality(
    lines: &[LineFact],
    week: Week,
    params: ScoringParams,
    costs: &CostBook,
    penalty_share: f64,
    network: bool,
) -> Materiality {
    let scorer = super::tally::Scorer::new(params, costs.clone());
    let mut b = Breakdown::default();
    for l in lines.iter().filter(|l| week.contains(l.due_date)) {
        b.add_line(l, &scorer);
        if network {
            b.add("site", &l.site, &Tally::of_line(l, &scorer));
        }
    }
    of_breakdown(&b, penalty_share)
}

/// Money at stake of a breakdown: each failing line puts `ordered_qty × unit cost ×
/// penalty share` at stake; segments per dimension (site when present, carrier, customer,
/// category, reason code), top 5 of each.
pub fn of_breakdown(b: &Breakdown, penalty_share: f64) -> Materiality {
    let money_of = |t: &Tally| t.failed_cost_cents as f64 / 100.0 * penalty_share;
    let failed = b.total.failures();
    let uncosted = b.total.uncosted_failures;
    let at_stake = money_of(&b.total);
    let mut by_segment: Vec<SegmentMoney> = ["carrier", "category", "customer", "reason", "site"]
        .into_iter()
        .flat_map(|dimension| {
            let mut v: Vec<SegmentMoney> = b
                .members(dimension)
                .filter(|(_, t)| t.costed_failures() > 0)
                .map(|(member, t)| SegmentMoney {
                    dimension: dimension.to_string(),
                    member: if dimension == "reason" && member.is_empty() {
                        "no reason code".to_string()
                    } else {
                        member.to_string()
                    },
                    at_stake: round2(money_of(t)),
                    failed_lines: t.costed_failures(),
                })
                .collect();
            v.sort_by(|a, b| b.at_stake.total_cmp(&a.at_stake));
            v.truncate(5);
            v
        })
        .collect();
    by_segment.sort_by(|a, b| b.at_stake.total_cmp(&a.at_stake));
    let summary = if failed == 0 {
        "nothing at stake: every line was on time and in full".to_string()
    } else {
        format!(
            "{} at stake on {} failed line{} ({:.0} % penalty on cost of goods){}",
            money(at_stake),
            failed - uncosted,
            if failed - uncosted == 1 { "" } else { "s" },
            penalty_share * 100.0,
            if uncosted > 0 {
                format!("; {uncosted} failed line(s) have no unit cost")
            } else {
                String::new()
            }
        )
    };
    Materiality {
        penalty_share,
        at_stake: round2(at_stake),
        failed_lines: failed,
        uncosted_failed_lines: uncosted,
        by_segment,
        summary,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// "12,345.67" (no currency symbol: costs are in whatever currency they were given in).
pub fn money(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}.{frac:02}", if cents < 0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::parse_date;

    fn line(
        sku: &str,
        category: &str,
        carrier: &str,
        ordered: i64,
        got: i64,
        late: bool,
    ) -> LineFact {
        let due = parse_date("2026-11-10").unwrap();
        LineFact {
            site: "DAL".into(),
            customer: "MegaMart".into(),
            carrier: carrier.into(),
            sku: sku.into(),
            category: category.into(),
            ordered_qty: ordered,
            delivered_qty: got,
            due_date: due,
            delivered_date: Some(due + chrono::Duration::days(if late { 2 } else { 0 })),
            reason_code: late.then(|| "carrier_late".to_string()),
            attrs: Vec::new(),
        }
    }

    #[test]
    fn money_at_stake_per_line_and_segment_ranked_by_money() {
        let week = Week::containing(parse_date("2026-11-10").unwrap());
        let costs = CostBook {
            by_sku: HashMap::from([("TV-1".to_string(), 400.0)]),
            by_category: HashMap::from([("Dairy".to_string(), 2.0)]),
        };
        let lines = vec![
            // 100 units of milk late: 100 × 2 × 3 % = 6.00
            line("MILK-1", "Dairy", "FastFreight", 100, 100, true),
            // 10 TVs short: 10 × 400 × 3 % = 120.00
            line("TV-1", "Electronics", "Coastal", 10, 8, false),
            // on time and in full: nothing
            line("TV-1", "Electronics", "Coastal", 10, 10, false),
            // failed, but no cost known
            line("TOY-1", "Toys", "Coastal", 5, 1, false),
        ];
        let m = materiality(&lines, week, ScoringParams::default(), &costs, 0.03, false);
        assert_eq!((m.failed_lines, m.uncosted_failed_lines), (3, 1));
        assert!((m.at_stake - 126.0).abs() < 1e-9);
        // By money, Coastal (the TVs, a small points impact) ranks above FastFreight.
        assert_eq!(m.of("carrier", "Coastal"), Some(120.0));
        assert_eq!(m.of("carrier", "FastFreight"), Some(6.0));
        // Every costed failure is MegaMart's: the largest segment, first.
        assert_eq!(m.of("customer", "MegaMart"), Some(126.0));
        assert_eq!(m.by_segment[0].at_stake, 126.0);
        assert!(m
            .summary
            .starts_with("126.00 at stake on 2 failed lines (3 % penalty"));
        assert!(m.summary.contains("1 failed line(s) have no unit cost"));
        assert_eq!(money(1234567.891), "1,234,567.89");
    }
}
