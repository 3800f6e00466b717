//! The team's own catalogue: dimensions beyond carrier, customer and category, extra
//! fields kept with each line, and KPIs defined as data.
//!
//! A KPI of the catalogue is a numerator over a denominator, each an expression over a
//! line's fields, summed over the lines due in a period: a condition counts the lines
//! meeting it ("lines delivered within 2 days of ship date"), a number adds up
//! ("days from order to delivery"). Its unit says how the two are shown: `pct`
//! (numerator / denominator in percent), `count` (the numerator alone) or any other word
//! (an average: numerator / denominator, shown with that word, e.g. `days`).
//!
//! The language, small on purpose (no loops, no calls out, bounded depth):
//!
//! ```text
//! expr   := or
//! or     := and ("or" and)*
//! and    := not ("and" not)*
//! not    := "not" not | cmp
//! cmp    := sum (("=" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum    := atom (("+" | "-") atom)*
//! atom   := number | 'text' | name | func "(" expr ("," expr)* ")" | "(" expr ")"
//! func   := days(a, b)   b − a in days
//!         | date(x)      x read as a date (YYYY-MM-DD)
//!         | number(x)    x read as a number
//!         | is_empty(x)  x is missing or empty
//! ```
//!
//! Names are the line's own fields (`site`, `customer`, `carrier`, `sku`, `category`,
//! `ordered_qty`, `delivered_qty`, `due_date`, `delivered_date`, `reason_code`, and the
//! scored `on_time`, `in_full`, `otif`) and the catalogue's dimensions and fields (text as
//! the source gave it; compared with a number or a date, read as one). A missing value
//! makes a comparison false and a sum skip the line, as SQL's NULL does.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

/// At most this many KPIs of the catalogue (each has two columns in the metric store).
pub const MAX_KPIS: usize = 8;
/// At most this many extra dimensions and fields.
pub const MAX_ATTRIBUTES: usize = 16;
/// Opsight's own names a catalogue name may not take, besides [`LINE_FIELDS`]: the
/// reason and delivery dimensions and the line's key.
const OWN_NAMES: [&str; 3] = ["reason", "delivered_on", "order_id"];

/// How a KPI's value is shown and how it moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// numerator / denominator, in percent; moves in percentage points.
    Pct,
    /// The numerator alone, a count.
    Count,
    /// numerator / denominator in this unit ("days"), an average.
    Average(String),
}

impl Unit {
    pub fn parse(s: &str) -> Unit {
        match s.trim() {
            "pct" | "%" | "percent" => Unit::Pct,
            "count" | "lines" => Unit::Count,
            other => Unit::Average(other.to_string()),
        }
    }

    /// The unit's key: `pct`, `count` or its word.
    pub fn key(&self) -> &str {
        match self {
            Unit::Pct => "pct",
            Unit::Count => "count",
            Unit::Average(w) => w,
        }
    }
}

/// A KPI defined as data (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KpiDef {
    /// Its key: lower-case letters, digits and `_` (URLs, rules and requests use it).
    pub key: String,
    pub name: String,
    /// What it measures, for people and agents.
    #[serde(default)]
    pub description: String,
    pub unit: Unit,
    pub higher_is_better: bool,
    /// Expressions (see the module docs), kept as written. Empty: a source returns the
    /// KPI's numerator and denominator itself (its `kpi = "<key>"`).
    pub numerator: String,
    /// `None`: every line (a count KPI ignores it).
    #[serde(default)]
    pub denominator: Option<String>,
    /// The network's target, in display units (written into the rule book once).
    #[serde(default)]
    pub target: Option<f64>,
    /// How far on the wrong side of the target is "at risk" rather than off target, in
    /// display units (written into the rule book once).
    #[serde(default)]
    pub at_risk: Option<f64>,
}

impl KpiDef {
    /// Whether a source returns its counts (it has no expressions).
    pub fn is_fed(&self) -> bool {
        self.numerator.trim().is_empty()
    }
}

