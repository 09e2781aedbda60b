//! Imported key material (`Origin` `EXTERNAL`): GetParametersForImport,
//! ImportKeyMaterial (RSA-OAEP, or RSA-OAEP of an AES key that wraps the
//! material with AES-KWP), DeleteImportedKeyMaterial, and material that
//! expires on the emulated clock.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::aws::model::*;
use crate::aws::store::{AwsKey, AwsKeyState, ImportParams};
use crate::crypto::{self, Hash, KeyKind, Material};
use crate::state::State;
use crate::util::b64;

/// How long import parameters stay valid.
const PARAMS_LIFETIME: u64 = 86_400;

fn external_only(k: &AwsKey, op: &str) -> Result<(), AwsError> {
    if k.origin != "EXTERNAL" {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} has origin {}: {op} is for keys with origin EXTERNAL.",
                k.arn(),
                k.origin
            ),
        ));
    }
    if k.state == AwsKeyState::PendingDeletion {
        return Err(e400(
            "KMSInvalidStateException",
            format!("{} is pending deletion.", k.arn()),
        ));
    }
    Ok(())
}

/// GetParametersForImport.
pub(crate) fn parameters(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    external_only(&k, "GetParametersForImport")?;
    let alg = required(b, "WrappingAlgorithm")?;
    if !matches!(
        alg,
        "RSAES_OAEP_SHA_1"
            | "RSAES_OAEP_SHA_256"
            | "RSA_AES_KEY_WRAP_SHA_1"
            | "RSA_AES_KEY_WRAP_SHA_256"
    ) {
        return Err(validation(not_in_enum(
            alg,
            "wrappingAlgorithm",
            &[
                "RSAES_PKCS1_V1_5",
                "RSAES_OAEP_SHA_1",
                "RSAES_OAEP_SHA_256",
                "RSA_AES_KEY_WRAP_SHA_1",
                "RSA_AES_KEY_WRAP_SHA_256",
                "SM2PKE",
            ],
        )));
    }
    let bits = match required(b, "WrappingKeySpec")? {
        "RSA_2048" => 2048,
        "RSA_3072" => 3072,
        "RSA_4096" => 4096,
        other => {
            return Err(validation(not_in_enum(
                other,
                "wrappingKeySpec",
                &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"],
            )))
        }
    };
    let wrapping = Material::generate(KeyKind::Rsa(bits))
        .map_err(|e| e400("KMSInternalException", e.to_string()))?;
    let public = wrapping
        .public_der()
        .map_err(|e| e400("KMSInternalException", e.to_string()))?;
    let params = ImportParams {
        token: b64(&crypto::random_bytes(64)),
        wrapping: Arc::new(wrapping),
        algorithm: alg.to_string(),
        valid_to: state.now() + PARAMS_LIFETIME,
    };
    let out = json!({
        "KeyId": k.arn(),
        "ImportToken": params.token,
        "PublicKey": b64(&public),
        "ParametersValidTo": params.valid_to,
    });
    update_key(state, &k.slot(), |key| {
        key.import = Some(params);
        Ok(())
    })?;
    Ok(out)
}

/// The key material inside `wrapped`.
fn unwrap(p: &ImportParams, wrapped: &[u8]) -> Result<Vec<u8>, AwsError> {
    let bad = || {
        e400(
            "InvalidCiphertextException",
            "The encrypted key material could not be decrypted with the import parameters' wrapping key.",
        )
    };
    let hash = if p.algorithm.ends_with("SHA_1") {
        Hash::Sha1
    } else {
        Hash::Sha256
    };
    if p.algorithm.starts_with("RSAES_OAEP") {
        return p
            .wrapping
            .rsa_decrypt(Some(hash), wrapped)
            .map_err(|_| bad());
    }
    let n = match p.wrapping.kind() {
        KeyKind::Rsa(bits) => bits / 8,
        _ => return Err(bad()),
    };
    if wrapped.len() <= n {
        return Err(bad());
    }
    let (head, tail) = wrapped.split_at(n);
    let aes = p
        .wrapping
        .rsa_decrypt(Some(hash), head)
        .map_err(|_| bad())?;
    let aes: [u8; 32] = aes.try_into().map_err(|_| bad())?;
    aes_kw::KekAes256::from(aes)
        .unwrap_with_padding_vec(tail)
        .map_err(|_| bad())
}

