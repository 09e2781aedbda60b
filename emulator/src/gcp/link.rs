//! How the emulated Cloud KMS reaches key managers: HTTPS clients pinned to
//! a resolver's leaf certificates, presenting the emulator's EKM client
//! identity, dialling only local addresses, never following redirects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::Digest;

use crate::gcp::store::ServiceResolver;

/// Time for one call to one resolver (connect, TLS, answer).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The emulated Cloud KMS's side of the link to the key manager: the client
/// identity it presents and its HTTPS clients (one per resolver and pinned
/// certificate set, so connections are reused).
#[derive(Default)]
pub struct Link {
    identity: OnceLock<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    clients: Mutex<HashMap<[u8; 32], reqwest::Client>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("identity", &self.identity.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Sets the client certificate chain and key presented to key managers.
    pub fn set_identity(&self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) {
        let _ = self.identity.set((chain, key));
    }

    /// The HTTPS client for a resolver. The first time, the hostname is
    /// resolved and checked to be local ([`local_addresses`]), and the client
    /// is pinned to those addresses; later calls reuse it (and its
    /// connections) without resolving again.
    pub(crate) async fn client(
        &self,
        bind: IpAddr,
        r: &ServiceResolver,
    ) -> Result<reqwest::Client, String> {
        let mut h = sha2::Sha256::new();
        h.update(r.hostname.as_bytes());
        for c in &r.server_certificates {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c);
        }
        let id: [u8; 32] = h.finalize().into();
        if let Some(c) = crate::faults::lock(&self.clients).get(&id) {
            return Ok(c.clone());
        }
        let (host, addrs) = local_addresses(bind, &r.hostname).await?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedLeaf {
            pinned: r.server_certificates.clone(),
            provider: provider.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match self.identity.get() {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("TLS client identity: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            // As Cloud KMS: a key manager's redirect is never followed.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| format!("HTTPS client: {e}"))?;
        crate::faults::lock(&self.clients).insert(id, client.clone());
        Ok(client)
    }
}

/// Trusts a server only when its leaf certificate is one of the resolver's
/// `serverCertificates` (Cloud EKM pins leaf certificates).
#[derive(Debug)]
pub(crate) struct PinnedLeaf {
    pinned: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|p| p[..] == end_entity[..]) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server certificate is not one of the resolver's serverCertificates".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

/// Parses `host[:port]`; the port defaults to 443.
pub(crate) fn host_port(hostname: &str) -> Option<(String, u16)> {
    if hostname.is_empty() || hostname.len() > 253 || hostname.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    if let Some(rest) = hostname.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 443,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match hostname.split_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((hostname.to_string(), 443)),
    }
}

/// Resolves `hostname` to addresses the emulator may dial (loopback, or
/// the address it is bound to): (host, addresses).
pub(crate) async fn local_addresses(
    bind: IpAddr,
    hostname: &str,
) -> Result<(String, Vec<std::net::SocketAddr>), String> {
    let (host, port) =
        host_port(hostname).ok_or_else(|| format!("{hostname:?} is not HOST[:PORT]"))?;
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if addrs.iter().all(|a| a.ip().is_loopback() || a.ip() == bind) {
        Ok((host, addrs))
    } else {
        Err(format!(
            "{host} resolves to a non-loopback address; the emulator only dials loopback"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("a.example"), Some(("a.example".into(), 443)));
        assert_eq!(
            host_port("127.0.0.1:8443"),
            Some(("127.0.0.1".into(), 8443))
        );
        assert_eq!(host_port("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(host_port("[::1]"), Some(("::1".into(), 443)));
        for bad in ["", "a:b", "a:1:2", "https://x", "x/y", "[::1]x", "a:99999"] {
            assert_eq!(host_port(bad), None, "{bad}");
        }
    }
}
