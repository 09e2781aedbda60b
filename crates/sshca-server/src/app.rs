//! What every request shares: the config, the opened CAs, the store, the
//! tokens, the limits and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use sshca::config::Config;
use sshca::signer::{KeySigner, Result};
use sshca_store::Store;
use tokio::sync::Semaphore;

use crate::auth::{bearer, Identity, Tokens};
use crate::error::ApiError;
use crate::limit::RateLimiter;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// An opened CA.
pub(crate) struct Ca {
    pub signer: Arc<dyn KeySigner>,
    /// SHA256 fingerprint of its public key.
    pub fingerprint: String,
    /// Its public key line.
    pub public_line: String,
}

/// The service's shared state.
pub(crate) struct App {
    pub config: Config,
    pub settings: Settings,
    pub cas: BTreeMap<String, Ca>,
    pub tokens: Tokens,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub limiter: Option<RateLimiter>,
    pub signing: Semaphore,
}

/// What the TLS layer learnt about a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The identity of a verified client certificate.
    pub client_cert: Option<String>,
}

impl App {
    /// Opens every CA a policy uses (each key URI through the registry, so
    /// pins are checked and signatures verified).
    pub async fn open_cas(config: &Config) -> Result<BTreeMap<String, Ca>> {
        let registry = sshca::default_registry();
        let mut cas = BTreeMap::new();
        for entry in config.policies.values() {
            if cas.contains_key(&entry.ca) {
                continue;
            }
            let Some(ca) = config.cas.get(&entry.ca) else {
                continue;
            };
            let signer = registry
                .open(&ca.uri()?)
                .await
                .map_err(|e| e.context(format!("CA `{}`", entry.ca)))?;
            let key = signer
                .public_key()
                .await
                .map_err(|e| e.context(format!("CA `{}`", entry.ca)))?;
            let public_line = ssh_key_line(&key, &entry.ca)?;
            cas.insert(
                entry.ca.clone(),
                Ca {
                    signer,
                    fingerprint: sshca::fingerprint(&key),
                    public_line,
                },
            );
        }
        Ok(cas)
    }

    /// The requester: a bearer token when the request carries one (a wrong
    /// token is refused even over a client-certificate connection), else
    /// the connection's client certificate.
    pub fn authenticate(&self, headers: &HeaderMap, peer: &Peer) -> Result<Identity, ApiError> {
        if let Some(token) = bearer(headers)? {
            return match self.tokens.check(token) {
                Some(name) => Ok(Identity {
                    source: "token",
                    name: name.to_owned(),
                }),
                None => Err(ApiError::unauthenticated("the bearer token is not valid")),
            };
        }
        if let Some(name) = &peer.client_cert {
            return Ok(Identity {
                source: "client-cert",
                name: name.clone(),
            });
        }
        Err(ApiError::unauthenticated(
            "no credential: send `Authorization: Bearer TOKEN` or a client certificate",
        ))
    }
}

fn ssh_key_line(key: &sshca::core::KeyData, ca: &str) -> Result<String> {
    sshca::core::PublicKey::new(key.clone(), format!("sshca CA {ca}"))
        .to_openssh()
        .map_err(|e| {
            sshca::signer::Error::new(
                sshca::signer::ErrorKind::Internal,
                format!("CA `{ca}`: cannot encode its public key"),
            )
            .with_source(e)
        })
}
