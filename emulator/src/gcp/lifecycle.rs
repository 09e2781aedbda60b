//! Cloud KMS key version lifecycle: destroy with a scheduled destruction and
//! restore, the primary version, key updates (rotation schedule, labels),
//! list filters and pages, and what the emulated clock makes due
//! (destructions, scheduled rotations).

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::gcp::model::*;
use crate::gcp::store::GcpKey;
use crate::google::{gerr, invalid, not_found, precondition, GcpError};
use crate::state::{read, write, State};
use crate::util::parse_rfc3339;
use crate::Request;

/// Seconds in a protobuf Duration as JSON writes it (`604800s`, `1.5s`).
pub(super) fn parse_duration(text: &str) -> Result<u64, GcpError> {
    let bad = || invalid(format!("{text:?} is not a duration such as \"86400s\""));
    let body = text.strip_suffix('s').ok_or_else(bad)?;
    let whole = body.split_once('.').map_or(body, |(w, _)| w);
    if whole.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    whole.parse::<u64>().map_err(|_| bad())
}

/// A time field (RFC 3339) of a request body.
fn time_field(b: &Map<String, Value>, field: &str) -> Result<Option<u64>, GcpError> {
    match b.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_rfc3339(s)
            .map(Some)
            .ok_or_else(|| invalid(format!("{field} {s:?} is not an RFC 3339 time"))),
        Some(_) => Err(invalid(format!("{field} must be an RFC 3339 time string"))),
    }
}

/// Checks a key's rotation schedule as Cloud KMS does.
pub(super) fn check_rotation(k: &GcpKey) -> Result<(), GcpError> {
    if k.rotation_period.is_none() && k.next_rotation.is_none() {
        return Ok(());
    }
    if k.purpose != ENCRYPT_DECRYPT {
        return Err(invalid(
            "Automatic rotation (rotationPeriod, nextRotationTime) is only supported for ENCRYPT_DECRYPT keys.",
        ));
    }
    if let Some(p) = k.rotation_period {
        if p < 86_400 {
            return Err(invalid("rotationPeriod must be at least 1 day (86400s)."));
        }
        if p > 100 * 365 * 86_400 {
            return Err(invalid("rotationPeriod must be at most 100 years."));
        }
    }
    Ok(())
}

/// Rotation schedule, labels and the rest of a key's JSON for `key_json`.
pub(super) fn key_fields(k: &GcpKey, out: &mut Value) {
    if let Some(p) = k.rotation_period {
        out["rotationPeriod"] = json!(format!("{p}s"));
    }
    if let Some(t) = k.next_rotation {
        out["nextRotationTime"] = json!(crate::util::rfc3339(t));
    }
    if !k.labels.is_empty() {
        out["labels"] = json!(k.labels);
    }
    if k.import_only {
        out["importOnly"] = json!(true);
    }
    out["destroyScheduledDuration"] = json!(format!("{}s", k.destroy_scheduled));
}

