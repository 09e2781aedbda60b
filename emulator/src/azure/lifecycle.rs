//! Key Vault's key lifecycle: soft delete, recover and purge, rotation and
//! the rotation policy, import of a JWK, and what the emulated clock makes
//! due (purges, scheduled rotations).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::store::{AzureKey, AzureVersion, DeletedKey, LifetimeAction, RotationPolicy};
use super::{aerr, bad, bundle, new_version_id, not_found, AzError};
use crate::crypto::{KeyKind, Material};
use crate::state::{read, write, State};
use crate::util::unb64url;
use rsa::traits::PublicKeyParts;

/// Days a deleted key stays recoverable (`recoverableDays`).
pub(crate) const RECOVERABLE_DAYS: u64 = 90;

/// Seconds in an ISO 8601 duration as Key Vault takes them: `P90D`,
/// `P1Y2M`, `P2W`, `PT36H` (a year is 365 days, a month 30).
pub(super) fn iso_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an ISO 8601 duration such as P90D, P1Y or PT12H");
    let body = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match body.split_once('T') {
        Some((_, "")) => return Err(bad()),
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    if body.is_empty() {
        return Err(bad());
    }
    let date = crate::util::sum_units(date, |c| match c {
        'Y' => Some(365 * 86_400),
        'M' => Some(30 * 86_400),
        'W' => Some(7 * 86_400),
        'D' => Some(86_400),
        _ => None,
    });
    let time = crate::util::sum_units(time, |c| match c {
        'H' => Some(3600),
        'M' => Some(60),
        'S' => Some(1),
        _ => None,
    });
    date.zip(time)
        .and_then(|(d, t)| d.checked_add(t))
        .ok_or_else(bad)
}

/// Checks a rotation policy as Key Vault does.
pub(crate) fn check_policy(p: &RotationPolicy) -> Result<(), AzError> {
    let expiry = match &p.expiry_time {
        Some(e) => {
            let secs = iso_duration(e).map_err(|m| bad(format!("expiryTime: {m}")))?;
            if secs < 28 * 86_400 {
                return Err(bad(format!(
                    "expiryTime {e} is shorter than the minimum of 28 days (P28D)."
                )));
            }
            Some(secs)
        }
        None => None,
    };
    for a in &p.lifetime_actions {
        if !matches!(a.action.as_str(), "Rotate" | "Notify") {
            return Err(bad(format!(
                "Lifetime action type {:?} is not valid (Rotate, Notify).",
                a.action
            )));
        }
        match (&a.time_after_create, &a.time_before_expiry) {
            (Some(t), None) => {
                let secs = iso_duration(t).map_err(|m| bad(format!("timeAfterCreate: {m}")))?;
                if a.action == "Notify" {
                    return Err(bad("A Notify action takes timeBeforeExpiry only."));
                }
                if secs < 7 * 86_400 {
                    return Err(bad(format!(
                        "timeAfterCreate {t} is shorter than the minimum of 7 days (P7D)."
                    )));
                }
                if expiry.is_some_and(|e| secs >= e) {
                    return Err(bad("timeAfterCreate must be shorter than expiryTime."));
                }
            }
            (None, Some(t)) => {
                let secs = iso_duration(t).map_err(|m| bad(format!("timeBeforeExpiry: {m}")))?;
                let Some(e) = expiry else {
                    return Err(bad("timeBeforeExpiry needs the policy's expiryTime."));
                };
                if secs < 7 * 86_400 || secs >= e {
                    return Err(bad(format!(
                        "timeBeforeExpiry {t} must be at least 7 days and shorter than expiryTime."
                    )));
                }
            }
            _ => {
                return Err(bad(
                    "A lifetime action's trigger takes exactly one of timeAfterCreate and timeBeforeExpiry.",
                ))
            }
        }
    }
    Ok(())
}

