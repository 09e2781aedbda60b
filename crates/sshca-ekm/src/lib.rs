//! sshca backend for CA keys held in an external key manager (an HSM front
//! end) that speaks the sshca EKM protocol (`docs/ekm-protocol.md`): HTTPS
//! with pinned server certificates, a client certificate and/or a bearer
//! token, several replicas with failover.
//!
//! Key URI: `ekm:SPACE/keys/KEY_ID?OPTIONS` where `SPACE` is the crypto
//! space path. Options:
//! - `resolver=HOST:PORT[,HOST:PORT...]`: the replicas, tried in order;
//! - `server-cert=PATH[,PATH...]`: the only certificates trusted (PEM or
//!   DER; the server's own certificate or the CA that issued it);
//! - `client-identity=PATH`: PEM with the client certificate (chain) and its
//!   private key, for mTLS;
//! - `token-env=VAR`: a bearer token read from the environment variable;
//! - `endpoint-filter=FILTER`: which of a resolver hostname's addresses may
//!   be dialled ([`EndpointFilter`]: `address`/`port` clauses joined by
//!   `AND`, as Cloud EKM's `endpointFilter`), e.g. `address>=10.0.0.0 AND port=8443`;
//! - `connection=PATH`: a connection description file ([`ConnectionFile`],
//!   TOML, modelled on Cloud KMS's EkmConnection) instead of the options
//!   above; `connection=PATH#NAME` takes the `[ekm_connection.NAME]` table of
//!   a TOML file instead (in `sshca.toml`, `connection=NAME` names one of its
//!   own tables);
//! - `timeout=SECS` (per request and resolver, default 10), and `retries`,
//!   `backoff-ms` (see `sshca-signer`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use sha2::Digest;
use sshca_core::convert::{native_to_ssh, NativeFormat};
use sshca_core::{KeyData, SigAlg, Signature};
use sshca_signer::{
    check_algorithm, with_retries, Error, ErrorKind, KeySigner, KeyUri, Registry, Result,
    RetryConfig, RetrySigner, Secret,
};

mod filter;
pub use filter::EndpointFilter;

/// The URI scheme.
pub const SCHEME: &str = "ekm";

/// Options an `ekm:` URI may carry.
pub const URI_OPTIONS: [&str; 10] = [
    "resolver",
    "server-cert",
    "endpoint-filter",
    "client-identity",
    "token-env",
    "connection",
    "timeout",
    "retries",
    "backoff-ms",
    "pin",
];

/// How keys are managed (Cloud EKM's key management mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyManagementMode {
    /// Keys are created in the key manager by its operators.
    #[default]
    Manual,
    /// Keys may be created through the protocol's create operation.
    CloudKms,
}

/// One replica of the key manager and the certificates trusted for it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceResolverFile {
    /// `hostname[:port]` (port 443 when absent).
    pub hostname: String,
    /// Files with the trusted server certificates (PEM or DER).
    pub server_certificates: Vec<String>,
    /// Which of the hostname's addresses may be used ([`EndpointFilter`]).
    #[serde(default)]
    pub endpoint_filter: Option<String>,
}

/// A connection description file (TOML).
///
/// ```toml
/// crypto_space_path = "v0/spaces/ssh-ca"
/// key_management_mode = "MANUAL"            # or CLOUD_KMS
/// client_identity = "/etc/sshca/ekm-client.pem"
/// token_env = "EKM_TOKEN"                   # optional
/// [[service_resolvers]]
/// hostname = "ekm-1.example.internal:8443"
/// server_certificates = ["/etc/sshca/ekm-ca.pem"]
/// ```
///
/// Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFile {
    /// The replicas, tried in order.
    pub service_resolvers: Vec<ServiceResolverFile>,
    /// The crypto space path keys live under.
    pub crypto_space_path: String,
    /// Key management mode.
    #[serde(default)]
    pub key_management_mode: KeyManagementMode,
    /// PEM file with the client certificate and key.
    #[serde(default)]
    pub client_identity: Option<String>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// A replica: where it is and which certificates it may present.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// `host:port`.
    pub hostname: String,
    /// Trusted certificates (DER).
    pub server_certificates: Vec<CertificateDer<'static>>,
    /// Which of the hostname's addresses may be used; all when `None`.
    pub endpoint_filter: Option<EndpointFilter>,
}

