//! Azure Key Vault keys API over HTTPS with challenge authentication.

mod seed;
pub mod store;

pub use seed::{seed_key, Azure};

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::azure::store::{AzureKey, AzureVersion};
use crate::crypto::{self, EcFormat, Hash, KeyKind, Material, Scheme};
use crate::faults::FaultError;
use crate::state::{now, read, write, State};
use crate::util::{b64url, json_object, unb64url};
use crate::{Reply, Request};

/// An error answer: `{"error":{code,message}}`.
#[derive(Debug)]
pub struct AzError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn aerr(status: StatusCode, code: &'static str, message: impl Into<String>) -> AzError {
    AzError {
        status,
        code,
        message: message.into(),
    }
}

fn bad(message: impl Into<String>) -> AzError {
    aerr(StatusCode::BAD_REQUEST, "BadParameter", message)
}

fn not_found(name: &str) -> AzError {
    aerr(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        format!("A key with (name/id) {name} was not found in this key vault."),
    )
}

pub(super) fn kind_for(
    kty: &str,
    crv: Option<&str>,
    size: Option<usize>,
) -> Result<KeyKind, String> {
    match kty {
        "EC" | "EC-HSM" => match crv.unwrap_or("P-256") {
            "P-256" => Ok(KeyKind::P256),
            "P-384" => Ok(KeyKind::P384),
            "P-521" => Ok(KeyKind::P521),
            other => Err(format!(
                "The specified curve {other:?} is not supported (P-256, P-384, P-521)."
            )),
        },
        "RSA" | "RSA-HSM" => match size.unwrap_or(2048) {
            n @ (2048 | 3072 | 4096) => Ok(KeyKind::Rsa(n)),
            n => Err(format!(
                "The specified RSA key size {n} is not supported (2048, 3072, 4096)."
            )),
        },
        other => Err(format!(
            "The specified key type {other:?} is not supported (EC, EC-HSM, RSA, RSA-HSM)."
        )),
    }
}

pub(super) fn default_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = if kty.starts_with("EC") {
        &["sign", "verify"]
    } else {
        &[
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
            "encrypt",
            "decrypt",
        ]
    };
    ops.iter().map(|s| s.to_string()).collect()
}

pub(super) fn new_version_id() -> String {
    hex::encode(crypto::random_bytes(16))
}

/// Adds a version (creating the key); returns the version id.
pub(super) fn add_version(state: &State, name: &str, kty: &str, version: AzureVersion) -> String {
    let id = version.version.clone();
    let mut store = write(&state.azure);
    let key = store
        .keys
        .entry(name.to_string())
        .or_insert_with(|| AzureKey {
            name: name.to_string(),
            kty: kty.to_string(),
            versions: Vec::new(),
        });
    key.kty = kty.to_string();
    key.versions.push(version);
    drop(store);
    state.persist();
    id
}

fn attributes(v: &AzureVersion) -> Value {
    json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    })
}

fn bundle(base: &str, k: &AzureKey, v: &AzureVersion) -> Value {
    let mut jwk = json!({
        "kid": format!("{base}/keys/{}/{}", k.name, v.version),
        "kty": k.kty,
        "key_ops": v.key_ops,
    });
    if let Some((x, y)) = v.material.ec_point() {
        let crv = match v.material.kind() {
            KeyKind::P384 => "P-384",
            KeyKind::P521 => "P-521",
            _ => "P-256",
        };
        jwk["crv"] = json!(crv);
        jwk["x"] = json!(b64url(&x));
        jwk["y"] = json!(b64url(&y));
    }
    if let Some((n, e)) = v.material.rsa_parts() {
        jwk["n"] = json!(b64url(&n));
        jwk["e"] = json!(b64url(&e));
    }
    json!({"key": jwk, "attributes": attributes(v)})
}

fn find(state: &State, name: &str, version: &str) -> Result<(AzureKey, AzureVersion), AzError> {
    let store = read(&state.azure);
    let k = store.keys.get(name).ok_or_else(|| not_found(name))?;
    let v = if version.is_empty() {
        k.versions.last()
    } else {
        k.versions.iter().find(|v| v.version == version)
    };
    let v = v.ok_or_else(|| not_found(&format!("{name}/{version}")))?;
    Ok((k.clone(), v.clone()))
}

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

