//! An HTTPS receiver on 127.0.0.1 (its own CA): each POST's
//! `X-Sshca-Signature` header and body go to a handler, whose status and
//! body (after its delay) are the answer. Audit sinks and webhooks are
//! tested against it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a handler answers: status, body.
pub type Answer = Pin<Box<dyn Future<Output = (u16, Vec<u8>)> + Send>>;

/// Handles (signature header, body).
pub type Handler = Arc<dyn Fn(String, bytes::Bytes) -> Answer + Send + Sync>;

/// Starts a receiver: its URL (`https://127.0.0.1:PORT/ingest`) and the CA
/// file its certificate chains to.
pub async fn start(dir: &Path, handler: Handler) -> (String, PathBuf) {
    let (tls, ca_path) = sshca_testkit::tls::loopback_server(dir, "receiver CA", "receiver-ca.pem");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let sig = req
                                .headers()
                                .get("x-sshca-signature")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let (status, out) = handler(sig, body).await;
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(out)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (url, ca_path)
}

/// Whether `header` is `t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX." + body))`
/// with a time within 5 minutes of now.
pub fn check_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else {
        return false;
    };
    let Ok(t) = t.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want: Vec<u8> = (0..v1.len() / 2)
        .filter_map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    mac.verify_slice(&want).is_ok()
}
