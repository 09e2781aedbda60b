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
    /// `[server]`, `[token.*]`, `[oidc.*]`.
    pub service: ServiceConfig,
    pub settings: Settings,
    pub tokens: Tokens,
    pub oidc: crate::oidc::Issuers,
    pub metrics: Arc<Metrics>,
    pub limiter: Option<RateLimiter>,
}

/// What the TLS layer learnt about a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    /// The identity of a verified client certificate.
    pub client_cert: Option<String>,
}
