//! Azure Key Vault keys API over HTTPS with challenge authentication.

mod crypto_ops;
mod lifecycle;
mod rbac;
mod seed;
pub mod store;

pub use seed::{seed_key, Azure};

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::azure::store::{AzureKey, AzureVersion};
use crate::crypto::{self, KeyKind, Material};
use crate::faults::FaultError;
use crate::state::{read, write, State};
use crate::util::{b64url, json_object};
use crate::{Reply, Request};

/// An error answer: `{"error":{code,message}}`.
#[derive(Debug)]
pub struct AzError {
    status: StatusCode,
    code: &'static str,
    pub(crate) message: String,
    /// `error.innererror.code`, when Key Vault gives one.
    inner: Option<&'static str>,
}

fn aerr(status: StatusCode, code: &'static str, message: impl Into<String>) -> AzError {
    AzError {
        status,
        code,
        message: message.into(),
        inner: None,
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
            rotation_policy: None,
        });
    key.kty = kty.to_string();
    key.versions.push(version);
    drop(store);
    state.persist();
    id
}

fn attributes(v: &AzureVersion) -> Value {
    let mut a = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": lifecycle::RECOVERABLE_DAYS,
    });
    if let Some(exp) = v.exp {
        a["exp"] = json!(exp);
    }
    if let Some(nbf) = v.nbf {
        a["nbf"] = json!(nbf);
    }
    a
}

/// `attributes.enabled`, `.exp` and `.nbf` of a request body, each when
/// given.
type Validity = (Option<bool>, Option<u64>, Option<u64>);

/// `attributes.enabled`, `.exp` and `.nbf` of a request body.
fn validity(b: &Map<String, Value>) -> Result<Validity, AzError> {
    let Some(attrs) = b.get("attributes") else {
        return Ok((None, None, None));
    };
    let attrs = match attrs {
        Value::Object(a) => a,
        Value::Null => return Ok((None, None, None)),
        _ => return Err(bad("attributes must be an object.")),
    };
    let enabled = match attrs.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(e)) => Some(*e),
        Some(_) => return Err(bad("attributes.enabled must be a boolean.")),
    };
    let time = |f: &str| match attrs.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("attributes.{f} must be a time in Unix seconds."))),
    };
    let (exp, nbf) = (time("exp")?, time("nbf")?);
    if let (Some(e), Some(n)) = (exp, nbf) {
        if n >= e {
            return Err(bad("attributes.nbf must be before attributes.exp."));
        }
    }
    Ok((enabled, exp, nbf))
}

/// `tags` of a request body.
fn tags(b: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, AzError> {
    match b.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(t)) => {
            if t.len() > 15 {
                return Err(bad("A key takes at most 15 tags."));
            }
            t.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if k.len() <= 512 && s.len() <= 512 => {
                        Ok((k.clone(), s.clone()))
                    }
                    Value::String(_) => {
                        Err(bad("Tag names and values take at most 512 characters."))
                    }
                    _ => Err(bad(format!("Tag {k:?} must be a string."))),
                })
                .collect::<Result<_, _>>()
                .map(Some)
        }
        Some(_) => Err(bad("tags must be an object of strings.")),
    }
}

fn check_name(name: &str) -> Result<(), AzError> {
    if name.is_empty()
        || name.len() > 127
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return Err(bad(format!(
            "The key name {name:?} is invalid (1-127 letters, digits and dashes)."
        )));
    }
    Ok(())
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
    let mut out = json!({"key": jwk, "attributes": attributes(v)});
    if !v.tags.is_empty() {
        out["tags"] = json!(v.tags);
    }
    out
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

