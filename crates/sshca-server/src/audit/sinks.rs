//! The sink types: a file (JSON lines), stdout, syslog (RFC 5424 over
//! UDP, TCP with octet counting, or a unix datagram socket) and an HTTPS
//! receiver (batches POSTed as a JSON array, signed with
//! `X-Sshca-Signature`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sshca::signer::{Error, ErrorKind, Result};
use tokio::io::AsyncWriteExt;

use crate::config::AuditSinkConfig;

/// The header an HTTP sink's batches (and webhooks) are signed with.
pub(crate) const SIGNATURE_HEADER: &str = "x-sshca-signature";

/// `t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX." + body))`.
fn signature(secret: &[u8], unix: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The secret of an HTTP sink or a webhook: never shown.
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    /// The secret in `path` (surrounding white space trimmed), at least 16
    /// bytes; `what` names its owner in errors.
    pub fn read(path: &std::path::Path, what: &str) -> Result<Self> {
        let secret = std::fs::read_to_string(path)
            .map_err(|e| Error::io(&format!("cannot read the secret of {what}"), path, &e))?
            .trim()
            .as_bytes()
            .to_vec();
        if secret.len() < 16 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{what}: {}: the secret is shorter than 16 bytes",
                    path.display()
                ),
            ));
        }
        Ok(Self(secret))
    }

    /// `X-Sshca-Signature` of `body` at `unix`.
    pub fn sign(&self, unix: u64, body: &[u8]) -> String {
        signature(&self.0, unix, body)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a syslog sink sends.
#[derive(Debug)]
pub(crate) enum SyslogTo {
    Udp(String),
    Tcp(String, Option<tokio::net::TcpStream>),
    Unix(PathBuf),
}

/// One sink.
#[derive(Debug)]
pub(crate) enum Sink {
    File {
        path: PathBuf,
        file: Option<std::fs::File>,
        opened_at: u64,
        reopen: Arc<AtomicU64>,
    },
    Stdout,
    Syslog {
        to: SyslogTo,
        host: String,
    },
    Http {
        url: String,
        client: reqwest::Client,
        secret: Secret,
    },
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Sink {
    /// The sink a table describes (its files read, its client built).
    pub fn open(name: &str, cfg: &AuditSinkConfig, reopen: Arc<AtomicU64>) -> Result<Self> {
        let invalid =
            |what: String| Error::new(ErrorKind::InvalidInput, format!("audit `{name}`: {what}"));
        Ok(match cfg.kind.as_str() {
            "file" => Sink::File {
                path: cfg
                    .path
                    .clone()
                    .ok_or_else(|| invalid("no `path`".into()))?,
                file: None,
                opened_at: reopen.load(Ordering::Relaxed),
                reopen,
            },
            "stdout" => Sink::Stdout,
            "syslog" => {
                let addr = cfg.address.clone().unwrap_or_default();
                let to = if let Some(hp) = addr.strip_prefix("udp://") {
                    SyslogTo::Udp(hp.to_owned())
                } else if let Some(hp) = addr.strip_prefix("tcp://") {
                    SyslogTo::Tcp(hp.to_owned(), None)
                } else if let Some(p) = addr.strip_prefix("unix:") {
                    SyslogTo::Unix(PathBuf::from(p))
                } else {
                    return Err(invalid(format!("field `address`: {addr:?}")));
                };
                Sink::Syslog {
                    to,
                    host: sshca_store::chain::default_replica_id(),
                }
            }
            "http" => {
                let secret_file = cfg
                    .secret_file
                    .clone()
                    .ok_or_else(|| invalid("no `secret_file`".into()))?;
                let secret = Secret::read(&secret_file, &format!("audit `{name}`"))?;
                Sink::Http {
                    url: cfg.url.clone().unwrap_or_default(),
                    client: crate::tls::https_client(
                        cfg.ca_cert.as_deref(),
                        &format!("audit `{name}` CA (ca_cert)"),
                    )?,
                    secret,
                }
            }
            other => return Err(invalid(format!("unknown type {other:?}"))),
        })
    }

    /// Delivers events (their JSON, in order); `Err` says why not.
    pub async fn deliver(&mut self, lines: &[String]) -> std::result::Result<(), String> {
        match self {
            Sink::File {
                path,
                file,
                opened_at,
                reopen,
            } => {
                let generation = reopen.load(Ordering::Relaxed);
                if generation != *opened_at {
                    *file = None;
                    *opened_at = generation;
                }
                if file.is_none() {
                    let mut o = std::fs::OpenOptions::new();
                    o.create(true).append(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                    *file = Some(
                        o.open(&*path)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    );
                }
                let mut text = lines.join("\n");
                text.push('\n');
                let mut f = file.take().ok_or("the file is not open")?;
                // Written and made durable off the request threads; a file
                // that failed is opened again next time.
                let (f, written) = tokio::task::spawn_blocking(move || {
                    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_data());
                    (f, written)
                })
                .await
                .map_err(|e| format!("{}: the writer stopped: {e}", path.display()))?;
                match written {
                    Ok(()) => {
                        *file = Some(f);
                        Ok(())
                    }
                    Err(e) => Err(format!("{}: {e}", path.display())),
                }
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for l in lines {
                    writeln!(out, "{l}").map_err(err)?;
                }
                out.flush().map_err(err)
            }
            Sink::Syslog { to, host } => {
                let messages: Vec<String> = lines.iter().map(|l| syslog_line(host, l)).collect();
                send_syslog(to, &messages).await
            }
            Sink::Http {
                url,
                client,
                secret,
            } => {
                let body = format!("[{}]", lines.join(","));
                let now = sshca_authority::unix_now();
                let r = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, secret.sign(now, body.as_bytes()))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {}", crate::tls::error_chain(&e)))?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url}: answered {}", r.status()))
                }
            }
        }
    }

    /// Writes the chain's head: `{"type":"chain_head",...}`.
    pub async fn deliver_head(
        &mut self,
        replica: &str,
        seq: u64,
        hash: &str,
    ) -> std::result::Result<(), String> {
        let line = sshca_store::ChainHead {
            replica_id: replica.to_owned(),
            seq,
            hash: hash.to_owned(),
        }
        .line(sshca_authority::unix_now());
        self.deliver(&[line]).await
    }
}

