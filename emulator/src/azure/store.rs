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

/// Key Vault's section of the seed and state file (`[[azure]]`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSections {
    /// Keys.
    #[serde(default)]
    pub azure: Vec<AzureSeed>,
}
