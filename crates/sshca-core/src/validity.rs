//! ssh-keygen compatible validity intervals (`ssh-keygen -V`).
//!
//! Grammar (as `ssh-keygen -V`):
//! - `+TIMESPEC` alone: from one minute before now (rounded down to the
//!   minute, as ssh-keygen backdates) until now + TIMESPEC;
//! - `FROM:TO` where FROM is `[+-]TIMESPEC`, `YYYYMMDD[HHMM[SS]][Z]`, `0xHEX`
//!   (unix seconds) or `always`, and TO is the same or `forever`.
//!
//! TIMESPEC is one or more `NUMBER[UNIT]` with UNIT one of `s`, `m`, `h`, `d`,
//! `w` (no unit means seconds), e.g. `1h30m` or `52w1d`. Absolute times are
//! taken as UTC (a trailing `Z` is accepted and changes nothing).

use crate::{Error, Result};

/// A validity interval in unix seconds: `valid_after <= t < valid_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start (inclusive).
    pub valid_after: u64,
    /// End (exclusive); [`crate::FOREVER`] for no end.
    pub valid_before: u64,
}

fn err(input: &str, reason: impl Into<String>) -> Error {
    Error::Validity {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Seconds in one time unit (`s`, `m`, `h`, `d`, `w`, any case).
fn unit_seconds(unit: char) -> Option<u64> {
    Some(match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    })
}

/// Parses an OpenSSH time span (`convtime`): `90`, `5m`, `1h30m`, `52w1d`.
pub fn parse_timespec(s: &str) -> Result<u64> {
    if s.is_empty() {
        return Err(err(s, "empty time span"));
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for ch in s.chars() {
        if let Some(d) = ch.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| err(s, "number too large"))?,
            );
            continue;
        }
        let mult = unit_seconds(ch)
            .ok_or_else(|| err(s, format!("unknown unit `{ch}` (use s, m, h, d or w)")))?;
        let n = num
            .take()
            .ok_or_else(|| err(s, format!("unit `{ch}` without a number before it")))?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err(s, "time span too large"))?;
    }
    if let Some(n) = num {
        total = total
            .checked_add(n)
            .ok_or_else(|| err(s, "time span too large"))?;
    }
    if total > i64::MAX as u64 {
        return Err(err(s, "time span too large"));
    }
    Ok(total)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// Parses an absolute time `YYYYMMDD`, `YYYYMMDDHHMM`, `YYYYMMDDHHMMSS`
