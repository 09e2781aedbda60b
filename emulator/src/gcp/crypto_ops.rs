//! The cryptographic operations of crypto key versions: asymmetricSign,
//! getPublicKey, encrypt and decrypt, with their CRC32C checks.

use crate::gcp::external;
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::crypto::{self, EcFormat, Hash};
use crate::gcp::model::*;
use crate::gcp::store::{GcpKey, GcpVersion};
use crate::google::{gerr, invalid, not_found, precondition, GcpError};
use crate::state::{read, State};
use crate::util::{b64, unb64};

pub(crate) fn crc_field(b: &Map<String, Value>, name: &str) -> Result<Option<u32>, GcpError> {
    match b.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<u32>()
            .map(Some)
            .map_err(|_| invalid(format!("{name}: {s:?} is not a CRC32C value"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{name}: {n} is not a CRC32C value"))),
        Some(_) => Err(invalid(format!("{name} must be an integer"))),
    }
}

pub(crate) fn bytes_field(b: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, GcpError> {
    match b.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => unb64(name, s).map(Some).map_err(invalid),
        Some(_) => Err(invalid(format!("{name} must be a base64 string"))),
    }
}

/// Checks a client-supplied CRC32C; returns whether one was verified.
pub(crate) fn check_crc(data: &[u8], crc: Option<u32>, what: &str) -> Result<bool, GcpError> {
    match crc {
        None => Ok(false),
        Some(c) if c == crypto::crc32c(data) => Ok(true),
        Some(_) => Err(invalid(format!(
            "The checksum in field {what}_crc32c did not match the data in field {what}."
        ))),
    }
}

pub(crate) fn find_version(
    state: &State,
    key: &str,
    number: &str,
) -> Result<(GcpKey, GcpVersion), GcpError> {
    let store = read(&state.gcp);
    let k = store
        .keys
        .get(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let n: u32 = number.parse().map_err(|_| {
        not_found(&format!(
            "CryptoKeyVersion {key}/cryptoKeyVersions/{number}"
        ))
    })?;
    let v = k.versions.iter().find(|v| v.number == n).ok_or_else(|| {
        not_found(&format!(
            "CryptoKeyVersion {key}/cryptoKeyVersions/{number}"
        ))
    })?;
    Ok((k.clone(), v.clone()))
}

pub(crate) fn check_enabled(key: &GcpKey, v: &GcpVersion) -> Result<(), GcpError> {
    if v.state != ENABLED {
        return Err(precondition(format!(
            "{}/cryptoKeyVersions/{} is not enabled, current state is: {}.",
            key.name,
            v.number,
            state_name(v.state).unwrap_or("UNKNOWN")
        )));
    }
    Ok(())
}

pub(crate) fn enabled_material(
    key: &GcpKey,
    v: &GcpVersion,
) -> Result<Arc<crypto::Material>, GcpError> {
    check_enabled(key, v)?;
    let name = format!("{}/cryptoKeyVersions/{}", key.name, v.number);
    v.material
        .clone()
        .ok_or_else(|| precondition(format!("{name} has no key material.")))
}

/// The EkmConnection of an external key.
pub(crate) fn backend_of(
    state: &State,
    k: &GcpKey,
) -> Result<crate::gcp::store::EkmConnection, GcpError> {
    let backend = k
        .backend
        .as_deref()
        .ok_or_else(|| precondition(format!("{} has no cryptoKeyBackend.", k.name)))?;
    external::connection(state, backend)
}

pub(crate) async fn asymmetric_sign(
    state: &State,
    key: &str,
    ver: &str,
    b: &Map<String, Value>,
    enc: Enc,
    corrupt: bool,
) -> Result<Value, GcpError> {
    let (k, v) = find_version(state, key, ver)?;
    let name = format!("{}/cryptoKeyVersions/{}", k.name, v.number);
    if k.purpose != ASYMMETRIC_SIGN {
        return Err(invalid(format!(
            "{name} has purpose {}, not ASYMMETRIC_SIGN.",
            purpose_name(k.purpose).unwrap_or("?")
        )));
    }
    check_enabled(&k, &v)?;
    let alg = alg_by_num(k.algorithm).ok_or_else(|| precondition("unknown algorithm"))?;
    let scheme = alg
        .scheme
        .ok_or_else(|| precondition("not a signing algorithm"))?;
    let data = bytes_field(b, "data")?;
    let digest = match b.get("digest") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            if d.len() != 1 {
                return Err(invalid(
                    "digest must hold exactly one of sha256, sha384, sha512",
                ));
            }
            let (field, val) = d.iter().next().ok_or_else(|| invalid("empty digest"))?;
            let h = match field.as_str() {
                "sha256" => Hash::Sha256,
                "sha384" => Hash::Sha384,
                "sha512" => Hash::Sha512,
                other => return Err(invalid(format!("digest.{other} is not a known digest"))),
            };
            let bytes = match val {
                Value::String(s) => unb64(&format!("digest.{field}"), s).map_err(invalid)?,
                _ => return Err(invalid(format!("digest.{field} must be a base64 string"))),
            };
            Some((h, bytes))
        }
        Some(_) => Err(invalid("digest must be an object"))?,
    };
    // (field, bytes, verified data CRC, verified digest CRC)
    let (field, input, verified_data, verified_digest) = match (scheme.hash(), digest, data) {
        (_, Some(_), Some(_)) => return Err(invalid("Only one of digest and data may be set.")),
        (None, None, Some(data)) => {
            let checked = check_crc(&data, crc_field(b, "dataCrc32c")?, "data")?;
            ("data", data, checked, false)
        }
        (None, Some(_), None) => {
            return Err(invalid(format!(
                "{} requires data, not a digest.",
                alg.name
            )))
        }
        (Some(want), Some((h, bytes)), None) => {
            if h != want {
                return Err(invalid(format!(
                    "The requested digest type does not match the algorithm {}.",
                    alg.name
                )));
            }
            if bytes.len() != h.output_len() {
                return Err(invalid(format!(
                    "digest has length {}, expected {} for {}.",
                    bytes.len(),
                    h.output_len(),
                    alg.name
                )));
            }
            let checked = check_crc(&bytes, crc_field(b, "digestCrc32c")?, "digest")?;
            ("digest", bytes, false, checked)
        }
        (Some(_), None, Some(_)) => {
            return Err(invalid(format!(
                "{} requires a digest, not data.",
                alg.name
            )))
        }
        (_, None, None) => return Err(invalid("One of digest or data must be set.")),
    };
    let mut sig = match &v.ekm_key_path {
        Some(path) => {
            let conn = backend_of(state, &k)?;
            external::sign(state, &conn, path, alg.name, (field, &input)).await?
        }
        None => {
            let material = enabled_material(&k, &v)?;
            let sig = if field == "data" {
                material.sign_message(scheme, &input, EcFormat::Der)
            } else {
                material.sign_digest(scheme, &input, EcFormat::Der)
            };
            sig.map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?
        }
    };
    if corrupt {
        crypto::corrupt(&mut sig);
    }
    Ok(json!({
        "signature": b64(&sig),
        "signatureCrc32c": crypto::crc32c(&sig).to_string(),
        "verifiedDigestCrc32c": verified_digest,
        "verifiedDataCrc32c": verified_data,
        "name": name,
        "protectionLevel": enc.e(PROTECTION, k.protection),
    }))
}

pub(crate) async fn public_key(
    state: &State,
    key: &str,
    ver: &str,
    enc: Enc,
) -> Result<Value, GcpError> {
    let (k, v) = find_version(state, key, ver)?;
    if k.purpose == ENCRYPT_DECRYPT {
        return Err(precondition(format!(
            "{} is a symmetric key and has no public key.",
            k.name
        )));
    }
    let pem = match &v.ekm_key_path {
        Some(path) => {
            check_enabled(&k, &v)?;
            let conn = backend_of(state, &k)?;
            let want = algorithm_name(k.algorithm).unwrap_or("?");
            external::fetch_key(state, &conn, path, want, &k.name).await?
        }
        None => enabled_material(&k, &v)?
            .public_pem()
            .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?,
    };
    Ok(json!({
        "pem": pem,
        "algorithm": enc.alg(k.algorithm),
        "pemCrc32c": crypto::crc32c(pem.as_bytes()).to_string(),
        "name": format!("{}/cryptoKeyVersions/{}", k.name, v.number),
        "protectionLevel": enc.e(PROTECTION, k.protection),
    }))
}

pub(crate) fn encrypt(
    state: &State,
    key: &str,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let k = encryption_key(state, key)?;
    let plaintext = bytes_field(b, "plaintext")?.ok_or_else(|| invalid("plaintext is required"))?;
    if plaintext.len() > 64 * 1024 {
        return Err(invalid("plaintext exceeds 64 KiB"));
    }
    let aad = bytes_field(b, "additionalAuthenticatedData")?.unwrap_or_default();
    let vp = check_crc(&plaintext, crc_field(b, "plaintextCrc32c")?, "plaintext")?;
    let va = check_crc(
        &aad,
        crc_field(b, "additionalAuthenticatedDataCrc32c")?,
        "additional_authenticated_data",
    )?;
    let primary = k
        .primary
        .ok_or_else(|| precondition(format!("{key} has no primary version")))?;
    let v = k
        .versions
        .iter()
        .find(|v| v.number == primary)
        .ok_or_else(|| precondition("primary version missing"))?;
    let m = enabled_material(&k, v)?;
    let sealed = m
        .seal(&plaintext, &aad)
        .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    let mut ct = v.number.to_be_bytes().to_vec();
    ct.extend_from_slice(&sealed);
    Ok(json!({
        "name": format!("{key}/cryptoKeyVersions/{}", v.number),
        "ciphertext": b64(&ct),
        "ciphertextCrc32c": crypto::crc32c(&ct).to_string(),
        "verifiedPlaintextCrc32c": vp,
        "verifiedAdditionalAuthenticatedDataCrc32c": va,
        "protectionLevel": enc.e(PROTECTION, k.protection),
    }))
}

pub(crate) fn decrypt(
    state: &State,
    key: &str,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let k = encryption_key(state, key)?;
    let ct = bytes_field(b, "ciphertext")?.ok_or_else(|| invalid("ciphertext is required"))?;
    check_crc(&ct, crc_field(b, "ciphertextCrc32c")?, "ciphertext")?;
    let aad = bytes_field(b, "additionalAuthenticatedData")?.unwrap_or_default();
    let bad = || invalid("Decryption failed: the ciphertext is invalid.");
    if ct.len() < 4 {
        return Err(bad());
    }
    let n = u32::from_be_bytes([ct[0], ct[1], ct[2], ct[3]]);
    let v = k.versions.iter().find(|v| v.number == n).ok_or_else(bad)?;
    let m = enabled_material(&k, v)?;
    let pt = m.open(&ct[4..], &aad).map_err(|_| bad())?;
    Ok(json!({
        "plaintext": b64(&pt),
        "plaintextCrc32c": crypto::crc32c(&pt).to_string(),
        "usedPrimary": k.primary == Some(n),
        "protectionLevel": enc.e(PROTECTION, k.protection),
    }))
}

/// The crypto key `key` (a copy), or NOT_FOUND.
pub(crate) fn crypto_key(state: &State, key: &str) -> Result<GcpKey, GcpError> {
    read(&state.gcp)
        .keys
        .get(key)
        .cloned()
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))
}

/// The crypto key `key` when its purpose is ENCRYPT_DECRYPT (encrypt and
/// decrypt), else NOT_FOUND or INVALID_ARGUMENT.
fn encryption_key(state: &State, key: &str) -> Result<GcpKey, GcpError> {
    let k = crypto_key(state, key)?;
    if k.purpose != ENCRYPT_DECRYPT {
        return Err(invalid(format!(
            "{key} has purpose {}, not ENCRYPT_DECRYPT.",
            purpose_name(k.purpose).unwrap_or("?")
        )));
    }
    Ok(k)
}
