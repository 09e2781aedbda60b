//! Cloud KMS key rings, keys, EkmConnections and EkmConfigs, and their
//! sections of the seed and state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::Material;

/// One Google Cloud KMS key version.
#[derive(Debug, Clone, Default)]
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
    /// When a `DESTROY_SCHEDULED` version is destroyed.
    pub destroy_time: Option<u64>,
    /// When a `DESTROYED` version was destroyed.
    pub destroy_event_time: Option<u64>,
    /// The import job an imported version came through, and when.
    pub imported: Option<(String, u64)>,
}

/// One Google Cloud KMS crypto key.
#[derive(Debug, Clone, Default)]
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
    /// Automatic rotation period in seconds (symmetric keys).
    pub rotation_period: Option<u64>,
    /// When the key next rotates.
    pub next_rotation: Option<u64>,
    /// Seconds between `destroy` and the destruction (default 30 days).
    pub destroy_scheduled: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Versions can only be imported (`importOnly`).
    pub import_only: bool,
    /// The key's IAM policy, once one was set.
    pub iam: Option<IamPolicy>,
}

/// An IAM policy (`getIamPolicy`/`setIamPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamPolicy {
    /// Role bindings.
    #[serde(default)]
    pub bindings: Vec<IamBinding>,
    /// Changes with every update.
    #[serde(default)]
    pub etag: String,
}

/// One role binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamBinding {
    /// `roles/cloudkms.signerVerifier`, ...
    pub role: String,
    /// `user:NAME`, `serviceAccount:NAME`, `group:NAME`, `allUsers`, ...
    pub members: Vec<String>,
}

/// A caller of Cloud KMS: the member a bearer token stands for.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpIdentity {
    /// The bearer token.
    pub token: String,
    /// The IAM member (`serviceAccount:signer@p.iam.gserviceaccount.com`).
    pub member: String,
}

impl std::fmt::Debug for GcpIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpIdentity")
            .field("token", &"<redacted>")
            .field("member", &self.member)
            .finish()
    }
}

/// A Cloud KMS import job.
#[derive(Clone)]
pub struct ImportJob {
    /// `.../keyRings/R/importJobs/ID`.
    pub name: String,
    /// ImportMethod name.
    pub method: String,
    /// ProtectionLevel.
    pub protection: i32,
    /// Creation time (it expires 3 days later).
    pub created: u64,
    /// The wrapping key.
    pub key: Arc<Material>,
}

impl std::fmt::Debug for ImportJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportJob")
            .field("name", &self.name)
            .field("method", &self.method)
            .finish()
    }
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

/// Seconds between a version's `destroy` and its destruction, unless the
/// key says otherwise (`destroyScheduledDuration`).
pub const DEFAULT_DESTROY_SCHEDULED: u64 = 30 * 86_400;

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
    /// IAM policies set on key rings.
    pub ring_iam: BTreeMap<String, IamPolicy>,
    /// Callers known by their tokens; any other accepted token is the
    /// project's owner.
    pub identities: Vec<GcpIdentity>,
    /// Import jobs by name.
    pub import_jobs: BTreeMap<String, ImportJob>,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// Automatic rotation period, as Cloud KMS writes it (`604800s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period: Option<String>,
    /// When the key next rotates (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<u64>,
    /// Time between destroy and destruction (default `2592000s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_scheduled_duration: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The key's IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<IamPolicy>,
    /// The primary version of an `ENCRYPT_DECRYPT` key (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<u32>,
}

/// A seeded key version (Google Cloud KMS).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// `DESTROY_SCHEDULED`: when it is destroyed; `DESTROYED`: when it was
    /// (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_time: Option<u64>,
}

/// A seeded IAM policy of a key ring (`gcp_key_ring_iam`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingIamSeed {
    /// `projects/P/locations/L/keyRings/R` (created when missing).
    pub key_ring: String,
    /// Role bindings.
    pub bindings: Vec<IamBinding>,
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
    /// Key rings' IAM policies (`gcp_key_ring_iam`).
    #[serde(
        default,
        rename = "gcp_key_ring_iam",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ring_iam: Vec<RingIamSeed>,
    /// Callers known by their tokens (`gcp_identities`).
    #[serde(
        default,
        rename = "gcp_identities",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub identities: Vec<GcpIdentity>,
}