/// The team's catalogue: extra dimensions, extra fields and KPIs. Part of what the
/// metric store is tallied with (a change re-tallies).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Catalogue {
    /// Extra dimensions: every line is broken down by them (packs, mix/rate, playbooks).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Extra fields kept with each line for KPIs' expressions (not broken down by).
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub kpis: Vec<KpiDef>,
}

impl Catalogue {
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty() && self.fields.is_empty() && self.kpis.is_empty()
    }

    /// Every attribute kept with a line: dimensions, then fields.
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.dimensions
            .iter()
            .chain(&self.fields)
            .map(String::as_str)
    }

    /// Checks names and parses every expression: the first problem, said for people.
    pub fn validate(&self) -> Result<(), String> {
        if self.kpis.len() > MAX_KPIS {
            return Err(format!(
                "{} KPIs are defined; at most {MAX_KPIS} are",
                self.kpis.len()
            ));
        }
        if self.dimensions.len() + self.fields.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "at most {MAX_ATTRIBUTES} extra dimensions and fields are kept with a line"
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for name in self.attributes() {
            check_name(name, "dimension or field")?;
            if seen.contains(&name) {
                return Err(format!("'{name}' is named twice"));
            }
            seen.push(name);
        }
        for kpi in &self.kpis {
            self.check_kpi(kpi)?;
            if self.kpis.iter().filter(|k| k.key == kpi.key).count() > 1 {
                return Err(format!("KPI '{}' is defined twice", kpi.key));
            }
        }
        Ok(())
    }

    fn check_kpi(&self, kpi: &KpiDef) -> Result<(), String> {
        check_name(&kpi.key, "KPI key")?;
        if super::kpi::Metric::BUILT_IN
            .iter()
            .any(|m| m.key() == kpi.key)
        {
            return Err(format!("KPI '{}' is a built-in KPI's key", kpi.key));
        }
        let at = |m: String| format!("KPI '{}': {m}", kpi.key);
        if kpi.name.trim().is_empty() || kpi.name.chars().count() > 60 {
            return Err(at("name must be 1 to 60 characters".into()));
        }
        if let Unit::Average(w) = &kpi.unit {
            if w.is_empty() || w.chars().count() > 12 || w.chars().any(|c| !c.is_alphabetic()) {
                return Err(at(format!(
                    "unit '{w}' is not pct, count or a word such as days"
                )));
            }
        }
        if kpi.is_fed() && kpi.denominator.is_some() {
            return Err(at("a KPI a source returns has no expressions".into()));
        }
        let expressions = std::iter::once(("numerator", &kpi.numerator))
            .chain(kpi.denominator.iter().map(|d| ("denominator", d)))
            .filter(|_| !kpi.is_fed());
        for (what, text) in expressions {
            let expr = Expr::parse(text).map_err(|e| at(format!("{what}: {e}")))?;
            if let Some(name) = expr.names().into_iter().find(|n| !self.knows(n)) {
                return Err(at(format!(
                    "{what} names '{name}', which is not a field (fields: {}{})",
                    LINE_FIELDS.join(", "),
                    self.attributes()
                        .map(|a| format!(", {a}"))
                        .collect::<String>()
                )));
            }
        }
        for (what, v) in [("target", kpi.target), ("at_risk", kpi.at_risk)] {
            if v.is_some_and(|v| !v.is_finite() || v.abs() > 1e12) {
                return Err(at(format!("{what} must be a number")));
            }
        }
        if kpi.at_risk.is_some_and(|b| b < 0.0) {
            return Err(at("at_risk is a band: zero or more".into()));
        }
        // As the rule book's `at_risk_band_pp` takes a percentage's band.
        if kpi.unit == Unit::Pct && kpi.at_risk.is_some_and(|b| !(0.1..=50.0).contains(&b)) {
            return Err(at(
                "at_risk is from 0.1 to 50 points for a percentage".into()
            ));
        }
        Ok(())
    }

    fn knows(&self, name: &str) -> bool {
        LINE_FIELDS.contains(&name) || self.attributes().any(|a| a == name)
    }

    /// Stable text of what tallies depend on (part of the store's fingerprint): the
    /// dimensions, the fields, and each KPI's key, place and expressions. Names,
    /// descriptions, units, directions, targets and bands change no count.
    pub fn tally_text(&self) -> String {
        let kpis: Vec<(&str, &str, Option<&str>)> = self
            .kpis
            .iter()
            .map(|k| {
                (
                    k.key.as_str(),
                    k.numerator.as_str(),
                    k.denominator.as_deref(),
                )
            })
            .collect();
        serde_json::to_string(&(&self.dimensions, &self.fields, kpis)).unwrap_or_default()
    }

    /// Makes its KPIs known in this process, each in the slot of its place.
    pub fn register(&self) {
        for (slot, kpi) in self.kpis.iter().enumerate() {
            super::kpi::Metric::register(kpi, slot);
        }
    }

    pub fn kpi(&self, key: &str) -> Option<&KpiDef> {
        self.kpis.iter().find(|k| k.key == key)
    }
}

