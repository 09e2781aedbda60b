//! Connections: connection description files, key URI options, resolvers,
//! client identity and token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sshca_signer::{Error, ErrorKind, KeyUri, Result, Secret};

use crate::*;

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

pub(crate) fn read_identity(
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

pub(crate) fn token_from_env(var: &str) -> Result<Secret> {
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
}

pub(crate) fn host_and_port(hostname: &str) -> Result<(String, u16)> {
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
