//! The `[server]` table with its defaults applied.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sshca::config::Config;

use crate::config::{parse_rate, ServiceConfig};
use sshca::core::matcher::IdentityMatcher;
use sshca::core::validity::parse_ttl;
use sshca::signer::{Error, ErrorKind, Result};
use sshca_authority::Identity;

/// Where and how the service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// TLS private key (PEM).
    pub tls_key: PathBuf,
    /// Client CA (PEM), when client certificates are accepted.
    pub client_ca: Option<PathBuf>,
    /// Store URL.
    pub store: String,
    /// Identity globs allowed to list every certificate.
    pub admins: Vec<IdentityMatcher>,
    /// Largest request body.
    pub max_body: usize,
    /// Requests per identity: (count, period in seconds).
    pub rate_limit: Option<(u32, u64)>,
    /// Proxies whose forwarding headers are read.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed authentications per client address: (count, period).
    pub unauthenticated_limit: Option<(u32, u64)>,
    /// Longest wait for a signature (backend plus queue).
    pub request_timeout: Duration,
    /// Most backend signatures in flight.
    pub max_concurrent_signs: usize,
    /// Longest a store write waits for the database.
    pub store_timeout: Duration,
    /// Most database connections for reads.
    pub store_pool: u32,
    /// This replica's audit chain.
    pub replica_id: String,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

fn invalid(cfg: &Config, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: [server]: {what}", cfg.path.display()),
    )
}

impl Settings {
    /// The settings of `cfg`'s `[server]` table, `service` (the parser
    /// has already checked each field's syntax).
    pub fn from_config(
        cfg: &Config,
        service: &ServiceConfig,
        listen: Option<SocketAddr>,
    ) -> Result<Self> {
        let s = &service.server;
        let listen = match listen {
            Some(l) => l,
            None => s
                .listen
                .as_deref()
                .unwrap_or(DEFAULT_LISTEN)
                .parse()
                .map_err(|e| invalid(cfg, format_args!("field `listen`: {e}")))?,
        };
        let (Some(tls_cert), Some(tls_key)) = (s.tls_cert.clone(), s.tls_key.clone()) else {
            return Err(invalid(
                cfg,
                "`tls_cert` and `tls_key` are required: the service only speaks HTTPS \
                 (`sshca serve --dev` makes a throwaway certificate)",
            ));
        };
        let store = sshca_authority::store_url(cfg)?;
        let duration = |v: &Option<String>, field: &str, default: u64| -> Result<Duration> {
            let secs = match v {
                Some(t) => {
                    parse_ttl(t).map_err(|e| invalid(cfg, format_args!("field `{field}`: {e}")))?
                }
                None => default,
            };
            Ok(Duration::from_secs(secs.max(1)))
        };
        Ok(Self {
            listen,
            tls_cert,
            tls_key,
            client_ca: s.client_ca.clone(),
            store,
            admins: sshca::config::matchers(s.admins.as_ref(), "admins")
                .map_err(|e| invalid(cfg, e))?
                .unwrap_or_default(),
            max_body: usize::try_from(s.max_body.unwrap_or(64 * 1024))
                .map_err(|_| invalid(cfg, "field `max_body`: too large"))?,
            rate_limit: s
                .rate_limit
                .as_deref()
                .map(parse_rate)
                .transpose()
                .map_err(|e| invalid(cfg, format_args!("field `rate_limit`: {e}")))?,
            trusted_proxies: s
                .trusted_proxies
                .iter()
                .flatten()
                .map(|p| {
                    crate::config::parse_cidr(p)
                        .map_err(|e| invalid(cfg, format_args!("field `trusted_proxies`: {e}")))
                })
                .collect::<Result<_>>()?,
            unauthenticated_limit: match s.unauthenticated_limit.as_deref() {
                Some("off") => None,
                Some(r) => Some(parse_rate(r).map_err(|e| {
                    invalid(cfg, format_args!("field `unauthenticated_limit`: {e}"))
                })?),
                None => Some((60, 60)),
            },
            request_timeout: duration(&s.request_timeout, "request_timeout", 30)?,
            max_concurrent_signs: s.max_concurrent_signs.unwrap_or(64).max(1),
            store_timeout: duration(&s.store_timeout, "store_timeout", 5)?,
            store_pool: s.store_pool.unwrap_or(8).max(1),
            replica_id: s
                .replica_id
                .clone()
                .unwrap_or_else(sshca_store::chain::default_replica_id),
        })
    }

    /// Whether `identity` may list every certificate.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        identity.matches_any(&self.admins)
    }
}
