//! The HTTP API. Every answer to a request with a client's mistake is a
//! 4xx naming what is wrong; 503 (with `Retry-After`) when a backend or the
//! store cannot do its part; each request logged once, each refusal audited.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sshca::core::policy::Request;
use sshca::core::validity::{parse_ttl, parse_validity};
use sshca::core::{random_serial, CertType};
use sshca::signer::{ErrorKind, SignerExt};
use sshca_store::{AuditEvent, CertQuery, IssuedCert, Recorded};

use crate::app::{App, Peer};
use crate::auth::Identity;
use crate::error::ApiError;

/// The service's routes (plus Vault's SSH engine paths under
/// `/v1/<vault_mount>/` when configured).
pub(crate) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    if let Some(mount) = app
        .config
        .server
        .as_ref()
        .and_then(|s| s.vault_mount.as_deref())
    {
        router = router
            .route(&format!("/v1/{mount}/sign/{{policy}}"), post(vault_sign))
            .route(&format!("/v1/{mount}/public_key"), get(vault_public_key))
            .route(&format!("/v1/{mount}/config/ca"), get(vault_config_ca));
    }
    router
        .route("/v1/sign/{policy}", post(sign))
        .route("/v1/ca/{name}", get(ca_key))
        .route("/v1/revoke", post(revoke))
        .route("/v1/krl", get(krl))
        .route("/v1/krl.sig", get(krl_sig))
        .route("/v1/policies", get(policies))
        .route("/v1/certs", get(certs))
        .route("/v1/certs/{serial}", get(cert))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint").into_response() })
        .with_state(app)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn request_id() -> String {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// One request's facts, for its log line, its metrics and its audit row.
struct Ctx {
    id: String,
    started: Instant,
    route: &'static str,
    identity: Option<Identity>,
    /// A configured policy's name (never what the client typed otherwise).
    policy: Option<String>,
    serial: Option<u64>,
}

impl Ctx {
    fn new(route: &'static str) -> Self {
        Self {
            id: request_id(),
            started: Instant::now(),
            route,
            identity: None,
            policy: None,
            serial: None,
        }
    }

    /// Logs, counts and (for refusals) audits the answer, and tags it with
    /// the request id.
    fn finish(self, app: &Arc<App>, result: Result<Response, ApiError>) -> Response {
        let (status, code, reason, mut response) = match result {
            Ok(r) => (r.status(), "ok", String::new(), r),
            Err(e) => (e.status, e.code, e.message.clone(), e.into_response()),
        };
        let policy = self.policy.as_deref().unwrap_or("-");
        if self.route == "sign" {
            app.metrics.request(policy, code);
        }
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (identity, source) = self
            .identity
            .as_ref()
            .map(|i| (i.name.as_str(), i.source.as_str()))
            .unwrap_or(("-", "-"));
        tracing::info!(
            target: "sshca::request",
            request_id = %self.id,
            route = self.route,
            identity,
            source,
            policy,
            status = status.as_u16(),
            outcome = code,
            serial = self.serial.map(|s| s.to_string()).unwrap_or_default(),
            duration_ms = format!("{ms:.2}"),
            reason = %reason,
        );
        if status.is_client_error() || status.is_server_error() {
            let event = AuditEvent {
                at: unix_now(),
                request_id: self.id.clone(),
                identity: self.identity.as_ref().map(|i| i.name.clone()),
                auth_source: self.identity.as_ref().map(|i| i.source.to_owned()),
                policy: self.policy.clone(),
                status: status.as_u16(),
                code: code.to_owned(),
                reason,
            };
            let store = app.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.audit(&event).await {
                    tracing::warn!(request_id = %event.request_id, error = %e.report(), "cannot write the audit row");
                }
            });
        }
        if let Ok(v) = self.id.parse() {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
}

/// Reads the body, refusing one over `max_body` with 413.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over {} bytes", app.settings.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.settings.max_body as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(
        app.settings.request_timeout,
        axum::body::to_bytes(body, app.settings.max_body),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                app.settings.request_timeout.as_secs()
            ),
        )
    })?;
    read.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// `POST /v1/sign/{policy}`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    public_key: String,
    principals: Option<Vec<String>>,
    key_id: Option<String>,
    validity: Option<String>,
    critical_options: Option<BTreeMap<String, String>>,
    extensions: Option<BTreeMap<String, String>>,
    cert_type: Option<String>,
}

