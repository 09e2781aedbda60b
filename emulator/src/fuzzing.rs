//! Fuzz entry points for the request parsing of each emulated service,
//! shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay test
//! that runs on stable in every `cargo test`.
//!
//! An input is a raw HTTP/1.1 request (request line, headers, blank line,
//! body). It is handled by a fresh emulator state holding a few keys with
//! fixed names, so an input behaves the same every time it is replayed.
//! Each function returns the response status (`None` when the input is not
//! a request it handles) and panics only when a property is broken: the handler must
//! answer every request (fault injection is off) with a JSON body in the
//! service's own error shape.

#![allow(clippy::panic)]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;

use crate::seed::Seed;
use crate::service::Emulated;
use crate::{Config, Reply, Request, State};

/// Keys every fuzz input sees, as a seed file would describe them.
const SEED: &str = r#"
[[aws]]
id = "11111111-2222-3333-4444-555555555555"
spec = "ECC_NIST_P256"
aliases = ["alias/fuzz"]
[[aws]]
id = "ed25519-key"
spec = "ECC_NIST_EDWARDS25519"
[[aws]]
id = "symmetric-key"
spec = "SYMMETRIC_DEFAULT"
[[gcp]]
key = "projects/p/locations/global/keyRings/r/cryptoKeys/ec"
algorithm = "EC_SIGN_P256_SHA256"
[[gcp]]
key = "projects/p/locations/global/keyRings/r/cryptoKeys/ed"
algorithm = "EC_SIGN_ED25519"
[[gcp]]
key = "projects/p/locations/global/keyRings/r/cryptoKeys/sym"
algorithm = "GOOGLE_SYMMETRIC_ENCRYPTION"
[[azure]]
name = "ec"
kty = "EC"
crv = "P-256"
[[ekm]]
name = "v0/s/keys/ec"
algorithm = "EC_SIGN_P256_SHA256"
[[ekm]]
name = "v0/s/keys/ed"
algorithm = "EC_SIGN_ED25519"
[[ekm]]
name = "v0/s/keys/off"
algorithm = "EC_SIGN_P256_SHA256"
enabled = false
"#;

/// The seed with its key material generated once, so each input only
/// parses it.
fn seed() -> &'static Seed {
    static SEEDED: OnceLock<Seed> = OnceLock::new();
    SEEDED.get_or_init(|| {
        let seed: Seed = toml::from_str(SEED).unwrap_or_else(|e| panic!("fuzz seed: {e}"));
        let state = fresh(None);
        seed.apply(&state)
            .unwrap_or_else(|e| panic!("fuzz seed: {e}"));
        Seed::export(&state).unwrap_or_else(|e| panic!("fuzz seed export: {e}"))
    })
}

fn fresh(seed: Option<&Seed>) -> State {
    let state = State::new(Config::default(), crate::seed::IO)
        .unwrap_or_else(|e| panic!("fuzz state: {e}"));
    if let Some(s) = seed {
        s.clone()
            .apply(&state)
            .unwrap_or_else(|e| panic!("fuzz seed: {e}"));
    }
    state
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("fuzz runtime: {e}"))
    })
}

/// Parses a raw HTTP/1.1 request; `None` when it is not one.
fn parse(data: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(data).ok()? else {
        return None;
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    let body = data.get(len..).unwrap_or_default();
    Some(Request {
        method,
        path: path.to_string(),
        query: crate::util::parse_query(query),
        headers: map,
        body: Bytes::copy_from_slice(body),
        too_large: body.len() > crate::MAX_BODY,
    })
}

/// Checks that a reply is an answer with a JSON body; returns the status
/// and the body.
fn answer(service: &str, reply: Reply) -> (u16, serde_json::Value) {
    let Reply::Send(resp) = reply else {
        panic!("{service}: a request was dropped with fault injection off");
    };
    let status = resp.status().as_u16();
    let body = runtime()
        .block_on(resp.into_body().collect())
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{service}: status {status} with a body that is not JSON: {e}"));
    (status, json)
}

/// Runs one raw request through service `S`'s fuzz entry on a fresh
/// seeded state; fails when the answer is not JSON or an error answer does
/// not have the service's error shape.
pub(crate) fn service<S: Emulated>(data: &[u8]) -> Option<u16> {
    let req = parse(data)?;
    let state = Arc::new(fresh(Some(seed())));
    let (status, json) = answer(S::NAME, runtime().block_on(S::fuzz(&state, req)));
    if status >= 400 {
        if let Err(e) = S::check_error(status, &json) {
            panic!("{}: {e}", S::NAME);
        }
    }
    Some(status)
}

/// AWS KMS: the SigV4 verifier sees the request as sent; the operation
/// then runs as if it had been signed, so the fuzzer reaches the JSON
/// parsing of every operation. Errors carry `__type` and `message`.
pub fn aws(data: &[u8]) -> Option<u16> {
    service::<crate::aws::Aws>(data)
}

/// Google Cloud KMS: the whole handler. Errors carry
/// `error.code` (the HTTP status), `error.status` and `error.message`.
pub fn gcp(data: &[u8]) -> Option<u16> {
    service::<crate::gcp::Gcp>(data)
}

/// Azure Key Vault: the whole handler (any bearer token is accepted).
/// Errors carry `error.code` and `error.message`.
pub fn azure(data: &[u8]) -> Option<u16> {
    service::<crate::azure::Azure>(data)
}

/// The external key manager (replica 0, no bearer token required): the
/// whole handler. Errors carry `error.code` (the HTTP status),
/// `error.status` and `error.message`.
pub fn ekm(data: &[u8]) -> Option<u16> {
    service::<crate::ekm::Ekm>(data)
}
