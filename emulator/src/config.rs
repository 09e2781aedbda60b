//! The emulator's settings.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// Emulator settings. `Debug` shows access keys and whether a token is
/// set, never a secret key or a token.
#[derive(Clone)]
pub struct Config {
    /// Address to bind (default 127.0.0.1).
    pub bind: IpAddr,
    /// Address the admin API binds (default 127.0.0.1, whatever `bind`
    /// is: reset, faults and the request log stay off the network when
    /// the services are exposed).
    pub admin_bind: IpAddr,
    /// File the request log is appended to (JSON lines), if any.
    pub request_log: Option<PathBuf>,
    /// First port: AWS on it, then GCP, Azure, admin on the next ones;
    /// `None` lets the OS choose each.
    pub port: Option<u16>,
    /// Seed file with keys to create at start.
    pub seed: Option<PathBuf>,
    /// State file: loaded at start when it exists, rewritten after every change.
    pub state_file: Option<PathBuf>,
    /// Directory for the Azure CA certificate; a temporary one when `None`.
    pub cert_dir: Option<PathBuf>,
    /// AWS credentials accepted in SigV4 signatures: (access key, secret).
    pub aws_credentials: Vec<(String, String)>,
    /// The principal (an IAM ARN) of an access key of `aws_credentials`, for
    /// key policies and grants; an access key without one is the account's
    /// root (`arn:aws:iam::111122223333:root`).
    pub aws_principals: Vec<(String, String)>,
    /// Bearer token Google Cloud KMS requires; anonymous access when `None`.
    pub gcp_token: Option<String>,
    /// Bearer token Azure requires; any token accepted when `None`.
    pub azure_token: Option<String>,
    /// Cloud KMS callers known by their tokens, besides the seed's
    /// `gcp_identities` (IAM policies decide what they may do).
    pub gcp_identities: Vec<crate::gcp::store::GcpIdentity>,
    /// Key Vault callers with role assignments, besides the seed's
    /// `azure_identities`.
    pub azure_identities: Vec<crate::azure::store::AzureIdentity>,
    /// The `resource` Key Vault's 401 challenge names (default
    /// `https://vault.azure.net`); another value plays a vault (or whoever
    /// answers at its address) asking for a token of another audience.
    pub azure_challenge_resource: String,
    /// Replicas of the external key manager (each on its own port).
    pub ekm_replicas: usize,
    /// Bearer token the external key manager requires besides the client
    /// certificate; none when `None`.
    pub ekm_token: Option<String>,
    /// Port of the instance metadata services; after the key manager
    /// replicas with `port`, else chosen by the OS, when `None`.
    pub metadata_port: Option<u16>,
    /// Seconds the emulated clock runs ahead of the machine's (negative:
    /// behind) at start and after a reset.
    pub clock_offset: i64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("admin_bind", &self.admin_bind)
            .field("request_log", &self.request_log)
            .field("port", &self.port)
            .field("seed", &self.seed)
            .field("state_file", &self.state_file)
            .field("cert_dir", &self.cert_dir)
            .field(
                "aws_credentials",
                &self
                    .aws_credentials
                    .iter()
                    .map(|(access, _)| (access.as_str(), "<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("aws_principals", &self.aws_principals)
            .field("gcp_token", &redacted(&self.gcp_token))
            .field("azure_token", &redacted(&self.azure_token))
            .field("gcp_identities", &self.gcp_identities)
            .field("azure_identities", &self.azure_identities)
            .field("azure_challenge_resource", &self.azure_challenge_resource)
            .field("ekm_replicas", &self.ekm_replicas)
            .field("ekm_token", &redacted(&self.ekm_token))
            .field("metadata_port", &self.metadata_port)
            .field("clock_offset", &self.clock_offset)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            admin_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            request_log: None,
            port: None,
            seed: None,
            state_file: None,
            cert_dir: None,
            aws_credentials: vec![("test".into(), "test".into())],
            aws_principals: Vec::new(),
            gcp_token: None,
            azure_token: None,
            gcp_identities: Vec::new(),
            azure_identities: Vec::new(),
            azure_challenge_resource: "https://vault.azure.net".into(),
            ekm_replicas: 2,
            ekm_token: None,
            metadata_port: None,
            clock_offset: 0,
        }
    }
}
