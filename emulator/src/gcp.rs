//! Google Cloud KMS, REST v1 (`/v1/projects/*/locations/*/keyRings/...`),
//! with integer enums when the client asks `$alt=json;enum-encoding=int`.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::crypto::{self, EcFormat, Hash, KeyKind, Scheme};
use crate::faults::FaultError;
use crate::gcp_ekm;
use crate::store::{now, read, write, GcpKey, GcpSeed, GcpVersion, State};
use crate::util::{b64, json_object, rfc3339, unb64};
use crate::{Reply, Request};

/// CryptoKeyPurpose ENCRYPT_DECRYPT.
pub const ENCRYPT_DECRYPT: i32 = 1;
/// CryptoKeyPurpose ASYMMETRIC_SIGN.
pub const ASYMMETRIC_SIGN: i32 = 5;
/// CryptoKeyVersionState ENABLED.
pub const ENABLED: i32 = 1;
/// CryptoKeyVersionState DISABLED.
pub const DISABLED: i32 = 2;
/// ProtectionLevel SOFTWARE.
pub const SOFTWARE: i32 = 1;
/// ProtectionLevel EXTERNAL_VPC (keys held by an external key manager,
/// reached through an EkmConnection).
pub const EXTERNAL_VPC: i32 = 4;

struct Alg {
    name: &'static str,
    num: i32,
    purpose: i32,
    kind: KeyKind,
    scheme: Option<Scheme>,
}

