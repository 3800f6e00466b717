//! How often the built-in analyst names the right cause (`.ci/bench-accuracy`, or
//! `cargo bench -p server --bench accuracy -- OUT_DIR SEEDS`).
//!
//! Generates worlds with planted causes, builds each one's evidence pack the way the
//! metric store does (tallied lines, the default rules of a fresh store) and asks the
//! built-in analyst. Kinds of world (`KINDS`): a carrier running late, a stockout in a
//! category, short picks everywhere (a process, no segment), a customer mix shift with no
//! rate change, two causes at once (the late carrier and the stockout), missing delivery
//! dates (a data problem), nothing at all; each at a site and at the network (six sites),
//! at week and month grain, over SEEDS seeds.
//!
//! Scores: top-1 (the first cause named is the planted one) for single-cause worlds, both
//! causes in the top 3 for two-cause worlds, a data cause first where dates are missing,
//! no cause where nothing changed. Every answer's text goes through the claims check
//! (unsupported claims in the analyst's own answers), and a planted wrong number and an
//! invented carrier in each headline must be caught.
//!
//! Writes `worlds.jsonl` (one line per world: what was planted, what the analyst named)
//! and `world-N.csv` (lines and OTIF lines per period, site, carrier, customer and
//! category) to OUT_DIR for `accuracy.py`, which runs wise-pizza on the same data and
//! prints both tables.

use app::domain::analyst::analyse;
use app::domain::claims;
use app::domain::evidence::{build_evidence, EvidenceInput, LineFact, Scope, NETWORK};
use app::domain::insight::{Effect, Insight};
use app::domain::kpi::{score_line, KpiCounts, Metric};
use app::domain::materiality::CostBook;
use app::domain::period::{Grain, Period};
use app::domain::rules::Rules;
use app::domain::tally::{Breakdown, Scorer, Tally};
use app::ssr::data::seed::Rng;
use chrono::{Days, NaiveDate};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;

const KINDS: [&str; 7] = [
    "carrier_late",
    "stockout",
    "short_picks_everywhere",
    "customer_mix",
    "two_causes",
    "missing_dates",
    "nothing",
];
const CARRIERS: [&str; 6] = ["C1", "C2", "C3", "C4", "C5", "C6"];
const CATEGORIES: [&str; 8] = ["K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8"];
const CUSTOMERS: usize = 20;
const SITES: [&str; 6] = ["S1", "S2", "S3", "S4", "S5", "S6"];
/// Lines due per day in a scope.
const LINES_PER_DAY: u64 = 600;

/// The lines of one world's two periods.
fn lines(
    kind: &str,
    network: bool,
    previous: &Period,
    current: &Period,
    seed: u64,
) -> Vec<LineFact> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xDEAD_BEEF);
    // Structural differences between members, the same in both periods.
    let carrier_late: Vec<f64> = (0..CARRIERS.len()).map(|_| 0.02 + 0.04 * rng.f()).collect();
    let category_short: Vec<f64> = (0..CATEGORIES.len())
        .map(|_| 0.015 + 0.03 * rng.f())
        .collect();
    let site_late: Vec<f64> = (0..SITES.len()).map(|_| 0.02 * rng.f()).collect();
    let mut out = Vec::new();
    for (p, is_current) in [(previous, false), (current, true)] {
        let mut customer_w = vec![1.0; CUSTOMERS];
        // U5 runs structurally late; in the mix world its share of volume grows from
        // about 5% to about 25%.
        if kind == "customer_mix" && is_current {
            customer_w[4] = 6.3;
        }
        let mut day = p.start;
        while day <= p.end {
            for _ in 0..LINES_PER_DAY {
                let s = if network {
                    rng.weighted(&[3.0, 2.0, 2.0, 1.5, 1.0, 1.0])
                } else {
                    0
                };
                let c = rng.weighted(&[3.0, 2.0, 2.0, 1.5, 1.0, 1.0]);
                let k = rng.weighted(&[2.0, 2.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0]);
                let u = rng.weighted(&customer_w);
                let mut late_p = carrier_late[c] + site_late[s];
                let mut short_p = category_short[k];
                let mut late_reason = if rng.f() < 0.7 {
                    "carrier_late"
                } else {
                    "appointment_missed"
                };
                let mut short_reason = if rng.f() < 0.55 {
                    "short_pick"
                } else {
                    "stockout"
                };
                if u == 4 {
                    late_p += 0.22;
                    late_reason = "appointment_missed";
                }
                if is_current {
                    if matches!(kind, "carrier_late" | "two_causes") && c == 2 {
                        late_p += 0.30;
                        late_reason = "carrier_late";
                    }
                    if matches!(kind, "stockout" | "two_causes") && k == 1 {
                        short_p += 0.30;
                        short_reason = "stockout";
                    }
                    if kind == "short_picks_everywhere" && rng.f() < 0.07 {
                        short_p = 1.0;
                        short_reason = "short_pick";
                    }
                }
                let late = rng.f() < late_p;
                let short = rng.f() < short_p;
                let missing = kind == "missing_dates" && is_current && rng.f() < 0.12;
                let delivered_date = if missing {
                    None
                } else if late {
                    Some(day + Days::new(1 + rng.next_u64() % 3))
                } else {
                    Some(day)
                };
                let reason = match (late, short) {
                    (true, _) => Some(late_reason),
                    (false, true) => Some(short_reason),
                    _ => None,
                };
                out.push(LineFact {
                    site: SITES[s].into(),
                    customer: format!("U{}", u + 1),
                    carrier: CARRIERS[c].into(),
                    sku: format!("SKU-{}", rng.next_u64() % 200),
                    category: CATEGORIES[k].into(),
                    ordered_qty: 10,
                    delivered_qty: if short { 6 } else { 10 },
                    due_date: day,
                    delivered_date,
                    reason_code: reason.filter(|_| !missing).map(str::to_string),
                    attrs: Vec::new(),
                });
            }
            day = day + Days::new(1);
        }
    }
    out
}

