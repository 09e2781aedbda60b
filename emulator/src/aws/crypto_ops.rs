//! Sign, Verify, Encrypt, Decrypt and GenerateDataKey.

use serde_json::{json, Value};

use crate::aws::model::*;
use crate::aws::store::AwsKey;
use crate::crypto::{self, EcFormat, Hash, Scheme};
use crate::state::State;
use crate::util::b64;

/// Checks algorithm and message type, and returns what to sign.
pub(crate) fn signing_input(
    k: &AwsKey,
    b: &Body,
) -> Result<(Scheme, &'static str, Vec<u8>, bool), AwsError> {
    need_usage(k, "SIGN_VERIFY", "Sign")?;
    let alg = required(b, "SigningAlgorithm")?;
    let Some(&alg_static) = signing_algorithms(&k.spec).iter().find(|a| **a == alg) else {
        return Err(e400(
            "InvalidKeyUsageException",
            format!("Algorithm {alg} is incompatible with key spec {}.", k.spec),
        ));
    };
    let sch = scheme(alg).ok_or_else(|| {
        e400(
            "UnsupportedOperationException",
            format!("{alg} is not supported by this emulator"),
        )
    })?;
    let message = blob(b, "Message")?;
    let mt = field(b, "MessageType")?.unwrap_or("RAW");
    let is_digest = match mt {
        "RAW" => {
            if message.len() > MAX_RAW_MESSAGE {
                return Err(validation(format!(
                    "1 validation error detected: Value at 'message' failed to satisfy constraint: \
                     Member must have length less than or equal to {MAX_RAW_MESSAGE}"
                )));
            }
            false
        }
        "DIGEST" => {
            let Some(h) = sch.hash() else {
                return Err(validation(format!(
                    "{alg} requires MessageType RAW; DIGEST is not supported for it"
                )));
            };
            if message.len() != h.output_len() {
                return Err(validation(format!(
                    "Digest is invalid length for algorithm {alg}: {} bytes, expected {}",
                    message.len(),
                    h.output_len()
                )));
            }
            true
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'messageType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]"
            )))
        }
    };
    Ok((sch, alg_static, message, is_digest))
}

pub(crate) fn sign(state: &State, b: &Body, corrupt: bool) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    usable(&k)?;
    let (sch, alg, message, is_digest) = signing_input(&k, b)?;
    let res = if is_digest {
        k.material.sign_digest(sch, &message, EcFormat::Der)
    } else {
        k.material.sign_message(sch, &message, EcFormat::Der)
    };
    let mut sig = res.map_err(|e| e400("KMSInternalException", e.to_string()))?;
    if corrupt {
        crypto::corrupt(&mut sig);
    }
    Ok(json!({"KeyId": k.arn(), "Signature": b64(&sig), "SigningAlgorithm": alg}))
}

pub(crate) fn verify(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    usable(&k)?;
    let (sch, alg, message, is_digest) = signing_input(&k, b)?;
    let sig = blob(b, "Signature")?;
    let input = match sch.hash() {
        Some(h) if !is_digest => h.digest(&message),
        _ => message,
    };
    if !k.material.verify(sch, &input, &sig, EcFormat::Der) {
        return Err(e400(
            "KMSInvalidSignatureException",
            "The signature is not valid for the message and key.",
        ));
    }
    Ok(json!({"KeyId": k.arn(), "SignatureValid": true, "SigningAlgorithm": alg}))
}

pub(crate) fn context_aad(b: &Body) -> Result<Vec<u8>, AwsError> {
    match b.get("EncryptionContext") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => {
            let sorted: std::collections::BTreeMap<_, _> = m.iter().collect();
            serde_json::to_vec(&sorted).map_err(|e| e400("SerializationException", e.to_string()))
        }
        Some(_) => Err(e400(
            "SerializationException",
            "EncryptionContext must be a map",
        )),
    }
}

pub(crate) const BLOB_MAGIC: &[u8; 4] = b"kmse";

/// The id of the key that made a symmetric ciphertext (its header: the
/// magic, then the 36-character key id).
pub(crate) fn blob_key_id(ct: &[u8]) -> Option<String> {
    (ct.len() > 40 && &ct[..4] == BLOB_MAGIC)
        .then(|| String::from_utf8_lossy(&ct[4..40]).into_owned())
}

