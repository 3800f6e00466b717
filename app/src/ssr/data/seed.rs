//! `opsight seed-demo`: a realistic demo network, generated relative to the reference date
//! and deterministic for a given seed.
//!
//! 12 DCs, 180 days of due dates (plus a week of open orders ahead), 5 carriers, 18
//! customers, 8 categories, reason codes on most failures, weekday seasonality, and four
//! planted problems in the latest complete week, each discoverable in the evidence:
//!
//! | site | problem | what the evidence shows |
//! |---|---|---|
//! | DAL | carrier "RoadRunner Freight" runs late | carrier rate effect, `carrier_late` failures up |
//! | ATL | stockout in "Beverages" | category rate effect on in-full, `stockout` failures up |
//! | CHI | delivery confirmations (PODs) missing | lines past due without a delivered date: a data problem |
//! | PHX | volume surge at a structurally weaker DC | site mix effect on network OTIF |

use super::import::LineWriter;
use crate::domain::evidence::LineFact;
use crate::domain::period::Week;
use crate::domain::tally::OrderLine;
use crate::ssr::store::facts::{self, Site};
use crate::ssr::store::Db;
use chrono::{Datelike, Duration, NaiveDate, Weekday};

pub const SITES: [(&str, &str, &str); 12] = [
    ("ATL", "Atlanta DC", "South"),
    ("CHI", "Chicago DC", "Midwest"),
    ("COL", "Columbus DC", "Midwest"),
    ("DAL", "Dallas DC", "South"),
    ("DEN", "Denver DC", "West"),
    ("KCY", "Kansas City DC", "Midwest"),
    ("LAX", "Los Angeles DC", "West"),
    ("MEM", "Memphis DC", "South"),
    ("NWK", "Newark DC", "Northeast"),
    ("ORL", "Orlando DC", "South"),
    ("PHX", "Phoenix DC", "West"),
    ("SEA", "Seattle DC", "West"),
];
pub const CARRIERS: [&str; 5] = [
    "RoadRunner Freight",
    "BlueLine Logistics",
    "Summit Carriers",
    "Prairie Express",
    "Coastal Haul",
];
pub const CUSTOMERS: [&str; 18] = [
    "MegaMart",
    "FreshCo",
    "ValueWay",
    "HomeBase",
    "QuickStop",
    "GreenGrocer",
    "CityMarket",
    "SuperSave",
    "Northwind Stores",
    "Harbor Foods",
    "PrimeOutlet",
    "DailyNeeds",
    "Corner Pantry",
    "BigBasket US",
    "Sunrise Markets",
    "Metro Wholesale",
    "Family Foods",
    "Trail Outfitters",
];
pub const CATEGORIES: [&str; 8] = [
    "Beverages",
    "Dry Grocery",
    "Frozen",
    "Dairy",
    "Household",
    "Personal Care",
    "Snacks",
    "Pet Care",
];

/// SplitMix64: small, fast and deterministic; quality is ample for demo data (and for the
/// accuracy benchmark's worlds).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.f() * n as f64) as usize % n.max(1)
    }
    /// An index drawn with these weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SeedOptions {
    /// Target number of order lines (the generator lands within a few percent).
    pub lines: usize,
    pub as_of: NaiveDate,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
    pub lines: usize,
    pub sites: usize,
    pub first_due: NaiveDate,
    pub last_due: NaiveDate,
}