fn parse_sign_body(bytes: &[u8], now: u64) -> Result<(sshca::core::KeyData, Request), ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let b: SignBody = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("the request body is not a sign request: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{path}`: {inner}"))
        }
    })?;
    let key = parse_subject(&b.public_key)?;
    let validity = b
        .validity
        .as_deref()
        .map(|v| parse_validity(v, now))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("field `validity`: {e}")))?;
    let cert_type = parse_cert_type(b.cert_type.as_deref())?;
    let opts = request_options;
    Ok((
        key,
        Request {
            requester: None,
            cert_type,
            principals: b.principals,
            critical_options: opts(b.critical_options.as_ref(), "critical_options")?,
            extensions: opts(b.extensions.as_ref(), "extensions")?,
            validity,
            key_id: b.key_id,
            serial: None,
            claims: Default::default(),
        },
    ))
}

/// The subject key of a sign request: a public key line whose type a
/// certificate can hold (else 400, before anything is signed).
fn parse_subject(text: &str) -> Result<sshca::core::KeyData, ApiError> {
    let key = sshca::parse_public_key(text, "field `public_key`")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    sshca::core::cert::cert_key_type(key.key_data())
        .map_err(|e| ApiError::bad_request(format!("field `public_key`: {e}")))?;
    Ok(key.key_data().clone())
}

fn parse_cert_type(text: Option<&str>) -> Result<Option<CertType>, ApiError> {
    match text {
        None => Ok(None),
        Some("user") => Ok(Some(CertType::User)),
        Some("host") => Ok(Some(CertType::Host)),
        Some(other) => Err(ApiError::bad_request(format!(
            "field `cert_type`: `{}` is not `user` or `host`",
            other.escape_debug()
        ))),
    }
}

/// Requested critical options or extensions (an empty value is a flag).
fn request_options(
    m: Option<&BTreeMap<String, String>>,
    field: &str,
) -> Result<Option<sshca::core::CertOptions>, ApiError> {
    m.map(|m| sshca::config::cert_options(Some(m), field))
        .transpose()
        .map_err(ApiError::bad_request)
}

/// Whether `identity` may use the policy: its `requesters` globs and its
/// `auth` sources.
fn may_use(
    entry: &sshca::config::PolicyEntry,
    name: &str,
    identity: &Identity,
) -> Result<(), ApiError> {
    if let Some(globs) = &entry.policy.requesters {
        if !globs.iter().any(|g| g.matches(&identity.name)) {
            return Err(ApiError::forbidden(format!(
                "identity `{}` may not use policy `{name}`",
                identity.name
            )));
        }
    }
    if let Some(sources) = &entry.auth {
        if !sources.contains(&identity.source) {
            return Err(ApiError::forbidden(format!(
                "policy `{name}` accepts credentials from {}; this request's is from {}",
                sources.join(", "),
                identity.source
            )));
        }
    }
    Ok(())
}