/// Encrypts `plaintext` (1 to `max` bytes) under `k`.
pub(crate) fn encrypt_with(
    k: &AwsKey,
    b: &Body,
    plaintext: &[u8],
    max: usize,
) -> Result<(Vec<u8>, &'static str), AwsError> {
    usable(k)?;
    need_usage(k, "ENCRYPT_DECRYPT", "Encrypt")?;
    if plaintext.is_empty() || plaintext.len() > max {
        return Err(validation(format!(
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and {max}"
        )));
    }
    let alg = field(b, "EncryptionAlgorithm")?.unwrap_or("SYMMETRIC_DEFAULT");
    if !encryption_algorithms(&k.spec).contains(&alg) {
        return Err(e400(
            "InvalidKeyUsageException",
            format!("Algorithm {alg} is incompatible with key spec {}.", k.spec),
        ));
    }
    let internal = |e: crypto::CryptoError| e400("KMSInternalException", e.to_string());
    if k.spec == "SYMMETRIC_DEFAULT" {
        let sealed = k
            .material
            .seal(plaintext, &context_aad(b)?)
            .map_err(internal)?;
        let mut out = BLOB_MAGIC.to_vec();
        out.extend_from_slice(k.id.as_bytes());
        out.extend_from_slice(&sealed);
        Ok((out, "SYMMETRIC_DEFAULT"))
    } else {
        let (h, name) = if alg == "RSAES_OAEP_SHA_1" {
            (Hash::Sha1, "RSAES_OAEP_SHA_1")
        } else {
            (Hash::Sha256, "RSAES_OAEP_SHA_256")
        };
        Ok((
            k.material
                .rsa_encrypt(Some(h), plaintext)
                .map_err(internal)?,
            name,
        ))
    }
}

pub(crate) fn encrypt(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let plaintext = blob(b, "Plaintext")?;
    let (ct, alg) = encrypt_with(&k, b, &plaintext, 4096)?;
    Ok(json!({"KeyId": k.arn(), "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": alg}))
}

pub(crate) fn decrypt(state: &State, b: &Body) -> Result<Value, AwsError> {
    let ct = blob(b, "CiphertextBlob")?;
    let invalid = || {
        e400(
            "InvalidCiphertextException",
            "The ciphertext is invalid for this key.",
        )
    };
    let from_blob = blob_key_id(&ct);
    let k = match (field(b, "KeyId")?, from_blob) {
        (Some(given), Some(id)) => {
            let k = resolve(state, given)?;
            if k.id != id {
                return Err(e400(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify the key that encrypted the ciphertext.",
                ));
            }
            k
        }
        (Some(given), None) => resolve(state, given)?,
        (None, Some(id)) => resolve(state, &id)?,
        (None, None) => return Err(invalid()),
    };
    usable(&k)?;
    need_usage(&k, "ENCRYPT_DECRYPT", "Decrypt")?;
    let (pt, alg) = if k.spec == "SYMMETRIC_DEFAULT" {
        if ct.len() <= 40 || &ct[..4] != BLOB_MAGIC {
            return Err(invalid());
        }
        // The current material, then the earlier ones of a rotated key.
        let aad = context_aad(b)?;
        let pt = std::iter::once(&k.material)
            .chain(k.previous.iter().rev())
            .find_map(|m| m.open(&ct[40..], &aad).ok())
            .ok_or_else(invalid)?;
        (pt, "SYMMETRIC_DEFAULT")
    } else {
        let alg = field(b, "EncryptionAlgorithm")?.unwrap_or("SYMMETRIC_DEFAULT");
        let h = match alg {
            "RSAES_OAEP_SHA_1" => Hash::Sha1,
            "RSAES_OAEP_SHA_256" => Hash::Sha256,
            _ => {
                return Err(e400(
                    "InvalidKeyUsageException",
                    format!("Algorithm {alg} is incompatible with key spec {}.", k.spec),
                ))
            }
        };
        (
            k.material
                .rsa_decrypt(Some(h), &ct)
                .map_err(|_| invalid())?,
            if h == Hash::Sha1 {
                "RSAES_OAEP_SHA_1"
            } else {
                "RSAES_OAEP_SHA_256"
            },
        )
    };
    Ok(json!({"KeyId": k.arn(), "Plaintext": b64(&pt), "EncryptionAlgorithm": alg}))
}