/// Reads a rotation policy from a request body.
pub(super) fn parse_policy(
    b: &Map<String, Value>,
    now: u64,
    old: Option<&RotationPolicy>,
) -> Result<RotationPolicy, AzError> {
    let str_of = |v: &Value, what: &str| -> Result<Option<String>, AzError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(bad(format!("{what} must be a string."))),
        }
    };
    let mut actions = Vec::new();
    match b.get("lifetimeActions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for a in list {
                let trigger = &a["trigger"];
                let kind = a["action"]["type"]
                    .as_str()
                    .ok_or_else(|| bad("lifetimeActions[].action.type is required."))?;
                let action = match kind.to_ascii_lowercase().as_str() {
                    "rotate" => "Rotate",
                    "notify" => "Notify",
                    _ => kind,
                };
                actions.push(LifetimeAction {
                    action: action.to_string(),
                    time_after_create: str_of(&trigger["timeAfterCreate"], "timeAfterCreate")?,
                    time_before_expiry: str_of(&trigger["timeBeforeExpiry"], "timeBeforeExpiry")?,
                });
            }
        }
        Some(_) => return Err(bad("lifetimeActions must be an array.")),
    }
    let policy = RotationPolicy {
        lifetime_actions: actions,
        expiry_time: str_of(
            &b.get("attributes").cloned().unwrap_or(Value::Null)["expiryTime"],
            "attributes.expiryTime",
        )?,
        created: old.map_or(now, |o| o.created),
        updated: now,
    };
    check_policy(&policy)?;
    Ok(policy)
}

/// A rotation policy as Key Vault shows it (the default one when none was
/// set).
pub(super) fn policy_json(base: &str, name: &str, p: Option<&RotationPolicy>) -> Value {
    let id = format!("{base}/keys/{name}/rotationpolicy");
    let Some(p) = p else {
        return json!({
            "id": id,
            "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
            "attributes": {},
        });
    };
    let actions: Vec<Value> = p
        .lifetime_actions
        .iter()
        .map(|a| {
            let trigger = match (&a.time_after_create, &a.time_before_expiry) {
                (Some(t), _) => json!({"timeAfterCreate": t}),
                (_, Some(t)) => json!({"timeBeforeExpiry": t}),
                _ => json!({}),
            };
            json!({"trigger": trigger, "action": {"type": a.action}})
        })
        .collect();
    let mut attributes = json!({"created": p.created, "updated": p.updated});
    if let Some(e) = &p.expiry_time {
        attributes["expiryTime"] = json!(e);
    }
    json!({"id": id, "lifetimeActions": actions, "attributes": attributes})
}

fn deleted_fields(base: &str, name: &str, d: &DeletedKey, mut v: Value) -> Value {
    v["recoveryId"] = json!(format!("{base}/deletedkeys/{name}"));
    v["deletedDate"] = json!(d.deleted);
    v["scheduledPurgeDate"] = json!(d.purge);
    v
}

fn deleted_bundle(base: &str, d: &DeletedKey) -> Value {
    deleted_fields(base, &d.key.name, d, super::latest_bundle(base, &d.key))
}

fn deleted_not_found(name: &str) -> AzError {
    aerr(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        format!("Deleted Key not found: {name}"),
    )
}

/// A conflict for a name that is deleted but recoverable.
pub(super) fn check_not_deleted(state: &State, name: &str) -> Result<(), AzError> {
    if read(&state.azure).deleted.contains_key(name) {
        return Err(aerr(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."),
        ));
    }
    Ok(())
}

/// `DELETE /keys/NAME`: soft delete.
pub(super) fn delete(state: &State, base: &str, name: &str) -> Result<Value, AzError> {
    let t = state.now();
    let mut store = write(&state.azure);
    let key = store.keys.remove(name).ok_or_else(|| not_found(name))?;
    let d = DeletedKey {
        key,
        deleted: t,
        purge: t + RECOVERABLE_DAYS * 86_400,
    };
    let out = deleted_bundle(base, &d);
    store.deleted.insert(name.to_string(), d);
    drop(store);
    state.persist();
    Ok(out)
}

/// `GET /deletedkeys` items.
pub(super) fn list_deleted(state: &State, base: &str) -> Vec<Value> {
    read(&state.azure)
        .deleted
        .values()
        .map(|d| {
            let attrs = d
                .key
                .versions
                .last()
                .map(super::attributes)
                .unwrap_or_else(|| json!({}));
            let item = json!({"kid": format!("{base}/keys/{}", d.key.name), "attributes": attrs});
            deleted_fields(base, &d.key.name, d, item)
        })
        .collect()
}

/// `GET /deletedkeys/NAME`.
pub(super) fn get_deleted(state: &State, base: &str, name: &str) -> Result<Value, AzError> {
    read(&state.azure)
        .deleted
        .get(name)
        .map(|d| deleted_bundle(base, d))
        .ok_or_else(|| deleted_not_found(name))
}

