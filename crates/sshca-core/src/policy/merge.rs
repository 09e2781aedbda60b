//! Merging a request into a policy: principal templates filled from the
//! identity, forced, default and allowed values, options, validity and the
//! key id, with every change recorded.

use super::*;

impl Policy {
    /// This policy with its principal templates filled from the request's
    /// identity and claims.
    pub(super) fn filled(&self, req: &Request) -> Result<Policy> {
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
        for (field, map) in [
            ("extensions", &mut p.extensions),
            ("default_extensions", &mut p.default_extensions),
        ] {
            for v in map.values_mut() {
                if let OptionValue::Text(t) = v {
                    if template::is_template(t) {
                        let filled = template::expand(
                            t,
                            field,
                            Use::KeyId,
                            req.requester.as_deref(),
                            &req.claims,
                            &[],
                        )
                        .map_err(refuse)?;
                        *t = filled.concat();
                    }
                }
            }
        }
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
        if self.has_principal_templates() || self.has_extension_templates() {
            return self.filled(req)?.merge_filled(req, subject, now, serial);
        }
        self.merge_filled(req, subject, now, serial)
    }

    pub(super) fn merge_filled(
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

    pub(super) fn merge_options(
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
