//! Durations and budget windows, in UTC.
//!
//! `budget_duration` windows are calendar-aligned when they name a calendar unit: `1d` and
//! `daily` reset at the next midnight, `7d`, `1w` and `weekly` on the next Monday at
//! midnight, `30d`, `1mo` and `monthly` on the first of the next month; other day counts
//! reset at midnight `n` days on. Second, minute and hour windows (`30s`, `15m`, `1h`) run
//! from the moment they start. `duration` (key expiry) is never aligned: `now + duration`.

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A plain length in seconds (`30s`, `15m`, `1h`).
    Seconds(i64),
    /// `n` days.
    Days(i64),
    /// `n` weeks.
    Weeks(i64),
    /// `n` calendar months.
    Months(i64),
}

/// Parse `30s`, `15m`, `1h`, `1d`, `7d`, `2w`, `1mo`, `daily`, `weekly`, `monthly`, `yearly`.
pub fn parse(s: &str) -> Result<Period, String> {
    let t = s.trim().to_ascii_lowercase();
    let named = match t.as_str() {
        "daily" | "day" => Some(Period::Days(1)),
        "weekly" | "week" => Some(Period::Weeks(1)),
        "monthly" | "month" => Some(Period::Months(1)),
        "yearly" | "year" | "annually" => Some(Period::Months(12)),
        _ => None,
    };
    if let Some(p) = named {
        return Ok(p);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad(s))?;
    if n <= 0 || n > 100_000 {
        return Err(bad(s));
    }
    Ok(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => Period::Seconds(n),
        "m" | "min" | "mins" | "minute" | "minutes" => Period::Seconds(n * 60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Period::Seconds(n * 3600),
        "d" | "day" | "days" => match n {
            7 => Period::Weeks(1),
            30 => Period::Months(1),
            _ => Period::Days(n),
        },
        "w" | "wk" | "week" | "weeks" => Period::Weeks(n),
        "mo" | "month" | "months" => Period::Months(n),
        "y" | "yr" | "year" | "years" => Period::Months(12 * n),
        _ => return Err(bad(s)),
    })
}

fn bad(s: &str) -> String {
    format!(
        "`{s}` is not a duration: use a number and a unit (30s, 15m, 1h, 1d, 7d, 30d, 1mo) or daily, weekly, monthly"
    )
}

const DAY: i64 = 86_400;

/// When a budget window that starts at `now` (unix seconds) resets.
pub fn next_reset(p: Period, now: i64) -> i64 {
    let midnight = now.div_euclid(DAY) * DAY;
    match p {
        Period::Seconds(s) => now + s,
        Period::Days(n) => midnight + n * DAY,
        Period::Weeks(n) => {
            // 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, is 0 on Mondays.
            let days = now.div_euclid(DAY);
            let since_monday = (days + 3).rem_euclid(7);
            (days - since_monday + 7 * n) * DAY
        }
        Period::Months(n) => first_of_month_after(now, n).unwrap_or(now + 30 * n * DAY),
    }
}

/// `now + p`, not aligned (key expiry).
pub fn after(p: Period, now: i64) -> i64 {
    match p {
        Period::Seconds(s) => now + s,
        Period::Days(n) => now + n * DAY,
        Period::Weeks(n) => now + 7 * n * DAY,
        Period::Months(n) => now + 30 * n * DAY,
    }
}

/// Midnight UTC on the first of the month `n` months after the one `now` falls in; `None`
/// beyond the calendar's range (years ±9999).
fn first_of_month_after(now: i64, n: i64) -> Option<i64> {
    let date = OffsetDateTime::from_unix_timestamp(now).ok()?.date();
    let months = i64::from(date.year()) * 12 + i64::from(u8::from(date.month()) - 1) + n;
    let year = i32::try_from(months.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(months.rem_euclid(12) + 1).ok()?).ok()?;
    let first = Date::from_calendar_date(year, month, 1).ok()?;
    Some(first.midnight().assume_utc().unix_timestamp())
}