/// The key material for a key of `kind`: 32 raw bytes (symmetric), the
/// HMAC key, or a PKCS#8 private key.
fn material_for(kind: KeyKind, raw: &[u8]) -> Result<Material, AwsError> {
    let wrong = |why: String| {
        e400(
            "IncorrectKeyMaterialException",
            format!("The key material does not fit the key: {why}"),
        )
    };
    let m = match kind {
        KeyKind::Aes256 => Material::Aes256(
            raw.try_into()
                .map_err(|_| wrong(format!("a symmetric key is 32 bytes, not {}", raw.len())))?,
        ),
        KeyKind::Hmac(bits) => {
            if raw.len() != bits / 8 {
                return Err(wrong(format!(
                    "an HMAC_{bits} key is {} bytes, not {}",
                    bits / 8,
                    raw.len()
                )));
            }
            Material::Hmac(raw.to_vec())
        }
        _ => Material::from_pkcs8_der(raw).map_err(|e| wrong(e.to_string()))?,
    };
    if m.kind() != kind {
        return Err(wrong(format!(
            "it is {:?}, the key spec needs {kind:?}",
            m.kind()
        )));
    }
    Ok(m)
}

/// ImportKeyMaterial.
pub(crate) fn import(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    external_only(&k, "ImportKeyMaterial")?;
    let token = required(b, "ImportToken")?;
    let wrapped = blob(b, "EncryptedKeyMaterial")?;
    let model = field(b, "ExpirationModel")?.unwrap_or("KEY_MATERIAL_EXPIRES");
    let valid_to = b.get("ValidTo").and_then(Value::as_f64).map(|v| v as u64);
    let valid_to = match (model, valid_to) {
        ("KEY_MATERIAL_EXPIRES", Some(v)) => Some(v),
        ("KEY_MATERIAL_EXPIRES", None) => {
            return Err(validation(
                "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.",
            ))
        }
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", None) => None,
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(_)) => {
            return Err(validation(
                "ValidTo must not be set when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.",
            ))
        }
        (other, _) => {
            return Err(validation(not_in_enum(
                other,
                "expirationModel",
                &["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
            )))
        }
    };
    let now = state.now();
    if valid_to.is_some_and(|v| v <= now) {
        return Err(validation("ValidTo must be in the future."));
    }
    let params = k
        .import
        .clone()
        .filter(|p| p.token == token)
        .ok_or_else(|| {
            e400(
                "InvalidImportTokenException",
                "The import token is invalid for this key.",
            )
        })?;
    if params.valid_to <= now {
        return Err(e400(
            "ExpiredImportTokenException",
            "The import token has expired.",
        ));
    }
    let raw = unwrap(&params, &wrapped)?;
    let (kind, _) =
        spec_kind(&k.spec).ok_or_else(|| e400("KMSInternalException", "unknown spec"))?;
    let material = material_for(kind, &raw)?;
    if k.ever_imported {
        // Reimport: the same material only.
        if k.material.to_pem().ok() != material.to_pem().ok() {
            return Err(e400(
                "IncorrectKeyMaterialException",
                "The key material is not the material imported into this key before.",
            ));
        }
    }
    update_key(state, &k.slot(), |key| {
        key.material = Arc::new(material);
        key.imported = true;
        key.ever_imported = true;
        key.valid_to = valid_to;
        key.import = None;
        if key.state == AwsKeyState::PendingImport {
            key.state = AwsKeyState::Enabled;
        }
        Ok(json!({}))
    })
}

/// DeleteImportedKeyMaterial.
pub(crate) fn delete(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    external_only(&k, "DeleteImportedKeyMaterial")?;
    update_key(state, &k.slot(), |key| {
        forget_material(key);
        Ok(json!({}))
    })
}

/// Drops a key's imported material: the key waits for an import.
pub(crate) fn forget_material(key: &mut AwsKey) {
    key.imported = false;
    key.valid_to = None;
    if key.state != AwsKeyState::PendingDeletion {
        key.state = AwsKeyState::PendingImport;
    }
}

/// Whether imported key material passed its ValidTo at `t`.
pub(crate) fn material_expired(k: &AwsKey, t: u64) -> bool {
    k.imported && k.valid_to.is_some_and(|v| v <= t)
}