impl Resolver {
    /// The addresses to dial: the hostname's addresses that pass the
    /// endpoint filter (resolved now, when there is a filter), or `None`
    /// to let the connection resolve the name itself.
    pub fn endpoints(&self) -> std::result::Result<Option<Vec<std::net::SocketAddr>>, String> {
        let Some(f) = &self.endpoint_filter else {
            return Ok(None);
        };
        let (host, port) = host_and_port(&self.hostname).map_err(|e| e.to_string())?;
        use std::net::ToSocketAddrs;
        let all: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let kept: Vec<_> = all.iter().copied().filter(|a| f.matches(a)).collect();
        if kept.is_empty() {
            return Err(format!(
                "endpoint filter {f:?} leaves none of {}",
                all.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Some(kept))
    }
}

/// A connection to an external key manager.
#[derive(Clone)]
pub struct Connection {
    /// The replicas, tried in order.
    pub resolvers: Vec<Resolver>,
    /// The crypto space path (empty when not fixed by a description file).
    pub crypto_space_path: String,
    /// Key management mode.
    pub key_management_mode: KeyManagementMode,
    /// Client certificate chain and key for mTLS.
    pub client_identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    /// Bearer token.
    pub token: Option<Secret>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field(
                "resolvers",
                &self
                    .resolvers
                    .iter()
                    .map(|r| &r.hostname)
                    .collect::<Vec<_>>(),
            )
            .field("crypto_space_path", &self.crypto_space_path)
            .field("key_management_mode", &self.key_management_mode)
            .field("client_identity", &self.client_identity.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

fn bad_input(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg.into())
}

/// Reads certificates from a PEM or DER file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io("cannot read certificate file", path, &e))?;
    if bytes.starts_with(b"-----") {
        let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad_input(format!("{}: bad PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(bad_input(format!(
                "{}: no CERTIFICATE in the file",
                path.display()
            )));
        }
        Ok(certs)
    } else {
        Ok(vec![CertificateDer::from(bytes)])
    }
}

fn read_identity(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io("cannot read client identity", path, &e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_input(format!("{}: bad PEM: {e}", path.display())))?;
    let key = rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| bad_input(format!("{}: bad PEM: {e}", path.display())))?
        .ok_or_else(|| {
            bad_input(format!(
                "{}: no private key in the client identity",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(bad_input(format!(
            "{}: no certificate in the client identity",
            path.display()
        )));
    }
    Ok((certs, Arc::new(key)))
}

fn token_from_env(var: &str) -> Result<Secret> {
    std::env::var(var).map(Secret::new).map_err(|_| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("token-env names {var}, which is not set"),
        )
    })
}

impl Connection {
    /// Reads a connection description file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read EKM connection file", path, &e))?;
        let f: ConnectionFile =
            toml::from_str(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        Self::from_description(&f, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| e.context(path.display().to_string()))
    }

