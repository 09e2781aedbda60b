//! The HTTPS side: rustls (TLS 1.2 and 1.3 only), client certificates
//! verified against the configured client CA when there is one.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sshca::signer::{Error, ErrorKind, Result};

use crate::settings::Settings;

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(&format!("cannot read the {what}"), path, &e))
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: {what}", path.display()),
    )
}

/// The certificates of a PEM file (at least one).
pub(crate) fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path, what)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format_args!("{what}: not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, format_args!("{what}: no CERTIFICATE block")));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub(crate) fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path, what)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| bad(path, format_args!("{what}: not PEM: {e}")))?
        .ok_or_else(|| bad(path, format_args!("{what}: no PRIVATE KEY block")))
}

/// The server's TLS configuration.
pub(crate) fn server_config(s: &Settings) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&s.tls_cert, "TLS certificate (tls_cert)")?;
    let key = load_key(&s.tls_key, "TLS key (tls_key)")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(ErrorKind::Internal, "TLS setup").with_source(e))?;
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(path, "client CA (client_ca)")? {
                roots
                    .add(c)
                    .map_err(|e| bad(path, format_args!("client CA (client_ca): {e}")))?;
            }
            // Clients without a certificate may still present a token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(path, format_args!("client CA (client_ca): {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        bad(
            &s.tls_key,
            format_args!("TLS key does not fit tls_cert: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTPS client (TLS 1.2 and 1.3, ring) that trusts the certificates
/// of `ca` (`what` names the file in errors), else the system's roots,
/// and follows no redirect.
pub(crate) fn https_client(ca: Option<&Path>, what: &str) -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in load_certs(path, what)? {
                roots
                    .add(c)
                    .map_err(|e| bad(path, format_args!("{what}: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(ErrorKind::Internal, "TLS setup").with_source(e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot set up an HTTPS client").with_source(e)
        })
}

/// An error and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
