//! Google Cloud KMS, REST v1 (`/v1/projects/*/locations/*/keyRings/...`),
//! with integer enums when the client asks `$alt=json;enum-encoding=int`.

mod crypto_ops;
pub mod ekm_service;
pub(crate) mod external;
mod iam;
mod import;
mod lifecycle;
pub mod link;
pub mod model;
pub(crate) mod seed;
pub mod store;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::gcp::crypto_ops::*;
use crate::gcp::model::*;
use crate::gcp::store::{GcpKey, GcpVersion};
use crate::google::{
    already_exists, fault_error, gerr, invalid, not_found, precondition, reply, valid_id, GcpError,
};
use crate::state::{read, write, State};
use crate::util::{json_object, rfc3339};
use crate::{Reply, Request};

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
        (ekm_service::MANUAL, Some(p)) => {
            if !crate::util::valid_path(&p) {
                return Err(invalid(format!(
                    "externalProtectionLevelOptions.ekmConnectionKeyPath {p:?} is not segments of [A-Za-z0-9._-] joined by /"
                )));
            }
            p
        }
        (ekm_service::MANUAL, None) => {
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
        (_, None) => external::create_external(state, &conn, alg.name).await?,
    };
    external::fetch_key(state, &conn, &path, alg.name, &key.name).await?;
    Ok(GcpVersion {
        number: 0,
        state: ENABLED,
        created: state.now(),
        material: None,
        ekm_key_path: Some(path),
        ..Default::default()
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
    let k = crypto_key(state, key)?;
    lifecycle::check_not_import_only(&k)?;
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
        new_version(&k, None, ENABLED, state.now())
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
    let id = child_id(state, req, "cryptoKeyId", ring)?;
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
    if b.get("importOnly").and_then(Value::as_bool) == Some(true) && !skip {
        return Err(invalid(
            "importOnly keys need skipInitialVersionCreation=true: their versions are imported",
        ));
    }
    let backend = if protection == EXTERNAL_VPC {
        if purpose != ASYMMETRIC_SIGN {
            return Err(invalid(
                "EXTERNAL_VPC keys in the emulator must have purpose ASYMMETRIC_SIGN",
            ));
        }
        let mode = ekm_service::check_backend(state, ring, backend)?;
        if mode == ekm_service::MANUAL && !skip {
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
        created: state.now(),
        versions: Vec::new(),
        primary: None,
        backend,
        destroy_scheduled: crate::gcp::store::DEFAULT_DESTROY_SCHEDULED,
        ..Default::default()
    };
    lifecycle::create_fields(&mut key, b)?;
    if !skip {
        let mut v = if protection == EXTERNAL_VPC {
            external_version(state, &key, None).await?
        } else {
            new_version(&key, None, ENABLED, state.now())
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

/// The id (query parameter `param`) of a new resource in the existing key
/// ring `ring`.
pub(super) fn child_id<'a>(
    state: &State,
    req: &'a Request,
    param: &str,
    ring: &str,
) -> Result<&'a str, GcpError> {
    let id = req
        .query(param)
        .ok_or_else(|| invalid(format!("{param} is required")))?;
    if !valid_id(id) {
        return Err(invalid(format!(
            "{param} {id:?} must match [a-zA-Z0-9_-]{{1,63}}"
        )));
    }
    if !read(&state.gcp).rings.contains_key(ring) {
        return Err(not_found(&format!("KeyRing {ring}")));
    }
    Ok(id)
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
    let ekm_op = ekm_service::operation(&segs, m, verb);
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
            (8, &Method::PATCH, None) if segs[6] == "cryptoKeys" => "updateCryptoKey",
            (8, &Method::POST, Some("updatePrimaryVersion")) if segs[6] == "cryptoKeys" => {
                "updateCryptoKeyPrimaryVersion"
            }
            (6, &Method::GET | &Method::POST, Some("getIamPolicy")) => "getIamPolicy",
            (8, &Method::GET | &Method::POST, Some("getIamPolicy")) if segs[6] == "cryptoKeys" => {
                "getIamPolicy"
            }
            (6, &Method::POST, Some("setIamPolicy")) => "setIamPolicy",
            (8, &Method::POST, Some("setIamPolicy")) if segs[6] == "cryptoKeys" => "setIamPolicy",
            (6, &Method::POST, Some("testIamPermissions")) => "testIamPermissions",
            (8, &Method::POST, Some("testIamPermissions")) if segs[6] == "cryptoKeys" => {
                "testIamPermissions"
            }
            (7, &Method::GET, None) if segs[6] == "importJobs" => "listImportJobs",
            (7, &Method::POST, None) if segs[6] == "importJobs" => "createImportJob",
            (8, &Method::GET, None) if segs[6] == "importJobs" => "getImportJob",
            (9, &Method::POST, Some("import")) if segs[8] == "cryptoKeyVersions" => {
                "importCryptoKeyVersion"
            }
            (10, &Method::POST, Some("destroy")) if segs[8] == "cryptoKeyVersions" => {
                "destroyCryptoKeyVersion"
            }
            (10, &Method::POST, Some("restore")) if segs[8] == "cryptoKeyVersions" => {
                "restoreCryptoKeyVersion"
            }
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
    let token = bearer(req);
    if let Err(e) = iam::authorize(state, token, op, &segs) {
        return (op, Err(e));
    }
    let result = match op {
        "listKeyRings" => {
            let parent = segs[..4].join("/") + "/keyRings/";
            let rings: Vec<Value> = read(&state.gcp)
                .rings
                .iter()
                .filter(|(n, _)| n.starts_with(&parent))
                .map(|(n, t)| json!({"name": n, "createTime": rfc3339(*t)}))
                .collect();
            lifecycle::page(req, "keyRings", rings)
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
            let t = state.now();
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
                lifecycle::page(req, "cryptoKeys", keys)
            }
        }
        "createCryptoKey" => create_key(state, &ring, req, &b, enc).await,
        "getCryptoKey" => crypto_key(state, &key).map(|k| key_json(&k, enc)),
        "encrypt" => encrypt(state, &key, &b, enc),
        "decrypt" => decrypt(state, &key, &b, enc),
        "listCryptoKeyVersions" => lifecycle::list_versions(state, &key, req, enc),
        "updateCryptoKey" => lifecycle::update_key(state, &key, req, &b, enc),
        "updateCryptoKeyPrimaryVersion" => lifecycle::update_primary(state, &key, &b, enc),
        "destroyCryptoKeyVersion" => lifecycle::destroy(state, &key, segs[9], enc),
        "restoreCryptoKeyVersion" => lifecycle::restore(state, &key, segs[9], enc),
        "getIamPolicy" => iam::get_policy(state, &segs),
        "setIamPolicy" => iam::set_policy(state, &segs, &b),
        "testIamPermissions" => iam::test_permissions(state, token, &segs, &b),
        "createImportJob" => import::create_job(state, &ring, req, &b, enc),
        "getImportJob" => import::get_job(state, &segs.join("/"), enc),
        "listImportJobs" => import::list_jobs(state, &ring, req, enc),
        "importCryptoKeyVersion" => import::import_version(state, &key, &b, enc),
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
        op if ekm_op.is_some() => ekm_service::handle(state, op, &segs, req, &b, enc).await,
        _ => Err(not_found(&format!("path {}", req.path))),
    };
    (op, result)
}

/// The bearer token of a request.
fn bearer(req: &Request) -> Option<&str> {
    req.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
}

/// Handles one Google Cloud KMS request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    let enc = Enc {
        ints: req
            .query("$alt")
            .is_some_and(|a| a.contains("enum-encoding=int")),
    };
    if let Some(token) = &state.config.gcp_token {
        let got = bearer(&req);
        let known = got.is_some_and(|g| {
            g == token.as_str() || read(&state.gcp).identities.iter().any(|i| i.token == g)
        });
        if !known {
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
    let corrupt = match crate::inject_faults(state, crate::Service::Gcp, op, None, |e| {
        reply(Err(fault_error(e)))
    })
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    lifecycle::sweep(state);
    let (_, result) = route(state, &req, corrupt, enc, false).await;
    reply(result)
}

/// Google Cloud KMS: REST v1 over plain HTTP.
#[derive(Debug)]
pub struct Gcp;

impl crate::service::Emulated for Gcp {
    const NAME: &'static str = "gcp";
    const SEED_KEYS: &'static [&'static str] = &[
        "gcp",
        "gcp_ekm_connections",
        "gcp_ekm_configs",
        "gcp_key_ring_iam",
        "gcp_identities",
    ];
    type Seed = store::GcpSections;

    /// Connections first, then the keys (EXTERNAL_VPC keys name a
    /// connection), then the configs (they name a connection).
    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String> {
        for c in seed.ekm_connections {
            ekm_service::seed_connection(state, c)?;
        }
        for k in seed.keys {
            seed::seed_key(state, k)?;
        }
        for c in seed.ekm_configs {
            ekm_service::seed_config(state, c)?;
        }
        let mut identities = seed.identities;
        identities.extend(state.config.gcp_identities.iter().cloned());
        iam::seed(state, seed.ring_iam, identities)
    }

    fn export_seed(state: &State) -> Result<Self::Seed, String> {
        seed::export_seed(state)
    }

    fn resolve_files(seed: &mut Self::Seed, base: &std::path::Path) -> Result<(), String> {
        for k in &mut seed.keys {
            for v in &mut k.versions {
                crate::seed::read_file(base, &mut v.private_key_file, &mut v.private_key)?;
            }
        }
        for c in &mut seed.ekm_connections {
            for r in &mut c.service_resolvers {
                for f in std::mem::take(&mut r.server_certificate_files) {
                    let mut pem = None;
                    crate::seed::read_file(base, &mut Some(f), &mut pem)?;
                    r.server_certificates.extend(pem);
                }
            }
        }
        Ok(())
    }

    /// Cloud KMS reaches external key managers with the emulator's client
    /// certificate.
    async fn start(
        setup: &crate::service::Setup<'_>,
        urls: &[String],
    ) -> Result<crate::service::ReadyEntries, String> {
        let (chain, key) = &setup.tls.client_identity;
        setup
            .state
            .ekm_link
            .set_identity(chain.clone(), key.clone_key());
        Ok(vec![(
            "gcp",
            Value::String(urls.first().cloned().unwrap_or_default()),
        )])
    }

    async fn handle(state: &Arc<State>, req: Request, _replica: usize) -> Reply {
        handle(state, req).await
    }

    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &Value) -> Result<(), String> {
        crate::service::check_rpc_status(status, body)
    }
}
