//! `verify_connectivity`: every resolver checked on its own.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

use crate::*;

/// The outcome of one step of [`verify_connectivity`].
pub type Step = std::result::Result<String, String>;

/// What [`verify_connectivity`] found for one resolver.
#[derive(Debug, Clone)]
pub struct ResolverReport {
    /// The resolver.
    pub hostname: String,
    /// TCP connection and TLS handshake (with the client identity).
    pub tls_handshake: Step,
    /// The server presented a pinned certificate (or one issued by a pinned CA).
    pub certificate_match: Step,
    /// `GET /v1/health`.
    pub health: Step,
    /// Fetching the public key of the key asked about, if any.
    pub public_key: Option<Step>,
}

impl ResolverReport {
    /// Every step succeeded.
    pub fn ok(&self) -> bool {
        self.tls_handshake.is_ok()
            && self.certificate_match.is_ok()
            && self.health.is_ok()
            && self.public_key.as_ref().is_none_or(|s| s.is_ok())
    }
}

/// Checks every resolver of `conn` on its own: TLS handshake, certificate
/// match, health and (when `key_path` is given, `SPACE/keys/ID`) the
/// public key.
pub async fn verify_connectivity(conn: &Connection, key_path: Option<&str>) -> Vec<ResolverReport> {
    let mut out = Vec::new();
    for r in &conn.resolvers {
        let mut report = ResolverReport {
            hostname: r.hostname.clone(),
            tls_handshake: Err("not attempted".into()),
            certificate_match: Err("not attempted".into()),
            health: Err("not attempted".into()),
            public_key: key_path.map(|_| Err("not attempted".into())),
        };
        // A handshake that accepts any certificate, to tell a broken link
        // from a certificate that is not pinned.
        let seen = Arc::new(std::sync::Mutex::new(None));
        let hs = handshake(conn, r, seen.clone()).await;
        let presented = seen.lock().ok().and_then(|s| s.clone());
        match (&hs, presented) {
            (Ok(()), _) => {
                report.tls_handshake = Ok("TLS handshake completed".into());
                report.certificate_match = Ok("the server certificate is pinned".into());
            }
            (Err(e), Some(_)) if e.contains("certificate") && !e.contains("client") => {
                report.tls_handshake = Ok("TLS handshake reached certificate verification".into());
                report.certificate_match =
                    Err(format!("the server certificate is not trusted: {e}"));
            }
            (Err(e), _) => report.tls_handshake = Err(e.clone()),
        }
        if hs.is_ok() {
            let single = Connection {
                resolvers: vec![r.clone()],
                ..conn.clone()
            };
            match EkmClient::new(single) {
                Ok(c) => {
                    report.health = match c.call(reqwest::Method::GET, "/v1/health", None).await {
                        Ok(v) if v["status"] == "SERVING" => Ok(format!(
                            "SERVING ({})",
                            v["replica"].as_str().unwrap_or("?")
                        )),
                        Ok(v) => Err(format!("not serving: {v}")),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Some(path) = key_path {
                        report.public_key = Some(match fetch_key(&c, path).await {
                            Ok(k) => Ok(format!(
                                "{} {} ({})",
                                k.0.fingerprint(sshca_core::HashAlg::Sha256),
                                k.0.algorithm().as_str(),
                                k.1
                            )),
                            Err(e) => Err(e.to_string()),
                        });
                    }
                }
                Err(e) => report.health = Err(e.to_string()),
            }
        }
        out.push(report);
    }
    out
}

pub(crate) async fn handshake(
    conn: &Connection,
    r: &Resolver,
    seen: Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>,
) -> std::result::Result<(), String> {
    let (host, port) = host_and_port(&r.hostname).map_err(|e| e.to_string())?;
    let config = conn.tls_config(r, Some(seen)).map_err(|e| e.to_string())?;
    let name =
        ServerName::try_from(host.clone()).map_err(|e| format!("bad host name {host}: {e}"))?;
    let addrs = match r.endpoints()? {
        Some(a) => a,
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        // With TLS 1.3 the server checks the client certificate after the
        // client finished; a short read shows whether it was refused.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(
            format!("GET /v1/health HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("TLS session failed: {e}"))?;
        let mut buf = [0u8; 12];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("TLS session failed (client identity refused?): {e}"))?;
        Ok(())
    };
    tokio::time::timeout(conn.timeout, fut)
        .await
        .map_err(|_| format!("timed out after {:?}", conn.timeout))?
}
