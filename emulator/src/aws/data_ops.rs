//! GenerateRandom, GenerateDataKeyWithoutPlaintext, GenerateDataKeyPair
//! (and WithoutPlaintext) and ReEncrypt.

use serde_json::{json, Value};

use crate::aws::crypto_ops::{decrypt, encrypt_with, generate_data_key};
use crate::aws::model::*;
use crate::crypto::{self, KeyKind, Material};
use crate::state::State;
use crate::util::b64;

/// GenerateRandom.
pub(crate) fn generate_random(b: &Body) -> Result<Value, AwsError> {
    let n = match b.get("NumberOfBytes") {
        None | Some(Value::Null) => {
            return Err(validation("NumberOfBytes is required: 1 to 1024"))
        }
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1024) => n as usize,
            _ => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{v}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
                )))
            }
        },
    };
    if field(b, "CustomKeyStoreId")?.is_some() {
        return Err(e400(
            "CustomKeyStoreNotFoundException",
            "Custom key stores are not emulated.",
        ));
    }
    Ok(json!({"Plaintext": b64(&crypto::random_bytes(n))}))
}

/// GenerateDataKeyWithoutPlaintext.
pub(crate) fn data_key_without_plaintext(state: &State, b: &Body) -> Result<Value, AwsError> {
    let mut out = generate_data_key(state, b)?;
    if let Some(o) = out.as_object_mut() {
        o.remove("Plaintext");
    }
    Ok(out)
}

fn pair_kind(spec: &str) -> Result<KeyKind, AwsError> {
    Ok(match spec {
        "RSA_2048" => KeyKind::Rsa(2048),
        "RSA_3072" => KeyKind::Rsa(3072),
        "RSA_4096" => KeyKind::Rsa(4096),
        "ECC_NIST_P256" => KeyKind::P256,
        "ECC_NIST_P384" => KeyKind::P384,
        "ECC_NIST_P521" => KeyKind::P521,
        "ECC_SECG_P256K1" => KeyKind::Secp256k1,
        "SM2" => {
            return Err(e400(
                "UnsupportedOperationException",
                format!("KeyPairSpec {spec} is not emulated."),
            ))
        }
        other => {
            return Err(validation(not_in_enum(
                other,
                "keyPairSpec",
                &[
                    "RSA_2048",
                    "RSA_3072",
                    "RSA_4096",
                    "ECC_NIST_P256",
                    "ECC_NIST_P384",
                    "ECC_NIST_P521",
                    "ECC_SECG_P256K1",
                    "SM2",
                ],
            )))
        }
    })
}

/// GenerateDataKeyPair (with the private key in the clear too unless
/// `without_plaintext`).
pub(crate) fn data_key_pair(
    state: &State,
    b: &Body,
    without_plaintext: bool,
) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let spec = required(b, "KeyPairSpec")?;
    let kind = pair_kind(spec)?;
    if k.spec != "SYMMETRIC_DEFAULT" {
        need_usage(&k, "ENCRYPT_DECRYPT", "GenerateDataKeyPair")?;
        return Err(e400(
            "InvalidKeyUsageException",
            format!("{} is not a symmetric encryption key.", k.arn()),
        ));
    }
    let internal = |e: crypto::CryptoError| e400("KMSInternalException", e.to_string());
    let pair = Material::generate(kind).map_err(internal)?;
    let private = pair.to_pkcs8_der().map_err(internal)?;
    let public = pair.public_der().map_err(internal)?;
    // The private key is up to 2.4 KB: sealed directly, not through the
    // 4 KB Encrypt limit's check of the caller's plaintext.
    let (ct, _) = encrypt_with(&k, b, &private, 8192)?;
    let mut out = json!({
        "KeyId": k.arn(),
        "KeyPairSpec": spec,
        "PublicKey": b64(&public),
        "PrivateKeyCiphertextBlob": b64(&ct),
    });
    if !without_plaintext {
        out["PrivateKeyPlaintext"] = json!(b64(&private));
    }
    Ok(out)
}

/// ReEncrypt: decrypts under the source key (its context and algorithm)
/// and encrypts under the destination key.
pub(crate) fn re_encrypt(state: &State, b: &Body) -> Result<Value, AwsError> {
    let mut source = Body::new();
    source.insert(
        "CiphertextBlob".into(),
        b.get("CiphertextBlob").cloned().unwrap_or(Value::Null),
    );
    for (from, to) in [
        ("SourceKeyId", "KeyId"),
        ("SourceEncryptionContext", "EncryptionContext"),
        ("SourceEncryptionAlgorithm", "EncryptionAlgorithm"),
    ] {
        if let Some(v) = b.get(from) {
            source.insert(to.into(), v.clone());
        }
    }
    let opened = decrypt(state, &source)?;
    let plaintext = crate::util::unb64("Plaintext", opened["Plaintext"].as_str().unwrap_or(""))
        .map_err(|e| e400("KMSInternalException", e))?;
    let mut dest = Body::new();
    for (from, to) in [
        ("DestinationKeyId", "KeyId"),
        ("DestinationEncryptionContext", "EncryptionContext"),
        ("DestinationEncryptionAlgorithm", "EncryptionAlgorithm"),
    ] {
        if let Some(v) = b.get(from) {
            dest.insert(to.into(), v.clone());
        }
    }
    if dest.get("KeyId").is_none() {
        return Err(validation("1 validation error detected: Value null at 'destinationKeyId' failed to satisfy constraint: Member must not be null"));
    }
    let k = key_arg(state, &dest)?;
    let (ct, alg) = encrypt_with(&k, &dest, &plaintext, 4096)?;
    Ok(json!({
        "CiphertextBlob": b64(&ct),
        "SourceKeyId": opened["KeyId"],
        "KeyId": k.arn(),
        "SourceEncryptionAlgorithm": opened["EncryptionAlgorithm"],
        "DestinationEncryptionAlgorithm": alg,
    }))
}