async fn sign(
    State(app): State<Arc<App>>,
    Path(policy): Path<String>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut ctx = Ctx::new("sign");
    let r = issue(
        &app,
        &mut ctx,
        &policy,
        &peer,
        &headers,
        body,
        false,
        |b, now, _| parse_sign_body(b, now).map(|(k, r)| (k, r, Vec::new())),
    )
    .await
    .map(|(issued, _)| {
        let row = &issued.row;
        Json(json!({
            "certificate": issued.line,
            "serial": row.serial.to_string(),
            "key_id": row.key_id,
            "principals": row.principals,
            "valid_after": row.valid_after,
            "valid_before": row.valid_before,
            "changes": issued.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
        .into_response()
    });
    ctx.finish(&app, r)
}

/// A certificate signed and recorded.
struct Issued {
    line: String,
    row: IssuedCert,
    changes: Vec<sshca::core::policy::Change>,
}

/// What a sign request's body says: the subject key, the request, and
/// warnings for the answer.
type Parsed = (sshca::core::KeyData, Request, Vec<String>);

/// Authenticates, checks the policy admits the requester, parses the body
/// with `parse`, merges, signs and records: the path every sign request
/// takes, whatever its wire format. `vault`: `X-Vault-Token` authenticates.
#[allow(clippy::too_many_arguments)]
async fn issue(
    app: &Arc<App>,
    ctx: &mut Ctx,
    policy_name: &str,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
    vault: bool,
    parse: impl FnOnce(&[u8], u64, &sshca::config::PolicyEntry) -> Result<Parsed, ApiError>,
) -> Result<(Issued, Vec<String>), ApiError> {
    let identity = app.authenticate(headers, peer, vault).await?;
    ctx.identity = Some(identity.clone());
    let bytes = read_body(app, headers, body).await?;
    let (entry, _) = app
        .config
        .policy(policy_name)
        .map_err(|_| ApiError::not_found(format!("no policy named `{policy_name}`")))?;
    ctx.policy = Some(policy_name.to_owned());
    may_use(entry, policy_name, &identity)?;
    if let Some(limiter) = &app.limiter {
        limiter.check(&identity.name).map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from `{}`", identity.name),
            )
            .retry(wait)
        })?;
    }
    let now = unix_now();
    let (subject, mut req, warnings) = parse(&bytes, now, entry)?;
    req.requester = Some(identity.name.clone());
    req.claims = identity.claims.clone();
    let ca = app.cas.get(&entry.ca).ok_or_else(|| {
        ApiError::unavailable(
            "backend_unavailable",
            format!("CA `{}` is not open", entry.ca),
        )
    })?;
    let (mut template, changes) = entry
        .policy
        .merge(&req, &subject, now, random_serial())
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy_refused",
                e.to_string()
                    .trim_start_matches("invalid template: ")
                    .to_owned(),
            )
        })?;
    let started = Instant::now();
    // A serial the CA already used (the database decides) means another
    // draw and another signature.
    for _attempt in 0..4 {
        let cert = sign_bounded(app, &entry.ca, ca, &template, &subject).await?;
        let line = cert.to_openssh().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot encode the certificate: {e}"),
            )
        })?;
        let row = IssuedCert {
            ca_fingerprint: ca.current.fingerprint.clone(),
            serial: cert.serial(),
            key_id: cert.key_id().to_owned(),
            cert_type: cert.cert_type().to_string(),
            principals: cert.principals().to_vec(),
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
            subject_fingerprint: sshca::fingerprint(&subject),
            requester: identity.name.clone(),
            policy: policy_name.to_owned(),
            issued_at: now,
            certificate: line.clone(),
        };
        let write_started = Instant::now();
        let recorded = app.store.record(&row).await.map_err(|e| {
            tracing::warn!(request_id = %ctx.id, error = %e.report(), "store write failed");
            ApiError::unavailable(
                "store_unavailable",
                "the certificate could not be recorded; none was issued",
            )
        })?;
        app.metrics
            .store_write(write_started.elapsed().as_secs_f64());
        match recorded {
            Recorded::SerialTaken => {
                template.serial = random_serial();
                continue;
            }
            Recorded::Stored => {}
        }
        app.metrics.signed(started.elapsed().as_secs_f64());
        ctx.serial = Some(row.serial);
        return Ok((Issued { line, row, changes }, warnings));
    }
    Err(ApiError::unavailable(
        "store_unavailable",
        "no unused serial found after 4 draws",
    ))
}