    /// Reads the table `[ekm_connection.NAME]` of a TOML file (such as
    /// `sshca.toml`); its fields are those of [`ConnectionFile`].
    pub fn from_named(path: &Path, name: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read EKM connection file", path, &e))?;
        let doc: toml::Table =
            toml::from_str(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        let table = doc
            .get("ekm_connection")
            .and_then(|t| t.get(name))
            .ok_or_else(|| {
                bad_input(format!(
                    "{}: no [ekm_connection.{name}] table",
                    path.display()
                ))
            })?;
        let f = ConnectionFile::deserialize(table.clone()).map_err(|e| {
            bad_input(format!(
                "{}: ekm_connection `{name}`: {}",
                path.display(),
                e.message()
            ))
        })?;
        Self::from_description(&f, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| e.context(format!("{}: ekm_connection `{name}`", path.display())))
    }

    /// A `connection=` reference: `PATH` (a connection description file) or
    /// `PATH#NAME` (the `[ekm_connection.NAME]` table of a TOML file).
    pub fn from_reference(reference: &str) -> Result<Self> {
        match reference.rsplit_once('#') {
            Some((path, name)) if !name.is_empty() => Self::from_named(Path::new(path), name),
            _ => Self::from_file(Path::new(reference)),
        }
    }

    /// Builds a connection from a description whose relative paths are
    /// relative to `base`.
    pub fn from_description(f: &ConnectionFile, base: &Path) -> Result<Self> {
        let resolve = |p: &str| base.join(p);
        let mut resolvers = Vec::new();
        for r in &f.service_resolvers {
            let mut certs = Vec::new();
            for c in &r.server_certificates {
                certs.extend(read_certificates(&resolve(c))?);
            }
            resolvers.push(Resolver {
                hostname: r.hostname.clone(),
                server_certificates: certs,
                endpoint_filter: r
                    .endpoint_filter
                    .as_deref()
                    .map(EndpointFilter::parse)
                    .transpose()?,
            });
        }
        let conn = Connection {
            resolvers,
            crypto_space_path: f.crypto_space_path.clone(),
            key_management_mode: f.key_management_mode,
            client_identity: f
                .client_identity
                .as_deref()
                .map(|p| read_identity(&resolve(p)))
                .transpose()?,
            token: f.token_env.as_deref().map(token_from_env).transpose()?,
            timeout: Duration::from_secs(10),
        };
        conn.check()?;
        Ok(conn)
    }

    /// A connection to the replicas `hostnames` (tried in order), each
    /// trusting only the certificates in the files `server_certs`, with an
    /// optional client identity file (PEM certificate chain and key).
    pub fn from_parts(
        hostnames: &[&str],
        server_certs: &[&Path],
        client_identity: Option<&Path>,
    ) -> Result<Self> {
        let mut certs = Vec::new();
        for c in server_certs {
            certs.extend(read_certificates(c)?);
        }
        let conn = Connection {
            resolvers: hostnames
                .iter()
                .map(|h| Resolver {
                    hostname: h.to_string(),
                    server_certificates: certs.clone(),
                    endpoint_filter: None,
                })
                .collect(),
            crypto_space_path: String::new(),
            key_management_mode: KeyManagementMode::Manual,
            client_identity: client_identity.map(read_identity).transpose()?,
            token: None,
            timeout: Duration::from_secs(10),
        };
        conn.check()?;
        Ok(conn)
    }

    /// Applies an endpoint filter ([`EndpointFilter`] syntax) to every
    /// resolver.
    pub fn set_endpoint_filter(&mut self, filter: &str) -> Result<()> {
        let f = EndpointFilter::parse(filter)?;
        for r in &mut self.resolvers {
            r.endpoint_filter = Some(f.clone());
        }
        Ok(())
    }

    /// Reads a bearer token from the environment variable `var`.
    pub fn set_token_from_env(&mut self, var: &str) -> Result<()> {
        self.token = Some(token_from_env(var)?);
        Ok(())
    }

    /// The connection an `ekm:` URI describes (its options, or the file
    /// `connection=` names).
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        uri.check_options(&URI_OPTIONS)?;
        let mut conn = if let Some(file) = uri.option("connection") {
            for o in ["resolver", "server-cert", "client-identity"] {
                if uri.option(o).is_some() {
                    return Err(bad_input(format!(
                        "`{uri}`: give either connection= or {o}=, not both"
                    )));
                }
            }
            Connection::from_reference(file)?
        } else {
            let hosts = uri.option("resolver").ok_or_else(|| {
                bad_input(format!(
                    "`{uri}`: resolver=HOST:PORT is required (or connection=FILE)"
                ))
            })?;
            let certs_opt = uri.option("server-cert").ok_or_else(|| {
                bad_input(format!(
                    "`{uri}`: server-cert=PATH is required: only pinned certificates are trusted"
                ))
            })?;
            let hosts: Vec<&str> = hosts.split(',').collect();
            let certs: Vec<&Path> = certs_opt.split(',').map(Path::new).collect();
            Connection::from_parts(&hosts, &certs, uri.option("client-identity").map(Path::new))?
        };
        if let Some(var) = uri.option("token-env") {
            conn.set_token_from_env(var)?;
        }
        if let Some(f) = uri.option("endpoint-filter") {
            conn.set_endpoint_filter(f)?;
        }
        if let Some(t) = uri.option("timeout") {
            let secs: f64 = t
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| {
                    bad_input(format!(
                        "`{uri}`: timeout={t} is not a positive number of seconds"
                    ))
                })?;
            conn.timeout = Duration::from_secs_f64(secs);
        }
        conn.check()?;
        Ok(conn)
    }

    fn check(&self) -> Result<()> {
        if self.resolvers.is_empty() {
            return Err(bad_input("the connection has no service resolver"));
        }
        for r in &self.resolvers {
            host_and_port(&r.hostname)?;
            if r.server_certificates.is_empty() {
                return Err(bad_input(format!(
                    "resolver {} has no server certificate to trust",
                    r.hostname
                )));
            }
        }
        Ok(())
    }

    fn tls_config(
        &self,
        resolver: &Resolver,
        seen: Option<Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>>,
    ) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedVerifier::new(
            &resolver.server_certificates,
            provider.clone(),
            seen,
        )?);
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_input(format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| bad_input(format!("client identity: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn host_and_port(hostname: &str) -> Result<(String, u16)> {
    let bad = || bad_input(format!("resolver {hostname:?} is not HOST[:PORT]"));
    if hostname.is_empty() || hostname.contains('/') {
        return Err(bad());
    }
    match hostname.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(':') => Ok((
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().map_err(|_| bad())?,
        )),
        _ => Ok((hostname.to_string(), 443)),
    }
}

/// Trusts a server only if its certificate is one of the pinned ones, or
/// chains (with the name checked) to a pinned CA.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Option<Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>>,
}

