//! TLS to a key manager: only pinned certificates (or pinned CAs) are
//! trusted, never the system roots.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sshca_signer::Result;

use crate::*;

impl Connection {
    pub(crate) fn tls_config(
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
