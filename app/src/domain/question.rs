//! What a drill-down question asks, in terms the data can answer, and what Opsight looks
//! up for it before an agent answers.
//!
//! [`resolve`] reads a question (with the conversation's earlier ones for context: "and for
//! Dallas?" keeps the last question's kind and moves it to Dallas) into an [`Intent`]. The
//! questions service runs the look-ups the intent needs (another period's figures, the
//! failing lines, the last insight) and sends them with the evidence pack as
//! `custom_inputs.lookups`, so every agent answers from the same data and the claims check
//! covers it. Matching is by words, deterministic and in English; what it does not
//! recognise is [`Ask::Outside`], answered with what can be asked.

use super::evidence::{EvidencePack, NETWORK};
use serde::{Deserialize, Serialize};

/// What is asked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ask {
    /// Why did the KPI move: the diagnosis.
    #[default]
    Why,
    /// Which members of a dimension (or of any) are hit hardest.
    Segments { dimension: Option<String> },
    /// One member's figures.
    Member { dimension: String, member: String },
    /// The KPI against another period.
    Compare { against: Against },
    /// Money at stake.
    Money,
    /// What to do, and who owns it.
    Actions,
    /// Whether the data is complete and fresh.
    Data,
    /// The failing lines, of one member when named.
    Lines {
        dimension: Option<String>,
        member: Option<String>,
    },
    /// What changed since the card's last insight.
    SinceLast,
    /// Not something the data can answer.
    Outside,
}

/// The period a comparison is against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The period before (the card's own comparison).
    Previous,
    /// The same period a year earlier.
    YearAgo,
    /// The last complete calendar month before the period.
    LastMonth,
    /// A period named in the question (`2026-W40`, `2026-10`, `2026-Q3`).
    Period(String),
}

/// A question resolved: what it asks, and about which site when not the conversation's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Intent {
    pub ask: Ask,
    /// A site code other than the conversation's (`network` for the whole network).
    #[serde(default)]
    pub site: Option<String>,
}

/// What a question can name: the pack's dimensions and members, and the sites.
pub struct Vocabulary<'a> {
    pub pack: &'a EvidencePack,
    /// Every site: (code, name).
    pub sites: &'a [(String, String)],
}

/// Pads a text as ` word word ` in lower case, punctuation as spaces, so `has(" word")`
/// matches a word's start.
fn normalise(text: &str) -> String {
    let mut out = String::from(" ");
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' || c == '$' || c == '€' || c == '£' {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    out.push(' ');
    out
}

fn contains_name(q: &str, name: &str) -> bool {
    let n = normalise(name);
    n.trim().len() >= 2 && q.contains(&n)
}

/// Whether the question names a site: by code, by name, or by its name without the words
/// every site's name has ("Dallas" for "Dallas DC").
fn names_site(q: &str, code: &str, name: &str) -> bool {
    const GENERIC: &[&str] = &[
        "dc",
        "distribution",
        "center",
        "centre",
        "warehouse",
        "site",
        "fc",
        "hub",
    ];
    let short: Vec<String> = normalise(name)
        .split_whitespace()
        .filter(|w| !GENERIC.contains(w))
        .map(str::to_string)
        .collect();
    contains_name(q, code)
        || contains_name(q, name)
        || (!short.is_empty() && contains_name(q, &short.join(" ")))
}

/// The words people use for a dimension (plural and singular).
fn dimension_words(dimension: &str) -> Vec<String> {
    let d = dimension.to_lowercase();
    let mut out = vec![d.clone(), format!("{d}s")];
    if let Some(stem) = d.strip_suffix('y') {
        out.push(format!("{stem}ies"));
    }
    if d == "sku" {
        out.push("product".into());
        out.push("products".into());
        out.push("item".into());
        out.push("items".into());
    }
    if d == "customer" {
        out.push("client".into());
        out.push("clients".into());
        out.push("account".into());
        out.push("accounts".into());
    }
    out
}

/// What one question says on its own: a kind when it has one, a site, a member.
struct Read {
    ask: Option<Ask>,
    site: Option<String>,
    member: Option<(String, String)>,
}

