//! AWS KMS keys and aliases, and their section of the seed and state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::Material;
use crate::util::default_true;

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

/// AWS KMS's section of the seed and state file (`[[aws]]`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSections {
    /// Keys.
    #[serde(default)]
    pub aws: Vec<AwsSeed>,
}
