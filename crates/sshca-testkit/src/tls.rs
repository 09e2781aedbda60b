//! TLS material for the signing-service tests: a server certificate for
//! 127.0.0.1 and its CA, client identities from a client CA (and one from
//! a CA the server does not trust), and an HTTPS client trusting the test
//! CA, and the requests the signing-service tests make with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// A CA certificate and its key.
pub fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    (p.self_signed(&key).unwrap(), key)
}

/// A client identity (certificate and key, PEM) in `dir/file`.
pub fn client_identity(
    dir: &Path,
    file: &str,
    cn: &str,
    san: Option<SanType>,
    issuer: &(rcgen::Certificate, KeyPair),
) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = san.into_iter().collect();
    let c = p.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    std::fs::write(
        dir.join(file),
        format!("{}{}", c.pem(), key.serialize_pem()),
    )
    .unwrap();
}

/// A TLS server configuration for 127.0.0.1 with a certificate from a
/// fresh CA named `name`, whose certificate goes to `dir/FILE` (`file`);
/// the configuration and that path.
pub fn loopback_server(dir: &Path, name: &str, file: &str) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let ca = ca(name);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca.0, &ca.1)
        .unwrap();
    let ca_path = dir.join(file);
    std::fs::write(&ca_path, ca.0.pem()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (Arc::new(tls), ca_path)
}

/// In `dir`: `tls.pem`/`tls.key` (the server, for 127.0.0.1 and
/// localhost) and `tls-ca.pem` (its CA); `client-ca.pem` with
/// `deploy.pem` (DNS SAN `deploy.example.com`) and `cn-only.pem` (CN
/// `cn-only`); `rogue.pem` from a CA the server does not trust. Returns the
/// path of `tls-ca.pem`.
pub fn pki(dir: &Path) -> PathBuf {
    let tls_ca = ca("test TLS CA");
    let key = KeyPair::generate().unwrap();
    let p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = p.signed_by(&key, &tls_ca.0, &tls_ca.1).unwrap();
    std::fs::write(dir.join("tls.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls-ca.pem"), tls_ca.0.pem()).unwrap();
    let clients = ca("test client CA");
    std::fs::write(dir.join("client-ca.pem"), clients.0.pem()).unwrap();
    client_identity(
        dir,
        "deploy.pem",
        "ignored",
        Some(SanType::DnsName("deploy.example.com".try_into().unwrap())),
        &clients,
    );
    client_identity(dir, "cn-only.pem", "cn-only", None, &clients);
    let rogue = ca("rogue CA");
    client_identity(
        dir,
        "rogue.pem",
        "ci",
        Some(SanType::DnsName("deploy.example.com".try_into().unwrap())),
        &rogue,
    );
    dir.join("tls-ca.pem")
}

/// An HTTPS client trusting `tls_ca` (PEM), optionally with a client
/// identity (a PEM file with the certificate and its key).
pub fn client(tls_ca: &Path, identity: Option<&Path>) -> reqwest::Client {
    client_builder(tls_ca, identity).build().unwrap()
}

/// The builder of [`client`], for tests that change more.
pub fn client_builder(tls_ca: &Path, identity: Option<&Path>) -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(tls_ca).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => b.with_no_client_auth(),
        Some(path) => {
            let pem = std::fs::read(path).unwrap();
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pemfile::private_key(&mut pem.as_slice())
                .unwrap()
                .unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_max_idle_per_host(64)
}

/// `POST {base}/v1/sign/{policy}`: (status, body, Retry-After).
pub async fn sign(
    c: &reqwest::Client,
    base: &str,
    policy: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value, Option<String>) {
    let mut r = c.post(format!("{base}/v1/sign/{policy}")).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        resp.json().await.unwrap_or(serde_json::Value::Null),
        retry,
    )
}

/// `GET {base}{path}`: (status, body text).
pub async fn get(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut r = c.get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The `code` of an error answer (`<none>` when there is none).
pub fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// The `message` of an error answer (`<none>` when there is none).
pub fn message(v: &serde_json::Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}
