//! Multi-Region keys: `mrk-` ids shared by a primary key and its replicas
//! in other Regions (the Region of a request is its SigV4 scope's), one
//! key material, ReplicateKey and UpdatePrimaryRegion.

use serde_json::{json, Value};

use crate::aws::model::*;
use crate::aws::store::{AwsKey, AwsKeyState};
use crate::state::{read, write, State};

/// A new multi-Region key id.
pub(crate) fn new_id() -> String {
    format!("mrk-{}", hex::encode(crate::crypto::random_bytes(16)))
}

/// Key metadata with `MultiRegionConfiguration` for a multi-Region key.
pub(crate) fn describe(state: &State, k: &AwsKey) -> Value {
    let mut m = metadata(k);
    if !k.multi_region {
        return m;
    }
    let store = read(&state.aws);
    let copies: Vec<&AwsKey> = store.keys.values().filter(|c| c.id == k.id).collect();
    let entry = |c: &AwsKey| json!({"Arn": c.arn(), "Region": c.region});
    let primary = copies.iter().find(|c| !c.replica).map(|c| entry(c));
    let replicas: Vec<Value> = copies
        .iter()
        .filter(|c| c.replica)
        .map(|c| entry(c))
        .collect();
    m["MultiRegionConfiguration"] = json!({
        "MultiRegionKeyType": if k.replica { "REPLICA" } else { "PRIMARY" },
        "PrimaryKey": primary,
        "ReplicaKeys": replicas,
    });
    m
}

fn check_region(r: &str) -> Result<(), AwsError> {
    let parts: Vec<&str> = r.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(validation(format!(
            "1 validation error detected: Value '{r}' at 'replicaRegion' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){{2,3}}\\\\d+$"
        )));
    }
    Ok(())
}

fn primary_only(k: &AwsKey, op: &str) -> Result<(), AwsError> {
    if !k.multi_region {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} is not a multi-Region key: {op} takes a multi-Region primary key.",
                k.arn()
            ),
        ));
    }
    if k.replica {
        return Err(e400(
            "UnsupportedOperationException",
            format!(
                "{} is a multi-Region replica key: {op} takes the primary key.",
                k.arn()
            ),
        ));
    }
    if k.state == AwsKeyState::PendingDeletion {
        return Err(e400(
            "KMSInvalidStateException",
            format!("{} is pending deletion.", k.arn()),
        ));
    }
    Ok(())
}

/// ReplicateKey.
pub(crate) fn replicate(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    primary_only(&k, "ReplicateKey")?;
    let region = required(b, "ReplicaRegion")?.to_string();
    check_region(&region)?;
    if region == k.region {
        return Err(validation(format!(
            "ReplicaRegion {region} is the primary key's Region."
        )));
    }
    let tags = crate::aws::manage::tags_arg(b)?;
    crate::aws::manage::check_tags(&tags)?;
    let mut replica = k.clone();
    replica.region = region;
    replica.replica = true;
    replica.tags = tags;
    replica.grants = Vec::new();
    replica.policy = field(b, "Policy")?.map(str::to_string);
    if let Some(p) = &replica.policy {
        crate::aws::access::parse_policy(p)?;
    }
    if let Some(d) = field(b, "Description")? {
        crate::aws::manage::check_description(d)?;
        replica.description = d.to_string();
    }
    replica.created = state.now();
    let mut store = write(&state.aws);
    if store.keys.contains_key(&replica.slot()) {
        return Err(e400(
            "AlreadyExistsException",
            format!("{} already exists.", replica.arn()),
        ));
    }
    store.keys.insert(replica.slot(), replica.clone());
    drop(store);
    state.persist();
    Ok(json!({
        "ReplicaKeyMetadata": describe(state, &replica),
        "ReplicaPolicy": replica.policy.clone().unwrap_or_else(crate::aws::access::default_policy),
        "ReplicaTags": replica.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>(),
    }))
}

/// UpdatePrimaryRegion: the replica in that Region becomes the primary,
/// the primary a replica.
pub(crate) fn update_primary(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    primary_only(&k, "UpdatePrimaryRegion")?;
    let region = required(b, "PrimaryRegion")?.to_string();
    check_region(&region)?;
    let mut store = write(&state.aws);
    let Some(mut new_primary) = store.keys.remove(&format!("{}/{region}", k.id)) else {
        return Err(e400(
            "NotFoundException",
            format!("{} has no replica in {region}.", k.arn()),
        ));
    };
    if let Some(mut old) = store.keys.remove(&k.slot()) {
        old.replica = true;
        store.keys.insert(old.slot(), old);
    }
    new_primary.replica = false;
    store.keys.insert(new_primary.slot(), new_primary);
    drop(store);
    state.persist();
    Ok(json!({}))
}

/// Gives the replicas of multi-Region key `id` the primary's material
/// (after a rotation).
pub(crate) fn sync_material(state: &State, id: &str) {
    let mut store = write(&state.aws);
    let Some(primary) = store.keys.get(id).filter(|k| k.multi_region).cloned() else {
        return;
    };
    for r in store.keys.values_mut().filter(|r| r.replica && r.id == id) {
        r.material = primary.material.clone();
        r.previous = primary.previous.clone();
        r.rotations = primary.rotations.clone();
    }
}
