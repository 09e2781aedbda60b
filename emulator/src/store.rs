//! Key stores of the three services, the seed/state file format, and the
//! shared state every handler sees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::crypto::{KeyKind, Material};
use crate::faults::{lock, Faults};
use crate::Config;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The AWS account id used in ARNs.
pub const AWS_ACCOUNT: &str = "111122223333";

/// State of an AWS KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AwsKeyState {
    /// Usable.
    Enabled,
    /// Disabled by DisableKey.
    Disabled,
    /// Scheduled for deletion.
    PendingDeletion,
}

/// One AWS KMS key.
#[derive(Debug, Clone)]
pub struct AwsKey {
    /// Key id (UUID).
    pub id: String,
    /// Region in the ARN.
    pub region: String,
    /// KeySpec, e.g. `ECC_NIST_P256`.
    pub spec: String,
    /// KeyUsage: `SIGN_VERIFY` or `ENCRYPT_DECRYPT`.
    pub usage: String,
    /// Key state.
    pub state: AwsKeyState,
    /// Creation time.
    pub created: u64,
    /// Deletion date when pending deletion.
    pub deletion_date: Option<u64>,
    /// Description.
    pub description: String,
    /// Key material.
    pub material: Arc<Material>,
}

impl AwsKey {
    /// The key ARN.
    pub fn arn(&self) -> String {
        format!("arn:aws:kms:{}:{AWS_ACCOUNT}:key/{}", self.region, self.id)
    }
}

/// AWS keys and aliases.
#[derive(Debug, Default)]
pub struct AwsStore {
    /// Keys by id.
    pub keys: BTreeMap<String, AwsKey>,
    /// `alias/NAME` -> key id.
    pub aliases: BTreeMap<String, String>,
}

/// One Google Cloud KMS key version.
#[derive(Debug, Clone)]
pub struct GcpVersion {
    /// Version number (1-based).
    pub number: u32,
    /// CryptoKeyVersionState as its integer.
    pub state: i32,
    /// Creation time.
    pub created: u64,
    /// Key material (absent once destroyed, and for external versions).
    pub material: Option<Arc<Material>>,
    /// Path of the key on the external key manager (`EXTERNAL_VPC` versions:
    /// `externalProtectionLevelOptions.ekmConnectionKeyPath`).
    pub ekm_key_path: Option<String>,
}

/// One Google Cloud KMS crypto key.
#[derive(Debug, Clone)]
pub struct GcpKey {
    /// Full resource name.
    pub name: String,
    /// CryptoKeyPurpose as its integer.
    pub purpose: i32,
    /// CryptoKeyVersionAlgorithm of new versions.
    pub algorithm: i32,
    /// ProtectionLevel.
    pub protection: i32,
    /// Creation time.
    pub created: u64,
    /// Versions, in order.
    pub versions: Vec<GcpVersion>,
    /// Primary version for ENCRYPT_DECRYPT keys.
    pub primary: Option<u32>,
    /// The EkmConnection behind an `EXTERNAL_VPC` key (`cryptoKeyBackend`).
    pub backend: Option<String>,
}

/// A Cloud KMS EkmConnection: how Cloud KMS reaches an external key manager.
#[derive(Debug, Clone)]
pub struct EkmConnection {
    /// `projects/P/locations/L/ekmConnections/ID`.
    pub name: String,
    /// Creation time.
    pub created: u64,
    /// The replicas, tried in order.
    pub resolvers: Vec<ServiceResolver>,
    /// KeyManagementMode as its integer (1 MANUAL, 2 CLOUD_KMS).
    pub mode: i32,
    /// Where Cloud KMS creates keys on the key manager (CLOUD_KMS mode).
    pub crypto_space_path: String,
    /// Changes with every update.
    pub etag: String,
}

/// One replica of an external key manager.
#[derive(Debug, Clone)]
pub struct ServiceResolver {
    /// Service Directory service name (kept, not resolved).
    pub service_directory_service: String,
    /// Service Directory endpoint filter (kept, not used).
    pub endpoint_filter: String,
    /// `host[:port]` the emulator dials (port 443 when absent).
    pub hostname: String,
    /// DER of the only server certificates trusted for this replica.
    pub server_certificates: Vec<Vec<u8>>,
}

/// Google Cloud KMS key rings and keys.
#[derive(Debug, Default)]
pub struct GcpStore {
    /// Key rings: name -> creation time.
    pub rings: BTreeMap<String, u64>,
    /// Crypto keys by name.
    pub keys: BTreeMap<String, GcpKey>,
    /// EkmConnections by name.
    pub ekm_connections: BTreeMap<String, EkmConnection>,
    /// `projects/P/locations/L` -> its EkmConfig's default connection.
    pub ekm_configs: BTreeMap<String, String>,
}

/// One Azure Key Vault key version.
#[derive(Debug, Clone)]
pub struct AzureVersion {
    /// Version id (32 hex digits).
    pub version: String,
    /// Enabled attribute.
    pub enabled: bool,
    /// Creation time.
    pub created: u64,
    /// Last update.
    pub updated: u64,
    /// Permitted operations.
    pub key_ops: Vec<String>,
    /// Key material.
    pub material: Arc<Material>,
}

