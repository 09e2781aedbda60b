//! AWS KMS, JSON 1.1 protocol (`X-Amz-Target: TrentService.<Op>`), with
//! SigV4 verified against the configured credentials.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::crypto::{self, EcFormat, Hash, KeyKind, Scheme};
use crate::faults::FaultError;
use crate::store::{now, read, write, AwsKey, AwsKeyState, State, AWS_ACCOUNT};
use crate::util::{b64, json_object, str_field, unb64};
use crate::{sigv4, Reply, Request};

/// Largest RAW message Sign and Verify accept.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// An error answer: HTTP status, `__type` and message.
#[derive(Debug)]
pub struct AwsError {
    status: StatusCode,
    typ: &'static str,
    msg: String,
}

fn e400(typ: &'static str, msg: impl Into<String>) -> AwsError {
    AwsError {
        status: StatusCode::BAD_REQUEST,
        typ,
        msg: msg.into(),
    }
}

fn validation(msg: impl Into<String>) -> AwsError {
    e400("ValidationException", msg)
}

fn respond(result: Result<Value, AwsError>) -> Reply {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status, json!({"__type": e.typ, "message": e.msg})),
    };
    let mut r = crate::json_response(status, &body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&crypto::uuid()) {
        h.insert("x-amzn-requestid", v);
    }
    Reply::Send(r)
}

/// KeySpec -> (key kind, default usage).
pub fn spec_kind(spec: &str) -> Option<(KeyKind, &'static str)> {
    Some(match spec {
        "ECC_NIST_P256" => (KeyKind::P256, "SIGN_VERIFY"),
        "ECC_NIST_P384" => (KeyKind::P384, "SIGN_VERIFY"),
        "ECC_NIST_P521" => (KeyKind::P521, "SIGN_VERIFY"),
        "ECC_NIST_EDWARDS25519" => (KeyKind::Ed25519, "SIGN_VERIFY"),
        "RSA_2048" => (KeyKind::Rsa(2048), "SIGN_VERIFY"),
        "RSA_3072" => (KeyKind::Rsa(3072), "SIGN_VERIFY"),
        "RSA_4096" => (KeyKind::Rsa(4096), "SIGN_VERIFY"),
        "SYMMETRIC_DEFAULT" => (KeyKind::Aes256, "ENCRYPT_DECRYPT"),
        _ => return None,
    })
}

/// Checks that `usage` is allowed for `spec`.
pub fn check_usage(spec: &str, usage: &str) -> Result<(), String> {
    let ok = match usage {
        "SIGN_VERIFY" => spec != "SYMMETRIC_DEFAULT",
        "ENCRYPT_DECRYPT" => spec == "SYMMETRIC_DEFAULT" || spec.starts_with("RSA_"),
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

fn signing_algorithms(spec: &str) -> &'static [&'static str] {
    match spec {
        "ECC_NIST_P256" => &["ECDSA_SHA_256"],
        "ECC_NIST_P384" => &["ECDSA_SHA_384"],
        "ECC_NIST_P521" => &["ECDSA_SHA_512"],
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

fn encryption_algorithms(spec: &str) -> &'static [&'static str] {
    if spec == "SYMMETRIC_DEFAULT" {
        &["SYMMETRIC_DEFAULT"]
    } else {
        &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    }
}

fn scheme(alg: &str) -> Option<Scheme> {
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
        _ => return None,
    })
}

/// Creates a key.
pub fn create_key(
    state: &State,
    spec: &str,
    usage: &str,
    description: &str,
    region: &str,
) -> Result<AwsKey, String> {
    let (kind, _) = spec_kind(spec).ok_or_else(|| format!("KeySpec {spec} is not supported"))?;
    check_usage(spec, usage)?;
    let material = crypto::Material::generate(kind).map_err(|e| e.to_string())?;
    let key = AwsKey {
        id: crypto::uuid(),
        region: region.to_string(),
        spec: spec.to_string(),
        usage: usage.to_string(),
        state: AwsKeyState::Enabled,
        created: now(),
        deletion_date: None,
        description: description.to_string(),
        material: Arc::new(material),
    };
    write(&state.aws).keys.insert(key.id.clone(), key.clone());
    state.persist();
    Ok(key)
}