impl PinnedVerifier {
    fn new(
        pinned: &[CertificateDer<'static>],
        provider: Arc<rustls::crypto::CryptoProvider>,
        seen: Option<Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>>,
    ) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let _ = roots.add_parsable_certificates(pinned.iter().cloned());
        let chain = if roots.is_empty() {
            None
        } else {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| bad_input(format!("pinned certificates: {e}")))?,
            )
        };
        Ok(Self {
            pinned: pinned.to_vec(),
            chain,
            provider,
            seen,
        })
    }
}

impl rustls::client::danger::ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(seen) = &self.seen {
            if let Ok(mut s) = seen.lock() {
                *s = Some(end_entity.clone().into_owned());
            }
        }
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match &self.chain {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client for one EKM connection: one HTTPS client per resolver, with
/// failover.
#[derive(Debug)]
pub struct EkmClient {
    conn: Connection,
    /// One client per resolver, or why the resolver cannot be used.
    clients: Vec<std::result::Result<reqwest::Client, String>>,
    /// Index of the resolver to try first (the last one that answered).
    preferred: AtomicUsize,
}

/// An answer that is not an error, or a 4xx that is the answer.
enum Outcome {
    Ok(serde_json::Value),
    Fail(Error),
}

impl EkmClient {
    /// Builds the HTTPS clients (no network access yet).
    pub fn new(conn: Connection) -> Result<Self> {
        let mut clients = Vec::new();
        for r in &conn.resolvers {
            let tls = conn.tls_config(r, None)?;
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(conn.timeout)
                .connect_timeout(conn.timeout)
                // A redirect is never followed: the key manager is pinned,
                // and a 3xx answer is an error naming where it pointed.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            match r.endpoints() {
                Ok(Some(addrs)) => {
                    let (host, _) = host_and_port(&r.hostname)?;
                    b = b.resolve_to_addrs(&host, &addrs);
                }
                Ok(None) => {}
                Err(e) => {
                    clients.push(Err(e));
                    continue;
                }
            }
            let c = b
                .build()
                .map_err(|e| bad_input(format!("HTTPS client for {}: {e}", r.hostname)))?;
            clients.push(Ok(c));
        }
        Ok(Self {
            conn,
            clients,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn once(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> std::result::Result<Outcome, String> {
        let r = &self.conn.resolvers[i];
        let url = format!("https://{}{}", r.hostname, path);
        let client = self.clients[i].as_ref().map_err(Clone::clone)?;
        let mut req = client.request(method, &url);
        if let Some(t) = &self.conn.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(sshca_core::text::escape)
                .unwrap_or_else(|| "nowhere".into());
            return Ok(Outcome::Fail(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "{}: answered {status} (a redirect to {to}); redirects are never followed",
                    r.hostname
                ),
            )));
        }
        let text = resp.text().await.map_err(|e| describe(&e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(Outcome::Ok(json));
        }
        let message = json["error"]["message"]
            .as_str()
            .unwrap_or(text.trim())
            .to_string();
        let name = json["error"]["status"].as_str().unwrap_or("").to_string();
        if status.is_server_error() {
            return Err(format!("{status} {name}: {message}"));
        }
        let kind = match status.as_u16() {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            412 => ErrorKind::InvalidKey,
            429 => ErrorKind::Throttled,
            400 | 409 | 413 => ErrorKind::InvalidInput,
            _ => ErrorKind::BadResponse,
        };
        Ok(Outcome::Fail(
            Error::new(kind, format!("{}: {name}: {message}", r.hostname))
                .set_temporary(status.as_u16() == 429),
        ))
    }

    /// Sends a request to the resolvers in turn until one answers; a
    /// connection error, timeout, TLS failure or 5xx moves to the next.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let n = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            match self.once(i, method.clone(), path, body).await {
                Ok(outcome) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return match outcome {
                        Outcome::Ok(v) => Ok(v),
                        Outcome::Fail(e) => Err(e),
                    };
                }
                Err(e) => failures.push(format!("{}: {e}", self.conn.resolvers[i].hostname)),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "no replica of the key manager answered ({})",
                failures.join("; ")
            ),
        )
        .set_temporary(true))
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    }
    msg
}

