//! The state every handler sees: it only aggregates the services' stores
//! (each service owns its types, and its section of the seed and state
//! file), the faults and counters, and how the state file is written.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::aws::store::{AwsSeed, AwsStore};
use crate::azure::store::{AzureSeed, AzureStore};
use crate::ekm::store::{EkmSeed, EkmStore};
use crate::faults::{lock, Faults};
use crate::gcp::link::Link;
use crate::gcp::store::{EkmConfigSeed, EkmConnectionSeed, GcpSeed, GcpStore};
use crate::metadata::{Instances, MetadataStore, Signer};
use crate::Config;

/// How seeds reach the services: `apply` puts a seed's sections into their
/// services' stores, `export` reads every service's section back. Given by
/// whoever builds the [`State`] (the emulator knows its services; the state
/// does not).
#[derive(Debug, Clone, Copy)]
pub struct SeedIo {
    /// Puts a seed into the stores.
    pub apply: fn(Seed, &State) -> Result<(), String>,
    /// Captures the stores as a seed.
    pub export: fn(&State) -> Result<Seed, String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    /// Emulator settings.
    pub config: Config,
    /// AWS KMS.
    pub aws: RwLock<AwsStore>,
    /// Google Cloud KMS.
    pub gcp: RwLock<GcpStore>,
    /// Azure Key Vault.
    pub azure: RwLock<AzureStore>,
    /// The external key manager (shared by its replicas).
    pub ekm: RwLock<EkmStore>,
    /// Faults and counters.
    pub faults: Faults,
    /// How the emulated Cloud KMS reaches external key managers.
    pub ekm_link: Link,
    /// The instances the metadata services answer for.
    pub metadata: RwLock<MetadataStore>,
    /// The key metadata documents and tokens are signed with (set at
    /// start).
    pub metadata_signer: std::sync::OnceLock<Signer>,
    seed_io: SeedIo,
    /// Set while keys are loaded: the state file is written once at the
    /// end, never half-loaded.
    loading: std::sync::atomic::AtomicBool,
    persist: Mutex<()>,
}

/// Read lock that survives a poisoned lock.
pub fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write lock that survives a poisoned lock.
pub fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Builds the state: the state file when it exists, else the seed file.
    pub fn new(config: Config, seed_io: SeedIo) -> Result<State, String> {
        let state = State {
            config,
            aws: RwLock::default(),
            gcp: RwLock::default(),
            azure: RwLock::default(),
            ekm: RwLock::default(),
            faults: Faults::default(),
            ekm_link: Link::default(),
            metadata: RwLock::default(),
            metadata_signer: std::sync::OnceLock::new(),
            seed_io,
            loading: std::sync::atomic::AtomicBool::new(false),
            persist: Mutex::new(()),
        };
        state.load_keys()?;
        Ok(state)
    }

    /// (Re)loads the keys from the state file or the seed.
    pub fn load_keys(&self) -> Result<(), String> {
        let seed = match &self.config.state_file {
            Some(p) if p.exists() => Some(Seed::load(p)?),
            _ => match &self.config.seed {
                Some(p) => Some(Seed::load(p)?),
                None => None,
            },
        };
        *write(&self.aws) = AwsStore::default();
        *write(&self.gcp) = GcpStore::default();
        *write(&self.azure) = AzureStore::default();
        *write(&self.ekm) = EkmStore::default();
        // Without a seed the services still get their defaults (the
        // metadata services' instances).
        let seed = seed.unwrap_or_default();
        {
            use std::sync::atomic::Ordering;
            self.loading.store(true, Ordering::SeqCst);
            let applied = (self.seed_io.apply)(seed, self);
            self.loading.store(false, Ordering::SeqCst);
            applied?;
            self.persist();
        }
        Ok(())
    }

    /// Writes the state file, if one is configured (atomically).
    pub fn persist(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if self.loading.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _guard = lock(&self.persist);
        let text = match (self.seed_io.export)(self)
            .and_then(|s| toml::to_string(&s).map_err(|e| format!("cannot serialise state: {e}")))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::error!("cannot write state file {}: {e}", path.display());
        }
    }
}

/// The seed and state file format (TOML).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// AWS KMS keys.
    #[serde(default)]
    pub aws: Vec<AwsSeed>,
    /// Google Cloud KMS keys.
    #[serde(default)]
    pub gcp: Vec<GcpSeed>,
    /// Azure Key Vault keys.
    #[serde(default)]
    pub azure: Vec<AzureSeed>,
    /// External key manager keys.
    #[serde(default)]
    pub ekm: Vec<EkmSeed>,
    /// Cloud KMS EkmConnections (created before the `gcp` keys that use them).
    #[serde(default)]
    pub gcp_ekm_connections: Vec<EkmConnectionSeed>,
    /// Cloud KMS EkmConfigs: the default connection of a location.
    #[serde(default)]
    pub gcp_ekm_configs: Vec<EkmConfigSeed>,
    /// Instances the metadata services answer for.
    #[serde(default)]
    pub instances: Instances,
}

impl Seed {
    /// Reads a seed or state file.
    pub fn load(path: &Path) -> Result<Seed, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut seed: Seed =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        seed.resolve_files(&base)?;
        Ok(seed)
    }

    fn resolve_files(&mut self, base: &Path) -> Result<(), String> {
        let read = |f: &mut Option<PathBuf>, pem: &mut Option<String>| -> Result<(), String> {
            if let Some(file) = f.take() {
                let file = if file.is_relative() {
                    base.join(file)
                } else {
                    file
                };
                *pem = Some(
                    std::fs::read_to_string(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
                );
            }
            Ok(())
        };
        for k in &mut self.aws {
            read(&mut k.private_key_file, &mut k.private_key)?;
        }
        for k in &mut self.gcp {
            for v in &mut k.versions {
                read(&mut v.private_key_file, &mut v.private_key)?;
            }
        }
        for k in &mut self.azure {
            for v in &mut k.versions {
                read(&mut v.private_key_file, &mut v.private_key)?;
            }
        }
        for k in &mut self.ekm {
            read(&mut k.private_key_file, &mut k.private_key)?;
        }
        for c in &mut self.gcp_ekm_connections {
            for r in &mut c.service_resolvers {
                for f in std::mem::take(&mut r.server_certificate_files) {
                    let mut pem = None;
                    read(&mut Some(f), &mut pem)?;
                    r.server_certificates.extend(pem);
                }
            }
        }
        Ok(())
    }
}
