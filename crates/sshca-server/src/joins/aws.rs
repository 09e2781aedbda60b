//! `aws-iid`: the EC2 instance identity document with its signature —
//! `signature` (base64 RSA PKCS#1 v1.5 over SHA-256 of the document) or
//! `rsa2048` (PKCS#7 SignedData, RSA with SHA-256, the document inside) —
//! verified against the configured region certificates. The DSA/SHA-1
//! `pkcs7` variant is refused.

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sshca::core::template::Claims;
use sshca::signer::{Error, ErrorKind, Result};

use super::{admit, claim, invalid, max_age, text, Instance};
use crate::config::JoinConfig;
use crate::error::ApiError;

/// Clock skew allowed on a launch time in the future.
const SKEW: u64 = 60;

pub(super) struct AwsJoin {
    keys: Vec<VerifyingKey<Sha256>>,
    accounts: Vec<String>,
    regions: Option<Vec<String>>,
    max_age: u64,
}

impl AwsJoin {
    pub(super) fn new(name: &str, j: &JoinConfig) -> Result<Self> {
        let bad =
            |what: String| Error::new(ErrorKind::InvalidInput, format!("join `{name}`: {what}"));
        let mut keys = Vec::new();
        for path in j.certificates.iter().flatten() {
            let certs = crate::tls::load_certs(path, "instance identity certificate")?;
            for c in certs {
                let cert = x509_cert::Certificate::from_der(&c)
                    .map_err(|e| bad(format!("field `certificates`: {}: {e}", path.display())))?;
                let spki = cert
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| bad(format!("field `certificates`: {}: {e}", path.display())))?;
                let key = rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|e| {
                    bad(format!(
                        "field `certificates`: {}: not an RSA certificate ({e}); the DSA \
                         certificates verify only the SHA-1 `pkcs7` signature, which is refused",
                        path.display()
                    ))
                })?;
                keys.push(VerifyingKey::new(key));
            }
        }
        Ok(AwsJoin {
            keys,
            accounts: j.accounts.clone().unwrap_or_default(),
            regions: j.regions.clone(),
            max_age: max_age(j).map_err(|e| bad(e.to_string()))?,
        })
    }

    pub(super) fn verify(
        &self,
        doc: &str,
        signature: &str,
        now: u64,
    ) -> std::result::Result<Instance, ApiError> {
        let raw = decode_signature(signature)?;
        match ContentInfo::from_der(&raw) {
            Ok(info) => self.verify_pkcs7(doc, &info)?,
            Err(_) => self.verify_plain(doc, &raw)?,
        }
        let m: Map<String, Value> = serde_json::from_str(doc)
            .map_err(|e| invalid(format!("the document is not a JSON object: {e}")))?;
        let what = "the document";
        let account = text(&m, "accountId", what)?;
        let region = text(&m, "region", what)?;
        let instance_id = text(&m, "instanceId", what)?;
        let pending = text(&m, "pendingTime", what)?;
        admit(Some(&self.accounts), account, "account", false)?;
        admit(self.regions.as_deref(), region, "region", false)?;
        let launched = parse_pending(pending).ok_or_else(|| {
            invalid(format!(
                "the document's `pendingTime` `{}` is not YYYY-MM-DDTHH:MM:SSZ",
                sshca::core::text::escape(pending)
            ))
        })?;
        if launched > now + SKEW {
            return Err(invalid("the document's `pendingTime` is in the future"));
        }
        if now.saturating_sub(launched) > self.max_age {
            return Err(super::refused(
                axum::http::StatusCode::UNAUTHORIZED,
                "join_proof_stale",
                format!(
                    "the instance was launched {} s ago; instances join within {} s of their \
                     launch (the join's max_age)",
                    now.saturating_sub(launched),
                    self.max_age
                ),
            ));
        }
        let mut claims = Claims::new();
        claims.insert("account_id".into(), claim(account, "account_id")?);
        claims.insert("region".into(), claim(region, "region")?);
        claims.insert("instance_id".into(), claim(instance_id, "instance_id")?);
        for (key, field) in [
            ("private_ip", "privateIp"),
            ("availability_zone", "availabilityZone"),
        ] {
            if let Some(Value::String(v)) = m.get(field) {
                claims.insert(key.into(), claim(v, key)?);
            }
        }
        Ok(Instance {
            key: format!("{account}/{instance_id}"),
            name: format!("{account}/{instance_id}"),
            claims,
        })
    }

    /// A plain RSA/SHA-256 signature over the document.
    fn verify_plain(&self, doc: &str, raw: &[u8]) -> std::result::Result<(), ApiError> {
        let sig = Signature::try_from(raw)
            .map_err(|_| invalid("field `proof.signature`: neither an RSA signature nor PKCS#7"))?;
        self.check(doc.as_bytes(), &sig)
    }

    fn verify_pkcs7(&self, doc: &str, info: &ContentInfo) -> std::result::Result<(), ApiError> {
        let bad = |what: &str| invalid(format!("field `proof.signature`: {what}"));
        if info.content_type != const_oid::db::rfc5911::ID_SIGNED_DATA {
            return Err(bad("PKCS#7 that is not SignedData"));
        }
        let sd: SignedData = info
            .content
            .decode_as()
            .map_err(|_| bad("PKCS#7 SignedData that cannot be read"))?;
        let content = sd
            .encap_content_info
            .econtent
            .as_ref()
            .ok_or_else(|| bad("PKCS#7 without the document inside"))?;
        if content.value() != doc.as_bytes() {
            return Err(bad("PKCS#7 over another document than `proof.document`"));
        }
        let [signer] = sd.signer_infos.0.as_slice() else {
            return Err(bad("PKCS#7 with other than one signer"));
        };
        if signer.digest_alg.oid != const_oid::db::rfc5912::ID_SHA_256 {
            return Err(bad(
                "PKCS#7 with a digest other than SHA-256 (the DSA/SHA-1 `pkcs7` signature is \
                 refused; send `rsa2048` or `signature`)",
            ));
        }
        if ![
            const_oid::db::rfc5912::RSA_ENCRYPTION,
            const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        ]
        .contains(&signer.signature_algorithm.oid)
        {
            return Err(bad("PKCS#7 signed with another algorithm than RSA"));
        }
        let signed = match &signer.signed_attrs {
            None => doc.as_bytes().to_vec(),
            Some(attrs) => {
                let digest = attrs
                    .iter()
                    .find(|a| a.oid == const_oid::db::rfc5911::ID_MESSAGE_DIGEST)
                    .and_then(|a| a.values.get(0))
                    .and_then(|v| v.decode_as::<der::asn1::OctetString>().ok())
                    .ok_or_else(|| bad("PKCS#7 signed attributes without a message digest"))?;
                if digest.as_bytes() != Sha256::digest(doc.as_bytes()).as_slice() {
                    return Err(bad("PKCS#7 whose message digest is not the document's"));
                }
                attrs
                    .to_der()
                    .map_err(|_| bad("PKCS#7 signed attributes that cannot be encoded"))?
            }
        };
        let sig = Signature::try_from(signer.signature.as_bytes())
            .map_err(|_| bad("PKCS#7 with a malformed signature"))?;
        self.check(&signed, &sig)
    }

    fn check(&self, message: &[u8], sig: &Signature) -> std::result::Result<(), ApiError> {
        if self.keys.iter().any(|k| k.verify(message, sig).is_ok()) {
            Ok(())
        } else {
            Err(invalid(
                "the signature does not verify with the join's certificates",
            ))
        }
    }
}

/// The signature's bytes: base64 (any line breaks), optionally in PEM
/// armour.
fn decode_signature(s: &str) -> std::result::Result<Vec<u8>, ApiError> {
    use base64::Engine;
    let body: String = s
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| invalid(format!("field `proof.signature`: not base64 ({e})")))
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn parse_pending(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let compact: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    if compact.len() != 14 {
        return None;
    }
    sshca::core::validity::parse_absolute(&compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_times() {
        assert_eq!(parse_pending("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        for bad in [
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:2xZ",
            "",
        ] {
            assert_eq!(parse_pending(bad), None, "{bad}");
        }
    }
}
