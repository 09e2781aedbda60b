//! Vault's SSH secrets engine API under `/v1/<vault_mount>/`: `sign/{policy}`
//! (Vault's request and answer shape; the named policy decides as on
//! `/v1/sign/{policy}`), `public_key` and `config/ca`. Clients of Vault
//! (`vault write ssh/sign/ROLE`, hvac, vaultrs) work unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sshca::core::policy::Request;
use sshca::core::validity::parse_ttl;
use sshca_authority::unix_now;

use super::request::{parse_cert_type, parse_subject, request_options};
use super::sign::{issue, open};
use crate::app::App;
use crate::auth::VaultAuth;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

/// What a Vault sign request's body says: the subject key, the request,
/// and warnings for the answer.
type Parsed = (sshca::core::KeyData, Request, Vec<String>);

pub(super) fn router(app: &Arc<App>, mount: &str) -> Router<Arc<App>> {
    Router::new()
        .route(
            &format!("/v1/{mount}/sign/{{policy}}"),
            tracked(app, "sign", post(vault_sign)),
        )
        .route(
            &format!("/v1/{mount}/public_key"),
            tracked(app, "vault_public_key", get(vault_public_key)),
        )
        .route(
            &format!("/v1/{mount}/config/ca"),
            tracked(app, "vault_config_ca", get(vault_config_ca)),
        )
}

/// `POST /v1/<vault_mount>/sign/{policy}`: Vault's SSH engine request
/// (`public_key`, `valid_principals` comma-separated, `ttl`, `cert_type`,
/// `key_id`, `critical_options`, `extensions`) and answer shape.
async fn vault_sign(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    VaultAuth(identity): VaultAuth,
    Path(policy): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let r = async {
        let (bytes, entry) = open(&app, &ctx, &identity, &policy, &headers, body).await?;
        let now = unix_now();
        let (subject, request, warnings) = parse_vault_body(&bytes, now, entry)?;
        let issued = issue(&app, &ctx, &identity, &policy, &subject, request, now).await?;
        Ok(vault_answer(
            ctx.id(),
            json!({
                "serial_number": format!("{:016x}", issued.row.serial),
                "signed_key": format!("{}\n", issued.line),
            }),
            warnings,
        ))
    };
    r.await.map_err(ApiError::in_vault_shape)
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
        requester_source: None,
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
        .service
        .vault_ca(app.authority.config())
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("no CA is configured for the Vault API"))?;
    let ca = app.authority.cas().get(name).ok_or_else(|| {
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
async fn vault_public_key(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let line = vault_ca_line(&app).map_err(ApiError::in_vault_shape)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{line}\n"),
    )
        .into_response())
}

/// `GET /v1/<vault_mount>/config/ca`: `{"data": {"public_key": LINE}}`.
async fn vault_config_ca(State(app): State<Arc<App>>, ctx: Ctx) -> Result<Response, ApiError> {
    let line = vault_ca_line(&app).map_err(ApiError::in_vault_shape)?;
    Ok(vault_answer(
        ctx.id(),
        json!({ "public_key": line }),
        Vec::new(),
    ))
}
