//! Durations and budget windows, in UTC.
//!
//! `budget_duration` windows are calendar-aligned when they name a calendar unit: `1d` and
//! `daily` reset at the next midnight, `7d`, `1w` and `weekly` on the next Monday at
//! midnight, `30d`, `1mo` and `monthly` on the first of the next month; other day counts
//! reset at midnight `n` days on. Second, minute and hour windows (`30s`, `15m`, `1h`) run
//! from the moment they start. `duration` (key expiry) is never aligned: `now + duration`.

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
        Period::Months(n) => {
            let (y, m, _) = civil_from_days(now.div_euclid(DAY));
            let months = y * 12 + (i64::from(m) - 1) + n;
            days_from_civil(months.div_euclid(12), (months.rem_euclid(12) + 1) as u32, 1) * DAY
        }
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC with milliseconds: `2026-11-22T08:45:00.123Z`.
pub fn iso_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let t = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        ms.rem_euclid(1000)
    )
}

/// RFC 3339 UTC for unix seconds.
pub fn iso(secs: i64) -> String {
    iso_ms(secs * 1000)
}

/// Parse `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time (`2026-11-22T08:45:00Z`,
/// `...+02:00`, fractional seconds allowed) to unix milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * DAY * 1000;
    if b.len() == 10 {
        return Some(day_ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 {
        return None;
    }
    let hh: i64 = s.get(11..13)?.parse().ok()?;
    let mm: i64 = s.get(14..16)?.parse().ok()?;
    let ss: i64 = s.get(17..19)?.parse().ok()?;
    let mut rest = &s[19..];
    let mut frac_ms = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let f = &r[..digits];
        let padded = format!("{:0<3}", &f[..f.len().min(3)]);
        frac_ms = padded.parse::<i64>().ok()?;
        rest = &r[digits..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let h: i64 = o.get(1..3)?.parse().ok()?;
            let mi: i64 = o.get(4..6)?.parse().ok()?;
            let v = h * 3600 + mi * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    Some(day_ms + ((hh * 3600 + mm * 60 + ss - offset_s) * 1000) + frac_ms)
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
        assert!(parse_time_ms("22/11/2026").is_none());
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
