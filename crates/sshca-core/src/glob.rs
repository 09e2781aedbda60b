//! Shell-style patterns (`*` and `?`) as policies and identity matchers
//! use them.

use std::fmt;

use crate::template;
use crate::{Error, Result};

/// A shell-style pattern: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Checks the pattern: not empty; `[`, `]`, `{`, `}` and `,` are not part
    /// of the syntax and are refused, except the braces of an identity
    /// template (`{identity}`, `{claims.NAME}`), which a policy fills before
    /// matching.
    pub fn new(p: &str) -> Result<Self> {
        if p.is_empty() {
            return Err(Error::Template("empty glob".into()));
        }
        let refused = if template::is_template(p) {
            "[],"
        } else {
            "[]{},"
        };
        if let Some(c) = p.chars().find(|c| refused.contains(*c)) {
            return Err(Error::Template(format!(
                "glob `{p}` uses `{c}`, which is not supported (only * and ?)"
            )));
        }
        Ok(Self(p.to_owned()))
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        wildcard_match(&self.0, s)
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` matches `pattern`, where `*` is any run of characters and `?`
/// one character (OpenSSH's `match_pattern`, without lists or negation).
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl serde::Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