fn read(question: &str, v: &Vocabulary) -> Read {
    let q = normalise(question);
    let has = |words: &[&str]| words.iter().any(|w| q.contains(&format!(" {w}")));
    let dimension = v
        .pack
        .contributions
        .iter()
        .map(|d| d.dimension.as_str())
        .find(|d| {
            dimension_words(d)
                .iter()
                .any(|w| q.contains(&format!(" {w} ")))
        });
    // A dimension the pack has no split by ("which lanes", with no lane dimension).
    let member = v.pack.contributions.iter().find_map(|d| {
        d.segments
            .iter()
            .filter(|s| !s.member.starts_with("other ("))
            .find(|s| contains_name(&q, &s.member))
            .map(|s| (d.dimension.clone(), s.member.clone()))
    });
    let site = if has(&["network", "all sites", "every site", "all dcs"]) {
        Some(NETWORK.to_string())
    } else {
        v.sites
            .iter()
            .find(|(code, name)| names_site(&q, code, name))
            .map(|(code, _)| code.clone())
    };
    let ask = if has(&[
        "last insight",
        "previous insight",
        "last diagnosis",
        "last refresh",
        "since the insight",
    ]) {
        Some(Ask::SinceLast)
    } else if has(&[
        "show",
        "list",
        "which orders",
        "which lines",
        "examples",
        "give me the",
    ]) && has(&["line", "order", "late", "short", "fail", "miss"])
    {
        Some(Ask::Lines {
            dimension: member
                .as_ref()
                .map(|m| m.0.clone())
                .or(dimension.map(str::to_string)),
            member: member.as_ref().map(|m| m.1.clone()),
        })
    } else if has(&[
        "cost",
        "money",
        "$",
        "€",
        "£",
        "dollar",
        "euro",
        "penalt",
        "at stake",
        "how much is",
        "spend",
        "financial",
        "revenue",
    ]) {
        Some(Ask::Money)
    } else if let Some(against) = against(question, &q) {
        Some(Ask::Compare { against })
    } else if has(&[
        "data", "complete", "missing", "trust", "quality", "fresh", "reliable", "accurate",
    ]) {
        Some(Ask::Data)
    } else if has(&[
        "what should",
        "what do we do",
        "what can we do",
        "next step",
        "action",
        "who owns",
        "owner",
        "responsible",
        "fix",
        "recommend",
        "do about",
    ]) {
        Some(Ask::Actions)
    } else if dimension.is_some()
        || (has(&[
            "which",
            "who ",
            "where",
            "hardest",
            "worst",
            "most",
            "biggest",
            "top ",
            "breakdown",
            "segment",
        ]) && member.is_none())
    {
        Some(Ask::Segments {
            dimension: dimension.map(str::to_string),
        })
    } else if member.is_some() {
        // A member alone ("what about RoadRunner?"): its kind comes from the conversation.
        None
    } else if has(&[
        "why",
        "cause",
        "reason",
        "explain",
        "what happened",
        "going on",
        "root",
        "drop",
        "down",
        "fell",
        "fall",
        "worse",
        "problem",
        "wrong",
        "change",
        "moved",
        "up",
    ]) {
        Some(Ask::Why)
    } else {
        None
    };
    Read { ask, site, member }
}

/// A comparison's period, when the question asks for one.
fn against(question: &str, q: &str) -> Option<Against> {
    let has = |words: &[&str]| words.iter().any(|w| q.contains(&format!(" {w}")));
    // A period label written in the question.
    let label = question
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '?' | '(' | ')'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .find(|w| w.len() >= 6 && super::period::Period::parse(w).is_ok());
    if let Some(l) = label {
        return Some(Against::Period(l.to_uppercase()));
    }
    if has(&[
        "year ago",
        "last year",
        "a year",
        "same week last",
        "same month last",
        "previous year",
        "yoy",
    ]) {
        Some(Against::YearAgo)
    } else if has(&["last month", "previous month", "month before"]) {
        Some(Against::LastMonth)
    } else if has(&[
        "compare",
        "compared",
        "vs",
        "versus",
        "last week",
        "previous",
        "before",
        "trend",
        "earlier",
    ]) {
        Some(Against::Previous)
    } else {
        None
    }
}