/// The world's evidence pack, tallied the way the metric store tallies.
fn pack(
    lines: &[LineFact],
    network: bool,
    previous: &Period,
    current: &Period,
    rules: &Rules,
) -> app::domain::evidence::EvidencePack {
    let scorer = Scorer::new(rules.scoring(), CostBook::default());
    let tally = |p: &Period| {
        let mut b = Breakdown::default();
        for l in lines.iter().filter(|l| p.contains(l.due_date)) {
            b.add_line(l, &scorer);
            if network {
                b.add("site", &l.site, &Tally::of_line(l, &scorer));
            }
        }
        b
    };
    let as_of = current.end + Days::new(3);
    let past_due_open = lines
        .iter()
        .filter(|l| current.contains(l.due_date) && l.delivered_date.is_none())
        .count() as i64;
    let series: Vec<(Period, KpiCounts)> = current
        .trend()
        .into_iter()
        .map(|p| (p, KpiCounts::default()))
        .collect();
    build_evidence(EvidenceInput {
        scope: Scope {
            site: if network { NETWORK.into() } else { "S1".into() },
            site_name: if network {
                "the network".into()
            } else {
                "Site 1".into()
            },
            metric: Metric::OTIF,
            metric_name: "OTIF".into(),
            definition: String::new(),
            unit: "%".into(),
            focus: None,
        },
        period: *current,
        previous: *previous,
        as_of,
        current: &tally(current),
        prior: &tally(previous),
        past_due_open,
        series: &series,
        latest_data_date: Some(current.end),
        rules,
    })
}

/// A cause as the scores compare it: `carrier:C3`, `process:short_pick`, `data`.
fn key(dimension: &str, member: &str, effect: Effect) -> String {
    match effect {
        Effect::Data => "data".into(),
        Effect::Process => format!("process:{member}"),
        _ => format!("{dimension}:{member}"),
    }
}

fn planted(kind: &str) -> Vec<&'static str> {
    match kind {
        "carrier_late" => vec!["carrier:C3"],
        "stockout" => vec!["category:K2"],
        "short_picks_everywhere" => vec!["process:short_pick"],
        "customer_mix" => vec!["customer:U5"],
        "two_causes" => vec!["carrier:C3", "category:K2"],
        "missing_dates" => vec!["data"],
        _ => vec![],
    }
}

/// Whether the answer is right for the kind of world.
fn scores(kind: &str, named: &[String]) -> (bool, bool) {
    let want = planted(kind);
    match kind {
        "nothing" => (named.is_empty(), named.is_empty()),
        "two_causes" => {
            let top3 = want.iter().all(|w| named.iter().take(3).any(|n| n == w));
            let top1 = named.first().is_some_and(|n| want.contains(&n.as_str()));
            (top1, top3)
        }
        _ => (
            named.first().is_some_and(|n| n == want[0]),
            named.iter().take(3).any(|n| n == want[0]),
        ),
    }
}

