//! The HTTPS client of a connection: one client per resolver, failover.

use std::sync::atomic::{AtomicUsize, Ordering};

use sshca_signer::{Error, ErrorKind, Result};

use crate::*;

/// A client for one EKM connection: one HTTPS client per resolver, with
/// failover.
#[derive(Debug)]
pub struct EkmClient {
    conn: Connection,
    /// One client per resolver, or why the resolver cannot be used.
    clients: Vec<std::result::Result<reqwest::Client, String>>,
    /// Index of the resolver to try first (the last one that answered).
    preferred: AtomicUsize,
}

/// An answer that is not an error, or a 4xx that is the answer.
enum Outcome {
    Ok(serde_json::Value),
    Fail(Error),
}

impl EkmClient {
    /// Builds the HTTPS clients (no network access yet).
    pub fn new(conn: Connection) -> Result<Self> {
        let mut clients = Vec::new();
        for r in &conn.resolvers {
            let tls = conn.tls_config(r, None)?;
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(conn.timeout)
                .connect_timeout(conn.timeout)
                // A redirect is never followed: the key manager is pinned,
                // and a 3xx answer is an error naming where it pointed.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            match r.endpoints() {
                Ok(Some(addrs)) => {
                    let (host, _) = host_and_port(&r.hostname)?;
                    b = b.resolve_to_addrs(&host, &addrs);
                }
                Ok(None) => {}
                Err(e) => {
                    clients.push(Err(e));
                    continue;
                }
            }
            let c = b
                .build()
                .map_err(|e| bad_input(format!("HTTPS client for {}: {e}", r.hostname)))?;
            clients.push(Ok(c));
        }
        Ok(Self {
            conn,
            clients,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn once(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> std::result::Result<Outcome, String> {
        let r = &self.conn.resolvers[i];
        let url = format!("https://{}{}", r.hostname, path);
        let client = self.clients[i].as_ref().map_err(Clone::clone)?;
        let mut req = client.request(method, &url);
        if let Some(t) = &self.conn.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(sshca_core::text::escape)
                .unwrap_or_else(|| "nowhere".into());
            return Ok(Outcome::Fail(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "{}: answered {status} (a redirect to {to}); redirects are never followed",
                    r.hostname
                ),
            )));
        }
        let text = resp.text().await.map_err(|e| describe(&e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(Outcome::Ok(json));
        }
        let message = json["error"]["message"]
            .as_str()
            .unwrap_or(text.trim())
            .to_string();
        let name = json["error"]["status"].as_str().unwrap_or("").to_string();
        if status.is_server_error() {
            return Err(format!("{status} {name}: {message}"));
        }
        let kind = match status.as_u16() {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            412 => ErrorKind::InvalidKey,
            429 => ErrorKind::Throttled,
            400 | 409 | 413 => ErrorKind::InvalidInput,
            _ => ErrorKind::BadResponse,
        };
        Ok(Outcome::Fail(
            Error::new(kind, format!("{}: {name}: {message}", r.hostname))
                .set_temporary(status.as_u16() == 429),
        ))
    }

    /// Sends a request to the resolvers in turn until one answers; a
    /// connection error, timeout, TLS failure or 5xx moves to the next.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let n = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            match self.once(i, method.clone(), path, body).await {
                Ok(outcome) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return match outcome {
                        Outcome::Ok(v) => Ok(v),
                        Outcome::Fail(e) => Err(e),
                    };
                }
                Err(e) => failures.push(format!("{}: {e}", self.conn.resolvers[i].hostname)),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "no replica of the key manager answered ({})",
                failures.join("; ")
            ),
        )
        .set_temporary(true))
    }
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    }
    msg
}
