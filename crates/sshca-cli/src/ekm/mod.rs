//! `sshca ekm`: external key managers — a connection checked from this
//! machine (`verify`, feature `ekm`), Cloud KMS EkmConnections and EkmConfig
//! (`connections`, `config`, feature `gcp`).

#[cfg(feature = "gcp")]
mod cloud;
#[cfg(feature = "ekm")]
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sshca::signer::Result;

#[cfg(any(feature = "ekm", feature = "gcp"))]
#[derive(Subcommand, Debug)]
pub enum EkmCmd {
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
pub struct EkmVerifyArgs {
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
pub struct CloudArgs {
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
pub enum EkmConnCmd {
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
pub enum EkmConfigCmd {
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
            let ca = cfg.cas.get(name).ok_or_else(|| {
                crate::output::invalid(format!("{}: no CA named {name:?}", config.display()))
            })?;
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
    let args = verify::VerifyArgs {
        uri,
        connection,
        resolvers: a.resolver,
        server_certs: a.server_cert,
        client_identity: a.client_identity,
        token_env: a.token_env,
        endpoint_filter: a.endpoint_filter,
        key: a.key,
    };
    let report = verify::verify(&args).await?;
    if a.json {
        println!("{}", crate::output::to_json(&report)?);
    } else {
        print!("{}", verify::summary_text(&report));
    }
    Ok(if report.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(any(feature = "ekm", feature = "gcp"))]
/// `sshca ekm`.
pub async fn run(cmd: EkmCmd, config: &Path) -> Result<ExitCode> {
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
fn show_connection(c: &cloud::EkmConnection, json: bool) -> Result<()> {
    if json {
        println!("{}", crate::output::to_json(c)?);
    } else {
        print!("{}", cloud::connection_text(c));
    }
    Ok(())
}

#[cfg(feature = "gcp")]
async fn ekm_connections(cmd: EkmConnCmd) -> Result<ExitCode> {
    match cmd {
        EkmConnCmd::List { location, cloud } => {
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            let list = cloud::list(&c, &location).await?;
            if cloud.json {
                println!("{}", crate::output::to_json(&list)?);
            } else if list.is_empty() {
                println!("no EkmConnections in {location}");
            } else {
                for conn in &list {
                    show_connection(conn, false)?;
                }
            }
        }
        EkmConnCmd::Get { name, cloud } => {
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            show_connection(&cloud::get(&c, &name).await?, cloud.json)?;
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
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            let n = cloud::NewConnection {
                location,
                id,
                hostnames: resolver,
                server_certs: server_cert,
                service_directory_service,
                endpoint_filter,
                cloud_kms_mode: mode == "cloud-kms",
                crypto_space_path,
            };
            show_connection(&cloud::create(&c, &n).await?, cloud.json)?;
        }
        EkmConnCmd::Verify { name, cloud } => {
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            match cloud::verify_remote(&c, &name).await {
                Ok(()) => println!("{name}: Cloud KMS reached every resolver"),
                Err(e) if e.kind() == sshca::signer::ErrorKind::InvalidKey => {
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
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            (cloud::config_get(&c, &location).await?, cloud.json)
        }
        EkmConfigCmd::Set {
            location,
            default_connection,
            cloud,
        } => {
            let c = cloud::client(cloud.endpoint.as_deref()).await?;
            (
                cloud::config_set(&c, &location, &default_connection).await?,
                cloud.json,
            )
        }
    };
    if json {
        println!("{}", crate::output::to_json(&cfg)?);
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