/// Plants a wrong number and an invented carrier in the headline: the claims check must
/// mark both.
fn hostile(insight: &Insight, change: f64) -> Insight {
    let mut bad = insight.clone();
    let wrong = (change.abs() * 3.0 + 17.3).round() + 0.7;
    bad.headline = format!("OTIF fell {wrong:.1} points because Zephyr Haulage was late");
    bad
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let out_dir = std::path::PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| "target/accuracy".into()),
    );
    let seeds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    std::fs::create_dir_all(&out_dir)?;
    let rules = default_rules()?;
    let inputs = json!({"rules": rules.in_force()});
    let mut manifest = std::fs::File::create(out_dir.join("worlds.jsonl"))?;
    // (kind, scope, grain) → [worlds, top-1, top-3]
    let mut table: BTreeMap<(String, &str, &str), [u32; 3]> = BTreeMap::new();
    let (mut unsupported, mut claims_read, mut hostile_caught, mut hostile_planted) = (0, 0, 0, 0);
    let mut n = 0;
    let started = std::time::Instant::now();
    for kind in KINDS {
        for network in [false, true] {
            for grain in [Grain::Week, Grain::Month] {
                let current = Period::containing(
                    grain,
                    NaiveDate::from_ymd_opt(2026, 10, 14).unwrap_or_default(),
                );
                let previous = current.previous();
                for seed in 0..seeds {
                    n += 1;
                    let world_seed = seed * 1000 + n as u64;
                    let lines = lines(kind, network, &previous, &current, world_seed);
                    let pack = pack(&lines, network, &previous, &current, &rules);
                    let (narrative, insight) = analyse(&pack, &rules, None);
                    let named: Vec<String> = insight
                        .root_causes
                        .iter()
                        .map(|c| key(&c.dimension, &c.member, c.effect))
                        .collect();
                    let (top1, top3) = scores(kind, &named);
                    let given = claims::Evidence::new(&pack, &inputs);
                    let checked = claims::check(&given, &narrative, Some(&insight));
                    claims_read += checked.len();
                    unsupported += claims::unsupported(&checked);
                    let unsupported_claims: Vec<String> = checked
                        .iter()
                        .filter(|c| !c.supported)
                        .map(|c| format!("{} ({}): {}", c.text, c.part, c.note))
                        .collect();
                    let mut missed: Vec<String> = Vec::new();
                    if let Some(change) = pack.change {
                        let bad = claims::check(&given, "", Some(&hostile(&insight, change)));
                        hostile_planted += 2;
                        let flagged = |text: &dyn Fn(&str) -> bool| {
                            bad.iter()
                                .any(|c| c.part == "headline" && !c.supported && text(&c.text))
                        };
                        let caught = usize::from(flagged(&|t| t.ends_with(" points")))
                            + usize::from(flagged(&|t| t == "Zephyr Haulage"));
                        hostile_caught += caught;
                        if caught < 2 {
                            missed = bad
                                .iter()
                                .map(|c| format!("{}: {}", c.text, c.note))
                                .collect();
                        }
                    }
                    let scope = if network { "network" } else { "site" };
                    let e = table
                        .entry((kind.to_string(), scope, grain.key()))
                        .or_default();
                    e[0] += 1;
                    e[1] += u32::from(top1);
                    e[2] += u32::from(top3);
                    writeln!(
                        manifest,
                        "{}",
                        json!({"world": n, "kind": kind, "scope": scope, "grain": grain.key(), "seed": seed,
                               "planted": planted(kind), "analyst": named, "top1": top1, "top3": top3,
                               "change_pp": pack.change, "significant": pack.noise.significant,
                               "suspect": pack.data_checks.suspect(), "hostile_missed": missed, "unsupported": unsupported_claims,
                               "dims": if network { vec!["site", "carrier", "customer", "category"] } else { vec!["carrier", "customer", "category"] }})
                    )?;
                    write_csv(
                        &out_dir.join(format!("world-{n}.csv")),
                        &lines,
                        &previous,
                        &rules,
                    )?;
                }
            }
        }
    }
    println!(
        "accuracy: {n} worlds, {seeds} seeds each, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("| world | scope | grain | worlds | analyst top-1 | analyst top-3 |");
    println!("|---|---|---|---|---|---|");
    for ((kind, scope, grain), [w, t1, t3]) in &table {
        println!("| {kind} | {scope} | {grain} | {w} | {t1}/{w} | {t3}/{w} |");
    }
    println!(
        "claims in the analyst's answers: {claims_read} read, {unsupported} unsupported; planted wrong claims caught: {hostile_caught}/{hostile_planted}"
    );
    Ok(())
}

/// Lines and OTIF lines per period, site, carrier, customer and category: what wise-pizza
/// reads (scored with the same rules).
fn write_csv(
    path: &std::path::Path,
    lines: &[LineFact],
    previous: &Period,
    rules: &Rules,
) -> anyhow::Result<()> {
    // (current period?, site, carrier, customer, category) → (lines, OTIF lines).
    type Group<'a> = (bool, &'a str, &'a str, &'a str, &'a str);
    let mut groups: BTreeMap<Group, (i64, i64)> = BTreeMap::new();
    for l in lines {
        let s = score_line(
            rules.scoring(),
            l.ordered_qty,
            l.delivered_qty,
            l.due_date,
            l.delivered_date,
        );
        let g = groups
            .entry((
                !previous.contains(l.due_date),
                &l.site,
                &l.carrier,
                &l.customer,
                &l.category,
            ))
            .or_default();
        g.0 += 1;
        g.1 += i64::from(s.otif());
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "period,site,carrier,customer,category,lines,otif")?;
    for ((current, site, carrier, customer, category), (lines, otif)) in groups {
        let p = if current { "current" } else { "previous" };
        writeln!(
            f,
            "{p},{site},{carrier},{customer},{category},{lines},{otif}"
        )?;
    }
    Ok(())
}

/// The rules a fresh store starts with (its migrations' defaults).
fn default_rules() -> anyhow::Result<Rules> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("opsight-accuracy-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let db = app::ssr::store::connect(&format!("sqlite:{}/rules.db", dir.display())).await?;
        let rules = app::ssr::store::rules::load(&db).await?;
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(rules)
    })
}
