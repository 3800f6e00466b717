//! Text grounding: every number and every named member or reason an answer writes (in its
//! headline, narrative, causes' evidence and next actions) is matched against what the
//! agent was given: the evidence pack and the rest of the request's `custom_inputs` (the
//! rules, the look-ups; the question and feedback give words, not figures). A claim that
//! matches is supported; one that does not is marked
//! on the card and counted in the lineage.
//!
//! **Numbers.** A figure is read with its unit: `pp`/`points` (a change: matched against
//! changes, contributions, points and gaps), `%` (a level or a share, or a change written
//! loosely), `lines`/`failures`/`orders` (a count or a count's change), or bare (any figure
//! of the evidence). Signs are ignored (text says "down 3.4"). The tolerance is the
//! written rounding: half a unit of the last digit written (±0.05 for `3.4`, ±0.5 for `3`),
//! or 0.5% of the figure when that is larger; `k` and `M` scale. Derived figures count too:
//! each segment's share of the change, failure-count changes. Not read as claims: digits
//! inside names (`SKU-12`, `W47`, `L2`), dates and period labels, years, times, and bare
//! whole numbers under 10 ("top 3", "2 causes").
//!
//! **Names.** A run of capitalised words, or a `snake_case` code, is a name. It is
//! supported when every word occurs in the request (members, sites, KPI names, reason
//! codes, playbooks, the question) or is common vocabulary (month and day names, OTIF, DC,
//! …). A lone capitalised word starting a sentence is an ordinary word, not a name.
//! Names of members, sites and reason codes that match are recorded as supported claims.
//!
//! Next actions copied from a playbook are supported as a whole; only what an agent added
//! to them is read. Text in `backticks` (a command, a field name) is not read.

use super::evidence::EvidencePack;
use super::insight::Insight;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Relative part of a number's tolerance (when larger than its written rounding).
pub const REL_TOLERANCE: f64 = 0.005;
/// At most this many supported claims are kept per answer; unsupported ones are all kept
/// (up to [`MAX_UNSUPPORTED`]), so padding an answer with true figures hides nothing.
pub const MAX_CLAIMS: usize = 200;
/// At most this many unsupported claims are kept (a reply is bounded in size anyway).
pub const MAX_UNSUPPORTED: usize = 1000;

/// One claim of an answer's text and its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Claim {
    /// Where it was written: `headline`, `narrative`, `cause 2`, `action 1`.
    pub part: String,
    /// The claim as written: `−25 points`, `Zephyr Freight`.
    pub text: String,
    pub supported: bool,
    /// What it matched, or why it is not supported.
    pub note: String,
}

/// How many claims were read and how many are not supported.
pub fn unsupported(claims: &[Claim]) -> usize {
    claims.iter().filter(|c| !c.supported).count()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A change, contribution or gap (percentage points for ratio KPIs).
    Points,
    /// A level or share.
    Level,
    /// A count of lines, failures or days.
    Count,
    /// A figure under a key not classified above.
    Other,
    /// A number inside the evidence's own sentences.
    Text,
}

/// A written number's unit, which decides what it may match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Points,
    Percent,
    Count,
    Bare,
}

impl Unit {
    fn accepts(self, kind: Kind) -> bool {
        match self {
            Unit::Points => matches!(kind, Kind::Points | Kind::Text),
            Unit::Percent => !matches!(kind, Kind::Count),
            Unit::Count => matches!(kind, Kind::Count | Kind::Other | Kind::Text),
            Unit::Bare => true,
        }
    }
}

#[derive(Clone, Debug)]
struct Figure {
    value: f64,
    kind: Kind,
    label: String,
}

/// What an answer may refer to: the figures and the words of its request.
pub struct Evidence {
    figures: Vec<Figure>,
    words: HashSet<String>,
    /// Named things (lowercased name → what it is: "carrier RoadRunner").
    names: BTreeMap<String, String>,
    playbook_actions: Vec<String>,
    change: Option<f64>,
    change_unit: &'static str,
}