pub(crate) fn generate_data_key(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    if k.spec != "SYMMETRIC_DEFAULT" {
        need_usage(&k, "ENCRYPT_DECRYPT", "GenerateDataKey")?;
        return Err(e400(
            "InvalidKeyUsageException",
            format!("{} is not a symmetric key.", k.arn()),
        ));
    }
    let n = match (
        field(b, "KeySpec")?,
        b.get("NumberOfBytes").and_then(Value::as_u64),
    ) {
        (Some("AES_256"), None) => 32,
        (Some("AES_128"), None) => 16,
        (None, Some(n)) if (1..=1024).contains(&n) => n as usize,
        (None, None) => return Err(validation("Either KeySpec or NumberOfBytes is required")),
        _ => {
            return Err(validation(
                "KeySpec must be AES_256 or AES_128, or NumberOfBytes 1..1024, not both",
            ))
        }
    };
    let plaintext = crypto::random_bytes(n);
    let (ct, _) = encrypt_with(&k, b, &plaintext, 4096)?;
    Ok(json!({"KeyId": k.arn(), "Plaintext": b64(&plaintext), "CiphertextBlob": b64(&ct)}))
}

/// The key, message and algorithm of GenerateMac and VerifyMac.
fn mac_input(
    state: &State,
    b: &Body,
    op: &str,
) -> Result<(AwsKey, Vec<u8>, &'static str), AwsError> {
    let k = key_arg(state, b)?;
    usable(&k)?;
    need_usage(&k, "GENERATE_VERIFY_MAC", op)?;
    let alg = required(b, "MacAlgorithm")?;
    let own = mac_algorithm(&k.spec).unwrap_or("");
    if alg != own {
        return Err(e400(
            "InvalidKeyUsageException",
            format!("Algorithm {alg} is incompatible with key spec {}.", k.spec),
        ));
    }
    let message = blob(b, "Message")?;
    if message.is_empty() || message.len() > 4096 {
        return Err(validation(
            "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and 4096",
        ));
    }
    Ok((k, message, own))
}

/// GenerateMac.
pub(crate) fn generate_mac(state: &State, b: &Body) -> Result<Value, AwsError> {
    let (k, message, alg) = mac_input(state, b, "GenerateMac")?;
    let mac = k
        .material
        .mac(&message)
        .map_err(|e| e400("KMSInternalException", e.to_string()))?;
    Ok(json!({"KeyId": k.arn(), "Mac": b64(&mac), "MacAlgorithm": alg}))
}

/// VerifyMac.
pub(crate) fn verify_mac(state: &State, b: &Body) -> Result<Value, AwsError> {
    let (k, message, alg) = mac_input(state, b, "VerifyMac")?;
    let given = blob(b, "Mac")?;
    let mac = k
        .material
        .mac(&message)
        .map_err(|e| e400("KMSInternalException", e.to_string()))?;
    // Constant time: a MAC check must not leak where it differs.
    let same = given.len() == mac.len()
        && given
            .iter()
            .zip(&mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(e400(
            "KMSInvalidMacException",
            "The MAC is not valid for the message and key.",
        ));
    }
    Ok(json!({"KeyId": k.arn(), "MacValid": true, "MacAlgorithm": alg}))
}

/// DeriveSharedSecret (ECDH with a peer's public key).
pub(crate) fn derive_shared_secret(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    usable(&k)?;
    need_usage(&k, "KEY_AGREEMENT", "DeriveSharedSecret")?;
    match required(b, "KeyAgreementAlgorithm")? {
        "ECDH" => {}
        other => {
            return Err(validation(not_in_enum(
                other,
                "keyAgreementAlgorithm",
                &["ECDH"],
            )))
        }
    }
    let peer = blob(b, "PublicKey")?;
    let secret = crypto::ecdh(&k.material, &peer).map_err(|e| validation(e.to_string()))?;
    Ok(json!({
        "KeyId": k.arn(),
        "SharedSecret": b64(&secret),
        "KeyAgreementAlgorithm": "ECDH",
        "KeyOrigin": k.origin,
    }))
}
