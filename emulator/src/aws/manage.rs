//! Managing AWS KMS keys: tags, descriptions, aliases, and rotation of
//! symmetric key material (automatic on the emulated clock, or on demand).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::aws::model::*;
use crate::aws::store::{AwsKey, AwsKeyState, Rotation};
use crate::crypto::Material;
use crate::state::{write, State};

/// On-demand rotations a key may have.
const ON_DEMAND_LIMIT: usize = 25;

/// Tags a key may have.
const TAG_LIMIT: usize = 50;

fn tag_error(msg: impl Into<String>) -> AwsError {
    e400("TagException", msg)
}

/// Checks tag keys and values as AWS does.
pub(crate) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if tags.len() > TAG_LIMIT {
        return Err(tag_error(format!(
            "A key can have at most {TAG_LIMIT} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(validation(format!(
                "1 validation error detected: Value '{k}' at 'tags.member.tagKey' failed to satisfy constraint: Member must have length between 1 and 128"
            )));
        }
        if v.chars().count() > 256 {
            return Err(validation(format!(
                "1 validation error detected: Value '{v}' at 'tags.member.tagValue' failed to satisfy constraint: Member must have length less than or equal to 256"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(tag_error(format!(
                "Tag keys beginning with aws: are reserved: {k}"
            )));
        }
    }
    Ok(())
}

/// The `Tags` list of a request body (`[{TagKey, TagValue}]`).
pub(crate) fn tags_arg(b: &Body) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    match b.get("Tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for t in list {
                let k = t["TagKey"]
                    .as_str()
                    .ok_or_else(|| validation("1 validation error detected: Value null at 'tags.member.tagKey' failed to satisfy constraint: Member must not be null"))?;
                let v = t["TagValue"]
                    .as_str()
                    .ok_or_else(|| validation("1 validation error detected: Value null at 'tags.member.tagValue' failed to satisfy constraint: Member must not be null"))?;
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some(_) => return Err(e400("SerializationException", "Tags must be a list")),
    }
    Ok(out)
}

/// Refuses a key pending deletion (management operations) or, with
/// `enabled`, a disabled one.
fn manageable(k: &AwsKey, enabled: bool) -> Result<(), AwsError> {
    match k.state {
        AwsKeyState::PendingDeletion => Err(e400(
            "KMSInvalidStateException",
            format!("{} is pending deletion.", k.arn()),
        )),
        AwsKeyState::Disabled if enabled => Err(e400(
            "DisabledException",
            format!("{} is disabled.", k.arn()),
        )),
        _ => Ok(()),
    }
}

/// Runs `f` on the stored key named by the body's `KeyId` and persists.
fn with_key<T>(
    state: &State,
    b: &Body,
    f: impl FnOnce(&mut AwsKey) -> Result<T, AwsError>,
) -> Result<T, AwsError> {
    update_key(state, &key_arg(state, b)?.slot(), f)
}

/// TagResource.
pub(crate) fn tag(state: &State, b: &Body) -> Result<Value, AwsError> {
    let new = tags_arg(b)?;
    with_key(state, b, |k| {
        manageable(k, false)?;
        let mut tags = k.tags.clone();
        tags.extend(new);
        check_tags(&tags)?;
        k.tags = tags;
        Ok(json!({}))
    })
}

/// UntagResource.
pub(crate) fn untag(state: &State, b: &Body) -> Result<Value, AwsError> {
    let keys: Vec<String> = match b.get("TagKeys") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| e400("SerializationException", "TagKeys must be strings"))?,
        _ => return Err(validation("1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")),
    };
    with_key(state, b, |k| {
        manageable(k, false)?;
        for t in &keys {
            k.tags.remove(t);
        }
        Ok(json!({}))
    })
}

/// ListResourceTags.
pub(crate) fn list_tags(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let items = k
        .tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    super::paginate(b, items, "Tags")
}

/// UpdateKeyDescription.
pub(crate) fn describe(state: &State, b: &Body) -> Result<Value, AwsError> {
    let d = required(b, "Description")?.to_string();
    check_description(&d)?;
    with_key(state, b, |k| {
        manageable(k, false)?;
        k.description = d;
        Ok(json!({}))
    })
}