const fn alg(
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

const ALGS: &[Alg] = &[
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

const PURPOSES: &[(&str, i32)] = &[
    ("ENCRYPT_DECRYPT", 1),
    ("ASYMMETRIC_SIGN", 5),
    ("ASYMMETRIC_DECRYPT", 6),
    ("RAW_ENCRYPT_DECRYPT", 7),
    ("MAC", 9),
];
const STATES: &[(&str, i32)] = &[
    ("ENABLED", 1),
    ("DISABLED", 2),
    ("DESTROYED", 3),
    ("DESTROY_SCHEDULED", 4),
];
const PROTECTION: &[(&str, i32)] = &[
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

fn alg_by_num(n: i32) -> Option<&'static Alg> {
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

/// An error answer: `{"error":{code,message,status}}` (google.rpc.Status,
/// also the external key manager's error shape).
#[derive(Debug)]
pub struct GcpError {
    code: StatusCode,
    status: &'static str,
    message: String,
}

impl GcpError {
    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

pub(crate) fn gerr(code: StatusCode, status: &'static str, message: impl Into<String>) -> GcpError {
    GcpError {
        code,
        status,
        message: message.into(),
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> GcpError {
    gerr(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", msg)
}

pub(crate) fn already_exists(what: &str) -> GcpError {
    gerr(
        StatusCode::CONFLICT,
        "ALREADY_EXISTS",
        format!("{what} already exists."),
    )
}

pub(crate) fn not_found(what: &str) -> GcpError {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
    )
}

pub(crate) fn precondition(msg: impl Into<String>) -> GcpError {
    gerr(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", msg)
}

/// How enums are written in the answer.
#[derive(Clone, Copy)]
pub(crate) struct Enc {
    ints: bool,
}

impl Enc {
    pub(crate) fn e(&self, table: &[(&'static str, i32)], n: i32) -> Value {
        if self.ints {
            json!(n)
        } else {
            json!(name_of(table, n).unwrap_or("UNSPECIFIED"))
        }
    }
    fn alg(&self, n: i32) -> Value {
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

fn parse_alg(v: &Value) -> Result<i32, GcpError> {
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

fn version_json(key: &GcpKey, v: &GcpVersion, enc: Enc) -> Value {
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
    out
}

fn key_json(key: &GcpKey, enc: Enc) -> Value {
    let mut out = json!({
        "name": key.name,
        "purpose": enc.e(PURPOSES, key.purpose),
        "createTime": rfc3339(key.created),
        "versionTemplate": {"protectionLevel": enc.e(PROTECTION, key.protection), "algorithm": enc.alg(key.algorithm)},
        "destroyScheduledDuration": "2592000s",
    });
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

/// Whether `id` is a Cloud KMS resource id: `[a-zA-Z0-9_-]{1,63}`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn new_version(
    key: &GcpKey,
    material: Option<Arc<crypto::Material>>,
    st: i32,
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
        created: now(),
        material: Some(material),
        ekm_key_path: None,
    })
}

/// Creates a seeded key (and its key ring).
pub fn seed_key(state: &State, s: GcpSeed) -> Result<(), String> {
    let what = format!("gcp key {}", s.key);
    let (ring, _) = s.key.rsplit_once("/cryptoKeys/").ok_or_else(|| {
        format!("{what}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K")
    })?;
    let segs: Vec<&str> = s.key.split('/').collect();
    if segs.len() != 8 || segs[0] != "projects" || segs[2] != "locations" || segs[4] != "keyRings" {
        return Err(format!(
            "{what}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K"
        ));
    }
    let alg = ALGS
        .iter()
        .find(|a| a.name == s.algorithm)
        .ok_or_else(|| format!("{what}: unknown algorithm {:?}", s.algorithm))?;
    let purpose = match &s.purpose {
        Some(p) => name_to(PURPOSES, p).ok_or_else(|| format!("{what}: unknown purpose {p:?}"))?,
        None => alg.purpose,
    };
    if purpose != alg.purpose {
        return Err(format!(
            "{what}: algorithm {} does not fit purpose {purpose}",
            alg.name
        ));
    }
    let protection = match &s.protection_level {
        Some(p) => name_to(PROTECTION, p)
            .ok_or_else(|| format!("{what}: unknown protection level {p:?}"))?,
        None => SOFTWARE,
    };
    let external = protection == EXTERNAL_VPC;
    let backend = match (&s.crypto_key_backend, external) {
        (Some(b), true) => {
            gcp_ekm::check_backend(state, ring, b)
                .map_err(|e| format!("{what}: {}", e.message()))?;
            Some(b.clone())
        }
        (None, true) => {
            return Err(format!(
                "{what}: EXTERNAL_VPC keys need crypto_key_backend (an EkmConnection)"
            ))
        }
        (Some(_), false) => {
            return Err(format!(
                "{what}: crypto_key_backend is only for EXTERNAL_VPC keys"
            ))
        }
        (None, false) => None,
    };
    if external && purpose != ASYMMETRIC_SIGN {
        return Err(format!(
            "{what}: EXTERNAL_VPC keys must have purpose ASYMMETRIC_SIGN"
        ));
    }
    let mut key = GcpKey {
        name: s.key.clone(),
        purpose,
        algorithm: alg.num,
        protection,
        created: now(),
        versions: Vec::new(),
        primary: None,
        backend,
    };
    let seeds = if s.versions.is_empty() && !external {
        vec![crate::store::VersionSeed {
            state: None,
            private_key: None,
            private_key_file: None,
            ekm_connection_key_path: None,
        }]
    } else {
        s.versions
    };
    for v in seeds {
        let st = match &v.state {
            Some(n) => name_to(STATES, n).ok_or_else(|| format!("{what}: unknown state {n:?}"))?,
            None => ENABLED,
        };
        match (&v.ekm_connection_key_path, external) {
            (Some(path), true) if v.private_key.is_none() => {
                if !crate::util::valid_path(path) {
                    return Err(format!(
                        "{what}: ekm_connection_key_path {path:?} is not segments of [A-Za-z0-9._-] joined by /"
                    ));
                }
                key.versions.push(GcpVersion {
                    number: key.versions.len() as u32 + 1,
                    state: st,
                    created: now(),
                    material: None,
                    ekm_key_path: Some(path.clone()),
                });
                continue;
            }
            (_, true) => {
                return Err(format!(
                    "{what}: EXTERNAL_VPC versions take ekm_connection_key_path and no private key"
                ))
            }
            (Some(_), false) => {
                return Err(format!(
                    "{what}: ekm_connection_key_path is only for EXTERNAL_VPC keys"
                ))
            }
            (None, false) => {}
        }
        let m = match &v.private_key {
            Some(pem) => Some(Arc::new(
                crypto::Material::from_pem(pem).map_err(|e| format!("{what}: {e}"))?,
            )),
            None => None,
        };
        let version = new_version(&key, m, st).map_err(|e| format!("{what}: {e}"))?;
        key.versions.push(version);
    }
    if purpose == ENCRYPT_DECRYPT {
        key.primary = Some(1);
    }
    let mut store = write(&state.gcp);
    store.rings.entry(ring.to_string()).or_insert_with(now);
    store.keys.insert(key.name.clone(), key);
    drop(store);
    state.persist();
    Ok(())
}

fn name_to(table: &[(&str, i32)], name: &str) -> Option<i32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn crc_field(b: &Map<String, Value>, name: &str) -> Result<Option<u32>, GcpError> {
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

fn bytes_field(b: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, GcpError> {
    match b.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => unb64(name, s).map(Some).map_err(invalid),
        Some(_) => Err(invalid(format!("{name} must be a base64 string"))),
    }
}

/// Checks a client-supplied CRC32C; returns whether one was verified.
fn check_crc(data: &[u8], crc: Option<u32>, what: &str) -> Result<bool, GcpError> {
    match crc {
        None => Ok(false),
        Some(c) if c == crypto::crc32c(data) => Ok(true),
        Some(_) => Err(invalid(format!(
            "The checksum in field {what}_crc32c did not match the data in field {what}."
        ))),
    }
}

fn find_version(state: &State, key: &str, number: &str) -> Result<(GcpKey, GcpVersion), GcpError> {
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

fn check_enabled(key: &GcpKey, v: &GcpVersion) -> Result<(), GcpError> {
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

fn enabled_material(key: &GcpKey, v: &GcpVersion) -> Result<Arc<crypto::Material>, GcpError> {
    check_enabled(key, v)?;
    let name = format!("{}/cryptoKeyVersions/{}", key.name, v.number);
    v.material
        .clone()
        .ok_or_else(|| precondition(format!("{name} has no key material.")))
}

/// The EkmConnection of an external key.
fn backend_of(state: &State, k: &GcpKey) -> Result<crate::store::EkmConnection, GcpError> {
    let backend = k
        .backend
        .as_deref()
        .ok_or_else(|| precondition(format!("{} has no cryptoKeyBackend.", k.name)))?;
    gcp_ekm::connection(state, backend)
}

async fn asymmetric_sign(
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
            gcp_ekm::sign(state, &conn, path, alg.name, (field, &input)).await?
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

async fn public_key(state: &State, key: &str, ver: &str, enc: Enc) -> Result<Value, GcpError> {
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
            gcp_ekm::fetch_key(state, &conn, path, want, &k.name).await?
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

fn encrypt(state: &State, key: &str, b: &Map<String, Value>, enc: Enc) -> Result<Value, GcpError> {
    let k = read(&state.gcp)
        .keys
        .get(key)
        .cloned()
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    if k.purpose != ENCRYPT_DECRYPT {
        return Err(invalid(format!(
            "{key} has purpose {}, not ENCRYPT_DECRYPT.",
            purpose_name(k.purpose).unwrap_or("?")
        )));
    }
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

fn decrypt(state: &State, key: &str, b: &Map<String, Value>, enc: Enc) -> Result<Value, GcpError> {
    let k = read(&state.gcp)
        .keys
        .get(key)
        .cloned()
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    if k.purpose != ENCRYPT_DECRYPT {
        return Err(invalid(format!(
            "{key} has purpose {}, not ENCRYPT_DECRYPT.",
            purpose_name(k.purpose).unwrap_or("?")
        )));
    }
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

/// A new version of an `EXTERNAL_VPC` key: the key at `key_path` on the key
/// manager (MANUAL connections), or a key the connection creates there
/// (CLOUD_KMS connections); its algorithm must be the crypto key's.
async fn external_version(
    state: &State,
    key: &GcpKey,
    key_path: Option<String>,
) -> Result<GcpVersion, GcpError> {
    let conn = backend_of(state, key)?;
    let alg = alg_by_num(key.algorithm).ok_or_else(|| precondition("unknown algorithm"))?;
    let path = match (conn.mode, key_path) {
        (gcp_ekm::MANUAL, Some(p)) => {
            if !crate::util::valid_path(&p) {
                return Err(invalid(format!(
                    "externalProtectionLevelOptions.ekmConnectionKeyPath {p:?} is not segments of [A-Za-z0-9._-] joined by /"
                )));
            }
            p
        }
        (gcp_ekm::MANUAL, None) => {
            return Err(invalid(format!(
                "externalProtectionLevelOptions.ekmConnectionKeyPath is required: {} is in MANUAL mode",
                conn.name
            )))
        }
        (_, Some(_)) => {
            return Err(invalid(format!(
                "externalProtectionLevelOptions.ekmConnectionKeyPath must not be set: {} is in CLOUD_KMS mode and creates its keys",
                conn.name
            )))
        }
        (_, None) => gcp_ekm::create_external(state, &conn, alg.name).await?,
    };
    gcp_ekm::fetch_key(state, &conn, &path, alg.name, &key.name).await?;
    Ok(GcpVersion {
        number: 0,
        state: ENABLED,
        created: now(),
        material: None,
        ekm_key_path: Some(path),
    })
}

/// Adds a version to a key (numbered when it is stored).
fn store_version(state: &State, key: &str, mut v: GcpVersion, enc: Enc) -> Result<Value, GcpError> {
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    v.number = k.versions.len() as u32 + 1;
    let out = version_json(k, &v, enc);
    k.versions.push(v);
    drop(store);
    state.persist();
    Ok(out)
}

async fn create_version(
    state: &State,
    key: &str,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let k = read(&state.gcp)
        .keys
        .get(key)
        .cloned()
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let path = match b.get("externalProtectionLevelOptions") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => match o.get("ekmConnectionKeyPath") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.is_empty() => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => {
                return Err(invalid(
                    "externalProtectionLevelOptions.ekmConnectionKeyPath must be a string",
                ))
            }
        },
        Some(_) => return Err(invalid("externalProtectionLevelOptions must be an object")),
    };
    let v = if k.protection == EXTERNAL_VPC {
        external_version(state, &k, path).await?
    } else {
        if path.is_some() {
            return Err(invalid(format!(
                "externalProtectionLevelOptions is only for EXTERNAL_VPC keys; {key} is {}",
                protection_name(k.protection).unwrap_or("?")
            )));
        }
        new_version(&k, None, ENABLED)
            .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e))?
    };
    store_version(state, key, v, enc)
}

async fn create_key(
    state: &State,
    ring: &str,
    req: &Request,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let id = req
        .query("cryptoKeyId")
        .ok_or_else(|| invalid("cryptoKeyId is required"))?;
    if !valid_id(id) {
        return Err(invalid(format!(
            "cryptoKeyId {id:?} must match [a-zA-Z0-9_-]{{1,63}}"
        )));
    }
    if !read(&state.gcp).rings.contains_key(ring) {
        return Err(not_found(&format!("KeyRing {ring}")));
    }
    let purpose = parse_enum(
        b.get("purpose").unwrap_or(&Value::Null),
        PURPOSES,
        "purpose",
    )
    .map_err(|_| invalid("purpose is required (ENCRYPT_DECRYPT or ASYMMETRIC_SIGN)"))?;
    let template = b.get("versionTemplate").and_then(Value::as_object);
    let algorithm = match template.and_then(|t| t.get("algorithm")) {
        Some(v) => parse_alg(v)?,
        None if purpose == ENCRYPT_DECRYPT => 1,
        None => {
            return Err(invalid(
                "versionTemplate.algorithm is required for ASYMMETRIC_SIGN",
            ))
        }
    };
    let protection = match template.and_then(|t| t.get("protectionLevel")) {
        Some(v) => parse_enum(v, PROTECTION, "versionTemplate.protectionLevel")?,
        None => SOFTWARE,
    };
    if !matches!(protection, 1 | 2 | EXTERNAL_VPC) {
        return Err(invalid(
            "protectionLevel must be SOFTWARE, HSM or EXTERNAL_VPC (EXTERNAL keys are not emulated)",
        ));
    }
    let a = alg_by_num(algorithm).ok_or_else(|| invalid("unsupported algorithm"))?;
    if a.purpose != purpose {
        return Err(invalid(format!(
            "Algorithm {} is not valid for purpose {}.",
            a.name,
            purpose_name(purpose).unwrap_or("?")
        )));
    }
    let backend = match b.get("cryptoKeyBackend") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("cryptoKeyBackend must be a string")),
    };
    let skip = req.query("skipInitialVersionCreation") == Some("true");
    let backend = if protection == EXTERNAL_VPC {
        if purpose != ASYMMETRIC_SIGN {
            return Err(invalid(
                "EXTERNAL_VPC keys in the emulator must have purpose ASYMMETRIC_SIGN",
            ));
        }
        let mode = gcp_ekm::check_backend(state, ring, backend)?;
        if mode == gcp_ekm::MANUAL && !skip {
            return Err(invalid(format!(
                "skipInitialVersionCreation must be true: {backend} is in MANUAL mode, so versions are created with externalProtectionLevelOptions.ekmConnectionKeyPath"
            )));
        }
        Some(backend.to_string())
    } else if !backend.is_empty() {
        return Err(invalid(
            "cryptoKeyBackend is only for EXTERNAL_VPC keys (versionTemplate.protectionLevel)",
        ));
    } else {
        None
    };
    let name = format!("{ring}/cryptoKeys/{id}");
    let mut key = GcpKey {
        name: name.clone(),
        purpose,
        algorithm,
        protection,
        created: now(),
        versions: Vec::new(),
        primary: None,
        backend,
    };
    if !skip {
        let mut v = if protection == EXTERNAL_VPC {
            external_version(state, &key, None).await?
        } else {
            new_version(&key, None, ENABLED)
                .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e))?
        };
        v.number = 1;
        key.versions.push(v);
        if purpose == ENCRYPT_DECRYPT {
            key.primary = Some(1);
        }
    }
    let out = key_json(&key, enc);
    let mut store = write(&state.gcp);
    if store.keys.contains_key(&name) {
        return Err(already_exists(&format!("CryptoKey {name}")));
    }
    store.keys.insert(name, key);
    drop(store);
    state.persist();
    Ok(out)
}

/// Routes one request; returns (operation name, result).
/// The operation name of a request that names none.
const UNKNOWN: &str = "unknown";

async fn route(
    state: &State,
    req: &Request,
    corrupt: bool,
    enc: Enc,
    op_only: bool,
) -> (&'static str, Result<Value, GcpError>) {
    let Some(rest) = req.path.strip_prefix("/v1/") else {
        return (UNKNOWN, Err(not_found(&format!("path {}", req.path))));
    };
    let (resource, verb) = match rest.rsplit_once('/') {
        Some((_, last)) if last.contains(':') => {
            let (r, v) = rest.rsplit_once(':').unwrap_or((rest, ""));
            (r, Some(v))
        }
        _ => (rest, None),
    };
    let segs: Vec<&str> = resource.split('/').collect();
    let m = &req.method;
    let bad_path = || (UNKNOWN, Err(not_found(&format!("path {}", req.path))));
    if segs.len() < 5 || segs[0] != "projects" || segs[2] != "locations" {
        return bad_path();
    }
    let ekm_op = gcp_ekm::operation(&segs, m, verb);
    if ekm_op.is_none() && segs[4] != "keyRings" {
        return bad_path();
    }
    let op: &'static str = if let Some(op) = ekm_op {
        op
    } else {
        match (segs.len(), m, verb) {
            (5, &Method::GET, None) => "listKeyRings",
            (5, &Method::POST, None) => "createKeyRing",
            (6, &Method::GET, None) => "getKeyRing",
            (7, &Method::GET, None) if segs[6] == "cryptoKeys" => "listCryptoKeys",
            (7, &Method::POST, None) if segs[6] == "cryptoKeys" => "createCryptoKey",
            (8, &Method::GET, None) if segs[6] == "cryptoKeys" => "getCryptoKey",
            (8, &Method::POST, Some("encrypt")) if segs[6] == "cryptoKeys" => "encrypt",
            (8, &Method::POST, Some("decrypt")) if segs[6] == "cryptoKeys" => "decrypt",
            (9, &Method::GET, None) if segs[8] == "cryptoKeyVersions" => "listCryptoKeyVersions",
            (9, &Method::POST, None) if segs[8] == "cryptoKeyVersions" => "createCryptoKeyVersion",
            (10, &Method::GET, None) if segs[8] == "cryptoKeyVersions" => "getCryptoKeyVersion",
            (10, &Method::PATCH, None) if segs[8] == "cryptoKeyVersions" => {
                "updateCryptoKeyVersion"
            }
            (10, &Method::POST, Some("asymmetricSign")) if segs[8] == "cryptoKeyVersions" => {
                "asymmetricSign"
            }
            (11, &Method::GET, None)
                if segs[8] == "cryptoKeyVersions" && segs[10] == "publicKey" =>
            {
                "getPublicKey"
            }
            _ => return bad_path(),
        }
    };
    if op_only {
        return (op, Ok(Value::Null));
    }
    if req.too_large {
        return (
            op,
            Err(gerr(
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_ARGUMENT",
                format!("request body exceeds {} bytes", crate::MAX_BODY),
            )),
        );
    }
    let b = match json_object(&req.body) {
        Ok(b) => b,
        Err(e) => return (op, Err(invalid(e))),
    };
    let ring = segs.get(..6).map(|s| s.join("/")).unwrap_or_default();
    let key = segs.get(..8).map(|s| s.join("/")).unwrap_or_default();
    let result = match op {
        "listKeyRings" => {
            let parent = segs[..4].join("/") + "/keyRings/";
            let rings: Vec<Value> = read(&state.gcp)
                .rings
                .iter()
                .filter(|(n, _)| n.starts_with(&parent))
                .map(|(n, t)| json!({"name": n, "createTime": rfc3339(*t)}))
                .collect();
            Ok(json!({"totalSize": rings.len(), "keyRings": rings}))
        }
        "createKeyRing" => (|| {
            let id = req
                .query("keyRingId")
                .ok_or_else(|| invalid("keyRingId is required"))?;
            if !valid_id(id) {
                return Err(invalid(format!(
                    "keyRingId {id:?} must match [a-zA-Z0-9_-]{{1,63}}"
                )));
            }
            let name = format!("{}/keyRings/{id}", segs[..4].join("/"));
            let t = now();
            let mut store = write(&state.gcp);
            if store.rings.contains_key(&name) {
                return Err(already_exists(&format!("KeyRing {name}")));
            }
            store.rings.insert(name.clone(), t);
            drop(store);
            state.persist();
            Ok(json!({"name": name, "createTime": rfc3339(t)}))
        })(),
        "getKeyRing" => read(&state.gcp)
            .rings
            .get(&ring)
            .map(|t| json!({"name": ring, "createTime": rfc3339(*t)}))
            .ok_or_else(|| not_found(&format!("KeyRing {ring}"))),
        "listCryptoKeys" => {
            if !read(&state.gcp).rings.contains_key(&ring) {
                Err(not_found(&format!("KeyRing {ring}")))
            } else {
                let prefix = format!("{ring}/cryptoKeys/");
                let keys: Vec<Value> = read(&state.gcp)
                    .keys
                    .values()
                    .filter(|k| k.name.starts_with(&prefix))
                    .map(|k| key_json(k, enc))
                    .collect();
                Ok(json!({"totalSize": keys.len(), "cryptoKeys": keys}))
            }
        }
        "createCryptoKey" => create_key(state, &ring, req, &b, enc).await,
        "getCryptoKey" => read(&state.gcp)
            .keys
            .get(&key)
            .map(|k| key_json(k, enc))
            .ok_or_else(|| not_found(&format!("CryptoKey {key}"))),
        "encrypt" => encrypt(state, &key, &b, enc),
        "decrypt" => decrypt(state, &key, &b, enc),
        "listCryptoKeyVersions" => read(&state.gcp)
            .keys
            .get(&key)
            .map(|k| {
                let vs: Vec<Value> = k.versions.iter().map(|v| version_json(k, v, enc)).collect();
                json!({"totalSize": vs.len(), "cryptoKeyVersions": vs})
            })
            .ok_or_else(|| not_found(&format!("CryptoKey {key}"))),
        "createCryptoKeyVersion" => create_version(state, &key, &b, enc).await,
        "getCryptoKeyVersion" => {
            find_version(state, &key, segs[9]).map(|(k, v)| version_json(&k, &v, enc))
        }
        "updateCryptoKeyVersion" => (|| {
            let mask = req.query("updateMask").unwrap_or("");
            if mask.split(',').any(|f| f != "state") || mask.is_empty() {
                return Err(invalid(format!(
                    "updateMask {mask:?}: only \"state\" can be updated"
                )));
            }
            let st = parse_enum(b.get("state").unwrap_or(&Value::Null), STATES, "state")?;
            if !matches!(st, ENABLED | DISABLED) {
                return Err(invalid("state can only be set to ENABLED or DISABLED"));
            }
            let n: u32 = segs[9].parse().map_err(|_| not_found("CryptoKeyVersion"))?;
            let mut store = write(&state.gcp);
            let k = store
                .keys
                .get_mut(&key)
                .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
            let idx = k
                .versions
                .iter()
                .position(|v| v.number == n)
                .ok_or_else(|| {
                    not_found(&format!("CryptoKeyVersion {key}/cryptoKeyVersions/{n}"))
                })?;
            if !matches!(k.versions[idx].state, ENABLED | DISABLED) {
                return Err(precondition(
                    "the version is destroyed or scheduled for destruction",
                ));
            }
            k.versions[idx].state = st;
            let out = version_json(k, &k.versions[idx], enc);
            drop(store);
            state.persist();
            Ok(out)
        })(),
        "asymmetricSign" => asymmetric_sign(state, &key, segs[9], &b, enc, corrupt).await,
        "getPublicKey" => public_key(state, &key, segs[9], enc).await,
        op if ekm_op.is_some() => gcp_ekm::handle(state, op, &segs, req, &b, enc).await,
        _ => Err(not_found(&format!("path {}", req.path))),
    };
    (op, result)
}

pub(crate) fn reply(result: Result<Value, GcpError>) -> Reply {
    match result {
        Ok(v) => Reply::Send(crate::json_response(StatusCode::OK, &v)),
        Err(e) => Reply::Send(crate::json_response(
            e.code,
            &json!({"error": {"code": e.code.as_u16(), "message": e.message, "status": e.status}}),
        )),
    }
}

pub(crate) fn fault_error(e: FaultError) -> GcpError {
    match e {
        FaultError::Throttle => gerr(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Cryptographic requests'.",
        ),
        FaultError::Unavailable => gerr(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ),
        FaultError::Internal => gerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        ),
    }
}

/// Handles one Google Cloud KMS request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    let enc = Enc {
        ints: req
            .query("$alt")
            .is_some_and(|a| a.contains("enum-encoding=int")),
    };
    if let Some(token) = &state.config.gcp_token {
        let got = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if got != Some(token.as_str()) {
            return reply(Err(gerr(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )));
        }
    }
    let (op, early) = route(state, &req, false, enc, true).await;
    if op == UNKNOWN {
        // Refused before anything is counted: counters hold real operations only.
        return reply(early);
    }
    let corrupt =
        match crate::inject_faults(state, "gcp", op, None, |e| reply(Err(fault_error(e)))).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let (_, result) = route(state, &req, corrupt, enc, false).await;
    reply(result)
}
