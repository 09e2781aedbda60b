//! KRLs: built from the store's revocations for every key of a CA, with a
//! detached SSHSIG by the current key.
//!
//! Serial and key id revocations are written once per CA key; key
//! revocations by SHA256 hash; a revoked CA key in the explicit key
//! section. The KRL carries no embedded signature; a detached SSHSIG
//! (namespace [`KRL_NAMESPACE`]) made by the current key goes with it.

use std::collections::BTreeSet;

use sshca::core::krl::{Krl, Serials};
use sshca::core::{HashAlg, PublicKey};
use sshca::signer::{Error, ErrorKind, Result, SignerExt};
use sshca_store::{AuditEvent, RevocationTarget, Store};

use crate::ca::OpenedCa;
use crate::revoke::invalid;

/// The SSHSIG namespace of KRL signatures.
pub use sshca::core::krl::SSHSIG_NAMESPACE as KRL_NAMESPACE;

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
    store
        .audit(&AuditEvent {
            ca_fingerprint: Some(ca.current.fingerprint.clone()),
            status: 200,
            outcome: "allowed".into(),
            code: "krl_built".into(),
            reason: format!(
                "CA `{}`: KRL version {} with {} revocations ({} expired serials left out)",
                ca.name,
                krl.version,
                revocations.len(),
                pruned.len()
            ),
            ..AuditEvent::new("krl", &format!("krl-{}", krl.version), now)
        })
        .await?;
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
