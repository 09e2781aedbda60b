//! Revocations, KRLs and CA trust bundles, shared by `sshca serve` and the
//! `sshca revoke`, `sshca krl build` and `sshca pubkey --all` commands.
//!
//! A CA (`[ca.NAME]`) has a current key, optional `next` keys and `retired`
//! keys. Its KRL covers every one of them: serial and key id revocations
//! are written once per CA key; key revocations by SHA256 hash; a revoked
//! CA key in the explicit key section. The KRL carries no embedded
//! signature; a detached SSHSIG (namespace [`KRL_NAMESPACE`]) made by the
//! current key goes with it.

use std::collections::BTreeSet;
use std::sync::Arc;

use sshca::config::Config;
use sshca::core::krl::{Krl, Serials};
use sshca::core::{Certificate, HashAlg, KeyData, PublicKey};
use sshca::signer::{Error, ErrorKind, KeySigner, Result, SignerExt};
use sshca_store::{AuditEvent, Revocation, RevocationTarget, Store};

/// The SSHSIG namespace of KRL signatures.
pub use sshca::core::krl::SSHSIG_NAMESPACE as KRL_NAMESPACE;

/// The part a CA key plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Signs now.
    Current,
    /// Will sign after the next rotation.
    Next,
    /// Signed before.
    Retired,
}

impl KeyRole {
    /// `current`, `next` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Current => "current",
            KeyRole::Next => "next",
            KeyRole::Retired => "retired",
        }
    }
}

/// One key of a CA.
#[derive(Debug, Clone)]
pub struct CaKey {
    /// Its role.
    pub role: KeyRole,
    /// Its public key.
    pub key: KeyData,
    /// Its SHA256 fingerprint.
    pub fingerprint: String,
}

/// A CA with every key opened: the current one to sign with, the others for
/// their public keys.
#[derive(Debug, Clone)]
pub struct OpenedCa {
    /// The CA's name in the config.
    pub name: String,
    /// The current key's signer.
    pub signer: Arc<dyn KeySigner>,
    /// The current key.
    pub current: CaKey,
    /// The next keys, then the retired ones.
    pub others: Vec<CaKey>,
}

impl OpenedCa {
    /// Opens `[ca.NAME]`: its current key (pin checked) and the public keys
    /// of its next and retired keys.
    pub async fn open(config: &Config, name: &str) -> Result<Self> {
        let ca = config.cas.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no CA named `{name}` in the config (CAs: {})",
                    config.cas.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let registry = sshca::default_registry();
        let ctx = |role: &str| format!("CA `{name}` ({role} key)");
        let signer = registry
            .open(&ca.uri()?)
            .await
            .map_err(|e| e.context(ctx("current")))?;
        let key = signer
            .public_key()
            .await
            .map_err(|e| e.context(ctx("current")))?;
        let current = CaKey {
            role: KeyRole::Current,
            fingerprint: sshca::fingerprint(&key),
            key,
        };
        let mut others = Vec::new();
        for (role, list) in [(KeyRole::Next, &ca.next), (KeyRole::Retired, &ca.retired)] {
            for uri in list {
                let s = registry
                    .open(uri)
                    .await
                    .map_err(|e| e.context(ctx(role.as_str())))?;
                let key = s
                    .public_key()
                    .await
                    .map_err(|e| e.context(ctx(role.as_str())))?;
                others.push(CaKey {
                    role,
                    fingerprint: sshca::fingerprint(&key),
                    key,
                });
            }
        }
        Ok(Self {
            name: name.to_owned(),
            signer,
            current,
            others,
        })
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &CaKey> {
        std::iter::once(&self.current).chain(&self.others)
    }

    /// The SHA256 fingerprints of every key.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys().map(|k| k.fingerprint.clone()).collect()
    }

    /// The keys a host or user must trust now: the current and next keys,
    /// and retired keys unless the store shows that every certificate they
    /// signed has expired (a retired key the store has no certificate of
    /// may have signed outside it, and is kept; so is every retired key
    /// when no store is given).
    pub async fn trusted_keys(&self, store: Option<&dyn Store>, now: u64) -> Result<Vec<&CaKey>> {
        let mut out = Vec::new();
        for k in self.keys() {
            let keep = match (k.role, store) {
                (KeyRole::Retired, Some(s)) => {
                    let known = s
                        .certs(&sshca_store::CertQuery {
                            ca_fingerprint: Some(k.fingerprint.clone()),
                            limit: 1,
                            ..Default::default()
                        })
                        .await?;
                    known.is_empty() || s.has_unexpired(&k.fingerprint, now).await?
                }
                _ => true,
            };
            if keep {
                out.push(k);
            }
        }
        Ok(out)
    }
}

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