/// (optionally ending in `Z`; always UTC) or `0xHEX` unix seconds.
pub fn parse_absolute(s: &str) -> Result<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map_err(|_| err(s, "not a hexadecimal number of seconds"));
    }
    let body = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    if !body.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&body.len()) {
        return Err(err(
            s,
            "expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (optionally with Z), or 0xSECONDS",
        ));
    }
    let num = |a: usize, b: usize| -> u32 {
        body[a..b]
            .bytes()
            .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
    };
    let year = i64::from(num(0, 4));
    let (month, day) = (num(4, 6), num(6, 8));
    let (hour, min, sec) = match body.len() {
        8 => (0, 0, 0),
        12 => (num(8, 10), num(10, 12), 0),
        _ => (num(8, 10), num(10, 12), num(12, 14)),
    };
    if year < 1970 {
        return Err(err(s, "year before 1970"));
    }
    if !(1..=12).contains(&month) {
        return Err(err(s, format!("month {month} out of range")));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(err(s, format!("day {day} out of range")));
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err(err(s, "time of day out of range"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    u64::try_from(secs).map_err(|_| err(s, "time before 1970"))
}

fn parse_relative(s: &str, now: u64) -> Result<u64> {
    let (neg, spec) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => return Err(err(s, "relative time must start with + or -")),
    };
    let secs = parse_timespec(spec).map_err(|_| err(s, "invalid relative time"))?;
    if neg {
        now.checked_sub(secs)
            .ok_or_else(|| err(s, "time before 1970 cannot be represented"))
    } else {
        now.checked_add(secs)
            .ok_or_else(|| err(s, "time too far in the future"))
    }
}

/// Parses a `-V` validity specification relative to `now` (unix seconds).
pub fn parse_validity(spec: &str, now: u64) -> Result<Validity> {
    let spec = spec.trim();
    if spec.starts_with('+') && !spec.contains(':') {
        let secs = parse_timespec(&spec[1..]).map_err(|e| match e {
            Error::Validity { reason, .. } => err(spec, reason),
            other => other,
        })?;
        let before = now
            .checked_add(secs)
            .ok_or_else(|| err(spec, "time too far in the future"))?;
        let after = (now.saturating_sub(59) / 60) * 60;
        return finish(spec, after, before);
    }
    let (from, to) = spec
        .split_once(':')
        .ok_or_else(|| err(spec, "expected +TIMESPEC or FROM:TO"))?;
    if from.is_empty() || to.is_empty() {
        return Err(err(spec, "expected FROM:TO with both parts"));
    }
    let after = match from {
        "always" => 0,
        f if f.starts_with(['+', '-']) => parse_relative(f, now)?,
        f => parse_absolute(f)?,
    };
    let before = match to {
        "forever" => crate::FOREVER,
        t if t.starts_with(['+', '-']) => parse_relative(t, now)?,
        t => parse_absolute(t)?,
    };
    finish(spec, after, before)
}

fn finish(spec: &str, after: u64, before: u64) -> Result<Validity> {
    if before <= after {
        return Err(err(
            spec,
            "empty validity interval (end is not after start)",
        ));
    }
    Ok(Validity {
        valid_after: after,
        valid_before: before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000;

    #[test]
    fn timespecs() {
        assert_eq!(parse_timespec("90").unwrap(), 90);
        assert_eq!(parse_timespec("1h30m").unwrap(), 5400);
        assert_eq!(parse_timespec("52w1d").unwrap(), 52 * 604_800 + 86_400);
        assert_eq!(parse_timespec("1H").unwrap(), 3600);
        assert!(parse_timespec("").is_err());
        assert!(parse_timespec("h").is_err());
        assert!(parse_timespec("1x").is_err());
        assert!(parse_timespec("99999999999999999999").is_err());
    }

    #[test]
    fn forms() {
        let v = parse_validity("+1h", NOW).unwrap();
        assert_eq!(v.valid_before, NOW + 3600);
        assert_eq!(v.valid_after, ((NOW - 59) / 60) * 60);
        let v = parse_validity("-5m:+1d", NOW).unwrap();
        assert_eq!((v.valid_after, v.valid_before), (NOW - 300, NOW + 86_400));
        let v = parse_validity("always:forever", NOW).unwrap();
        assert_eq!((v.valid_after, v.valid_before), (0, u64::MAX));
        let v = parse_validity("-1d:+52w1d", NOW).unwrap();
        assert_eq!(
            v.valid_before - v.valid_after,
            86_400 + 52 * 604_800 + 86_400
        );
        let v = parse_validity("20261122:20261123", NOW).unwrap();
        assert_eq!(v.valid_after, 1_795_305_600);
        assert_eq!(v.valid_before, 1_795_305_600 + 86_400);
        let v = parse_validity("20261122103000:forever", NOW).unwrap();
        assert_eq!(v.valid_after, 1_795_305_600 + 10 * 3600 + 30 * 60);
        let v = parse_validity("202611221030Z:0x7fffffff", NOW).unwrap();
        assert_eq!(v.valid_after, 1_795_305_600 + 10 * 3600 + 30 * 60);
        assert_eq!(v.valid_before, 0x7fff_ffff);
    }

    #[test]
    fn errors_name_the_problem() {
        for bad in [
            "",
            "1h",
            "+",
            ":",
            "always:",
            ":forever",
            "forever:always",
            "20261301:forever",
            "20260230:forever",
            "2026112:forever",
            "+1h:-1h",
            "+1q",
            "-99999999999w:forever",
        ] {
            let e = parse_validity(bad, NOW).unwrap_err();
            assert!(matches!(e, Error::Validity { .. }), "{bad}: {e}");
        }
        let e = parse_validity("20261301:forever", NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("month 13"), "{e}");
    }
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC), as `ssh-keygen -L`
/// formats times; `u64::MAX` is `forever`.
pub fn format_time(t: u64) -> String {
    if t == crate::FOREVER {
        return "forever".into();
    }
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parses a point in time: unix seconds, or `YYYYMMDD[HHMM[SS]][Z]` (UTC),
/// or `now`.
pub fn parse_point(s: &str, now: u64) -> Result<u64> {
    if s == "now" {
        return Ok(now);
    }
    if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) && s.len() != 8 {
        return s.parse().map_err(|_| err(s, "not a number of seconds"));
    }
    parse_absolute(s)
}

#[cfg(test)]
mod time_tests {
    use super::*;
    #[test]
    fn format_and_parse_points() {
        assert_eq!(format_time(1_795_305_600 + 37_800), "2026-11-22T10:30:00");
        assert_eq!(format_time(0), "1970-01-01T00:00:00");
        assert_eq!(format_time(u64::MAX), "forever");
        assert_eq!(parse_point("20261122", 0).unwrap(), 1_795_305_600);
        assert_eq!(parse_point("1795305600", 0).unwrap(), 1_795_305_600);
        assert_eq!(parse_point("now", 7).unwrap(), 7);
        assert!(parse_point("yesterday", 0).is_err());
    }
}

/// Parses a duration for renewal checks: seconds (`3600`), or a decimal
/// number with a unit `s`, `m`, `h`, `d`, `w` (`30d`, `1.5h`), or a
/// TIMESPEC such as `1h30m`.
pub fn parse_ttl(s: &str) -> Result<u64> {
    let t = s.trim();
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let num = &t[..t.len() - 1];
        if num.contains('.') {
            let mult = unit_seconds(unit)
                .ok_or_else(|| err(s, format!("unknown unit `{unit}` (use s, m, h, d or w)")))?
                as f64;
            let v: f64 = num
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v < 1e12)
                .ok_or_else(|| err(s, "not a non-negative number"))?;
            return Ok((v * mult).round() as u64);
        }
    }
    parse_timespec(t)
}

#[cfg(test)]
mod ttl_tests {
    use super::parse_ttl;
    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_ttl("1.5h").unwrap(), 5400);
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert_eq!(parse_ttl("1h30m").unwrap(), 5400);
        for bad in ["", "x", "1.5x", "-1.5h", "1..5h", "nan.h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}

/// Describes a validity interval as `ssh-keygen -L` does: `forever`,
/// `after T`, `before T` or `from T to T` (UTC).
pub fn describe(valid_after: u64, valid_before: u64) -> String {
    match (valid_after, valid_before) {
        (0, crate::FOREVER) => "forever".into(),
        (a, crate::FOREVER) => format!("after {}", format_time(a)),
        (0, b) => format!("before {}", format_time(b)),
        (a, b) => format!("from {} to {}", format_time(a), format_time(b)),
    }
}
