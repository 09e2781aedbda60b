//! AWS KMS's section of the seed and state file.

use crate::aws::model::*;
use crate::aws::store::AwsSeed;
use crate::aws::store::{AwsKey, AwsKeyState};

use crate::crypto::{KeyKind, Material};
use crate::state::{read, write, State};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Puts the `aws` section of a seed into the store.
pub(crate) fn load_seed(state: &State, seeds: Vec<AwsSeed>) -> Result<(), String> {
    let here = std::path::Path::new(".");
    for k in seeds {
        let what = format!("aws key {}", k.id.as_deref().unwrap_or(&k.spec));
        let (kind, default_usage) =
            spec_kind(&k.spec).ok_or_else(|| format!("{what}: unknown spec {:?}", k.spec))?;
        let usage = k.usage.clone().unwrap_or_else(|| default_usage.to_string());
        check_usage(&k.spec, &usage).map_err(|e| format!("{what}: {e}"))?;
        let material = material_from(&k.private_key, &k.private_key_file, here, kind, &what)?;
        let mut key = AwsKey::new(
            k.id.unwrap_or_else(crate::crypto::uuid),
            k.region.unwrap_or_else(|| "us-east-1".into()),
            k.spec,
            usage,
            k.created.unwrap_or_else(|| state.now()),
            material,
        );
        let external = match k.origin.as_deref() {
            None | Some("AWS_KMS") => false,
            Some("EXTERNAL") => true,
            Some(o) => return Err(format!("{what}: origin {o:?} is AWS_KMS or EXTERNAL")),
        };
        let pending_import = external && k.private_key.is_none() && k.private_key_file.is_none();
        key.state = match (k.deletion_date, k.enabled) {
            (Some(_), _) => AwsKeyState::PendingDeletion,
            _ if pending_import => AwsKeyState::PendingImport,
            (None, true) => AwsKeyState::Enabled,
            (None, false) => AwsKeyState::Disabled,
        };
        if external {
            key.origin = "EXTERNAL".into();
            key.imported = !pending_import;
            key.ever_imported = !pending_import;
            key.valid_to = k.valid_to;
        }
        key.deletion_date = k.deletion_date;
        key.description = k.description;
        for hex in &k.previous_keys {
            let m = Material::from_pem(hex).map_err(|e| format!("{what}: previous key: {e}"))?;
            if m.kind() != kind {
                return Err(format!("{what}: a previous key must be of the key's spec"));
            }
            key.previous.push(std::sync::Arc::new(m));
        }
        key.rotations = k.rotations;
        key.rotation_period = k.rotation_period_days;
        key.next_rotation = k.rotation_period_days.map(|days| {
            k.next_rotation
                .unwrap_or_else(|| state.now() + days * 86_400)
        });
        super::manage::check_tags(&k.tags).map_err(|e| format!("{what}: {}", e.msg))?;
        key.tags = k.tags;
        if let Some(p) = &k.policy {
            super::access::parse_policy(p).map_err(|e| format!("{what}: policy: {}", e.msg))?;
        }
        key.policy = k.policy;
        key.grants = k.grants;
        let mut aws = write(&state.aws);
        for a in k.aliases {
            if !a.starts_with("alias/") || a.starts_with("alias/aws/") {
                return Err(format!("{what}: alias {a:?} must be alias/NAME"));
            }
            aws.aliases.insert(a, key.id.clone());
        }
        if k.multi_region && !key.id.starts_with("mrk-") {
            return Err(format!("{what}: a multi-Region key's id starts with mrk-"));
        }
        key.multi_region = k.multi_region;
        for region in &k.replica_regions {
            let mut replica = key.clone();
            replica.region = region.clone();
            replica.replica = true;
            aws.keys.insert(replica.slot(), replica);
        }
        aws.keys.insert(key.slot(), key);
    }
    Ok(())
}

/// The `aws` section of the state file.
pub(crate) fn export_seed(state: &State) -> Result<Vec<AwsSeed>, String> {
    let mut seeds = Vec::new();
    let pem = |m: &Material| m.to_pem().map_err(|e| e.to_string());

    let aws = read(&state.aws);
    for k in aws.keys.values().filter(|k| !k.replica) {
        seeds.push(AwsSeed {
            id: Some(k.id.clone()),
            spec: k.spec.clone(),
            usage: Some(k.usage.clone()),
            aliases: aws
                .aliases
                .iter()
                .filter(|(_, id)| **id == k.id)
                .map(|(a, _)| a.clone())
                .collect(),
            region: Some(k.region.clone()),
            enabled: k.state == AwsKeyState::Enabled,
            description: k.description.clone(),
            private_key: if k.origin == "EXTERNAL" && !k.imported {
                None
            } else {
                Some(pem(&k.material)?)
            },
            private_key_file: None,
            previous_keys: k
                .previous
                .iter()
                .map(|m| pem(m))
                .collect::<Result<_, _>>()?,
            rotations: k.rotations.clone(),
            rotation_period_days: k.rotation_period,
            next_rotation: k.next_rotation,
            tags: k.tags.clone(),
            policy: k.policy.clone(),
            grants: k.grants.clone(),
            deletion_date: k.deletion_date,
            created: Some(k.created),
            origin: (k.origin != "AWS_KMS").then(|| k.origin.clone()),
            valid_to: k.valid_to,
            multi_region: k.multi_region,
            replica_regions: aws
                .keys
                .values()
                .filter(|r| r.replica && r.id == k.id)
                .map(|r| r.region.clone())
                .collect(),
        });
    }
    Ok(seeds)
}

/// Loads key material from inline PEM, a file, or generates it.
fn material_from(
    pem: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
    kind: KeyKind,
    what: &str,
) -> Result<Arc<Material>, String> {
    let text = match (pem, file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => {
            let f = if f.is_relative() {
                base.join(f)
            } else {
                f.clone()
            };
            Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| format!("{what}: cannot read {}: {e}", f.display()))?,
            )
        }
        (None, None) => None,
    };
    let m = match text {
        Some(t) => Material::from_pem(&t).map_err(|e| format!("{what}: {e}"))?,
        None => Material::generate(kind).map_err(|e| format!("{what}: {e}"))?,
    };
    if m.kind() != kind {
        return Err(format!(
            "{what}: the private key is {:?}, the key spec needs {kind:?}",
            m.kind()
        ));
    }
    Ok(Arc::new(m))
}
