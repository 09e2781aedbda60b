//! Instance metadata services on one more port, for code that proves a
//! host's cloud identity: EC2's IMDSv2 (`/latest/...`), Compute Engine's
//! metadata server (`/computeMetadata/v1/...`) and Azure's IMDS
//! (`/metadata/...`), answering for the seeded instances with documents
//! and tokens signed by a key the emulator holds and publishes (the
//! certificate that verifies EC2 signatures; JWKS for the Google and Azure
//! tokens at `/gcp/oauth2/v3/certs` and `/azure/discovery/v2.0/keys`).
//!
//! The first instance of each cloud answers; a request picks another with
//! the header `X-Kms-Emulator-Instance: ID` (EC2 instance id, GCE instance
//! id or name, Azure VM name), or the admin API's `POST
//! /metadata/select?cloud=aws&instance=ID` changes the default.

mod aws;
mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use rsa::pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};

use crate::faults::FaultError;
use crate::state::{read, write, State};
use crate::{Reply, Request};

/// The header a request names its instance with.
pub const INSTANCE_HEADER: &str = "x-kms-emulator-instance";

/// The clouds whose metadata the emulator serves.
pub const CLOUDS: [&str; 3] = ["aws", "gcp", "azure"];

/// Seeded instances, by cloud (`[[instances.aws]]`, ...).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instances {
    /// EC2 instances.
    #[serde(default)]
    pub aws: Vec<AwsInstance>,
    /// Compute Engine instances.
    #[serde(default)]
    pub gcp: Vec<GcpInstance>,
    /// Azure VMs with a system-assigned managed identity.
    #[serde(default)]
    pub azure: Vec<AzureInstance>,
}

/// An EC2 instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsInstance {
    /// Account id (12 digits).
    pub account_id: String,
    /// Region (`us-east-1`).
    pub region: String,
    /// Instance id (`i-0123456789abcdef0`).
    pub instance_id: String,
    /// Private IPv4 address.
    #[serde(default = "default_private_ip")]
    pub private_ip: String,
    /// Availability zone (default: the region and `a`).
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Launch time, seconds since the epoch (default: the emulator's
    /// start); the document's `pendingTime`.
    #[serde(default)]
    pub pending_time: Option<u64>,
    /// Instance type.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// AMI id.
    #[serde(default = "default_image")]
    pub image_id: String,
}

/// A Compute Engine instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GcpInstance {
    /// Project id.
    pub project_id: String,
    /// Project number.
    #[serde(default = "default_project_number")]
    pub project_number: u64,
    /// Zone (`us-central1-a`).
    pub zone: String,
    /// Instance id (decimal).
    pub instance_id: String,
    /// Instance name.
    pub instance_name: String,
    /// Creation time, seconds since the epoch (default: the emulator's
    /// start).
    #[serde(default)]
    pub creation_timestamp: Option<u64>,
    /// The default service account's email (default:
    /// `PROJECT_NUMBER-compute@developer.gserviceaccount.com`).
    #[serde(default)]
    pub service_account: Option<String>,
}

/// An Azure VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AzureInstance {
    /// Tenant (directory) id.
    pub tenant_id: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// VM name.
    pub vm_name: String,
    /// The managed identity's object (principal) id.
    #[serde(default = "default_principal")]
    pub principal_id: String,
    /// The managed identity's client (application) id.
    #[serde(default = "default_client")]
    pub client_id: String,
}

fn default_private_ip() -> String {
    "10.0.0.10".into()
}
fn default_instance_type() -> String {
    "t3.micro".into()
}
fn default_image() -> String {
    "ami-0123456789abcdef0".into()
}
fn default_project_number() -> u64 {
    123_456_789_012
}
fn default_principal() -> String {
    "11111111-2222-3333-4444-555555555555".into()
}
fn default_client() -> String {
    "66666666-7777-8888-9999-000000000000".into()
}

impl Instances {
    /// One instance per cloud, for an emulator started without any.
    pub fn defaults() -> Instances {
        Instances {
            aws: vec![AwsInstance {
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                instance_id: "i-0123456789abcdef0".into(),
                private_ip: default_private_ip(),
                availability_zone: None,
                pending_time: None,
                instance_type: default_instance_type(),
                image_id: default_image(),
            }],
            gcp: vec![GcpInstance {
                project_id: "emulator-project".into(),
                project_number: default_project_number(),
                zone: "us-central1-a".into(),
                instance_id: "1234567890123456789".into(),
                instance_name: "instance-1".into(),
                creation_timestamp: None,
                service_account: None,
            }],
            azure: vec![AzureInstance {
                tenant_id: "72f988bf-0000-4000-8000-000000000001".into(),
                subscription_id: "00000000-0000-4000-8000-000000000002".into(),
                resource_group: "emulator-rg".into(),
                vm_name: "vm-1".into(),
                principal_id: default_principal(),
                client_id: default_client(),
            }],
        }
    }

    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for i in &self.aws {
            if i.account_id.len() != 12 || !i.account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "instances.aws {}: account_id {:?} is not 12 digits",
                    i.instance_id, i.account_id
                ));
            }
            if !seen.insert(("aws", i.instance_id.clone())) {
                return Err(format!("instances.aws: {} twice", i.instance_id));
            }
        }
        for i in &self.gcp {
            if !seen.insert(("gcp", i.instance_id.clone())) {
                return Err(format!("instances.gcp: {} twice", i.instance_id));
            }
        }
        for i in &self.azure {
            if !seen.insert(("azure", i.vm_name.clone())) {
                return Err(format!("instances.azure: {} twice", i.vm_name));
            }
        }
        Ok(())
    }
}

