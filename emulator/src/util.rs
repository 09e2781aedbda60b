//! Small helpers shared by the service handlers.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Splits a query string into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

const LENIENT_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes standard base64 (padding optional); also accepts the URL-safe
/// alphabet, as protobuf JSON does.
pub fn unb64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    LENIENT_STD
        .decode(s)
        .or_else(|_| LENIENT_URL.decode(s))
        .map_err(|e| format!("{field} is not valid base64: {e}"))
}

/// base64url without padding (JOSE, Azure).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url (padding optional).
pub fn unb64url(field: &str, s: &str) -> Result<Vec<u8>, String> {
    LENIENT_URL
        .decode(s)
        .map_err(|e| format!("{field} is not valid base64url: {e}"))
}

/// RFC 3339 UTC time with nanoseconds, as Google APIs print it.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Unix seconds of an RFC 3339 time (`2026-12-07T10:00:00Z`, with optional
/// fractional seconds, `Z` or a `+hh:mm`/`-hh:mm` offset); fractions are
/// dropped.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (y, m, dd): (i64, u32, u32) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, o) = time.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let clock = clock.split_once('.').map_or(clock, |(c, _)| c);
    let mut t = clock.split(':');
    let (h, mi, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, dd) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs).ok()
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

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a JSON body into an object, naming the problem when it is not one.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("request body is not a JSON object".into()),
        Err(e) => Err(format!("malformed JSON in request body: {e}")),
    }
}

/// A string field of a JSON object.
pub fn str_field<'a>(
    m: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match m.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// Whether `path` is segments of `[A-Za-z0-9._-]` joined by `/` (an
/// external key manager's crypto space path, or a key path on it).
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// `true`, for serde defaults.
pub(crate) fn default_true() -> bool {
    true
}

/// A signed clock offset: `-1h`, `+2d12h`, `90m`, `30s` or plain seconds
/// (`-3600`), in seconds. Units: `s`, `m`, `h`, `d`, `w`.
pub fn parse_offset(text: &str) -> Result<i64, String> {
    let bad =
        || format!("clock offset {text:?} is not a duration such as -1h, +2d12h, 90m or -3600");
    let t = text.trim();
    let (sign, body) = match t.strip_prefix('-') {
        Some(rest) => (-1i64, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = body.parse::<i64>() {
        return Ok(sign * secs);
    }
    let total = sum_units(body, |c| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        'w' => Some(7 * 86_400),
        _ => None,
    })
    .ok_or_else(bad)?;
    // About 100 years either way: beyond that the clock means nothing.
    if total > 100 * 366 * 86_400 {
        return Err(format!("clock offset {text:?} is more than 100 years"));
    }
    Ok(sign * total as i64)
}

/// Seconds in `12h30m`-like text: numbers each followed by a unit `unit`
/// knows (seconds per unit); `None` for anything else or an overflow.
pub fn sum_units(text: &str, unit: impl Fn(char) -> Option<u64>) -> Option<u64> {
    let (mut total, mut digits) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(unit(c)?)?)?;
    }
    digits.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000000000Z");
        for d in [-1000, 0, 59, 60, 365, 11_000, 20_000, 30_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339(&rfc3339(1_800_000_000)), Some(1_800_000_000));
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T25:00:00Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("-1h"), Ok(-3600));
        assert_eq!(parse_offset("+2d12h"), Ok(216_000));
        assert_eq!(parse_offset("90m"), Ok(5400));
        assert_eq!(parse_offset("-3600"), Ok(-3600));
        assert_eq!(parse_offset("0"), Ok(0));
        for bad in ["", "-", "1x", "h", "1h2", "--1h", "99999999999999w"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query() {
        assert_eq!(
            parse_query("a=b%2Fc&$alt=json%3Benum-encoding%3Dint&x"),
            vec![
                ("a".into(), "b/c".into()),
                ("$alt".into(), "json;enum-encoding=int".into()),
                ("x".into(), "".into())
            ]
        );
    }
}
