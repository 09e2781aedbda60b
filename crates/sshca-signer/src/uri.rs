//! Key URIs: one string names a key on any backend.
//!
//! Grammar: `SCHEME ":" LOCATION [ "?" NAME "=" VALUE *( "&" NAME "=" VALUE ) ]`
//! - SCHEME: a lowercase letter, then lowercase letters, digits, `+`, `-`, `.`;
//! - LOCATION: backend-specific (a path, a key id, a resource name), not empty;
//!   `%XX` escapes are decoded, and `?`, `&`, `%` and spaces must be escaped;
//! - options: percent-encoded names and values; each name at most once.
//!
//! Schemes whose location has an escaping of its own keep it as written
//! (`pkcs11:`, RFC 7512: `;`-separated attributes whose values are
//! %-escaped bytes, decoded by the backend).
//!
//! Parsing and display round-trip: `KeyUri::parse(&u.to_string()) == Ok(u)`.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::{Error, ErrorKind, Result};

/// Characters escaped in locations.
const LOCATION: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'?').add(b'#');
/// Characters escaped in option names and values.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'&')
    .add(b'=')
    .add(b'#')
    .add(b'+')
    .add(b'?');

/// Schemes whose location is kept as written (see the module docs).
const RAW_LOCATION: [&str; 1] = ["pkcs11"];

/// A parsed key URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyUri {
    scheme: String,
    location: String,
    options: Vec<(String, String)>,
}

fn bad(uri: &str, what: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("key URI `{uri}`: {what}"))
}

fn decode(uri: &str, part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            bad(
                uri,
                format_args!("{what} is not valid UTF-8 after %-decoding"),
            )
        })
}

impl KeyUri {
    /// Builds a URI from parts (checked as [`KeyUri::parse`] would).
    pub fn new(scheme: &str, location: &str) -> Result<Self> {
        let u = Self {
            scheme: scheme.to_owned(),
            location: location.to_owned(),
            options: Vec::new(),
        };
        u.check(&u.to_string())?;
        Ok(u)
    }