/// `POST /v1/<vault_mount>/sign/{policy}`: Vault's SSH engine request
/// (`public_key`, `valid_principals` comma-separated, `ttl`, `cert_type`,
/// `key_id`, `critical_options`, `extensions`) and answer shape; the named
/// policy decides as on `/v1/sign/{policy}`.
async fn vault_sign(
    State(app): State<Arc<App>>,
    Path(policy): Path<String>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut ctx = Ctx::new("sign");
    let r = issue(
        &app,
        &mut ctx,
        &policy,
        &peer,
        &headers,
        body,
        true,
        parse_vault_body,
    )
    .await
    .map(|(issued, warnings)| {
        vault_answer(
            &ctx.id,
            json!({
                "serial_number": format!("{:016x}", issued.row.serial),
                "signed_key": format!("{}\n", issued.line),
            }),
            warnings,
        )
    })
    .map_err(ApiError::in_vault_shape);
    ctx.finish(&app, r)
}

/// Vault's answer envelope around `data`.
fn vault_answer(request_id: &str, data: Value, warnings: Vec<String>) -> Response {
    Json(json!({
        "request_id": request_id,
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
        "auth": null,
        "mount_type": "ssh",
    }))
    .into_response()
}

/// The fields Vault's sign endpoint reads.
const VAULT_FIELDS: [&str; 7] = [
    "public_key",
    "valid_principals",
    "ttl",
    "cert_type",
    "key_id",
    "critical_options",
    "extensions",
];

fn parse_vault_body(
    bytes: &[u8],
    now: u64,
    entry: &sshca::config::PolicyEntry,
) -> Result<Parsed, ApiError> {
    let v: serde_json::Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("the request body is not a JSON object: {e}"))
    })?;
    let text = |k: &str| -> Result<Option<&str>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::bad_request(format!(
                "field `{k}`: must be a string"
            ))),
        }
    };
    let map = |k: &str| -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(name, val)| match val {
                    Value::String(s) => Ok((name.clone(), s.clone())),
                    _ => Err(ApiError::bad_request(format!(
                        "field `{k}`: the value of `{}` must be a string",
                        name.escape_debug()
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "field `{k}`: must be an object of strings"
            ))),
        }
    };
    let key = parse_subject(
        text("public_key")?.ok_or_else(|| ApiError::bad_request("missing public_key"))?,
    )?;
    let principals: Option<Vec<String>> = text("valid_principals")?
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty());
    let ttl = match v.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            ApiError::bad_request("field `ttl`: must be a whole number of seconds")
        })?),
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            parse_ttl(s.trim()).map_err(|e| ApiError::bad_request(format!("field `ttl`: {e}")))?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "field `ttl`: must be a duration such as \"1h\" or seconds",
            ))
        }
    }
    .filter(|t| *t > 0);
    // Vault's certificates start now minus a little slack; the policy's
    // backdate plays that part.
    let validity = ttl.map(|t| sshca::core::validity::Validity {
        valid_after: now.saturating_sub(entry.policy.backdate),
        valid_before: now.saturating_add(t),
    });
    let mut ignored: Vec<&str> = v
        .keys()
        .map(String::as_str)
        .filter(|k| !VAULT_FIELDS.contains(k))
        .collect();
    ignored.sort_unstable();
    let warnings = if ignored.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            ignored
                .iter()
                .map(|k| k.escape_debug().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )]
    };
    let req = Request {
        requester: None,
        cert_type: parse_cert_type(text("cert_type")?)?,
        principals,
        critical_options: request_options(map("critical_options")?.as_ref(), "critical_options")?,
        extensions: request_options(map("extensions")?.as_ref(), "extensions")?,
        validity,
        key_id: text("key_id")?.filter(|k| !k.is_empty()).map(str::to_owned),
        serial: None,
        claims: Default::default(),
    };
    Ok((key, req, warnings))
}

/// The public key line `/v1/<vault_mount>/public_key` serves.
fn vault_ca_line(app: &App) -> Result<String, ApiError> {
    let name = app
        .config
        .vault_ca()
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("no CA is configured for the Vault API"))?;
    let ca = app.cas.get(name).ok_or_else(|| {
        ApiError::unavailable("backend_unavailable", format!("CA `{name}` is not open"))
    })?;
    sshca::core::PublicKey::new(ca.current.key.clone(), "")
        .to_openssh()
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot encode the CA key: {e}"),
            )
        })
}