/// One Azure Key Vault key.
#[derive(Debug, Clone)]
pub struct AzureKey {
    /// Key name.
    pub name: String,
    /// `EC`, `EC-HSM`, `RSA` or `RSA-HSM`.
    pub kty: String,
    /// Versions, the newest last.
    pub versions: Vec<AzureVersion>,
}

/// Azure Key Vault keys.
#[derive(Debug, Default)]
pub struct AzureStore {
    /// Keys by name.
    pub keys: BTreeMap<String, AzureKey>,
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
    pub ekm_link: crate::gcp_ekm::Link,
    /// Set while keys are loaded: the state file is written once at the
    /// end, never half-loaded.
    loading: std::sync::atomic::AtomicBool,
    persist: Mutex<()>,
}

/// Keys of the external key manager, by name (`{space}/keys/{id}`).
#[derive(Debug, Default)]
pub struct EkmStore {
    /// Keys by name.
    pub keys: BTreeMap<String, EkmKey>,
}

/// An external key manager key.
#[derive(Debug, Clone)]
pub struct EkmKey {
    /// `{crypto space path}/keys/{key id}`.
    pub name: String,
    /// Algorithm (Cloud KMS name, e.g. `EC_SIGN_P256_SHA256`).
    pub algorithm: String,
    /// Whether it may sign.
    pub enabled: bool,
    /// The key pair.
    pub material: Arc<Material>,
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
    pub fn new(config: Config) -> Result<State, String> {
        let state = State {
            config,
            aws: RwLock::default(),
            gcp: RwLock::default(),
            azure: RwLock::default(),
            ekm: RwLock::default(),
            faults: Faults::default(),
            ekm_link: crate::gcp_ekm::Link::default(),
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
        if let Some(seed) = seed {
            use std::sync::atomic::Ordering;
            self.loading.store(true, Ordering::SeqCst);
            let applied = seed.apply(self);
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
        let text = match Seed::export(self)
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

fn default_true() -> bool {
    true
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
}

/// A seeded external key manager key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkmSeed {
    /// `SPACE/keys/KEY_ID`.
    pub name: String,
    /// Algorithm (Cloud KMS name, e.g. `EC_SIGN_P256_SHA256`).
    pub algorithm: String,
    /// Enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Private key PEM; generated when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or: a file holding it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

/// A seeded Cloud KMS EkmConnection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkmConnectionSeed {
    /// `projects/P/locations/L/ekmConnections/ID`.
    pub name: String,
    /// `MANUAL` (default) or `CLOUD_KMS`.
    #[serde(default)]
    pub key_management_mode: Option<String>,
    /// Crypto space path (required for `CLOUD_KMS`).
    #[serde(default)]
    pub crypto_space_path: String,
    /// The replicas.
    #[serde(default)]
    pub service_resolvers: Vec<ServiceResolverSeed>,
}

/// A seeded service resolver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceResolverSeed {
    /// `host[:port]`.
    pub hostname: String,
    /// Service Directory service (kept, not resolved).
    #[serde(default)]
    pub service_directory_service: String,
    /// Service Directory endpoint filter (kept, not used).
    #[serde(default)]
    pub endpoint_filter: String,
    /// PEM text of the trusted server certificates.
    #[serde(default)]
    pub server_certificates: Vec<String>,
    /// Or: PEM files holding them (relative to the seed file).
    #[serde(default)]
    pub server_certificate_files: Vec<PathBuf>,
}

/// A seeded Cloud KMS EkmConfig.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkmConfigSeed {
    /// `projects/P/locations/L`.
    pub location: String,
    /// The default EkmConnection.
    pub default_ekm_connection: String,
}

/// A seeded AWS key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSeed {
    /// Key id; random when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// KeySpec (`ECC_NIST_P256`, `RSA_3072`, `SYMMETRIC_DEFAULT`, ...).
    pub spec: String,
    /// KeyUsage; `SIGN_VERIFY` for asymmetric specs, `ENCRYPT_DECRYPT` for symmetric.
    #[serde(default)]
    pub usage: Option<String>,
    /// Aliases, each `alias/NAME`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Region of the ARN (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Private key PEM (PKCS#8, SEC1 or PKCS#1; 64 hex digits for symmetric); generated when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or: a file holding it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

/// A seeded Google Cloud KMS crypto key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSeed {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K` (the key ring is created).
    pub key: String,
    /// Purpose name (`ASYMMETRIC_SIGN`, `ENCRYPT_DECRYPT`); derived from the algorithm when absent.
    #[serde(default)]
    pub purpose: Option<String>,
    /// Algorithm name (`EC_SIGN_P256_SHA256`, `GOOGLE_SYMMETRIC_ENCRYPTION`, ...).
    pub algorithm: String,
    /// Protection level name (default `SOFTWARE`).
    #[serde(default)]
    pub protection_level: Option<String>,
    /// Versions; one generated version when empty (none for `EXTERNAL_VPC`).
    #[serde(default)]
    pub versions: Vec<VersionSeed>,
    /// The EkmConnection of an `EXTERNAL_VPC` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_key_backend: Option<String>,
}

