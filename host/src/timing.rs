//! When a scheduled job is due: cron patterns (5 fields, or 6 with seconds first) in an IANA
//! time zone, fixed intervals, and one-off instants; the next slot after an instant.
//!
//! Daylight-saving changes follow what people expect of cron (Vixie/OCPS): a fixed local time
//! skipped by a spring-forward change (02:30 on the day clocks jump from 02:00 to 03:00) runs
//! once at the first valid time after it (03:00); one repeated by a fall-back change runs once,
//! at its first occurrence. Patterns with a wildcard in the hour (`*/15 * * * *`) keep their
//! rhythm in real time through both changes. Intervals are real time and ignore the zone.
//!
//! Slots are milliseconds since the Unix epoch, UTC.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Wall clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The shortest interval a schedule may have.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Timing {
    /// A cron pattern evaluated in `zone`.
    Cron { cron: Box<croner::Cron>, zone: Tz },
    /// Every `period`, counted from `anchor` (ms): slots are `anchor + k * period`.
    Every { period_ms: i64, anchor: i64 },
    /// Once, at this instant (ms).
    Once { at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error(
        "`{pattern}` is not a cron pattern: {reason} (5 fields `min hour day month weekday`, or 6 with seconds first; e.g. `0 9 * * MON-FRI`)"
    )]
    Cron { pattern: String, reason: String },
    #[error("`{0}` is not an IANA time zone (e.g. `Europe/Berlin`, `America/New_York`, `UTC`)")]
    Zone(String),
    #[error("`{0}` is not an interval: write a number and a unit, e.g. `90s`, `15m`, `1h`, `1d`")]
    Interval(String),
    #[error("the interval `{0}` is shorter than the minimum of 1 second")]
    TooShort(String),
    #[error(
        "`{0}` is not an instant: write RFC 3339 with an offset, e.g. `2027-03-28T09:00:00+02:00`"
    )]
    Instant(String),
}

impl Timing {
    /// A cron pattern in the IANA zone `zone` (`UTC` when none).
    pub fn cron(pattern: &str, zone: Option<&str>) -> Result<Self, TimingError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| TimingError::Cron {
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })?;
        let zone = match zone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| TimingError::Zone(name.to_owned()))?,
        };
        Ok(Self::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// Every `interval` (`90s`, `15m`, `2h`, `1d`, or plain seconds), counted from `anchor`.
    pub fn every(interval: &str, anchor: i64) -> Result<Self, TimingError> {
        let period = parse_interval(interval)?;
        Ok(Self::Every {
            period_ms: i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
            anchor,
        })
    }

    /// Once, at an RFC 3339 instant.
    pub fn once(at: &str) -> Result<Self, TimingError> {
        let instant = DateTime::parse_from_rfc3339(at.trim())
            .map_err(|_| TimingError::Instant(at.to_owned()))?;
        Ok(Self::Once {
            at: instant.timestamp_millis(),
        })
    }

    /// The first slot strictly after `after` (ms), or `None` when there is none (a one-off
    /// that has passed, a pattern that never matches again).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Self::Cron { cron, zone } => {
                let start =
                    zone.from_utc_datetime(&Utc.timestamp_millis_opt(after).single()?.naive_utc());
                cron.find_next_occurrence(&start, false)
                    .ok()
                    .map(|next| next.timestamp_millis())
            }
            Self::Every { period_ms, anchor } => {
                let period = (*period_ms).max(1);
                if after < *anchor {
                    return Some(*anchor);
                }
                let steps = (after - anchor) / period + 1;
                anchor.checked_add(steps.checked_mul(period)?)
            }
            Self::Once { at } => (*at > after).then_some(*at),
        }
    }

    /// The last slot at or before `at` (ms), or `None` when there is none.
    pub fn last_at_or_before(&self, at: i64) -> Option<i64> {
        match self {
            Self::Cron { cron, zone } => {
                // Slots are whole seconds: the search starts at the second `at` falls in.
                let second = at.div_euclid(1000) * 1000;
                let start =
                    zone.from_utc_datetime(&Utc.timestamp_millis_opt(second).single()?.naive_utc());
                cron.find_previous_occurrence(&start, true)
                    .ok()
                    .map(|previous| previous.timestamp_millis())
            }
            Self::Every { period_ms, anchor } => {
                let period = (*period_ms).max(1);
                (at >= *anchor).then(|| anchor + (at - anchor) / period * period)
            }
            Self::Once { at: instant } => (*instant <= at).then_some(*instant),
        }
    }

    /// How many slots fall in `from..until` (ms), counting at most `cap`; `true` with it when
    /// there are more. Intervals are counted by arithmetic, patterns slot by slot.
    pub fn count_between(&self, from: i64, until: i64, cap: usize) -> (usize, bool) {
        if until <= from {
            return (0, false);
        }
        match self {
            Self::Every { period_ms, anchor } => {
                let period = i128::from((*period_ms).max(1));
                let (anchor, from, until) =
                    (i128::from(*anchor), i128::from(from), i128::from(until));
                let start = from.max(anchor);
                if until <= start {
                    return (0, false);
                }
                // Slots anchor + k * period with start <= slot < until.
                let first = (start - anchor + period - 1) / period;
                let last = (until - 1 - anchor) / period;
                let count = usize::try_from((last - first + 1).max(0)).unwrap_or(usize::MAX);
                (count.min(cap), count > cap)
            }
            Self::Once { at } => ((from <= *at && *at < until) as usize, false),
            Self::Cron { .. } => {
                let mut count = 0;
                let mut at = self.next_after(from - 1);
                while let Some(slot) = at.filter(|slot| *slot < until) {
                    if count == cap {
                        return (count, true);
                    }
                    count += 1;
                    at = self.next_after(slot);
                }
                (count, false)
            }
        }
    }

    /// The shortest gap between two consecutive slots from `from` on, sampled over the next
    /// `samples` slots (for a minimum-interval rule); `None` for a one-off.
    pub fn shortest_gap(&self, from: i64, samples: usize) -> Option<Duration> {
        if let Self::Every { period_ms, .. } = self {
            return Some(Duration::from_millis((*period_ms).max(0) as u64));
        }
        if matches!(self, Self::Once { .. }) {
            return None;
        }
        let mut previous = self.next_after(from)?;
        let mut shortest: Option<i64> = None;
        for _ in 0..samples {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            let gap = next - previous;
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            previous = next;
        }
        shortest.map(|ms| Duration::from_millis(ms.max(0) as u64))
    }
}