/// `GET /v1/<vault_mount>/public_key` (unauthenticated, like Vault's):
/// the CA's public key line, `text/plain`.
async fn vault_public_key(State(app): State<Arc<App>>) -> Response {
    let ctx = Ctx::new("vault_public_key");
    let r = vault_ca_line(&app)
        .map(|line| {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{line}\n"),
            )
                .into_response()
        })
        .map_err(ApiError::in_vault_shape);
    ctx.finish(&app, r)
}

/// `GET /v1/<vault_mount>/config/ca`: `{"data": {"public_key": LINE}}`.
async fn vault_config_ca(State(app): State<Arc<App>>) -> Response {
    let ctx = Ctx::new("vault_config_ca");
    let r = vault_ca_line(&app)
        .map(|line| vault_answer(&ctx.id, json!({ "public_key": line }), Vec::new()))
        .map_err(ApiError::in_vault_shape);
    ctx.finish(&app, r)
}

/// Signs with at most `max_concurrent_signs` signatures in flight and the
/// request timeout over the wait and the signature.
async fn sign_bounded(
    app: &App,
    ca_name: &str,
    ca: &crate::revocation::OpenedCa,
    template: &sshca::core::CertTemplate,
    subject: &sshca::core::KeyData,
) -> Result<sshca::core::Certificate, ApiError> {
    let work = async {
        let _permit = app.signing.acquire().await.map_err(|_| {
            ApiError::unavailable("backend_unavailable", "the service is shutting down")
        })?;
        let r = ca.signer.sign_certificate(template, subject, None).await;
        app.metrics
            .backend_call(ca_name, if r.is_ok() { "ok" } else { "error" });
        r.map_err(|e| {
            tracing::warn!(ca = ca_name, error = %e.report(), "signing failed");
            let code = match e.kind() {
                ErrorKind::Throttled => "backend_throttled",
                _ => "backend_unavailable",
            };
            ApiError::unavailable(code, format!("CA `{ca_name}` could not sign: {}", e.kind()))
        })
    };
    match tokio::time::timeout(app.settings.request_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::unavailable(
            "backend_timeout",
            format!(
                "CA `{ca_name}` did not sign within {} s",
                app.settings.request_timeout.as_secs()
            ),
        )),
    }
}

