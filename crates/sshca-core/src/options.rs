//! ssh-keygen compatible certificate options (`ssh-keygen -O`).
//!
//! A user certificate starts with ssh-keygen's default extensions
//! (`permit-X11-forwarding`, `permit-agent-forwarding`, `permit-port-forwarding`,
//! `permit-pty`, `permit-user-rc`); a host certificate starts with none. Each
//! option is applied in order, exactly as ssh-keygen does:
//!
//! | option | effect |
//! |---|---|
//! | `clear` | drop the default permissions (`permit-*`, `no-touch-required`, `verify-required`) |
//! | `no-x11-forwarding`, `no-agent-forwarding`, `no-port-forwarding`, `no-pty`, `no-user-rc` | drop that permission |
//! | `permit-x11-forwarding`, `permit-agent-forwarding`, `permit-port-forwarding`, `permit-pty`, `permit-user-rc` | add that permission |
//! | `force-command=COMMAND` | critical option (once) |
//! | `source-address=CIDR[,CIDR...]` | critical option (once; every entry checked) |
//! | `verify-required` / `no-verify-required` | critical flag on / off |
//! | `no-touch-required` | extension flag |
//! | `critical:NAME[=VALUE]`, `extension:NAME[=VALUE]` | any option, flag without `=` |
//!
//! Names are matched case-insensitively, as ssh-keygen does. Values are
//! encoded as ssh-keygen encodes them: one SSH string inside the option data.

use std::net::IpAddr;

use crate::cert::{CertOptions, CertTemplate, CertType, OptionValue};
use crate::{Error, Result};

/// The permission flags ssh-keygen knows, with their extension names.
const PERMITS: [(&str, &str); 5] = [
    ("x11-forwarding", "permit-X11-forwarding"),
    ("agent-forwarding", "permit-agent-forwarding"),
    ("port-forwarding", "permit-port-forwarding"),
    ("pty", "permit-pty"),
    ("user-rc", "permit-user-rc"),
];

/// Builds critical options and extensions from `-O` options, as ssh-keygen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsBuilder {
    permits: [bool; 5],
    no_touch_required: bool,
    verify_required: bool,
    force_command: Option<String>,
    source_address: Option<String>,
    custom: Vec<(bool, String, OptionValue)>,
}

fn err(input: &str, reason: impl Into<String>) -> Error {
    Error::CertOption {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

impl OptionsBuilder {
    /// The starting point for a certificate type (user: the five default
    /// permissions; host: nothing).
    pub fn new(cert_type: CertType) -> Self {
        Self {
            permits: [cert_type == CertType::User; 5],
            no_touch_required: false,
            verify_required: false,
            force_command: None,
            source_address: None,
            custom: Vec::new(),
        }
    }

    /// A builder with nothing set (no default permissions), for requests
    /// checked against a signing policy: only what is asked for is asked.
    pub fn empty() -> Self {
        Self::new(CertType::Host)
    }

    /// Applies one `-O` option.
    pub fn apply(&mut self, opt: &str) -> Result<()> {
        if opt.eq_ignore_ascii_case("clear") {
            self.permits = [false; 5];
            self.no_touch_required = false;
            self.verify_required = false;
            return Ok(());
        }
        for (i, (name, _)) in PERMITS.iter().enumerate() {
            if let Some(rest) = strip_prefix_ci(opt, "permit-") {
                if rest.eq_ignore_ascii_case(name) {
                    self.permits[i] = true;
                    return Ok(());
                }
            }
            if let Some(rest) = strip_prefix_ci(opt, "no-") {
                if rest.eq_ignore_ascii_case(name) {
                    self.permits[i] = false;
                    return Ok(());
                }
            }
        }
        if opt.eq_ignore_ascii_case("no-touch-required") {
            self.no_touch_required = true;
        } else if opt.eq_ignore_ascii_case("verify-required") {
            self.verify_required = true;
        } else if opt.eq_ignore_ascii_case("no-verify-required") {
            self.verify_required = false;
        } else if let Some(cmd) = strip_prefix_ci(opt, "force-command=") {
            if cmd.is_empty() {
                return Err(err(opt, "empty force-command"));
            }
            if self.force_command.is_some() {
                return Err(err(opt, "force-command already specified"));
            }
            self.force_command = Some(cmd.to_owned());
        } else if let Some(list) = strip_prefix_ci(opt, "source-address=") {
            if self.source_address.is_some() {
                return Err(err(opt, "source-address already specified"));
            }
            validate_source_address(list).map_err(|reason| err(opt, reason))?;
            self.source_address = Some(list.to_owned());
        } else if let Some(spec) = strip_prefix_ci(opt, "critical:") {
            self.add_custom(opt, true, spec)?;
        } else if let Some(spec) = strip_prefix_ci(opt, "extension:") {
            self.add_custom(opt, false, spec)?;
        } else {
            return Err(err(opt, "unsupported certificate option"));
        }
        Ok(())
    }

    fn add_custom(&mut self, opt: &str, critical: bool, spec: &str) -> Result<()> {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, OptionValue::Text(v.to_owned())),
            None => (spec, OptionValue::Flag),
        };
        if name.is_empty() {
            return Err(err(opt, "empty option name"));
        }
        if self
            .custom
            .iter()
            .any(|(c, n, _)| *c == critical && n == name)
        {
            return Err(err(opt, format!("`{name}` already specified")));
        }
        self.custom.push((critical, name.to_owned(), value));
        Ok(())
    }

    /// Applies options in order.
    pub fn apply_all<'a>(&mut self, opts: impl IntoIterator<Item = &'a str>) -> Result<()> {
        opts.into_iter().try_for_each(|o| self.apply(o))
    }

    /// The resulting (critical options, extensions).
    pub fn build(&self) -> Result<(CertOptions, CertOptions)> {
        let mut crit = CertOptions::new();
        let mut ext = CertOptions::new();
        if let Some(c) = &self.force_command {
            crit.insert("force-command".into(), OptionValue::Text(c.clone()));
        }
        if let Some(s) = &self.source_address {
            crit.insert("source-address".into(), OptionValue::Text(s.clone()));
        }
        if self.verify_required {
            crit.insert("verify-required".into(), OptionValue::Flag);
        }
        for (on, (_, name)) in self.permits.iter().zip(PERMITS) {
            if *on {
                ext.insert(name.into(), OptionValue::Flag);
            }
        }
        if self.no_touch_required {
            ext.insert("no-touch-required".into(), OptionValue::Flag);
        }
        for (critical, name, value) in &self.custom {
            let (map, kind) = if *critical {
                (&mut crit, "critical")
            } else {
                (&mut ext, "extension")
            };
            if map.insert(name.clone(), value.clone()).is_some() {
                return Err(err(
                    &format!("{kind}:{name}"),
                    format!("`{name}` is already set by another option"),
                ));
            }
        }
        Ok((crit, ext))
    }

    /// Writes the options into a template.
    pub fn apply_to(&self, template: &mut CertTemplate) -> Result<()> {
        let (c, e) = self.build()?;
        template.critical_options = c;
        template.extensions = e;
        Ok(())
    }
}