/// `POST /deletedkeys/NAME/recover`.
pub(super) fn recover(state: &State, base: &str, name: &str) -> Result<Value, AzError> {
    let mut store = write(&state.azure);
    let d = store
        .deleted
        .remove(name)
        .ok_or_else(|| deleted_not_found(name))?;
    let out = super::latest_bundle(base, &d.key);
    store.keys.insert(name.to_string(), d.key);
    drop(store);
    state.persist();
    Ok(out)
}

/// `DELETE /deletedkeys/NAME`: purge.
pub(super) fn purge(state: &State, name: &str) -> Result<(), AzError> {
    let removed = write(&state.azure).deleted.remove(name);
    removed.ok_or_else(|| deleted_not_found(name))?;
    state.persist();
    Ok(())
}

fn new_version_like(
    k: &AzureKey,
    created: u64,
    material: Option<Material>,
) -> Result<AzureVersion, AzError> {
    let last = k.versions.last().ok_or_else(|| not_found(&k.name))?;
    let material = match material {
        Some(m) => m,
        None => Material::generate(last.material.kind()).map_err(|e| {
            aerr(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                e.to_string(),
            )
        })?,
    };
    let exp = k
        .rotation_policy
        .as_ref()
        .and_then(|p| p.expiry_time.as_deref())
        .and_then(|e| iso_duration(e).ok())
        .map(|secs| created + secs);
    Ok(AzureVersion {
        version: new_version_id(),
        enabled: true,
        created,
        updated: created,
        key_ops: last.key_ops.clone(),
        exp,
        nbf: None,
        tags: last.tags.clone(),
        material: Arc::new(material),
    })
}

/// `POST /keys/NAME/rotate`: a new version like the newest.
pub(super) fn rotate(state: &State, base: &str, name: &str) -> Result<Value, AzError> {
    let t = state.now();
    let mut store = write(&state.azure);
    let k = store.keys.get_mut(name).ok_or_else(|| not_found(name))?;
    let v = new_version_like(k, t, None)?;
    k.versions.push(v);
    let out = k.versions.last().map(|v| bundle(base, k, v));
    drop(store);
    state.persist();
    out.ok_or_else(|| not_found(name))
}

fn big(field: &str, jwk: &Map<String, Value>) -> Result<rsa::BigUint, AzError> {
    let s = jwk
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("key.{field} is required for an RSA private key.")))?;
    Ok(rsa::BigUint::from_bytes_be(
        &unb64url(&format!("key.{field}"), s).map_err(bad)?,
    ))
}

/// The private key of an imported JWK.
fn jwk_material(jwk: &Map<String, Value>) -> Result<(String, Material), AzError> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Property key.kty is required."))?;
    let invalid = |e: String| bad(format!("The JSON web key is invalid: {e}"));
    let material = if kty.starts_with("EC") {
        let d = jwk
            .get("d")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("key.d is required: import takes a private key."))?;
        let d = unb64url("key.d", d).map_err(bad)?;
        match jwk.get("crv").and_then(Value::as_str).unwrap_or("") {
            "P-256" => p256::SecretKey::from_slice(&d).map(|k| Material::P256(k.into())),
            "P-384" => p384::SecretKey::from_slice(&d).map(|k| Material::P384(k.into())),
            "P-521" => p521::SecretKey::from_slice(&d).map(|k| Material::P521(k.into())),
            other => {
                return Err(bad(format!(
                    "The specified curve {other:?} is not supported (P-256, P-384, P-521)."
                )))
            }
        }
        .map_err(|e| invalid(e.to_string()))?
    } else if kty.starts_with("RSA") {
        let key = rsa::RsaPrivateKey::from_components(
            big("n", jwk)?,
            big("e", jwk)?,
            big("d", jwk)?,
            vec![big("p", jwk)?, big("q", jwk)?],
        )
        .map_err(|e| invalid(e.to_string()))?;
        key.validate().map_err(|e| invalid(e.to_string()))?;
        if !matches!(key.size() * 8, 2048 | 3072 | 4096) {
            return Err(bad(format!(
                "The specified RSA key size {} is not supported (2048, 3072, 4096).",
                key.size() * 8
            )));
        }
        Material::Rsa(Box::new(key))
    } else {
        return Err(bad(format!(
            "The specified key type {kty:?} is not supported (EC, EC-HSM, RSA, RSA-HSM)."
        )));
    };
    if let Some((x, y)) = material.ec_point() {
        let given = |f: &str| jwk.get(f).and_then(Value::as_str).map(|s| unb64url(f, s));
        if let (Some(Ok(gx)), Some(Ok(gy))) = (given("x"), given("y")) {
            if gx != x || gy != y {
                return Err(invalid("x and y are not the public key of d".into()));
            }
        }
    }
    Ok((kty.to_string(), material))
}