/// An RFC 5424 message: facility authpriv, severity from the outcome,
/// MSGID the event's type, the event's JSON as the message.
fn syslog_line(host: &str, json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let severity = match v["outcome"].as_str() {
        Some("failed") => 3,
        Some("refused") => 4,
        _ => 6,
    };
    let pri = 10 * 8 + severity;
    let msgid: String = v["type"]
        .as_str()
        .unwrap_or("-")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let at = v["at"].as_u64().unwrap_or_else(sshca_authority::unix_now);
    let ts = i64::try_from(at)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!(
        "<{pri}>1 {ts} {} sshca {} {} - {json}",
        if host.is_empty() { "-" } else { &host },
        std::process::id(),
        if msgid.is_empty() { "-" } else { &msgid },
    )
}

async fn send_syslog(to: &mut SyslogTo, messages: &[String]) -> std::result::Result<(), String> {
    match to {
        SyslogTo::Udp(addr) => {
            let target = tokio::net::lookup_host(addr.as_str())
                .await
                .map_err(|e| format!("{addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr}: no address"))?;
            let bind = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = tokio::net::UdpSocket::bind(bind).await.map_err(err)?;
            for m in messages {
                sock.send_to(m.as_bytes(), target)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
            }
            Ok(())
        }
        SyslogTo::Tcp(addr, conn) => {
            if conn.is_none() {
                let c = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::TcpStream::connect(addr.as_str()),
                )
                .await
                .map_err(|_| format!("{addr}: connect timed out"))?
                .map_err(|e| format!("{addr}: {e}"))?;
                *conn = Some(c);
            }
            let mut framed = Vec::new();
            for m in messages {
                framed.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            let c = conn.as_mut().ok_or("not connected")?;
            if let Err(e) = c.write_all(&framed).await.and(c.flush().await) {
                *conn = None;
                return Err(format!("{addr}: {e}"));
            }
            Ok(())
        }
        SyslogTo::Unix(path) => {
            let sock = tokio::net::UnixDatagram::unbound().map_err(err)?;
            for m in messages {
                sock.send_to(m.as_bytes(), &*path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_an_hmac_of_time_and_body() {
        // HMAC-SHA256("key", "1700000000.{}") computed independently.
        let s = signature(b"key", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature(b"key", 1_700_000_001, b"{}"));
        assert_ne!(s, signature(b"other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let l = syslog_line(
            "ca-1",
            r#"{"v":1,"type":"refuse","at":1700000000,"outcome":"refused"}"#,
        );
        assert!(
            l.starts_with("<84>1 2023-11-14T22:13:20Z ca-1 sshca "),
            "{l}"
        );
        assert!(l.contains(" refuse - {\"v\":1"), "{l}");
    }
}