fn invalid(msg: impl Into<String>) -> Error {
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
            at: now,
            request_id: by.request_id.clone(),
            identity: Some(by.identity.clone()),
            auth_source: Some(by.source.clone()),
            policy: None,
            status: 200,
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
        })
        .await?;
    Ok(r)
}

/// A KRL and its detached signature.
#[derive(Debug, Clone)]
pub struct BuiltKrl {
    /// Its version.
    pub version: u64,
    /// The KRL bytes.
    pub krl: Vec<u8>,
    /// The armoured SSHSIG over them (namespace [`KRL_NAMESPACE`]).
    pub signature: String,
    /// Revocations it carries.
    pub revocations: usize,
    /// Revoked serials left out because their certificates expired.
    pub pruned: usize,
}

/// Builds the KRL of a CA from every revocation in the store, takes the
/// next version (strictly greater than any before, and at least `now`, so
/// versions keep rising even across a fresh store), and signs it with the
/// CA's current key.
pub async fn build_krl(
    store: &dyn Store,
    ca: &OpenedCa,
    prune_expired: bool,
    now: u64,
) -> Result<BuiltKrl> {
    let revocations = store.revocations(Some(&ca.name)).await?;
    let pruned: BTreeSet<u64> = if prune_expired {
        store
            .expired_revoked_serials(&ca.name, &ca.fingerprints(), now)
            .await?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut ranges = Vec::new();
    let mut key_ids = BTreeSet::new();
    let mut krl = Krl::new(0, now, format!("sshca CA {}", ca.name));
    let stored = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "store: a revocation of CA `{}` holds a bad {what}: {e}",
                ca.name
            ),
        )
    };
    for r in &revocations {
        match &r.target {
            RevocationTarget::Serials { from, to } => {
                if !(from == to && pruned.contains(from)) {
                    ranges.push((*from, *to));
                }
            }
            RevocationTarget::KeyId { key_id } => {
                key_ids.insert(key_id.clone());
            }
            RevocationTarget::Key { fingerprint } => {
                krl.sha256
                    .insert(decode_sha256(fingerprint).map_err(|e| stored("fingerprint", &e))?);
            }
            RevocationTarget::CaKey { public_key } => {
                let key = PublicKey::from_openssh(public_key).map_err(|e| stored("CA key", &e))?;
                krl.revoke_key_explicit(key.key_data())
                    .map_err(|e| stored("CA key", &e))?;
            }
        }
    }
    let serials = Serials::from_ranges(ranges).map_err(|e| stored("serial", &e))?;
    if !serials.is_empty() || !key_ids.is_empty() {
        for k in ca.keys() {
            let section = krl.section_mut(Some(&k.key));
            section.serials = serials.clone();
            section.key_ids = key_ids.clone();
        }
    }
    krl.version = store.next_krl_version(&ca.name, now).await?;
    let bytes = krl
        .encode()
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode the KRL").with_source(e))?;
    let sig = ca
        .signer
        .sign_sshsig(KRL_NAMESPACE, HashAlg::Sha512, &bytes)
        .await
        .map_err(|e| e.context(format!("CA `{}`: signing the KRL", ca.name)))?;
    let signature = sig
        .to_pem(sshca::core::ssh_key::LineEnding::LF)
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the KRL signature").with_source(e)
        })?;
    Ok(BuiltKrl {
        version: krl.version,
        krl: bytes,
        signature,
        revocations: revocations.len(),
        pruned: pruned.len(),
    })
}

/// The 32 bytes of a `SHA256:...` fingerprint.
pub fn decode_sha256(fingerprint: &str) -> Result<[u8; 32]> {
    use base64ct::{Base64Unpadded, Encoding};
    let b64 = fingerprint.strip_prefix("SHA256:").ok_or_else(|| {
        invalid(format!(
            "fingerprint `{}`: expected SHA256:BASE64",
            fingerprint.escape_debug()
        ))
    })?;
    let mut out = [0u8; 32];
    let n = Base64Unpadded::decode(b64.trim_end_matches('='), &mut out)
        .map_err(|_| {
            invalid(format!(
                "fingerprint `{}`: bad base64",
                fingerprint.escape_debug()
            ))
        })?
        .len();
    if n != 32 {
        return Err(invalid(format!(
            "fingerprint `{}`: not 32 bytes",
            fingerprint.escape_debug()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
