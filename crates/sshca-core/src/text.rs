//! Text that reaches a terminal or a certificate field: control characters
//! are refused in requested fields and escaped whenever a field is shown.

use crate::{Error, Result};

/// `s` with every control character (C0, DEL, C1) written as an escape
/// (`\n`, `\t`, `\x1b`, `\u{9b}`, …) and backslashes doubled, so that
/// nothing unprintable reaches a terminal raw. Printable text is unchanged.
pub fn escape(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
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
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Refuses a value holding a control character (newline, NUL, ESC, DEL,
/// C1 controls, …); the error names `field` and shows the value escaped.
pub fn check_printable(field: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(Error::Template(format!(
            "{field} `{}` contains the control character U+{:04X}",
            escape(value),
            c as u32
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
