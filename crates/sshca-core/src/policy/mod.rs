//! Signing policies and their merge with a request (pure: no I/O).
//!
//! Precedence, field by field:
//! 1. forced values (`valid_principals`, `critical_options`, `extensions`,
//!    `key_id` template) always win;
//! 2. requested values are kept only where allowed (`allowed_*`); anything
//!    else is rejected (`on_disallowed = "reject"`, the default: the error
//!    names it) or dropped (`"drop"`, noted in the change list);
//! 3. defaults (`default_*`, `ttl`) fill what was not requested;
//! 4. validity: the end is at most `now + max_ttl` (whatever the start;
//!    rejected, or clamped under `"drop"`), the start is no earlier than
//!    `now - backdate` and no later than `now + max_start` (rejected, or
//!    moved under `"drop"`), and the end is after both the start and now.
//!
//! Whatever `on_disallowed` says, a policy never issues: a requested
//! principal holding an OpenSSH pattern character (`*`, `?`, `!`, `,`)
//! unless it is one of the forced `valid_principals`; a requester, principal
//! or key id with a control character; a requested serial unless
//! `allow_serial` is set; serial 0 (a KRL cannot revoke it).
//!
//! `valid_principals`, `default_valid_principals`, `allowed_valid_principals`
//! and `key_id` may use the requester's identity and credential claims
//! (`{identity}`, `{claims.NAME}`; see [`crate::template`]); they are filled
//! before the rules above apply, and a filled value goes through the same
//! checks as a requested principal.
//!
//! [`Policy::merge`] returns the certificate template plus a list of what it
//! changed relative to the request.

use std::fmt;

use ssh_key::public::KeyData;

use crate::cert::{CertOptions, CertTemplate, CertType, OptionValue};
use crate::matcher::IdentityMatcher;
use crate::template::{self, Claims, Use};
use crate::validity::Validity;
use crate::{Error, Result};

mod merge;

pub use crate::glob::{wildcard_match, Glob};
pub use crate::template::PATTERN_CHARS;

/// What to do with a requested value the policy does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDisallowed {
    /// Refuse the whole request, naming what is not allowed.
    #[default]
    Reject,
    /// Drop (or clamp) it and note the change.
    Drop,
}

/// A signing policy. See the module docs for the merge rules. Serialises
/// to its effective values (durations in seconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Name (for errors and key-id templates).
    pub name: String,
    /// Certificate type it issues.
    pub cert_type: CertType,
    /// Forced principals.
    pub valid_principals: Option<Vec<String>>,
    /// Principals used when none are requested.
    pub default_valid_principals: Vec<String>,
    /// Patterns requested principals must match (`None`: any).
    pub allowed_valid_principals: Option<Vec<Glob>>,
    /// Allows a certificate with no principals (valid for any, to OpenSSH).
    pub all_principals: bool,
    /// Forced critical options.
    pub critical_options: CertOptions,
    /// Critical options used when none are requested.
    pub default_critical_options: CertOptions,
    /// Names of critical options a request may carry (`None`: all).
    pub allowed_critical_options: Option<Vec<String>>,
    /// Forced extensions.
    pub extensions: CertOptions,
    /// Extensions used when none are requested.
    pub default_extensions: CertOptions,
    /// Names of extensions a request may carry (`None`: all).
    pub allowed_extensions: Option<Vec<String>>,
    /// Lifetime when none is requested, seconds.
    pub ttl: u64,
    /// Longest lifetime, seconds: the end of validity is at most
    /// `now + max_ttl`.
    pub max_ttl: u64,
    /// How far after now a certificate may start, seconds (default 0: no
    /// pre-dated certificates).
    pub max_start: u64,
    /// Whether a request may name the serial (`-z`); otherwise serials are
    /// random, non-zero.
    pub allow_serial: bool,
    /// How far before now a certificate may start (and default start slack).
    pub backdate: u64,
    /// Key-id template (forced): `{requester}`, `{policy}`, `{principals}`,
    /// `{serial}`, `{fingerprint}`, `{time}`, `{identity}` (the requester)
    /// and `{claims.NAME}` (a list claim joined with `,`).
    pub key_id: Option<String>,
    /// Matchers a requester identity must match (`None`: anyone): its
    /// source and name ([`crate::matcher`]).
    pub requesters: Option<Vec<IdentityMatcher>>,
    /// Whether a request may name the key id (without a `key_id` template);
    /// otherwise it is `{requester}-{serial}`.
    pub allow_key_id: bool,
    /// Subject key types allowed (`None`: all), e.g. `ssh-ed25519`.
    pub allowed_key_types: Option<Vec<String>>,
    /// Smallest RSA subject key, bits.
    pub min_rsa_bits: u32,
    /// Reject or drop what is not allowed.
    pub on_disallowed: OnDisallowed,
}

