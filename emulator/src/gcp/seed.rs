//! Cloud KMS's sections of the seed and state file: crypto keys with their
//! versions (EkmConnections and EkmConfigs are in `ekm_service`).

use crate::gcp::ekm_service;
use crate::gcp::store::GcpSections;
use std::sync::Arc;

use crate::crypto::{self};
use crate::gcp::model::*;
use crate::gcp::store::{EkmConfigSeed, VersionSeed};
use crate::gcp::store::{GcpKey, GcpSeed, GcpVersion};
use crate::state::{read, write, State};

/// Creates a seeded key (and its key ring).
pub fn seed_key(state: &State, s: GcpSeed) -> Result<(), String> {
    let what = format!("gcp key {}", s.key);
    let (ring, _) = s.key.rsplit_once("/cryptoKeys/").ok_or_else(|| {
        format!("{what}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K")
    })?;
    let segs: Vec<&str> = s.key.split('/').collect();
    if segs.len() != 8 || segs[0] != "projects" || segs[2] != "locations" || segs[4] != "keyRings" {
        return Err(format!(
            "{what}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K"
        ));
    }
    let alg = ALGS
        .iter()
        .find(|a| a.name == s.algorithm)
        .ok_or_else(|| format!("{what}: unknown algorithm {:?}", s.algorithm))?;
    let purpose = match &s.purpose {
        Some(p) => name_to(PURPOSES, p).ok_or_else(|| format!("{what}: unknown purpose {p:?}"))?,
        None => alg.purpose,
    };
    if purpose != alg.purpose {
        return Err(format!(
            "{what}: algorithm {} does not fit purpose {purpose}",
            alg.name
        ));
    }
    let protection = match &s.protection_level {
        Some(p) => name_to(PROTECTION, p)
            .ok_or_else(|| format!("{what}: unknown protection level {p:?}"))?,
        None => SOFTWARE,
    };
    let external = protection == EXTERNAL_VPC;
    let backend = match (&s.crypto_key_backend, external) {
        (Some(b), true) => {
            ekm_service::check_backend(state, ring, b)
                .map_err(|e| format!("{what}: {}", e.message()))?;
            Some(b.clone())
        }
        (None, true) => {
            return Err(format!(
                "{what}: EXTERNAL_VPC keys need crypto_key_backend (an EkmConnection)"
            ))
        }
        (Some(_), false) => {
            return Err(format!(
                "{what}: crypto_key_backend is only for EXTERNAL_VPC keys"
            ))
        }
        (None, false) => None,
    };
    if external && purpose != ASYMMETRIC_SIGN {
        return Err(format!(
            "{what}: EXTERNAL_VPC keys must have purpose ASYMMETRIC_SIGN"
        ));
    }
    let duration = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(super::lifecycle::parse_duration)
            .transpose()
            .map_err(|e| format!("{what}: {field}: {}", e.message()))
    };
    let rotation_period = duration("rotation_period", &s.rotation_period)?;
    let destroy_scheduled = duration("destroy_scheduled_duration", &s.destroy_scheduled_duration)?
        .unwrap_or(crate::gcp::store::DEFAULT_DESTROY_SCHEDULED);
    if let Some(p) = &s.iam_policy {
        super::iam::check_bindings(&p.bindings).map_err(|e| format!("{what}: {}", e.message()))?;
    }
    let mut key = GcpKey {
        name: s.key.clone(),
        purpose,
        algorithm: alg.num,
        protection,
        created: state.now(),
        versions: Vec::new(),
        primary: None,
        backend,
        rotation_period,
        next_rotation: s.next_rotation,
        destroy_scheduled,
        labels: s.labels.clone(),
        import_only: false,
        iam: s.iam_policy.clone().map(|mut p| {
            p.etag = super::iam::new_etag();
            p
        }),
    };
    super::lifecycle::check_rotation(&key).map_err(|e| format!("{what}: {}", e.message()))?;
    let seeds = if s.versions.is_empty() && !external {
        vec![VersionSeed::default()]
    } else {
        s.versions
    };
    for v in seeds {
        let st = match &v.state {
            Some(n) => name_to(STATES, n).ok_or_else(|| format!("{what}: unknown state {n:?}"))?,
            None => ENABLED,
        };
        match (&v.ekm_connection_key_path, external) {
            (Some(path), true) if v.private_key.is_none() => {
                if !crate::util::valid_path(path) {
                    return Err(format!(
                        "{what}: ekm_connection_key_path {path:?} is not segments of [A-Za-z0-9._-] joined by /"
                    ));
                }
                key.versions.push(GcpVersion {
                    number: key.versions.len() as u32 + 1,
                    state: st,
                    created: state.now(),
                    material: None,
                    ekm_key_path: Some(path.clone()),
                    ..Default::default()
                });
                continue;
            }
            (_, true) => {
                return Err(format!(
                    "{what}: EXTERNAL_VPC versions take ekm_connection_key_path and no private key"
                ))
            }
            (Some(_), false) => {
                return Err(format!(
                    "{what}: ekm_connection_key_path is only for EXTERNAL_VPC keys"
                ))
            }
            (None, false) => {}
        }
        if st == DESTROYED {
            if v.private_key.is_some() {
                return Err(format!("{what}: a DESTROYED version has no private key"));
            }
            key.versions.push(GcpVersion {
                number: key.versions.len() as u32 + 1,
                state: DESTROYED,
                created: state.now(),
                destroy_event_time: Some(v.destroy_time.unwrap_or_else(|| state.now())),
                ..Default::default()
            });
            continue;
        }
        let m = match &v.private_key {
            Some(pem) => Some(Arc::new(
                crypto::Material::from_pem(pem).map_err(|e| format!("{what}: {e}"))?,
            )),
            None => None,
        };
        let mut version =
            new_version(&key, m, st, state.now()).map_err(|e| format!("{what}: {e}"))?;
        if st == DESTROY_SCHEDULED {
            version.destroy_time = Some(
                v.destroy_time
                    .unwrap_or_else(|| state.now() + key.destroy_scheduled),
            );
        }
        key.versions.push(version);
    }
    if purpose == ENCRYPT_DECRYPT {
        let primary = s.primary.unwrap_or(1);
        if key.versions.iter().all(|v| v.number != primary) {
            return Err(format!("{what}: primary version {primary} does not exist"));
        }
        key.primary = Some(primary);
    }
    let mut store = write(&state.gcp);
    store
        .rings
        .entry(ring.to_string())
        .or_insert_with(|| state.now());
    store.keys.insert(key.name.clone(), key);
    drop(store);
    state.persist();
    Ok(())
}

