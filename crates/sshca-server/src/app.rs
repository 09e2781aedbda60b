//! What every request shares: the config, the opened CAs, the store, the
//! tokens, the limits and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use sshca::config::Config;
use sshca::signer::Result;
use sshca_store::Store;
use tokio::sync::Semaphore;

use crate::auth::{bearer, Identity, Tokens};
use crate::error::ApiError;
use crate::limit::RateLimiter;
use crate::metrics::Metrics;
use crate::revocation::{BuiltKrl, OpenedCa};
use crate::settings::Settings;

/// A KRL built by this replica, served until a revocation is added or it
/// is [`KRL_MAX_AGE`] old.
pub(crate) struct CachedKrl {
    /// The revocation mark it was built at.
    pub mark: (u64, i64),
    /// When it was built (unix seconds).
    pub built_at: u64,
    pub krl: Arc<BuiltKrl>,
}

/// How long a KRL is served before it is rebuilt (with a fresh
/// `generated_date` and version) even when nothing was revoked.
pub(crate) const KRL_MAX_AGE: u64 = 3600;

/// The service's shared state.
pub(crate) struct App {
    pub config: Config,
    pub settings: Settings,
    pub cas: BTreeMap<String, OpenedCa>,
    pub tokens: Tokens,
    pub oidc: crate::oidc::Issuers,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub limiter: Option<RateLimiter>,
    pub signing: Semaphore,
    /// The newest KRL per CA.
    pub krls: tokio::sync::Mutex<BTreeMap<String, CachedKrl>>,
}

/// What the TLS layer learnt about a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The identity of a verified client certificate.
    pub client_cert: Option<String>,
}

impl App {
    /// Opens every CA a policy uses, with its next and retired keys (each
    /// key URI through the registry, so pins are checked and signatures
    /// verified).
    pub async fn open_cas(config: &Config) -> Result<BTreeMap<String, OpenedCa>> {
        let mut cas = BTreeMap::new();
        for entry in config.policies.values() {
            if cas.contains_key(&entry.ca) || !config.cas.contains_key(&entry.ca) {
                continue;
            }
            cas.insert(entry.ca.clone(), OpenedCa::open(config, &entry.ca).await?);
        }
        Ok(cas)
    }

    /// The requester: a bearer token when the request carries one (a JWT
    /// checked against the OIDC issuers, else an sshca token; a wrong one
    /// is refused even over a client-certificate connection), else the
    /// connection's client certificate. `vault`: `X-Vault-Token` counts as a
    /// bearer token.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: &Peer,
        vault: bool,
    ) -> Result<Identity, ApiError> {
        if let Some(token) = bearer(headers, vault)? {
            if let Some(jwt) = crate::oidc::peek(token) {
                if self.oidc.is_empty() {
                    return Err(ApiError::unauthenticated(
                        "the bearer token is a JWT but no OIDC issuer is configured",
                    ));
                }
                return self.oidc.verify(token, jwt).await;
            }
            return match self.tokens.check(token) {
                Some(name) => Ok(Identity {
                    source: "token".into(),
                    name: name.to_owned(),
                    claims: Default::default(),
                }),
                None => Err(ApiError::unauthenticated("the bearer token is not valid")),
            };
        }
        if let Some(name) = &peer.client_cert {
            return Ok(Identity {
                source: "client-cert".into(),
                name: name.clone(),
                claims: Default::default(),
            });
        }
        Err(ApiError::unauthenticated(
            "no credential: send `Authorization: Bearer TOKEN` or a client certificate",
        ))
    }
}