fn metadata(k: &AwsKey) -> Value {
    let mut m = json!({
        "AWSAccountId": AWS_ACCOUNT,
        "KeyId": k.id,
        "Arn": k.arn(),
        "CreationDate": k.created,
        "Enabled": k.state == AwsKeyState::Enabled,
        "Description": k.description,
        "KeyUsage": k.usage,
        "KeyState": format!("{:?}", k.state),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": k.spec,
        "KeySpec": k.spec,
        "MultiRegion": false,
    });
    if k.usage == "SIGN_VERIFY" {
        m["SigningAlgorithms"] = json!(signing_algorithms(&k.spec));
    } else {
        m["EncryptionAlgorithms"] = json!(encryption_algorithms(&k.spec));
    }
    if let Some(d) = k.deletion_date {
        m["DeletionDate"] = json!(d);
    }
    m
}

/// Finds a key by id, key ARN, `alias/NAME` or alias ARN.
fn resolve(state: &State, key_id: &str) -> Result<AwsKey, AwsError> {
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
                let k = store.keys.get(id).ok_or_else(not_found)?;
                if k.arn() != key_id {
                    return Err(not_found());
                }
                return Ok(k.clone());
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
    store.keys.get(&id).cloned().ok_or_else(not_found)
}

fn usable(k: &AwsKey) -> Result<(), AwsError> {
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
    }
}

fn need_usage(k: &AwsKey, usage: &str, op: &str) -> Result<(), AwsError> {
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

type Body = Map<String, Value>;

fn field<'a>(b: &'a Body, name: &str) -> Result<Option<&'a str>, AwsError> {
    str_field(b, name).map_err(|e| e400("SerializationException", e))
}

fn required<'a>(b: &'a Body, name: &str) -> Result<&'a str, AwsError> {
    field(b, name)?.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn blob(b: &Body, name: &str) -> Result<Vec<u8>, AwsError> {
    unb64(name, required(b, name)?).map_err(|e| e400("SerializationException", e))
}

fn key_arg(state: &State, b: &Body) -> Result<AwsKey, AwsError> {
    resolve(state, required(b, "KeyId")?)
}