fn create(state: &State, base: &str, name: &str, b: &Map<String, Value>) -> Result<Value, AzError> {
    check_name(name)?;
    lifecycle::check_not_deleted(state, name)?;
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
    let material = Material::generate(kind).map_err(|e| {
        aerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?;
    add_new_version(state, base, name, kty, b, ops, material)
}

/// Adds a version made by a create or import body (its attributes, tags
/// and operations; `exp` from the key's rotation policy when the body sets
/// none) and answers with the key's bundle.
fn add_new_version(
    state: &State,
    base: &str,
    name: &str,
    kty: &str,
    b: &Map<String, Value>,
    key_ops: Vec<String>,
    material: Material,
) -> Result<Value, AzError> {
    let (enabled, exp, nbf) = validity(b)?;
    let t = state.now();
    let exp = exp.or_else(|| {
        let policy_expiry = read(&state.azure)
            .keys
            .get(name)
            .and_then(|k| k.rotation_policy.as_ref()?.expiry_time.clone());
        policy_expiry
            .and_then(|e| lifecycle::iso_duration(&e).ok())
            .map(|secs| t + secs)
    });
    let version = AzureVersion {
        version: new_version_id(),
        enabled: enabled.unwrap_or(true),
        created: t,
        updated: t,
        key_ops,
        exp,
        nbf,
        tags: tags(b)?.unwrap_or_default(),
        material: Arc::new(material),
    };
    add_version(state, name, kty, version);
    let (k, v) = find(state, name, "")?;
    Ok(bundle(base, &k, &v))
}

/// The bundle of a key's newest version.
fn latest_bundle(base: &str, k: &AzureKey) -> Value {
    k.versions
        .last()
        .map(|v| bundle(base, k, v))
        .unwrap_or_else(|| json!({}))
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
    let (enabled, exp, nbf) = validity(b)?;
    if let Some(e) = enabled {
        v.enabled = e;
    }
    if exp.is_some() {
        v.exp = exp;
    }
    if nbf.is_some() {
        v.nbf = nbf;
    }
    if let (Some(e), Some(n)) = (v.exp, v.nbf) {
        if n >= e {
            return Err(bad("attributes.nbf must be before attributes.exp."));
        }
    }
    if let Some(t) = tags(b)? {
        v.tags = t;
    }
    if let Some(Value::Array(ops)) = b.get("key_ops") {
        v.key_ops = ops
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
    }
    v.updated = state.now();
    let vc = v.clone();
    let kc = k.clone();
    drop(store);
    state.persist();
    Ok(bundle(base, &kc, &vc))
}

fn set_policy(
    state: &State,
    base: &str,
    name: &str,
    b: &Map<String, Value>,
) -> Result<Value, AzError> {
    let t = state.now();
    let mut store = write(&state.azure);
    let k = store.keys.get_mut(name).ok_or_else(|| not_found(name))?;
    let policy = lifecycle::parse_policy(b, t, k.rotation_policy.as_ref())?;
    let out = lifecycle::policy_json(base, name, Some(&policy));
    k.rotation_policy = Some(policy);
    drop(store);
    state.persist();
    Ok(out)
}

fn reply(result: Result<Value, AzError>) -> Reply {
    match result {
        Ok(v) => Reply::Send(crate::json_response(StatusCode::OK, &v)),
        Err(e) => {
            let mut body = json!({"error": {"code": e.code, "message": e.message}});
            if let Some(inner) = e.inner {
                body["error"]["innererror"] = json!({"code": inner});
            }
            Reply::Send(crate::json_response(e.status, &body))
        }
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
    if let Some(rest) = path.strip_prefix("/deletedkeys") {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let op = match (method, parts.as_slice()) {
            (&Method::GET, [""]) => "listDeletedKeys",
            (&Method::GET, [_]) => "getDeletedKey",
            (&Method::DELETE, [_]) => "purgeDeletedKey",
            (&Method::POST, [_, "recover"]) => "recoverDeletedKey",
            _ => return None,
        };
        return Some((op, parts[0].to_string(), String::new()));
    }
    let rest = path.strip_prefix("/keys")?;
    if rest.is_empty() || rest == "/" {
        return (method == Method::GET).then(|| ("listKeys", String::new(), String::new()));
    }
    let parts: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    let name = parts[0].to_string();
    let op = match (method, parts.as_slice()) {
        (&Method::POST, [_, "create"]) => "createKey",
        (&Method::POST, [_, "rotate"]) => "rotateKey",
        (&Method::GET, [_, "rotationpolicy"]) => "getRotationPolicy",
        (&Method::PUT, [_, "rotationpolicy"]) => "updateRotationPolicy",
        (&Method::PUT, [_]) => "importKey",
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
        (
            "getKey" | "updateKey" | "sign" | "verify" | "wrapKey" | "unwrapKey" | "encrypt"
            | "decrypt",
            [_, v, ..],
        ) => v.to_string(),
        _ => String::new(),
    };
    Some((op, name, version))
}

/// One page of a list (`maxresults`, 1 to 25; `$skiptoken` from the
/// previous page's `nextLink`).
fn page(req: &Request, base: &str, items: Vec<Value>) -> Result<Value, AzError> {
    let max = match req.query("maxresults") {
        None => 25,
        Some(m) => match m.parse::<usize>() {
            Ok(n @ 1..=25) => n,
            _ => return Err(bad(format!("maxresults {m:?} is out of range: 1 to 25."))),
        },
    };
    let skip = match req.query("$skiptoken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| bad(format!("The skip token {t:?} is invalid.")))?,
    };
    let end = (skip + max).min(items.len());
    let next = (end < items.len()).then(|| {
        format!(
            "{base}{}?api-version={}&$skiptoken={end}&maxresults={max}",
            req.path,
            req.query("api-version").unwrap_or("7.5")
        )
    });
    let value: Vec<Value> = items
        .get(skip.min(end)..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    Ok(json!({"value": value, "nextLink": next}))
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
    } || (!token.is_empty()
        && read(&state.azure)
            .identities
            .iter()
            .any(|i| i.token == token));
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
    lifecycle::sweep(state);
    if let Err(e) = rbac::authorize(&read(&state.azure), token, op, &name) {
        return reply(Err(e));
    }
    let result = match op {
        "listKeys" => {
            let items: Vec<Value> = read(&state.azure)
                .keys
                .values()
                .filter_map(|k| {
                    k.versions.last().map(|v| {
                        let mut item = json!({"kid": format!("{base}/keys/{}", k.name), "attributes": attributes(v)});
                        if !v.tags.is_empty() {
                            item["tags"] = json!(v.tags);
                        }
                        item
                    })
                })
                .collect();
            page(&req, &base, items)
        }
        "listKeyVersions" => {
            let items = read(&state.azure).keys.get(&name).map(|k| {
                k.versions
                    .iter()
                    .map(|v| json!({"kid": format!("{base}/keys/{}/{}", k.name, v.version), "attributes": attributes(v)}))
                    .collect::<Vec<Value>>()
            });
            match items {
                Some(items) => page(&req, &base, items),
                None => Err(not_found(&name)),
            }
        }
        "createKey" => create(state, &base, &name, &b),
        "importKey" => lifecycle::import(state, &base, &name, &b),
        "getKey" => find(state, &name, &version).map(|(k, v)| bundle(&base, &k, &v)),
        "updateKey" => update(state, &base, &name, &version, &b),
        "deleteKey" => lifecycle::delete(state, &base, &name),
        "rotateKey" => lifecycle::rotate(state, &base, &name),
        "getRotationPolicy" => read(&state.azure)
            .keys
            .get(&name)
            .map(|k| lifecycle::policy_json(&base, &name, k.rotation_policy.as_ref()))
            .ok_or_else(|| not_found(&name)),
        "updateRotationPolicy" => set_policy(state, &base, &name, &b),
        "listDeletedKeys" => page(&req, &base, lifecycle::list_deleted(state, &base)),
        "getDeletedKey" => lifecycle::get_deleted(state, &base, &name),
        "recoverDeletedKey" => lifecycle::recover(state, &base, &name),
        "purgeDeletedKey" => match lifecycle::purge(state, &name) {
            Ok(()) => {
                let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                return Reply::Send(r);
            }
            Err(e) => Err(e),
        },
        other => crypto_ops::key_op(state, &base, &name, &version, other, &b, corrupt),
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
        assert_eq!(c(Method::PUT, "/keys/ca").as_deref(), Some("importKey ca "));
        assert_eq!(
            c(Method::POST, "/keys/ca/rotate").as_deref(),
            Some("rotateKey ca ")
        );
        assert_eq!(
            c(Method::PUT, "/keys/ca/rotationpolicy").as_deref(),
            Some("updateRotationPolicy ca ")
        );
        assert_eq!(
            c(Method::GET, "/deletedkeys").as_deref(),
            Some("listDeletedKeys  ")
        );
        assert_eq!(
            c(Method::POST, "/deletedkeys/ca/recover").as_deref(),
            Some("recoverDeletedKey ca ")
        );
        assert_eq!(
            c(Method::DELETE, "/deletedkeys/ca").as_deref(),
            Some("purgeDeletedKey ca ")
        );
        assert_eq!(c(Method::PUT, "/keys/ca/v1"), None);
        assert_eq!(c(Method::POST, "/deletedkeys/ca"), None);
    }
}
