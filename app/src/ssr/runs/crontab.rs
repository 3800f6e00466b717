//! Cron expressions as operators write them in crontab, evaluated in a time zone.
//!
//! The `cron` crate wants a leading seconds field and numbers the days of the week 1–7
//! from Sunday; crontab has 5 fields and numbers them 0–7 with Sunday as 0 or 7. This
//! module translates (day-of-week values become names, so no number is ever reinterpreted)
//! and keeps crontab's meaning where the crate differs:
//!
//! - 5 fields `minute hour day-of-month month day-of-week`, or 6 with seconds first; the
//!   macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
//! - When both day-of-month and day-of-week are restricted (neither starts with `*`), a
//!   day matches if **either** does (`0 9 1 * 1` = the 1st and every Monday), as in crontab.
//! - Daylight saving time, as Vixie cron does it: a fixed-time job whose local time falls
//!   in the spring-forward gap runs once, at the end of the gap; in the repeated hour of
//!   the fall-back change it runs once (the first time). Jobs with `*` in the minute or
//!   hour field follow real time and run in the repeated hour too.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// A parsed, translated expression in its time zone.
#[derive(Clone, Debug)]
pub struct Crontab {
    /// As written (trimmed).
    pub source: String,
    pub tz: Tz,
    /// One schedule, or two when day-of-month and day-of-week are both restricted
    /// (crontab ORs them; the crate ANDs them).
    schedules: Vec<cron::Schedule>,
    /// Both minute and hour are fixed (no `*`): DST gaps and repeats run it once.
    fixed_time: bool,
}