/// `2026-11-22T08:45:00.123Z`: always three fraction digits, always `Z`.
const ISO_MS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// RFC 3339 UTC with milliseconds: `2026-11-22T08:45:00.123Z`. Times beyond the calendar's
/// range (years ±9999) are shown as its first or last millisecond.
pub fn iso_ms(ms: i64) -> String {
    let min = PrimitiveDateTime::MIN.assume_utc().unix_timestamp() * 1000;
    let max = PrimitiveDateTime::MAX.assume_utc().unix_timestamp() * 1000 + 999;
    let nanos = i128::from(ms.clamp(min, max)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(ISO_MS).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string())
}

/// RFC 3339 UTC for unix seconds.
pub fn iso(secs: i64) -> String {
    iso_ms(secs.saturating_mul(1000))
}

/// A date and time without an offset (`2026-11-22T08:45:00`, `.250` allowed), read as UTC.
const LOCAL: &[BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day][first [T] [t] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
);

/// Parse `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time (`2026-11-22T08:45:00Z`,
/// `...+02:00`, fractional seconds allowed; without an offset, UTC) to unix milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let at = if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else if let Ok(t) = PrimitiveDateTime::parse(s, LOCAL) {
        t.assume_utc()
    } else {
        Date::parse(s, format_description!("[year]-[month]-[day]"))
            .ok()?
            .midnight()
            .assume_utc()
    };
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        parse_time_ms(s).unwrap() / 1000
    }

    #[test]
    fn parses_litellm_durations() {
        assert_eq!(parse("30s"), Ok(Period::Seconds(30)));
        assert_eq!(parse("15m"), Ok(Period::Seconds(900)));
        assert_eq!(parse("1h"), Ok(Period::Seconds(3600)));
        assert_eq!(parse("1d"), Ok(Period::Days(1)));
        assert_eq!(parse("7d"), Ok(Period::Weeks(1)));
        assert_eq!(parse("30d"), Ok(Period::Months(1)));
        assert_eq!(parse("monthly"), Ok(Period::Months(1)));
        assert_eq!(parse("1mo"), Ok(Period::Months(1)));
        assert!(parse("soon").is_err());
        assert!(parse("0d").is_err());
        assert!(parse("-1d").is_err());
    }

    #[test]
    fn windows_align_to_the_calendar_in_utc() {
        let now = t("2026-11-22T08:45:10Z"); // a Sunday
        assert_eq!(next_reset(Period::Seconds(30), now), now + 30);
        assert_eq!(next_reset(Period::Days(1), now), t("2026-11-23"));
        assert_eq!(next_reset(Period::Days(2), now), t("2026-11-24"));
        assert_eq!(next_reset(Period::Weeks(1), now), t("2026-11-23"));
        let monday = t("2026-11-23T00:00:00Z");
        assert_eq!(next_reset(Period::Weeks(1), monday), t("2026-11-30"));
        assert_eq!(next_reset(Period::Months(1), now), t("2026-12-01"));
        assert_eq!(
            next_reset(Period::Months(1), t("2026-12-31T23:59:59Z")),
            t("2027-01-01")
        );
        assert_eq!(next_reset(Period::Months(12), now), t("2027-11-01"));
    }

    #[test]
    fn time_round_trips() {
        let ms = parse_time_ms("2026-11-22T08:45:10.250Z").unwrap();
        assert_eq!(iso_ms(ms), "2026-11-22T08:45:10.250Z");
        assert_eq!(
            parse_time_ms("2026-11-22T10:45:10+02:00"),
            parse_time_ms("2026-11-22T08:45:10Z")
        );
        assert_eq!(
            parse_time_ms("2026-11-22"),
            parse_time_ms("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            parse_time_ms("2026-11-22 08:45:10.25"),
            parse_time_ms("2026-11-22T08:45:10.250Z")
        );
        assert!(parse_time_ms("22/11/2026").is_none());
        assert_eq!(parse_time_ms("1970-01-01"), Some(0));
        assert_eq!(
            iso(t("2024-02-29T23:59:59Z") + 1),
            "2024-03-01T00:00:00.000Z"
        );
        assert_eq!(
            iso(t("2023-12-31T23:59:59Z") + 1),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(t("2024-01-01"), 19_723 * DAY);
    }
}
