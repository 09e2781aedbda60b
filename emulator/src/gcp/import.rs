//! Cloud KMS import jobs and `importCryptoKeyVersion`: the job's RSA key
//! unwraps the material (RSA-OAEP of an AES-256 key that wraps the material
//! with AES-KWP, or RSA-OAEP of the material itself); a job expires three
//! days after it was made, on the emulated clock.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::crypto::{Hash, KeyKind, Material};
use crate::gcp::lifecycle::page;
use crate::gcp::model::*;
use crate::gcp::store::{GcpVersion, ImportJob};
use crate::google::{already_exists, gerr, invalid, not_found, precondition, GcpError};
use crate::state::{read, write, State};
use crate::util::rfc3339;
use crate::Request;

/// How long an import job stays ACTIVE.
const JOB_LIFETIME: u64 = 3 * 86_400;

/// ImportMethod names and numbers.
const METHOD_NAMES: &[(&str, i32)] = &[
    ("RSA_OAEP_3072_SHA1_AES_256", 1),
    ("RSA_OAEP_4096_SHA1_AES_256", 2),
    ("RSA_OAEP_3072_SHA256_AES_256", 3),
    ("RSA_OAEP_4096_SHA256_AES_256", 4),
    ("RSA_OAEP_3072_SHA256", 5),
    ("RSA_OAEP_4096_SHA256", 6),
];

/// ImportJobState names and numbers.
const JOB_STATES: &[(&str, i32)] = &[("ACTIVE", 2), ("EXPIRED", 3)];

/// (method, RSA modulus bits, OAEP hash, AES-KWP of the material).
const METHODS: &[(&str, usize, Hash, bool)] = &[
    ("RSA_OAEP_3072_SHA1_AES_256", 3072, Hash::Sha1, true),
    ("RSA_OAEP_4096_SHA1_AES_256", 4096, Hash::Sha1, true),
    ("RSA_OAEP_3072_SHA256_AES_256", 3072, Hash::Sha256, true),
    ("RSA_OAEP_4096_SHA256_AES_256", 4096, Hash::Sha256, true),
    ("RSA_OAEP_3072_SHA256", 3072, Hash::Sha256, false),
    ("RSA_OAEP_4096_SHA256", 4096, Hash::Sha256, false),
];

fn internal(e: impl std::fmt::Display) -> GcpError {
    gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
}

fn job_json(j: &ImportJob, now: u64, enc: Enc) -> Result<Value, GcpError> {
    let expire = j.created + JOB_LIFETIME;
    let state = if now >= expire { 3 } else { 2 };
    let method = name_to(METHOD_NAMES, &j.method).unwrap_or(0);
    Ok(json!({
        "name": j.name,
        "importMethod": enc.e(METHOD_NAMES, method),
        "state": enc.e(JOB_STATES, state),
        "protectionLevel": enc.e(PROTECTION, j.protection),
        "createTime": rfc3339(j.created),
        "generateTime": rfc3339(j.created),
        "expireTime": rfc3339(expire),
        "publicKey": {"pem": j.key.public_pem().map_err(internal)?},
    }))
}

/// `POST .../keyRings/R/importJobs?importJobId=ID`.
pub(super) fn create_job(
    state: &State,
    ring: &str,
    req: &Request,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let id = super::child_id(state, req, "importJobId", ring)?;
    let method = parse_enum(
        b.get("importMethod").unwrap_or(&Value::Null),
        METHOD_NAMES,
        "importMethod",
    )
    .ok()
    .and_then(|n| name_of(METHOD_NAMES, n))
    .ok_or_else(|| invalid("importMethod is required: one of the RSA_OAEP_* methods"))?;
    let (_, bits, _, _) = METHODS
        .iter()
        .find(|(m, ..)| *m == method)
        .ok_or_else(|| invalid(format!("importMethod {method:?} is not supported")))?;
    let protection = parse_enum(
        b.get("protectionLevel").unwrap_or(&Value::Null),
        PROTECTION,
        "protectionLevel",
    )
    .map_err(|_| invalid("protectionLevel is required (SOFTWARE or HSM)"))?;
    if !matches!(protection, 1 | 2) {
        return Err(invalid("protectionLevel must be SOFTWARE or HSM"));
    }
    let name = format!("{ring}/importJobs/{id}");
    if read(&state.gcp).import_jobs.contains_key(&name) {
        return Err(already_exists(&format!("ImportJob {name}")));
    }
    let key = Material::generate(KeyKind::Rsa(*bits)).map_err(internal)?;
    let job = ImportJob {
        name: name.clone(),
        method: method.to_string(),
        protection,
        created: state.now(),
        key: Arc::new(key),
    };
    let out = job_json(&job, state.now(), enc)?;
    let mut store = write(&state.gcp);
    if store.import_jobs.contains_key(&name) {
        return Err(already_exists(&format!("ImportJob {name}")));
    }
    store.import_jobs.insert(name, job);
    Ok(out)
}