/// `PUT /keys/NAME`: import a JWK as a new version (creating the key).
pub(super) fn import(
    state: &State,
    base: &str,
    name: &str,
    b: &Map<String, Value>,
) -> Result<Value, AzError> {
    super::check_name(name)?;
    check_not_deleted(state, name)?;
    let jwk = match b.get("key") {
        Some(Value::Object(k)) => k,
        _ => return Err(bad("Property key is required: a JSON web key.")),
    };
    let (mut kty, material) = jwk_material(jwk)?;
    if b.get("hsm").and_then(Value::as_bool) == Some(true) && !kty.ends_with("-HSM") {
        kty.push_str("-HSM");
    }
    if let Some(k) = read(&state.azure).keys.get(name) {
        let same =
            |a: KeyKind, b: KeyKind| std::mem::discriminant(&a) == std::mem::discriminant(&b);
        if k.versions
            .last()
            .is_some_and(|v| !same(v.material.kind(), material.kind()))
        {
            return Err(bad("The imported key's type differs from the key's."));
        }
    }
    let ops = match jwk.get("key_ops") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect(),
        _ => super::default_ops(&kty),
    };
    super::add_new_version(state, base, name, &kty, b, ops, material)
}

/// Purges deleted keys whose purge date passed and rotates keys whose
/// rotation policy's time came, on the emulated clock.
pub(super) fn sweep(state: &State) {
    let t = state.now();
    let rotation_due = |k: &AzureKey| next_rotation(k).is_some_and(|at| at <= t);
    {
        let store = read(&state.azure);
        if !store.deleted.values().any(|d| d.purge <= t) && !store.keys.values().any(rotation_due) {
            return;
        }
    }
    let mut store = write(&state.azure);
    store.deleted.retain(|_, d| d.purge > t);
    for k in store.keys.values_mut() {
        // Each due rotation makes a version created when it was due; a
        // clock moved far ahead catches up version by version (bounded).
        for _ in 0..1000 {
            let Some(at) = next_rotation(k).filter(|at| *at <= t) else {
                break;
            };
            match new_version_like(k, at, None) {
                Ok(v) => k.versions.push(v),
                Err(_) => break,
            }
        }
    }
    drop(store);
    state.persist();
}

/// When the rotation policy next rotates the key, if it does.
fn next_rotation(k: &AzureKey) -> Option<u64> {
    let p = k.rotation_policy.as_ref()?;
    let last = k.versions.last()?;
    p.lifetime_actions
        .iter()
        .filter(|a| a.action == "Rotate")
        .filter_map(|a| {
            if let Some(after) = &a.time_after_create {
                return Some(last.created + iso_duration(after).ok()?);
            }
            let before = iso_duration(a.time_before_expiry.as_deref()?).ok()?;
            Some(last.exp?.saturating_sub(before))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(iso_duration("P90D"), Ok(90 * 86_400));
        assert_eq!(iso_duration("P1Y2M"), Ok(425 * 86_400));
        assert_eq!(iso_duration("PT36H"), Ok(36 * 3600));
        assert_eq!(iso_duration("P1DT1M"), Ok(86_460));
        for bad in ["", "P", "90D", "P1H", "PT1D", "P1", "PTT1H"] {
            assert!(iso_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policies() {
        let p = |after: Option<&str>, before: Option<&str>, exp: Option<&str>| RotationPolicy {
            lifetime_actions: vec![LifetimeAction {
                action: "Rotate".into(),
                time_after_create: after.map(Into::into),
                time_before_expiry: before.map(Into::into),
            }],
            expiry_time: exp.map(Into::into),
            created: 0,
            updated: 0,
        };
        assert!(check_policy(&p(Some("P30D"), None, None)).is_ok());
        assert!(check_policy(&p(Some("P30D"), None, Some("P90D"))).is_ok());
        assert!(check_policy(&p(None, Some("P30D"), Some("P90D"))).is_ok());
        assert!(check_policy(&p(Some("P1D"), None, None)).is_err());
        assert!(check_policy(&p(None, Some("P30D"), None)).is_err());
        assert!(check_policy(&p(Some("P30D"), Some("P30D"), Some("P90D"))).is_err());
        assert!(check_policy(&p(Some("P30D"), None, Some("P10D"))).is_err());
    }
}