/// Checks algorithm and message type, and returns what to sign.
fn signing_input(k: &AwsKey, b: &Body) -> Result<(Scheme, &'static str, Vec<u8>, bool), AwsError> {
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

fn sign(state: &State, b: &Body, corrupt: bool) -> Result<Value, AwsError> {
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

fn verify(state: &State, b: &Body) -> Result<Value, AwsError> {
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

fn context_aad(b: &Body) -> Result<Vec<u8>, AwsError> {
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

const BLOB_MAGIC: &[u8; 4] = b"kmse";

fn encrypt_with(
    k: &AwsKey,
    b: &Body,
    plaintext: &[u8],
) -> Result<(Vec<u8>, &'static str), AwsError> {
    usable(k)?;
    need_usage(k, "ENCRYPT_DECRYPT", "Encrypt")?;
    if plaintext.is_empty() || plaintext.len() > 4096 {
        return Err(validation("Plaintext must be between 1 and 4096 bytes"));
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

fn encrypt(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let plaintext = blob(b, "Plaintext")?;
    let (ct, alg) = encrypt_with(&k, b, &plaintext)?;
    Ok(json!({"KeyId": k.arn(), "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": alg}))
}

fn decrypt(state: &State, b: &Body) -> Result<Value, AwsError> {
    let ct = blob(b, "CiphertextBlob")?;
    let invalid = || {
        e400(
            "InvalidCiphertextException",
            "The ciphertext is invalid for this key.",
        )
    };
    let from_blob = (ct.len() > 40 && &ct[..4] == BLOB_MAGIC)
        .then(|| String::from_utf8_lossy(&ct[4..40]).into_owned());
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
        let pt = k
            .material
            .open(&ct[40..], &context_aad(b)?)
            .map_err(|_| invalid())?;
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

fn generate_data_key(state: &State, b: &Body) -> Result<Value, AwsError> {
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
    let (ct, _) = encrypt_with(&k, b, &plaintext)?;
    Ok(json!({"KeyId": k.arn(), "Plaintext": b64(&plaintext), "CiphertextBlob": b64(&ct)}))
}

fn paginate(b: &Body, items: Vec<Value>, field_name: &str) -> Result<Value, AwsError> {
    let limit = b
        .get("Limit")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let start = match field(b, "Marker")? {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| e400("InvalidMarkerException", "Marker is invalid"))?,
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut out = json!({field_name: page, "Truncated": end < items.len()});
    if end < items.len() {
        out["NextMarker"] = json!(end.to_string());
    }
    Ok(out)
}

fn set_state(
    state: &State,
    b: &Body,
    to: Option<AwsKeyState>,
    window: Option<u64>,
) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let mut store = write(&state.aws);
    let key = store.keys.get_mut(&k.id).ok_or_else(|| {
        e400(
            "NotFoundException",
            format!("Key '{}' does not exist", k.id),
        )
    })?;
    let out = match to {
        Some(AwsKeyState::PendingDeletion) => {
            if key.state == AwsKeyState::PendingDeletion {
                return Err(e400(
                    "KMSInvalidStateException",
                    format!("{} is pending deletion.", key.arn()),
                ));
            }
            let days = window.unwrap_or(30);
            key.state = AwsKeyState::PendingDeletion;
            key.deletion_date = Some(now() + days * 86_400);
            json!({"KeyId": key.arn(), "DeletionDate": key.deletion_date, "KeyState": "PendingDeletion", "PendingWindowInDays": days})
        }
        Some(s) => {
            if key.state == AwsKeyState::PendingDeletion {
                return Err(e400(
                    "KMSInvalidStateException",
                    format!("{} is pending deletion.", key.arn()),
                ));
            }
            key.state = s;
            json!({})
        }
        None => {
            // CancelKeyDeletion
            if key.state != AwsKeyState::PendingDeletion {
                return Err(e400(
                    "KMSInvalidStateException",
                    format!("{} is not pending deletion.", key.arn()),
                ));
            }
            key.state = AwsKeyState::Disabled;
            key.deletion_date = None;
            json!({"KeyId": key.arn()})
        }
    };
    drop(store);
    state.persist();
    Ok(out)
}

fn operation(
    state: &State,
    op: &str,
    b: &Body,
    region: &str,
    corrupt: bool,
) -> Result<Value, AwsError> {
    match op {
        "CreateKey" => {
            let spec = field(b, "KeySpec")?
                .or(field(b, "CustomerMasterKeySpec")?)
                .unwrap_or("SYMMETRIC_DEFAULT");
            let usage = field(b, "KeyUsage")?.unwrap_or("ENCRYPT_DECRYPT");
            let desc = field(b, "Description")?.unwrap_or("");
            let key = create_key(state, spec, usage, desc, region).map_err(validation)?;
            Ok(json!({"KeyMetadata": metadata(&key)}))
        }
        "DescribeKey" => Ok(json!({"KeyMetadata": metadata(&key_arg(state, b)?)})),
        "GetPublicKey" => {
            let k = key_arg(state, b)?;
            usable(&k)?;
            if k.spec == "SYMMETRIC_DEFAULT" {
                return Err(e400(
                    "UnsupportedOperationException",
                    format!("{} is a symmetric key and has no public key.", k.arn()),
                ));
            }
            let der = k
                .material
                .public_der()
                .map_err(|e| e400("KMSInternalException", e.to_string()))?;
            let mut out = json!({
                "KeyId": k.arn(), "PublicKey": b64(&der), "KeySpec": k.spec,
                "CustomerMasterKeySpec": k.spec, "KeyUsage": k.usage,
            });
            if k.usage == "SIGN_VERIFY" {
                out["SigningAlgorithms"] = json!(signing_algorithms(&k.spec));
            } else {
                out["EncryptionAlgorithms"] = json!(encryption_algorithms(&k.spec));
            }
            Ok(out)
        }
        "ListKeys" => {
            let items = read(&state.aws)
                .keys
                .values()
                .map(|k| json!({"KeyId": k.id, "KeyArn": k.arn()}))
                .collect();
            paginate(b, items, "Keys")
        }
        "CreateAlias" => {
            let name = required(b, "AliasName")?;
            if !name.starts_with("alias/") || name.len() <= 6 || name.starts_with("alias/aws/") {
                return Err(validation(format!(
                    "Alias name {name:?} must begin with alias/ and must not begin with alias/aws/"
                )));
            }
            let target = required(b, "TargetKeyId")?;
            if target.starts_with("alias/") || target.contains(":alias/") {
                return Err(validation(
                    "TargetKeyId must be a key id or key ARN, not an alias",
                ));
            }
            let k = resolve(state, target)?;
            let mut store = write(&state.aws);
            if store.aliases.contains_key(name) {
                return Err(e400(
                    "AlreadyExistsException",
                    format!("An alias with the name {name} already exists"),
                ));
            }
            store.aliases.insert(name.to_string(), k.id);
            drop(store);
            state.persist();
            Ok(json!({}))
        }
        "ListAliases" => {
            let only = match field(b, "KeyId")? {
                Some(id) => Some(resolve(state, id)?.id),
                None => None,
            };
            let store = read(&state.aws);
            let items = store
                .aliases
                .iter()
                .filter(|(_, id)| only.as_ref().is_none_or(|o| o == *id))
                .map(|(a, id)| {
                    let region = store.keys.get(id).map_or("us-east-1", |k| k.region.as_str());
                    json!({"AliasName": a, "AliasArn": format!("arn:aws:kms:{region}:{AWS_ACCOUNT}:{a}"), "TargetKeyId": id})
                })
                .collect();
            drop(store);
            paginate(b, items, "Aliases")
        }
        "Sign" => sign(state, b, corrupt),
        "Verify" => verify(state, b),
        "EnableKey" => set_state(state, b, Some(AwsKeyState::Enabled), None),
        "DisableKey" => set_state(state, b, Some(AwsKeyState::Disabled), None),
        "ScheduleKeyDeletion" => {
            let days = b
                .get("PendingWindowInDays")
                .and_then(Value::as_u64)
                .unwrap_or(30);
            if !(7..=30).contains(&days) {
                return Err(validation(format!(
                    "PendingWindowInDays {days} is not between 7 and 30"
                )));
            }
            set_state(state, b, Some(AwsKeyState::PendingDeletion), Some(days))
        }
        "CancelKeyDeletion" => set_state(state, b, None, None),
        "Encrypt" => encrypt(state, b),
        "Decrypt" => decrypt(state, b),
        "GenerateDataKey" => generate_data_key(state, b),
        other => Err(e400(
            "UnknownOperationException",
            format!("operation {other} is not supported"),
        )),
    }
}

fn fault_error(e: FaultError) -> AwsError {
    match e {
        FaultError::Throttle => e400("ThrottlingException", "Rate exceeded"),
        FaultError::Unavailable => AwsError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            typ: "DependencyTimeoutException",
            msg: "The service is temporarily unavailable.".into(),
        },
        FaultError::Internal => AwsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            typ: "KMSInternalException",
            msg: "An internal error occurred.".into(),
        },
    }
}

/// The operations the emulated AWS KMS serves.
pub(crate) const OPERATIONS: [&str; 15] = [
    "CreateKey",
    "DescribeKey",
    "GetPublicKey",
    "ListKeys",
    "CreateAlias",
    "ListAliases",
    "Sign",
    "Verify",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
];

/// Handles one AWS KMS request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    if req.method != hyper::Method::POST || req.path != "/" {
        return respond(Err(e400(
            "UnknownOperationException",
            "AWS KMS takes POST / only",
        )));
    }
    let Some(op) = req
        .header("x-amz-target")
        .and_then(|t| t.strip_prefix("TrentService."))
    else {
        return respond(Err(e400(
            "UnknownOperationException",
            "missing or malformed X-Amz-Target header (TrentService.<Operation>)",
        )));
    };
    if !OPERATIONS.contains(&op) {
        // Refused before anything is counted: counters hold real operations only.
        return respond(Err(e400(
            "UnknownOperationException",
            format!("unknown operation {}", op.escape_debug()),
        )));
    }
    let op = op.to_string();
    if req.too_large {
        return respond(Err(AwsError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            typ: "ValidationException",
            msg: format!("request body exceeds {} bytes", crate::MAX_BODY),
        }));
    }
    let verified = match sigv4::verify(&req, &state.config.aws_credentials) {
        Ok(v) => v,
        Err(sigv4::SigError::Missing(m)) => {
            return respond(Err(AwsError {
                status: StatusCode::BAD_REQUEST,
                typ: "MissingAuthenticationTokenException",
                msg: m,
            }))
        }
        Err(sigv4::SigError::UnknownKey(m)) => {
            return respond(Err(e400("UnrecognizedClientException", m)))
        }
        Err(sigv4::SigError::Mismatch(m)) => {
            return respond(Err(e400("InvalidSignatureException", m)))
        }
        Err(sigv4::SigError::Incomplete(m)) => {
            return respond(Err(e400("IncompleteSignatureException", m)))
        }
    };
    let corrupt =
        match crate::inject_faults(state, "aws", &op, None, |e| respond(Err(fault_error(e)))).await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
    dispatch(state, &op, &req.body, &verified.region, corrupt)
}

/// Runs one operation on an already authenticated request body.
pub(crate) fn dispatch(state: &State, op: &str, body: &[u8], region: &str, corrupt: bool) -> Reply {
    let body = match json_object(body) {
        Ok(b) => b,
        Err(e) => return respond(Err(e400("SerializationException", e))),
    };
    respond(operation(state, op, &body, region, corrupt))
}