/// The `gcp`, `gcp_ekm_connections` and `gcp_ekm_configs` sections of the
/// state file.
pub(crate) fn export_seed(state: &State) -> Result<GcpSections, String> {
    let (mut keys, mut connections, mut configs) = (Vec::new(), Vec::new(), Vec::new());
    let pem = |m: &crypto::Material| m.to_pem().map_err(|e| e.to_string());

    let gcp = read(&state.gcp);
    for k in gcp.keys.values() {
        let mut versions = Vec::new();
        for v in &k.versions {
            let private_key = match (&v.material, &v.ekm_key_path) {
                (Some(m), _) => Some(pem(m)?),
                (None, _) => None,
            };
            versions.push(VersionSeed {
                state: state_name(v.state).map(str::to_string),
                private_key,
                private_key_file: None,
                ekm_connection_key_path: v.ekm_key_path.clone(),
                destroy_time: v.destroy_time.or(v.destroy_event_time),
            });
        }
        keys.push(GcpSeed {
            key: k.name.clone(),
            purpose: purpose_name(k.purpose).map(str::to_string),
            algorithm: algorithm_name(k.algorithm).unwrap_or("UNKNOWN").to_string(),
            protection_level: protection_name(k.protection).map(str::to_string),
            versions,
            crypto_key_backend: k.backend.clone(),
            rotation_period: k.rotation_period.map(|s| format!("{s}s")),
            next_rotation: k.next_rotation,
            destroy_scheduled_duration: Some(format!("{}s", k.destroy_scheduled)),
            labels: k.labels.clone(),
            iam_policy: k.iam.clone(),
            primary: k.primary,
        });
    }
    for c in gcp.ekm_connections.values() {
        connections.push(ekm_service::export_connection(c));
    }
    for (location, conn) in &gcp.ekm_configs {
        configs.push(EkmConfigSeed {
            location: location.clone(),
            default_ekm_connection: conn.clone(),
        });
    }
    Ok(GcpSections {
        keys,
        ekm_connections: connections,
        ekm_configs: configs,
        ring_iam: gcp
            .ring_iam
            .iter()
            .map(|(ring, p)| crate::gcp::store::RingIamSeed {
                key_ring: ring.clone(),
                bindings: p.bindings.clone(),
            })
            .collect(),
        // Identities from the command line stay there.
        identities: gcp
            .identities
            .iter()
            .filter(|i| {
                !state
                    .config
                    .gcp_identities
                    .iter()
                    .any(|c| c.token == i.token)
            })
            .cloned()
            .collect(),
    })
}
