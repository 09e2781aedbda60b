//! The `kms-emulator` binary.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

const SEED_HELP: &str = "\
SEED FILE (TOML; --state files use the same format):

  [[aws]]                               # AWS KMS key
  id = \"11111111-2222-3333-4444-555555555555\"   # optional, random when absent
  spec = \"ECC_NIST_P256\"                # ECC_NIST_P256/P384/P521, ECC_NIST_EDWARDS25519,
                                        # RSA_2048/3072/4096, SYMMETRIC_DEFAULT
  usage = \"SIGN_VERIFY\"                 # optional: SIGN_VERIFY | ENCRYPT_DECRYPT
  aliases = [\"alias/ssh-ca\"]            # optional
  region = \"us-east-1\"                  # optional, used in the ARN
  enabled = true                        # optional
  private_key_file = \"ca.pem\"           # optional PKCS#8/SEC1/PKCS#1 PEM (or private_key = \"...\"),
                                        # relative to the seed file; generated when absent
                                        # (64 hex digits for SYMMETRIC_DEFAULT, hmac:HEX for HMAC_*)
  tags = { team = \"security\" }         # optional
  policy = '{\"Statement\": [...]}'       # optional key policy (JSON); none: everything allowed
  rotation_period_days = 365            # optional automatic rotation (symmetric keys)
  origin = \"EXTERNAL\"                   # optional: imported material (none given: PendingImport)
  multi_region = true                   # optional, with an mrk- id; replica_regions = [\"us-west-2\"]
  [[aws.grants]]                        # optional
  id = \"g1\"
  token = \"grant-token\"
  grantee = \"arn:aws:iam::111122223333:user/ci\"
  operations = [\"Sign\"]

  [[gcp]]                               # Google Cloud KMS crypto key (key ring created)
  key = \"projects/p/locations/global/keyRings/r/cryptoKeys/ca\"
  algorithm = \"EC_SIGN_P256_SHA256\"     # EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, EC_SIGN_ED25519,
                                        # RSA_SIGN_PKCS1_{2048,3072,4096}_SHA256, RSA_SIGN_PKCS1_4096_SHA512,
                                        # RSA_SIGN_PSS_*, GOOGLE_SYMMETRIC_ENCRYPTION
  rotation_period = \"604800s\"           # optional, ENCRYPT_DECRYPT keys: rotate on the clock
  next_rotation = 1767225600            # optional (epoch seconds)
  destroy_scheduled_duration = \"86400s\" # optional (default 30 days)
  primary = 1                           # optional, ENCRYPT_DECRYPT keys
  labels = { team = \"security\" }       # optional
  [gcp.iam_policy]                      # optional: once set, bindings decide (see gcp_identities)
  bindings = [{ role = \"roles/cloudkms.signerVerifier\", members = [\"serviceAccount:ci@p.iam.gserviceaccount.com\"] }]
  [[gcp.versions]]                      # optional; one generated version when absent
  state = \"ENABLED\"                     # ENABLED, DISABLED, DESTROY_SCHEDULED, DESTROYED (no key)
  private_key_file = \"ca.pem\"
  destroy_time = 1767225600             # optional: when DESTROY_SCHEDULED ends / DESTROYED happened

  [[gcp_key_ring_iam]]                  # a key ring's IAM policy (its keys inherit it)
  key_ring = \"projects/p/locations/global/keyRings/r\"
  bindings = [{ role = \"roles/cloudkms.viewer\", members = [\"user:auditor@example.com\"] }]

  [[gcp_identities]]                    # a bearer token and the IAM member it stands for
  token = \"ci-token\"                    # (also --gcp-token TOKEN=MEMBER); other tokens are the owner
  member = \"serviceAccount:ci@p.iam.gserviceaccount.com\"

  [[gcp]]                               # an EXTERNAL_VPC key: held by the external key manager
  key = \"projects/p/locations/l/keyRings/r/cryptoKeys/ext\"
  algorithm = \"EC_SIGN_P256_SHA256\"
  protection_level = \"EXTERNAL_VPC\"
  crypto_key_backend = \"projects/p/locations/l/ekmConnections/hsm\"
  [[gcp.versions]]
  ekm_connection_key_path = \"v0/spaces/ssh/keys/ca\"

  [[gcp_ekm_connections]]               # Cloud KMS EkmConnection
  name = \"projects/p/locations/l/ekmConnections/hsm\"
  key_management_mode = \"MANUAL\"        # or CLOUD_KMS (then crypto_space_path is required)
  crypto_space_path = \"\"
  [[gcp_ekm_connections.service_resolvers]]
  hostname = \"127.0.0.1:8443\"          # dialled directly (no Service Directory); loopback only
  server_certificate_files = [\"ekm-server.pem\"]   # or server_certificates = [\"PEM\"]

  [[gcp_ekm_configs]]                   # Cloud KMS EkmConfig
  location = \"projects/p/locations/l\"
  default_ekm_connection = \"projects/p/locations/l/ekmConnections/hsm\"

  [[ekm]]                               # external key manager key
  name = \"v0/spaces/ssh/keys/ca\"        # SPACE/keys/KEY_ID
  algorithm = \"EC_SIGN_P256_SHA256\"     # Cloud KMS signing algorithm names
  enabled = true
  private_key_file = \"ca.pem\"           # optional; generated when absent

  [[azure]]                             # Azure Key Vault key
  name = \"ca\"
  kty = \"EC\"                            # EC, EC-HSM, RSA, RSA-HSM
  crv = \"P-256\"                         # EC: P-256, P-384, P-521
  key_size = 2048                       # RSA: 2048, 3072, 4096
  deleted = 1767225600                  # optional: soft-deleted then (recoverable 90 days)
  [azure.rotation_policy]               # optional
  expiry_time = \"P90D\"
  lifetime_actions = [{ action = \"Rotate\", time_after_create = \"P30D\" }]
  [[azure.versions]]                    # optional; one generated version when absent
  version = \"0123456789abcdef0123456789abcdef\"
  enabled = true
  exp = 1798761600                      # optional not-after / nbf not-before (epoch seconds)
  tags = { team = \"security\" }         # optional; key_ops = [...] and created = ... too
  private_key_file = \"ca.pem\"

  [[azure_identities]]                  # a bearer token with role assignments (also
  token = \"reader-token\"                # --azure-token TOKEN=ROLE,...); other tokens are the owner
  roles = [\"Key Vault Reader\"]          # Key Vault Administrator, Crypto Officer, Crypto User,
  keys = []                             # Crypto Service Encryption User, Reader; keys: scope

  [[instances.aws]]                     # an EC2 instance the metadata service answers for
  account_id = \"123456789012\"
  region = \"us-east-1\"
  instance_id = \"i-0123456789abcdef0\"
  private_ip = \"10.0.0.10\"             # optional
  availability_zone = \"us-east-1a\"     # optional (region + a)
  pending_time = 1767225600             # optional launch time (epoch seconds; default: start)

  [[instances.gcp]]                     # a Compute Engine instance
  project_id = \"my-project\"
  project_number = 123456789012         # optional
  zone = \"us-central1-a\"
  instance_id = \"1234567890123456789\"
  instance_name = \"web-1\"

  [[instances.azure]]                   # an Azure VM with a managed identity
  tenant_id = \"72f988bf-...\"
  subscription_id = \"0000...\"
  resource_group = \"rg\"
  vm_name = \"vm-1\"
  principal_id = \"1111...\"             # optional

PORTS: with --port N, AWS listens on N, Google Cloud on N+1, Azure (HTTPS) on N+2,
the admin API on N+3, the external key manager replicas (HTTPS, client
certificates) on N+4 onwards and the instance metadata services after them
(--metadata-port fixes that one alone); without it the OS chooses. The ready
file and stdout get one JSON object: {\"aws\", \"gcp\", \"azure\", \"azure_ca_cert\",
\"admin\", \"ekm\": [URL, ...], \"ekm_ca_cert\", \"ekm_server_cert\",
\"ekm_client_identity\", \"metadata\", \"metadata_aws_certificate\",
\"metadata_gcp_jwks\", \"metadata_azure_jwks\"}.

INSTANCE METADATA (plain HTTP, for code that proves a host's cloud identity):
IMDSv2 (PUT /latest/api/token, then /latest/dynamic/instance-identity/
{document,signature,rsa2048,pkcs7} with X-aws-ec2-metadata-token), GCE
(/computeMetadata/v1/instance/service-accounts/default/identity?audience=A&format=full
with Metadata-Flavor: Google) and Azure IMDS
(/metadata/identity/oauth2/token?api-version=V&resource=R with Metadata: true).
Every cloud without seeded instances has one default instance; the first
answers, a request picks another with X-Kms-Emulator-Instance: ID (EC2
instance id, GCE instance id or name, Azure VM name), and the admin API's
POST /metadata/select?cloud=aws&instance=ID changes the default.

GOOGLE CLOUD EKM: the Cloud KMS endpoint also serves EkmService (ekmConnections,
ekmConfig, verifyConnectivity) and EXTERNAL_VPC keys, whose getPublicKey and
asymmetricSign go to the connection's resolvers over TLS, trusting only the
resolvers' serverCertificates and presenting the EKM client identity.

ADMIN API (on --admin-bind, loopback by default): GET /health, GET /stats,
GET /requests?since=N (the request log: the last 10,000 requests after place N, and
`last`, the newest place; each {seq, time, service, operation, key, caller, status,
error_code, latency_ms}, a bearer token shown as `bearer:` and 12 hex digits of its
SHA-256), POST /reset[?keys=true] (faults, counters and the clock; with keys=true every
service's keys, versions, aliases and deletions return to the seed),
GET /clock, POST /clock {\"offset\": \"-1h\"} (the emulated clock: the machine's
plus the offset, negative allowed), GET|POST|DELETE /faults,
POST /metadata/select?cloud=C&instance=ID
(a fault: {\"service\": \"aws|gcp|azure|ekm|metadata|*\", \"replica\": 0, \"operation\": \"Sign\", \"latency_ms\": 20,
\"error\": \"throttle|unavailable|internal\", \"drop_connection\": false,
\"corrupt_signature\": false, \"rate\": 0.5, \"count\": 3}).";

/// Local emulator of AWS KMS, Google Cloud KMS and Azure Key Vault keys.
#[derive(Parser)]
#[command(name = "kms-emulator", version, after_long_help = SEED_HELP)]
struct Args {
    /// Address to bind; loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Address of the admin API (reset, faults, the request log); loopback
    /// unless told otherwise, also when --bind exposes the services.
    #[arg(long, default_value = "127.0.0.1")]
    admin_bind: IpAddr,
    /// Append every request the services answer to FILE as JSON lines
    /// (created 0600); the admin API's GET /requests holds the last 10,000.
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
    /// First port (AWS); the next three serve Google Cloud, Azure and admin. OS-chosen when absent.
    #[arg(long)]
    port: Option<u16>,
    /// Seed file (TOML) with keys to create at start; see --help.
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
    /// State file: loaded at start when it exists (instead of --seed), rewritten after every change.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Write the endpoints as one JSON object to FILE once connections are accepted.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Directory for the Azure CA certificate (default: a temporary directory removed at exit).
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// AWS credentials accepted in SigV4 signatures, ACCESS:SECRET (repeatable; default test:test);
    /// ACCESS:SECRET:ARN names the principal key policies and grants see
    /// (default: the account's root).
    #[arg(long = "aws-credentials", value_name = "ACCESS:SECRET[:ARN]")]
    aws_credentials: Vec<String>,
    /// Require this bearer token on Google Cloud KMS requests (default:
    /// anonymous); TOKEN=MEMBER (repeatable) adds a caller IAM policies
    /// know as MEMBER (serviceAccount:NAME, user:NAME, ...).
    #[arg(long, value_name = "TOKEN[=MEMBER]")]
    gcp_token: Vec<String>,
    /// Require this bearer token on Azure requests (default: any token);
    /// TOKEN=ROLE[,ROLE] (repeatable) adds a caller with those role
    /// assignments (Key Vault Crypto User, Key Vault Reader, ...).
    #[arg(long, value_name = "TOKEN[=ROLES]")]
    azure_token: Vec<String>,
    /// Replicas of the external key manager, each on its own HTTPS port
    /// requiring the client certificate written to the cert dir
    /// (ekm-client.pem).
    #[arg(long, value_name = "N", default_value_t = 2)]
    ekm_replicas: usize,
    /// Bearer token the external key manager requires besides the client
    /// certificate.
    #[arg(long, value_name = "TOKEN")]
    ekm_token: Option<String>,
    /// Port of the instance metadata services (default: after the key
    /// manager replicas with --port, else OS-chosen).
    #[arg(long, value_name = "PORT")]
    metadata_port: Option<u16>,
    /// Start the emulated clock this far from the machine's: -1h, +30d,
    /// 90m, or seconds (negative: behind). Token expiry, deletion and
    /// destroy windows, exp/nbf and rotation schedules follow it; the admin
    /// API's POST /clock moves it.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    clock_offset: Option<String>,
}

/// The owner token (`TOKEN`, at most one) and the callers (`TOKEN=WHO`) of
/// a repeatable token option.
fn tokens<T>(
    option: &str,
    values: &[String],
    caller: impl Fn(String, &str) -> T,
) -> Result<(Option<String>, Vec<T>), String> {
    let (mut owner, mut callers) = (None, Vec::new());
    for v in values {
        match v.split_once('=') {
            Some((t, who)) if !t.is_empty() && !who.trim().is_empty() => {
                callers.push(caller(t.to_string(), who.trim()))
            }
            Some(_) => return Err(format!("{option} takes TOKEN or TOKEN=WHO, with both set")),
            None if owner.is_some() => {
                return Err(format!(
                    "{option}: one token without =WHO at most (the owner's)"
                ))
            }
            None => owner = Some(v.clone()),
        }
    }
    Ok((owner, callers))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let clock_offset = match args.clock_offset.as_deref().map(kms_emulator::parse_offset) {
        None => 0,
        Some(Ok(secs)) => secs,
        Some(Err(e)) => {
            eprintln!("kms-emulator: --clock-offset: {e}");
            return ExitCode::from(2);
        }
    };
    let (gcp_token, gcp_identities) =
        match tokens("--gcp-token", &args.gcp_token, |token, member| {
            kms_emulator::gcp::store::GcpIdentity {
                token,
                member: member.to_string(),
            }
        }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("kms-emulator: {e}");
                return ExitCode::from(2);
            }
        };
    let (azure_token, azure_identities) =
        match tokens("--azure-token", &args.azure_token, |token, roles| {
            kms_emulator::azure::store::AzureIdentity {
                token,
                roles: roles.split(',').map(|r| r.trim().to_string()).collect(),
                keys: Vec::new(),
            }
        }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("kms-emulator: {e}");
                return ExitCode::from(2);
            }
        };
    let mut config = kms_emulator::Config {
        bind: args.bind,
        admin_bind: args.admin_bind,
        request_log: args.request_log,
        port: args.port,
        seed: args.seed,
        state_file: args.state,
        cert_dir: args.cert_dir,
        gcp_token,
        azure_token,
        gcp_identities,
        azure_identities,
        ekm_replicas: args.ekm_replicas,
        ekm_token: args.ekm_token,
        metadata_port: args.metadata_port,
        clock_offset,
        ..Default::default()
    };
    if !args.aws_credentials.is_empty() {
        config.aws_credentials.clear();
        for c in &args.aws_credentials {
            let mut parts = c.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(s), arn) if !a.is_empty() && !s.is_empty() => {
                    config.aws_credentials.push((a.to_string(), s.to_string()));
                    match arn {
                        Some(arn)
                            if arn.starts_with("arn:aws:iam::")
                                || arn.starts_with("arn:aws:sts::") =>
                        {
                            config.aws_principals.push((a.to_string(), arn.to_string()))
                        }
                        Some(arn) => {
                            eprintln!("kms-emulator: --aws-credentials: {arn:?} is not an IAM ARN (arn:aws:iam::ACCOUNT:user/NAME)");
                            return ExitCode::from(2);
                        }
                        None => {}
                    }
                }
                _ => {
                    eprintln!("kms-emulator: --aws-credentials must be ACCESS:SECRET[:ARN]");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let emu = match kms_emulator::Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kms-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = match serde_json::to_string(emu.endpoints()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kms-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ready_file {
        if let Err(e) = kms_emulator::write_ready_file(path, emu.endpoints()) {
            eprintln!("kms-emulator: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{line}");
    emu.wait_for_signal().await;
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::tokens;

    #[test]
    fn token_options() {
        let pair = |t: String, w: &str| (t, w.to_string());
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (owner, callers) = tokens(
            "--gcp-token",
            &v(&["own", "ci=serviceAccount:ci@p.iam.gserviceaccount.com"]),
            pair,
        )
        .unwrap();
        assert_eq!(owner.as_deref(), Some("own"));
        assert_eq!(
            callers,
            [pair(
                "ci".into(),
                "serviceAccount:ci@p.iam.gserviceaccount.com"
            )]
        );
        assert!(tokens("--gcp-token", &v(&["a", "b"]), pair).is_err());
        assert!(tokens("--gcp-token", &v(&["=x"]), pair).is_err());
        assert!(tokens("--gcp-token", &v(&["t="]), pair).is_err());
        assert_eq!(tokens("--gcp-token", &[], pair).unwrap(), (None, vec![]));
    }
}
