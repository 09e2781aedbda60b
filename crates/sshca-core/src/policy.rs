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

    /// Whether a principal field uses `{identity}` or `{claims.NAME}`.
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

    /// This policy with its principal templates filled from the request's
    /// identity and claims.
    fn filled(&self, req: &Request) -> Result<Policy> {
        let refuse = |e: Error| match e {
            Error::Template(m) => Error::Template(format!("policy `{}`: {m}", self.name)),
            other => other,
        };
        let fill = |list: &[String], field: &str| -> Result<Vec<String>> {
            let mut out = Vec::new();
            for entry in list {
                for v in template::expand(
                    entry,
                    field,
                    Use::Principal,
                    req.requester.as_deref(),
                    &req.claims,
                    &[],
                )
                .map_err(refuse)?
                {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
            Ok(out)
        };
        let mut p = self.clone();
        if let Some(v) = &self.valid_principals {
            p.valid_principals = Some(fill(v, "valid_principals")?);
        }
        p.default_valid_principals =
            fill(&self.default_valid_principals, "default_valid_principals")?;
        if let Some(globs) = &self.allowed_valid_principals {
            let texts: Vec<String> = globs.iter().map(|g| g.as_str().to_owned()).collect();
            p.allowed_valid_principals = Some(
                fill(&texts, "allowed_valid_principals")?
                    .iter()
                    .map(|g| Glob::new(g).map_err(refuse))
                    .collect::<Result<_>>()?,
            );
        }
        if let Some(allowed) = &p.allowed_valid_principals {
            if let Some(d) = p
                .default_valid_principals
                .iter()
                .find(|d| !allowed.iter().any(|g| g.matches(d)))
            {
                return Err(Error::Template(format!(
                    "policy `{}`: default principal `{d}` is not in allowed_valid_principals",
                    self.name
                )));
            }
        }
        Ok(p)
    }

    /// Merges a request into a certificate template for `subject`, at time
    /// `now`, with serial `serial` (used when the request names none).
    pub fn merge(
        &self,
        req: &Request,
        subject: &KeyData,
        now: u64,
        serial: u64,
    ) -> Result<(CertTemplate, Vec<Change>)> {
        if self.has_principal_templates() {
            return self.filled(req)?.merge_filled(req, subject, now, serial);
        }
        self.merge_filled(req, subject, now, serial)
    }

    fn merge_filled(
        &self,
        req: &Request,
        subject: &KeyData,
        now: u64,
        serial: u64,
    ) -> Result<(CertTemplate, Vec<Change>)> {
        let mut changes = Vec::new();
        let refuse = |what: String| Error::Template(format!("policy `{}`: {what}", self.name));
        let printable = |field: &str, v: &str| {
            crate::text::check_printable(field, v).map_err(|e| refuse(e.to_string()))
        };
        // Requested text: nothing unprintable reaches a certificate or a log.
        if let Some(r) = &req.requester {
            printable("requester", r)?;
        }
        for p in req.principals.iter().flatten() {
            crate::text::check_name("principal", p).map_err(|e| refuse(e.to_string()))?;
        }
        if let Some(k) = &req.key_id {
            printable("key_id", k)?;
        }
        // Serial: random unless the policy lets the request name it; never 0.
        let serial =
            match req.serial {
                Some(_) if !self.allow_serial => return Err(refuse(
                    "a requested serial (-z) is not allowed: serials are random under a policy \
                     (set allow_serial = true to allow it)"
                        .into(),
                )),
                Some(s) => s,
                None => serial,
            };
        if serial == 0 {
            return Err(refuse(
                "serial 0 is never issued under a policy (a KRL cannot revoke it)".into(),
            ));
        }
        // Requester: its source and name.
        if let Some(matchers) = &self.requesters {
            let source = req.requester_source.as_deref().unwrap_or("local");
            match &req.requester {
                None => return Err(refuse("a requester identity is required".into())),
                Some(r) if !matchers.iter().any(|m| m.matches(source, r)) => {
                    return Err(refuse(format!(
                        "requester `{}` is not allowed",
                        crate::matcher::qualified(source, r)
                    )))
                }
                Some(_) => {}
            }
        }
        // Type.
        if let Some(t) = req.cert_type {
            if t != self.cert_type {
                return Err(refuse(format!(
                    "issues {} certificates, a {t} certificate was requested",
                    self.cert_type
                )));
            }
        }
        // Subject key.
        let alg = subject.algorithm();
        let alg_name = alg.as_str();
        if let Some(types) = &self.allowed_key_types {
            if !types.iter().any(|t| t == alg_name) {
                return Err(refuse(format!(
                    "subject key type {alg_name} is not allowed (allowed: {})",
                    types.join(", ")
                )));
            }
        }
        if let KeyData::Rsa(_) = subject {
            let (bits, _) = crate::cert::key_size(subject);
            if bits < self.min_rsa_bits as usize {
                return Err(refuse(format!(
                    "RSA subject key of {bits} bits is below the minimum of {}",
                    self.min_rsa_bits
                )));
            }
        }
        // Principals.
        let principals = if let Some(forced) = &self.valid_principals {
            if let Some(r) = &req.principals {
                if r != forced {
                    changes.push(Change::new("principals", "forced by the policy"));
                }
            }
            forced.clone()
        } else if let Some(requested) = &req.principals {
            let mut kept = Vec::new();
            for p in requested {
                // OpenSSH reads a host certificate's principals as patterns
                // and `!`/`,` build pattern lists: only the policy's own
                // forced principals may hold them.
                if let Some(c) = p.chars().find(|c| PATTERN_CHARS.contains(*c)) {
                    return Err(refuse(format!(
                        "principal `{p}` holds `{c}`, which OpenSSH treats as a pattern; \
                         requested principals must be plain names"
                    )));
                }
                let ok = self
                    .allowed_valid_principals
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|g| g.matches(p)));
                if ok {
                    kept.push(p.clone());
                } else if self.on_disallowed == OnDisallowed::Reject {
                    return Err(refuse(format!("principal `{p}` is not allowed")));
                } else {
                    changes.push(Change::new(
                        "principals",
                        format!("dropped `{p}` (not allowed)"),
                    ));
                }
            }
            kept
        } else {
            if !self.default_valid_principals.is_empty() {
                changes.push(Change::new("principals", "policy defaults used"));
            }
            self.default_valid_principals.clone()
        };
        if principals.is_empty() && !self.all_principals {
            return Err(refuse(
                "the certificate would have no principals (valid for every user or host); \
                 set all_principals = true to allow that"
                    .into(),
            ));
        }
        // Options.
        let critical = self.merge_options(
            "critical option",
            req.critical_options.as_ref(),
            &self.critical_options,
            &self.default_critical_options,
            self.allowed_critical_options.as_deref(),
            &mut changes,
        )?;
        let extensions = self.merge_options(
            "extension",
            req.extensions.as_ref(),
            &self.extensions,
            &self.default_extensions,
            self.allowed_extensions.as_deref(),
            &mut changes,
        )?;
        // Validity.
        let earliest = now.saturating_sub(self.backdate);
        let (mut after, mut before) = match req.validity {
            Some(v) => (v.valid_after, v.valid_before),
            None => (earliest, now.saturating_add(self.ttl)),
        };
        if after < earliest {
            if self.on_disallowed == OnDisallowed::Reject {
                return Err(refuse(format!(
                    "validity starts {}s before now; at most {}s of backdating is allowed",
                    now.saturating_sub(after),
                    self.backdate
                )));
            }
            changes.push(Change::new("valid_after", "moved to now - backdate"));
            after = earliest;
        }
        let latest_start = now.saturating_add(self.max_start);
        if after > latest_start {
            if self.on_disallowed == OnDisallowed::Reject {
                return Err(refuse(format!(
                    "validity starts {}s after now; at most {}s is allowed (max_start)",
                    after - now,
                    self.max_start
                )));
            }
            changes.push(Change::new("valid_after", "moved to now + max_start"));
            after = latest_start;
        }
        if before <= now {
            return Err(refuse(
                "the requested validity ends before now (the certificate would be expired)".into(),
            ));
        }
        // The end is at most now + max_ttl, however late the start: a later
        // start never buys a longer reach into the future.
        let latest_end = now.saturating_add(self.max_ttl);
        if before > latest_end {
            if self.on_disallowed == OnDisallowed::Reject {
                return Err(refuse(format!(
                    "requested validity ends {} after now; max_ttl allows {}s",
                    if before == crate::FOREVER {
                        "never".to_owned()
                    } else {
                        format!("{}s", before - now)
                    },
                    self.max_ttl
                )));
            }
            changes.push(Change::new(
                "valid_before",
                format!("clamped to now + max_ttl {}s", self.max_ttl),
            ));
            before = latest_end;
        }
        if before <= after {
            return Err(refuse("empty validity interval".into()));
        }
        // Key id.
        let key_id = match &self.key_id {
            Some(tpl) => {
                let id = render_key_id(tpl, self, req, &principals, serial, subject, now)?;
                if req.key_id.as_deref().is_some_and(|k| k != id) {
                    changes.push(Change::new("key_id", "set by the policy template"));
                }
                id
            }
            None => match &req.key_id {
                Some(k) if self.allow_key_id => k.clone(),
                Some(k) => {
                    return Err(refuse(format!(
                        "a requested key id (`{}`) is not allowed: the key id is \
                         `{{requester}}-{{serial}}` (set allow_key_id = true, or a key_id template)",
                        crate::text::escape(k)
                    )))
                }
                None => format!(
                    "{}-{serial}",
                    req.requester.as_deref().unwrap_or(&self.name)
                ),
            },
        };
        printable("key_id", &key_id)?;
        let mut t = CertTemplate::new(self.cert_type, key_id);
        t.principals = principals;
        t.valid_after = after;
        t.valid_before = before;
        t.serial = serial;
        t.critical_options = critical;
        t.extensions = extensions;
        Ok((t, changes))
    }

    fn merge_options(
        &self,
        kind: &str,
        requested: Option<&CertOptions>,
        forced: &CertOptions,
        defaults: &CertOptions,
        allowed: Option<&[String]>,
        changes: &mut Vec<Change>,
    ) -> Result<CertOptions> {
        let field = if kind == "extension" {
            "extensions"
        } else {
            "critical_options"
        };
        // An empty map asks for nothing in particular: the defaults, as an
        // absent one (a requester cannot shed a default restriction such as
        // `source-address` or `force-command` by sending `{}`).
        let requested = requested.filter(|r| !r.is_empty());
        // Without an allowed list, only the names of the defaults may be
        // asked for; `*` in the list allows any name.
        let may_ask = |name: &String| match allowed {
            Some(a) => a.iter().any(|n| n == "*" || n == name),
            None => defaults.contains_key(name),
        };
        let mut out = match requested {
            Some(r) => {
                let mut kept = CertOptions::new();
                for (name, value) in r {
                    // Without an allowed list a default critical option is
                    // a restriction the requester may repeat, not loosen:
                    // `source-address` stays the policy's.
                    let loosened = kind != "extension"
                        && allowed.is_none()
                        && defaults.get(name).is_some_and(|d| d != value);
                    if loosened {
                        if self.on_disallowed == OnDisallowed::Reject {
                            return Err(Error::Template(format!(
                                "policy `{}`: {kind} `{name}` may only have the policy's default \
                                 value (set allowed_critical_options to let requests choose it)",
                                self.name
                            )));
                        }
                        changes.push(Change::new(
                            field,
                            format!("`{name}`: the policy's default kept"),
                        ));
                        if let Some(d) = defaults.get(name) {
                            kept.insert(name.clone(), d.clone());
                        }
                    } else if may_ask(name) || forced.contains_key(name) {
                        kept.insert(name.clone(), value.clone());
                    } else if self.on_disallowed == OnDisallowed::Reject {
                        let names: Vec<&String> = match allowed {
                            Some(a) => a.iter().collect(),
                            None => defaults.keys().collect(),
                        };
                        return Err(Error::Template(format!(
                            "policy `{}`: {kind} `{name}` is not allowed (allowed: {})",
                            self.name,
                            if names.is_empty() {
                                "none".to_owned()
                            } else {
                                names
                                    .iter()
                                    .map(|n| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        )));
                    } else {
                        changes.push(Change::new(
                            field,
                            format!("dropped `{name}` (not allowed)"),
                        ));
                    }
                }
                kept
            }
            None => {
                if !defaults.is_empty() {
                    changes.push(Change::new(field, "policy defaults used"));
                }
                defaults.clone()
            }
        };
        if kind != "extension" && allowed.is_none() {
            // Nor can leaving a default restriction out shed it.
            for (name, value) in defaults {
                if !out.contains_key(name) {
                    if requested.is_some() {
                        changes.push(Change::new(
                            field,
                            format!("`{name}`: the policy's default kept"),
                        ));
                    }
                    out.insert(name.clone(), value.clone());
                }
            }
        }
        for (name, value) in forced {
            if out.get(name) != Some(value) {
                if requested.is_some_and(|r| r.contains_key(name)) {
                    changes.push(Change::new(field, format!("`{name}` forced by the policy")));
                }
                out.insert(name.clone(), value.clone());
            }
        }
        Ok(out)
    }
}

/// Characters OpenSSH gives a meaning in principal patterns and lists.
pub const PATTERN_CHARS: &str = "*?!,";

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

fn render_key_id(
    tpl: &str,
    p: &Policy,
    req: &Request,
    principals: &[String],
    serial: u64,
    subject: &KeyData,
    now: u64,
) -> Result<String> {
    let principals = principals.join(",");
    let serial = serial.to_string();
    let fingerprint = subject.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let time = now.to_string();
    let vars = [
        ("requester", req.requester.as_deref().unwrap_or("")),
        ("policy", p.name.as_str()),
        ("principals", principals.as_str()),
        ("serial", serial.as_str()),
        ("fingerprint", fingerprint.as_str()),
        ("time", time.as_str()),
    ];
    let filled = template::expand(
        tpl,
        "key_id",
        Use::KeyId,
        req.requester.as_deref(),
        &req.claims,
        &vars,
    )
    .map_err(|e| match e {
        Error::Template(m) => Error::Template(format!("policy `{}`: {m}", p.name)),
        other => other,
    })?;
    Ok(filled.concat())
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
}
