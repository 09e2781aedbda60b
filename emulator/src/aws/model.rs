//! AWS KMS's vocabulary and request fields: errors, key specs, usages and
//! algorithms, key resolution by id, ARN or alias, key metadata.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::aws::store::{AwsKey, AwsKeyState, AWS_ACCOUNT};
use crate::crypto::{Hash, KeyKind, Scheme};
use crate::state::{read, State};
use crate::util::{str_field, unb64};

/// Largest RAW message Sign and Verify accept.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// An error answer: HTTP status, `__type` and message.
#[derive(Debug)]
pub struct AwsError {
    pub(crate) status: StatusCode,
    pub(crate) typ: &'static str,
    pub(crate) msg: String,
}

pub(crate) fn e400(typ: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError {
        status: StatusCode::BAD_REQUEST,
        typ,
        msg: msg.into(),
    }
}

pub(crate) fn validation(msg: impl Into<String>) -> AwsError {
    e400("ValidationException", msg)
}

/// KeySpec -> (key kind, default usage).
pub fn spec_kind(spec: &str) -> Option<(KeyKind, &'static str)> {
    Some(match spec {
        "ECC_NIST_P256" => (KeyKind::P256, "SIGN_VERIFY"),
        "ECC_NIST_P384" => (KeyKind::P384, "SIGN_VERIFY"),
        "ECC_NIST_P521" => (KeyKind::P521, "SIGN_VERIFY"),
        "ECC_NIST_EDWARDS25519" => (KeyKind::Ed25519, "SIGN_VERIFY"),
        "ECC_SECG_P256K1" => (KeyKind::Secp256k1, "SIGN_VERIFY"),
        "RSA_2048" => (KeyKind::Rsa(2048), "SIGN_VERIFY"),
        "RSA_3072" => (KeyKind::Rsa(3072), "SIGN_VERIFY"),
        "RSA_4096" => (KeyKind::Rsa(4096), "SIGN_VERIFY"),
        "SYMMETRIC_DEFAULT" => (KeyKind::Aes256, "ENCRYPT_DECRYPT"),
        "HMAC_224" => (KeyKind::Hmac(224), "GENERATE_VERIFY_MAC"),
        "HMAC_256" => (KeyKind::Hmac(256), "GENERATE_VERIFY_MAC"),
        "HMAC_384" => (KeyKind::Hmac(384), "GENERATE_VERIFY_MAC"),
        "HMAC_512" => (KeyKind::Hmac(512), "GENERATE_VERIFY_MAC"),
        _ => return None,
    })
}

/// Every KeySpec AWS names, for its enum validation message.
pub(crate) const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ECC_NIST_EDWARDS25519",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
];

/// Every KeyUsage AWS names.
pub(crate) const KEY_USAGES: &[&str] = &[
    "SIGN_VERIFY",
    "ENCRYPT_DECRYPT",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
];

/// AWS's message for a value outside an enum.
pub(crate) fn not_in_enum(value: &str, member: &str, allowed: &[&str]) -> String {
    format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    )
}

/// The MAC algorithm of an HMAC key spec.
pub(crate) fn mac_algorithm(spec: &str) -> Option<&'static str> {
    Some(match spec {
        "HMAC_224" => "HMAC_SHA_224",
        "HMAC_256" => "HMAC_SHA_256",
        "HMAC_384" => "HMAC_SHA_384",
        "HMAC_512" => "HMAC_SHA_512",
        _ => return None,
    })
}

/// Checks that `usage` is allowed for `spec`.
pub fn check_usage(spec: &str, usage: &str) -> Result<(), String> {
    let ok = match usage {
        "SIGN_VERIFY" => spec != "SYMMETRIC_DEFAULT" && !spec.starts_with("HMAC_"),
        "ENCRYPT_DECRYPT" => spec == "SYMMETRIC_DEFAULT" || spec.starts_with("RSA_"),
        "GENERATE_VERIFY_MAC" => spec.starts_with("HMAC_"),
        "KEY_AGREEMENT" => matches!(spec, "ECC_NIST_P256" | "ECC_NIST_P384" | "ECC_NIST_P521"),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec}"
        ))
    }
}

