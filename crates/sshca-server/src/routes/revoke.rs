//! `POST /v1/revoke` (admins), `GET /v1/krl` and `GET /v1/krl.sig`:
//! revocations recorded through the authority, and the CA's KRL with its
//! detached signature.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sshca_authority::{revoke::describe, unix_now, BuiltKrl, Revoker};

use super::request::{read_body, simple_query};
use crate::app::App;
use crate::auth::Auth;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/revoke", tracked(app, "revoke", post(revoke)))
        .route("/v1/krl", tracked(app, "krl", get(krl)))
        .route("/v1/krl.sig", tracked(app, "krl.sig", get(krl_sig)))
}

/// `POST /v1/revoke` (admins): `{"ca", one of "serial" ("N" or "N-M", or a
/// number), "key_id", "key" (a public key or certificate line), "ca_key"
/// (a public key line of one of the CA's keys), and "reason"}`.
async fn revoke(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Auth(identity): Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !app.settings.is_admin(&identity) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not revoke (only admins may)",
            identity.qualified()
        )));
    }
    let body = read_body(&app, &headers, body).await?;
    let (ca_name, target, reason) = parse_revoke_body(&body)?;
    let by = Revoker {
        identity: identity.name.clone(),
        source: identity.source.clone(),
        request_id: ctx.id().to_owned(),
    };
    let rec = app
        .authority
        .revoke(&ca_name, target, &reason, &by, unix_now())
        .await?;
    tracing::info!(target: "sshca::revoke", request_id = %ctx.id(), ca = %ca_name, what = %describe(&rec.target), by = %identity.name, "revoked");
    Ok(Json(json!({ "revoked": rec })).into_response())
}

fn parse_revoke_body(
    body: &[u8],
) -> Result<(String, sshca_store::RevocationTarget, String), ApiError> {
    use sshca_authority::revoke as rv;
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
/// CA).
async fn current_krl(app: &App, raw: Option<&str>) -> Result<Arc<BuiltKrl>, ApiError> {
    let q = simple_query(raw, &["ca"])?;
    Ok(app
        .authority
        .current_krl(q.get("ca").map(String::as_str), unix_now())
        .await?)
}

fn krl_response(content_type: &'static str, version: u64, body: Vec<u8>) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(v) = version.to_string().parse() {
        r.headers_mut().insert("x-krl-version", v);
    }
    r
}

async fn krl(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let k = current_krl(&app, raw.as_deref()).await?;
    Ok(krl_response(
        "application/octet-stream",
        k.version,
        k.krl.clone(),
    ))
}

async fn krl_sig(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let k = current_krl(&app, raw.as_deref()).await?;
    Ok(krl_response(
        "text/plain; charset=utf-8",
        k.version,
        k.signature.clone().into_bytes(),
    ))
}
