//! Cloud KMS key rings, keys, EkmConnections and EkmConfigs, and their
//! sections of the seed and state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::Material;

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

/// Cloud KMS's sections of the seed and state file, as one value.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSections {
    /// Crypto keys (`gcp`).
    #[serde(default, rename = "gcp")]
    pub keys: Vec<GcpSeed>,
    /// EkmConnections (`gcp_ekm_connections`), created before the keys
    /// that use them.
    #[serde(default, rename = "gcp_ekm_connections")]
    pub ekm_connections: Vec<EkmConnectionSeed>,
    /// EkmConfigs (`gcp_ekm_configs`): the default connection of a
    /// location.
    #[serde(default, rename = "gcp_ekm_configs")]
    pub ekm_configs: Vec<EkmConfigSeed>,
}