/// A seeded key version (Google Cloud KMS).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSeed {
    /// State name (default `ENABLED`).
    #[serde(default)]
    pub state: Option<String>,
    /// Private key PEM; generated when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or: a file holding it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// `EXTERNAL_VPC` keys: the key's path on the key manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ekm_connection_key_path: Option<String>,
}

/// A seeded Azure Key Vault key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSeed {
    /// Key name.
    pub name: String,
    /// `EC`, `EC-HSM`, `RSA` or `RSA-HSM`.
    pub kty: String,
    /// Curve for EC keys: `P-256`, `P-384`, `P-521`.
    #[serde(default)]
    pub crv: Option<String>,
    /// Modulus size for RSA keys (default 2048).
    #[serde(default)]
    pub key_size: Option<usize>,
    /// Versions, oldest first; one generated version when empty.
    #[serde(default)]
    pub versions: Vec<AzureVersionSeed>,
}

/// A seeded Azure key version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureVersionSeed {
    /// Version id (32 hex digits); random when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// Enabled (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Private key PEM; generated when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or: a file holding it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

/// Loads key material from inline PEM, a file, or generates it.
pub fn material_from(
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

    /// Puts the seeded keys into `state`.
    pub fn apply(self, state: &State) -> Result<(), String> {
        let here = Path::new(".");
        for k in self.aws {
            let what = format!("aws key {}", k.id.as_deref().unwrap_or(&k.spec));
            let (kind, default_usage) = crate::aws::spec_kind(&k.spec)
                .ok_or_else(|| format!("{what}: unknown spec {:?}", k.spec))?;
            let usage = k.usage.clone().unwrap_or_else(|| default_usage.to_string());
            crate::aws::check_usage(&k.spec, &usage).map_err(|e| format!("{what}: {e}"))?;
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
                created: now(),
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
        for k in self.ekm {
            crate::ekm::seed_key(state, k)?;
        }
        for c in self.gcp_ekm_connections {
            crate::gcp_ekm::seed_connection(state, c)?;
        }
        for k in self.gcp {
            crate::gcp::seed_key(state, k)?;
        }
        for c in self.gcp_ekm_configs {
            crate::gcp_ekm::seed_config(state, c)?;
        }
        for k in self.azure {
            crate::azure::seed_key(state, k)?;
        }
        Ok(())
    }

    /// Captures the current keys (with their private keys) for the state file.
    pub fn export(state: &State) -> Result<Seed, String> {
        let mut seed = Seed::default();
        let pem = |m: &Material| m.to_pem().map_err(|e| e.to_string());
        {
            let aws = read(&state.aws);
            for k in aws.keys.values() {
                seed.aws.push(AwsSeed {
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
        }
        {
            let gcp = read(&state.gcp);
            for k in gcp.keys.values() {
                let mut versions = Vec::new();
                for v in &k.versions {
                    let private_key = match (&v.material, &v.ekm_key_path) {
                        (Some(m), _) => Some(pem(m)?),
                        (None, Some(_)) => None,
                        (None, None) => continue,
                    };
                    versions.push(VersionSeed {
                        state: crate::gcp::state_name(v.state).map(str::to_string),
                        private_key,
                        private_key_file: None,
                        ekm_connection_key_path: v.ekm_key_path.clone(),
                    });
                }
                seed.gcp.push(GcpSeed {
                    key: k.name.clone(),
                    purpose: crate::gcp::purpose_name(k.purpose).map(str::to_string),
                    algorithm: crate::gcp::algorithm_name(k.algorithm)
                        .unwrap_or("UNKNOWN")
                        .to_string(),
                    protection_level: crate::gcp::protection_name(k.protection).map(str::to_string),
                    versions,
                    crypto_key_backend: k.backend.clone(),
                });
            }
            for c in gcp.ekm_connections.values() {
                seed.gcp_ekm_connections
                    .push(crate::gcp_ekm::export_connection(c));
            }
            for (location, conn) in &gcp.ekm_configs {
                seed.gcp_ekm_configs.push(EkmConfigSeed {
                    location: location.clone(),
                    default_ekm_connection: conn.clone(),
                });
            }
        }
        {
            for k in read(&state.ekm).keys.values() {
                seed.ekm.push(EkmSeed {
                    name: k.name.clone(),
                    algorithm: k.algorithm.clone(),
                    enabled: k.enabled,
                    private_key: Some(pem(&k.material)?),
                    private_key_file: None,
                });
            }
        }
        {
            let az = read(&state.azure);
            for k in az.keys.values() {
                let mut versions = Vec::new();
                for v in &k.versions {
                    versions.push(AzureVersionSeed {
                        version: Some(v.version.clone()),
                        enabled: v.enabled,
                        private_key: Some(pem(&v.material)?),
                        private_key_file: None,
                    });
                }
                seed.azure.push(AzureSeed {
                    name: k.name.clone(),
                    kty: k.kty.clone(),
                    crv: None,
                    key_size: None,
                    versions,
                });
            }
        }
        Ok(seed)
    }
}