/// Checks a key description's length.
pub(crate) fn check_description(d: &str) -> Result<(), AwsError> {
    if d.chars().count() > 8192 {
        return Err(validation("1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192"));
    }
    Ok(())
}

fn alias_name(b: &Body) -> Result<&str, AwsError> {
    let name = required(b, "AliasName")?;
    if !name.starts_with("alias/") || name.len() <= 6 || name.len() > 256 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if !name[6..]
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-'))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(e400(
            "NotAuthorizedException",
            format!(
                "Alias names beginning with alias/aws/ are reserved for AWS managed keys: {name}"
            ),
        ));
    }
    Ok(name)
}

fn alias_missing(name: &str) -> AwsError {
    e400(
        "NotFoundException",
        format!(
            "Alias arn:aws:kms:us-east-1:{}:{name} is not found.",
            crate::aws::store::AWS_ACCOUNT
        ),
    )
}

/// The key an alias may point at: a key id or ARN, not an alias.
fn alias_target(state: &State, b: &Body) -> Result<AwsKey, AwsError> {
    let target = required(b, "TargetKeyId")?;
    if target.starts_with("alias/") || target.contains(":alias/") {
        return Err(validation(
            "TargetKeyId must be a key id or key ARN, not an alias",
        ));
    }
    let k = resolve(state, target)?;
    manageable(&k, false)?;
    Ok(k)
}

/// CreateAlias.
pub(crate) fn create_alias(state: &State, b: &Body) -> Result<Value, AwsError> {
    let name = alias_name(b)?;
    let k = alias_target(state, b)?;
    let mut store = write(&state.aws);
    if store.aliases.contains_key(name) {
        return Err(e400(
            "AlreadyExistsException",
            format!(
                "An alias with the name arn:aws:kms:{}:{}:{name} already exists",
                k.region,
                crate::aws::store::AWS_ACCOUNT
            ),
        ));
    }
    store.aliases.insert(name.to_string(), k.id);
    drop(store);
    state.persist();
    Ok(json!({}))
}

/// UpdateAlias: the new key must have the old one's kind and usage.
pub(crate) fn update_alias(state: &State, b: &Body) -> Result<Value, AwsError> {
    let name = alias_name(b)?;
    let k = alias_target(state, b)?;
    let mut store = write(&state.aws);
    let old = store
        .aliases
        .get(name)
        .cloned()
        .ok_or_else(|| alias_missing(name))?;
    if let Some(o) = store.keys.get(&old) {
        let symmetric = |s: &str| s == "SYMMETRIC_DEFAULT";
        if symmetric(&o.spec) != symmetric(&k.spec) || o.usage != k.usage {
            return Err(validation(format!(
                "{} is not the same type and usage as the alias's key {}: an alias moves between keys of one type and usage",
                k.arn(),
                o.arn()
            )));
        }
    }
    store.aliases.insert(name.to_string(), k.id);
    drop(store);
    state.persist();
    Ok(json!({}))
}

/// DeleteAlias.
pub(crate) fn delete_alias(state: &State, b: &Body) -> Result<Value, AwsError> {
    let name = alias_name(b)?;
    let removed = write(&state.aws).aliases.remove(name);
    removed.ok_or_else(|| alias_missing(name))?;
    state.persist();
    Ok(json!({}))
}

fn symmetric_only(k: &AwsKey, op: &str) -> Result<(), AwsError> {
    if k.replica && op != "GetKeyRotationStatus" && op != "ListKeyRotations" {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} is a multi-Region replica: its primary key's rotation applies to it ({op}).",
                k.arn()
            ),
        ));
    }
    if k.origin != "AWS_KMS" && matches!(op, "EnableKeyRotation" | "RotateKeyOnDemand") {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} has imported key material: {op} is not supported for it.",
                k.arn()
            ),
        ));
    }
    if k.spec != "SYMMETRIC_DEFAULT" {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} is not a symmetric encryption KMS key: {op} supports only those.",
                k.arn()
            ),
        ));
    }
    Ok(())
}

