//! Cloud KMS's vocabulary: purposes, states, protection levels and
//! algorithms (the names the external key manager protocol shares), and how
//! enums are written (names, or numbers with `$alt=json;enum-encoding=int`).

use std::sync::Arc;

use crate::crypto;
use crate::gcp::store::{GcpKey, GcpVersion};
use crate::util::rfc3339;
use serde_json::{json, Value};

use crate::crypto::{Hash, KeyKind, Scheme};
use crate::google::{invalid, GcpError};

/// CryptoKeyPurpose ENCRYPT_DECRYPT.
pub const ENCRYPT_DECRYPT: i32 = 1;
/// CryptoKeyPurpose ASYMMETRIC_SIGN.
pub const ASYMMETRIC_SIGN: i32 = 5;
/// CryptoKeyVersionState ENABLED.
pub const ENABLED: i32 = 1;
/// CryptoKeyVersionState DISABLED.
pub const DISABLED: i32 = 2;
/// CryptoKeyVersionState DESTROYED.
pub const DESTROYED: i32 = 3;
/// CryptoKeyVersionState DESTROY_SCHEDULED.
pub const DESTROY_SCHEDULED: i32 = 4;
/// ProtectionLevel SOFTWARE.
pub const SOFTWARE: i32 = 1;
/// ProtectionLevel EXTERNAL_VPC (keys held by an external key manager,
/// reached through an EkmConnection).
pub const EXTERNAL_VPC: i32 = 4;

pub(crate) struct Alg {
    pub(crate) name: &'static str,
    pub(crate) num: i32,
    pub(crate) purpose: i32,
    pub(crate) kind: KeyKind,
    pub(crate) scheme: Option<Scheme>,
}

pub(crate) const fn alg(
    name: &'static str,
    num: i32,
    purpose: i32,
    kind: KeyKind,
    scheme: Option<Scheme>,
) -> Alg {
    Alg {
        name,
        num,
        purpose,
        kind,
        scheme,
    }
}

pub(crate) const ALGS: &[Alg] = &[
    alg(
        "GOOGLE_SYMMETRIC_ENCRYPTION",
        1,
        ENCRYPT_DECRYPT,
        KeyKind::Aes256,
        None,
    ),
    alg(
        "RSA_SIGN_PSS_2048_SHA256",
        2,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(2048),
        Some(Scheme::Pss(Hash::Sha256)),
    ),
    alg(
        "RSA_SIGN_PSS_3072_SHA256",
        3,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(3072),
        Some(Scheme::Pss(Hash::Sha256)),
    ),
    alg(
        "RSA_SIGN_PSS_4096_SHA256",
        4,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(4096),
        Some(Scheme::Pss(Hash::Sha256)),
    ),
    alg(
        "RSA_SIGN_PKCS1_2048_SHA256",
        5,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(2048),
        Some(Scheme::Pkcs1(Hash::Sha256)),
    ),
    alg(
        "RSA_SIGN_PKCS1_3072_SHA256",
        6,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(3072),
        Some(Scheme::Pkcs1(Hash::Sha256)),
    ),
    alg(
        "RSA_SIGN_PKCS1_4096_SHA256",
        7,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(4096),
        Some(Scheme::Pkcs1(Hash::Sha256)),
    ),
    alg(
        "EC_SIGN_P256_SHA256",
        12,
        ASYMMETRIC_SIGN,
        KeyKind::P256,
        Some(Scheme::Ecdsa(Hash::Sha256)),
    ),
    alg(
        "EC_SIGN_P384_SHA384",
        13,
        ASYMMETRIC_SIGN,
        KeyKind::P384,
        Some(Scheme::Ecdsa(Hash::Sha384)),
    ),
    alg(
        "RSA_SIGN_PSS_4096_SHA512",
        15,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(4096),
        Some(Scheme::Pss(Hash::Sha512)),
    ),
    alg(
        "RSA_SIGN_PKCS1_4096_SHA512",
        16,
        ASYMMETRIC_SIGN,
        KeyKind::Rsa(4096),
        Some(Scheme::Pkcs1(Hash::Sha512)),
    ),
    alg(
        "EC_SIGN_ED25519",
        40,
        ASYMMETRIC_SIGN,
        KeyKind::Ed25519,
        Some(Scheme::Ed25519),
    ),
];

pub(crate) const PURPOSES: &[(&str, i32)] = &[
    ("ENCRYPT_DECRYPT", 1),
    ("ASYMMETRIC_SIGN", 5),
    ("ASYMMETRIC_DECRYPT", 6),
    ("RAW_ENCRYPT_DECRYPT", 7),
    ("MAC", 9),
];
pub(crate) const STATES: &[(&str, i32)] = &[
    ("ENABLED", 1),
    ("DISABLED", 2),
    ("DESTROYED", 3),
    ("DESTROY_SCHEDULED", 4),
];
pub(crate) const PROTECTION: &[(&str, i32)] = &[
    ("SOFTWARE", 1),
    ("HSM", 2),
    ("EXTERNAL", 3),
    ("EXTERNAL_VPC", 4),
];

/// Key kind and signature scheme of a Cloud KMS signing algorithm name.
pub fn signing_algorithm(name: &str) -> Option<(KeyKind, Scheme)> {
    ALGS.iter()
        .find(|a| a.name == name && a.purpose == ASYMMETRIC_SIGN)
        .and_then(|a| Some((a.kind, a.scheme?)))
}

