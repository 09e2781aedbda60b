//! The sshca external key manager protocol (`docs/ekm-protocol.md`): HTTPS
//! with client certificates, served by several replicas sharing one key
//! store; faults can target one replica.

pub mod store;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::crypto::{self, EcFormat, Material};
use crate::ekm::store::EkmKey;
use crate::ekm::store::EkmSeed;
use crate::google::{fault_error, gerr, invalid, reply, valid_id, GcpError};
use crate::state::{read, write, State};
use crate::util::{b64, json_object, unb64, valid_path};
use crate::{Reply, Request};

/// Largest `data` to sign (bytes).
pub const MAX_DATA: usize = 65_536;

/// Creates a key named `{space}/keys/{key_id}` with a new key pair.
pub fn create_key(
    state: &State,
    space: &str,
    key_id: &str,
    algorithm: &str,
) -> Result<EkmKey, String> {
    insert_key(state, space, key_id, algorithm, true, None)
}

/// Creates a seeded key (its private key from the seed, or generated).
pub fn seed_key(state: &State, s: crate::ekm::store::EkmSeed) -> Result<(), String> {
    let what = format!("ekm key {}", s.name);
    let (space, id) = s
        .name
        .rsplit_once("/keys/")
        .ok_or_else(|| format!("{what}: expected SPACE/keys/KEY_ID"))?;
    let material = match &s.private_key {
        Some(pem) => Some(Material::from_pem(pem).map_err(|e| format!("{what}: {e}"))?),
        None => None,
    };
    insert_key(state, space, id, &s.algorithm, s.enabled, material)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

fn insert_key(
    state: &State,
    space: &str,
    key_id: &str,
    algorithm: &str,
    enabled: bool,
    material: Option<Material>,
) -> Result<EkmKey, String> {
    if !valid_path(space) {
        return Err(format!(
            "crypto space path {space:?} is not segments of [A-Za-z0-9._-] joined by /"
        ));
    }
    if !valid_id(key_id) {
        return Err(format!(
            "key id {key_id:?} must match [A-Za-z0-9_-]{{1,63}}"
        ));
    }
    let kind = if algorithm == SYMMETRIC {
        crypto::KeyKind::Aes256
    } else {
        crate::gcp::model::signing_algorithm(algorithm)
            .ok_or_else(|| format!("unknown or unsupported algorithm {algorithm:?}"))?
            .0
    };
    let name = format!("{space}/keys/{key_id}");
    if read(&state.ekm).keys.contains_key(&name) {
        return Err(format!("key {name} already exists"));
    }
    let material = match material {
        Some(m) if m.kind() != kind => {
            return Err(format!(
                "the private key is {:?}, {algorithm} needs {kind:?}",
                m.kind()
            ))
        }
        Some(m) => m,
        None => Material::generate(kind).map_err(|e| e.to_string())?,
    };
    let key = EkmKey {
        name: name.clone(),
        algorithm: algorithm.to_string(),
        enabled,
        material: Arc::new(material),
    };
    write(&state.ekm).keys.insert(name, key.clone());
    state.persist();
    Ok(key)
}

/// The algorithm of keys that wrap and unwrap (AES-256-GCM).
const SYMMETRIC: &str = "GOOGLE_SYMMETRIC_ENCRYPTION";

fn key_json(k: &EkmKey) -> Result<Value, GcpError> {
    if k.algorithm == SYMMETRIC {
        return Ok(json!({
            "name": k.name,
            "algorithm": k.algorithm,
            "state": if k.enabled { "ENABLED" } else { "DISABLED" },
        }));
    }
    let pem = k
        .material
        .public_pem()
        .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    Ok(json!({
        "name": k.name,
        "algorithm": k.algorithm,
        "state": if k.enabled { "ENABLED" } else { "DISABLED" },
        "publicKeyPem": pem,
    }))
}

fn find(state: &State, name: &str) -> Result<EkmKey, GcpError> {
    read(&state.ekm).keys.get(name).cloned().ok_or_else(|| {
        gerr(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("key {name} not found"),
        )
    })
}

/// A key that may be used: 404 when there is none, 412 when disabled.
fn find_enabled(state: &State, name: &str) -> Result<EkmKey, GcpError> {
    let k = find(state, name)?;
    if !k.enabled {
        return Err(gerr(
            StatusCode::PRECONDITION_FAILED,
            "FAILED_PRECONDITION",
            format!("key {name} is disabled"),
        ));
    }
    Ok(k)
}

/// An optional base64 field of a request body.
fn b64_field(b: &Map<String, Value>, f: &str) -> Result<Option<Vec<u8>>, GcpError> {
    match b.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => unb64(f, s).map(Some).map_err(invalid),
        Some(_) => Err(invalid(format!("{f} must be a base64 string"))),
    }
}