/// Why an expression or time zone was refused; the message is for the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl Crontab {
    /// Parses `expr` for the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Crontab, CronError> {
        let tz = Tz::from_str(tz.trim()).map_err(|_| {
            CronError(format!(
                "'{}' is not a time zone; use an IANA name such as UTC, Europe/Berlin or America/Chicago",
                tz.trim()
            ))
        })?;
        let source = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if source.is_empty() {
            return Err(CronError("the cron expression is empty".into()));
        }
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".into(),
            "@weekly" => "0 0 * * 0".into(),
            "@daily" | "@midnight" => "0 0 * * *".into(),
            "@hourly" => "0 * * * *".into(),
            m if m.starts_with('@') => {
                return Err(CronError(format!(
                    "'{source}' is not supported; use @yearly, @monthly, @weekly, @daily, @hourly or 5 fields"
                )))
            }
            _ => source.clone(),
        };
        let mut fields: Vec<&str> = expanded.split(' ').collect();
        let seconds = match fields.len() {
            5 => "0".to_string(),
            6 => fields.remove(0).to_string(),
            n => {
                return Err(CronError(format!(
                    "a cron expression has 5 fields (minute hour day-of-month month day-of-week), \
                     or 6 with seconds first; '{source}' has {n}"
                )))
            }
        };
        let [minute, hour, dom, month, dow] =
            [fields[0], fields[1], fields[2], fields[3], fields[4]];
        let days = translate_day_of_week(dow)?;
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, CronError> {
            let six = format!("{seconds} {minute} {hour} {dom} {month} {dow}");
            cron::Schedule::from_str(&six).map_err(|e| {
                CronError(format!(
                    "'{source}' is not a valid cron expression ({e}); fields are minute 0-59, \
                     hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT"
                ))
            })
        };
        // `?` means "any" like `*` (the crate accepts it in the day fields).
        let restricted = |f: &str| !f.starts_with('*') && !f.starts_with('?');
        let schedules = if restricted(dom) && restricted(dow) {
            vec![build(dom, "*")?, build("*", &days)?]
        } else {
            vec![build(dom, &days)?]
        };
        let crontab = Crontab {
            source,
            tz,
            schedules,
            fixed_time: !minute.contains('*') && !hour.contains('*'),
        };
        if crontab.next_after(Utc::now()).is_none() {
            return Err(CronError(format!(
                "'{}' never runs (no such date)",
                crontab.source
            )));
        }
        Ok(crontab)
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| self.next_of(s, after))
            .min()
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The latest fire time at or before `at`, looking back at most `within`. Searches
    /// growing windows (a minute, an hour, a day, ...), so a per-second schedule costs a
    /// minute's ticks, not `within`'s.
    pub fn latest_at_or_before(
        &self,
        at: DateTime<Utc>,
        within: Duration,
    ) -> Option<DateTime<Utc>> {
        let windows = [
            Duration::minutes(1),
            Duration::hours(1),
            Duration::days(1),
            Duration::days(31),
            Duration::days(366),
        ];
        for window in windows.into_iter().map(|w| w.min(within)) {
            let mut t = at - window;
            let mut last = None;
            while let Some(next) = self.next_after(t) {
                if next > at {
                    break;
                }
                last = Some(next);
                t = next;
            }
            if last.is_some() || window >= within {
                return last;
            }
        }
        None
    }

    /// Walks the schedule over local wall-clock times (the crate evaluated on naive time,
    /// through UTC) and maps each to real instants by the DST rules above.
    fn next_of(&self, schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz).naive_local();
        // Fast path: no offset change within 3 hours either side, so wall-clock time and
        // real time move together and the first wall-clock candidate after `local` is the
        // answer (unless it lies past the window, which the slow path handles).
        let offset = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        if offset(after - Duration::hours(3)) == offset(after + Duration::hours(3)) {
            let start = Utc.from_utc_datetime(&local);
            if let Some(candidate) = schedule.after(&start).next() {
                if let LocalResult::Single(t) = self.tz.from_local_datetime(&candidate.naive_utc())
                {
                    let t = t.with_timezone(&Utc);
                    if t > after && t <= after + Duration::hours(3) {
                        return Some(t);
                    }
                }
            }
        }
        // Start early enough to see local times that map to instants after `after` through
        // a DST shift (offsets change by at most 2 hours, anywhere).
        let start = Utc.from_utc_datetime(&(local - Duration::hours(3)));
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        for candidate in schedule.after(&start).take(100_000) {
            let naive = candidate.naive_utc();
            if let Some((_, best_naive)) = best {
                // Later wall-clock times cannot map to earlier instants once 3 h past.
                if naive > best_naive + Duration::hours(3) {
                    break;
                }
            }
            for instant in self.instants(naive) {
                if instant > after && best.is_none_or(|(b, _)| instant < b) {
                    best = Some((instant, naive));
                }
            }
        }
        best.map(|(b, _)| b)
    }

    /// The instants a local wall-clock time stands for (see the module doc).
    fn instants(&self, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => {
                if self.fixed_time {
                    vec![first.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                }
            }
            // In the spring-forward gap: a fixed-time job runs once at the first wall-clock
            // minute after it; interval jobs follow real time (the slot does not exist).
            LocalResult::None if !self.fixed_time => vec![],
            LocalResult::None => (1..=240)
                .find_map(|m| {
                    self.tz
                        .from_local_datetime(&(naive + Duration::minutes(m)))
                        .earliest()
                })
                .map(|t| {
                    let t = t.with_timezone(&Utc);
                    // The end of the gap is on a whole minute; drop the seconds we added to.
                    t - Duration::seconds(i64::from(chrono::Timelike::second(&t)))
                })
                .into_iter()
                .collect(),
        }
    }
}