pub(crate) fn name_of(table: &[(&'static str, i32)], n: i32) -> Option<&'static str> {
    table.iter().find(|(_, v)| *v == n).map(|(s, _)| *s)
}

pub(crate) fn alg_by_num(n: i32) -> Option<&'static Alg> {
    ALGS.iter().find(|a| a.num == n)
}

/// Name of a CryptoKeyVersionState.
pub fn state_name(n: i32) -> Option<&'static str> {
    name_of(STATES, n)
}

/// Name of a CryptoKeyPurpose.
pub fn purpose_name(n: i32) -> Option<&'static str> {
    name_of(PURPOSES, n)
}

/// Name of an algorithm.
pub fn algorithm_name(n: i32) -> Option<&'static str> {
    alg_by_num(n).map(|a| a.name)
}

/// Name of a ProtectionLevel.
pub fn protection_name(n: i32) -> Option<&'static str> {
    name_of(PROTECTION, n)
}

/// How enums are written in the answer.
#[derive(Clone, Copy)]
pub(crate) struct Enc {
    pub(crate) ints: bool,
}

impl Enc {
    pub(crate) fn e(&self, table: &[(&'static str, i32)], n: i32) -> Value {
        if self.ints {
            json!(n)
        } else {
            json!(name_of(table, n).unwrap_or("UNSPECIFIED"))
        }
    }
    pub(crate) fn alg(&self, n: i32) -> Value {
        if self.ints {
            json!(n)
        } else {
            json!(algorithm_name(n).unwrap_or("CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED"))
        }
    }
}

pub(crate) fn parse_enum(v: &Value, table: &[(&str, i32)], field: &str) -> Result<i32, GcpError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| invalid(format!("{field}: bad enum value {n}"))),
        Value::String(s) => table
            .iter()
            .find(|(name, _)| name == s)
            .map(|(_, n)| *n)
            .ok_or_else(|| invalid(format!("{field}: unknown value {s:?}"))),
        _ => Err(invalid(format!("{field} must be an enum name or number"))),
    }
}

pub(crate) fn parse_alg(v: &Value) -> Result<i32, GcpError> {
    let n = match v {
        Value::String(s) => ALGS
            .iter()
            .find(|a| a.name == s)
            .map(|a| a.num)
            .ok_or_else(|| invalid(format!("versionTemplate.algorithm {s:?} is not supported")))?,
        other => parse_enum(other, &[], "versionTemplate.algorithm")?,
    };
    alg_by_num(n)
        .map(|a| a.num)
        .ok_or_else(|| invalid(format!("versionTemplate.algorithm {n} is not supported")))
}

pub(crate) fn name_to(table: &[(&str, i32)], name: &str) -> Option<i32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub(crate) fn version_json(key: &GcpKey, v: &GcpVersion, enc: Enc) -> Value {
    let mut out = json!({
        "name": format!("{}/cryptoKeyVersions/{}", key.name, v.number),
        "state": enc.e(STATES, v.state),
        "protectionLevel": enc.e(PROTECTION, key.protection),
        "algorithm": enc.alg(key.algorithm),
        "createTime": rfc3339(v.created),
        "generateTime": rfc3339(v.created),
    });
    if let Some(path) = &v.ekm_key_path {
        out["externalProtectionLevelOptions"] = json!({"ekmConnectionKeyPath": path});
    }
    if let Some(t) = v.destroy_time {
        out["destroyTime"] = json!(rfc3339(t));
    }
    if let Some(t) = v.destroy_event_time {
        out["destroyEventTime"] = json!(rfc3339(t));
    }
    if let Some((job, t)) = &v.imported {
        out["importJob"] = json!(job);
        out["importTime"] = json!(rfc3339(*t));
    }
    out
}

pub(crate) fn key_json(key: &GcpKey, enc: Enc) -> Value {
    let mut out = json!({
        "name": key.name,
        "purpose": enc.e(PURPOSES, key.purpose),
        "createTime": rfc3339(key.created),
        "versionTemplate": {"protectionLevel": enc.e(PROTECTION, key.protection), "algorithm": enc.alg(key.algorithm)},
    });
    super::lifecycle::key_fields(key, &mut out);
    if let Some(b) = &key.backend {
        out["cryptoKeyBackend"] = json!(b);
    }
    if let Some(p) = key.primary {
        if let Some(v) = key.versions.iter().find(|v| v.number == p) {
            out["primary"] = version_json(key, v, enc);
        }
    }
    out
}

pub(crate) fn new_version(
    key: &GcpKey,
    material: Option<Arc<crypto::Material>>,
    st: i32,
    created: u64,
) -> Result<GcpVersion, String> {
    let alg = alg_by_num(key.algorithm).ok_or("unknown algorithm")?;
    let material = match material {
        Some(m) => m,
        None => Arc::new(crypto::Material::generate(alg.kind).map_err(|e| e.to_string())?),
    };
    if material.kind() != alg.kind {
        return Err(format!(
            "the private key is {:?}, {} needs {:?}",
            material.kind(),
            alg.name,
            alg.kind
        ));
    }
    Ok(GcpVersion {
        number: key.versions.len() as u32 + 1,
        state: st,
        created,
        material: Some(material),
        ekm_key_path: None,
        ..Default::default()
    })
}