fn sign(
    state: &State,
    name: &str,
    b: &Map<String, Value>,
    corrupt: bool,
) -> Result<Value, GcpError> {
    let k = find_enabled(state, name)?;
    let alg = match b.get("algorithm") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(invalid("algorithm is required (a string)")),
    };
    if alg != k.algorithm {
        return Err(invalid(format!(
            "algorithm {alg} does not match the key's algorithm {}",
            k.algorithm
        )));
    }
    let (_, scheme) = crate::gcp::model::signing_algorithm(alg).ok_or_else(|| {
        gerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "unknown algorithm",
        )
    })?;
    let field = |f: &str| b64_field(b, f);
    let sig = match (field("digest")?, field("data")?) {
        (Some(_), Some(_)) => return Err(invalid("give one of digest and data, not both")),
        (None, None) => return Err(invalid("one of digest and data is required")),
        (Some(d), None) => {
            let Some(h) = scheme.hash() else {
                return Err(invalid(format!("{alg} signs data, not a digest")));
            };
            if d.len() != h.output_len() {
                return Err(invalid(format!(
                    "digest has {} bytes; {alg} takes {}",
                    d.len(),
                    h.output_len()
                )));
            }
            k.material.sign_digest(scheme, &d, EcFormat::Der)
        }
        (None, Some(data)) => {
            if data.len() > MAX_DATA {
                return Err(invalid(format!(
                    "data has {} bytes; at most {MAX_DATA}",
                    data.len()
                )));
            }
            k.material.sign_message(scheme, &data, EcFormat::Der)
        }
    };
    let mut sig =
        sig.map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    if corrupt {
        crypto::corrupt(&mut sig);
    }
    Ok(json!({"signature": b64(&sig), "name": name}))
}