/// The instances the metadata services answer for, and the default one
/// per cloud.
#[derive(Debug, Default)]
pub struct MetadataStore {
    /// Seeded (or default) instances.
    pub instances: Instances,
    /// The instance answering when a request names none, per cloud.
    pub selected: BTreeMap<&'static str, String>,
    /// IMDSv2 session tokens: token → (instance id, expiry).
    pub(crate) imds_tokens: BTreeMap<String, (String, u64)>,
}

/// Puts seeded instances in the store; clouds without any get the default
/// instance.
pub(crate) fn seed(state: &State, seeded: Instances) -> Result<(), String> {
    seeded.check()?;
    let defaults = Instances::defaults();
    let mut m = write(&state.metadata);
    m.instances = Instances {
        aws: if seeded.aws.is_empty() {
            defaults.aws
        } else {
            seeded.aws
        },
        gcp: if seeded.gcp.is_empty() {
            defaults.gcp
        } else {
            seeded.gcp
        },
        azure: if seeded.azure.is_empty() {
            defaults.azure
        } else {
            seeded.azure
        },
    };
    m.selected.clear();
    m.imds_tokens.clear();
    Ok(())
}

/// The instances, for the state file.
pub(crate) fn export(state: &State) -> Instances {
    read(&state.metadata).instances.clone()
}

/// Makes `instance` the one answering for `cloud` by default.
pub fn select(state: &State, cloud: &str, instance: &str) -> Result<(), String> {
    let mut m = write(&state.metadata);
    let (key, known) = match cloud {
        "aws" => (
            "aws",
            m.instances.aws.iter().any(|i| i.instance_id == instance),
        ),
        "gcp" => (
            "gcp",
            m.instances
                .gcp
                .iter()
                .any(|i| i.instance_id == instance || i.instance_name == instance),
        ),
        "azure" => (
            "azure",
            m.instances.azure.iter().any(|i| i.vm_name == instance),
        ),
        other => return Err(format!("no cloud {other:?} (known: {})", CLOUDS.join(", "))),
    };
    if !known {
        return Err(format!("no {cloud} instance {instance:?}"));
    }
    m.selected.insert(key, instance.to_owned());
    Ok(())
}

/// The key the metadata services sign with, its self-signed certificate
/// (what verifies EC2 signatures) and its JWKS.
pub struct Signer {
    key: rsa::RsaPrivateKey,
    /// PEM of the certificate.
    pub certificate_pem: String,
    /// DER of the certificate.
    certificate_der: Vec<u8>,
    /// The `kid` of the key in both JWKS.
    kid: String,
    /// When the emulator started (default launch and creation times).
    started: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Generates an RSA-2048 key and its certificate.
    pub fn generate() -> Result<Signer, String> {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
            .map_err(|e| format!("cannot generate the metadata signing key: {e}"))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the metadata signing key: {e}"))?;
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(|e| format!("cannot load the metadata signing key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("cannot make the metadata certificate: {e}"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kms-emulator instance identity");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "kms-emulator");
        let cert = params
            .self_signed(&pair)
            .map_err(|e| format!("cannot sign the metadata certificate: {e}"))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(cert.der());
        Ok(Signer {
            key,
            certificate_pem: cert.pem(),
            certificate_der: cert.der().to_vec(),
            kid: hex::encode(&digest[..20]),
            started: crate::state::real_now(),
        })
    }

    /// RSA PKCS#1 v1.5 signature with SHA-256 (`sha1`: with SHA-1).
    fn sign(&self, data: &[u8], sha1: bool) -> Result<Vec<u8>, String> {
        use rsa::signature::{SignatureEncoding, Signer as _};
        let sig = if sha1 {
            rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(self.key.clone())
                .try_sign(data)
                .map(|s| s.to_vec())
        } else {
            rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.key.clone())
                .try_sign(data)
                .map(|s| s.to_vec())
        };
        sig.map_err(|e| format!("cannot sign: {e}"))
    }
}

