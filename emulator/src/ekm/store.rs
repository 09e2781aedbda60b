//! The external key manager's keys (shared by its replicas) and their
//! section of the seed and state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::Material;
use crate::util::default_true;

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

/// The key manager's section of the seed and state file (`[[ekm]]`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkmSections {
    /// Keys.
    #[serde(default)]
    pub ekm: Vec<EkmSeed>,
}
