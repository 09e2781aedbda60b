//! `kms-emulator`: a strict local emulator of the AWS KMS (JSON 1.1 with
//! SigV4), Google Cloud KMS (REST v1) and Azure Key Vault keys (HTTPS with
//! challenge authentication) APIs, with real cryptography, fault injection
//! and request counters.
//!
//! Start it in-process with [`Emulator::start`]; every service listens on
//! its own loopback port chosen by the OS, and dropping the handle stops it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kms_emulator::StartError> {
//! let emu = kms_emulator::Emulator::start(kms_emulator::Config::default()).await?;
//! println!("AWS KMS at {}", emu.endpoints().aws);
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

mod admin;
pub mod aws;
pub mod azure;
mod config;
pub mod crypto;
pub mod ekm;
pub mod faults;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod gcp;
mod google;
mod http;
pub mod metadata;
pub mod requests;
mod seed;
mod service;
pub mod state;
mod tls;
mod util;

pub use config::Config;
pub use crypto::{KeyKind, Material};
pub(crate) use faults::inject_faults;
pub use faults::{Effect, Fault, FaultError, Service};
pub(crate) use http::{json_response, read_request, Reply, Request};
pub use seed::Seed;
pub use state::State;
pub use util::parse_offset;

/// Largest request body accepted (bytes); larger bodies get the service's
/// "request too large" error without being read.
pub const MAX_BODY: usize = 256 * 1024;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Seed, state or certificate problem.
    #[error("{0}")]
    Setup(String),
}

/// Where each service listens: the object written to the ready file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoints {
    /// AWS KMS endpoint URL (plain HTTP).
    pub aws: String,
    /// Google Cloud KMS endpoint URL (plain HTTP).
    pub gcp: String,
    /// Azure Key Vault URL (HTTPS).
    pub azure: String,
    /// PEM file of the CA that issued the Azure server certificate.
    pub azure_ca_cert: PathBuf,
    /// Admin API URL (plain HTTP).
    pub admin: String,
    /// External key manager replicas (HTTPS with client certificates).
    pub ekm: Vec<String>,
    /// PEM file of the CA that issued the EKM server certificate.
    pub ekm_ca_cert: PathBuf,
    /// PEM file of the EKM server certificate itself (to pin it alone).
    pub ekm_server_cert: PathBuf,
    /// PEM file with a client certificate and its key that the EKM accepts.
    pub ekm_client_identity: PathBuf,
    /// Instance metadata services (plain HTTP): IMDSv2, GCE and Azure IMDS.
    pub metadata: String,
    /// PEM file of the certificate that verifies EC2 instance identity
    /// signatures (`signature`, `rsa2048` and `pkcs7`).
    pub metadata_aws_certificate: PathBuf,
    /// JWKS URL of the Compute Engine identity tokens' key.
    pub metadata_gcp_jwks: String,
    /// JWKS URL of the Azure managed identity tokens' key.
    pub metadata_azure_jwks: String,
    /// The entries of services without a field here.
    #[serde(flatten)]
    pub more: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A running emulator; dropping it stops every listener and connection.
#[derive(Debug)]
pub struct Emulator {
    endpoints: Endpoints,
    state: Arc<State>,
    azure_ca_pem: String,
    _tasks: JoinSet<()>,
    _tmp: Option<tempfile::TempDir>,
}

/// What one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    Admin,
    /// A service's listener `replica`.
    Service(Service, usize),
}

macro_rules! services_glue {
    ($($field:ident: $variant:ident = $ty:ty => $store:ty,)*) => {
        /// Every listener with its fixed port, if any, and its transport,
        /// in port order.
        fn listener_plan(config: &Config) -> Vec<(Listener, Option<u16>, service::Transport)> {
            let mut plan = Vec::new();
            $(
                for replica in 0..<$ty as service::Emulated>::listeners(config) {
                    if plan.len() == service::ADMIN_SLOT {
                        plan.push((
                            Listener::Admin,
                            service::slot_port(config, service::ADMIN_SLOT),
                            service::Transport::Http,
                        ));
                    }
                    let slot = plan.len();
                    plan.push((
                        Listener::Service(Service::$variant, replica),
                        <$ty as service::Emulated>::port(config, slot),
                        <$ty as service::Emulated>::TRANSPORT,
                    ));
                }
            )*
            if plan.len() <= service::ADMIN_SLOT {
                plan.push((Listener::Admin, None, service::Transport::Http));
            }
            plan
        }

        /// Runs every service's start with the URLs of its listeners;
        /// returns the ready file's entries.
        async fn start_services(
            setup: &service::Setup<'_>,
            urls: &[(Listener, String)],
        ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
            let mut ready = serde_json::Map::new();
            $(
                let own: Vec<String> = urls
                    .iter()
                    .filter(|(l, _)| matches!(l, Listener::Service(Service::$variant, _)))
                    .map(|(_, u)| u.clone())
                    .collect();
                for (k, v) in <$ty as service::Emulated>::start(setup, &own).await? {
                    ready.insert(k.to_string(), v);
                }
            )*
            Ok(ready)
        }

        async fn dispatch(state: Arc<State>, listener: Listener, req: Request) -> Reply {
            match listener {
                Listener::Admin => admin::handle(&state, req).await,
                $(
                    Listener::Service(Service::$variant, replica) => {
                        <$ty as service::Emulated>::handle(&state, req, replica).await
                    }
                )*
            }
        }
    };
}
service::for_each_service!(services_glue);

