//! Text that reaches a terminal or a certificate field: control characters
//! and Unicode format characters (category Cf: U+202E RIGHT-TO-LEFT
//! OVERRIDE, zero-width spaces, …) are refused in requested fields and
//! escaped whenever a field is shown; names (principals, claim values)
//! refuse whitespace too.

use crate::{Error, Result};

/// `s` with every control character (C0, DEL, C1) written as an escape
/// (`\n`, `\t`, `\x1b`, `\u{9b}`, …) and backslashes doubled, so that
/// nothing unprintable reaches a terminal raw. Printable text is unchanged.
pub fn escape(s: &str) -> String {
    if !s
        .chars()
        .any(|c| c.is_control() || is_format(c) || c == '\\')
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The Unicode format characters (general category Cf, Unicode 15.1):
/// invisible, and able to make a value read as another (U+202E reverses
/// what follows, U+200B hides a boundary).
const FORMAT: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a Unicode format character (category Cf).
pub fn is_format(c: char) -> bool {
    let c = c as u32;
    FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Refuses a value holding a control character (newline, NUL, ESC, DEL,
/// C1 controls, …) or a Unicode format character (U+202E, U+200B, …); the
/// error names `field` and shows the value escaped.
pub fn check_printable(field: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| c.is_control() || is_format(*c)) {
        None => Ok(()),
        Some(c) => Err(Error::Template(format!(
            "{field} `{}` contains the {} character U+{:04X}",
            escape(value),
            if c.is_control() { "control" } else { "format" },
            c as u32
        ))),
    }
}

/// Refuses a name (a principal, a claim value) that is not printable (see
/// [`check_printable`]) or holds whitespace: a principal is one word to
/// sshd, and a space would make one name read as two.
pub fn check_name(field: &str, value: &str) -> Result<()> {
    check_printable(field, value)?;
    match value.chars().find(|c| c.is_whitespace()) {
        None => Ok(()),
        Some(c) => Err(Error::Template(format!(
            "{field} `{}` contains whitespace (U+{:04X})",
            escape(value),
            c as u32
        ))),
    }
}

/// The most bytes of a value (a reason, a claim value, a header) that is
/// stored or logged.
pub const CAP: usize = 256;

/// `s` cut to at most [`CAP`] bytes on a UTF-8 boundary, marked `…[cut]`
/// when cut (the mark included in the cap).
pub fn cap(s: &str) -> std::borrow::Cow<'_, str> {
    const MARK: &str = "…[cut]";
    if s.len() <= CAP {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = CAP - MARK.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{MARK}", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_a_char_boundary() {
        assert_eq!(cap("short"), "short");
        let long = "é".repeat(200);
        let c = cap(&long);
        assert!(c.len() <= CAP && c.ends_with("…[cut]"), "{}", c.len());
        assert!(c.starts_with("éé"));
        assert_eq!(cap(&"x".repeat(CAP)), "x".repeat(CAP));
    }

    #[test]
    fn escapes_controls_only() {
        assert_eq!(escape("alice@example.com"), "alice@example.com");
        assert_eq!(escape("a\nb\x1b[31m\0"), "a\\nb\\x1b[31m\\x00");
        assert_eq!(escape("c\u{9b}d\\"), "c\\u{9b}d\\\\");
        assert_eq!(escape("naïve"), "naïve");
    }

    #[test]
    fn printable_check_names_the_field() {
        assert!(check_printable("key_id", "alice").is_ok());
        let e = check_printable("key_id", "alice\nroot")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key_id") && e.contains("alice\\nroot") && !e.contains('\n'),
            "{e}"
        );
        assert!(check_printable("principal", "a\u{7f}").is_err());
        assert!(check_printable("principal", "a\u{85}").is_err());
        // Format characters: refused, and shown escaped.
        let e = check_printable("key_id", "admin\u{202e}gpj.exe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\u{202e}") && e.contains("format"), "{e}");
        assert!(check_printable("principal", "a\u{200b}b").is_err());
        assert!(check_printable("key_id", "deploy run 42").is_ok());
        // Names: no whitespace either.
        assert!(check_name("principal", "alice").is_ok());
        assert!(check_name("principal", "naïve").is_ok());
        for bad in ["al ice", "alice\u{a0}", "a\u{3000}b", "a\u{feff}"] {
            assert!(check_name("principal", bad).is_err(), "{bad:?}");
        }
    }
}
