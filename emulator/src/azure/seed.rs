//! Key Vault's section of the seed and state file, and the service's
//! registration.

use std::sync::Arc;

use serde_json::Value;

use super::store::{self, AzureKey, AzureSeed, AzureVersion, AzureVersionSeed, DeletedKey};
use super::{add_version, default_ops, kind_for, new_version_id};
use crate::crypto::{KeyKind, Material};
use crate::state::{read, write, State};
use crate::{Reply, Request};

/// Creates a seeded key; returns the newest version id.
pub fn seed_key(state: &State, s: AzureSeed) -> Result<String, String> {
    let what = format!("azure key {}", s.name);
    let seeds = if s.versions.is_empty() {
        vec![AzureVersionSeed {
            version: None,
            enabled: true,
            exp: None,
            nbf: None,
            tags: Default::default(),
            key_ops: None,
            created: None,
            private_key: None,
            private_key_file: None,
        }]
    } else {
        s.versions
    };
    let mut last = String::new();
    for v in seeds {
        let material = match &v.private_key {
            Some(pem) => Material::from_pem(pem).map_err(|e| format!("{what}: {e}"))?,
            None => {
                let kind = kind_for(&s.kty, s.crv.as_deref(), s.key_size)
                    .map_err(|e| format!("{what}: {e}"))?;
                Material::generate(kind).map_err(|e| format!("{what}: {e}"))?
            }
        };
        let ok = match material.kind() {
            KeyKind::P256 | KeyKind::P384 | KeyKind::P521 => s.kty.starts_with("EC"),
            KeyKind::Rsa(_) => s.kty.starts_with("RSA"),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{what}: a {:?} key cannot be of type {}",
                material.kind(),
                s.kty
            ));
        }
        if let Some(v) = &v.version {
            if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{what}: version {v:?} must be 32 hex digits"));
            }
        }
        let t = v.created.unwrap_or_else(|| state.now());
        last = add_version(
            state,
            &s.name,
            &s.kty,
            AzureVersion {
                version: v.version.clone().unwrap_or_else(new_version_id),
                enabled: v.enabled,
                created: t,
                updated: t,
                key_ops: v.key_ops.clone().unwrap_or_else(|| default_ops(&s.kty)),
                exp: v.exp,
                nbf: v.nbf,
                tags: v.tags.clone(),
                material: Arc::new(material),
            },
        );
    }
    let mut store = write(&state.azure);
    if let Some(policy) = s.rotation_policy {
        super::lifecycle::check_policy(&policy).map_err(|e| format!("{what}: {}", e.message))?;
        if let Some(k) = store.keys.get_mut(&s.name) {
            k.rotation_policy = Some(policy);
        }
    }
    if let Some(deleted) = s.deleted {
        if let Some(key) = store.keys.remove(&s.name) {
            let purge = deleted + super::lifecycle::RECOVERABLE_DAYS * 86_400;
            store.deleted.insert(
                s.name.clone(),
                DeletedKey {
                    key,
                    deleted,
                    purge,
                },
            );
        }
    }
    Ok(last)
}

/// The `azure` section of the state file.
pub(crate) fn export_seed(state: &State) -> Result<Vec<AzureSeed>, String> {
    let mut seeds = Vec::new();
    let pem = |m: &Material| m.to_pem().map_err(|e| e.to_string());

    let az = read(&state.azure);
    let keys = az.keys.values().map(|k| (k, None));
    let deleted = az.deleted.values().map(|d| (&d.key, Some(d.deleted)));
    for (k, deleted) in keys.chain(deleted) {
        seeds.push(export_key(k, deleted, &pem)?);
    }
    Ok(seeds)
}

fn export_key(
    k: &AzureKey,
    deleted: Option<u64>,
    pem: &dyn Fn(&Material) -> Result<String, String>,
) -> Result<AzureSeed, String> {
    let mut versions = Vec::new();
    for v in &k.versions {
        versions.push(AzureVersionSeed {
            version: Some(v.version.clone()),
            enabled: v.enabled,
            exp: v.exp,
            nbf: v.nbf,
            tags: v.tags.clone(),
            key_ops: Some(v.key_ops.clone()),
            created: Some(v.created),
            private_key: Some(pem(&v.material)?),
            private_key_file: None,
        });
    }
    Ok(AzureSeed {
        name: k.name.clone(),
        kty: k.kty.clone(),
        crv: None,
        key_size: None,
        versions,
        rotation_policy: k.rotation_policy.clone(),
        deleted,
    })
}

/// Azure Key Vault keys: HTTPS with challenge authentication.
#[derive(Debug)]
pub struct Azure;

impl crate::service::Emulated for Azure {
    const NAME: &'static str = "azure";
    const SEED_KEYS: &'static [&'static str] = &["azure", "azure_identities"];
    const TRANSPORT: crate::service::Transport = crate::service::Transport::Tls;
    type Seed = store::AzureSections;

    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String> {
        for k in seed.azure {
            seed_key(state, k)?;
        }
        let mut identities = seed.azure_identities;
        identities.extend(state.config.azure_identities.iter().cloned());
        for i in &identities {
            super::rbac::check_identity(i)?;
        }
        write(&state.azure).identities = identities;
        Ok(())
    }

    fn export_seed(state: &State) -> Result<Self::Seed, String> {
        Ok(store::AzureSections {
            azure: export_seed(state)?,
            // Identities from the command line stay there.
            azure_identities: read(&state.azure)
                .identities
                .iter()
                .filter(|i| {
                    !state
                        .config
                        .azure_identities
                        .iter()
                        .any(|c| c.token == i.token)
                })
                .cloned()
                .collect(),
        })
    }

    fn resolve_files(seed: &mut Self::Seed, base: &std::path::Path) -> Result<(), String> {
        for k in &mut seed.azure {
            for v in &mut k.versions {
                crate::seed::read_file(base, &mut v.private_key_file, &mut v.private_key)?;
            }
        }
        Ok(())
    }

    /// Writes the CA that issued the server certificate (`azure_ca_cert`).
    async fn start(
        setup: &crate::service::Setup<'_>,
        urls: &[String],
    ) -> Result<crate::service::ReadyEntries, String> {
        let ca = setup.write_pem("azure-ca.pem", &setup.tls.ca_pem)?;
        Ok(vec![
            (
                "azure",
                Value::String(urls.first().cloned().unwrap_or_default()),
            ),
            ("azure_ca_cert", Value::String(ca.display().to_string())),
        ])
    }

    async fn handle(state: &Arc<State>, req: Request, _replica: usize) -> Reply {
        super::handle(state, req).await
    }

    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &Value) -> Result<(), String> {
        let e = &body["error"];
        if e["code"].as_str().is_none() || e["message"].as_str().is_none() {
            return Err(format!(
                "error {status} without error.code and error.message: {body}"
            ));
        }
        Ok(())
    }
}
