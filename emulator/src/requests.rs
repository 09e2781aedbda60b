//! The request log: one entry per request a service answered (or dropped),
//! kept in memory (the last [`KEPT`], for the admin API's `GET /requests`)
//! and, with `--request-log FILE`, appended to FILE as JSON lines, so that a
//! test can assert what was called. Secrets never reach it: a bearer token
//! is shown as a fingerprint.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use sha2::Digest;

use crate::faults::{lock, Service};
use crate::Request;

/// Entries kept in memory.
pub const KEPT: usize = 10_000;

tokio::task_local! {
    /// The operation the service named for the request being handled.
    static OPERATION: std::cell::Cell<Option<&'static str>>;
}

/// Notes the operation of the request being handled (what its service's
/// handler named when it counted the request).
pub(crate) fn note_operation(op: &'static str) {
    let _ = OPERATION.try_with(|o| o.set(Some(op)));
}

/// One request as the log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its place in the log (1, 2, ...).
    pub seq: u64,
    /// When it arrived (RFC 3339, UTC).
    pub time: String,
    /// `aws`, `gcp`, `azure`, `ekm` or `metadata`.
    pub service: &'static str,
    /// The operation (`Sign`, `asymmetricSign`, `sign`, ...); `-` when the
    /// request was refused before its operation was known.
    pub operation: &'static str,
    /// The key it named (AWS `KeyId`; the resource path elsewhere).
    pub key: Option<String>,
    /// Who called: the AWS access key, or `bearer:` and the first 12 hex
    /// digits of the token's SHA-256.
    pub caller: Option<String>,
    /// The HTTP status answered; 0 when the connection was dropped.
    pub status: u16,
    /// The error code answered (AWS `__type`, Cloud KMS `error.status`,
    /// Key Vault `error.code`), if any.
    pub error_code: Option<String>,
    /// Time to answer, milliseconds.
    pub latency_ms: f64,
}

/// The log of every service's requests.
#[derive(Debug)]
pub struct RequestLog(Mutex<Kept>);

/// Under one lock, so that places, the entries kept and the file's lines
/// always agree.
#[derive(Debug)]
struct Kept {
    last: u64,
    entries: VecDeque<Entry>,
    file: Option<std::fs::File>,
}

impl RequestLog {
    /// A log kept in memory and, when `file` is given, appended to it
    /// (created 0600 when absent).
    pub fn open(file: Option<&Path>) -> Result<Self, String> {
        let file = match file {
            Some(p) => {
                let mut o = std::fs::OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                Some(
                    o.open(p)
                        .map_err(|e| format!("cannot open the request log {}: {e}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Self(Mutex::new(Kept {
            last: 0,
            entries: VecDeque::new(),
            file,
        })))
    }

    /// The entries after place `since` (at most [`KEPT`], oldest first)
    /// and the newest place, read together: polling again from that place
    /// misses nothing.
    pub fn since(&self, since: u64) -> (Vec<Entry>, u64) {
        let kept = lock(&self.0);
        let entries = kept
            .entries
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect();
        (entries, kept.last)
    }

    fn add(&self, mut entry: Entry) {
        let mut kept = lock(&self.0);
        kept.last += 1;
        entry.seq = kept.last;
        if let Some(f) = kept.file.as_mut() {
            if let Ok(line) = serde_json::to_string(&entry) {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!("cannot write the request log: {e}");
                }
            }
        }
        if kept.entries.len() == KEPT {
            kept.entries.pop_front();
        }
        kept.entries.push_back(entry);
    }
}

/// Hands `req` to `handle` with its operation noted, and logs it with what
/// was answered.
pub(crate) async fn logged<F, Fut>(
    log: &RequestLog,
    service: Service,
    req: Request,
    handle: F,
) -> crate::Reply
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = crate::Reply>,
{
    let (started, time) = (
        Instant::now(),
        crate::util::rfc3339(crate::state::real_now()),
    );
    let (key, caller) = (key_of(service, &req), caller_of(&req));
    let (reply, op) = OPERATION
        .scope(std::cell::Cell::new(None), async {
            let reply = handle(req).await;
            (reply, OPERATION.with(std::cell::Cell::get))
        })
        .await;
    let (status, error_code) = match &reply {
        crate::Reply::Send(r) => {
            let status = r.status().as_u16();
            let code = if status >= 400 {
                error_code(r.body())
            } else {
                None
            };
            (status, code)
        }
        crate::Reply::Drop => (0, Some("dropped".to_owned())),
    };
    log.add(Entry {
        seq: 0,
        time,
        service: service.name(),
        operation: op.unwrap_or("-"),
        key,
        caller,
        status,
        error_code,
        latency_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    });
    reply
}

/// The error code of a JSON error answer in any service's shape.
fn error_code(body: &http_body_util::Full<bytes::Bytes>) -> Option<String> {
    let bytes = whole(body.clone())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let pick = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    pick(&v["__type"])
        .or_else(|| pick(&v["error"]["status"]))
        .or_else(|| pick(&v["error"]["code"]))
        .or_else(|| pick(&v["error"]))
        .map(|c| c.rsplit('#').next().unwrap_or(&c).to_owned())
}

/// The bytes of a `Full` body: one frame already in memory, so one poll
/// returns it.
fn whole(body: http_body_util::Full<bytes::Bytes>) -> Option<bytes::Bytes> {
    use hyper::body::Body;
    let mut body = std::pin::pin!(body);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match body.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    }
}

/// The key a request names: AWS's `KeyId` (or `SourceKeyId`), else the
/// resource of the path (Cloud KMS without `/v1/`, the `:verb` and
/// `/publicKey`; Key Vault's `keys/NAME[/VERSION]`; the key manager's
/// path).
fn key_of(service: Service, req: &Request) -> Option<String> {
    match service.name() {
        "aws" => {
            let v: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
            v["KeyId"]
                .as_str()
                .or_else(|| v["SourceKeyId"].as_str())
                .map(str::to_owned)
        }
        "metadata" => None,
        _ => {
            let path = req.path.trim_start_matches("/v1/").trim_start_matches('/');
            let path = path.split(':').next().unwrap_or(path);
            let path = path.strip_suffix("/publicKey").unwrap_or(path);
            let path = if service.name() == "azure" {
                // keys/NAME[/VERSION] or deletedkeys/NAME, without the
                // operation after it.
                let parts: Vec<&str> = path.split('/').collect();
                match parts.as_slice() {
                    [kind @ ("keys" | "deletedkeys"), name, rest @ ..] if !name.is_empty() => {
                        match rest.first() {
                            Some(v)
                                if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) =>
                            {
                                format!("{kind}/{name}/{v}")
                            }
                            _ => format!("{kind}/{name}"),
                        }
                    }
                    _ => path.to_owned(),
                }
            } else {
                path.to_owned()
            };
            (!path.is_empty()).then_some(path)
        }
    }
}

/// Who called: the AWS access key of a SigV4 `Authorization`, or a
/// fingerprint of a bearer token.
fn caller_of(req: &Request) -> Option<String> {
    let auth = req.header("authorization")?;
    if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") {
        let cred = rest
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("Credential="))?;
        return cred.split('/').next().map(str::to_owned);
    }
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?;
    Some(token_caller(token.trim()))
}

/// How a bearer token is named in logs and errors: `bearer:` and 12 hex
/// digits of its SHA-256, never the token.
pub(crate) fn token_caller(token: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    format!("bearer:{}", &digest[..12])
}