/// The query parameters of a request, each at most once, only the known
/// ones.
fn simple_query(raw: Option<&str>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in query_pairs(raw)? {
        if !known.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{}` (known: {})",
                k.escape_debug(),
                known.join(", ")
            )));
        }
        if out.insert(k.to_owned(), v).is_some() {
            return Err(ApiError::bad_request(format!("query `{k}` given twice")));
        }
    }
    Ok(out)
}

fn store_unavailable(e: &sshca::signer::Error) -> ApiError {
    tracing::warn!(error = %e.report(), "store failed");
    ApiError::unavailable("store_unavailable", "the store cannot be read or written").retry(5)
}

/// The CA's trust bundle: its current and next keys, and retired keys whose
/// certificates are not all expired (`?format=trusted-user-ca-keys`
/// (default), `authorized-keys` or `known-hosts&pattern=*.example.com`).
async fn ca_key(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = Ctx::new("ca");
    let r = async {
        let q = simple_query(raw.as_deref(), &["format", "pattern"])?;
        let format = crate::revocation::BundleFormat::parse(
            q.get("format")
                .map_or("trusted-user-ca-keys", String::as_str),
            q.get("pattern").map(String::as_str),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let ca = app
            .cas
            .get(&name)
            .ok_or_else(|| ApiError::not_found(format!("no CA named `{name}`")))?;
        let keys = ca
            .trusted_keys(Some(&*app.store), unix_now())
            .await
            .map_err(|e| store_unavailable(&e))?;
        let text = crate::revocation::bundle_text(&name, &keys, &format).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
    }
    .await;
    ctx.finish(&app, r)
}

/// `POST /v1/revoke` (admins): `{"ca", one of "serial" ("N" or "N-M", or a
/// number), "key_id", "key" (a public key or certificate line), "ca_key"
/// (a public key line of one of the CA's keys), and "reason"}`.
async fn revoke(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut ctx = Ctx::new("revoke");
    let r = async {
        let identity = app.authenticate(&headers, &peer, false).await?;
        ctx.identity = Some(identity.clone());
        if !app.settings.is_admin(&identity.name) {
            return Err(ApiError::forbidden(format!(
                "`{}` may not revoke (only admins may)",
                identity.name
            )));
        }
        let body = read_body(&app, &headers, body).await?;
        let (ca_name, target, reason) = parse_revoke_body(&body)?;
        let ca = app
            .cas
            .get(&ca_name)
            .ok_or_else(|| ApiError::not_found(format!("no CA named `{ca_name}`")))?;
        if matches!(target, sshca_store::RevocationTarget::CaKey { .. }) {
            let known = ca
                .keys()
                .any(|k| crate::revocation::ca_key_target(&k.key).ok().as_ref() == Some(&target));
            if !known {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not_a_ca_key",
                    format!(
                        "`{}` is not a key of CA `{ca_name}`",
                        crate::revocation::describe(&target)
                    ),
                ));
            }
        }
        let by = crate::revocation::Revoker {
            identity: identity.name.clone(),
            source: identity.source.to_owned(),
            request_id: ctx.id.clone(),
        };
        let rec = crate::revocation::revoke(&*app.store, &ca_name, target, &reason, &by, unix_now())
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidInput => ApiError::bad_request(e.to_string()),
                _ => store_unavailable(&e),
            })?;
        tracing::info!(target: "sshca::revoke", request_id = %ctx.id, ca = %ca_name, what = %crate::revocation::describe(&rec.target), by = %identity.name, "revoked");
        Ok(Json(json!({ "revoked": rec })).into_response())
    }
    .await;
    ctx.finish(&app, r)
}

fn parse_revoke_body(
    body: &[u8],
) -> Result<(String, sshca_store::RevocationTarget, String), ApiError> {
    use crate::revocation as rv;
    let v: serde_json::Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("not a revoke request (a JSON object): {e}")))?;
    let known = ["ca", "serial", "key_id", "key", "ca_key", "reason"];
    if let Some(k) = v.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field `{}` (known: {})",
            k.escape_debug(),
            known.join(", ")
        )));
    }
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if k == "serial" => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::bad_request(format!(
                "field `{k}`: must be a string"
            ))),
        }
    };
    let ca = text("ca")?.ok_or_else(|| ApiError::bad_request("field `ca`: missing"))?;
    let bad = |k: &str, e: sshca::signer::Error| ApiError::bad_request(format!("field `{k}`: {e}"));
    let mut targets = Vec::new();
    if let Some(s) = text("serial")? {
        let (from, to) = rv::parse_serials(&s).map_err(|e| bad("serial", e))?;
        targets.push(sshca_store::RevocationTarget::Serials { from, to });
    }
    if let Some(s) = text("key_id")? {
        targets.push(rv::key_id_target(&s).map_err(|e| bad("key_id", e))?);
    }
    if let Some(s) = text("key")? {
        let key = rv::parse_key_line(&s).map_err(|e| bad("key", e))?;
        targets.push(rv::key_target(&key));
    }
    if let Some(s) = text("ca_key")? {
        let key = rv::parse_key_line(&s).map_err(|e| bad("ca_key", e))?;
        targets.push(rv::ca_key_target(&key).map_err(|e| bad("ca_key", e))?);
    }
    let reason = text("reason")?.unwrap_or_default();
    sshca::core::text::check_printable("reason", &reason)
        .map_err(|e| ApiError::bad_request(format!("field `reason`: {e}")))?;
    match targets.len() {
        1 => Ok((ca, targets.remove(0), reason)),
        0 => Err(ApiError::bad_request(
            "nothing to revoke: give one of `serial`, `key_id`, `key`, `ca_key`",
        )),
        _ => Err(ApiError::bad_request(
            "give only one of `serial`, `key_id`, `key`, `ca_key` per request",
        )),
    }
}