/// Resolves a question in a conversation: `earlier` are the conversation's earlier
/// questions, oldest first. A question that names only a site ("and for Dallas?") or only
/// a member ("and RoadRunner?") keeps the last question's kind; one that names no site
/// keeps the last one's site.
pub fn resolve(earlier: &[String], question: &str, v: &Vocabulary) -> Intent {
    let mut last: Option<Intent> = None;
    for q in earlier {
        last = Some(step(last.as_ref(), q, v));
    }
    step(last.as_ref(), question, v)
}

fn step(last: Option<&Intent>, question: &str, v: &Vocabulary) -> Intent {
    let r = read(question, v);
    let named = r.site.is_some();
    // Naming the conversation's own site moves the question back to it.
    let site = match r.site {
        Some(s) if s == v.pack.scope.site => None,
        Some(s) => Some(s),
        None => last.and_then(|l| l.site.clone()),
    };
    let ask = match r.ask {
        Some(ask) => ask,
        None => match (r.member, last) {
            // "and RoadRunner?": the last kind, for this member.
            (Some((dimension, member)), Some(l)) => match &l.ask {
                Ask::Lines { .. } => Ask::Lines {
                    dimension: Some(dimension),
                    member: Some(member),
                },
                _ => Ask::Member { dimension, member },
            },
            (Some((dimension, member)), None) => Ask::Member { dimension, member },
            // "and for Dallas?": the last question again, there.
            (None, Some(l)) if named && site != l.site => l.ask.clone(),
            (None, None) if named => Ask::Why,
            _ => Ask::Outside,
        },
    };
    Intent { ask, site }
}

/// A failing line, as shown in an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FailedLine {
    pub order_id: String,
    pub line_no: i64,
    pub site: String,
    pub customer: String,
    pub carrier: String,
    pub sku: String,
    pub category: String,
    pub due_date: String,
    pub delivered_date: Option<String>,
    pub ordered_qty: i64,
    pub delivered_qty: i64,
    pub reason_code: Option<String>,
    /// `late`, `short` or `late and short`.
    pub failure: String,
}

/// The failing lines of a scope: how many, out of how many, and the first few.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineSample {
    /// `carrier = RoadRunner`, when filtered.
    pub filter: Option<String>,
    pub lines: i64,
    pub failing: i64,
    /// At most [`LineSample::SHOWN`], earliest due first.
    pub shown: Vec<FailedLine>,
}

impl LineSample {
    pub const SHOWN: usize = 15;
}

/// The KPI in another period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeriodFigure {
    pub label: String,
    pub start: String,
    pub end: String,
    pub value: Option<f64>,
    pub numerator: i64,
    pub denominator: i64,
    /// The asked period's value minus this one (points for ratio KPIs).
    pub difference: Option<f64>,
}

/// The card's last insight, for "what changed since".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LastInsight {
    pub created_at: String,
    pub period_label: String,
    pub value: Option<f64>,
    pub headline: String,
    /// Its causes: "carrier RoadRunner".
    pub causes: Vec<String>,
}