    fn check(&self, uri: &str) -> Result<()> {
        let mut chars = self.scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            return Err(bad(
                uri,
                format_args!(
                    "scheme `{}` must start with a lowercase letter and hold only a-z 0-9 + - .",
                    self.scheme
                ),
            ));
        }
        if self.location.is_empty() {
            return Err(bad(uri, "the key location after `SCHEME:` is empty"));
        }
        Ok(())
    }

    /// Parses a key URI; errors name the part that is wrong.
    pub fn parse(uri: &str) -> Result<Self> {
        let (scheme, rest) = uri.split_once(':').ok_or_else(|| {
            bad(
                uri,
                "no scheme (expected SCHEME:LOCATION, e.g. file:/etc/ssh/ca)",
            )
        })?;
        let (loc, query) = match rest.split_once('?') {
            Some((l, q)) => (l, Some(q)),
            None => (rest, None),
        };
        let mut options: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            if q.is_empty() {
                return Err(bad(uri, "empty option list after `?`"));
            }
            for pair in q.split('&') {
                let (n, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(uri, format_args!("option `{pair}` is not NAME=VALUE")))?;
                let n = decode(uri, n, "an option name")?;
                let v = decode(uri, v, "an option value")?;
                if n.is_empty() {
                    return Err(bad(uri, "an option has an empty name"));
                }
                if options.iter().any(|(x, _)| *x == n) {
                    return Err(bad(uri, format_args!("option `{n}` is given twice")));
                }
                options.push((n, v));
            }
        }
        let u = Self {
            scheme: scheme.to_owned(),
            location: if RAW_LOCATION.contains(&scheme) {
                if let Some(c) = loc.chars().find(|c| c.is_control() || *c == ' ') {
                    return Err(bad(
                        uri,
                        format_args!("the location holds {c:?}; escape it as %XX"),
                    ));
                }
                loc.to_owned()
            } else {
                decode(uri, loc, "the location")?
            },
            options,
        };
        u.check(uri)?;
        Ok(u)
    }

    /// The scheme (`file`, `awskms`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The backend-specific location (%-decoded, except for schemes that
    /// keep it as written, see the module docs).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// All options in order.
    pub fn options(&self) -> &[(String, String)] {
        &self.options
    }

    /// The value of an option.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) an option.
    pub fn set_option(&mut self, name: &str, value: &str) {
        match self.options.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.options.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes an option, returning its value.
    pub fn remove_option(&mut self, name: &str) -> Option<String> {
        let i = self.options.iter().position(|(k, _)| k == name)?;
        Some(self.options.remove(i).1)
    }

    /// Rejects options other than `allowed` (and the common `pin`), naming
    /// the first unknown one.
    pub fn check_options(&self, allowed: &[&str]) -> Result<()> {
        for (n, _) in &self.options {
            if n != "pin" && !allowed.contains(&n.as_str()) {
                let mut known: Vec<&str> = allowed.to_vec();
                known.push("pin");
                return Err(bad(
                    &self.to_string(),
                    format_args!(
                        "unknown option `{n}` for scheme `{}` (known: {})",
                        self.scheme,
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if RAW_LOCATION.contains(&self.scheme.as_str()) {
            write!(f, "{}:{}", self.scheme, self.location)?;
        } else {
            write!(
                f,
                "{}:{}",
                self.scheme,
                utf8_percent_encode(&self.location, LOCATION)
            )?;
        }
        for (i, (n, v)) in self.options.iter().enumerate() {
            write!(
                f,
                "{}{}={}",
                if i == 0 { '?' } else { '&' },
                utf8_percent_encode(n, QUERY),
                utf8_percent_encode(v, QUERY)
            )?;
        }
        Ok(())
    }
}

impl FromStr for KeyUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_examples() {
        let u =
            KeyUri::parse("file:/etc/ssh/ca?passphrase-file=/run/pw&pin=SHA256:abc%2B").unwrap();
        assert_eq!(u.scheme(), "file");
        assert_eq!(u.location(), "/etc/ssh/ca");
        assert_eq!(u.option("pin"), Some("SHA256:abc+"));
        let u = KeyUri::parse("awskms:arn:aws:kms:eu-west-1:111:alias/ssh-ca?region=eu-west-1")
            .unwrap();
        assert_eq!(u.location(), "arn:aws:kms:eu-west-1:111:alias/ssh-ca");
        // pkcs11: the RFC 7512 path stays escaped for the backend.
        let text = "pkcs11:token=CA%20one;id=%ff%01?module-path=/usr/lib/x.so&pin-source=/run/pin";
        let u = KeyUri::parse(text).unwrap();
        assert_eq!(u.location(), "token=CA%20one;id=%ff%01");
        assert_eq!(u.option("module-path"), Some("/usr/lib/x.so"));
        assert_eq!(u.to_string(), text);
        assert!(KeyUri::parse("pkcs11:token=a b").is_err());
    }

    #[test]
    fn errors_name_the_part() {
        let e = KeyUri::parse("no-scheme-here").unwrap_err().to_string();
        assert!(e.contains("no scheme"), "{e}");
        let e = KeyUri::parse("File:/x").unwrap_err().to_string();
        assert!(e.contains("scheme `File`"), "{e}");
        let e = KeyUri::parse("file:").unwrap_err().to_string();
        assert!(e.contains("location"), "{e}");
        let e = KeyUri::parse("file:/x?pin").unwrap_err().to_string();
        assert!(e.contains("option `pin`"), "{e}");
        let e = KeyUri::parse("file:/x?a=1&a=2").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = KeyUri::parse("file:/x?bogus=1")
            .unwrap()
            .check_options(&[])
            .unwrap_err();
        assert!(e.to_string().contains("unknown option `bogus`"));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(
            scheme in "[a-z][a-z0-9+.-]{0,8}",
            loc in "\\PC{1,40}",
            opts in proptest::collection::btree_map("\\PC{1,10}", "\\PC{0,20}", 0..4),
        ) {
            let mut u = KeyUri::new(&scheme, &loc).unwrap();
            for (n, v) in &opts { u.set_option(n, v); }
            let s = u.to_string();
            prop_assert_eq!(KeyUri::parse(&s).unwrap(), u);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = KeyUri::parse(&s);
        }
    }
}

#[cfg(test)]
mod corpus {
    use super::KeyUri;

    #[test]
    fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/key_uri");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            if let Ok(s) = std::str::from_utf8(&data) {
                if let Ok(u) = KeyUri::parse(s) {
                    assert_eq!(KeyUri::parse(&u.to_string()).unwrap(), u);
                }
            }
            n += 1;
        }
        assert!(n > 0);
    }
}