/// Checks a `source-address` list: comma-separated IPv4/IPv6 addresses, each
/// with an optional `/prefix` within the address family's width.
pub fn validate_source_address(list: &str) -> std::result::Result<(), String> {
    if list.is_empty() {
        return Err("empty source-address".into());
    }
    for entry in list.split(',') {
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{entry}` is not an IP address or CIDR block"))?;
        if let Some(p) = prefix {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let valid = !p.starts_with('+') && p.parse::<u8>().is_ok_and(|b| b <= max);
            if !valid {
                return Err(format!(
                    "`{entry}` has an invalid prefix length (0..={max})"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(t: CertType, opts: &[&str]) -> Result<(CertOptions, CertOptions)> {
        let mut b = OptionsBuilder::new(t);
        b.apply_all(opts.iter().copied())?;
        b.build()
    }

    #[test]
    fn user_defaults_and_clear() {
        let (c, e) = build(CertType::User, &[]).unwrap();
        assert!(c.is_empty());
        assert_eq!(
            e.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "permit-X11-forwarding",
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-pty",
                "permit-user-rc"
            ]
        );
        let (_, e) = build(CertType::User, &["clear", "permit-pty"]).unwrap();
        assert_eq!(e.keys().collect::<Vec<_>>(), ["permit-pty"]);
        let (_, e) = build(CertType::User, &["no-pty", "NO-X11-FORWARDING"]).unwrap();
        assert_eq!(e.len(), 3);
        let (c, e) = build(CertType::Host, &[]).unwrap();
        assert!(c.is_empty() && e.is_empty());
    }

    #[test]
    fn values_and_flags() {
        let (c, e) = build(
            CertType::User,
            &[
                "force-command=ls",
                "source-address=10.0.0.0/8,::1",
                "verify-required",
                "critical:zzz=1",
                "extension:aaa",
                "no-touch-required",
            ],
        )
        .unwrap();
        assert_eq!(c["force-command"], OptionValue::Text("ls".into()));
        assert_eq!(c["verify-required"], OptionValue::Flag);
        assert_eq!(c["zzz"], OptionValue::Text("1".into()));
        assert_eq!(e["aaa"], OptionValue::Flag);
        assert_eq!(e["no-touch-required"], OptionValue::Flag);
    }

    #[test]
    fn bad_options() {
        for bad in [
            &["force-command="][..],
            &["force-command=a", "force-command=b"],
            &["source-address=10.0.0.0/33"],
            &["source-address=foo"],
            &["source-address="],
            &["source-address=1.2.3.4", "source-address=1.2.3.4"],
            &["permit-everything"],
            &["critical:"],
            &["extension:a", "extension:a=1"],
            &["extension:permit-pty"],
        ] {
            assert!(build(CertType::User, bad).is_err(), "{bad:?}");
        }
    }
}
