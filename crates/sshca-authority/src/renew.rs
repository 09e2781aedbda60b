//! Renewal by proof of possession: a certificate this authority issued is
//! exchanged for a new one for the same key, when its holder proves with
//! that key (an SSHSIG over a message naming the service, the certificate,
//! a time and a nonce) that it holds it; bounded by the policy's
//! `renew_max_age` from the first certificate of the chain, and only while
//! the original identity may still use the policy.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use sshca::core::policy::Request;
use sshca::core::{CertOptions, Certificate};
use sshca_store::{CertQuery, IssuedCert, RevocationTarget};

use crate::{issue, Authority, Identity, Issued, Refusal, RefusalKind};

/// The SSHSIG namespace of renewal proofs.
pub const NAMESPACE: &str = "sshca-renew";

/// How far a proof's `time` may be from the service's clock, seconds.
pub const PROOF_WINDOW: u64 = 120;

/// The message a renewal proof signs:
/// `sshca-renew\n{public_url}\n{fingerprint}\n{time}\n{nonce}`.
pub fn message(public_url: &str, fingerprint: &str, time: u64, nonce: &str) -> String {
    format!("{NAMESPACE}\n{public_url}\n{fingerprint}\n{time}\n{nonce}")
}

/// The SHA256 fingerprint of a certificate's blob: `SHA256:` and the
/// unpadded base64 of the SHA-256 of its binary encoding (the second field
/// of its `-cert.pub` line, decoded).
pub fn fingerprint(cert: &Certificate) -> String {
    let digest = Sha256::digest(cert.as_bytes());
    format!(
        "SHA256:{}",
        <base64ct::Base64Unpadded as base64ct::Encoding>::encode_string(&digest)
    )
}

/// A renewal request as a front end received it.
#[derive(Debug, Clone)]
pub struct RenewRequest<'a> {
    /// The certificate to renew (`-cert.pub` line).
    pub certificate: &'a str,
    /// The proof's time (unix seconds).
    pub time: u64,
    /// The proof's nonce (32 hex characters).
    pub nonce: &'a str,
    /// The armored SSHSIG.
    pub signature: &'a str,
    /// The URL clients use for this service (in the signed message).
    pub public_url: &'a str,
    /// The request id, for logs.
    pub request_id: &'a str,
    /// Where the request came from (for `pin_source_address`).
    pub source_address: Option<IpAddr>,
}

/// A renewal done.
#[derive(Debug)]
pub struct Renewed {
    /// The identity the chain belongs to (the original requester).
    pub identity: Identity,
    /// The policy.
    pub policy: String,
    /// The new certificate.
    pub issued: Issued,
}

fn refuse(kind: RefusalKind, message: impl Into<String>) -> Refusal {
    Refusal::new(kind, message)
}

fn is_revoked(
    revocations: &[sshca_store::Revocation],
    row: &IssuedCert,
    ca_key: &sshca::core::KeyData,
) -> Option<String> {
    revocations.iter().find_map(|r| {
        let hit = match &r.target {
            RevocationTarget::Serials { from, to } => (*from..=*to).contains(&row.serial),
            RevocationTarget::KeyId { key_id } => *key_id == row.key_id,
            RevocationTarget::Key { fingerprint } => *fingerprint == row.subject_fingerprint,
            RevocationTarget::CaKey { public_key } => {
                sshca::core::PublicKey::from_openssh(public_key)
                    .is_ok_and(|k| k.key_data() == ca_key)
            }
        };
        hit.then(|| r.reason.clone())
    })
}