pub(crate) fn signing_algorithms(spec: &str) -> &'static [&'static str] {
    match spec {
        "ECC_NIST_P256" => &["ECDSA_SHA_256"],
        "ECC_NIST_P384" => &["ECDSA_SHA_384"],
        "ECC_NIST_P521" => &["ECDSA_SHA_512"],
        "ECC_SECG_P256K1" => &["ECDSA_SHA_256"],
        "ECC_NIST_EDWARDS25519" => &["ED25519_SHA_512", "ED25519_PH_SHA_512"],
        s if s.starts_with("RSA_") => &[
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
        ],
        _ => &[],
    }
}

pub(crate) fn encryption_algorithms(spec: &str) -> &'static [&'static str] {
    if spec == "SYMMETRIC_DEFAULT" {
        &["SYMMETRIC_DEFAULT"]
    } else {
        &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    }
}

pub(crate) fn scheme(alg: &str) -> Option<Scheme> {
    Some(match alg {
        "ECDSA_SHA_256" => Scheme::Ecdsa(Hash::Sha256),
        "ECDSA_SHA_384" => Scheme::Ecdsa(Hash::Sha384),
        "ECDSA_SHA_512" => Scheme::Ecdsa(Hash::Sha512),
        "RSASSA_PKCS1_V1_5_SHA_256" => Scheme::Pkcs1(Hash::Sha256),
        "RSASSA_PKCS1_V1_5_SHA_384" => Scheme::Pkcs1(Hash::Sha384),
        "RSASSA_PKCS1_V1_5_SHA_512" => Scheme::Pkcs1(Hash::Sha512),
        "RSASSA_PSS_SHA_256" => Scheme::Pss(Hash::Sha256),
        "RSASSA_PSS_SHA_384" => Scheme::Pss(Hash::Sha384),
        "RSASSA_PSS_SHA_512" => Scheme::Pss(Hash::Sha512),
        "ED25519_SHA_512" => Scheme::Ed25519,
        "ED25519_PH_SHA_512" => Scheme::Ed25519ph,
        _ => return None,
    })
}

pub(crate) fn metadata(k: &AwsKey) -> Value {
    let mut m = json!({
        "AWSAccountId": AWS_ACCOUNT,
        "KeyId": k.id,
        "Arn": k.arn(),
        "CreationDate": k.created,
        "Enabled": k.state == AwsKeyState::Enabled,
        "Description": k.description,
        "KeyUsage": k.usage,
        "KeyState": format!("{:?}", k.state),
        "Origin": k.origin,
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": k.spec,
        "KeySpec": k.spec,
        "MultiRegion": k.multi_region,
    });
    match k.usage.as_str() {
        "SIGN_VERIFY" => m["SigningAlgorithms"] = json!(signing_algorithms(&k.spec)),
        "GENERATE_VERIFY_MAC" => {
            m["MacAlgorithms"] = json!(mac_algorithm(&k.spec).into_iter().collect::<Vec<_>>())
        }
        "KEY_AGREEMENT" => m["KeyAgreementAlgorithms"] = json!(["ECDH"]),
        _ => m["EncryptionAlgorithms"] = json!(encryption_algorithms(&k.spec)),
    }
    if k.origin == "EXTERNAL" {
        m["ExpirationModel"] = json!(if k.valid_to.is_some() {
            "KEY_MATERIAL_EXPIRES"
        } else {
            "KEY_MATERIAL_DOES_NOT_EXPIRE"
        });
        if let Some(v) = k.valid_to {
            m["ValidTo"] = json!(v);
        }
    }
    if let Some(d) = k.deletion_date {
        m["DeletionDate"] = json!(d);
    }
    m
}

thread_local! {
    /// The Region of the request being handled (its SigV4 scope): a
    /// multi-Region key's id names the copy in that Region.
    static REGION: std::cell::RefCell<String> = std::cell::RefCell::new("us-east-1".into());
}

/// Sets the Region of the request this thread handles.
pub(crate) fn set_region(region: &str) {
    REGION.with(|r| region.clone_into(&mut r.borrow_mut()));
}

/// The Region of the request this thread handles.
pub(crate) fn region() -> String {
    REGION.with(|r| r.borrow().clone())
}

/// The key with `id` as seen from `region`: the replica there, else the
/// key itself.
fn lookup<'a>(
    store: &'a crate::aws::store::AwsStore,
    id: &str,
    region: &str,
) -> Option<&'a AwsKey> {
    store
        .keys
        .get(&format!("{id}/{region}"))
        .or_else(|| store.keys.get(id))
}