/// Replaces a symmetric key's material, keeping the old one for Decrypt.
fn rotate_material(k: &mut AwsKey, date: u64, kind: &str) -> Result<(), AwsError> {
    let m = Material::generate(k.material.kind())
        .map_err(|e| e400("KMSInternalException", e.to_string()))?;
    let old = std::mem::replace(&mut k.material, Arc::new(m));
    k.previous.push(old);
    k.rotations.push(Rotation {
        date,
        kind: kind.to_string(),
    });
    Ok(())
}

/// EnableKeyRotation.
pub(crate) fn enable_rotation(state: &State, b: &Body) -> Result<Value, AwsError> {
    let days = match b.get("RotationPeriodInDays") {
        None | Some(Value::Null) => 365,
        Some(v) => match v.as_u64() {
            Some(d @ 90..=2560) => d,
            _ => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{v}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between 90 and 2560"
                )))
            }
        },
    };
    let t = state.now();
    with_key(state, b, |k| {
        manageable(k, true)?;
        symmetric_only(k, "EnableKeyRotation")?;
        k.rotation_period = Some(days);
        k.next_rotation = Some(t + days * 86_400);
        Ok(json!({}))
    })
}

/// DisableKeyRotation.
pub(crate) fn disable_rotation(state: &State, b: &Body) -> Result<Value, AwsError> {
    with_key(state, b, |k| {
        manageable(k, true)?;
        symmetric_only(k, "DisableKeyRotation")?;
        k.rotation_period = None;
        k.next_rotation = None;
        Ok(json!({}))
    })
}

/// GetKeyRotationStatus.
pub(crate) fn rotation_status(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    manageable(&k, false)?;
    symmetric_only(&k, "GetKeyRotationStatus")?;
    let mut out = json!({"KeyId": k.arn(), "KeyRotationEnabled": k.rotation_period.is_some()});
    if let Some(d) = k.rotation_period {
        out["RotationPeriodInDays"] = json!(d);
    }
    if let Some(n) = k.next_rotation {
        out["NextRotationDate"] = json!(n);
    }
    Ok(out)
}

/// RotateKeyOnDemand.
pub(crate) fn rotate_on_demand(state: &State, b: &Body) -> Result<Value, AwsError> {
    let t = state.now();
    with_key(state, b, |k| {
        manageable(k, true)?;
        symmetric_only(k, "RotateKeyOnDemand")?;
        let done = k.rotations.iter().filter(|r| r.kind == "ON_DEMAND").count();
        if done >= ON_DEMAND_LIMIT {
            return Err(e400(
                "LimitExceededException",
                format!(
                    "{} has reached the limit of {ON_DEMAND_LIMIT} on-demand rotations.",
                    k.arn()
                ),
            ));
        }
        rotate_material(k, t, "ON_DEMAND")?;
        Ok((json!({"KeyId": k.arn()}), k.id.clone()))
    })
    .map(|(out, id)| {
        super::multi_region::sync_material(state, &id);
        out
    })
}

/// ListKeyRotations.
pub(crate) fn list_rotations(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    symmetric_only(&k, "ListKeyRotations")?;
    let items = k
        .rotations
        .iter()
        .map(|r| json!({"KeyId": k.arn(), "RotationDate": r.date, "RotationType": r.kind}))
        .collect();
    super::paginate(b, items, "Rotations")
}

/// Whether the key's automatic rotation came on the emulated clock at `t`
/// (replicas follow their primary).
pub(crate) fn rotation_due(k: &AwsKey, t: u64) -> bool {
    !k.replica && k.next_rotation.is_some_and(|n| n <= t)
}

/// Makes the automatic rotations due at `t`, each dated when it was due
/// (bounded catch-up).
pub(crate) fn rotate_due(k: &mut AwsKey, t: u64) {
    for _ in 0..1000 {
        let (Some(at), Some(days)) = (k.next_rotation, k.rotation_period) else {
            break;
        };
        if at > t || k.replica || rotate_material(k, at, "AUTOMATIC").is_err() {
            break;
        }
        k.next_rotation = Some(at + days * 86_400);
    }
}