/// The newest KRL of the CA named by `?ca=` (optional when there is one
/// CA), rebuilt when a revocation was added or it is an hour old.
async fn current_krl(
    app: &Arc<App>,
    raw: Option<&str>,
) -> Result<Arc<crate::revocation::BuiltKrl>, ApiError> {
    let q = simple_query(raw, &["ca"])?;
    let name = match q.get("ca") {
        Some(n) => n.clone(),
        None if app.cas.len() == 1 => app.cas.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(ApiError::bad_request(format!(
                "name the CA: ?ca=NAME (CAs: {})",
                app.cas.keys().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let ca = app
        .cas
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no CA named `{name}`")))?;
    let mark = app
        .store
        .revocation_mark(&name)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let now = unix_now();
    let mut cache = app.krls.lock().await;
    if let Some(c) = cache.get(&name) {
        if c.mark == mark && now.saturating_sub(c.built_at) < crate::app::KRL_MAX_AGE {
            return Ok(c.krl.clone());
        }
    }
    let built = crate::revocation::build_krl(&*app.store, ca, false, now)
        .await
        .map_err(|e| {
            tracing::warn!(ca = %name, error = %e.report(), "cannot build the KRL");
            ApiError::unavailable(
                "krl_unavailable",
                format!("the KRL of CA `{name}` cannot be built now"),
            )
            .retry(5)
        })?;
    let built = Arc::new(built);
    cache.insert(
        name,
        crate::app::CachedKrl {
            mark,
            built_at: now,
            krl: built.clone(),
        },
    );
    Ok(built)
}

fn krl_response(content_type: &'static str, version: u64, body: Vec<u8>) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(v) = version.to_string().parse() {
        r.headers_mut().insert("x-krl-version", v);
    }
    r
}

async fn krl(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    let ctx = Ctx::new("krl");
    let r = current_krl(&app, raw.as_deref())
        .await
        .map(|k| krl_response("application/octet-stream", k.version, k.krl.clone()));
    ctx.finish(&app, r)
}

async fn krl_sig(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    let ctx = Ctx::new("krl.sig");
    let r = current_krl(&app, raw.as_deref()).await.map(|k| {
        krl_response(
            "text/plain; charset=utf-8",
            k.version,
            k.signature.clone().into_bytes(),
        )
    });
    ctx.finish(&app, r)
}

async fn policies(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    let mut ctx = Ctx::new("policies");
    let r = async {
        let identity = app.authenticate(&headers, &peer, false).await?;
        ctx.identity = Some(identity.clone());
        let mut out = Vec::new();
        for (name, entry) in &app.config.policies {
            if may_use(entry, name, &identity).is_err() {
                continue;
            }
            let mut v = serde_json::to_value(&entry.policy).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("ca".into(), json!(entry.ca));
                m.insert("name".into(), json!(name));
                m.insert("auth".into(), json!(entry.auth));
            }
            out.push(v);
        }
        Ok(Json(json!({ "policies": out })).into_response())
    }
    .await;
    ctx.finish(&app, r)
}

/// The `key=value` pairs of a query string, percent-decoded.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(&str, String)>, ApiError> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)
                .ok_or_else(|| ApiError::bad_request(format!("query `{k}`: not UTF-8 text")))?;
            Ok((k, v))
        })
        .collect()
}