/// `90s`, `15m`, `2h`, `1d`, `1h30m`, or a plain number of seconds.
pub fn parse_interval(text: &str) -> Result<Duration, TimingError> {
    let bad = || TimingError::Interval(text.to_owned());
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return check_min(Duration::from_secs(seconds), text);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    check_min(Duration::from_secs(total), text)
}

fn check_min(period: Duration, text: &str) -> Result<Duration, TimingError> {
    if period < MIN_INTERVAL {
        return Err(TimingError::TooShort(text.to_owned()));
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a test instant")
            .timestamp_millis()
    }

    fn slots(timing: &Timing, from: &str, count: usize) -> Vec<String> {
        let mut at = ms(from);
        let mut out = Vec::new();
        for _ in 0..count {
            at = timing.next_after(at).expect("a next slot");
            out.push(
                Utc.timestamp_millis_opt(at)
                    .single()
                    .expect("valid")
                    .to_rfc3339(),
            );
        }
        out
    }

    fn expect(timing: &Timing, from: &str, want: &[&str]) {
        assert_eq!(slots(timing, from, want.len()), want, "from {from}");
    }

    #[test]
    fn berlin_skipped_time_runs_once_after_the_gap_and_repeated_time_runs_once() {
        let timing = Timing::cron("30 2 * * *", Some("Europe/Berlin")).expect("valid");
        // 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
        expect(
            &timing,
            "2027-03-27T12:00:00Z",
            &["2027-03-28T01:00:00+00:00", "2027-03-29T00:30:00+00:00"],
        );
        // 2027-10-31: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, runs once.
        expect(
            &timing,
            "2027-10-30T12:00:00Z",
            &["2027-10-31T00:30:00+00:00", "2027-11-01T01:30:00+00:00"],
        );
    }

    #[test]
    fn new_york_skipped_and_repeated_times() {
        let gap = Timing::cron("30 2 * * *", Some("America/New_York")).expect("valid");
        // 2027-03-14: 02:00 EST jumps to 03:00 EDT.
        expect(
            &gap,
            "2027-03-13T12:00:00Z",
            &["2027-03-14T07:00:00+00:00", "2027-03-15T06:30:00+00:00"],
        );
        let repeat = Timing::cron("30 1 * * *", Some("America/New_York")).expect("valid");
        // 2027-11-07: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice, runs once.
        expect(
            &repeat,
            "2027-11-06T12:00:00Z",
            &["2027-11-07T05:30:00+00:00", "2027-11-08T06:30:00+00:00"],
        );
    }

    #[test]
    fn wildcard_hours_keep_real_time_rhythm_through_the_repeat() {
        let timing = Timing::cron("0 */30 * * * *", Some("Europe/Berlin")).expect("valid");
        expect(
            &timing,
            "2027-10-30T23:45:00Z",
            &[
                "2027-10-31T00:00:00+00:00",
                "2027-10-31T00:30:00+00:00",
                "2027-10-31T01:00:00+00:00",
                "2027-10-31T01:30:00+00:00",
                "2027-10-31T02:00:00+00:00",
            ],
        );
    }

    #[test]
    fn seconds_field_and_weekday_names() {
        let timing = Timing::cron("15 0 9 * * MON-FRI", Some("UTC")).expect("valid");
        // 2027-01-01 is a Friday; the next weekday 09:00:15 after it is Monday the 4th.
        expect(
            &timing,
            "2027-01-01T10:00:00Z",
            &["2027-01-04T09:00:15+00:00", "2027-01-05T09:00:15+00:00"],
        );
    }

    #[test]
    fn intervals_are_anchored_and_one_offs_fire_once() {
        let anchor = ms("2027-01-01T00:00:00Z");
        let every = Timing::every("90s", anchor).expect("valid");
        assert_eq!(every.next_after(anchor - 5), Some(anchor));
        assert_eq!(every.next_after(anchor), Some(anchor + 90_000));
        assert_eq!(every.next_after(anchor + 90_000), Some(anchor + 180_000));
        assert_eq!(every.next_after(anchor + 100_000), Some(anchor + 180_000));
        let once = Timing::once("2027-01-01T09:00:00+01:00").expect("valid");
        assert_eq!(once.next_after(anchor), Some(ms("2027-01-01T08:00:00Z")));
        assert_eq!(once.next_after(ms("2027-01-01T08:00:00Z")), None);
    }

    #[test]
    fn the_last_slot_at_or_before_an_instant() {
        let cron = Timing::cron("0 30 2 * * *", Some("Europe/Berlin")).expect("valid");
        let at = ms("2027-03-29T00:30:00Z");
        assert_eq!(cron.last_at_or_before(at), Some(at));
        assert_eq!(cron.last_at_or_before(at + 999), Some(at));
        assert_eq!(
            cron.last_at_or_before(at - 1),
            Some(ms("2027-03-28T01:00:00Z")),
            "the day the 02:30 was skipped, it ran at 03:00"
        );
        let every = Timing::every("10s", 5_000).expect("valid");
        assert_eq!(every.last_at_or_before(4_999), None);
        assert_eq!(every.last_at_or_before(5_000), Some(5_000));
        assert_eq!(every.last_at_or_before(24_999), Some(15_000));
        let once = Timing::once("2027-01-01T00:00:00Z").expect("valid");
        assert_eq!(
            once.last_at_or_before(ms("2027-01-02T00:00:00Z")),
            Some(ms("2027-01-01T00:00:00Z"))
        );
        assert_eq!(once.last_at_or_before(ms("2026-12-31T00:00:00Z")), None);
    }

    #[test]
    fn slots_are_counted_by_arithmetic_or_one_by_one() {
        let every = Timing::every("10s", 5_000).expect("valid");
        assert_eq!(every.count_between(0, 5_000, 100), (0, false));
        assert_eq!(every.count_between(5_000, 15_001, 100), (2, false));
        assert_eq!(every.count_between(6_000, 45_000, 100), (3, false));
        assert_eq!(every.count_between(0, 86_400_000_000, 1000), (1000, true));
        let cron = Timing::cron("0 * * * *", None).expect("valid");
        assert_eq!(cron.count_between(0, 3 * 3_600_000, 100), (3, false));
        assert_eq!(cron.count_between(0, 3 * 3_600_000 + 1, 100), (4, false));
        assert_eq!(cron.count_between(0, 10 * 3_600_000, 5), (5, true));
        let once = Timing::once("1970-01-01T00:00:01Z").expect("valid");
        assert_eq!(once.count_between(0, 1_001, 10), (1, false));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            Timing::cron("61 * * * *", None),
            Err(TimingError::Cron { .. })
        ));
        assert!(matches!(
            Timing::cron("* * * * *", Some("Mars/Olympus")),
            Err(TimingError::Zone(_))
        ));
        assert!(Timing::cron("* * * * * * 2027", None).is_err());
        assert!(matches!(
            parse_interval("5 parsecs"),
            Err(TimingError::Interval(_))
        ));
        assert!(matches!(
            parse_interval("0s"),
            Err(TimingError::TooShort(_))
        ));
        assert!(matches!(
            Timing::once("tomorrow"),
            Err(TimingError::Instant(_))
        ));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn shortest_gap_sees_the_tightest_spacing() {
        let timing = Timing::cron("0 9,10 * * *", None).expect("valid");
        assert_eq!(
            timing.shortest_gap(ms("2027-01-01T00:00:00Z"), 8),
            Some(Duration::from_secs(3600))
        );
        let every = Timing::every("5m", 0).expect("valid");
        assert_eq!(every.shortest_gap(0, 4), Some(Duration::from_secs(300)));
    }
}
