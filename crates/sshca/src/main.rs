//! The `sshca` command line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use sshca::core::options::OptionsBuilder;
use sshca::core::policy::Request;
use sshca::core::validity::{parse_point, parse_validity};
use sshca::core::{random_serial, CertTemplate, CertType, Certificate, SigAlg, Validation};
use sshca::signer::{Error, ErrorKind, LimitSigner, Result, SignerExt};

/// OpenSSH certificate authority whose CA key can stay in a KMS.
#[derive(Parser, Debug)]
#[command(name = "sshca", version, about)]
struct Cli {
    /// Config file with CAs and signing policies.
    #[arg(long, global = true, default_value = "sshca.toml")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sign public keys into certificates (flags as `ssh-keygen -s`).
    Sign(SignArgs),
    /// Show a certificate's fields (like `ssh-keygen -L`).
    Inspect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Certificate file (`-` for stdin).
        cert: String,
    },
    /// Check a certificate as sshd (user) or ssh (host) would: CA signature,
    /// validity, principal, type, critical options.
    Verify {
        /// Trusted CA: a key URI or a CA public key file.
        #[arg(long)]
        ca: String,
        /// A principal the certificate must name (for a host certificate: a
        /// host name its principals, OpenSSH patterns, must match).
        #[arg(long)]
        principal: Option<String>,
        /// Accept a certificate without principals for any principal (an
        /// authorized_keys `cert-authority` line before OpenSSH 10.3); by
        /// default it is refused, as sshd's TrustedUserCAKeys does.
        #[arg(long = "any-principal")]
        any_principal: bool,
        /// Print JSON: `valid`, and when invalid `reason` (a stable code)
        /// and `message`.
        #[arg(long)]
        json: bool,
        /// Time to check at: unix seconds, YYYYMMDD[HHMM[SS]] (UTC) or `now`.
        #[arg(long, default_value = "now")]
        at: String,
        /// Required certificate type (`user` or `host`).
        #[arg(long = "type")]
        cert_type: Option<String>,
        /// Certificate file (`-` for stdin).
        cert: String,
    },
    /// Create a local private key (OpenSSH format, 0600) and PATH.pub.
    Keygen {
        /// Key type: ed25519, ecdsa or rsa.
        #[arg(short = 't', default_value = "ed25519")]
        key_type: String,
        /// Bits: ecdsa 256 (default), 384, 521; rsa 2048, 3072 (default), 4096.
        #[arg(short = 'b')]
        bits: Option<u32>,
        /// Encrypt with the passphrase in SSHCA_PASSPHRASE.
        #[arg(short = 'N', conflicts_with = "passphrase_file")]
        encrypt_from_env: bool,
        /// Encrypt with the passphrase in this file (its first line).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// Comment.
        #[arg(short = 'C', default_value = "")]
        comment: String,
        /// Overwrite PATH and PATH.pub if they exist.
        #[arg(long)]
        force: bool,
        /// Where to write the private key.
        path: PathBuf,
    },
    /// Key utilities: public, info, match, passphrase.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Exit 0 when a certificate has expired or will within TTL, else 1.
    Expires {
        /// A duration: seconds, `30d`, `1.5h`, `1h30m` (default 0).
        #[arg(long, default_value = "0")]
        within: String,
        /// Certificate file (`-` for stdin).
        cert: String,
    },
    /// Signing policies of the config file.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// External key managers: check a connection; Cloud KMS EkmConnections
    /// and EkmConfig.
    #[cfg(any(feature = "ekm", feature = "gcp"))]
    #[command(subcommand)]
    Ekm(EkmCmd),
    /// Print the CA public key line (TrustedUserCAKeys) or known_hosts line.
    Pubkey {
        /// Print `@cert-authority PATTERN KEY` for known_hosts.
        #[arg(long = "known-hosts", value_name = "PATTERN")]
        known_hosts: Option<String>,
        /// The CA key URI.
        uri: String,
    },
}

