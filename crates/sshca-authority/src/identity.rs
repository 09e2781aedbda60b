//! Who asks: the identity every front end (the HTTPS API, the
//! Vault-compatible path, the command line) builds before it calls the
//! authority, and whether a policy admits it.

use sshca::config::PolicyEntry;
use sshca::core::matcher::IdentityMatcher;
use sshca::core::template::{Claim, Claims};

use crate::error::Refusal;

/// An authenticated requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Where the identity comes from: `token`, `client-cert`, `oidc:NAME`
    /// (what a policy's `auth` lists), or `local` for the command line.
    pub source: String,
    /// The name that policies' `requesters` match (with the source) and
    /// `{requester}` renders; empty when a local run has no name (then
    /// `{requester}` has nothing to fill).
    pub name: String,
    /// The verified claims of an OIDC token (empty for other sources), for
    /// policies' `{claims.NAME}` templates.
    pub claims: sshca::core::template::Claims,
}

impl Identity {
    /// An identity of `source` named `name`, without claims.
    pub fn new(source: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            name: name.into(),
            claims: Default::default(),
        }
    }

    /// A person or job running the command line on the CA's host: source
    /// `local`. Local signing has no verified credential, so a policy using
    /// `{claims.NAME}` refuses, naming the claim.
    pub fn local(name: Option<String>) -> Self {
        Self::new("local", name.unwrap_or_default())
    }

    /// The identity as one string, its source first: `token:ci`,
    /// `client-cert:web1.example.com`, `oidc:github:acme/web`,
    /// `local:alice` (rate-limit buckets, messages).
    pub fn qualified(&self) -> String {
        sshca::core::matcher::qualified(&self.source, &self.name)
    }

    /// Whether any of `matchers` (a policy's `requesters`, the service's
    /// `admins`) matches the identity's source and name.
    pub fn matches_any(&self, matchers: &[IdentityMatcher]) -> bool {
        matchers.iter().any(|m| m.matches(&self.source, &self.name))
    }

    /// Whether the identity may use policy `name`: its `requesters` globs
    /// and its `auth` sources (403 otherwise).
    pub fn may_use(&self, entry: &PolicyEntry, name: &str) -> Result<(), Refusal> {
        if let Some(matchers) = &entry.policy.requesters {
            if !self.matches_any(matchers) {
                return Err(Refusal::forbidden(format!(
                    "identity `{}` may not use policy `{name}`",
                    self.qualified()
                )));
            }
        }
        if let Some(sources) = &entry.auth {
            if !sources.contains(&self.source) {
                return Err(Refusal::forbidden(format!(
                    "policy `{name}` accepts credentials from {}; this request's is from {}",
                    sources.join(", "),
                    self.source
                )));
            }
        }
        Ok(())
    }
}

/// Most claims an audit event keeps.
const MAX_AUDIT_CLAIMS: usize = 32;

/// An identity's claims for an audit event: names and values capped
/// (lists joined with commas), at most 32 of them.
pub fn audit_claims(
    claims: &sshca::core::template::Claims,
) -> std::collections::BTreeMap<String, String> {
    use sshca::core::template::Claim;
    use sshca::core::text::cap;
    claims
        .iter()
        .take(MAX_AUDIT_CLAIMS)
        .map(|(k, v)| {
            let v = match v {
                Claim::Text(t) => cap(t).into_owned(),
                Claim::List(l) => cap(&l.join(",")).into_owned(),
                Claim::Other(kind) => format!("({kind})"),
            };
            (cap(k).into_owned(), v)
        })
        .collect()
}

/// Claims as templates read them, from a JSON object (an OIDC token's
/// payload, a webhook's `data`).
pub fn claims_from_json(map: serde_json::Map<String, serde_json::Value>) -> Claims {
    use serde_json::Value;
    map.into_iter()
        .map(|(k, v)| {
            let c = match v {
                Value::String(s) => Claim::Text(s),
                Value::Array(items) => {
                    let texts: Option<Vec<String>> = items
                        .into_iter()
                        .map(|i| match i {
                            Value::String(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                    texts.map_or(Claim::Other("a list holding non-strings"), Claim::List)
                }
                Value::Number(_) => Claim::Other("a number"),
                Value::Bool(_) => Claim::Other("a boolean"),
                Value::Null => Claim::Other("null"),
                Value::Object(_) => Claim::Other("an object"),
            };
            (k, c)
        })
        .collect()
}

/// Claims as a JSON object that [`claims_from_json`] reads back the same
/// (a value templates cannot use becomes a JSON value of its kind).
pub fn claims_to_json(claims: &Claims) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    claims
        .iter()
        .map(|(k, c)| {
            let v = match c {
                Claim::Text(t) => json!(t),
                Claim::List(l) => json!(l),
                Claim::Other("a number") => json!(0),
                Claim::Other("a boolean") => json!(false),
                Claim::Other("a list holding non-strings") => json!([0]),
                Claim::Other("an object") => json!({}),
                Claim::Other(_) => Value::Null,
            };
            (k.clone(), v)
        })
        .collect()
}
