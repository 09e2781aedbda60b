//! The TLS identity of the HTTPS services: a CA and a server certificate
//! generated at start.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A generated CA and the acceptors serving its server certificate.
pub struct ServerTls {
    /// PEM of the CA certificate (what clients trust).
    pub ca_pem: String,
    /// PEM of the server certificate itself (for clients that pin it).
    pub server_pem: String,
    /// Acceptor for incoming connections.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Acceptor that requires a client certificate issued by the client CA
    /// (the external key manager).
    pub mtls_acceptor: tokio_rustls::TlsAcceptor,
    /// PEM of a client certificate and its private key that the mTLS
    /// acceptor accepts.
    pub client_identity_pem: String,
    /// The same client certificate (with its CA) and key, for the
    /// emulated Cloud KMS's own calls to the key manager.
    pub client_identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

fn e(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |err| format!("cannot generate {what}: {err}")
}

impl ServerTls {
    /// Generates a CA and a server certificate for localhost, 127.0.0.1,
    /// ::1 and the bind address.
    pub fn generate(bind: IpAddr) -> Result<ServerTls, String> {
        let ca_key = KeyPair::generate().map_err(e("CA key"))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e("CA"))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "kms-emulator CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(e("CA certificate"))?;

        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if !bind.is_unspecified() && !bind.is_loopback() {
            names.push(bind.to_string());
        }
        let key = KeyPair::generate().map_err(e("server key"))?;
        let mut params = CertificateParams::new(names).map_err(e("server certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kms-emulator");
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(e("server certificate"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![
            cert.der().clone(),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let server_key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS setup: {err}"))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), server_key())
            .map_err(|err| format!("TLS setup: {err}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        // Client identities: their own CA, so a server certificate is never
        // accepted as a client one.
        let client_ca_key = KeyPair::generate().map_err(e("client CA key"))?;
        let mut client_ca = CertificateParams::new(Vec::<String>::new()).map_err(e("client CA"))?;
        client_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        client_ca
            .distinguished_name
            .push(DnType::CommonName, "kms-emulator EKM client CA");
        client_ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let client_ca_cert = client_ca
            .self_signed(&client_ca_key)
            .map_err(e("client CA certificate"))?;
        let client_key = KeyPair::generate().map_err(e("client key"))?;
        let mut client =
            CertificateParams::new(Vec::<String>::new()).map_err(e("client certificate"))?;
        client
            .distinguished_name
            .push(DnType::CommonName, "sshca EKM client");
        client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &client_ca_cert, &client_ca_key)
            .map_err(e("client certificate"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(client_ca_cert.der().to_vec()))
            .map_err(|err| format!("TLS setup: {err}"))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|err| format!("TLS setup: {err}"))?;
        let mut mtls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS setup: {err}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, server_key())
            .map_err(|err| format!("TLS setup: {err}"))?;
        mtls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            ca_pem: ca_cert.pem(),
            server_pem: cert.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mtls_acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(mtls)),
            client_identity_pem: format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
            client_identity: (
                vec![client_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
            ),
        })
    }
}
