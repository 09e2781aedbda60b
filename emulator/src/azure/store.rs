//! Key Vault keys and their section of the seed and state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::Material;
use crate::util::default_true;

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
    /// Not valid after (`exp`, Unix seconds): sign, encrypt and wrapKey are
    /// refused from then on.
    pub exp: Option<u64>,
    /// Not valid before (`nbf`, Unix seconds).
    pub nbf: Option<u64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
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
    /// The rotation policy, once one was set.
    pub rotation_policy: Option<RotationPolicy>,
}

/// A key's rotation policy (`/keys/NAME/rotationpolicy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// Lifetime actions.
    #[serde(default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    /// ISO 8601 duration after which a new version expires (`P90D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created: u64,
    /// Last update.
    #[serde(default)]
    pub updated: u64,
}

/// One lifetime action of a rotation policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeAction {
    /// `Rotate` or `Notify`.
    pub action: String,
    /// ISO 8601 duration after the newest version's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    /// ISO 8601 duration before the newest version's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

/// A soft-deleted key: recoverable until its purge date.
#[derive(Debug, Clone)]
pub struct DeletedKey {
    /// The key as it was.
    pub key: AzureKey,
    /// When it was deleted.
    pub deleted: u64,
    /// When it is purged.
    pub purge: u64,
}

/// A caller of Key Vault with role assignments (RBAC).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureIdentity {
    /// The bearer token that identifies the caller.
    pub token: String,
    /// Role names (`Key Vault Crypto User`, `Key Vault Crypto Officer`,
    /// `Key Vault Reader`, `Key Vault Administrator`, `Key Vault Crypto
    /// Service Encryption User`).
    pub roles: Vec<String>,
    /// Key names the assignments are scoped to; the whole vault when empty.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl std::fmt::Debug for AzureIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureIdentity")
            .field("token", &"<redacted>")
            .field("roles", &self.roles)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Azure Key Vault keys.
#[derive(Debug, Default)]
pub struct AzureStore {
    /// Keys by name.
    pub keys: BTreeMap<String, AzureKey>,
    /// Soft-deleted keys by name.
    pub deleted: BTreeMap<String, DeletedKey>,
    /// Callers with role assignments; when there are none, or for any other
    /// accepted token, everything is allowed.
    pub identities: Vec<AzureIdentity>,
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
    /// The rotation policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<RotationPolicy>,
    /// Soft-deleted at this time (Unix seconds): the key starts in
    /// `deletedkeys`, purged 90 days later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u64>,
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
    /// Not valid after (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not valid before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Permitted operations; the key type's defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Creation time (Unix seconds); now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// Private key PEM; generated when absent.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Or: a file holding it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

/// Key Vault's section of the seed and state file (`[[azure]]`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSections {
    /// Keys.
    #[serde(default)]
    pub azure: Vec<AzureSeed>,
    /// Callers with role assignments (`azure_identities`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub azure_identities: Vec<AzureIdentity>,
}