impl Policy {
    /// A policy with Salt's defaults (ttl 24h for users, 30d for hosts,
    /// max_ttl = ttl, backdate 5 minutes, min RSA 2048 bits) and nothing
    /// forced, defaulted or restricted.
    pub fn new(name: impl Into<String>, cert_type: CertType) -> Self {
        let ttl = match cert_type {
            CertType::User => 86_400,
            CertType::Host => 30 * 86_400,
        };
        Self {
            name: name.into(),
            cert_type,
            valid_principals: None,
            default_valid_principals: Vec::new(),
            allowed_valid_principals: None,
            all_principals: false,
            critical_options: CertOptions::new(),
            default_critical_options: CertOptions::new(),
            allowed_critical_options: None,
            extensions: CertOptions::new(),
            default_extensions: CertOptions::new(),
            allowed_extensions: None,
            ttl,
            max_ttl: ttl,
            max_start: 0,
            allow_serial: false,
            backdate: 300,
            key_id: None,
            requesters: None,
            allow_key_id: false,
            allowed_key_types: None,
            min_rsa_bits: 2048,
            on_disallowed: OnDisallowed::Reject,
        }
    }

    /// Checks the policy is coherent; errors name the field.
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, m: String| Error::Template(format!("field `{field}`: {m}"));
        if self.ttl == 0 {
            return Err(bad("ttl", "must be positive".into()));
        }
        if self.ttl > self.max_ttl {
            return Err(bad(
                "ttl",
                format!("ttl {}s is longer than max_ttl {}s", self.ttl, self.max_ttl),
            ));
        }
        for (field, list) in [
            (
                "valid_principals",
                self.valid_principals.as_deref().unwrap_or(&[]),
            ),
            (
                "default_valid_principals",
                &self.default_valid_principals[..],
            ),
        ] {
            for p in list {
                crate::text::check_name("principal", p).map_err(|e| bad(field, e.to_string()))?;
                if p.contains(['{', '}']) {
                    template::check(p).map_err(|m| bad(field, m))?;
                }
            }
        }
        for g in self.allowed_valid_principals.iter().flatten() {
            if g.as_str().contains(['{', '}']) {
                template::check(g.as_str()).map_err(|m| bad("allowed_valid_principals", m))?;
            }
        }
        if let Some(k) = &self.key_id {
            template::check_key_id(k).map_err(|m| bad("key_id", m))?;
        }
        for (field, map) in [
            ("extensions", &self.extensions),
            ("default_extensions", &self.default_extensions),
        ] {
            for v in map.values() {
                if let OptionValue::Text(t) = v {
                    template::check_key_id(t).map_err(|m| bad(field, m))?;
                }
            }
        }
        // With templates, defaults are checked against the allowed list
        // once both are filled, at merge time.
        if let Some(allowed) = self
            .allowed_valid_principals
            .as_ref()
            .filter(|_| !self.has_principal_templates())
        {
            for p in &self.default_valid_principals {
                if !allowed.iter().any(|g| g.matches(p)) {
                    return Err(bad(
                        "default_valid_principals",
                        format!("`{p}` is not in allowed_valid_principals"),
                    ));
                }
            }
        }
        for (field, defaults, allowed) in [
            (
                "default_critical_options",
                &self.default_critical_options,
                &self.allowed_critical_options,
            ),
            (
                "default_extensions",
                &self.default_extensions,
                &self.allowed_extensions,
            ),
        ] {
            if let Some(allowed) = allowed {
                for name in defaults.keys() {
                    if !allowed.iter().any(|n| n == "*" || n == name) {
                        return Err(bad(field, format!("`{name}` is not in the allowed list")));
                    }
                }
            }
        }
        for (field, map) in [
            ("critical_options", &self.critical_options),
            ("default_critical_options", &self.default_critical_options),
        ] {
            check_critical(map).map_err(|m| bad(field, m))?;
        }
        if let Some(types) = &self.allowed_key_types {
            for t in types {
                if !KEY_TYPES.contains(&t.as_str()) {
                    return Err(bad(
                        "allowed_key_types",
                        format!("unknown key type `{t}` (known: {})", KEY_TYPES.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The texts that may hold templates: principal fields, globs, the key
    /// id and extension values.
    fn template_texts(&self) -> impl Iterator<Item = &str> {
        let ext = [&self.extensions, &self.default_extensions]
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|v| match v {
                OptionValue::Text(t) => Some(t.as_str()),
                _ => None,
            });
        self.valid_principals
            .iter()
            .flatten()
            .chain(&self.default_valid_principals)
            .map(String::as_str)
            .chain(
                self.allowed_valid_principals
                    .iter()
                    .flatten()
                    .map(|g| g.as_str()),
            )
            .chain(self.key_id.as_deref())
            .chain(ext)
    }

    /// The webhooks whose answers the policy's templates use
    /// (`{webhook.NAME.FIELD}`).
    pub fn webhooks_used(&self) -> std::collections::BTreeSet<&str> {
        self.template_texts()
            .flat_map(template::webhooks_used)
            .collect()
    }

    /// Whether an extension value uses a template.
    pub(super) fn has_extension_templates(&self) -> bool {
        [&self.extensions, &self.default_extensions]
            .into_iter()
            .flat_map(|m| m.values())
            .any(|v| matches!(v, OptionValue::Text(t) if template::is_template(t)))
    }

    /// Whether a principal field uses `{identity}`, `{claims.NAME}` or
    /// `{webhook.NAME.FIELD}`.
    pub fn has_principal_templates(&self) -> bool {
        self.valid_principals
            .iter()
            .flatten()
            .chain(&self.default_valid_principals)
            .any(|p| template::is_template(p))
            || self
                .allowed_valid_principals
                .iter()
                .flatten()
                .any(|g| template::is_template(g.as_str()))
    }
}

/// Subject key type names `allowed_key_types` may list.
pub const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

fn check_critical(map: &CertOptions) -> std::result::Result<(), String> {
    for (name, v) in map {
        match (name.as_str(), v) {
            ("force-command", OptionValue::Flag) => return Err("force-command is empty".into()),
            ("force-command", OptionValue::Text(t)) if t.is_empty() => {
                return Err("force-command is empty".into())
            }
            ("source-address", OptionValue::Text(list)) => {
                crate::options::validate_source_address(list)?
            }
            ("source-address", _) => return Err("source-address needs a CIDR list".into()),
            _ => {}
        }
    }
    Ok(())
}

/// A certificate request: what a caller asks for. `None` means "not asked".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Who asks (matched against `requesters`; `{requester}` renders it).
    pub requester: Option<String>,
    /// Where the requester's credential comes from (`token`,
    /// `client-cert`, `oidc:ISSUER`, `local`; `None`: `local`).
    pub requester_source: Option<String>,
    /// Certificate type asked for.
    pub cert_type: Option<CertType>,
    /// Principals asked for.
    pub principals: Option<Vec<String>>,
    /// Critical options asked for.
    pub critical_options: Option<CertOptions>,
    /// Extensions asked for.
    pub extensions: Option<CertOptions>,
    /// Validity asked for.
    pub validity: Option<Validity>,
    /// Key id asked for.
    pub key_id: Option<String>,
    /// Serial asked for.
    pub serial: Option<u64>,
    /// The claims of the requester's credential (an OIDC token's), for
    /// `{claims.NAME}` templates; empty for other credentials.
    pub claims: Claims,
}

/// One thing the merge changed relative to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The field.
    pub field: String,
    /// What happened.
    pub what: String,
}

impl Change {
    fn new(field: &str, what: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("deploy-*").unwrap();
        assert!(g.matches("deploy-1") && g.matches("deploy-") && !g.matches("deploy"));
        assert!(Glob::new("a?c").unwrap().matches("abc"));
        assert!(Glob::new("*").unwrap().matches(""));
        assert!(Glob::new("*.example.com")
            .unwrap()
            .matches("a.b.example.com"));
        assert!(!Glob::new("*.example.com").unwrap().matches("example.com"));
        assert!(Glob::new("").is_err() && Glob::new("a[b]").is_err() && Glob::new("a,b").is_err());
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;
    use crate::template::Claim;

    fn key() -> KeyData {
        KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([7; 32]))
    }

    fn req(claims: &[(&str, Claim)]) -> Request {
        Request {
            requester: Some("alice@example.com".into()),
            requester_source: None,
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn principals_and_key_id_from_claims() {
        let mut p = Policy::new("ci", CertType::User);
        p.valid_principals = Some(vec!["deploy".into(), "g-{claims.groups}".into()]);
        p.key_id = Some("{identity} {claims.repo} {policy} {claims.groups}".into());
        p.check().unwrap();
        let r = req(&[
            ("groups", Claim::List(vec!["ops".into(), "web".into()])),
            ("repo", Claim::Text("acme/site".into())),
        ]);
        let (t, _) = p.merge(&r, &key(), 1_000_000, 5).unwrap();
        assert_eq!(t.principals, ["deploy", "g-ops", "g-web"]);
        assert_eq!(t.key_id, "alice@example.com acme/site ci ops,web");

        // Missing and mistyped claims are named; pattern characters refused.
        let e = |r: &Request| p.merge(r, &key(), 1_000_000, 5).unwrap_err().to_string();
        assert!(e(&req(&[])).contains("no claim `groups`"));
        let r = req(&[
            ("groups", Claim::Other("a number")),
            ("repo", Claim::Text("x".into())),
        ]);
        assert!(e(&r).contains("claim `groups` is a number"));
        let r = req(&[
            ("groups", Claim::List(vec!["*".into()])),
            ("repo", Claim::Text("x".into())),
        ]);
        assert!(e(&r).contains("holds `*`"));
    }

    #[test]
    fn allowed_and_default_templates() {
        let mut p = Policy::new("people", CertType::User);
        p.allowed_valid_principals = Some(vec![
            Glob::new("{identity}").unwrap(),
            Glob::new("{claims.groups}-*").unwrap(),
        ]);
        p.default_valid_principals = vec!["{identity}".into()];
        p.check().unwrap();
        let mut r = req(&[("groups", Claim::List(vec!["ops".into()]))]);
        r.requester = Some("bob".into());
        let (t, _) = p.merge(&r, &key(), 1_000_000, 5).unwrap();
        assert_eq!(t.principals, ["bob"]);
        r.principals = Some(vec!["ops-admin".into(), "bob".into()]);
        let (t, _) = p.merge(&r, &key(), 1_000_000, 5).unwrap();
        assert_eq!(t.principals, ["ops-admin", "bob"]);
        r.principals = Some(vec!["dev-admin".into()]);
        let e = p.merge(&r, &key(), 1_000_000, 5).unwrap_err().to_string();
        assert!(e.contains("`dev-admin` is not allowed"), "{e}");
        // Unknown placeholders are refused when the policy loads.
        let mut bad = Policy::new("bad", CertType::User);
        bad.valid_principals = Some(vec!["{user}".into()]);
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("valid_principals"));
    }

    #[test]
    fn webhook_answers_fill_principals_key_ids_and_extensions() {
        let mut p = Policy::new("db", CertType::User);
        p.valid_principals = Some(vec!["{webhook.hr.login}".into()]);
        p.key_id = Some("{identity} ticket {webhook.tickets.id}".into());
        p.extensions.insert(
            "login@github.com".into(),
            OptionValue::Text("{webhook.hr.gh}".into()),
        );
        p.extensions.insert("permit-pty".into(), OptionValue::Flag);
        p.check().unwrap();
        assert_eq!(
            p.webhooks_used().into_iter().collect::<Vec<_>>(),
            ["hr", "tickets"]
        );
        let r = req(&[
            ("webhook.hr.login", Claim::Text("alice".into())),
            ("webhook.hr.gh", Claim::Text("alice-gh".into())),
            ("webhook.tickets.id", Claim::Text("OPS-12".into())),
        ]);
        let (t, _) = p.merge(&r, &key(), 1_000_000, 5).unwrap();
        assert_eq!(t.principals, ["alice"]);
        assert_eq!(t.key_id, "alice@example.com ticket OPS-12");
        assert_eq!(
            t.extensions.get("login@github.com"),
            Some(&OptionValue::Text("alice-gh".into()))
        );
        // A missing field names the webhook; a value passes the claims' checks.
        let e = p.merge(&req(&[]), &key(), 1, 5).unwrap_err().to_string();
        assert!(e.contains("the answer of webhook `hr` has no field"), "{e}");
        let r = req(&[
            ("webhook.hr.login", Claim::Text("a,b".into())),
            ("webhook.hr.gh", Claim::Text("x".into())),
            ("webhook.tickets.id", Claim::Text("1".into())),
        ]);
        let e = p.merge(&r, &key(), 1, 5).unwrap_err().to_string();
        assert!(e.contains("holds `,`"), "{e}");
    }
}