/// The outcome of one step of [`verify_connectivity`].
pub type Step = std::result::Result<String, String>;

/// What [`verify_connectivity`] found for one resolver.
#[derive(Debug, Clone)]
pub struct ResolverReport {
    /// The resolver.
    pub hostname: String,
    /// TCP connection and TLS handshake (with the client identity).
    pub tls_handshake: Step,
    /// The server presented a pinned certificate (or one issued by a pinned CA).
    pub certificate_match: Step,
    /// `GET /v1/health`.
    pub health: Step,
    /// Fetching the public key of the key asked about, if any.
    pub public_key: Option<Step>,
}

impl ResolverReport {
    /// Every step succeeded.
    pub fn ok(&self) -> bool {
        self.tls_handshake.is_ok()
            && self.certificate_match.is_ok()
            && self.health.is_ok()
            && self.public_key.as_ref().is_none_or(|s| s.is_ok())
    }
}

/// Checks every resolver of `conn` on its own: TLS handshake, certificate
/// match, health and (when `key_path` is given, `SPACE/keys/ID`) the
/// public key.
pub async fn verify_connectivity(conn: &Connection, key_path: Option<&str>) -> Vec<ResolverReport> {
    let mut out = Vec::new();
    for r in &conn.resolvers {
        let mut report = ResolverReport {
            hostname: r.hostname.clone(),
            tls_handshake: Err("not attempted".into()),
            certificate_match: Err("not attempted".into()),
            health: Err("not attempted".into()),
            public_key: key_path.map(|_| Err("not attempted".into())),
        };
        // A handshake that accepts any certificate, to tell a broken link
        // from a certificate that is not pinned.
        let seen = Arc::new(std::sync::Mutex::new(None));
        let hs = handshake(conn, r, seen.clone()).await;
        let presented = seen.lock().ok().and_then(|s| s.clone());
        match (&hs, presented) {
            (Ok(()), _) => {
                report.tls_handshake = Ok("TLS handshake completed".into());
                report.certificate_match = Ok("the server certificate is pinned".into());
            }
            (Err(e), Some(_)) if e.contains("certificate") && !e.contains("client") => {
                report.tls_handshake = Ok("TLS handshake reached certificate verification".into());
                report.certificate_match =
                    Err(format!("the server certificate is not trusted: {e}"));
            }
            (Err(e), _) => report.tls_handshake = Err(e.clone()),
        }
        if hs.is_ok() {
            let single = Connection {
                resolvers: vec![r.clone()],
                ..conn.clone()
            };
            match EkmClient::new(single) {
                Ok(c) => {
                    report.health = match c.call(reqwest::Method::GET, "/v1/health", None).await {
                        Ok(v) if v["status"] == "SERVING" => Ok(format!(
                            "SERVING ({})",
                            v["replica"].as_str().unwrap_or("?")
                        )),
                        Ok(v) => Err(format!("not serving: {v}")),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Some(path) = key_path {
                        report.public_key = Some(match fetch_key(&c, path).await {
                            Ok(k) => Ok(format!(
                                "{} {} ({})",
                                k.0.fingerprint(sshca_core::HashAlg::Sha256),
                                k.0.algorithm().as_str(),
                                k.1
                            )),
                            Err(e) => Err(e.to_string()),
                        });
                    }
                }
                Err(e) => report.health = Err(e.to_string()),
            }
        }
        out.push(report);
    }
    out
}

async fn handshake(
    conn: &Connection,
    r: &Resolver,
    seen: Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>,
) -> std::result::Result<(), String> {
    let (host, port) = host_and_port(&r.hostname).map_err(|e| e.to_string())?;
    let config = conn.tls_config(r, Some(seen)).map_err(|e| e.to_string())?;
    let name =
        ServerName::try_from(host.clone()).map_err(|e| format!("bad host name {host}: {e}"))?;
    let addrs = match r.endpoints()? {
        Some(a) => a,
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        // With TLS 1.3 the server checks the client certificate after the
        // client finished; a short read shows whether it was refused.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(
            format!("GET /v1/health HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("TLS session failed: {e}"))?;
        let mut buf = [0u8; 12];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("TLS session failed (client identity refused?): {e}"))?;
        Ok(())
    };
    tokio::time::timeout(conn.timeout, fut)
        .await
        .map_err(|_| format!("timed out after {:?}", conn.timeout))?
}

/// Fetches `SPACE/keys/ID`: the public key, its SSH algorithm, and the key
/// name.
async fn fetch_key(client: &EkmClient, path: &str) -> Result<(KeyData, String, SigAlg)> {
    let v = client
        .call(reqwest::Method::GET, &format!("/v1/{path}"), None)
        .await?;
    let alg_name = v["algorithm"].as_str().unwrap_or("");
    let alg = match alg_name {
        "EC_SIGN_P256_SHA256" => SigAlg::EcdsaP256,
        "EC_SIGN_P384_SHA384" => SigAlg::EcdsaP384,
        "EC_SIGN_ED25519" => SigAlg::Ed25519,
        "RSA_SIGN_PKCS1_2048_SHA256"
        | "RSA_SIGN_PKCS1_3072_SHA256"
        | "RSA_SIGN_PKCS1_4096_SHA256" => SigAlg::RsaSha256,
        "RSA_SIGN_PKCS1_4096_SHA512" => SigAlg::RsaSha512,
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("key {path}: algorithm {other:?} cannot sign SSH certificates"),
            ))
        }
    };
    if v["state"] != "ENABLED" {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("key {path} is {}", v["state"]),
        ));
    }
    let pem = v["publicKeyPem"].as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::BadResponse,
            format!("key {path}: the answer has no publicKeyPem"),
        )
    })?;
    let public = sshca_core::spki::public_key_from_pem(pem)
        .map_err(|e| Error::from(e).context(format!("key {path}: public key")))?;
    if !alg.fits_key(&public) {
        return Err(Error::new(
            ErrorKind::BadResponse,
            format!("key {path}: the public key does not match algorithm {alg_name}"),
        ));
    }
    Ok((public, alg_name.to_string(), alg))
}