fn query_params(raw: Option<&str>) -> Result<CertQuery, ApiError> {
    let mut q = CertQuery::default();
    for (k, v) in query_pairs(raw)? {
        let number = |what: &str| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("query `{k}`: `{v}` is not {what}")))
        };
        match k {
            "serial" => q.serial = Some(number("a serial number")?),
            "key_id" => q.key_id = Some(v.clone()),
            "principal" => q.principal = Some(v.clone()),
            "requester" => q.requester = Some(v.clone()),
            "limit" => {
                q.limit = u32::try_from(number("a count")?)
                    .unwrap_or(CertQuery::MAX_LIMIT)
                    .min(CertQuery::MAX_LIMIT)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                "unknown query parameter `{other}` (serial, key_id, principal, requester, limit)"
            )))
            }
        }
    }
    Ok(q)
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Lists certificates: an admin sees all, anyone else only their own.
async fn list(
    app: &Arc<App>,
    ctx: &mut Ctx,
    peer: &Peer,
    headers: &HeaderMap,
    mut q: CertQuery,
) -> Result<Vec<IssuedCert>, ApiError> {
    let identity = app.authenticate(headers, peer, false).await?;
    ctx.identity = Some(identity.clone());
    if !app.settings.is_admin(&identity.name) {
        match &q.requester {
            Some(r) if *r != identity.name => {
                return Err(ApiError::forbidden(format!(
                    "`{}` may only list its own certificates (admins may list all)",
                    identity.name
                )))
            }
            _ => q.requester = Some(identity.name.clone()),
        }
    }
    app.store.certs(&q).await.map_err(|e| {
        tracing::warn!(error = %e.report(), "store read failed");
        ApiError::unavailable("store_unavailable", "the store cannot be read")
    })
}

async fn certs(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut ctx = Ctx::new("certs");
    let r = async {
        let q = query_params(raw.as_deref())?;
        let rows = list(&app, &mut ctx, &peer, &headers, q).await?;
        Ok(Json(json!({ "certs": rows })).into_response())
    }
    .await;
    ctx.finish(&app, r)
}

async fn cert(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Path(serial): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut ctx = Ctx::new("cert");
    let r = async {
        let serial = serial.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("`{serial}` is not a serial number (a decimal u64)"))
        })?;
        let q = CertQuery {
            serial: Some(serial),
            ..Default::default()
        };
        let rows = list(&app, &mut ctx, &peer, &headers, q).await?;
        match rows.into_iter().next() {
            Some(row) => Ok(Json(row).into_response()),
            None => Err(ApiError::not_found(format!(
                "no certificate with serial {serial} that you may see"
            ))),
        }
    }
    .await;
    ctx.finish(&app, r)
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.store.health().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => {
            let mut r = ApiError::unavailable("store_unavailable", e.to_string()).into_response();
            *r.body_mut() =
                Body::from(json!({"status": "unavailable", "store": e.to_string()}).to_string());
            r
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_checked() {
        let q = query_params(Some("serial=5&key_id=a%20b&limit=3")).unwrap();
        assert_eq!(q.serial, Some(5));
        assert_eq!(q.key_id.as_deref(), Some("a b"));
        assert_eq!(q.limit, 3);
        for bad in ["serial=x", "limit=-1", "colour=red", "key_id=%ff"] {
            let e = query_params(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn sign_bodies_name_the_wrong_field() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1i9NcBEhwWrvjHucG2W9YoKCOR9B5MEd2beUZ9IPRa";
        for (body, needle) in [
            ("{}".to_string(), "public_key"),
            ("not json".to_string(), "not a sign request"),
            (
                json!({"public_key": "ssh-ed25519 zzz"}).to_string(),
                "field `public_key`",
            ),
            (
                json!({"public_key": key, "validity": "+1q"}).to_string(),
                "field `validity`",
            ),
            (
                json!({"public_key": key, "cert_type": "robot"}).to_string(),
                "field `cert_type`",
            ),
            (
                json!({"public_key": key, "colour": "red"}).to_string(),
                "colour",
            ),
            (
                json!({"public_key": key, "principals": "alice"}).to_string(),
                "principals",
            ),
        ] {
            let e = parse_sign_body(body.as_bytes(), 1_700_000_000)
                .err()
                .unwrap();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        let (_, req) = parse_sign_body(
            json!({"public_key": key, "principals": ["alice"], "extensions": {"permit-pty": ""}})
                .to_string()
                .as_bytes(),
            1,
        )
        .unwrap();
        assert_eq!(req.principals, Some(vec!["alice".to_string()]));
        assert!(req.extensions.unwrap().contains_key("permit-pty"));
    }
}