impl Authority {
    /// Renews a certificate by proof of possession (see the module docs);
    /// `still_known` says whether the original identity's credential still
    /// exists (a removed `[token.NAME]` ends its renewals).
    pub async fn renew(
        &self,
        r: RenewRequest<'_>,
        now: u64,
        still_known: &(dyn Fn(&Identity) -> bool + Sync),
    ) -> Result<Renewed, Refusal> {
        let cert = Certificate::from_openssh(r.certificate).map_err(|e| {
            refuse(
                RefusalKind::InvalidInput,
                format!("field `certificate`: {e}"),
            )
        })?;
        // A CA of this service (current, next or retired key) issued it,
        // and the store has exactly this certificate.
        let ca_fp = sshca::fingerprint(cert.signature_key());
        let Some(ca) = self.cas.values().find(|ca| {
            ca.current.fingerprint == ca_fp || ca.others.iter().any(|k| k.fingerprint == ca_fp)
        }) else {
            return Err(refuse(
                RefusalKind::CertificateUnknown,
                "the certificate was not issued by a CA of this service",
            ));
        };
        let rows = self
            .store
            .certs(&CertQuery {
                ca_fingerprint: Some(ca_fp.clone()),
                serial: Some(cert.serial()),
                ..Default::default()
            })
            .await
            .map_err(|e| Refusal::store("cannot look the certificate up", e))?;
        let blob = |line: &str| line.split_whitespace().nth(1).map(str::to_owned);
        let Some(row) = rows.into_iter().find(|row| {
            blob(&row.certificate).is_some() && blob(&row.certificate) == blob(r.certificate)
        }) else {
            return Err(refuse(
                RefusalKind::CertificateUnknown,
                format!(
                    "CA `{}` has no record of certificate serial {}",
                    ca.name,
                    cert.serial()
                ),
            ));
        };
        // Revoked (serial, key id, key, CA key)?
        let revocations = self
            .store
            .revocations(Some(&ca.name))
            .await
            .map_err(|e| Refusal::store("cannot read the revocations", e))?;
        if let Some(reason) = is_revoked(&revocations, &row, cert.signature_key()) {
            return Err(refuse(
                RefusalKind::CertificateRevoked,
                format!(
                    "certificate serial {} is revoked ({})",
                    row.serial,
                    sshca::core::text::escape(&reason)
                ),
            ));
        }
        if cert.valid_before() <= now {
            return Err(refuse(
                RefusalKind::RenewalExpired,
                format!(
                    "certificate serial {} has expired; an expired certificate is not renewed (ask for a new one)",
                    row.serial
                ),
            ));
        }
        // The policy still exists and is renewable; the chain is young
        // enough; the identity may still use it.
        let Some(entry) = self.config.policies.get(&row.policy) else {
            return Err(refuse(
                RefusalKind::RenewNotAllowed,
                format!("policy `{}` no longer exists", row.policy),
            ));
        };
        let Some(max_age) = entry.renew_max_age else {
            return Err(refuse(
                RefusalKind::RenewNotAllowed,
                format!("policy `{}` does not renew certificates", row.policy),
            ));
        };
        let chain_start = row.chain_started();
        let chain_end = chain_start.saturating_add(max_age);
        if now >= chain_end {
            return Err(refuse(
                RefusalKind::RenewalExpired,
                format!(
                    "the renewals of this certificate ended {}s after its first certificate \
                     (`renew_max_age` of policy `{}`); ask for a new one",
                    max_age, row.policy
                ),
            ));
        }
        let identity = Identity::new(
            row.requester_source
                .clone()
                .unwrap_or_else(|| "token".into()),
            row.requester.clone(),
        );
        if let Err(e) = identity.may_use(entry, &row.policy) {
            return Err(refuse(RefusalKind::RenewNotAllowed, e.message));
        }
        if !still_known(&identity) {
            return Err(refuse(
                RefusalKind::RenewNotAllowed,
                format!(
                    "the credential of `{}` is no longer configured",
                    identity.qualified()
                ),
            ));
        }
        // The proof: fresh, by the certificate's own key, unused.
        if now.abs_diff(r.time) > PROOF_WINDOW {
            return Err(refuse(
                RefusalKind::RenewProofStale,
                format!(
                    "the proof's time is {}s from the service's clock (at most {PROOF_WINDOW}s)",
                    now.abs_diff(r.time)
                ),
            ));
        }
        if r.nonce.len() != 32 || !r.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(
                RefusalKind::RenewProofInvalid,
                "field `nonce`: not 32 hex characters",
            ));
        }
        let sig = sshca::core::sshsig::decode(r.signature.as_bytes()).map_err(|e| {
            refuse(
                RefusalKind::RenewProofInvalid,
                format!("field `signature`: {e}"),
            )
        })?;
        let msg = message(r.public_url, &fingerprint(&cert), r.time, r.nonce);
        let signer = sshca::core::sshsig::verify(&sig, NAMESPACE, msg.as_bytes()).map_err(|e| {
            refuse(
                RefusalKind::RenewProofInvalid,
                format!(
                    "the proof does not verify over the renewal message for {}: {e}",
                    r.public_url
                ),
            )
        })?;
        if signer != cert.public_key() {
            return Err(refuse(
                RefusalKind::RenewProofInvalid,
                "the proof is signed by another key than the certificate's",
            ));
        }
        let fresh = self
            .store
            .use_nonce(
                &r.nonce.to_ascii_lowercase(),
                now.saturating_add(2 * PROOF_WINDOW),
                now,
            )
            .await
            .map_err(|e| Refusal::store("cannot record the proof's nonce", e))?;
        if !fresh {
            return Err(refuse(
                RefusalKind::RenewProofReplayed,
                "this proof (its nonce) was used before",
            ));
        }

        // The same key, type, principals, key id and options, under
        // today's policy; it ends with the chain at the latest.
        let mut policy_entry = entry.clone();
        let p = &mut policy_entry.policy;
        if p.has_principal_templates() {
            // Claims are not kept: the principals the templates gave stay.
            p.valid_principals = Some(row.principals.clone());
            p.default_valid_principals = Vec::new();
            p.allowed_valid_principals = None;
        }
        p.key_id = None;
        p.allow_key_id = true;
        let opts = |o: &CertOptions| (!o.is_empty()).then(|| o.clone());
        let request = Request {
            cert_type: Some(cert.cert_type()),
            principals: Some(cert.principals().to_vec()),
            critical_options: opts(cert.critical_options()).filter(|_| !entry.pin_source_address),
            extensions: Some(cert.extensions().clone()),
            key_id: Some(cert.key_id().to_owned()),
            ..Default::default()
        };
        let mut prepared = issue::prepare(
            &policy_entry,
            &identity,
            cert.public_key(),
            request,
            now,
            sshca::core::random_serial(),
        )?;
        issue::pin_source_address(entry, &mut prepared, r.source_address)?;
        if prepared.template.valid_before > chain_end {
            prepared.template.valid_before = chain_end;
        }
        let signing = self.signing(&entry.ca, self.ca(&entry.ca)?);
        let who = issue::RecordAs {
            identity: &identity,
            kind: "renew",
            policy: &row.policy,
            now,
            request_id: r.request_id,
            renewal: Some((row.serial, chain_start)),
        };
        let issued = issue::sign_and_record(&signing, prepared, cert.public_key(), &who).await?;
        Ok(Renewed {
            identity,
            policy: row.policy,
            issued,
        })
    }
}
