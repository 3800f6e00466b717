//! The digest: the cards that need attention (off target or unusual) with their insights,
//! ranked by money at stake, and its three renderings from the same value: a
//! Slack-compatible payload (`text` + Block Kit `blocks`), a generic JSON document, and an
//! HTML e-mail body. Alerts reuse the renderings with one item.
//!
//! Renderings escape everything that came from data or agents: Slack's `&`, `<`, `>` in
//! mrkdwn, and HTML entities in the e-mail, so an agent's text cannot inject links,
//! mentions or markup.

use super::rules::Status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// At most this many cards are listed in a message (Slack allows 50 blocks); the rest are
/// counted.
pub const MAX_ITEMS: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DigestItem {
    pub site: String,
    pub site_name: String,
    pub metric: String,
    pub metric_name: String,
    /// `%` for rates, `lines` for volume, or an average's unit (`days`).
    pub unit: String,
    /// Whether a higher value is better (false for a catalogue KPI where lower is; only
    /// then is it sent).
    #[serde(default = "higher", skip_serializing_if = "is_true")]
    pub higher_is_better: bool,
    pub value: Option<f64>,
    pub target: Option<f64>,
    /// Against the compared period (`compare`), in points (lines for volume).
    pub change: Option<f64>,
    /// What `change` is against: the period before (`previous`) or a year ago.
    #[serde(default)]
    pub compare: crate::domain::period::Compare,
    pub status: Status,
    pub unusual: bool,
    /// "unusual: 81.2 % vs 93.0 % expected (z −5.1)".
    pub anomaly: Option<String>,
    /// The trigger that fired, if any.
    pub trigger: Option<String>,
    /// Money at stake on the period's failed lines (unit costs × penalty), if costs are known.
    pub money_at_stake: Option<f64>,
    pub headline: Option<String>,
    /// The top root cause, in words.
    pub root_cause: Option<String>,
    /// The top next action: "action (owner, priority)".
    pub next_action: Option<String>,
    /// Why the insight may be out of date, if it is.
    pub stale: Option<String>,
    /// Link to the card's page on the dashboard, when a public base URL is configured.
    pub link: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Digest {
    /// The stored notification's id once queued: receivers can use it to drop a
    /// redelivery (deliveries are at least once).
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// The reference date and the period reported (its label).
    pub as_of: String,
    pub period: String,
    /// Ranked: most money at stake first.
    pub items: Vec<DigestItem>,
    /// Cards listed beyond [`MAX_ITEMS`] are left out of messages and counted here.
    pub more: usize,
    /// Cards that need no attention.
    pub fine: usize,
    /// The dashboard, when a public base URL is configured.
    pub link: Option<String>,
}

fn severity(i: &DigestItem) -> u8 {
    match (i.status, i.unusual) {
        (Status::OffTarget, true) => 0,
        (Status::OffTarget, false) => 1,
        (_, true) => 2,
        _ => 3,
    }
}

fn higher() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Orders items by money at stake (unknown last), then off target and unusual before
/// either alone, then the gap to target, then site and KPI so the order is stable.
pub fn rank(items: &mut [DigestItem]) {
    items.sort_by(|a, b| {
        let money = |i: &DigestItem| i.money_at_stake.unwrap_or(-1.0);
        // How far on the wrong side of its target (below it, or above when lower is
        // better).
        let gap = |i: &DigestItem| match (i.value, i.target) {
            (Some(v), Some(t)) if i.higher_is_better => t - v,
            (Some(v), Some(t)) => v - t,
            _ => 0.0,
        };
        money(b)
            .total_cmp(&money(a))
            .then(severity(a).cmp(&severity(b)))
            .then(gap(b).total_cmp(&gap(a)))
            .then_with(|| (&a.site, &a.metric).cmp(&(&b.site, &b.metric)))
    });
}

/// Keeps the first [`MAX_ITEMS`] and counts the rest.
pub fn truncate(d: &mut Digest) {
    if d.items.len() > MAX_ITEMS {
        d.more += d.items.len() - MAX_ITEMS;
        d.items.truncate(MAX_ITEMS);
    }
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if unit == "%" => format!("{v:.1}%"),
        Some(v) if unit == "lines" => format!("{v:.0} {unit}"),
        Some(v) => format!("{v:.1} {unit}"),
        None => "no data".into(),
    }
}

