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
    /// An `EXTERNAL` key waiting for (or without) its key material.
    PendingImport,
}

/// Import parameters handed out by GetParametersForImport.
#[derive(Debug, Clone)]
pub struct ImportParams {
    /// The import token.
    pub token: String,
    /// The RSA wrapping key.
    pub wrapping: Arc<Material>,
    /// The wrapping algorithm.
    pub algorithm: String,
    /// Valid until (24 hours).
    pub valid_to: u64,
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
    /// Key material (the current one of a rotated symmetric key).
    pub material: Arc<Material>,
    /// Earlier key material of a rotated symmetric key, oldest first: old
    /// ciphertexts still decrypt.
    pub previous: Vec<Arc<Material>>,
    /// Rotations made, oldest first.
    pub rotations: Vec<Rotation>,
    /// Automatic rotation period in days, when enabled.
    pub rotation_period: Option<u64>,
    /// When the key next rotates automatically.
    pub next_rotation: Option<u64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The key policy document, once one was set (CreateKey `Policy`,
    /// PutKeyPolicy, the seed); `None`: the default policy, everything
    /// allowed.
    pub policy: Option<String>,
    /// Grants.
    pub grants: Vec<Grant>,
    /// `AWS_KMS` or `EXTERNAL` (imported key material).
    pub origin: String,
    /// The latest import parameters of an `EXTERNAL` key.
    pub import: Option<ImportParams>,
    /// When imported key material expires, if it does.
    pub valid_to: Option<u64>,
    /// Whether imported key material is in the key (`EXTERNAL` keys).
    pub imported: bool,
    /// Whether material was ever imported: a reimport must bring the same.
    pub ever_imported: bool,
    /// A multi-Region key (`mrk-` id): the primary and its replicas share
    /// the id and the material, each in its own Region.
    pub multi_region: bool,
    /// A replica of a multi-Region key (not its primary).
    pub replica: bool,
}

/// One rotation of a key's material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// When (Unix seconds).
    pub date: u64,
    /// `AUTOMATIC` or `ON_DEMAND`.
    pub kind: String,
}

/// A grant: permissions for a grantee principal on one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Grant id.
    pub id: String,
    /// The grant token callers may pass in `GrantTokens`.
    pub token: String,
    /// Friendly name.
    #[serde(default)]
    pub name: String,
    /// Who the grant is for (an ARN).
    pub grantee: String,
    /// Who may retire it, besides the grantee.
    #[serde(default)]
    pub retiring: Option<String>,
    /// Operation names (`Sign`, `Decrypt`, ...).
    pub operations: Vec<String>,
    /// `EncryptionContextSubset` constraint.
    #[serde(default)]
    pub context_subset: Option<BTreeMap<String, String>>,
    /// `EncryptionContextEquals` constraint.
    #[serde(default)]
    pub context_equals: Option<BTreeMap<String, String>>,
    /// Who created it (an ARN).
    #[serde(default)]
    pub issuer: String,
    /// Creation time.
    #[serde(default)]
    pub created: u64,
}

impl AwsKey {
    /// A new enabled key with nothing but its material.
    pub fn new(
        id: String,
        region: String,
        spec: String,
        usage: String,
        created: u64,
        material: Arc<Material>,
    ) -> AwsKey {
        AwsKey {
            id,
            region,
            spec,
            usage,
            state: AwsKeyState::Enabled,
            created,
            deletion_date: None,
            description: String::new(),
            material,
            previous: Vec::new(),
            rotations: Vec::new(),
            rotation_period: None,
            next_rotation: None,
            tags: BTreeMap::new(),
            policy: None,
            grants: Vec::new(),
            origin: "AWS_KMS".into(),
            import: None,
            valid_to: None,
            imported: false,
            ever_imported: false,
            multi_region: false,
            replica: false,
        }
    }

    /// Where the key is kept in the store: its id, or `ID/REGION` for a
    /// replica of a multi-Region key.
    pub fn slot(&self) -> String {
        if self.replica {
            format!("{}/{}", self.id, self.region)
        } else {
            self.id.clone()
        }
    }

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
    /// Earlier material of a rotated symmetric key (64 hex digits each),
    /// oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<String>,
    /// Rotations made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Rotation>,
    /// Automatic rotation period in days (symmetric keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_days: Option<u64>,
    /// Next automatic rotation (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<u64>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Key policy document (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// Pending deletion until then (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<u64>,
    /// Creation time (Unix seconds); start when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// `EXTERNAL`: the key takes imported material (`private_key` is that
    /// material; without it the key waits in PendingImport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When imported material expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<u64>,
    /// A multi-Region primary key (the id must start with `mrk-`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi_region: bool,
    /// Regions of its replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_regions: Vec<String>,
}

/// AWS KMS's section of the seed and state file (`[[aws]]`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSections {
    /// Keys.
    #[serde(default)]
    pub aws: Vec<AwsSeed>,
}