/// Handles one request to the metadata port.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    let Some(signer) = state.metadata_signer.get() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the metadata key is not ready",
        );
    };
    let op = operation(&req.path);
    if let Err(r) = crate::inject_faults(state, crate::Service::Metadata, op, None, |e| {
        let (status, msg) = match e {
            FaultError::Throttle => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            FaultError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            FaultError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        text(status, msg)
    })
    .await
    {
        return r;
    }
    // Every metadata service refuses what a proxy forwarded: a server
    // tricked into fetching a URL must not reach it through one.
    if req.header("x-forwarded-for").is_some() {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    if req.path.starts_with("/latest/") {
        aws::handle(state, signer, &req)
    } else if req.path.starts_with("/computeMetadata/") {
        tokens::gcp(state, signer, &req)
    } else if req.path.starts_with("/metadata/") {
        tokens::azure(state, signer, &req)
    } else if req.path == "/gcp/oauth2/v3/certs" || req.path == "/azure/discovery/v2.0/keys" {
        json(StatusCode::OK, &tokens::jwks(signer))
    } else {
        text(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// The counter name of a metadata request.
fn operation(path: &str) -> &'static str {
    match path {
        "/latest/api/token" => "imds_token",
        p if p.starts_with("/latest/dynamic/instance-identity/") => "instance_identity",
        p if p.starts_with("/latest/") => "imds_other",
        p if p.ends_with("/service-accounts/default/identity") => "gce_identity",
        p if p.starts_with("/computeMetadata/") => "gce_other",
        "/metadata/identity/oauth2/token" => "azure_token",
        p if p.starts_with("/metadata/") => "azure_other",
        _ => "jwks",
    }
}

/// The instance a request names, or the cloud's default.
fn pick<'a, T>(
    state: &State,
    req: &Request,
    cloud: &str,
    all: &'a [T],
    id: impl Fn(&T) -> [&str; 2],
) -> Option<&'a T> {
    let wanted = req
        .header(INSTANCE_HEADER)
        .map(str::to_owned)
        .or_else(|| read(&state.metadata).selected.get(cloud).cloned());
    match wanted {
        Some(w) => all.iter().find(|i| id(i).contains(&w.as_str())),
        None => all.first(),
    }
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Reply::Send(r)
}

pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
    Reply::Send(crate::json_response(status, body))
}

/// Base64 in lines of 64 characters, as the metadata services print it.
fn wrapped_b64(data: &[u8]) -> String {
    let b = crate::util::b64(data);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    lines.join("\n")
}

/// The instance metadata services on one more port.
#[derive(Debug)]
pub struct Metadata;

impl crate::service::Emulated for Metadata {
    const NAME: &'static str = "metadata";
    const SEED_KEYS: &'static [&'static str] = &["instances"];
    type Seed = MetadataSections;

    /// `--metadata-port`, else after the other listeners with `--port`.
    fn port(config: &crate::Config, slot: usize) -> Option<u16> {
        config
            .metadata_port
            .or(crate::service::slot_port(config, slot))
    }

    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String> {
        self::seed(state, seed.instances)
    }

    fn export_seed(state: &State) -> Result<Self::Seed, String> {
        Ok(MetadataSections {
            instances: export(state),
        })
    }

    /// Generates the key documents and tokens are signed with and writes
    /// the certificate that verifies EC2 signatures.
    async fn start(
        setup: &crate::service::Setup<'_>,
        urls: &[String],
    ) -> Result<crate::service::ReadyEntries, String> {
        let signer = tokio::task::spawn_blocking(Signer::generate)
            .await
            .map_err(|e| format!("the metadata key task failed: {e}"))??;
        let cert = setup.write_pem("metadata-aws.pem", &signer.certificate_pem)?;
        let _ = setup.state.metadata_signer.set(signer);
        let url = urls.first().cloned().unwrap_or_default();
        Ok(vec![
            (
                "metadata_gcp_jwks",
                serde_json::Value::String(format!("{url}/gcp/oauth2/v3/certs")),
            ),
            (
                "metadata_azure_jwks",
                serde_json::Value::String(format!("{url}/azure/discovery/v2.0/keys")),
            ),
            (
                "metadata_aws_certificate",
                serde_json::Value::String(cert.display().to_string()),
            ),
            ("metadata", serde_json::Value::String(url)),
        ])
    }

    async fn handle(state: &Arc<State>, req: Request, _replica: usize) -> Reply {
        handle(state, req).await
    }

    /// Answers are text or JSON as each cloud's are; any shape passes.
    #[cfg(feature = "fuzzing")]
    fn check_error(_status: u16, _body: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// The metadata services' section of the seed and state file
/// (`[[instances.aws]]`, ...).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSections {
    /// Instances the metadata services answer for.
    #[serde(default)]
    pub instances: Instances,
}