/// "$12,345": whole currency units with thousands separators (no currency is configured;
/// the unit costs are in the user's own).
pub fn fmt_money(v: f64) -> String {
    let whole = v.round().abs() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}", if v < -0.5 { "-" } else { "" })
}

impl DigestItem {
    /// "OTIF 88.1% (target 95.0%, −3.2 pts)".
    pub fn figure(&self) -> String {
        let mut s = format!("{} {}", self.metric_name, fmt_value(self.value, &self.unit));
        let mut extra = Vec::new();
        if self.target.is_some() {
            extra.push(format!("target {}", fmt_value(self.target, &self.unit)));
        }
        if let Some(c) = self.change {
            let unit = match self.unit.as_str() {
                "%" => " pts".to_string(),
                other => format!(" {other}"),
            };
            let against = match self.compare {
                crate::domain::period::Compare::Previous => "vs the period before",
                crate::domain::period::Compare::YearAgo => "vs a year ago",
            };
            extra.push(format!("{c:+.1}{unit} {against}"));
        }
        if !extra.is_empty() {
            s.push_str(&format!(" ({})", extra.join(", ")));
        }
        s
    }

    /// "off target · unusual · trigger otif_drop_trigger_pp".
    pub fn flags(&self) -> String {
        let mut f = vec![self.status.label().to_string()];
        if self.unusual {
            f.push("unusual".into());
        }
        if let Some(t) = &self.trigger {
            f.push(format!("trigger {t}"));
        }
        f.join(" · ")
    }
}

/// Slack's limits: a header's plain text and a section's text.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
/// Each free-text field (headline, cause, action…) is cut to this many characters, so a
/// card's section stays under Slack's limit.
const FIELD_MAX: usize = 400;

/// At most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Slack mrkdwn escaping: the three characters Slack reserves.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_item(i: &DigestItem) -> String {
    let text = |s: &str| slack_escape(&clip(s, FIELD_MAX));
    let place = format!("{} ({})", i.site_name, i.site);
    let title = match &i.link {
        Some(l) => format!("<{}|{}>", slack_escape(l), slack_escape(&place)),
        None => slack_escape(&place),
    };
    let mut lines = vec![format!(
        "*{title}* · {}\n{}",
        slack_escape(&i.figure()),
        slack_escape(&i.flags())
    )];
    if let Some(m) = i.money_at_stake {
        lines.push(format!("Money at stake: *{}*", fmt_money(m)));
    }
    if let Some(a) = &i.anomaly {
        lines.push(format!("_{}_", text(a)));
    }
    if let Some(h) = &i.headline {
        lines.push(format!(">{}", text(h)));
    }
    if let Some(c) = &i.root_cause {
        lines.push(format!("Why: {}", text(c)));
    }
    if let Some(a) = &i.next_action {
        lines.push(format!("Next: {}", text(a)));
    }
    if let Some(s) = &i.stale {
        lines.push(format!("_Insight may be out of date: {}_", text(s)));
    }
    clip(&lines.join("\n"), SLACK_SECTION_MAX)
}

/// The Slack-compatible payload (incoming webhooks, and tools that accept the same shape):
/// `text` is the notification fallback, `blocks` the message.
pub fn slack(d: &Digest) -> Value {
    let mut blocks =
        vec![json!({"type": "header", "text": {"type": "plain_text", "text": d.title}})];
    if d.items.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": "Every KPI is on target and nothing is unusual."}}));
    }
    for i in &d.items {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_item(i)}}));
    }
    let mut context = format!(
        "{} · as of {} · {} need attention, {} fine",
        d.period,
        d.as_of,
        d.items.len() + d.more,
        d.fine
    );
    if d.more > 0 {
        context.push_str(&format!(" · {} more not listed", d.more));
    }
    if let Some(l) = &d.link {
        context.push_str(&format!(" · <{}|Open the dashboard>", slack_escape(l)));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({
        // The notification text is mrkdwn too: a site name cannot ping `<!channel>`.
        "text": format!(
            "{}: {} KPI(s) need attention",
            slack_escape(&clip(&d.title, SLACK_HEADER_MAX)),
            d.items.len() + d.more
        ),
        "blocks": blocks,
    })
}