/// What Opsight looked up for a question (`custom_inputs.lookups`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lookups {
    pub intent: Intent,
    #[serde(default)]
    pub against: Option<PeriodFigure>,
    #[serde(default)]
    pub lines: Option<LineSample>,
    #[serde(default)]
    pub last_insight: Option<LastInsight>,
    /// Why a look-up could not be made ("no lines are kept for source-fed KPIs").
    #[serde(default)]
    pub unavailable: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack() -> EvidencePack {
        use crate::domain::evidence::{pack_from_lines, LineFact, Scope};
        use crate::domain::period::{parse_date, Week};
        let as_of = parse_date("2026-11-21").unwrap();
        let week = Week::latest_complete(as_of);
        let mut lines = Vec::new();
        for (n, w) in [week.previous(), week].into_iter().enumerate() {
            for i in 0..8 {
                lines.push(LineFact {
                    site: "ATL".into(),
                    customer: ["Acme Foods", "C2"][i % 2].into(),
                    carrier: ["RoadRunner", "FastFreight"][(i / 2) % 2].into(),
                    sku: "SKU-1".into(),
                    category: "Grocery".into(),
                    ordered_qty: 10,
                    delivered_qty: 10,
                    due_date: w.start,
                    delivered_date: Some(w.start + chrono::Days::new((n * i % 3) as u64)),
                    reason_code: None,
                    attrs: Vec::new(),
                });
            }
        }
        let scope = Scope::otif_for_tests("ATL", "Atlanta");
        let rules = crate::domain::rules::sample_rules();
        pack_from_lines(scope, week, as_of, &lines, &[], Some(as_of), &rules)
    }

    fn ask(earlier: &[&str], q: &str) -> Intent {
        let p = pack();
        let sites = vec![
            ("ATL".to_string(), "Atlanta DC".to_string()),
            ("DAL".to_string(), "Dallas DC".to_string()),
        ];
        let earlier: Vec<String> = earlier.iter().map(|s| s.to_string()).collect();
        resolve(
            &earlier,
            q,
            &Vocabulary {
                pack: &p,
                sites: &sites,
            },
        )
    }

    #[test]
    fn each_kind_of_question_is_recognised() {
        let kinds = [
            ("Why is OTIF down?", Ask::Why),
            (
                "Which customers are hit hardest?",
                Ask::Segments {
                    dimension: Some("customer".into()),
                },
            ),
            ("Where is it worst?", Ask::Segments { dimension: None }),
            (
                "What about RoadRunner?",
                Ask::Member {
                    dimension: "carrier".into(),
                    member: "RoadRunner".into(),
                },
            ),
            (
                "How does this compare with last month?",
                Ask::Compare {
                    against: Against::LastMonth,
                },
            ),
            (
                "And the same week a year ago?",
                Ask::Compare {
                    against: Against::YearAgo,
                },
            ),
            (
                "Compare with 2026-W40",
                Ask::Compare {
                    against: Against::Period("2026-W40".into()),
                },
            ),
            ("How much is this costing us?", Ask::Money),
            ("What should we do and who owns it?", Ask::Actions),
            ("Is the data complete?", Ask::Data),
            (
                "Show me the late lines for RoadRunner",
                Ask::Lines {
                    dimension: Some("carrier".into()),
                    member: Some("RoadRunner".into()),
                },
            ),
            ("What changed since the last insight?", Ask::SinceLast),
            ("What will the weather be on Friday?", Ask::Outside),
        ];
        for (q, want) in kinds {
            assert_eq!(ask(&[], q).ask, want, "{q}");
        }
        assert_eq!(ask(&[], "Why is OTIF down?").site, None);
    }

    #[test]
    fn follow_ups_keep_the_context() {
        let dallas = ask(&["Which customers are hit hardest?"], "and for Dallas?");
        assert_eq!(dallas.site.as_deref(), Some("DAL"));
        assert_eq!(
            dallas.ask,
            Ask::Segments {
                dimension: Some("customer".into())
            }
        );
        // The site stays for the next question that names none.
        let next = ask(
            &["Which customers are hit hardest?", "and for Dallas?"],
            "what should we do?",
        );
        assert_eq!(
            (next.ask, next.site.as_deref()),
            (Ask::Actions, Some("DAL"))
        );
        let rr = ask(
            &["Show me the late lines for Acme Foods"],
            "and RoadRunner?",
        );
        assert_eq!(
            rr.ask,
            Ask::Lines {
                dimension: Some("carrier".into()),
                member: Some("RoadRunner".into())
            }
        );
        assert_eq!(
            ask(&[], "and for the network?").site.as_deref(),
            Some("network")
        );
        // The conversation's own site is no change of site, and brings it back.
        assert_eq!(ask(&[], "why is Atlanta down?").site, None);
        let back = ask(
            &["Which customers are hit hardest?", "and for Dallas?"],
            "and for Atlanta?",
        );
        assert_eq!(
            (back.ask, back.site),
            (
                Ask::Segments {
                    dimension: Some("customer".into())
                },
                None
            )
        );
        // "since last week" is a comparison, not the last insight.
        assert_eq!(
            ask(&[], "What changed since last week?").ask,
            Ask::Compare {
                against: Against::Previous
            }
        );
    }
}
