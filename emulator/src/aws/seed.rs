//! AWS KMS's section of the seed and state file.

use crate::aws::model::*;
use crate::aws::store::AwsSeed;
use crate::aws::store::{AwsKey, AwsKeyState};
use crate::crypto::{material_from, Material};
use crate::state::{read, write, State};

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
        let key = AwsKey {
            id: k.id.unwrap_or_else(crate::crypto::uuid),
            region: k.region.unwrap_or_else(|| "us-east-1".into()),
            spec: k.spec,
            usage,
            state: if k.enabled {
                AwsKeyState::Enabled
            } else {
                AwsKeyState::Disabled
            },
            created: state.now(),
            deletion_date: None,
            description: k.description,
            material,
        };
        let mut aws = write(&state.aws);
        for a in k.aliases {
            if !a.starts_with("alias/") || a.starts_with("alias/aws/") {
                return Err(format!("{what}: alias {a:?} must be alias/NAME"));
            }
            aws.aliases.insert(a, key.id.clone());
        }
        aws.keys.insert(key.id.clone(), key);
    }
    Ok(())
}

/// The `aws` section of the state file.
pub(crate) fn export_seed(state: &State) -> Result<Vec<AwsSeed>, String> {
    let mut seeds = Vec::new();
    let pem = |m: &Material| m.to_pem().map_err(|e| e.to_string());

    let aws = read(&state.aws);
    for k in aws.keys.values() {
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
            private_key: Some(pem(&k.material)?),
            private_key_file: None,
        });
    }
    Ok(seeds)
}