/// Crontab day-of-week (0–7, Sunday = 0 or 7, names, ranges, steps, lists) → day names
/// for the crate, which counts 1–7 from Sunday. `*` stays `*`.
fn translate_day_of_week(field: &str) -> Result<String, CronError> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let bad = |why: &str| CronError(format!("day-of-week '{field}': {why}"));
    let value = |s: &str| -> Result<u32, CronError> {
        if let Some(i) = DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s)) {
            return Ok(i as u32);
        }
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(bad("days are 0-7 (0 and 7 are Sunday) or SUN-SAT")),
        }
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| (1..=7).contains(s))
                    .ok_or_else(|| bad("a step is 1-7"))?,
            ),
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/2` means from Friday to the end of the week, every 2nd day.
                None if item.contains('/') => (value(r)?, 6),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(bad(
                "a range goes from low to high (e.g. 1-5, or 5-7 for Fri-Sun)",
            ));
        }
        for d in (from..=to).step_by(step as usize) {
            days[(d % 7) as usize] = true;
        }
    }
    Ok(DAY_NAMES
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        Crontab::parse(expr, tz)
            .unwrap()
            .upcoming(utc(after), n)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn day_of_week_translation() {
        assert_eq!(translate_day_of_week("*").unwrap(), "*");
        assert_eq!(translate_day_of_week("0").unwrap(), "Sun");
        assert_eq!(translate_day_of_week("7").unwrap(), "Sun");
        assert_eq!(translate_day_of_week("1-5").unwrap(), "Mon,Tue,Wed,Thu,Fri");
        assert_eq!(translate_day_of_week("5-7").unwrap(), "Sun,Fri,Sat");
        assert_eq!(translate_day_of_week("0,6").unwrap(), "Sun,Sat");
        assert_eq!(translate_day_of_week("*/2").unwrap(), "Sun,Tue,Thu,Sat");
        assert_eq!(
            translate_day_of_week("mon-fri").unwrap(),
            "Mon,Tue,Wed,Thu,Fri"
        );
        assert_eq!(translate_day_of_week("1-5/2").unwrap(), "Mon,Wed,Fri");
        assert!(translate_day_of_week("8").is_err());
        assert!(translate_day_of_week("5-1").is_err());
        assert!(translate_day_of_week("1/0").is_err());
    }

    #[test]
    fn sunday_is_0_and_7_and_monday_is_1() {
        // 2026-11-22 is a Sunday.
        let sunday = ["2026-11-22T06:00:00+00:00", "2026-11-29T06:00:00+00:00"];
        assert_eq!(next("0 6 * * 0", "UTC", "2026-11-21T00:00:00Z", 2), sunday);
        assert_eq!(next("0 6 * * 7", "UTC", "2026-11-21T00:00:00Z", 2), sunday);
        assert_eq!(
            next("0 6 * * 1", "UTC", "2026-11-21T00:00:00Z", 1),
            ["2026-11-23T06:00:00+00:00"]
        );
        // Weekdays at 06:30: Friday, then Monday.
        assert_eq!(
            next("30 6 * * 1-5", "UTC", "2026-11-20T07:00:00Z", 2),
            ["2026-11-23T06:30:00+00:00", "2026-11-24T06:30:00+00:00"]
        );
    }

    #[test]
    fn macros_steps_and_seconds() {
        assert_eq!(
            next("@daily", "UTC", "2026-11-21T10:00:00Z", 1),
            ["2026-11-22T00:00:00+00:00"]
        );
        assert_eq!(
            next("@weekly", "UTC", "2026-11-21T10:00:00Z", 1),
            ["2026-11-22T00:00:00+00:00"]
        );
        assert_eq!(
            next("*/15 * * * *", "UTC", "2026-11-21T10:07:00Z", 2),
            ["2026-11-21T10:15:00+00:00", "2026-11-21T10:30:00+00:00"]
        );
        assert_eq!(
            next("*/2 * * * * *", "UTC", "2026-11-21T10:00:01Z", 2),
            ["2026-11-21T10:00:02+00:00", "2026-11-21T10:00:04+00:00"]
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_ored_like_crontab() {
        // The 1st of the month and every Monday, at 09:00.
        assert_eq!(
            next("0 9 1 * 1", "UTC", "2026-11-24T00:00:00Z", 3),
            [
                "2026-11-30T09:00:00+00:00", // Monday
                "2026-12-01T09:00:00+00:00", // the 1st (a Tuesday)
                "2026-12-07T09:00:00+00:00", // Monday
            ]
        );
    }

    #[test]
    fn time_zones() {
        // 06:00 in Chicago is 12:00 UTC in November (CST, UTC-6).
        assert_eq!(
            next("0 6 * * *", "America/Chicago", "2026-11-21T00:00:00Z", 1),
            ["2026-11-21T12:00:00+00:00"]
        );
        // 06:00 in Berlin is 05:00 UTC (CET).
        assert_eq!(
            next("0 6 * * *", "Europe/Berlin", "2026-11-21T00:00:00Z", 1),
            ["2026-11-21T05:00:00+00:00"]
        );
        // Kathmandu is UTC+5:45: at 00:00 UTC it is 05:45 there.
        assert_eq!(
            next("0 6 * * *", "Asia/Kathmandu", "2026-11-21T00:00:00Z", 1),
            ["2026-11-21T00:15:00+00:00"]
        );
    }

    #[test]
    fn dst_spring_forward_runs_a_skipped_job_once_at_the_end_of_the_gap() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:00:00+00:00", // 02:30 does not exist: at 03:00 EDT
                "2026-03-09T06:30:00+00:00", // 02:30 EDT
                "2026-03-10T06:30:00+00:00",
            ]
        );
        // Every 15 minutes: 01:45 EST, then 03:00 EDT (its own slot), then 03:15.
        assert_eq!(
            next(
                "*/15 * * * *",
                "America/New_York",
                "2026-03-08T06:40:00Z",
                3
            ),
            [
                "2026-03-08T06:45:00+00:00",
                "2026-03-08T07:00:00+00:00",
                "2026-03-08T07:15:00+00:00",
            ]
        );
        // A daily 06:00 job keeps 06:00 local: 11:00 UTC, then 10:00 UTC.
        assert_eq!(
            next("0 6 * * *", "America/New_York", "2026-03-07T00:00:00Z", 2),
            ["2026-03-07T11:00:00+00:00", "2026-03-08T10:00:00+00:00"]
        );
    }

    #[test]
    fn dst_fall_back_runs_a_fixed_job_once_and_an_interval_job_in_real_time() {
        // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        assert_eq!(
            next("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
        // Hourly at :30 runs in both 01:30s (real time goes on).
        assert_eq!(
            next("30 * * * *", "America/New_York", "2026-11-01T05:00:00Z", 3),
            [
                "2026-11-01T05:30:00+00:00",
                "2026-11-01T06:30:00+00:00",
                "2026-11-01T07:30:00+00:00",
            ]
        );
    }

    #[test]
    fn question_mark_is_any_and_interval_jobs_skip_the_gap() {
        // `?` is "any": Mondays only, not every day.
        assert_eq!(
            next("0 9 ? * 1", "UTC", "2026-11-24T00:00:00Z", 2),
            ["2026-11-30T09:00:00+00:00", "2026-12-07T09:00:00+00:00"]
        );
        // Hourly at :30 in New York on spring-forward day: 01:30 EST, then 03:30 EDT
        // (02:30 does not exist and is not moved).
        assert_eq!(
            next("30 * * * *", "America/New_York", "2026-03-08T06:00:00Z", 2),
            ["2026-03-08T06:30:00+00:00", "2026-03-08T07:30:00+00:00"]
        );
    }

    #[test]
    fn latest_tick_at_or_before() {
        let c = Crontab::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-21T10:59:59Z"), Duration::days(1)),
            Some(utc("2026-11-21T10:00:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-11-21T10:00:00Z"), Duration::days(1)),
            Some(utc("2026-11-21T10:00:00Z"))
        );
    }

    #[test]
    fn clear_errors() {
        let e = |expr: &str, tz: &str| Crontab::parse(expr, tz).unwrap_err().0;
        assert!(e("0 6 * *", "UTC").contains("has 4"));
        assert!(e("61 6 * * *", "UTC").contains("not a valid cron expression"));
        assert!(e("0 6 * * 9", "UTC").contains("day-of-week '9'"));
        assert!(e("0 6 * * *", "Mars/Olympus").contains("not a time zone"));
        assert!(e("0 0 31 2 *", "UTC").contains("never runs"));
        assert!(e("@reboot", "UTC").contains("not supported"));
        assert!(e("", "UTC").contains("empty"));
    }
}
