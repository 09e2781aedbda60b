//! Revocations: what a revoke request names (serials, a key id, a key, a CA
//! key), checked, and recorded in the store with its audit row.

use sshca::core::{Certificate, KeyData, PublicKey};
use sshca::signer::{Error, ErrorKind, Result};
use sshca_store::{AuditEvent, Revocation, RevocationTarget, Store};

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg.into())
}

/// Parses `N` or `N-M` (decimal serials, 1 or more, `N <= M`).
pub fn parse_serials(text: &str) -> Result<(u64, u64)> {
    let num = |s: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            invalid(format!(
                "serial `{}`: not a serial number (N or N-M, decimal)",
                text.escape_debug()
            ))
        })
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(text)?;
            (n, n)
        }
    };
    if lo == 0 {
        return Err(invalid(
            "serial 0 cannot be revoked (OpenSSH reads 0 as \"no serial\")",
        ));
    }
    if lo > hi {
        return Err(invalid(format!(
            "serial range {lo}-{hi} ends before it starts"
        )));
    }
    Ok((lo, hi))
}

/// The key a public key or certificate line names (a certificate's own
/// key: revoking it revokes every certificate of that key).
pub fn parse_key_line(text: &str) -> Result<KeyData> {
    let line = text.trim();
    if line.contains("-cert-v01@openssh.com") {
        let cert = Certificate::from_openssh(line)
            .map_err(|e| invalid(format!("key: not a certificate OpenSSH reads: {e}")))?;
        return Ok(cert.public_key().clone());
    }
    PublicKey::from_openssh(line)
        .map(|k| k.key_data().clone())
        .map_err(|e| {
            invalid(format!(
                "key: not a public key line (`TYPE BASE64 [COMMENT]`): {e}"
            ))
        })
}

/// A key revocation target: the key by its SHA256 fingerprint.
pub fn key_target(key: &KeyData) -> RevocationTarget {
    RevocationTarget::Key {
        fingerprint: sshca::fingerprint(key),
    }
}

/// A CA key revocation target: the key's public line.
pub fn ca_key_target(key: &KeyData) -> Result<RevocationTarget> {
    let line = PublicKey::new(key.clone(), "")
        .to_openssh()
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode the CA key").with_source(e))?;
    Ok(RevocationTarget::CaKey {
        public_key: line.trim().to_owned(),
    })
}

/// Checks a key id to revoke: printable, non-empty.
pub fn key_id_target(key_id: &str) -> Result<RevocationTarget> {
    if key_id.is_empty() {
        return Err(invalid("key id: empty"));
    }
    sshca::core::text::check_printable("key id", key_id).map_err(|e| invalid(e.to_string()))?;
    Ok(RevocationTarget::KeyId {
        key_id: key_id.to_owned(),
    })
}

/// Words for a target, for logs, audit rows and output.
pub fn describe(target: &RevocationTarget) -> String {
    match target {
        RevocationTarget::Serials { from, to } if from == to => format!("serial {from}"),
        RevocationTarget::Serials { from, to } => format!("serials {from}-{to}"),
        RevocationTarget::KeyId { key_id } => {
            format!("key id \"{}\"", sshca::core::text::escape(key_id))
        }
        RevocationTarget::Key { fingerprint } => format!("key {fingerprint}"),
        RevocationTarget::CaKey { public_key } => {
            let fp = PublicKey::from_openssh(public_key)
                .map(|k| sshca::fingerprint(k.key_data()))
                .unwrap_or_else(|_| "(unreadable)".into());
            format!("CA key {fp}")
        }
    }
}

/// Who revokes, for the audit row.
#[derive(Debug, Clone)]
pub struct Revoker {
    /// The identity.
    pub identity: String,
    /// Where it came from (`token`, `client-cert`, `cli`).
    pub source: String,
    /// The request id (or a fresh id for the CLI).
    pub request_id: String,
}

/// Records a revocation and its audit row (who, what, why).
pub async fn revoke(
    store: &dyn Store,
    ca: &str,
    target: RevocationTarget,
    reason: &str,
    by: &Revoker,
    now: u64,
) -> Result<Revocation> {
    sshca::core::text::check_printable("reason", reason).map_err(|e| invalid(e.to_string()))?;
    let r = Revocation {
        ca: ca.to_owned(),
        target,
        reason: reason.to_owned(),
        revoked_by: by.identity.clone(),
        revoked_at: now,
    };
    store.revoke(&r).await?;
    store
        .audit(&AuditEvent {
            identity: Some(by.identity.clone()),
            auth_source: Some(by.source.clone()),
            status: 200,
            outcome: "allowed".into(),
            code: "revoked".into(),
            reason: format!(
                "CA `{ca}`: {} revoked{}",
                describe(&r.target),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
            ..AuditEvent::new("revoke", &by.request_id, now)
        })
        .await?;
    Ok(r)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::krl::decode_sha256;

    #[test]
    fn serial_arguments_are_checked() {
        assert_eq!(parse_serials("7").unwrap(), (7, 7));
        assert_eq!(parse_serials("5-9").unwrap(), (5, 9));
        for bad in ["0", "0-4", "9-5", "x", "-3", "5-", ""] {
            assert!(parse_serials(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_round_trip() {
        let key = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1i9NcBEhwWrvjHucG2W9YoKCOR9B5MEd2beUZ9IPRa",
        )
        .unwrap();
        let fp = sshca::fingerprint(key.key_data());
        let raw = decode_sha256(&fp).unwrap();
        assert_eq!(sshca::core::krl::sha256_fingerprint(&raw), fp);
        assert!(decode_sha256("MD5:aa").is_err());
        assert!(decode_sha256("SHA256:abc").is_err());
        assert!(key_id_target("a\nb").is_err());
        assert!(key_id_target("").is_err());
    }
}