/// `GET .../importJobs/ID`.
pub(super) fn get_job(state: &State, name: &str, enc: Enc) -> Result<Value, GcpError> {
    let job = read(&state.gcp)
        .import_jobs
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(&format!("ImportJob {name}")))?;
    job_json(&job, state.now(), enc)
}

/// `GET .../keyRings/R/importJobs`.
pub(super) fn list_jobs(
    state: &State,
    ring: &str,
    req: &Request,
    enc: Enc,
) -> Result<Value, GcpError> {
    if !read(&state.gcp).rings.contains_key(ring) {
        return Err(not_found(&format!("KeyRing {ring}")));
    }
    let prefix = format!("{ring}/importJobs/");
    let jobs: Vec<ImportJob> = read(&state.gcp)
        .import_jobs
        .values()
        .filter(|j| j.name.starts_with(&prefix))
        .cloned()
        .collect();
    let now = state.now();
    let items = jobs
        .iter()
        .map(|j| job_json(j, now, enc))
        .collect::<Result<Vec<_>, _>>()?;
    page(req, "importJobs", items)
}

/// The key material inside `wrapped`, per the job's method.
fn unwrap(job: &ImportJob, wrapped: &[u8]) -> Result<Vec<u8>, GcpError> {
    let (_, bits, hash, kwp) = METHODS
        .iter()
        .find(|(m, ..)| *m == job.method)
        .ok_or_else(|| internal("unknown import method"))?;
    let failed = || invalid("The wrapped key could not be unwrapped with the import job's key.");
    let rsa_len = bits / 8;
    if !kwp {
        return job
            .key
            .rsa_decrypt(Some(*hash), wrapped)
            .map_err(|_| failed());
    }
    if wrapped.len() <= rsa_len {
        return Err(invalid(format!(
            "rsaAesWrappedKey is {} bytes: it holds an RSA-OAEP block of {rsa_len} bytes and the AES-KWP wrapped key after it.",
            wrapped.len()
        )));
    }
    let (head, tail) = wrapped.split_at(rsa_len);
    let aes = job
        .key
        .rsa_decrypt(Some(*hash), head)
        .map_err(|_| failed())?;
    let aes: [u8; 32] = aes.try_into().map_err(|_| failed())?;
    aes_kw::KekAes256::from(aes)
        .unwrap_with_padding_vec(tail)
        .map_err(|_| failed())
}

/// `POST .../cryptoKeys/K/cryptoKeyVersions:import`.
pub(super) fn import_version(
    state: &State,
    key: &str,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let k = crate::gcp::crypto_ops::crypto_key(state, key)?;
    let alg = parse_alg(b.get("algorithm").unwrap_or(&Value::Null))
        .map_err(|_| invalid("algorithm is required"))?;
    if alg != k.algorithm {
        return Err(invalid(format!(
            "algorithm {} is not the key's {}",
            algorithm_name(alg).unwrap_or("?"),
            algorithm_name(k.algorithm).unwrap_or("?")
        )));
    }
    let job_name = b
        .get("importJob")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("importJob is required"))?;
    let job = read(&state.gcp)
        .import_jobs
        .get(job_name)
        .cloned()
        .ok_or_else(|| not_found(&format!("ImportJob {job_name}")))?;
    let now = state.now();
    if now >= job.created + JOB_LIFETIME {
        return Err(precondition(format!("ImportJob {job_name} has expired.")));
    }
    if job.protection != k.protection {
        return Err(precondition(format!(
            "ImportJob {job_name} has protection level {}, the key {}.",
            protection_name(job.protection).unwrap_or("?"),
            protection_name(k.protection).unwrap_or("?")
        )));
    }
    let wrapped = match (b.get("rsaAesWrappedKey"), b.get("wrappedKey")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => {
            crate::util::unb64("rsaAesWrappedKey", s).map_err(invalid)?
        }
        _ => return Err(invalid("rsaAesWrappedKey (or wrappedKey) is required")),
    };
    let plain = unwrap(&job, &wrapped)?;
    let a = alg_by_num(alg).ok_or_else(|| invalid("unsupported algorithm"))?;
    let material = if a.kind == KeyKind::Aes256 {
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "{} takes a 32-byte key, not {} bytes",
                a.name,
                plain.len()
            ))
        })?;
        Material::Aes256(bytes)
    } else {
        Material::from_pkcs8_der(&plain).map_err(|e| {
            invalid(format!(
                "The unwrapped key is not a PKCS#8 private key: {e}"
            ))
        })?
    };
    if material.kind() != a.kind {
        return Err(invalid(format!(
            "The imported key is {:?}; {} needs {:?}.",
            material.kind(),
            a.name,
            a.kind
        )));
    }
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let v = GcpVersion {
        number: k.versions.len() as u32 + 1,
        state: ENABLED,
        created: now,
        material: Some(Arc::new(material)),
        imported: Some((job_name.to_string(), now)),
        ..Default::default()
    };
    let out = version_json(k, &v, enc);
    if k.purpose == ENCRYPT_DECRYPT && k.primary.is_none() {
        k.primary = Some(v.number);
    }
    k.versions.push(v);
    drop(store);
    state.persist();
    Ok(out)
}