impl Emulator {
    /// Starts the emulator on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Emulator, StartError> {
        let (bind, admin_bind) = (config.bind, config.admin_bind);
        let (tmp, cert_dir) = match &config.cert_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| {
                    StartError::Setup(format!("cannot create {}: {e}", d.display()))
                })?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::tempdir()
                    .map_err(|e| StartError::Setup(format!("cannot make a temp dir: {e}")))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let state = Arc::new(State::new(config, seed::IO).map_err(StartError::Setup)?);
        let tls = tls::ServerTls::generate(bind).map_err(StartError::Setup)?;

        let mut tasks = JoinSet::new();
        let mut urls = Vec::new();
        for (listener, fixed, transport) in listener_plan(&state.config) {
            let ip = if listener == Listener::Admin {
                admin_bind
            } else {
                bind
            };
            let addr = SocketAddr::new(ip, fixed.unwrap_or(0));
            let socket = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = socket
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            let host = url_host(ip, local);
            let acceptor = match transport {
                service::Transport::Http => None,
                service::Transport::Tls => Some(tls.acceptor.clone()),
                service::Transport::MutualTls => Some(tls.mtls_acceptor.clone()),
            };
            urls.push((
                listener,
                if acceptor.is_some() {
                    format!("https://{host}")
                } else {
                    format!("http://{host}")
                },
            ));
            tasks.spawn(serve(socket, acceptor, state.clone(), listener));
        }
        let setup = service::Setup {
            state: &state,
            cert_dir: &cert_dir,
            tls: &tls,
        };
        let mut ready = start_services(&setup, &urls)
            .await
            .map_err(StartError::Setup)?;
        if let Some((_, admin)) = urls.iter().find(|(l, _)| *l == Listener::Admin) {
            ready.insert("admin".into(), serde_json::Value::String(admin.clone()));
        }
        let endpoints: Endpoints = serde_json::from_value(serde_json::Value::Object(ready))
            .map_err(|e| StartError::Setup(format!("the services' endpoints: {e}")))?;
        Ok(Emulator {
            endpoints,
            state,
            azure_ca_pem: tls.ca_pem,
            _tasks: tasks,
            _tmp: tmp,
        })
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// PEM of the CA that issued the Azure server certificate.
    pub fn azure_ca_pem(&self) -> &str {
        &self.azure_ca_pem
    }

    /// The shared state: keys, faults and counters (in-process admin access).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        self.state.faults.add(fault)
    }

    /// Makes the next `n` requests of `service`/`operation` fail with
    /// `error`; refused when the fault list is full.
    pub fn fail_next(
        &self,
        service: &str,
        operation: &str,
        error: FaultError,
        n: u64,
    ) -> Result<(), String> {
        self.state.faults.add(Fault {
            operation: Some(operation.into()),
            error: Some(error),
            count: Some(n),
            ..Fault::new(service)
        })
    }

    /// Makes the next `n` requests of `service`/`operation` return
    /// corrupted signatures; refused when the fault list is full.
    pub fn corrupt_next(&self, service: &str, operation: &str, n: u64) -> Result<(), String> {
        self.state.faults.add(Fault {
            operation: Some(operation.into()),
            corrupt_signature: true,
            count: Some(n),
            ..Fault::new(service)
        })
    }

    /// Clears fault rules and request counters.
    pub fn reset(&self) {
        self.state.faults.reset();
    }

    /// Request count of one operation (`("aws", "Sign")`, ...).
    pub fn count(&self, service: &str, op: &str) -> u64 {
        self.state.faults.count(service, op)
    }

    /// Creates an AWS KMS key; returns its id.
    pub fn create_aws_key(&self, spec: &str, usage: &str) -> Result<String, String> {
        aws::create_key(&self.state, spec, usage, "", "us-east-1").map(|k| k.id)
    }

    /// Enables or disables an AWS KMS key, as `EnableKey` and `DisableKey`
    /// do (a disabled key refuses `GetPublicKey` and `Sign` with
    /// `DisabledException`).
    pub fn set_aws_key_enabled(&self, key_id: &str, enabled: bool) -> Result<(), String> {
        let mut aws = state::write(&self.state.aws);
        let key = aws
            .keys
            .get_mut(key_id)
            .ok_or_else(|| format!("no AWS key {key_id}"))?;
        key.state = if enabled {
            aws::store::AwsKeyState::Enabled
        } else {
            aws::store::AwsKeyState::Disabled
        };
        drop(aws);
        self.state.persist();
        Ok(())
    }

    /// Points the alias `alias/NAME` at an AWS key.
    pub fn create_aws_alias(&self, alias: &str, key_id: &str) -> Result<(), String> {
        if !alias.starts_with("alias/") || alias.starts_with("alias/aws/") {
            return Err(format!("alias {alias:?} must be alias/NAME"));
        }
        let mut aws = state::write(&self.state.aws);
        if !aws.keys.contains_key(key_id) {
            return Err(format!("no AWS key {key_id}"));
        }
        aws.aliases.insert(alias.to_string(), key_id.to_string());
        drop(aws);
        self.state.persist();
        Ok(())
    }

    /// Creates a Google Cloud KMS key (and its key ring) with one enabled
    /// version; returns the version's resource name.
    pub fn create_gcp_key(&self, key_name: &str, algorithm: &str) -> Result<String, String> {
        gcp::seed::seed_key(
            &self.state,
            gcp::store::GcpSeed {
                key: key_name.to_string(),
                purpose: None,
                algorithm: algorithm.to_string(),
                protection_level: None,
                versions: Vec::new(),
                crypto_key_backend: None,
                ..Default::default()
            },
        )?;
        Ok(format!("{key_name}/cryptoKeyVersions/1"))
    }

    /// Creates a Google Cloud KMS `EXTERNAL_VPC` key (and its key ring)
    /// behind the EkmConnection `connection`, whose version 1 is the key
    /// manager's key `ekm_key_path`; returns the version's resource name.
    pub fn create_gcp_external_key(
        &self,
        key_name: &str,
        algorithm: &str,
        connection: &str,
        ekm_key_path: &str,
    ) -> Result<String, String> {
        gcp::seed::seed_key(
            &self.state,
            gcp::store::GcpSeed {
                key: key_name.to_string(),
                purpose: None,
                algorithm: algorithm.to_string(),
                protection_level: Some("EXTERNAL_VPC".into()),
                versions: vec![gcp::store::VersionSeed {
                    state: None,
                    private_key: None,
                    private_key_file: None,
                    ekm_connection_key_path: Some(ekm_key_path.to_string()),
                    ..Default::default()
                }],
                crypto_key_backend: Some(connection.to_string()),
                ..Default::default()
            },
        )?;
        Ok(format!("{key_name}/cryptoKeyVersions/1"))
    }

    /// Creates an Azure Key Vault key (`EC` + curve or `RSA` + size); returns
    /// its key identifier URL with version.
    pub fn create_azure_key(
        &self,
        name: &str,
        kty: &str,
        crv_or_size: &str,
    ) -> Result<String, String> {
        let (crv, size) = if kty.starts_with("EC") {
            (Some(crv_or_size.to_string()), None)
        } else {
            let n = crv_or_size
                .parse()
                .map_err(|_| format!("bad RSA key size {crv_or_size:?}"))?;
            (None, Some(n))
        };
        let version = azure::seed_key(
            &self.state,
            azure::store::AzureSeed {
                name: name.to_string(),
                kty: kty.to_string(),
                crv,
                key_size: size,
                versions: Vec::new(),
                rotation_policy: None,
                deleted: None,
            },
        )?;
        Ok(format!("{}/keys/{name}/{version}", self.endpoints.azure))
    }

    /// Creates an external key manager key `{space}/keys/{key_id}`
    /// (algorithm by its Cloud KMS name); returns the key name.
    pub fn create_ekm_key(
        &self,
        space: &str,
        key_id: &str,
        algorithm: &str,
    ) -> Result<String, String> {
        ekm::create_key(&self.state, space, key_id, algorithm).map(|k| k.name)
    }

    /// Makes `instance` the one the metadata services of `cloud` (`aws`,
    /// `gcp`, `azure`) answer for when a request names none.
    pub fn select_instance(&self, cloud: &str, instance: &str) -> Result<(), String> {
        metadata::select(&self.state, cloud, instance)
    }

    /// Waits until the process is asked to stop (Ctrl-C / SIGTERM).
    pub async fn wait_for_signal(&self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    }
}

fn url_host(bind: IpAddr, local: SocketAddr) -> String {
    let ip = if bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        local.ip()
    };
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{}", local.port()),
        IpAddr::V4(v4) => format!("{v4}:{}", local.port()),
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

async fn serve(
    socket: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    listener: Listener,
) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = match socket.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Reap finished connections.
        while conns.try_join_next().is_some() {}
        let state = state.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let state = state.clone();
                async move {
                    let req = read_request(req).await;
                    let reply = match listener {
                        Listener::Service(service, _) => {
                            requests::logged(&state.requests, service, req, |req| {
                                dispatch(state.clone(), listener, req)
                            })
                            .await
                        }
                        Listener::Admin => dispatch(state, listener, req).await,
                    };
                    match reply {
                        Reply::Send(r) => Ok(r),
                        Reply::Drop => Err(Dropped),
                    }
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// Writes `endpoints` as one JSON object to `path` (atomically).
pub fn write_ready_file(path: &Path, endpoints: &Endpoints) -> std::io::Result<()> {
    let text = serde_json::to_string(endpoints).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(tmp, path)
}