/// A line's own fields an expression may name.
pub const LINE_FIELDS: [&str; 13] = [
    "site",
    "customer",
    "carrier",
    "sku",
    "category",
    "ordered_qty",
    "delivered_qty",
    "due_date",
    "delivered_date",
    "reason_code",
    "on_time",
    "in_full",
    "otif",
];

/// A catalogue name: 1 to 40 lower-case letters, digits and `_`, starting with a letter,
/// not one of Opsight's own.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "{what} '{name}' must be 1 to 40 lower-case letters, digits or _, starting with a letter"
        ));
    }
    if LINE_FIELDS.contains(&name) || OWN_NAMES.contains(&name) {
        return Err(format!("{what} '{name}' is one of Opsight's own names"));
    }
    Ok(())
}

/// A value while evaluating.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Missing,
    Bool(bool),
    Num(f64),
    Date(NaiveDate),
    Text(String),
}

impl Value {
    fn num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Text(t) => t.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            _ => None,
        }
    }

    fn date(&self) -> Option<NaiveDate> {
        match self {
            Value::Date(d) => Some(*d),
            Value::Text(t) => super::period::parse_date(t.trim().get(..10).unwrap_or(t.trim())),
            _ => None,
        }
    }

    fn truth(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Num(n) => *n != 0.0,
            Value::Text(t) => !t.is_empty(),
            Value::Date(_) => true,
            Value::Missing => false,
        }
    }

    /// What a line adds to a sum: a condition 1 or 0, a number itself, else nothing.
    pub fn amount(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Missing | Value::Date(_) => None,
            other => other.num(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Text(String),
    Name(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Op, Box<Expr>, Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Days(Box<Expr>, Box<Expr>),
    ToDate(Box<Expr>),
    ToNumber(Box<Expr>),
    IsEmpty(Box<Expr>),
}

/// Nesting an expression may have (a bound on the parser's recursion).
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(f64),
    Text(String),
    Word(String),
    Sym(&'static str),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    if text.len() > 2000 {
        return Err("is longer than 2000 characters".into());
    }
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Token::Num(
                s.parse().map_err(|_| format!("'{s}' is not a number"))?,
            ));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("a text in quotes is not closed".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Text(s));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "!=" | "<>" => Some("!="),
                "==" => Some("="),
                _ => None,
            };
            if let Some(s) = sym {
                out.push(Token::Sym(s));
                i += 2;
                continue;
            }
            let one = match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '+' => "+",
                '-' => "-",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                _ => return Err(format!("'{c}' is not understood")),
            };
            out.push(Token::Sym(one));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat_sym(&mut self, s: &'static str) -> bool {
        if self.peek() == Some(&Token::Sym(s)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(x)) if x == w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(format!("is nested more than {MAX_DEPTH} deep"))
        } else {
            Ok(())
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let mut e = self.and()?;
        while self.eat_word("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.eat_word("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_word("not") {
            self.deeper()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Token::Sym("=")) => Op::Eq,
            Some(Token::Sym("!=")) => Op::Ne,
            Some(Token::Sym("<")) => Op::Lt,
            Some(Token::Sym("<=")) => Op::Le,
            Some(Token::Sym(">")) => Op::Gt,
            Some(Token::Sym(">=")) => Op::Ge,
            _ => return Ok(left),
        };
        self.at += 1;
        Ok(Expr::Cmp(op, Box::new(left), Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        loop {
            if self.eat_sym("+") {
                e = Expr::Add(Box::new(e), Box::new(self.atom()?));
            } else if self.eat_sym("-") {
                e = Expr::Sub(Box::new(e), Box::new(self.atom()?));
            } else {
                return Ok(e);
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| "ends where a value was expected".to_string())?;
        self.at += 1;
        match token {
            Token::Num(n) => Ok(Expr::Num(n)),
            Token::Text(t) => Ok(Expr::Text(t)),
            Token::Sym("(") => {
                let e = self.or()?;
                if !self.eat_sym(")") {
                    return Err("a '(' is not closed".into());
                }
                Ok(e)
            }
            Token::Sym("-") => match self.peek().cloned() {
                Some(Token::Num(n)) => {
                    self.at += 1;
                    Ok(Expr::Num(-n))
                }
                _ => Err("'-' must be followed by a number here".into()),
            },
            Token::Word(w) if self.peek() == Some(&Token::Sym("(")) => {
                self.at += 1;
                self.deeper()?;
                let mut args = vec![self.or()?];
                while self.eat_sym(",") {
                    args.push(self.or()?);
                }
                self.depth -= 1;
                if !self.eat_sym(")") {
                    return Err(format!("{w}( is not closed"));
                }
                let given = args.len();
                let arity = |n: usize| {
                    if given == n {
                        Ok(())
                    } else {
                        Err(format!("{w} takes {n} value(s), not {given}"))
                    }
                };
                let mut args = args.into_iter().map(Box::new);
                let mut next = || args.next().unwrap_or_else(|| Box::new(Expr::Num(0.0)));
                match w.as_str() {
                    "days" => arity(2).map(|()| Expr::Days(next(), next())),
                    "date" => arity(1).map(|()| Expr::ToDate(next())),
                    "number" => arity(1).map(|()| Expr::ToNumber(next())),
                    "is_empty" => arity(1).map(|()| Expr::IsEmpty(next())),
                    _ => Err(format!(
                        "'{w}' is not a function (days, date, number, is_empty)"
                    )),
                }
            }
            Token::Word(w) if ["and", "or", "not"].contains(&w.as_str()) => {
                Err(format!("'{w}' where a value was expected"))
            }
            Token::Word(w) if w == "true" => Ok(Expr::Num(1.0)),
            Token::Word(w) if w == "false" => Ok(Expr::Num(0.0)),
            Token::Word(w) => Ok(Expr::Name(w)),
            Token::Sym(s) => Err(format!("'{s}' where a value was expected")),
        }
    }
}

impl Expr {
    /// Parses an expression (see the module docs); the error says where it went wrong.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let tokens = tokens(text)?;
        if tokens.is_empty() {
            return Err("is empty".into());
        }
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        let e = p.or()?;
        match p.peek() {
            None => Ok(e),
            Some(t) => Err(format!("has {} where it should end", describe(t))),
        }
    }

    /// The names it reads.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Name(n) = e {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        });
        out
    }

    fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(a) | Expr::ToDate(a) | Expr::ToNumber(a) | Expr::IsEmpty(a) => a.walk(f),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Cmp(_, a, b)
            | Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Days(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Num(_) | Expr::Text(_) | Expr::Name(_) => {}
        }
    }

    /// Evaluates it with `field` giving each name's value.
    pub fn eval(&self, field: &dyn Fn(&str) -> Value) -> Value {
        match self {
            Expr::Num(n) => Value::Num(*n),
            Expr::Text(t) => Value::Text(t.clone()),
            Expr::Name(n) => field(n),
            Expr::Not(a) => match a.eval(field) {
                Value::Missing => Value::Missing,
                v => Value::Bool(!v.truth()),
            },
            Expr::And(a, b) => Value::Bool(a.eval(field).truth() && b.eval(field).truth()),
            Expr::Or(a, b) => Value::Bool(a.eval(field).truth() || b.eval(field).truth()),
            Expr::Cmp(op, a, b) => compare(*op, &a.eval(field), &b.eval(field)),
            Expr::Add(a, b) => arith(a.eval(field), b.eval(field), 1.0),
            Expr::Sub(a, b) => arith(a.eval(field), b.eval(field), -1.0),
            Expr::Days(a, b) => match (a.eval(field).date(), b.eval(field).date()) {
                (Some(x), Some(y)) => Value::Num((y - x).num_days() as f64),
                _ => Value::Missing,
            },
            Expr::ToDate(a) => a.eval(field).date().map_or(Value::Missing, Value::Date),
            Expr::ToNumber(a) => a.eval(field).num().map_or(Value::Missing, Value::Num),
            Expr::IsEmpty(a) => Value::Bool(match a.eval(field) {
                Value::Missing => true,
                Value::Text(t) => t.trim().is_empty(),
                _ => false,
            }),
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Num(n) => format!("the number {n}"),
        Token::Text(s) => format!("'{s}'"),
        Token::Word(w) => format!("'{w}'"),
        Token::Sym(s) => format!("'{s}'"),
    }
}