/// Generates the demo lines (no I/O).
pub fn generate(opts: SeedOptions) -> Vec<OrderLine> {
    let mut rng = Rng(opts.seed);
    let focus = Week::latest_complete(opts.as_of);
    let first = opts.as_of - Duration::days(180);
    let last = opts.as_of + Duration::days(6);
    // Relative site volumes, and a site's structural late/short probabilities.
    let site_volume: Vec<f64> = SITES
        .iter()
        .enumerate()
        .map(|(i, _)| 0.7 + 0.06 * ((i * 7) % 11) as f64)
        .collect();
    let site_late: Vec<f64> = SITES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.0 == "PHX" {
                0.12
            } else {
                0.015 + 0.003 * ((i * 5) % 7) as f64
            }
        })
        .collect();
    let site_short: Vec<f64> = SITES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.0 == "PHX" {
                0.06
            } else {
                0.012 + 0.002 * ((i * 3) % 5) as f64
            }
        })
        .collect();
    let carrier_share = [0.32, 0.24, 0.18, 0.14, 0.12];
    let customer_share: Vec<f64> = (0..CUSTOMERS.len())
        .map(|i| 1.0 / (1.0 + i as f64 * 0.25))
        .collect();
    let category_share = [0.16, 0.2, 0.1, 0.12, 0.14, 0.1, 0.12, 0.06];

    let days = (last - first).num_days() as usize + 1;
    let weekday_factor = |d: NaiveDate| match d.weekday() {
        Weekday::Sat => 0.45,
        Weekday::Sun => 0.25,
        _ => 1.15,
    };
    let mean_weekday: f64 = (0..7)
        .map(|i| weekday_factor(first + Duration::days(i)))
        .sum::<f64>()
        / 7.0;
    let per_day = opts.lines as f64 / days as f64 / mean_weekday;
    let volume_total: f64 = site_volume.iter().sum();

    let mut out = Vec::with_capacity(opts.lines + opts.lines / 20);
    let mut order_no = 0u64;
    for day_index in 0..days {
        let due = first + Duration::days(day_index as i64);
        let in_focus = focus.contains(due);
        for (s, (code, _, _)) in SITES.iter().enumerate() {
            let mut volume = per_day * weekday_factor(due) * site_volume[s] / volume_total;
            if in_focus && *code == "PHX" {
                volume *= 3.5; // planted: volume surge at a weaker DC
            }
            // Lines come in orders of 1-6 lines for one customer and carrier.
            let mut remaining = (volume * (0.9 + 0.2 * rng.f())).round() as usize;
            while remaining > 0 {
                order_no += 1;
                let n = (1 + rng.below(6)).min(remaining);
                remaining -= n;
                let customer = rng.weighted(&customer_share);
                let mut carrier_w = carrier_share;
                if *code == "DAL" {
                    carrier_w[0] = 0.45; // RoadRunner is Dallas's main carrier
                }
                let carrier = rng.weighted(&carrier_w);
                for line_no in 1..=n {
                    let category = rng.weighted(&category_share);
                    let ordered = 1 + rng.below(40) as i64;
                    let mut late_p = site_late[s] * if carrier == 3 { 1.4 } else { 1.0 };
                    let mut short_p = site_short[s];
                    let mut late_reason = "carrier_late";
                    let mut short_reason = if rng.f() < 0.55 {
                        "short_pick"
                    } else {
                        "stockout"
                    };
                    if in_focus && *code == "DAL" && carrier == 0 {
                        late_p = 0.45; // planted: RoadRunner falls apart at Dallas
                    }
                    if in_focus && *code == "ATL" && category == 0 {
                        short_p = 0.55; // planted: beverage stockout at Atlanta
                        short_reason = "stockout";
                    }
                    if rng.f() < 0.3 {
                        late_reason = "appointment_missed";
                    }
                    let late = rng.f() < late_p;
                    let short = rng.f() < short_p;
                    let delivered_qty = if short {
                        ((ordered as f64) * (0.4 + 0.5 * rng.f())).floor() as i64
                    } else {
                        ordered
                    };
                    let mut delivered_date = Some(if late {
                        due + Duration::days(1 + rng.below(3) as i64)
                    } else {
                        due - Duration::days(rng.below(3) as i64)
                    });
                    let mut reason = match (late, short) {
                        (true, _) => Some(late_reason),
                        (false, true) => Some(short_reason),
                        _ => None,
                    };
                    // About one failure in eight has no reason code; rarely a data mismatch.
                    if reason.is_some() && rng.f() < 0.12 {
                        reason = None;
                    } else if reason.is_some() && rng.f() < 0.03 {
                        reason = Some("data_mismatch");
                    }
                    if in_focus && *code == "CHI" && rng.f() < 0.3 {
                        // planted: goods arrived in full, but no POD was recorded
                        delivered_date = None;
                        reason = None;
                    }
                    let (delivered_qty, delivered_date) = match delivered_date {
                        // Not delivered yet as of the reference date: open order.
                        Some(d) if d >= opts.as_of => (0, None),
                        other => (delivered_qty, other),
                    };
                    out.push(OrderLine {
                        order_id: format!("SO-{order_no:08}"),
                        line_no: line_no as i64,
                        fact: LineFact {
                            site: code.to_string(),
                            customer: CUSTOMERS[customer].to_string(),
                            carrier: CARRIERS[carrier].to_string(),
                            sku: format!(
                                "{}-{:04}",
                                &CATEGORIES[category][..3].to_ascii_uppercase(),
                                rng.below(60)
                            ),
                            category: CATEGORIES[category].to_string(),
                            ordered_qty: ordered,
                            delivered_qty,
                            due_date: due,
                            delivered_date,
                            reason_code: reason.map(str::to_string),
                            attrs: Vec::new(),
                        },
                        site_name: None,
                        site_region: None,
                    });
                }
            }
        }
    }
    out
}

/// Writes the demo network through the import's [`LineWriter`] (one transaction). Refuses
/// to touch a database that already has order lines unless `reset` is set, in which case
/// lines, the metric store and insights are replaced.
pub async fn seed_demo(db: &Db, opts: SeedOptions, reset: bool) -> anyhow::Result<SeedReport> {
    let existing = facts::count_lines(db).await?;
    if existing > 0 && !reset {
        anyhow::bail!("the database already has {existing} order lines; run `opsight seed-demo --reset` to replace them");
    }
    let started = std::time::Instant::now();
    let lines = generate(opts);
    tracing::info!(
        lines = lines.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo lines generated"
    );
    let mut writer = LineWriter::begin(db, "demo").await?;
    if reset {
        writer.clear().await?;
    }
    let sites: Vec<Site> = SITES
        .iter()
        .map(|(code, name, region)| Site {
            code: code.to_string(),
            name: name.to_string(),
            region: region.to_string(),
        })
        .collect();
    writer.upsert_sites(&sites).await?;
    let first_due = lines
        .iter()
        .map(|l| l.fact.due_date)
        .min()
        .unwrap_or(opts.as_of);
    let last_due = lines
        .iter()
        .map(|l| l.fact.due_date)
        .max()
        .unwrap_or(opts.as_of);
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        writer.push(i as u64 + 1, line).await?;
    }
    writer.finish().await?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo lines written"
    );
    Ok(SeedReport {
        lines: count,
        sites: SITES.len(),
        first_due,
        last_due,
    })
}
