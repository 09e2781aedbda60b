//! Identity matchers: who may use a policy (`requesters`) or administer
//! the service (`admins`), by credential source and name.
//!
//! A matcher names the source the way a policy's `auth` does:
//! `token:NAME`, `client-cert:NAME`, `local:NAME` (the command line's
//! `--requester`), `oidc:ISSUER:VALUE` (split at the first two colons, so a
//! value may hold colons, as GitHub's `sub` does). The glob (`*`, `?`)
//! applies to the name or value only: `oidc:github:acme/*`. A bare pattern
//! (no source) matches tokens, client certificates and the local command
//! line, never an OIDC identity: anyone can obtain an ID token whose value
//! they chose (a repository, an e-mail address) from a public issuer.

use std::fmt;

use crate::glob::Glob;
use crate::{Error, Result};

/// The credential sources a bare pattern matches.
pub const BARE_SOURCES: [&str; 3] = ["token", "client-cert", "local"];

/// Which sources a matcher admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMatch {
    /// No source written: tokens, client certificates and the local
    /// command line ([`BARE_SOURCES`]).
    Bare,
    /// One source: `token`, `client-cert`, `local` or `oidc:ISSUER`.
    Only(String),
}

/// A credential source and a glob over the identity's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMatcher {
    source: SourceMatch,
    glob: Glob,
    text: String,
}

impl IdentityMatcher {
    /// Parses `SOURCE:GLOB` (`token`, `client-cert`, `local`),
    /// `oidc:ISSUER:GLOB`, or a bare `GLOB`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |m: String| Error::Template(format!("`{text}`: {m}"));
        let (source, glob) = if let Some(rest) = text.strip_prefix("oidc:") {
            let (issuer, value) = rest.split_once(':').ok_or_else(|| {
                bad("an OIDC matcher is `oidc:ISSUER:PATTERN` (the issuer's name, then the identity)".into())
            })?;
            if issuer.is_empty() || issuer.contains(['*', '?']) {
                return Err(bad(format!(
                    "`{issuer}` is not an issuer name (`oidc:ISSUER:PATTERN`)"
                )));
            }
            (SourceMatch::Only(format!("oidc:{issuer}")), value)
        } else if let Some((source, value)) = text.split_once(':') {
            if !BARE_SOURCES.contains(&source) {
                return Err(bad(format!(
                    "unknown source `{source}` (token, client-cert, local, oidc:ISSUER)"
                )));
            }
            (SourceMatch::Only(source.to_owned()), value)
        } else {
            (SourceMatch::Bare, text)
        };
        let glob = Glob::new(glob).map_err(|e| match e {
            Error::Template(m) => bad(m),
            other => other,
        })?;
        Ok(Self {
            source,
            glob,
            text: text.to_owned(),
        })
    }

    /// Whether an identity of `source` (`token`, `client-cert`, `local`,
    /// `oidc:ISSUER`) named `name` matches.
    pub fn matches(&self, source: &str, name: &str) -> bool {
        let source_ok = match &self.source {
            SourceMatch::Bare => BARE_SOURCES.contains(&source),
            SourceMatch::Only(s) => s == source,
        };
        source_ok && self.glob.matches(name)
    }

    /// The sources it admits.
    pub fn source(&self) -> &SourceMatch {
        &self.source
    }

    /// The OIDC issuer it names (`oidc:ISSUER:...`).
    pub fn oidc_issuer(&self) -> Option<&str> {
        match &self.source {
            SourceMatch::Only(s) => s.strip_prefix("oidc:"),
            SourceMatch::Bare => None,
        }
    }

    /// The glob over the name.
    pub fn glob(&self) -> &Glob {
        &self.glob
    }

    /// The matcher as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for IdentityMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for IdentityMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// An identity as one string: `SOURCE:NAME` (`oidc:ISSUER:VALUE` for OIDC),
/// as logs, rate-limit buckets and audit rows name it.
pub fn qualified(source: &str, name: &str) -> String {
    format!("{source}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kept_apart() {
        let bare = IdentityMatcher::parse("ops-*").unwrap();
        assert!(bare.matches("token", "ops-1"));
        assert!(bare.matches("client-cert", "ops-1"));
        assert!(bare.matches("local", "ops-1"));
        assert!(!bare.matches("oidc:github", "ops-evil/x"));
        let gh = IdentityMatcher::parse("oidc:github:acme/*").unwrap();
        assert_eq!(gh.oidc_issuer(), Some("github"));
        assert!(gh.matches("oidc:github", "acme/web"));
        assert!(!gh.matches("oidc:corp", "acme/web"));
        assert!(!gh.matches("token", "acme/web"));
        // The value may hold colons (GitHub `sub`).
        let sub = IdentityMatcher::parse("oidc:github:repo:acme/web:ref:*").unwrap();
        assert!(sub.matches("oidc:github", "repo:acme/web:ref:refs/heads/main"));
        let t = IdentityMatcher::parse("token:ci").unwrap();
        assert!(t.matches("token", "ci") && !t.matches("client-cert", "ci"));
        assert!(IdentityMatcher::parse("client-cert:web*.example.com")
            .unwrap()
            .matches("client-cert", "web1.example.com"));
        for bad in [
            "oidc:github",
            "oidc::x",
            "oidc:*:x",
            "tokn:ci",
            "token:",
            "",
        ] {
            assert!(IdentityMatcher::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(qualified("oidc:github", "acme/web"), "oidc:github:acme/web");
    }
}
