//! Trust bundles: the CA keys a host or user must trust, as
//! `TrustedUserCAKeys`, `authorized_keys` or `known_hosts` lines.

use sshca::core::PublicKey;
use sshca::signer::{Error, ErrorKind, Result};

use crate::ca::CaKey;

/// How a trust bundle is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleFormat {
    /// `TYPE BASE64 COMMENT` lines, for sshd's `TrustedUserCAKeys`.
    TrustedUserCaKeys,
    /// `cert-authority TYPE BASE64 COMMENT`, for `authorized_keys`.
    AuthorizedKeys,
    /// `@cert-authority PATTERN TYPE BASE64 COMMENT`, for `known_hosts`.
    KnownHosts(String),
}

impl BundleFormat {
    /// Parses `trusted-user-ca-keys`, `authorized-keys` or `known-hosts`
    /// (with `pattern`, default `*`).
    pub fn parse(name: &str, pattern: Option<&str>) -> Result<Self> {
        match name {
            "trusted-user-ca-keys" | "trusted_user_ca_keys" => Ok(Self::TrustedUserCaKeys),
            "authorized-keys" | "authorized_keys" => Ok(Self::AuthorizedKeys),
            "known-hosts" | "known_hosts" => {
                let p = pattern.unwrap_or("*");
                if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("host pattern `{}`: must be one word", p.escape_debug()),
                    ));
                }
                Ok(Self::KnownHosts(p.to_owned()))
            }
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "format `{}`: expected trusted-user-ca-keys, authorized-keys or known-hosts",
                    other.escape_debug()
                ),
            )),
        }
    }
}

/// The trust bundle text: one line per key, each with a comment naming the
/// CA and the key's role.
pub fn bundle_text(ca: &str, keys: &[&CaKey], format: &BundleFormat) -> Result<String> {
    let mut out = String::new();
    for k in keys {
        let line = PublicKey::new(
            k.key.clone(),
            format!("sshca CA {ca} ({})", k.role.as_str()),
        )
        .to_openssh()
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("CA `{ca}`: cannot encode a key"),
            )
            .with_source(e)
        })?;
        match format {
            BundleFormat::TrustedUserCaKeys => out.push_str(&line),
            BundleFormat::AuthorizedKeys => {
                out.push_str("cert-authority ");
                out.push_str(&line);
            }
            BundleFormat::KnownHosts(p) => {
                out.push_str(&format!("@cert-authority {p} {line}"));
            }
        }
        out.push('\n');
    }
    Ok(out)
}