/// Reads the creation-time settings of a key from a `createCryptoKey` body.
pub(super) fn create_fields(k: &mut GcpKey, b: &Map<String, Value>) -> Result<(), GcpError> {
    if let Some(v) = b.get("rotationPeriod").and_then(Value::as_str) {
        k.rotation_period = Some(parse_duration(v)?);
    }
    k.next_rotation = time_field(b, "nextRotationTime")?;
    if let Some(v) = b.get("destroyScheduledDuration").and_then(Value::as_str) {
        let d = parse_duration(v)?;
        if !(86_400..=120 * 86_400).contains(&d) {
            return Err(invalid(
                "destroyScheduledDuration must be between 1 and 120 days.",
            ));
        }
        k.destroy_scheduled = d;
    }
    k.labels = labels(b)?.unwrap_or_default();
    k.import_only = b
        .get("importOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    check_rotation(k)
}

fn labels(b: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, GcpError> {
    match b.get("labels") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let ok_key = !k.is_empty()
                    && k.len() <= 63
                    && k.starts_with(|c: char| c.is_ascii_lowercase())
                    && k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
                match v.as_str() {
                    Some(s) if ok_key && s.len() <= 63 => Ok((k.clone(), s.to_string())),
                    _ => Err(invalid(format!(
                        "label {k:?}: keys start with a lowercase letter and hold [a-z0-9_-], values are strings, each at most 63 characters"
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid("labels must be an object of strings")),
    }
}

/// `PATCH .../cryptoKeys/K?updateMask=...`.
pub(super) fn update_key(
    state: &State,
    key: &str,
    req: &Request,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let mask = req.query("updateMask").unwrap_or("");
    if mask.is_empty() {
        return Err(invalid("updateMask is required"));
    }
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let mut next = k.clone();
    for field in mask.split(',') {
        match field.replace('_', "").to_ascii_lowercase().as_str() {
            "rotationperiod" => {
                next.rotation_period = match b.get("rotationPeriod").and_then(Value::as_str) {
                    Some(v) => Some(parse_duration(v)?),
                    None => None,
                }
            }
            "nextrotationtime" => next.next_rotation = time_field(b, "nextRotationTime")?,
            "labels" => next.labels = labels(b)?.unwrap_or_default(),
            "versiontemplate.algorithm" => {
                let t = b.get("versionTemplate").and_then(|t| t.get("algorithm"));
                let alg = parse_alg(t.unwrap_or(&Value::Null))?;
                let (old, new) = (alg_by_num(next.algorithm), alg_by_num(alg));
                if old.map(|a| a.purpose) != new.map(|a| a.purpose) {
                    return Err(invalid("versionTemplate.algorithm must fit the key's purpose"));
                }
                next.algorithm = alg;
            }
            _ => {
                return Err(invalid(format!(
                    "updateMask field {field:?} cannot be updated (rotation_period, next_rotation_time, labels, version_template.algorithm)"
                )))
            }
        }
    }
    check_rotation(&next)?;
    *k = next;
    let out = key_json(k, enc);
    drop(store);
    state.persist();
    Ok(out)
}

fn version_mut<'a>(
    k: &'a mut GcpKey,
    key: &str,
    n: &str,
) -> Result<&'a mut crate::gcp::store::GcpVersion, GcpError> {
    let missing = || not_found(&format!("CryptoKeyVersion {key}/cryptoKeyVersions/{n}"));
    let n: u32 = n.parse().map_err(|_| missing())?;
    k.versions
        .iter_mut()
        .find(|v| v.number == n)
        .ok_or_else(missing)
}

/// `:destroy`: the version is destroyed after the key's
/// `destroyScheduledDuration`, unless restored.
pub(super) fn destroy(state: &State, key: &str, n: &str, enc: Enc) -> Result<Value, GcpError> {
    let t = state.now();
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let after = k.destroy_scheduled;
    let v = version_mut(k, key, n)?;
    if !matches!(v.state, ENABLED | DISABLED) {
        return Err(precondition(format!(
            "{key}/cryptoKeyVersions/{n} is not in state ENABLED or DISABLED, current state is: {}.",
            state_name(v.state).unwrap_or("UNKNOWN")
        )));
    }
    v.state = DESTROY_SCHEDULED;
    v.destroy_time = Some(t + after);
    let v = v.clone();
    let out = version_json(k, &v, enc);
    drop(store);
    state.persist();
    Ok(out)
}

/// `:restore`: a version scheduled for destruction comes back disabled.
pub(super) fn restore(state: &State, key: &str, n: &str, enc: Enc) -> Result<Value, GcpError> {
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let v = version_mut(k, key, n)?;
    if v.state != DESTROY_SCHEDULED {
        return Err(precondition(format!(
            "{key}/cryptoKeyVersions/{n} is not in state DESTROY_SCHEDULED, current state is: {}.",
            state_name(v.state).unwrap_or("UNKNOWN")
        )));
    }
    v.state = DISABLED;
    v.destroy_time = None;
    let v = v.clone();
    let out = version_json(k, &v, enc);
    drop(store);
    state.persist();
    Ok(out)
}

/// `:updatePrimaryVersion` of an `ENCRYPT_DECRYPT` key.
pub(super) fn update_primary(
    state: &State,
    key: &str,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let id = b
        .get("cryptoKeyVersionId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("cryptoKeyVersionId is required"))?;
    let mut store = write(&state.gcp);
    let k = store
        .keys
        .get_mut(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    if k.purpose != ENCRYPT_DECRYPT {
        return Err(precondition(format!(
            "{key} has purpose {}: only ENCRYPT_DECRYPT keys have a primary version.",
            purpose_name(k.purpose).unwrap_or("?")
        )));
    }
    let v = version_mut(k, key, id)?;
    if v.state != ENABLED {
        return Err(precondition(format!(
            "{key}/cryptoKeyVersions/{id} is not enabled, current state is: {}.",
            state_name(v.state).unwrap_or("UNKNOWN")
        )));
    }
    k.primary = Some(v.number);
    let out = key_json(k, enc);
    drop(store);
    state.persist();
    Ok(out)
}

/// Whether a version passes a list `filter` (`state=ENABLED`,
/// `state:DISABLED`, `state!=DESTROYED`, `NOT state=...`; empty: all).
fn passes(filter: &str, st: i32) -> Result<bool, GcpError> {
    let f = filter.trim();
    if f.is_empty() {
        return Ok(true);
    }
    let (negate, f) = match f.strip_prefix("NOT ") {
        Some(rest) => (true, rest.trim()),
        None => (false, f),
    };
    let (field, negate, value) = if let Some((a, b)) = f.split_once("!=") {
        (a, !negate, b)
    } else if let Some((a, b)) = f.split_once(['=', ':']) {
        (a, negate, b)
    } else {
        return Err(invalid(format!("filter {filter:?} is not FIELD=VALUE")));
    };
    if field.trim() != "state" {
        return Err(invalid(format!(
            "filter {filter:?}: the emulator filters on state only"
        )));
    }
    let value = value.trim().trim_matches('"');
    let want = name_to(STATES, value)
        .ok_or_else(|| invalid(format!("filter {filter:?}: unknown state {value:?}")))?;
    Ok((st == want) != negate)
}

/// One page of a list: `pageSize` (default and most 1000) and `pageToken`
/// from the previous page's `nextPageToken`; `totalSize` counts every item.
pub(super) fn page(req: &Request, field: &str, items: Vec<Value>) -> Result<Value, GcpError> {
    let size = match req.query("pageSize") {
        None => 1000,
        Some(s) => match s.parse::<usize>() {
            Ok(0) => 1000,
            Ok(n) => n.min(1000),
            Err(_) => return Err(invalid(format!("pageSize {s:?} is not a number"))),
        },
    };
    let start = match req.query("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid(format!("pageToken {t:?} is invalid")))?,
    };
    let end = (start + size).min(items.len());
    let mut out = json!({field: items[start..end].to_vec(), "totalSize": items.len()});
    if end < items.len() {
        out["nextPageToken"] = json!(end.to_string());
    }
    Ok(out)
}

/// `listCryptoKeyVersions` with `filter` and pages.
pub(super) fn list_versions(
    state: &State,
    key: &str,
    req: &Request,
    enc: Enc,
) -> Result<Value, GcpError> {
    let store = read(&state.gcp);
    let k = store
        .keys
        .get(key)
        .ok_or_else(|| not_found(&format!("CryptoKey {key}")))?;
    let filter = req.query("filter").unwrap_or("");
    let mut items = Vec::new();
    for v in &k.versions {
        if passes(filter, v.state)? {
            items.push(version_json(k, v, enc));
        }
    }
    page(req, "cryptoKeyVersions", items)
}

/// Destroys versions whose scheduled destruction came and rotates keys whose
/// next rotation came, on the emulated clock.
pub(super) fn sweep(state: &State) {
    let t = state.now();
    let due_destroy = |k: &GcpKey| {
        k.versions
            .iter()
            .any(|v| v.state == DESTROY_SCHEDULED && v.destroy_time.is_some_and(|d| d <= t))
    };
    let due_rotation = |k: &GcpKey| k.next_rotation.is_some_and(|n| n <= t);
    if !read(&state.gcp)
        .keys
        .values()
        .any(|k| due_destroy(k) || due_rotation(k))
    {
        return;
    }
    let mut store = write(&state.gcp);
    for k in store.keys.values_mut() {
        for v in &mut k.versions {
            if v.state == DESTROY_SCHEDULED && v.destroy_time.is_some_and(|d| d <= t) {
                v.state = DESTROYED;
                v.destroy_event_time = v.destroy_time.take();
                v.material = None;
            }
        }
        // Each due rotation makes a primary version created when it was
        // due; a clock moved far ahead catches up (bounded).
        for _ in 0..1000 {
            let Some(at) = k.next_rotation.filter(|n| *n <= t) else {
                break;
            };
            let Ok(mut v) = new_version(k, None, ENABLED, at) else {
                break;
            };
            v.number = k.versions.len() as u32 + 1;
            k.primary = Some(v.number);
            k.versions.push(v);
            k.next_rotation = k.rotation_period.map(|p| at + p);
        }
    }
    drop(store);
    state.persist();
}

/// A `FAILED_PRECONDITION` for a key that takes imported versions only.
pub(super) fn check_not_import_only(k: &GcpKey) -> Result<(), GcpError> {
    if k.import_only {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{} is import-only: its versions come from importCryptoKeyVersion.",
                k.name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_filters() {
        assert_eq!(parse_duration("86400s").unwrap(), 86_400);
        assert_eq!(parse_duration("1.5s").unwrap(), 1);
        for bad in ["", "s", "86400", "-1s", "1hs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(passes("", DISABLED).unwrap());
        assert!(passes("state=ENABLED", ENABLED).unwrap());
        assert!(!passes("state:ENABLED", DISABLED).unwrap());
        assert!(passes("state!=DESTROYED", ENABLED).unwrap());
        assert!(passes("NOT state=ENABLED", DISABLED).unwrap());
        assert!(passes("name=x", ENABLED).is_err());
        assert!(passes("state=NEW", ENABLED).is_err());
    }
}