/// A key in an external key manager.
#[derive(Debug)]
pub struct EkmSigner {
    uri: KeyUri,
    path: String,
    client: EkmClient,
    public: KeyData,
    algorithm: String,
    alg: SigAlg,
}

fn key_path(uri: &KeyUri, space: &str) -> Result<String> {
    let loc = uri.location();
    let Some((s, id)) = loc.rsplit_once("/keys/") else {
        return Err(bad_input(format!(
            "`{uri}`: the location must be SPACE/keys/KEY_ID"
        )));
    };
    let seg_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !s.split('/').all(seg_ok)
        || !(1..=63).contains(&id.len())
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad_input(format!(
            "`{uri}`: SPACE must be segments of [A-Za-z0-9._-] joined by / and KEY_ID [A-Za-z0-9_-]{{1,63}}"
        )));
    }
    if !space.is_empty() && s != space {
        return Err(bad_input(format!(
            "`{uri}`: the key is not in the connection's crypto space {space}"
        )));
    }
    Ok(loc.to_string())
}

/// The connection an `ekm:` key URI describes and the key's path
/// (`SPACE/keys/KEY_ID`), checked without network access.
pub fn connection_and_key(uri: &KeyUri) -> Result<(Connection, String)> {
    let conn = Connection::from_uri(uri)?;
    let path = key_path(uri, &conn.crypto_space_path)?;
    Ok((conn, path))
}

