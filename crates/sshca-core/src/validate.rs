//! Whether a certificate would be accepted: [`Certificate::validate`] and
//! [`Certificate::check`] refuse what sshd (user certificates,
//! `TrustedUserCAKeys`) and ssh (host certificates, `@cert-authority`)
//! refuse, with a stable [`Rejection`] code.

use std::fmt;

use ssh_key::HashAlg;

use crate::cert::{CertType, Certificate};
use crate::KeyData;
use crate::{Error, Result};

/// What a certificate is checked against by [`Certificate::validate`].
#[derive(Debug, Clone)]
pub struct Validation<'a> {
    /// Trusted CA public keys; the certificate must be signed by one of them.
    pub ca_keys: &'a [KeyData],
    /// The time to check validity at, unix seconds.
    pub at: u64,
    /// A principal the certificate must name (if set). A user certificate
    /// must list it (sshd's `TrustedUserCAKeys`); a host certificate's
    /// principals are OpenSSH patterns (`*`, `?`) matched against it.
    pub principal: Option<&'a str>,
    /// Accept a certificate with no principals for any principal, as
    /// OpenSSH before 10.3 did for authorized_keys `cert-authority` lines and
    /// host certificates (sshd's `TrustedUserCAKeys`, and OpenSSH 10.3 and
    /// later everywhere, refuse it).
    pub any_principal: bool,
    /// The certificate type it must have (if set).
    pub cert_type: Option<CertType>,
}

/// Why [`Certificate::check`] refused a certificate: a stable code for
/// machines ([`Rejection::code`]) beside the human message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Signed by a CA key that is not trusted.
    UntrustedCa,
    /// The CA signature does not verify.
    BadSignature,
    /// A user certificate where a host certificate was required, or the reverse.
    WrongType,
    /// `valid_after` is later than the time checked at.
    NotYetValid,
    /// `valid_before` is not later than the time checked at.
    Expired,
    /// A certificate without principals, checked for a principal.
    NoPrincipals,
    /// The principal is not among (or, for hosts, matched by) the principals.
    PrincipalMismatch,
    /// A user certificate with a critical option sshd does not know.
    UnknownCriticalOption,
    /// A host certificate with a critical option (ssh refuses any).
    HostCriticalOption,
}

impl Rejection {
    /// The stable code, e.g. `untrusted-ca`, `expired`.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::UntrustedCa => "untrusted-ca",
            Rejection::BadSignature => "bad-signature",
            Rejection::WrongType => "wrong-type",
            Rejection::NotYetValid => "not-yet-valid",
            Rejection::Expired => "expired",
            Rejection::NoPrincipals => "no-principals",
            Rejection::PrincipalMismatch => "principal-mismatch",
            Rejection::UnknownCriticalOption => "unknown-critical-option",
            Rejection::HostCriticalOption => "host-critical-option",
        }
    }
}

/// A refusal by [`Certificate::check`]: the reason and a message naming the
/// offending value (escaped: nothing unprintable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Rejection,
    /// What, for people.
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Critical options sshd knows in user certificates; any other makes it
/// refuse the certificate.
pub const KNOWN_CRITICAL_OPTIONS: [&str; 3] =
    ["force-command", "source-address", "verify-required"];

impl Certificate {
    /// Full validation: signed by a trusted CA (signature checked), valid at
    /// `v.at`, of the right type, naming the principal. The error is
    /// [`Error::Invalid`] with [`Certificate::check`]'s message.
    pub fn validate(&self, v: &Validation<'_>) -> Result<()> {
        self.check(v).map_err(|r| Error::Invalid(r.message))
    }

    /// [`Certificate::validate`] with the reason as a [`Rejection`]: what
    /// sshd (user certificates, `TrustedUserCAKeys`) and ssh (host
    /// certificates, `@cert-authority`) would refuse is refused.
    pub fn check(&self, v: &Validation<'_>) -> std::result::Result<(), Refused> {
        let refuse = |reason, message: String| Err(Refused { reason, message });
        let ca_fp = self.signing_ca_fingerprint();
        if !v.ca_keys.iter().any(|k| k == self.signature_key()) {
            return refuse(
                Rejection::UntrustedCa,
                format!(
                    "signed by CA {ca_fp}, which is not trusted (trusted: {})",
                    v.ca_keys
                        .iter()
                        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let Err(e) = self.verify_signature() {
            return refuse(Rejection::BadSignature, e.to_string());
        }
        if let Some(t) = v.cert_type {
            if t != self.cert_type() {
                return refuse(
                    Rejection::WrongType,
                    format!(
                        "is a {} certificate, expected a {t} certificate",
                        self.cert_type()
                    ),
                );
            }
        }
        if v.at < self.valid_after() {
            return refuse(
                Rejection::NotYetValid,
                format!(
                    "not yet valid: valid from {} (checked at {})",
                    self.valid_after(),
                    v.at
                ),
            );
        }
        if v.at >= self.valid_before() {
            return refuse(
                Rejection::Expired,
                format!(
                    "expired: valid before {} (checked at {})",
                    self.valid_before(),
                    v.at
                ),
            );
        }
        let host = self.cert_type() == CertType::Host;
        if let Some(name) = self
            .critical_options()
            .keys()
            .find(|n| host || !KNOWN_CRITICAL_OPTIONS.contains(&n.as_str()))
        {
            let name = crate::text::escape(name);
            return if host {
                refuse(
                    Rejection::HostCriticalOption,
                    format!(
                        "host certificate carries the critical option `{name}` (ssh refuses any)"
                    ),
                )
            } else {
                refuse(
                    Rejection::UnknownCriticalOption,
                    format!("unknown critical option `{name}` (sshd refuses the certificate)"),
                )
            };
        }
        if let Some(p) = v.principal {
            let listed = || {
                self.principals()
                    .iter()
                    .map(|x| crate::text::escape(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if self.principals().is_empty() {
                if !v.any_principal {
                    return refuse(
                        Rejection::NoPrincipals,
                        format!(
                            "the {} certificate lists no principals (refused by sshd's \
                             TrustedUserCAKeys, and everywhere since OpenSSH 10.3; \
                             --any-principal accepts it as older cert-authority lines did)",
                            self.cert_type()
                        ),
                    );
                }
            } else if host {
                if !self
                    .principals()
                    .iter()
                    .any(|pat| crate::glob::wildcard_match(pat, p))
                {
                    return refuse(
                        Rejection::PrincipalMismatch,
                        format!(
                            "host `{}` matches none of the certificate's principals [{}]",
                            crate::text::escape(p),
                            listed()
                        ),
                    );
                }
            } else if !self.principals().iter().any(|x| x == p) {
                return refuse(
                    Rejection::PrincipalMismatch,
                    format!(
                        "principal `{}` is not in the certificate's principals [{}]",
                        crate::text::escape(p),
                        listed()
                    ),
                );
            }
        }
        Ok(())
    }
}
