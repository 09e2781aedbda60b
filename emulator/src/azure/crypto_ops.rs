//! Key Vault's cryptographic operations: sign, verify, wrapKey, unwrapKey,
//! encrypt and decrypt, with the key's operations, `enabled` and validity
//! window checked.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::store::AzureVersion;
use super::{aerr, bad, find, AzError};
use crate::crypto::{self, EcFormat, Hash, KeyKind, Scheme};
use crate::state::State;
use crate::util::{b64url, unb64url};

fn sign_scheme(alg: &str, kind: KeyKind) -> Result<Scheme, AzError> {
    let s = match alg {
        "ES256" => Scheme::Ecdsa(Hash::Sha256),
        "ES384" => Scheme::Ecdsa(Hash::Sha384),
        "ES512" => Scheme::Ecdsa(Hash::Sha512),
        "RS256" => Scheme::Pkcs1(Hash::Sha256),
        "RS384" => Scheme::Pkcs1(Hash::Sha384),
        "RS512" => Scheme::Pkcs1(Hash::Sha512),
        "PS256" => Scheme::Pss(Hash::Sha256),
        "PS384" => Scheme::Pss(Hash::Sha384),
        "PS512" => Scheme::Pss(Hash::Sha512),
        other => return Err(bad(format!("Invalid algorithm {other:?}."))),
    };
    let fits = matches!(
        (s, kind),
        (Scheme::Ecdsa(Hash::Sha256), KeyKind::P256)
            | (Scheme::Ecdsa(Hash::Sha384), KeyKind::P384)
            | (Scheme::Ecdsa(Hash::Sha512), KeyKind::P521)
            | (Scheme::Pkcs1(_) | Scheme::Pss(_), KeyKind::Rsa(_))
    );

    if !fits {
        return Err(bad(format!(
            "Key and signing algorithm {alg} are not compatible."
        )));
    }
    Ok(s)
}

fn allowed(v: &AzureVersion, op: &str, now: u64) -> Result<(), AzError> {
    // Key Vault refuses to make new signatures and ciphertexts outside the
    // validity window, but still verifies, decrypts and unwraps.
    if matches!(op, "sign" | "encrypt" | "wrapKey") {
        if v.exp.is_some_and(|e| now >= e) {
            return Err(aerr(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {op} is not allowed on an expired key."),
            ));
        }
        if v.nbf.is_some_and(|n| now < n) {
            return Err(aerr(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {op} is not allowed on a key that is not yet valid (nbf)."),
            ));
        }
    }
    if !v.enabled {
        return Err(aerr(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not allowed on a disabled key."),
        ));
    }
    if !v.key_ops.iter().any(|o| o == op) {
        return Err(aerr(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not permitted on this key."),
        ));
    }
    Ok(())
}

fn value_field(b: &Map<String, Value>, name: &str) -> Result<Vec<u8>, AzError> {
    match b.get(name) {
        Some(Value::String(s)) => unb64url(name, s).map_err(bad),
        None | Some(Value::Null) => Err(bad(format!("Property {name} is required."))),
        Some(_) => Err(bad(format!("Property {name} must be a base64url string."))),
    }
}

fn alg_field(b: &Map<String, Value>) -> Result<&str, AzError> {
    b.get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Property alg is required."))
}

pub(super) fn key_op(
    state: &State,
    base: &str,
    name: &str,
    version: &str,
    op: &'static str,
    b: &Map<String, Value>,
    corrupt: bool,
) -> Result<Value, AzError> {
    let (k, v) = find(state, name, version)?;
    let kid = format!("{base}/keys/{}/{}", k.name, v.version);
    let alg = alg_field(b)?;
    match op {
        "sign" | "verify" => {
            allowed(&v, op, state.now())?;
            let scheme = sign_scheme(alg, v.material.kind())?;
            let digest = value_field(b, if op == "sign" { "value" } else { "digest" })?;
            let h = scheme.hash().ok_or_else(|| bad("no hash"))?;
            if digest.len() != h.output_len() {
                return Err(bad(format!(
                    "Invalid digest length {} for algorithm {alg} (expected {}).",
                    digest.len(),
                    h.output_len()
                )));
            }
            if op == "sign" {
                let mut sig = v
                    .material
                    .sign_digest(scheme, &digest, EcFormat::Raw)
                    .map_err(|e| {
                        aerr(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "InternalServerError",
                            e.to_string(),
                        )
                    })?;
                if corrupt {
                    crypto::corrupt(&mut sig);
                }
                Ok(json!({"kid": kid, "value": b64url(&sig)}))
            } else {
                let sig = value_field(b, "value")?;
                Ok(json!({"value": v.material.verify(scheme, &digest, &sig, EcFormat::Raw)}))
            }
        }
        _ => {
            let ops_name = match op {
                "wrapKey" => "wrapKey",
                "unwrapKey" => "unwrapKey",
                "encrypt" => "encrypt",
                _ => "decrypt",
            };
            allowed(&v, ops_name, state.now())?;
            if !matches!(v.material.kind(), KeyKind::Rsa(_)) {
                return Err(bad(format!(
                    "Key and encryption algorithm {alg} are not compatible."
                )));
            }
            let hash = match alg {
                "RSA-OAEP" => Some(Hash::Sha1),
                "RSA-OAEP-256" => Some(Hash::Sha256),
                "RSA1_5" => None,
                other => return Err(bad(format!("Invalid algorithm {other:?}."))),
            };
            let input = value_field(b, "value")?;
            let out = if matches!(op, "wrapKey" | "encrypt") {
                v.material.rsa_encrypt(hash, &input)
            } else {
                v.material.rsa_decrypt(hash, &input)
            }
            .map_err(|e| bad(e.to_string()))?;
            Ok(json!({"kid": kid, "value": b64url(&out)}))
        }
    }
}