/// Finds a key by id, key ARN, `alias/NAME` or alias ARN.
pub(crate) fn resolve(state: &State, key_id: &str) -> Result<AwsKey, AwsError> {
    resolve_with(state, key_id, AwsKey::clone)
}

/// Finds a key as [`resolve`] does and answers what `f` reads of it,
/// without copying the key.
pub(crate) fn resolve_with<T>(
    state: &State,
    key_id: &str,
    f: impl FnOnce(&AwsKey) -> T,
) -> Result<T, AwsError> {
    let store = read(&state.aws);
    let not_found = || {
        e400(
            "NotFoundException",
            format!("Key '{key_id}' does not exist"),
        )
    };
    let alias = if let Some(a) = key_id.strip_prefix("alias/") {
        Some(format!("alias/{a}"))
    } else if key_id.starts_with("arn:") {
        let parts: Vec<&str> = key_id.splitn(6, ':').collect();
        if parts.len() != 6 || parts[2] != "kms" {
            return Err(not_found());
        }
        match parts[5].split_once('/') {
            Some(("alias", name)) => Some(format!("alias/{name}")),
            Some(("key", id)) => {
                let k = lookup(&store, id, parts[3]).ok_or_else(not_found)?;
                if k.arn() != key_id {
                    return Err(not_found());
                }
                return Ok(f(k));
            }
            _ => return Err(not_found()),
        }
    } else {
        None
    };
    let id = match alias {
        Some(a) => store.aliases.get(&a).cloned().ok_or_else(|| {
            e400(
                "NotFoundException",
                format!("Alias arn:aws:kms:us-east-1:{AWS_ACCOUNT}:{a} is not found."),
            )
        })?,
        None => key_id.to_string(),
    };
    lookup(&store, &id, &region()).map(f).ok_or_else(not_found)
}

pub(crate) fn usable(k: &AwsKey) -> Result<(), AwsError> {
    match k.state {
        AwsKeyState::Enabled => Ok(()),
        AwsKeyState::Disabled => Err(e400(
            "DisabledException",
            format!("{} is disabled.", k.arn()),
        )),
        AwsKeyState::PendingDeletion => Err(e400(
            "KMSInvalidStateException",
            format!("{} is pending deletion.", k.arn()),
        )),
        AwsKeyState::PendingImport => Err(e400(
            "KMSInvalidStateException",
            format!("{} is pending import.", k.arn()),
        )),
    }
}

pub(crate) fn need_usage(k: &AwsKey, usage: &str, op: &str) -> Result<(), AwsError> {
    if k.usage == usage {
        Ok(())
    } else {
        Err(e400(
            "InvalidKeyUsageException",
            format!(
                "{} key usage is {} which is not valid for {op}.",
                k.arn(),
                k.usage
            ),
        ))
    }
}

pub(crate) type Body = Map<String, Value>;

pub(crate) fn field<'a>(b: &'a Body, name: &str) -> Result<Option<&'a str>, AwsError> {
    str_field(b, name).map_err(|e| e400("SerializationException", e))
}

pub(crate) fn required<'a>(b: &'a Body, name: &str) -> Result<&'a str, AwsError> {
    field(b, name)?.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))
    })
}

pub(crate) fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

pub(crate) fn blob(b: &Body, name: &str) -> Result<Vec<u8>, AwsError> {
    unb64(name, required(b, name)?).map_err(|e| e400("SerializationException", e))
}

/// Runs `f` on the stored key in `slot` (see [`AwsKey::slot`]) and writes
/// the state file when it succeeds.
pub(crate) fn update_key<T>(
    state: &State,
    slot: &str,
    f: impl FnOnce(&mut AwsKey) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    let mut store = crate::state::write(&state.aws);
    let k = store
        .keys
        .get_mut(slot)
        .ok_or_else(|| e400("NotFoundException", format!("Key '{slot}' does not exist")))?;
    let out = f(k)?;
    drop(store);
    state.persist();
    Ok(out)
}

pub(crate) fn key_arg(state: &State, b: &Body) -> Result<AwsKey, AwsError> {
    resolve(state, required(b, "KeyId")?)
}