fn allowed(v: &AzureVersion, op: &str) -> Result<(), AzError> {
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

fn key_op(
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
            allowed(&v, op)?;
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
            allowed(&v, ops_name)?;
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

fn create(state: &State, base: &str, name: &str, b: &Map<String, Value>) -> Result<Value, AzError> {
    if name.is_empty()
        || name.len() > 127
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return Err(bad(format!(
            "The key name {name:?} is invalid (1-127 letters, digits and dashes)."
        )));
    }
    let kty = b
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Property kty is required."))?;
    let crv = b.get("crv").and_then(Value::as_str);
    let size = b
        .get("key_size")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let kind = kind_for(kty, crv, size).map_err(bad)?;
    let ops = match b.get("key_ops") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|o| {
                o.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("key_ops must be strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => default_ops(kty),
    };
    let enabled = b
        .get("attributes")
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let material = Material::generate(kind).map_err(|e| {
        aerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?;
    let t = now();
    let version = AzureVersion {
        version: new_version_id(),
        enabled,
        created: t,
        updated: t,
        key_ops: ops,
        material: Arc::new(material),
    };
    add_version(state, name, kty, version);
    let (k, v) = find(state, name, "")?;
    Ok(bundle(base, &k, &v))
}

fn update(
    state: &State,
    base: &str,
    name: &str,
    version: &str,
    b: &Map<String, Value>,
) -> Result<Value, AzError> {
    let mut store = write(&state.azure);
    let k = store.keys.get_mut(name).ok_or_else(|| not_found(name))?;
    let v = if version.is_empty() {
        k.versions.last_mut()
    } else {
        k.versions.iter_mut().find(|v| v.version == version)
    }
    .ok_or_else(|| not_found(&format!("{name}/{version}")))?;
    if let Some(attrs) = b.get("attributes") {
        match attrs.get("enabled") {
            Some(Value::Bool(e)) => v.enabled = *e,
            None | Some(Value::Null) => {}
            Some(_) => return Err(bad("attributes.enabled must be a boolean")),
        }
    }
    if let Some(Value::Array(ops)) = b.get("key_ops") {
        v.key_ops = ops
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
    }
    v.updated = now();
    let vc = v.clone();
    let kc = k.clone();
    drop(store);
    state.persist();
    Ok(bundle(base, &kc, &vc))
}

fn reply(result: Result<Value, AzError>) -> Reply {
    match result {
        Ok(v) => Reply::Send(crate::json_response(StatusCode::OK, &v)),
        Err(e) => Reply::Send(crate::json_response(
            e.status,
            &json!({"error": {"code": e.code, "message": e.message}}),
        )),
    }
}

fn fault_error(e: FaultError) -> AzError {
    match e {
        FaultError::Throttle => aerr(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received.",
        ),
        FaultError::Unavailable => aerr(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is unavailable.",
        ),
        FaultError::Internal => aerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal error occurred.",
        ),
    }
}

/// (operation, key name, version) for a path, or None.
fn classify(method: &Method, path: &str) -> Option<(&'static str, String, String)> {
    let rest = path.strip_prefix("/keys")?;
    if rest.is_empty() || rest == "/" {
        return (method == Method::GET).then(|| ("listKeys", String::new(), String::new()));
    }
    let parts: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    let name = parts[0].to_string();
    let op = match (method, parts.as_slice()) {
        (&Method::POST, [_, "create"]) => "createKey",
        (&Method::GET, [_]) | (&Method::GET, [_, ""]) => "getKey",
        (&Method::DELETE, [_]) => "deleteKey",
        (&Method::GET, [_, "versions"]) => "listKeyVersions",
        (&Method::GET, [_, _]) => "getKey",
        (&Method::PATCH, [_, _]) | (&Method::PATCH, [_]) => "updateKey",
        (&Method::POST, [_, _, op]) => match *op {
            "sign" => "sign",
            "verify" => "verify",
            "wrapkey" | "wrapKey" => "wrapKey",
            "unwrapkey" | "unwrapKey" => "unwrapKey",
            "encrypt" => "encrypt",
            "decrypt" => "decrypt",
            _ => return None,
        },
        _ => return None,
    };
    let version = match (op, parts.as_slice()) {
        ("listKeyVersions" | "createKey", _) => String::new(),
        (_, [_, v, ..]) => v.to_string(),
        _ => String::new(),
    };
    Some((op, name, version))
}

/// Handles one Azure Key Vault request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    let base = format!("https://{}", req.header("host").unwrap_or("localhost"));
    match req.query("api-version") {
        Some(v) if v.starts_with("7.") || v.starts_with("2025-") || v.starts_with("2026-") => {}
        Some(v) => {
            return reply(Err(bad(format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version (2025-07-01)."
            ))))
        }
        None => return reply(Err(bad("The api-version query parameter is required."))),
    }
    let Some(auth) = req.header("authorization") else {
        state
            .faults
            .on_request(crate::Service::Azure, "challenge", None);
        let mut r = crate::json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}),
        );
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"{}\"",
            state.config.azure_challenge_resource
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
        }
        return Reply::Send(r);
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or("");
    let ok = match &state.config.azure_token {
        Some(t) => token == t,
        None => !token.is_empty(),
    };
    if !ok {
        return reply(Err(aerr(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10032: Invalid issuer or token.",
        )));
    }
    let Some((op, name, version)) = classify(&req.method, &req.path) else {
        return reply(Err(aerr(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "{} {} is not a Key Vault keys operation.",
                req.method, req.path
            ),
        )));
    };
    let corrupt = match crate::inject_faults(state, crate::Service::Azure, op, None, |e| {
        reply(Err(fault_error(e)))
    })
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    if req.too_large {
        return reply(Err(aerr(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!("request body exceeds {} bytes", crate::MAX_BODY),
        )));
    }
    let b = match json_object(&req.body) {
        Ok(b) => b,
        Err(e) => return reply(Err(bad(e))),
    };
    let result = match op {
        "listKeys" => {
            let store = read(&state.azure);
            let items: Vec<Value> = store
                .keys
                .values()
                .filter_map(|k| {
                    k.versions.last().map(|v| {
                        json!({"kid": format!("{base}/keys/{}", k.name), "attributes": attributes(v)})
                    })
                })
                .collect();
            Ok(json!({"value": items, "nextLink": null}))
        }
        "listKeyVersions" => read(&state.azure)
            .keys
            .get(&name)
            .map(|k| {
                let items: Vec<Value> = k
                    .versions
                    .iter()
                    .map(|v| json!({"kid": format!("{base}/keys/{}/{}", k.name, v.version), "attributes": attributes(v)}))
                    .collect();
                json!({"value": items, "nextLink": null})
            })
            .ok_or_else(|| not_found(&name)),
        "createKey" => create(state, &base, &name, &b),
        "getKey" => find(state, &name, &version).map(|(k, v)| bundle(&base, &k, &v)),
        "updateKey" => update(state, &base, &name, &version, &b),
        "deleteKey" => {
            let removed = write(&state.azure).keys.remove(&name);
            match removed {
                Some(k) => {
                    state.persist();
                    let t = now();
                    let mut out = k.versions.last().map(|v| bundle(&base, &k, v)).unwrap_or_else(|| json!({}));
                    out["recoveryId"] = json!(format!("{base}/deletedkeys/{name}"));
                    out["deletedDate"] = json!(t);
                    out["scheduledPurgeDate"] = json!(t + 90 * 86_400);
                    Ok(out)
                }
                None => Err(not_found(&name)),
            }
        }
        other => key_op(state, &base, &name, &version, other, &b, corrupt),
    };
    reply(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let c = |m: Method, p: &str| classify(&m, p).map(|(o, n, v)| format!("{o} {n} {v}"));
        assert_eq!(c(Method::GET, "/keys").as_deref(), Some("listKeys  "));
        assert_eq!(c(Method::GET, "/keys/ca").as_deref(), Some("getKey ca "));
        assert_eq!(c(Method::GET, "/keys/ca/").as_deref(), Some("getKey ca "));
        assert_eq!(
            c(Method::GET, "/keys/ca/abc").as_deref(),
            Some("getKey ca abc")
        );
        assert_eq!(
            c(Method::POST, "/keys/ca//sign").as_deref(),
            Some("sign ca ")
        );
        assert_eq!(
            c(Method::POST, "/keys/ca/v1/wrapkey").as_deref(),
            Some("wrapKey ca v1")
        );
        assert_eq!(
            c(Method::POST, "/keys/ca/create").as_deref(),
            Some("createKey ca ")
        );
        assert_eq!(
            c(Method::GET, "/keys/ca/versions").as_deref(),
            Some("listKeyVersions ca ")
        );
        assert_eq!(c(Method::PUT, "/keys/ca"), None);
    }
}
