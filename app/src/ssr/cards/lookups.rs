//! What a drill-down question needs looked up before an agent answers it: the question is
//! resolved in its conversation ([`question::resolve`]), the pack is loaded for the site it
//! asks about, and the look-ups its kind needs are made (another period's figures, the
//! failing lines, the card's last insight). Everything travels in the request, so the
//! claims check covers what the answer quotes.

use super::evidence;
use crate::domain::evidence::{EvidencePack, NETWORK};
use crate::domain::kpi::{LineScore, Metric};
use crate::domain::period::{parse_date, Grain, Lens, Period};
use crate::domain::question::{
    self, Against, Ask, LastInsight, LineSample, Lookups, PeriodFigure, Vocabulary,
};
use crate::domain::rules::Rules;
use crate::domain::status::AnswerStatus;
use crate::dto::ConversationView;
use crate::ssr::error::ServiceError;
use crate::ssr::store::facts::{self, LineQuery};
use crate::ssr::store::{insights, Db};
use chrono::NaiveDate;

/// The pack the question is about (the conversation's, or another site's) and the look-ups.
pub async fn look_up(
    db: &Db,
    rules: &Rules,
    conversation: &ConversationView,
    question: &str,
    pack: EvidencePack,
    period: Period,
    today: NaiveDate,
) -> Result<(EvidencePack, Lookups), ServiceError> {
    let sites: Vec<(String, String)> = facts::sites(db)
        .await?
        .into_iter()
        .map(|s| (s.code, s.name))
        .collect();
    let earlier: Vec<String> = conversation
        .turns
        .iter()
        .map(|t| t.question.clone())
        .collect();
    let intent = question::resolve(
        &earlier,
        question,
        &Vocabulary {
            pack: &pack,
            sites: &sites,
        },
    );
    let metric = conversation.metric;
    let site = intent
        .site
        .clone()
        .unwrap_or_else(|| conversation.site.clone());
    let pack = if site == conversation.site {
        pack
    } else {
        evidence::load_period(
            db,
            rules,
            &site,
            metric,
            period,
            conversation.compare,
            today,
        )
        .await?
    };
    let mut lookups = Lookups {
        intent: intent.clone(),
        ..Lookups::default()
    };
    match &intent.ask {
        Ask::Compare { against } => {
            let other = match against {
                Against::Previous => None,
                Against::YearAgo => Some(period.year_ago()),
                Against::LastMonth => {
                    Some(Period::containing(Grain::Month, period.start).previous())
                }
                Against::Period(label) => match Period::parse(label) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        lookups.unavailable = Some(format!("'{label}' is not a period: {e}"));
                        None
                    }
                },
            };
            if let Some(p) = other {
                let then =
                    evidence::load_period(db, rules, &site, metric, p, conversation.compare, today)
                        .await?;
                lookups.against = (then.denominator > 0).then(|| PeriodFigure {
                    label: then.period.label.clone(),
                    start: then.period.start.clone(),
                    end: then.period.end.clone(),
                    value: then.value,
                    numerator: then.numerator,
                    denominator: then.denominator,
                    difference: pack.value.zip(then.value).map(|(now, was)| now - was),
                });
            }
        }
        Ask::Lines { dimension, member } => {
            lookups.lines = lines(db, rules, &pack, &site, dimension, member).await?;
            if lookups.lines.is_none() {
                lookups.unavailable = Some(format!(
                    "Lines are listed for OTIF, on-time, in-full and fill rate; {} is counted, not failed line by line.",
                    pack.scope.metric_name
                ));
            }
        }
        Ask::SinceLast => {
            // The card's own history: the same lens (grain and comparison).
            let lens = Lens::of(&period, conversation.compare);
            let last = insights::list(db, Some(&site), Some(metric), Some(lens), 50).await?;
            lookups.last_insight =
                last.into_iter()
                    .find(|i| i.status == AnswerStatus::Ok)
                    .map(|i| LastInsight {
                        created_at: i.created_at,
                        period_label: i.period_label,
                        value: i.value,
                        headline: i.headline,
                        causes: i
                            .insight
                            .map(|x| {
                                x.root_causes
                                    .iter()
                                    .map(|c| format!("{} {}", c.dimension, c.member))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
        }
        _ => {}
    }
    Ok((pack, lookups))
}

/// What failing means for a KPI, line by line (`None` for KPIs not failed per line).
fn failing(metric: Metric) -> Option<fn(LineScore) -> Option<&'static str>> {
    fn otif(s: LineScore) -> Option<&'static str> {
        match (s.on_time, s.in_full) {
            (true, true) => None,
            (false, true) => Some("late"),
            (true, false) => Some("short"),
            (false, false) => Some("late and short"),
        }
    }
    fn on_time(s: LineScore) -> Option<&'static str> {
        (!s.on_time).then_some("late")
    }
    fn in_full(s: LineScore) -> Option<&'static str> {
        (!s.in_full).then_some("short")
    }
    match metric {
        Metric::OTIF => Some(otif),
        Metric::ON_TIME => Some(on_time),
        Metric::IN_FULL | Metric::FILL_RATE => Some(in_full),
        _ => None,
    }
}

/// The failing lines of the scope: of the member named, or of the dimension's hardest-hit
/// member when only a dimension is named.
async fn lines(
    db: &Db,
    rules: &Rules,
    pack: &EvidencePack,
    site: &str,
    dimension: &Option<String>,
    member: &Option<String>,
) -> Result<Option<LineSample>, ServiceError> {
    let Some(fails) = failing(pack.scope.metric) else {
        return Ok(None);
    };
    let metric = pack.scope.metric;
    let member = match (dimension, member) {
        (Some(d), Some(m)) => Some((d.clone(), m.clone())),
        (Some(d), None) => pack
            .contributions
            .iter()
            .find(|c| c.dimension == *d)
            .and_then(|c| {
                c.segments
                    .iter()
                    .filter(|s| !s.member.starts_with("other ("))
                    .min_by(|a, b| metric.good(a.total).total_cmp(&metric.good(b.total)))
            })
            .map(|s| (d.clone(), s.member.clone())),
        _ => None,
    };
    let (Some(from), Some(to)) = (parse_date(&pack.period.start), parse_date(&pack.period.end))
    else {
        return Ok(None);
    };
    // The counts come from the metric store (the pack's lines due and OTIF, on-time or
    // in-full lines, of the scope or of the member), so the read stops at the last line
    // shown. Fill rate counts units, and a member folded into "other" has no figures of
    // its own: those count while they read.
    let counted: Option<(i64, i64)> = match &member {
        _ if metric == Metric::FILL_RATE => None,
        None => Some((pack.denominator, pack.denominator - pack.numerator)),
        Some((d, m)) => pack.segment(d, m).and_then(|s| {
            let ok = (s.value? * s.denominator as f64 / 100.0).round() as i64;
            Some((s.denominator, s.denominator - ok))
        }),
    };
    let mut sample = facts::failing_lines(
        db,
        &LineQuery {
            site: (site != NETWORK).then_some(site),
            from,
            to,
            filter: member.as_ref().map(|(d, m)| (d.as_str(), m.as_str())),
            scoring: rules.scoring(),
            fails,
            limit: LineSample::SHOWN,
            count_all: counted.is_none(),
        },
    )
    .await?;
    if let Some((lines, failing)) = counted {
        sample.lines = lines;
        sample.failing = failing;
    }
    Ok(Some(sample))
}