/// `:wrap` and `:unwrap`: AES-256-GCM under a GOOGLE_SYMMETRIC_ENCRYPTION
/// key, with the request's additional authenticated data.
fn wrap_or_unwrap(
    state: &State,
    name: &str,
    b: &Map<String, Value>,
    wrap: bool,
) -> Result<Value, GcpError> {
    let k = find_enabled(state, name)?;
    if k.algorithm != SYMMETRIC {
        return Err(invalid(format!(
            "key {name} is {}; wrapping needs a {SYMMETRIC} key",
            k.algorithm
        )));
    }
    let field = |f: &str| b64_field(b, f);
    let aad = field("additionalAuthenticatedData")?.unwrap_or_default();
    if wrap {
        let pt = field("plaintext")?.ok_or_else(|| invalid("plaintext is required"))?;
        if pt.is_empty() || pt.len() > 8192 {
            return Err(invalid("plaintext must hold 1 to 8192 bytes"));
        }
        let ct = k
            .material
            .seal(&pt, &aad)
            .map_err(|e| gerr(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
        Ok(json!({"ciphertext": b64(&ct), "name": name}))
    } else {
        let ct = field("ciphertext")?.ok_or_else(|| invalid("ciphertext is required"))?;
        let pt = k.material.open(&ct, &aad).map_err(|_| {
            invalid(
                "the ciphertext does not decrypt under this key and additional authenticated data",
            )
        })?;
        Ok(json!({"plaintext": b64(&pt), "name": name}))
    }
}

/// What a request asks for: (operation, key name or crypto space).
fn classify(method: &Method, path: &str) -> Option<(&'static str, String)> {
    let rest = path.strip_prefix("/v1/")?;
    if rest == "health" && method == Method::GET {
        return Some(("health", String::new()));
    }
    for (suffix, op) in [(":sign", "sign"), (":wrap", "wrap"), (":unwrap", "unwrap")] {
        if let Some(name) = rest.strip_suffix(suffix) {
            return (method == Method::POST).then(|| (op, name.to_string()));
        }
    }
    if let Some(space) = rest.strip_suffix("/keys") {
        return (method == Method::POST).then(|| ("createKey", space.to_string()));
    }
    let (space, id) = rest.rsplit_once("/keys/")?;
    (method == Method::GET && valid_path(space) && valid_id(id))
        .then(|| ("getKey", rest.to_string()))
}

/// Handles one request on replica `replica`.
pub(crate) async fn handle(state: &Arc<State>, req: Request, replica: usize) -> Reply {
    if let Some(token) = &state.config.ekm_token {
        let got = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if got != Some(token.as_str()) {
            return reply(Err(gerr(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "missing or wrong bearer token",
            )));
        }
    }
    let Some((op, target)) = classify(&req.method, &req.path) else {
        return reply(Err(gerr(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no operation {} {}", req.method, req.path),
        )));
    };
    let corrupt = match crate::inject_faults(state, crate::Service::Ekm, op, Some(replica), |e| {
        reply(Err(fault_error(e)))
    })
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    if req.too_large {
        return reply(Err(gerr(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_ARGUMENT",
            format!("request body exceeds {} bytes", crate::MAX_BODY),
        )));
    }
    let body = match json_object(&req.body) {
        Ok(b) => b,
        Err(e) => return reply(Err(invalid(e))),
    };
    reply(match op {
        "health" => Ok(json!({"status": "SERVING", "replica": format!("replica-{replica}")})),
        "getKey" => find(state, &target).and_then(|k| key_json(&k)),
        "sign" => sign(state, &target, &body, corrupt),
        "wrap" => wrap_or_unwrap(state, &target, &body, true),
        "unwrap" => wrap_or_unwrap(state, &target, &body, false),
        _ => {
            let Some(id) = req.query("keyId") else {
                return reply(Err(invalid("keyId query parameter is required")));
            };
            let alg = match body.get("algorithm") {
                Some(Value::String(a)) => a.clone(),
                _ => return reply(Err(invalid("algorithm is required (a string)"))),
            };
            match create_key(state, &target, id, &alg) {
                Ok(k) => key_json(&k),
                Err(m) if m.contains("already exists") => {
                    Err(gerr(StatusCode::CONFLICT, "ALREADY_EXISTS", m))
                }
                Err(m) => Err(invalid(m)),
            }
        }
    })
}

/// The `ekm` section of the state file.
pub(crate) fn export_seed(state: &State) -> Result<Vec<EkmSeed>, String> {
    let mut seeds = Vec::new();
    let pem = |m: &Material| m.to_pem().map_err(|e| e.to_string());

    for k in read(&state.ekm).keys.values() {
        seeds.push(EkmSeed {
            name: k.name.clone(),
            algorithm: k.algorithm.clone(),
            enabled: k.enabled,
            private_key: Some(pem(&k.material)?),
            private_key_file: None,
        });
    }
    Ok(seeds)
}

/// The external key manager: replicas over HTTPS with client certificates.
#[derive(Debug)]
pub struct Ekm;

impl crate::service::Emulated for Ekm {
    const NAME: &'static str = "ekm";
    const SEED_KEYS: &'static [&'static str] = &["ekm"];
    /// Before Cloud KMS, whose EXTERNAL_VPC keys name key manager keys.
    const SEED_ORDER: u8 = 0;
    const TRANSPORT: crate::service::Transport = crate::service::Transport::MutualTls;
    type Seed = store::EkmSections;

    fn listeners(config: &crate::Config) -> usize {
        config.ekm_replicas
    }

    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String> {
        for k in seed.ekm {
            seed_key(state, k)?;
        }
        Ok(())
    }

    fn export_seed(state: &State) -> Result<Self::Seed, String> {
        Ok(store::EkmSections {
            ekm: export_seed(state)?,
        })
    }

    fn resolve_files(seed: &mut Self::Seed, base: &std::path::Path) -> Result<(), String> {
        for k in &mut seed.ekm {
            crate::seed::read_file(base, &mut k.private_key_file, &mut k.private_key)?;
        }
        Ok(())
    }

    /// Writes the CA, the server certificate and a client identity the
    /// replicas accept.
    async fn start(
        setup: &crate::service::Setup<'_>,
        urls: &[String],
    ) -> Result<crate::service::ReadyEntries, String> {
        let path = |p: std::path::PathBuf| Value::String(p.display().to_string());
        Ok(vec![
            ("ekm", json!(urls)),
            (
                "ekm_ca_cert",
                path(setup.write_pem("ekm-ca.pem", &setup.tls.ca_pem)?),
            ),
            (
                "ekm_server_cert",
                path(setup.write_pem("ekm-server.pem", &setup.tls.server_pem)?),
            ),
            (
                "ekm_client_identity",
                path(setup.write_pem("ekm-client.pem", &setup.tls.client_identity_pem)?),
            ),
        ])
    }

    async fn handle(state: &Arc<State>, req: Request, replica: usize) -> Reply {
        handle(state, req, replica).await
    }

    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &Value) -> Result<(), String> {
        crate::service::check_rpc_status(status, body)
    }
}