/// `a + b` (sign 1) or `a − b` (sign −1): numbers, or a date moved by days.
fn arith(a: Value, b: Value, sign: f64) -> Value {
    if let (Value::Date(d), Some(n)) = (&a, b.num()) {
        let days = (sign * n).round();
        if days.abs() > 1e6 {
            return Value::Missing;
        }
        return d
            .checked_add_signed(Duration::days(days as i64))
            .map_or(Value::Missing, Value::Date);
    }
    match (a.num(), b.num()) {
        (Some(x), Some(y)) => Value::Num(x + sign * y),
        _ => Value::Missing,
    }
}

fn compare(op: Op, a: &Value, b: &Value) -> Value {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Missing, _) | (_, Value::Missing) => None,
        (Value::Date(_), _) | (_, Value::Date(_)) => a.date().zip(b.date()).map(|(x, y)| x.cmp(&y)),
        (Value::Text(x), Value::Text(y)) => Some(x.trim().cmp(y.trim())),
        _ => a.num().zip(b.num()).and_then(|(x, y)| x.partial_cmp(&y)),
    };
    let Some(ord) = ord else {
        // Text against something it is not: only "differs" holds.
        return Value::Bool(
            op == Op::Ne && !matches!((a, b), (Value::Missing, _) | (_, Value::Missing)),
        );
    };
    Value::Bool(match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    })
}

