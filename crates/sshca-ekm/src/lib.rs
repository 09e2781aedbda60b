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

use sshca_signer::{Error, ErrorKind, Registry};

mod client;
mod connection;
mod diagnostics;
mod filter;
mod signer;
mod tls;

pub use client::EkmClient;
pub use connection::{
    read_certificates, Connection, ConnectionFile, KeyManagementMode, Resolver, ServiceResolverFile,
};
pub use diagnostics::{verify_connectivity, ResolverReport, Step};
pub use filter::EndpointFilter;
pub use signer::{check_uri, connection_and_key, EkmSigner, EkmWrapper};

use connection::host_and_port;
use signer::fetch_key;

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

pub(crate) fn bad_input(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg.into())
}

/// Registers the `ekm:` scheme (signers wrapped in [`sshca_signer::RetrySigner`])
/// and its key-encryption keys ([`EkmWrapper`]).
pub fn register(registry: &mut Registry) {
    registry.register_remote(SCHEME, EkmSigner::open);
    registry.register_wrapper(SCHEME, |uri| {
        Box::pin(async move {
            let w: std::sync::Arc<dyn sshca_signer::KeyWrapper> =
                std::sync::Arc::new(EkmWrapper::open(uri).await?);
            Ok(w)
        })
    });
}
