//! What every request shares: the authority (config, opened CAs, store),
//! the service's own settings, the tokens, the limits and the metrics.

use std::sync::Arc;

use sshca_authority::Authority;

use crate::config::ServiceConfig;
use crate::limit::RateLimiter;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::tokens::Tokens;

/// The service's shared state.
pub(crate) struct App {
    /// The CA's operations.
    pub authority: Authority,
    /// The URL clients use for the service (`[server] public_url`, else
    /// `https://` and the listening address): what renewal proofs sign.
    pub public_url: String,
    /// `[server]`, `[token.*]`, `[oidc.*]`.
    pub service: ServiceConfig,
    pub settings: Settings,
    pub tokens: Tokens,
    pub oidc: crate::oidc::Issuers,
    /// The cloud joins' verifiers (`[join.*]` with a cloud method).
    pub joins: crate::joins::Joins,
    pub metrics: Arc<Metrics>,
    /// Requests per qualified identity.
    pub limiter: Option<RateLimiter>,
    /// Failed authentications per client address.
    pub unauthenticated: Option<RateLimiter>,
    /// Unauthenticated refusals audited: one row per address per minute.
    pub audit_sample: AuditSample,
    /// The audit sinks (`[audit.*]`).
    pub audit: crate::audit::Audit,
}

/// At most one audit row per client address per minute for refusals made
/// before authentication (the rest are counted in `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct AuditSample(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl AuditSample {
    /// Whether a refusal from `client` at `now` gets an audit row.
    pub fn allow(&self, client: &str, now: u64) -> bool {
        let minute = now / 60;
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 100_000 {
            seen.retain(|_, m| *m == minute);
        }
        match seen.insert(client.to_owned(), minute) {
            Some(m) => m != minute,
            None => true,
        }
    }
}

/// What the TLS layer learnt about a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    /// The identity of a verified client certificate.
    pub client_cert: Option<String>,
    /// The TCP peer.
    pub addr: Option<std::net::SocketAddr>,
}