/// Words people and agents capitalise that are no claim about the data.
const COMMON: &[&str] = &[
    "otif",
    "kpi",
    "kpis",
    "dc",
    "dcs",
    "eta",
    "asn",
    "wms",
    "erp",
    "sku",
    "skus",
    "pp",
    "ok",
    "i",
    "we",
    "us",
    "eu",
    "uk",
    "q1",
    "q2",
    "q3",
    "q4",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "iso",
    "week",
    "month",
    "quarter",
    "year",
    "opsight",
    "the",
    "a",
    "an",
    "this",
    "that",
    "these",
    "it",
    "no",
    "not",
    "and",
    "or",
    "but",
    "so",
    "if",
    "on",
    "in",
    "at",
    "by",
    "for",
    "of",
    "to",
];

impl Evidence {
    /// `inputs` is the request's `custom_inputs` (evidence, rules, question, look-ups);
    /// `pack` gives the derived figures, and the figures themselves when `inputs` has no
    /// `evidence`.
    pub fn new(pack: &EvidencePack, inputs: &Value) -> Evidence {
        let mut e = Evidence {
            figures: Vec::new(),
            words: COMMON.iter().map(|w| w.to_string()).collect(),
            names: BTreeMap::new(),
            playbook_actions: Vec::new(),
            change: pack.change,
            change_unit: pack.scope.metric.change_unit(),
        };
        // The request carries the pack as JSON already; serialise it only when it does not.
        let serialised;
        let pack_json = match inputs.get("evidence") {
            Some(v) => v,
            None => {
                serialised = serde_json::to_value(pack).unwrap_or(Value::Null);
                &serialised
            }
        };
        e.walk(pack_json, &mut Vec::new(), None);
        if let Some(obj) = inputs.as_object() {
            for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "evidence") {
                // What people wrote (the question, feedback reasons) gives words, not
                // figures: "did it fall 37 points?" does not make 37 points a fact.
                if matches!(k.as_str(), "question" | "feedback") {
                    e.learn(&v.to_string());
                } else {
                    e.walk(v, &mut vec![k.clone()], None);
                }
            }
        }
        e.derive(pack);
        e.name(
            pack.scope.site.as_str(),
            format!("site {}", pack.scope.site),
        );
        e.name(&pack.scope.site_name, format!("site {}", pack.scope.site));
        e.name(&pack.scope.metric_name, "the KPI".into());
        for d in &pack.contributions {
            for s in d
                .segments
                .iter()
                .filter(|s| !s.member.starts_with("other ("))
            {
                e.name(&s.member, format!("{} {}", d.dimension, s.member));
            }
        }
        for r in pack
            .otif_tree
            .by_reason
            .iter()
            .chain(&pack.previous_otif_tree.by_reason)
        {
            e.name(&r.reason, format!("reason {}", r.reason));
        }
        if let Some(playbooks) = inputs.pointer("/rules/playbooks").and_then(Value::as_array) {
            e.playbook_actions = playbooks
                .iter()
                .filter_map(|p| p.get("action").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
        }
        e
    }

    /// Adds a text's words (and the parts of hyphenated ones: `2026-W47`) to the vocabulary.
    fn learn(&mut self, text: &str) {
        for w in words(text) {
            let w = w.to_lowercase();
            for part in w.split('-').filter(|p| !p.is_empty()) {
                self.words.insert(part.to_string());
            }
            self.words.insert(w);
        }
    }

    fn name(&mut self, name: &str, what: String) {
        if !name.trim().is_empty() {
            self.learn(name);
            self.names.insert(name.trim().to_lowercase(), what);
        }
    }

