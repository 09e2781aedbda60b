//! The key types a certificate may certify: their certificate type names,
//! sizes, and the wire encoding of subject and CA keys.

use ssh_key::{public::KeyData, Algorithm, EcdsaCurve};

pub(crate) use crate::wire::encode_key_blob;
use crate::{Error, Result};

/// Certificate key type names, the plain key type, and how many wire fields
/// the public key has.
pub(super) const CERT_TYPES: [(&str, &str, usize); 7] = [
    ("ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", 1),
    (
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256",
        2,
    ),
    (
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384",
        2,
    ),
    (
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521",
        2,
    ),
    ("ssh-rsa-cert-v01@openssh.com", "ssh-rsa", 2),
    (
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        2,
    ),
    (
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        3,
    ),
];

pub(super) fn cert_type_info(name: &str) -> Option<(&'static str, &'static str, usize)> {
    CERT_TYPES.into_iter().find(|t| t.0 == name)
}

/// The certificate key type name for a subject key (`...-cert-v01@openssh.com`).
pub fn cert_key_type(subject: &KeyData) -> Result<&'static str> {
    Ok(match subject.algorithm() {
        Algorithm::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        } => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        } => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        } => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        Algorithm::Rsa { .. } => "ssh-rsa-cert-v01@openssh.com",
        Algorithm::SkEd25519 => "sk-ssh-ed25519-cert-v01@openssh.com",
        Algorithm::SkEcdsaSha2NistP256 => "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        Algorithm::Dsa => {
            return Err(Error::Key(
                "subject key type ssh-dss (DSA) cannot be certified: DSA is insecure and \
                 OpenSSH 10 removed it; use an Ed25519 or ECDSA key"
                    .into(),
            ))
        }
        other => {
            return Err(Error::Key(format!(
                "subject key type {} cannot be certified",
                other.as_str()
            )))
        }
    })
}

/// Key size in bits and the curve name where there is one (`ed25519`,
/// `nistp256`, ...); RSA sizes come from the modulus.
pub fn key_size(key: &KeyData) -> (usize, Option<&'static str>) {
    match key {
        KeyData::Ed25519(_) | KeyData::SkEd25519(_) => (256, Some("ed25519")),
        KeyData::Ecdsa(k) => match k.curve() {
            EcdsaCurve::NistP256 => (256, Some("nistp256")),
            EcdsaCurve::NistP384 => (384, Some("nistp384")),
            EcdsaCurve::NistP521 => (521, Some("nistp521")),
        },
        KeyData::SkEcdsaSha2NistP256(_) => (256, Some("nistp256")),
        KeyData::Rsa(k) => {
            let n = k.n.as_positive_bytes().unwrap_or_default();
            let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
            (bits, None)
        }
        _ => (0, None),
    }
}

/// Appends `key`'s wire fields without its algorithm name (the subject key
/// inside a certificate), with no intermediate buffer.
pub(super) fn put_key_fields(out: &mut Vec<u8>, key: &KeyData) -> Result<()> {
    use ssh_encoding::Encode;
    let at = out.len();
    key.encode(out)
        .map_err(|e| Error::Key(format!("cannot encode {} key: {e}", key.algorithm())))?;
    // The blob starts with the algorithm name as an SSH string: drop it.
    let name_len = out
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .ok_or_else(|| Error::Key("empty key encoding".into()))?;
    out.drain(at..at + 4 + name_len);
    Ok(())
}

pub(crate) fn decode_key(blob: &[u8], what: &str) -> Result<KeyData> {
    use ssh_encoding::Decode;
    let mut r = blob;
    let key = KeyData::decode(&mut r).map_err(|e| Error::decode(format_args!("{what}: {e}")))?;
    if !r.is_empty() {
        return Err(Error::decode(format_args!(
            "{what}: {} trailing bytes",
            r.len()
        )));
    }
    // Re-encoding must reproduce the blob (canonical form).
    if encode_key_blob(&key)? != blob {
        return Err(Error::decode(format_args!(
            "{what}: not in canonical encoding"
        )));
    }
    Ok(key)
}