/// Checks a key URI without network access.
pub fn check_uri(uri: &KeyUri) -> Result<()> {
    connection_and_key(uri).map(|_| ())
}

impl EkmSigner {
    /// Opens the key: one public-key fetch (retried under the URI's retry
    /// settings, failing over across resolvers).
    pub async fn open(uri: KeyUri) -> Result<Self> {
        let conn = Connection::from_uri(&uri)?;
        Self::open_with(uri, conn).await
    }

    /// Opens the key with an explicit connection.
    pub async fn open_with(uri: KeyUri, conn: Connection) -> Result<Self> {
        let path = key_path(&uri, &conn.crypto_space_path)?;
        let client = EkmClient::new(conn)?;
        let retry = RetryConfig::from_uri(&uri)?;
        let (public, algorithm, alg) = with_retries(&retry, "fetching the public key", || {
            fetch_key(&client, &path)
        })
        .await
        .map_err(|e| e.context(format!("`{uri}`")))?;
        Ok(Self {
            uri,
            path,
            client,
            public,
            algorithm,
            alg,
        })
    }
}

#[async_trait]
impl KeySigner for EkmSigner {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn public_key(&self) -> Result<KeyData> {
        Ok(self.public.clone())
    }

    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        Ok(vec![self.alg])
    }

    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        check_algorithm(&self.uri, &[self.alg], alg)?;
        let body = match alg {
            SigAlg::Ed25519 => {
                serde_json::json!({"algorithm": self.algorithm, "data": STANDARD.encode(message)})
            }
            SigAlg::EcdsaP384 => {
                serde_json::json!({"algorithm": self.algorithm, "digest": STANDARD.encode(sha2::Sha384::digest(message))})
            }
            SigAlg::RsaSha512 => {
                serde_json::json!({"algorithm": self.algorithm, "digest": STANDARD.encode(sha2::Sha512::digest(message))})
            }
            _ => {
                serde_json::json!({"algorithm": self.algorithm, "digest": STANDARD.encode(sha2::Sha256::digest(message))})
            }
        };
        let v = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("/v1/{}:sign", self.path),
                Some(&body),
            )
            .await
            .map_err(|e| e.context(format!("`{}`: signing", self.uri)))?;
        let sig = v["signature"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("`{}`: the answer has no base64 signature", self.uri),
                )
            })?;
        native_to_ssh(&self.public, alg, NativeFormat::Der, &sig).map_err(|e| {
            Error::from(e).context(format!("`{}`: signature from the key manager", self.uri))
        })
    }
}

/// Registers the `ekm:` scheme (signers wrapped in [`RetrySigner`]).
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, |uri| {
        Box::pin(async move {
            let retry = RetryConfig::from_uri(&uri)?;
            let signer = EkmSigner::open(uri).await?;
            Ok(Arc::new(RetrySigner::new(signer, retry)) as Arc<dyn KeySigner>)
        })
    });
}