    fn walk(&mut self, v: &Value, path: &mut Vec<String>, key: Option<&str>) {
        match v {
            Value::Number(n) => {
                if let Some(value) = n.as_f64() {
                    self.figures.push(Figure {
                        value,
                        kind: key.map_or(Kind::Other, kind_of),
                        label: path.join(" "),
                    });
                }
            }
            Value::String(s) => {
                self.learn(s);
                // Numbers inside the evidence's own sentences ("no delivery for 9 days"),
                // with the unit they are written in.
                for n in numbers(s) {
                    self.figures.push(Figure {
                        value: n.value,
                        kind: match n.unit {
                            Unit::Points => Kind::Points,
                            Unit::Percent => Kind::Level,
                            Unit::Count => Kind::Count,
                            Unit::Bare => Kind::Text,
                        },
                        label: path.join(" "),
                    });
                }
            }
            Value::Array(items) => {
                for item in items {
                    let tag = ["member", "reason", "dimension", "label", "key"]
                        .iter()
                        .find_map(|k| item.get(*k).and_then(Value::as_str));
                    if let Some(t) = tag {
                        path.push(t.to_string());
                    }
                    self.walk(item, path, key);
                    if tag.is_some() {
                        path.pop();
                    }
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.learn(k);
                    let shown = !matches!(
                        k.as_str(),
                        "contributions" | "segments" | "by_reason" | "reasons" | "by_segment"
                    );
                    if shown {
                        path.push(k.replace('_', " "));
                    }
                    self.walk(item, path, Some(k.as_str()));
                    if shown {
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }

    /// Figures an answer quotes that the pack holds only as parts: each segment's share of
    /// the change, and failure-count changes.
    fn derive(&mut self, pack: &EvidencePack) {
        if let Some(change) = pack.change.filter(|c| c.abs() > 1e-9) {
            for d in &pack.contributions {
                for s in &d.segments {
                    for (part, v) in [("total", s.total), ("rate", s.rate), ("mix", s.mix)] {
                        self.figures.push(Figure {
                            value: 100.0 * v / change,
                            kind: Kind::Level,
                            label: format!(
                                "{} {}'s {part} as a share of the change",
                                d.dimension, s.member
                            ),
                        });
                    }
                }
            }
            if let Some(tree) = &pack.tree_change {
                let mut by_reason: BTreeMap<&str, f64> = BTreeMap::new();
                for r in &tree.reasons {
                    *by_reason.entry(r.reason.as_str()).or_default() += r.points;
                }
                for (reason, points) in by_reason {
                    self.figures.push(Figure {
                        value: points,
                        kind: Kind::Points,
                        label: format!("{reason}'s points over every branch"),
                    });
                    self.figures.push(Figure {
                        value: 100.0 * points / change,
                        kind: Kind::Level,
                        label: format!("{reason} as a share of the change"),
                    });
                }
                for r in &tree.reasons {
                    self.figures.push(Figure {
                        value: 100.0 * r.points / change,
                        kind: Kind::Level,
                        label: format!("{} as a share of the change", r.reason),
                    });
                }
            }
        }
        for r in &pack.otif_tree.by_reason {
            self.figures.push(Figure {
                value: (r.failures - pack.previous_failures(&r.reason)) as f64,
                kind: Kind::Count,
                label: format!("change in {} failures", r.reason),
            });
        }
        if let Some(tree) = &pack.tree_change {
            for r in &tree.reasons {
                self.figures.push(Figure {
                    value: (r.failures - r.previous_failures) as f64,
                    kind: Kind::Count,
                    label: format!("change in {} failures ({})", r.reason, r.branch),
                });
            }
        }
        self.figures.push(Figure {
            value: (pack.denominator - pack.previous_denominator) as f64,
            kind: Kind::Count,
            label: "change in lines".into(),
        });
    }

    fn find(&self, n: &Number) -> Option<&Figure> {
        let tolerance = n.tolerance();
        self.figures
            .iter()
            .filter(|f| n.unit.accepts(f.kind))
            .find(|f| {
                (f.value.abs() - n.value.abs()).abs()
                    <= tolerance.max(REL_TOLERANCE * f.value.abs())
            })
    }

    fn known(&self, word: &str) -> bool {
        let w = word.to_lowercase().replace('’', "'");
        self.words.contains(&w)
            || (w.contains('-') && w.split('-').all(|p| p.is_empty() || self.words.contains(p)))
            || self.names.contains_key(&w)
            // Plurals and possessives of known words ("carriers", "RoadRunner's").
            || w.strip_suffix("'s").is_some_and(|s| self.words.contains(s) || self.names.contains_key(s))
            || w.strip_suffix('s').is_some_and(|s| self.words.contains(s))
    }

    /// Claims in one part of an answer.
    fn read(&self, part: &str, text: &str, out: &mut Vec<Claim>) {
        let text = &without_code(text);
        for n in numbers(text) {
            let written = n.written.clone();
            match self.find(&n) {
                Some(f) => out.push(Claim {
                    part: part.into(),
                    text: written,
                    supported: true,
                    note: format!("the evidence's {} ({})", f.label, trim(f.value)),
                }),
                None => out.push(Claim {
                    part: part.into(),
                    text: written,
                    supported: false,
                    note: format!(
                        "no figure of the evidence is {}{} (±{}){}",
                        trim(n.value.abs()),
                        match n.unit {
                            Unit::Points => format!(" {}", self.change_unit),
                            Unit::Percent => "%".into(),
                            Unit::Count => " (a count)".into(),
                            Unit::Bare => String::new(),
                        },
                        trim(n.tolerance()),
                        self.change
                            .map(|c| format!("; the change is {} {}", trim(c), self.change_unit))
                            .unwrap_or_default()
                    ),
                }),
            }
        }
        for mut name in names(text) {
            // A sentence's first word is capitalised anyway: an ordinary word there
            // ("Review Orion Haulage") is not part of the name.
            if name.sentence_start
                && name.words.len() > 1
                && !self.names.contains_key(&name.text.to_lowercase())
                && self.words.contains(&name.words[0].to_lowercase())
            {
                name.words.remove(0);
                name.text = name.words.join(" ");
                name.sentence_start = false;
            }
            let all_known = name.words.iter().all(|w| self.known(w));
            let lower = name.text.to_lowercase();
            let named = self.names.get(&lower).or_else(|| {
                name.words
                    .iter()
                    .find_map(|w| self.names.get(&w.to_lowercase()))
            });
            if all_known {
                if let Some(what) = named {
                    out.push(Claim {
                        part: part.into(),
                        text: name.text.clone(),
                        supported: true,
                        note: format!("{what} is in the evidence"),
                    });
                }
            } else if !(name.sentence_start && name.words.len() == 1 && !name.code) {
                out.push(Claim {
                    part: part.into(),
                    text: name.text.clone(),
                    supported: false,
                    note: format!(
                        "no {} named '{}' in the evidence",
                        if name.code {
                            "code"
                        } else {
                            "member, site or reason"
                        },
                        name.text
                    ),
                });
            }
        }
    }

    /// The words of a next action that a playbook did not supply.
    fn beyond_playbook<'a>(&self, action: &'a str) -> Option<&'a str> {
        self.playbook_actions
            .iter()
            .filter(|p| !p.is_empty())
            .find_map(|p| action.strip_prefix(p.as_str()))
    }
}

/// Checks every claim of an answer: its text (the narrative) and its insight.
pub fn check(evidence: &Evidence, text: &str, insight: Option<&Insight>) -> Vec<Claim> {
    let mut out = Vec::new();
    if let Some(i) = insight {
        evidence.read("headline", &i.headline, &mut out);
    }
    evidence.read("narrative", text, &mut out);
    if let Some(i) = insight {
        for (n, c) in i.root_causes.iter().enumerate() {
            evidence.read(&format!("cause {}", n + 1), &c.evidence, &mut out);
        }
        for (n, a) in i.next_actions.iter().enumerate() {
            let part = format!("action {}", n + 1);
            match evidence.beyond_playbook(&a.action) {
                Some(rest) => evidence.read(&part, rest, &mut out),
                None => evidence.read(&part, &a.action, &mut out),
            }
        }
    }
    let (mut supported, mut unsupported) = (0, 0);
    out.retain(|c| {
        let n = if c.supported {
            &mut supported
        } else {
            &mut unsupported
        };
        *n += 1;
        *n <= if c.supported {
            MAX_CLAIMS
        } else {
            MAX_UNSUPPORTED
        }
    });
    out
}

fn kind_of(key: &str) -> Kind {
    match key {
        "change" | "target_gap" | "mix" | "rate" | "total" | "mix_total" | "rate_total"
        | "points" | "standard_error" | "impact_pp" => Kind::Points,
        k if k.ends_with("_pp") => Kind::Points,
        "value" | "previous_value" | "target" | "share_pct" | "previous_share_pct" => Kind::Level,
        k if k.ends_with("_pct") => Kind::Level,
        "numerator"
        | "denominator"
        | "previous_numerator"
        | "previous_denominator"
        | "lines"
        | "otif_lines"
        | "failures"
        | "late_only"
        | "short_only"
        | "late_and_short"
        | "previous_failures"
        | "lines_due"
        | "past_due_open"
        | "failures_without_reason"
        | "failed_lines"
        | "uncosted_failed_lines"
        | "days_since_latest_data"
        | "usual_lines_due" => Kind::Count,
        _ => Kind::Other,
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.replace('-', "−")
    }
}

/// A number as written.
#[derive(Clone, Debug, PartialEq)]
struct Number {
    value: f64,
    decimals: u32,
    scale: f64,
    unit: Unit,
    written: String,
}

impl Number {
    /// Half a unit of the last digit written, at the written scale.
    fn tolerance(&self) -> f64 {
        0.5 * 10f64.powi(-(self.decimals as i32)) * self.scale + 1e-9
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The numbers of a text that are claims (see the module's notes for what is skipped).
fn numbers(text: &str) -> Vec<Number> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Digits glued to a name or a date part: `SKU-12`, `W47`, `2026-11-21`'s tail.
        let glued_before = start > 0
            && (is_word_char(chars[start - 1])
                || chars[start - 1] == '.'
                || (matches!(chars[start - 1], '-' | '/' | ':')
                    && start > 1
                    && is_word_char(chars[start - 2])));
        let mut end = i;
        let mut decimals = 0u32;
        let mut seen_point = false;
        let mut grouped = false;
        while end < chars.len() {
            let c = chars[end];
            if c.is_ascii_digit() {
                if seen_point {
                    decimals += 1;
                }
                end += 1;
            } else if c == '.'
                && !seen_point
                && chars.get(end + 1).is_some_and(|d| d.is_ascii_digit())
            {
                seen_point = true;
                end += 1;
            } else if c == ','
                && !seen_point
                && chars
                    .get(end + 1..end + 4)
                    .is_some_and(|d| d.iter().all(|x| x.is_ascii_digit()))
                && !chars.get(end + 4).is_some_and(|d| d.is_ascii_digit())
            {
                grouped = true;
                end += 1;
            } else {
                break;
            }
        }
        i = end;
        let digits: String = chars[start..end].iter().filter(|c| **c != ',').collect();
        let Ok(mut value) = digits.parse::<f64>() else {
            continue;
        };
        let next = chars.get(end).copied();
        // Dates, times and ranges of labels: `2026-11`, `12:30`, `2026/11`.
        let glued_after = matches!(next, Some('-' | '/' | ':'))
            && chars.get(end + 1).is_some_and(|c| c.is_alphanumeric());
        if glued_before || glued_after {
            continue;
        }
        // The unit, after optional spaces.
        let rest: String = chars[end..].iter().take(24).collect();
        let after = rest.trim_start();
        let lower = after.to_lowercase();
        let mut scale = 1.0;
        let mut written_end = end;
        let skipped = rest.chars().count() - after.chars().count();
        let unit = if after.starts_with('%') {
            written_end = end + skipped + 1;
            Unit::Percent
        } else if let Some(u) = ["percentage points", "points", "pts", "pp"]
            .iter()
            .find(|u| {
                lower.starts_with(*u)
                    && !lower[u.len()..].starts_with(|c: char| c.is_alphanumeric())
            })
        {
            written_end = end + skipped + u.chars().count();
            Unit::Points
        } else if [
            "lines",
            "line",
            "failures",
            "failure",
            "orders",
            "order lines",
        ]
        .iter()
        .any(|u| lower.starts_with(u))
        {
            Unit::Count
        } else if next.is_some_and(|c| c == 'k' || c == 'M')
            && !chars.get(end + 1).is_some_and(|c| c.is_alphanumeric())
        {
            scale = if next == Some('k') { 1e3 } else { 1e6 };
            written_end = end + 1;
            Unit::Bare
        } else if next.is_some_and(|c| c.is_alphabetic() || c == '×') {
            // `3PL`, `2nd`, `1.5×`: not a figure.
            continue;
        } else {
            Unit::Bare
        };
        value *= scale;
        let whole = decimals == 0 && scale < 2.0;
        // Years are written without a thousands separator; "2,050" is an amount.
        let year = !grouped && (1900.0..=2100.0).contains(&value);
        if unit == Unit::Bare && whole && (value < 10.0 || year) {
            continue;
        }
        // The sign written before it, if any.
        let signed_start = if start > 0 && matches!(chars[start - 1], '+' | '-' | '−' | '±') {
            start - 1
        } else {
            start
        };
        let written: String = chars[signed_start..written_end.min(chars.len())]
            .iter()
            .collect();
        out.push(Number {
            value,
            decimals,
            scale,
            unit,
            written: written.trim().to_string(),
        });
    }
    out
}

/// The text without its `code spans` (commands and field names, not claims about the data).
fn without_code(text: &str) -> String {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '\''))
        .map(|w| w.trim_matches(|c: char| c == '-' || c == '\''))
        .filter(|w| !w.is_empty())
}

/// A name as written.
#[derive(Clone, Debug, PartialEq)]
struct Name {
    text: String,
    words: Vec<String>,
    sentence_start: bool,
    /// A `snake_case` code rather than capitalised words.
    code: bool,
}

/// Runs of capitalised words, and `snake_case` codes.
fn names(text: &str) -> Vec<Name> {
    let mut out = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let mut run_at_start = false;
    let mut at_start = true;
    let flush = |run: &mut Vec<String>, at_start: bool, out: &mut Vec<Name>| {
        if !run.is_empty() {
            out.push(Name {
                text: run.join(" "),
                words: std::mem::take(run),
                sentence_start: at_start,
                code: false,
            });
        }
    };
    for raw in text.split_whitespace() {
        let opens = raw.starts_with(['(', '"', '“', '\'', '‘', '[']);
        let word = raw.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_'));
        let word = word
            .strip_suffix("'s")
            .or_else(|| word.strip_suffix("’s"))
            .unwrap_or(word);
        let ends = raw.ends_with(['.', '!', '?', ':', ';', ',', ')', '"', '”', ']']);
        let sentence_end = raw.ends_with(['.', '!', '?', ':']) || raw.ends_with(".\"");
        if raw.chars().all(|c| !c.is_alphanumeric()) {
            // A bullet or dash: what follows starts afresh.
            flush(&mut run, run_at_start, &mut out);
            at_start = matches!(raw, "-" | "•" | "*" | "—" | "–") || at_start;
            continue;
        }
        if opens {
            flush(&mut run, run_at_start, &mut out);
        }
        let has_letter = word.chars().any(char::is_alphabetic);
        if word.contains('_') && has_letter && !word.starts_with('_') {
            flush(&mut run, run_at_start, &mut out);
            out.push(Name {
                text: word.to_string(),
                words: vec![word.to_string()],
                sentence_start: false,
                code: true,
            });
        } else if word.chars().next().is_some_and(char::is_uppercase) {
            if run.is_empty() {
                run_at_start = at_start || opens;
            }
            run.push(word.to_string());
        } else {
            flush(&mut run, run_at_start, &mut out);
        }
        if ends {
            flush(&mut run, run_at_start, &mut out);
        }
        at_start = sentence_end;
    }
    flush(&mut run, run_at_start, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(f64, Unit)> {
        numbers(text)
            .into_iter()
            .map(|n| (n.value, n.unit))
            .collect()
    }

    #[test]
    fn numbers_are_read_with_their_units_and_names_digits_are_not() {
        assert_eq!(
            values("OTIF fell −3.4 pp to 91.5% on 1,680 lines; W47 SKU-12 2026-11-21 top 3"),
            [
                (3.4, Unit::Points),
                (91.5, Unit::Percent),
                (1680.0, Unit::Count)
            ]
        );
        assert_eq!(
            values("25 points, 2.5 percentage points"),
            [(25.0, Unit::Points), (2.5, Unit::Points)]
        );
        assert_eq!(
            values("12k at stake; 1.5× the usual; 3PL"),
            [(12000.0, Unit::Bare)]
        );
        assert_eq!(values("since 2026, at 12:30, (+12)"), [(12.0, Unit::Bare)]);
        let n = &numbers("down 3.4 pp")[0];
        assert!((n.tolerance() - 0.05).abs() < 1e-6);
        assert_eq!(numbers("−3.4 pp")[0].written, "−3.4 pp");
    }

    #[test]
    fn names_are_capitalised_runs_and_codes() {
        let n = names(
            "OTIF fell because Zephyr Freight was late. Carrier RoadRunner and carrier_late rose.",
        );
        let texts: Vec<(&str, bool)> = n
            .iter()
            .map(|n| (n.text.as_str(), n.sentence_start))
            .collect();
        assert_eq!(
            texts,
            [
                ("OTIF", true),
                ("Zephyr Freight", false),
                ("Carrier RoadRunner", true),
                ("carrier_late", false)
            ]
        );
    }

    fn pack() -> EvidencePack {
        crate::domain::evidence::late_carrier_pack()
    }

    fn given(p: &EvidencePack) -> Evidence {
        let rules = crate::domain::rules::sample_rules();
        Evidence::new(
            p,
            &serde_json::json!({"rules": rules.in_force(), "question": "why?"}),
        )
    }

    #[test]
    fn everything_the_builtin_analyst_writes_is_supported() {
        let p = pack();
        let (narrative, insight) =
            crate::domain::analyst::analyse(&p, &crate::domain::rules::sample_rules(), None);
        let claims = check(&given(&p), &narrative, Some(&insight));
        assert!(claims.len() > 8, "{claims:?}");
        let bad: Vec<&Claim> = claims.iter().filter(|c| !c.supported).collect();
        assert!(bad.is_empty(), "{bad:?}\n{narrative}\n{insight:?}");
        assert!(claims.iter().any(|c| c.text == "RoadRunner" && c.supported));
    }

    #[test]
    fn wrong_numbers_and_invented_names_are_marked_wherever_they_are_written() {
        let p = pack();
        let change = p.change.unwrap();
        let (_, mut insight) =
            crate::domain::analyst::analyse(&p, &crate::domain::rules::sample_rules(), None);
        insight.headline = format!(
            "OTIF fell 37 points at Dallas because Zephyr Freight was late ({:.1} pp)",
            change
        );
        insight.root_causes[0]
            .evidence
            .push_str("; 1,234 lines late at carrier_slow");
        insight
            .next_actions
            .push(crate::domain::insight::NextAction {
                action: "Carrier Orion Haulage's lanes must fix the 40% drop".into(),
                owner: "Transport".into(),
                priority: "high".into(),
            });
        let narrative = format!("OTIF moved {:.2} pp. RoadRunner is the problem.", change);
        let claims = check(&given(&p), &narrative, Some(&insight));
        let bad: Vec<(&str, &str)> = claims
            .iter()
            .filter(|c| !c.supported)
            .map(|c| (c.part.as_str(), c.text.as_str()))
            .collect();
        let n = insight.next_actions.len();
        let last_action = format!("action {n}");
        assert_eq!(
            bad,
            [
                ("headline", "37 points"),
                ("headline", "Zephyr Freight"),
                ("cause 1", "1,234"),
                ("cause 1", "carrier_slow"),
                (last_action.as_str(), "40%"),
                (last_action.as_str(), "Orion Haulage"),
            ],
            "{claims:?}"
        );
        // The true change, written to one decimal or two, is supported.
        assert!(
            claims
                .iter()
                .filter(|c| c.supported && c.note.contains("change"))
                .count()
                >= 2,
            "{claims:?}"
        );
        let wrong = claims.iter().find(|c| c.text == "37 points").unwrap();
        assert!(
            wrong
                .note
                .starts_with("no figure of the evidence is 37 pp (±0.5)"),
            "{}",
            wrong.note
        );
        assert_eq!(unsupported(&claims), 6);
    }

    #[test]
    fn amounts_with_separators_are_read_and_the_question_gives_no_figures() {
        assert_eq!(values("2,050 at stake in 2026"), [(2050.0, Unit::Bare)]);
        let p = pack();
        let asked = Evidence::new(
            &p,
            &serde_json::json!({"question": "did it fall 37 points?"}),
        );
        let claims = check(&asked, "OTIF fell 37 points.", None);
        assert!(
            claims.iter().any(|c| c.text == "37 points" && !c.supported),
            "{claims:?}"
        );
    }
}