/// A catalogue KPI ready to evaluate: its expressions parsed once.
#[derive(Clone, Debug)]
pub struct Measure {
    pub key: String,
    pub numerator: Expr,
    pub denominator: Option<Expr>,
}

impl Catalogue {
    /// The KPIs' expressions, parsed (a catalogue that passed [`Catalogue::validate`]
    /// parses; one that does not is left out rather than guessed at).
    pub fn measures(&self) -> Vec<Measure> {
        self.kpis
            .iter()
            .filter(|k| !k.is_fed())
            .filter_map(|k| {
                Some(Measure {
                    key: k.key.clone(),
                    numerator: Expr::parse(&k.numerator).ok()?,
                    denominator: match &k.denominator {
                        Some(d) => Some(Expr::parse(d).ok()?),
                        None => None,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, fields: &[(&str, &str)]) -> Value {
        Expr::parse(text).unwrap().eval(&|n| {
            fields
                .iter()
                .find(|(k, _)| *k == n)
                .map_or(Value::Missing, |(_, v)| {
                    if v.is_empty() {
                        Value::Missing
                    } else {
                        Value::Text(v.to_string())
                    }
                })
        })
    }

    #[test]
    fn conditions_on_dates_numbers_and_text() {
        let f = [
            ("ship_date", "2026-11-02"),
            ("delivered_date", "2026-11-04"),
            ("lane", "EU-1"),
            ("weight", "12.5"),
        ];
        assert_eq!(
            eval("days(ship_date, delivered_date) <= 2", &f),
            Value::Bool(true)
        );
        assert_eq!(
            eval("days(ship_date, delivered_date) < 2", &f),
            Value::Bool(false)
        );
        assert_eq!(
            eval("delivered_date <= date(ship_date) + 1", &f),
            Value::Bool(false)
        );
        assert_eq!(eval("lane = 'EU-1' and weight > 10", &f), Value::Bool(true));
        assert_eq!(
            eval("not (lane = 'EU-1') or weight >= 13", &f),
            Value::Bool(false)
        );
        assert_eq!(eval("days(ship_date, delivered_date)", &f), Value::Num(2.0));
        assert_eq!(eval("weight - 2.5", &f), Value::Num(10.0));
    }

    #[test]
    fn missing_values_make_comparisons_false_and_sums_skip() {
        let f = [("ship_date", "")];
        assert_eq!(
            eval("days(ship_date, due_date) <= 2", &f),
            Value::Bool(false)
        );
        assert_eq!(eval("days(ship_date, due_date)", &f).amount(), None);
        assert_eq!(eval("is_empty(ship_date)", &f), Value::Bool(true));
        // Text that is not a number is not compared as one.
        assert_eq!(eval("lane > 3", &[("lane", "EU")]), Value::Bool(false));
        assert_eq!(eval("lane != 3", &[("lane", "EU")]), Value::Bool(true));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (text, says) in [
            ("", "is empty"),
            ("days(a)", "days takes 2"),
            ("a = ", "ends where a value"),
            ("(a = 1", "not closed"),
            ("a = 1 b", "where it should end"),
            ("sqrt(a)", "not a function"),
            ("a ; b", "';' is not understood"),
            ("'open", "not closed"),
        ] {
            let e = Expr::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(Expr::parse(&deep).unwrap_err().contains("nested"));
        let nots = format!("{}1", "not ".repeat(100));
        assert!(Expr::parse(&nots).unwrap_err().contains("nested"));
    }

    #[test]
    fn a_catalogue_checks_names_and_the_fields_its_kpis_read() {
        let kpi = |num: &str| KpiDef {
            key: "late_putaway".into(),
            name: "Late put-away".into(),
            description: String::new(),
            unit: Unit::Pct,
            higher_is_better: false,
            numerator: num.into(),
            denominator: None,
            target: Some(5.0),
            at_risk: Some(2.0),
        };
        let mut c = Catalogue {
            dimensions: vec!["lane".into()],
            fields: vec!["ship_date".into()],
            kpis: vec![kpi("days(ship_date, delivered_date) > 2")],
        };
        assert_eq!(c.validate(), Ok(()));
        c.kpis = vec![kpi("days(shipdate, delivered_date) > 2")];
        assert!(c.validate().unwrap_err().contains("names 'shipdate'"));
        c.kpis = vec![];
        c.dimensions = vec!["carrier".into()];
        assert!(c.validate().unwrap_err().contains("Opsight's own"));
        c.dimensions = vec!["Lane".into()];
        assert!(c.validate().unwrap_err().contains("lower-case"));
        c.dimensions = vec!["lane".into(), "lane".into()];
        assert!(c.validate().unwrap_err().contains("twice"));
    }
}