#[cfg(any(feature = "ekm", feature = "gcp"))]
#[derive(Subcommand, Debug)]
enum EkmCmd {
    /// Check a connection to an external key manager from this machine:
    /// per resolver the TLS handshake, the certificate match, health and
    /// (with a key) the public key. Exit status 1 when a check fails.
    #[cfg(feature = "ekm")]
    Verify(EkmVerifyArgs),
    /// Cloud KMS EkmConnections (through the EkmService API).
    #[cfg(feature = "gcp")]
    #[command(subcommand)]
    Connections(EkmConnCmd),
    /// Cloud KMS EkmConfig: the default connection of a location.
    #[cfg(feature = "gcp")]
    #[command(subcommand)]
    Config(EkmConfigCmd),
}

#[cfg(feature = "ekm")]
#[derive(Args, Debug)]
struct EkmVerifyArgs {
    /// A CA of the config file whose key is an `ekm:` URI.
    #[arg(long, conflicts_with_all = ["uri", "connection", "resolver"])]
    ca: Option<String>,
    /// An `ekm:` key URI.
    #[arg(long, conflicts_with_all = ["connection", "resolver"])]
    uri: Option<String>,
    /// A connection description file (TOML), or the name of an
    /// `[ekm_connection.NAME]` table of the config file.
    #[arg(long, conflicts_with = "resolver")]
    connection: Option<String>,
    /// A replica `HOST:PORT` (repeat for several, tried in order).
    #[arg(long)]
    resolver: Vec<String>,
    /// A file with trusted server certificates (PEM or DER; repeatable).
    #[arg(long = "server-cert")]
    server_cert: Vec<PathBuf>,
    /// PEM file with the client certificate and its key (mTLS).
    #[arg(long = "client-identity")]
    client_identity: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    #[arg(long = "token-env")]
    token_env: Option<String>,
    /// Which of the resolvers' addresses to dial, e.g. "address>=10.0.0.0 AND port=8443".
    #[arg(long = "endpoint-filter")]
    endpoint_filter: Option<String>,
    /// A key whose public key to fetch: SPACE/keys/KEY_ID, or KEY_ID in the
    /// connection's crypto space.
    #[arg(long)]
    key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Where Cloud KMS is.
#[cfg(feature = "gcp")]
#[derive(Args, Debug)]
struct CloudArgs {
    /// Another Cloud KMS endpoint (such as the emulator; requests are then
    /// anonymous). Default: Google, with Application Default Credentials.
    #[arg(long)]
    endpoint: Option<String>,
    /// Print JSON (the API's resource).
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "gcp")]
#[derive(Subcommand, Debug)]
enum EkmConnCmd {
    /// List the EkmConnections of a location.
    List {
        /// projects/PROJECT/locations/LOCATION
        location: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Show one EkmConnection.
    Get {
        /// projects/P/locations/L/ekmConnections/ID
        name: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Create an EkmConnection.
    Create {
        /// projects/PROJECT/locations/LOCATION
        #[arg(long)]
        location: String,
        /// The connection id.
        #[arg(long)]
        id: String,
        /// A replica's hostname (repeat for several).
        #[arg(long, required = true)]
        resolver: Vec<String>,
        /// A file with the replicas' server certificates (PEM or DER; repeatable).
        #[arg(long = "server-cert", required = true)]
        server_cert: Vec<PathBuf>,
        /// Service Directory service of the replicas.
        #[arg(long = "service-directory-service", default_value = "")]
        service_directory_service: String,
        /// Service Directory endpoint filter.
        #[arg(long = "endpoint-filter", default_value = "")]
        endpoint_filter: String,
        /// Key management mode: manual or cloud-kms.
        #[arg(long, default_value = "manual", value_parser = ["manual", "cloud-kms"])]
        mode: String,
        /// Crypto space path (required with --mode cloud-kms).
        #[arg(long = "crypto-space-path", default_value = "")]
        crypto_space_path: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Ask Cloud KMS to check an EkmConnection (VerifyConnectivity).
    Verify {
        /// projects/P/locations/L/ekmConnections/ID
        name: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

#[cfg(feature = "gcp")]
#[derive(Subcommand, Debug)]
enum EkmConfigCmd {
    /// Show the EkmConfig of a location.
    Get {
        /// projects/PROJECT/locations/LOCATION
        location: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Set the default EkmConnection of a location ("" clears it).
    Set {
        /// projects/PROJECT/locations/LOCATION
        location: String,
        /// projects/P/locations/L/ekmConnections/ID, or "".
        #[arg(long = "default-connection")]
        default_connection: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

#[cfg(feature = "ekm")]
async fn ekm_verify(a: EkmVerifyArgs, config: &Path) -> Result<ExitCode> {
    let uri = match &a.ca {
        Some(name) => {
            let cfg = sshca::config::Config::load(config)?;
            let ca = cfg
                .cas
                .get(name)
                .ok_or_else(|| invalid(format!("{}: no CA named {name:?}", config.display())))?;
            Some(ca.uri()?)
        }
        None => a.uri,
    };
    let connection = match a.connection {
        Some(c) if !Path::new(&c).exists() && config.exists() => {
            let cfg = sshca::config::Config::load(config)?;
            Some(cfg.named_connection(&c)?.unwrap_or(c))
        }
        other => other,
    };
    let args = sshca::ekm::VerifyArgs {
        uri,
        connection,
        resolvers: a.resolver,
        server_certs: a.server_cert,
        client_identity: a.client_identity,
        token_env: a.token_env,
        endpoint_filter: a.endpoint_filter,
        key: a.key,
    };
    let report = sshca::ekm::verify(&args).await?;
    if a.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", sshca::ekm::summary_text(&report));
    }
    Ok(if report.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(any(feature = "ekm", feature = "gcp"))]
async fn ekm_cmd(cmd: EkmCmd, config: &Path) -> Result<ExitCode> {
    let _ = config;
    match cmd {
        #[cfg(feature = "ekm")]
        EkmCmd::Verify(a) => ekm_verify(a, config).await,
        #[cfg(feature = "gcp")]
        EkmCmd::Connections(c) => ekm_connections(c).await,
        #[cfg(feature = "gcp")]
        EkmCmd::Config(c) => ekm_config(c).await,
    }
}

#[cfg(feature = "gcp")]
fn show_connection(c: &sshca::ekm::EkmConnection, json: bool) -> Result<()> {
    if json {
        println!("{}", sshca::ekm::to_json(c)?);
    } else {
        print!("{}", sshca::ekm::connection_text(c));
    }
    Ok(())
}

#[cfg(feature = "gcp")]
async fn ekm_connections(cmd: EkmConnCmd) -> Result<ExitCode> {
    match cmd {
        EkmConnCmd::List { location, cloud } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            let list = sshca::ekm::list(&c, &location).await?;
            if cloud.json {
                println!("{}", sshca::ekm::to_json(&list)?);
            } else if list.is_empty() {
                println!("no EkmConnections in {location}");
            } else {
                for conn in &list {
                    show_connection(conn, false)?;
                }
            }
        }
        EkmConnCmd::Get { name, cloud } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            show_connection(&sshca::ekm::get(&c, &name).await?, cloud.json)?;
        }
        EkmConnCmd::Create {
            location,
            id,
            resolver,
            server_cert,
            service_directory_service,
            endpoint_filter,
            mode,
            crypto_space_path,
            cloud,
        } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            let n = sshca::ekm::NewConnection {
                location,
                id,
                hostnames: resolver,
                server_certs: server_cert,
                service_directory_service,
                endpoint_filter,
                cloud_kms_mode: mode == "cloud-kms",
                crypto_space_path,
            };
            show_connection(&sshca::ekm::create(&c, &n).await?, cloud.json)?;
        }
        EkmConnCmd::Verify { name, cloud } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            match sshca::ekm::verify_remote(&c, &name).await {
                Ok(()) => println!("{name}: Cloud KMS reached every resolver"),
                Err(e) if e.kind() == ErrorKind::InvalidKey => {
                    eprintln!("sshca: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "gcp")]
async fn ekm_config(cmd: EkmConfigCmd) -> Result<ExitCode> {
    let (cfg, json) = match cmd {
        EkmConfigCmd::Get { location, cloud } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            (sshca::ekm::config_get(&c, &location).await?, cloud.json)
        }
        EkmConfigCmd::Set {
            location,
            default_connection,
            cloud,
        } => {
            let c = sshca::ekm::client(cloud.endpoint.as_deref()).await?;
            (
                sshca::ekm::config_set(&c, &location, &default_connection).await?,
                cloud.json,
            )
        }
    };
    if json {
        println!("{}", sshca::ekm::to_json(&cfg)?);
    } else {
        let d = if cfg.default_ekm_connection.is_empty() {
            "(none)"
        } else {
            &cfg.default_ekm_connection
        };
        println!("{}\n  default connection: {d}", cfg.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Print a policy's effective values.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Policy name.
        name: String,
    },
    /// Validate the config and print each policy's effective values.
    Check,
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Print the public key line of REF (public key, certificate, private key file, key URI).
    Public {
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The key reference.
        reference: String,
    },
    /// Print algorithm, size, curve, fingerprint and comment of REF.
    Info {
        /// Also print the MD5 fingerprint.
        #[arg(long)]
        md5: bool,
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The key reference.
        reference: String,
    },
    /// Exit 0 when PRIVATE belongs to PUBLIC (a public key or certificate).
    Match {
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The private key file.
        private: String,
        /// A public key, certificate, or key URI.
        public: String,
    },
    /// Re-encode a private key with a new passphrase or none (atomically).
    Passphrase {
        /// File holding the current passphrase (else SSHCA_PASSPHRASE).
        #[arg(long = "old-passphrase-file")]
        old_passphrase_file: Option<PathBuf>,
        /// File holding the new passphrase.
        #[arg(
            long = "new-passphrase-file",
            required_unless_present = "no_passphrase"
        )]
        new_passphrase_file: Option<PathBuf>,
        /// Store the key unencrypted.
        #[arg(long = "no-passphrase", conflicts_with = "new_passphrase_file")]
        no_passphrase: bool,
        /// The private key file.
        private: PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true, args_override_self = true)]
struct SignArgs {
    /// CA key URI (a plain path means `file:PATH`).
    #[arg(
        long = "ca",
        short = 's',
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    ca: Option<String>,
    /// Sign under this policy of the config file (the flags become the request).
    #[arg(long)]
    policy: Option<String>,
    /// Requester identity matched against the policy's `requesters`
    /// (default: $USER).
    #[arg(long, requires = "policy")]
    requester: Option<String>,
    /// Key identifier.
    #[arg(short = 'I')]
    key_id: Option<String>,
    /// Principals, comma-separated.
    #[arg(short = 'n')]
    principals: Option<String>,
    /// Validity interval (ssh-keygen -V syntax; default always:forever, or
    /// the policy's ttl).
    #[arg(short = 'V', allow_hyphen_values = true)]
    validity: Option<String>,
    /// Serial number (default: random, non-zero).
    #[arg(short = 'z')]
    serial: Option<u64>,
    /// Certificate option (ssh-keygen -O syntax); repeatable.
    #[arg(short = 'O', allow_hyphen_values = true)]
    options: Vec<String>,
    /// Make host certificates.
    #[arg(short = 'h')]
    host: bool,
    /// Quiet: no report line per certificate.
    #[arg(short = 'q')]
    quiet: bool,
    /// Signature algorithm of an RSA CA (rsa-sha2-256 or rsa-sha2-512).
    #[arg(short = 't')]
    sig_alg: Option<String>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Public keys (or private keys with KEY.pub beside them); `-` for stdin.
    #[arg(required = true)]
    keys: Vec<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

fn read_input(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| invalid(format!("cannot read stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(arg).map_err(|e| Error::io("cannot read", Path::new(arg), &e))
    }
}

fn read_cert(arg: &str) -> Result<Certificate> {
    let text = read_input(arg)?;
    Certificate::from_openssh(&text).map_err(|e| invalid(format!("{arg}: {e}")))
}

/// What `sshca sign` will issue: the CA and how each certificate's template
/// is made.
struct Plan {
    ca_uri: String,
    how: Issue,
}

// One value per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Issue {
    /// The flags are the template (ssh-keygen semantics).
    Direct(CertTemplate),
    /// The flags are a request merged under a policy; copies go to the dir.
    Policy(sshca::core::policy::Policy, Request, Option<PathBuf>),
}

fn plan(a: &SignArgs, config: &Path) -> Result<Plan> {
    let now = now();
    let validity = a
        .validity
        .as_deref()
        .map(|v| parse_validity(v, now))
        .transpose()?;
    let principals: Option<Vec<String>> = a
        .principals
        .as_ref()
        .map(|p| p.split(',').map(str::to_owned).collect());
    if let Some(name) = &a.policy {
        let cfg = sshca::config::Config::load(config)?;
        let (entry, ca) = cfg.policy(name)?;
        let mut opts = OptionsBuilder::empty();
        opts.apply_all(a.options.iter().map(String::as_str))?;
        let (crit, ext) = opts.build()?;
        let cleared = a.options.iter().any(|o| o.eq_ignore_ascii_case("clear"));
        let req = Request {
            requester: a.requester.clone().or_else(|| std::env::var("USER").ok()),
            cert_type: a.host.then_some(CertType::Host),
            principals,
            critical_options: (!crit.is_empty()).then_some(crit),
            extensions: (!ext.is_empty() || cleared).then_some(ext),
            validity,
            key_id: a.key_id.clone(),
            serial: a.serial,
        };
        return Ok(Plan {
            ca_uri: ca.uri()?,
            how: Issue::Policy(entry.policy.clone(), req, entry.issued_dir.clone()),
        });
    }
    if let Some(k) = &a.key_id {
        sshca::core::text::check_printable("key id (-I)", k)?;
    }
    for p in principals.iter().flatten() {
        sshca::core::text::check_printable("principal (-n)", p)?;
    }
    let cert_type = if a.host {
        CertType::Host
    } else {
        CertType::User
    };
    let mut opts = OptionsBuilder::new(cert_type);
    opts.apply_all(a.options.iter().map(String::as_str))?;
    let mut t = CertTemplate::new(cert_type, a.key_id.clone().unwrap_or_default());
    opts.apply_to(&mut t)?;
    let v = validity.unwrap_or(sshca::core::validity::Validity {
        valid_after: 0,
        valid_before: u64::MAX,
    });
    t.valid_after = v.valid_after;
    t.valid_before = v.valid_before;
    t.principals = principals.unwrap_or_default();
    Ok(Plan {
        ca_uri: sshca::ca_uri(a.ca.as_deref().unwrap_or_default()),
        how: Issue::Direct(t),
    })
}

async fn sign(a: SignArgs, config: &Path) -> Result<()> {
    let plan = plan(&a, config)?;
    let alg = a
        .sig_alg
        .as_deref()
        .map(|s| {
            s.parse::<SigAlg>()
                .map_err(|e| invalid(format!("-t {s}: {e}")))
        })
        .transpose()?;
    if a.keys.iter().filter(|k| *k == "-").count() > 1 {
        return Err(invalid("`-` (stdin) can be given only once"));
    }
    if matches!(plan.how, Issue::Policy(..)) && a.serial.is_some() && a.keys.len() > 1 {
        return Err(Error::new(
            ErrorKind::Policy,
            format!(
                "-z {} with {} keys would issue one serial several times; \
                 serials must be unique under a policy",
                a.serial.unwrap_or_default(),
                a.keys.len()
            ),
        ));
    }
    // Read and check every subject key (and the policy) before signing anything.
    let mut subjects = Vec::new();
    for k in &a.keys {
        let (path, key, comment) = if k == "-" {
            let text = read_input("-")?;
            let pk = sshca::parse_public_key(&text, "stdin")?;
            (None, pk.key_data().clone(), pk.comment().to_owned())
        } else {
            let (key, comment) = sshca::read_subject_key(Path::new(k))?;
            (Some(PathBuf::from(k)), key, comment)
        };
        let origin = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdin".into());
        let mut t = match &plan.how {
            Issue::Policy(policy, req, _) => {
                let (t, changes) = policy
                    .merge(req, &key, now(), a.serial.unwrap_or_else(random_serial))
                    .map_err(|e| Error::new(ErrorKind::Policy, e.to_string()).context(&origin))?;
                for c in changes {
                    eprintln!("sshca: {origin}: policy `{}`: {c}", policy.name);
                }
                t
            }
            Issue::Direct(template) => {
                let mut t = template.clone();
                t.serial = a.serial.unwrap_or_else(random_serial);
                t
            }
        };
        t.comment = comment;
        subjects.push((path, key, t, origin));
    }
    let registry = sshca::default_registry();
    // Sign concurrently (a KMS round trip per certificate), at most 32 at once.
    let ca = std::sync::Arc::new(LimitSigner::new(registry.open(&plan.ca_uri).await?, 32));
    let issued_dir = match &plan.how {
        Issue::Policy(_, _, dir) => dir.clone(),
        Issue::Direct(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (path, key, t, origin)) in subjects.into_iter().enumerate() {
        let ca = ca.clone();
        let issued_dir = issued_dir.clone();
        tasks.spawn(async move {
            let r = issue_one(&*ca, alg, path, key, t, &origin, issued_dir.as_deref()).await;
            (index, r)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| invalid(format!("a signing task failed: {e}")))?);
    }
    results.sort_by_key(|(i, _)| *i);
    let mut first_err = None;
    for (_, r) in results {
        match r {
            Ok(_) if a.quiet => {}
            Ok(msg) => eprintln!("{msg}"),
            // The first error is printed by main; later ones here.
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(e) => eprintln!("sshca: error: {e}"),
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Signs one key and writes its certificate; returns the report line.
async fn issue_one(
    ca: &dyn sshca::signer::KeySigner,
    alg: Option<SigAlg>,
    path: Option<PathBuf>,
    key: sshca::core::KeyData,
    t: CertTemplate,
    origin: &str,
    issued_dir: Option<&Path>,
) -> Result<String> {
    let cert_type = t.cert_type;
    let cert = ca
        .sign_certificate(&t, &key, alg)
        .await
        .map_err(|e| e.context(format!("signing {origin}")))?;
    let text = cert.to_openssh()? + "\n";
    if let Some(dir) = issued_dir {
        sshca::save_issued_copy(dir, &cert, &text)?;
    }
    let info = sshca::CertInfo::new(&cert);
    let what = format!(
        "id \"{}\" serial {}{} valid {}",
        info.key_id,
        info.serial,
        if info.principals.is_empty() {
            String::new()
        } else {
            format!(" for {}", info.principals.join(","))
        },
        sshca::core::validity::describe(info.valid_after, info.valid_before)
    );
    match path {
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| invalid(format!("cannot write stdout: {e}")))?;
            Ok(format!("Signed {cert_type} key from stdin: {what}"))
        }
        Some(p) => {
            let out = sshca::cert_path_for(&p);
            // Written (and synced) on the blocking pool, a few at a time, so
            // the syncs of a bulk run overlap.
            static WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);
            let _permit = WRITERS
                .acquire()
                .await
                .map_err(|e| invalid(format!("cannot write {}: {e}", out.display())))?;
            let out = tokio::task::spawn_blocking(move || {
                sshca::write_atomic(&out, text.as_bytes()).map(|()| out)
            })
            .await
            .map_err(|e| invalid(format!("a write task failed: {e}")))??;
            Ok(format!("Signed {cert_type} key {}: {what}", out.display()))
        }
    }
}

fn print_policy(p: &sshca::config::EffectivePolicy<'_>, json: bool) -> Result<()> {
    let v = serde_json::to_value(p).map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
    if json {
        let s = serde_json::to_string_pretty(&v)
            .map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
        println!("{s}");
        return Ok(());
    }
    println!("[policy.{}]", p.policy.name);
    if let serde_json::Value::Object(map) = v {
        for (k, val) in map {
            if k != "name" {
                println!("{k} = {val}");
            }
        }
    }
    Ok(())
}

fn keygen(
    key_type: &str,
    bits: Option<u32>,
    from_env: bool,
    passphrase_file: Option<&Path>,
    comment: &str,
    force: bool,
    path: &Path,
) -> Result<()> {
    use sshca_local::keys;
    let spec = keys::KeySpec::parse(key_type, bits)?;
    let passphrase = match (from_env, passphrase_file) {
        (_, Some(f)) => Some(sshca_local::read_passphrase_file(f)?),
        (true, None) => Some(
            std::env::var(sshca_local::PASSPHRASE_ENV)
                .map(sshca::signer::Secret::new)
                .map_err(|_| {
                    invalid(format!(
                        "-N needs the passphrase in {}",
                        sshca_local::PASSPHRASE_ENV
                    ))
                })?,
        ),
        (false, None) => None,
    };
    if passphrase.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(invalid("the passphrase is empty"));
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if !force {
        for p in [path, pub_path.as_path()] {
            if p.exists() {
                return Err(invalid(format!(
                    "{} already exists (use --force to overwrite)",
                    p.display()
                )));
            }
        }
    }
    let key = keys::generate(spec, comment)?;
    let private = keys::to_openssh(&key, passphrase.as_ref().map(|p| p.expose().as_bytes()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| invalid(format!("cannot encode the public key: {e}")))?;
    sshca::write_atomic_with(path, private.as_bytes(), 0o600, force)?;
    if let Err(e) =
        sshca::write_atomic_with(&pub_path, format!("{public}\n").as_bytes(), 0o644, force)
    {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    eprintln!(
        "Created {} ({}{}) and {}",
        path.display(),
        key.algorithm().as_str(),
        if passphrase.is_some() {
            ", encrypted"
        } else {
            ""
        },
        pub_path.display()
    );
    println!("{}", sshca::fingerprint(key.public_key().key_data()));
    Ok(())
}

async fn key_cmd(cmd: KeyCmd) -> Result<ExitCode> {
    let registry = sshca::default_registry();
    match cmd {
        KeyCmd::Public {
            passphrase_file,
            reference,
        } => {
            let r = sshca::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
            println!("{}", sshca::ca_line(&r.public_key(), None, r.comment())?);
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Info {
            md5,
            passphrase_file,
            reference,
        } => {
            let r = sshca::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
            let key = r.public_key();
            let (bits, curve) = sshca::key_size(&key);
            let kind = match &r {
                sshca::KeyRef::Public(_) => "public key",
                sshca::KeyRef::Certificate(_) => "certificate (certified key)",
                sshca::KeyRef::Private(_) => "private key",
                sshca::KeyRef::Uri(..) => "key URI",
            };
            println!("source: {kind}");
            println!("algorithm: {}", key.algorithm().as_str());
            println!("size: {bits}");
            if let Some(c) = curve {
                println!("curve: {c}");
            }
            println!("fingerprint: {}", sshca::fingerprint(&key));
            if md5 {
                println!("fingerprint-md5: {}", sshca::md5_fingerprint(&key)?);
            }
            println!("comment: {}", r.comment());
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Match {
            passphrase_file,
            private,
            public,
        } => {
            let p = sshca::load_ref(&registry, &private, passphrase_file.as_deref()).await?;
            if !matches!(p, sshca::KeyRef::Private(_)) {
                return Err(invalid(format!("{private} is not a private key file")));
            }
            let other = sshca::load_ref(&registry, &public, None).await?;
            if p.public_key() == other.public_key() {
                println!("{private} matches {public}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "sshca: {private} ({}) does not belong to {public} ({})",
                    sshca::fingerprint(&p.public_key()),
                    sshca::fingerprint(&other.public_key())
                );
                Ok(ExitCode::from(1))
            }
        }
        KeyCmd::Passphrase {
            old_passphrase_file,
            new_passphrase_file,
            no_passphrase,
            private,
        } => {
            let new = match (&new_passphrase_file, no_passphrase) {
                (Some(f), _) => Some(sshca_local::read_passphrase_file(f)?),
                (None, true) => None,
                (None, false) => {
                    return Err(invalid("give --new-passphrase-file or --no-passphrase"))
                }
            };
            if new.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(invalid("the new passphrase is empty (use --no-passphrase)"));
            }
            let arg = private.to_string_lossy().into_owned();
            let r = sshca::load_ref(&registry, &arg, old_passphrase_file.as_deref()).await?;
            let sshca::KeyRef::Private(key) = r else {
                return Err(invalid(format!("{arg} is not a private key file")));
            };
            let text =
                sshca_local::keys::to_openssh(&key, new.as_ref().map(|p| p.expose().as_bytes()))?;
            sshca::write_atomic_with(&private, text.as_bytes(), 0o600, true)?;
            eprintln!(
                "{}: {}",
                private.display(),
                if new.is_some() {
                    "encrypted with the new passphrase"
                } else {
                    "stored without a passphrase"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn expires(cert: &str, within: &str) -> Result<ExitCode> {
    let c = read_cert(cert)?;
    let within =
        sshca::core::validity::parse_ttl(within).map_err(|e| invalid(format!("--within: {e}")))?;
    let now = now();
    let before = c.valid_before();
    if before == u64::MAX {
        println!("{cert}: valid forever");
        return Ok(ExitCode::from(1));
    }
    if now >= before {
        println!(
            "{cert}: expired {} ago (valid before {})",
            human(now - before),
            sshca::core::validity::format_time(before)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let left = before - now;
    println!(
        "{cert}: expires in {} (valid before {})",
        human(left),
        sshca::core::validity::format_time(before)
    );
    Ok(if left <= within {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if v > 0 || (u == "s" && out.is_empty()) {
            out.push_str(&format!("{v}{u}"));
        }
    }
    out
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Keygen {
            key_type,
            bits,
            encrypt_from_env,
            passphrase_file,
            comment,
            force,
            path,
        } => keygen(
            &key_type,
            bits,
            encrypt_from_env,
            passphrase_file.as_deref(),
            &comment,
            force,
            &path,
        )
        .map(|_| ExitCode::SUCCESS),
        Cmd::Key(k) => key_cmd(k).await,
        Cmd::Expires { within, cert } => expires(&cert, &within),
        Cmd::Sign(a) => sign(a, &cli.config).await.map(|_| ExitCode::SUCCESS),
        Cmd::Policy(PolicyCmd::Show { json, name }) => {
            let cfg = sshca::config::Config::load(&cli.config)?;
            let (entry, ca) = cfg.policy(&name)?;
            print_policy(&sshca::config::EffectivePolicy::new(entry, ca), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy(PolicyCmd::Check) => {
            let cfg = sshca::config::Config::load(&cli.config)?;
            for entry in cfg.policies.values() {
                let (_, ca) = cfg.policy(&entry.policy.name)?;
                print_policy(&sshca::config::EffectivePolicy::new(entry, ca), false)?;
                println!();
            }
            println!(
                "{}: ok ({} CAs, {} policies)",
                cli.config.display(),
                cfg.cas.len(),
                cfg.policies.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { json, cert } => {
            let c = read_cert(&cert)?;
            let info = sshca::CertInfo::new(&c);
            if json {
                let s = serde_json::to_string_pretty(&info)
                    .map_err(|e| invalid(format!("cannot encode JSON: {e}")))?;
                println!("{s}");
            } else {
                print!("{}", info.to_text(&cert, &c));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            ca,
            principal,
            any_principal,
            json,
            at,
            cert_type,
            cert,
        } => {
            let c = read_cert(&cert)?;
            let registry = sshca::default_registry();
            let ca_key = sshca::resolve_ca_public_key(&registry, &ca).await?;
            let at = parse_point(&at, now())?;
            let cert_type = cert_type
                .as_deref()
                .map(str::parse::<CertType>)
                .transpose()?;
            let keys = [ca_key];
            let v = Validation {
                ca_keys: &keys,
                at,
                principal: principal.as_deref(),
                any_principal,
                cert_type,
            };
            let result = c.check(&v);
            if json {
                let out = match &result {
                    Ok(()) => serde_json::json!({
                        "valid": true, "type": c.cert_type().to_string(), "serial": c.serial(),
                        "signing_ca": c.signing_ca_fingerprint().to_string(),
                    }),
                    Err(r) => serde_json::json!({
                        "valid": false, "reason": r.reason.code(), "message": r.message,
                    }),
                };
                println!("{out}");
            }
            match result {
                Ok(()) => {
                    if !json {
                        println!(
                            "{cert}: valid {} certificate, serial {}, signed by {}",
                            c.cert_type(),
                            c.serial(),
                            c.signing_ca_fingerprint()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(r) => {
                    if !json {
                        eprintln!("sshca: {cert}: {r}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        #[cfg(any(feature = "ekm", feature = "gcp"))]
        Cmd::Ekm(cmd) => ekm_cmd(cmd, &cli.config).await,
        Cmd::Pubkey { known_hosts, uri } => {
            let registry = sshca::default_registry();
            let signer = registry.open(&sshca::ca_uri(&uri)).await?;
            let key = signer.public_key().await?;
            println!("{}", sshca::ca_line(&key, known_hosts.as_deref(), "")?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sshca: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sshca: error: {e}");
            ExitCode::from(1)
        }
    }
}