/// The generic JSON document: the digest itself, typed and versioned for other tools.
pub fn generic(d: &Digest) -> Value {
    json!({
        "type": "opsight.digest",
        "schema_version": 1,
        "digest": d,
    })
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only http(s) links go into the e-mail.
fn safe_link(l: &str) -> Option<String> {
    (l.starts_with("https://") || l.starts_with("http://")).then(|| html_escape(l))
}

/// The HTML e-mail body: inline styles only (mail clients drop `<style>`), no scripts,
/// no images.
pub fn html(d: &Digest) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    h.push_str(&html_escape(&d.title));
    h.push_str("</title></head>\n<body style=\"font-family:Arial,Helvetica,sans-serif;color:#1d2433;max-width:680px\">\n");
    h.push_str(&format!(
        "<h1 style=\"font-size:20px\">{}</h1>\n<p style=\"color:#5b6475\">{} · as of {} · {} need attention, {} fine</p>\n",
        html_escape(&d.title),
        html_escape(&d.period),
        html_escape(&d.as_of),
        d.items.len() + d.more,
        d.fine
    ));
    if d.items.is_empty() {
        h.push_str("<p>Every KPI is on target and nothing is unusual.</p>\n");
    }
    for i in &d.items {
        let place = html_escape(&format!("{} ({})", i.site_name, i.site));
        let title = match i.link.as_deref().and_then(safe_link) {
            Some(l) => format!("<a href=\"{l}\">{place}</a>"),
            None => place,
        };
        h.push_str("<div style=\"border:1px solid #d8dde6;border-radius:6px;padding:10px 14px;margin:10px 0\">\n");
        h.push_str(&format!(
            "<h2 style=\"font-size:16px;margin:0 0 4px\">{title} · {}</h2>\n<p style=\"margin:0;color:#b42318\">{}</p>\n",
            html_escape(&i.figure()),
            html_escape(&i.flags())
        ));
        if let Some(m) = i.money_at_stake {
            h.push_str(&format!(
                "<p style=\"margin:4px 0\">Money at stake: <strong>{}</strong></p>\n",
                fmt_money(m)
            ));
        }
        for (label, text) in [
            ("", &i.anomaly),
            ("", &i.headline),
            ("Why: ", &i.root_cause),
            ("Next: ", &i.next_action),
            ("Insight may be out of date: ", &i.stale),
        ] {
            if let Some(t) = text {
                h.push_str(&format!(
                    "<p style=\"margin:4px 0\">{label}{}</p>\n",
                    html_escape(t)
                ));
            }
        }
        h.push_str("</div>\n");
    }
    if d.more > 0 {
        h.push_str(&format!("<p>{} more not listed.</p>\n", d.more));
    }
    if let Some(l) = d.link.as_deref().and_then(safe_link) {
        h.push_str(&format!("<p><a href=\"{l}\">Open the dashboard</a></p>\n"));
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
pub(crate) fn sample_digest() -> Digest {
    let item =
        |site: &str, metric: &str, money: Option<f64>, status: Status, unusual: bool| DigestItem {
            site: site.into(),
            site_name: format!("{site} DC"),
            metric: metric.into(),
            metric_name: metric.to_uppercase(),
            unit: "%".into(),
            higher_is_better: true,
            value: Some(88.25),
            target: Some(95.0),
            change: Some(-3.5),
            compare: Default::default(),
            status,
            unusual,
            anomaly: unusual.then(|| "unusual: 88.2 % vs 94.0 % expected (z −5.1)".to_string()),
            trigger: Some("otif_drop_trigger_pp".into()),
            money_at_stake: money,
            headline: Some(format!("{site} {metric} fell: Carrier <B> & late")),
            root_cause: Some("carrier CarrierB: −2.9 pts (late deliveries)".into()),
            next_action: Some("Review the carrier scorecard (Transport manager, high)".into()),
            stale: None,
            link: Some(format!("https://ops.example.com/kpi/{site}/{metric}")),
        };
    Digest {
        id: Some("dig-20261116070000-0001".into()),
        title: "Opsight digest 2026-W46".into(),
        generated_at: "2026-11-16T07:00:00Z".into(),
        as_of: "2026-11-16".into(),
        period: "2026-W46".into(),
        items: vec![
            item("ATL", "fill_rate", None, Status::AtRisk, true),
            item("DAL", "otif", Some(1234.4), Status::OffTarget, false),
            item("SEA", "otif", Some(98765.0), Status::OffTarget, true),
        ],
        more: 0,
        fine: 21,
        link: Some("https://ops.example.com/".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares with a golden file; `OPSIGHT_UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var("OPSIGHT_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (OPSIGHT_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        });
        assert_eq!(actual, expected, "{name} differs from its golden file");
    }

    fn ranked() -> Digest {
        let mut d = sample_digest();
        rank(&mut d.items);
        d
    }

    #[test]
    fn ranks_by_money_then_severity() {
        let d = ranked();
        let order: Vec<&str> = d.items.iter().map(|i| i.site.as_str()).collect();
        assert_eq!(order, ["SEA", "DAL", "ATL"]);
        let mut no_money = sample_digest();
        for i in &mut no_money.items {
            i.money_at_stake = None;
        }
        rank(&mut no_money.items);
        let order: Vec<&str> = no_money.items.iter().map(|i| i.site.as_str()).collect();
        assert_eq!(order, ["SEA", "DAL", "ATL"], "off target and unusual first");
    }

    #[test]
    fn slack_payload_matches_golden() {
        let v = slack(&ranked());
        golden(
            "digest_slack.json",
            &(serde_json::to_string_pretty(&v).unwrap() + "\n"),
        );
        // Agent text cannot open a link or mention: Slack's reserved characters are escaped.
        let text = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.contains("Carrier &lt;B&gt; &amp; late"), "{text}");
        // A name cannot ping the channel, and an agent's essay cannot break Slack's limits.
        let mut d = ranked();
        d.title = "Opsight alert: <!channel> DC".into();
        d.items[0].headline = Some("x".repeat(10_000));
        d.items[0].root_cause = Some("<@U123> ".repeat(2_000));
        let v = slack(&d);
        // mrkdwn is where Slack reads mentions (the header is plain text, shown as typed).
        let mrkdwn: Vec<&str> = std::iter::once(v["text"].as_str().unwrap())
            .chain(
                v["blocks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|b| b["type"] == "section")
                    .map(|b| b["text"]["text"].as_str().unwrap()),
            )
            .collect();
        assert!(
            mrkdwn
                .iter()
                .all(|t| !t.contains("<!channel>") && !t.contains("<@U123>")),
            "{mrkdwn:?}"
        );
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 150
        );
        for b in v["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(
                    t.chars().count() <= 3000,
                    "{} characters",
                    t.chars().count()
                );
            }
        }
    }

    #[test]
    fn generic_payload_matches_golden() {
        let v = generic(&ranked());
        golden(
            "digest_generic.json",
            &(serde_json::to_string_pretty(&v).unwrap() + "\n"),
        );
        let back: Digest = serde_json::from_value(v["digest"].clone()).unwrap();
        assert_eq!(back, ranked());
    }

    #[test]
    fn html_body_matches_golden_and_is_inert() {
        let mut d = ranked();
        d.items[0].headline = Some("<script>alert(1)</script><img src=x onerror=alert(2)>".into());
        d.items[1].link = Some("javascript:alert(3)".into());
        let h = html(&d);
        assert!(!h.contains("<script") && !h.contains("<img") && !h.contains("javascript:"));
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        golden("digest_email.html", &html(&ranked()));
    }

    #[test]
    fn long_digests_are_cut_and_counted() {
        let mut d = sample_digest();
        let one = d.items[0].clone();
        d.items = vec![one; MAX_ITEMS + 5];
        truncate(&mut d);
        assert_eq!((d.items.len(), d.more), (MAX_ITEMS, 5));
        let v = slack(&d);
        assert_eq!(v["blocks"].as_array().unwrap().len(), MAX_ITEMS + 2);
        assert!(v["text"].as_str().unwrap().contains("25 KPI(s)"));
    }

    #[test]
    fn money_is_grouped_in_thousands() {
        assert_eq!(fmt_money(1234567.4), "1,234,567");
        assert_eq!(fmt_money(999.6), "1,000");
        assert_eq!(fmt_money(0.2), "0");
    }
}
