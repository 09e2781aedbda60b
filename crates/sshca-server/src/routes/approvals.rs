//! Sign requests waiting for approval: `GET /v1/approvals` (the pending
//! requests the caller may decide), `GET /v1/approvals/{id}` (its
//! requester or an approver: its state, and the certificate once
//! approved), `POST /v1/approvals/{id}/approve` and `/deny` (approvers,
//! never the requester).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sshca_authority::unix_now;
use sshca_store::Approval;

use super::request::{parse_json, read_body};
use crate::app::App;
use crate::auth::Auth;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/approvals", tracked(app, "approvals", get(list)))
        .route("/v1/approvals/{id}", tracked(app, "approvals", get(show)))
        .route(
            "/v1/approvals/{id}/approve",
            tracked(app, "approve", post(approve)),
        )
        .route("/v1/approvals/{id}/deny", tracked(app, "deny", post(deny)))
}

/// An approval request as the API shows it.
pub(super) fn view(app: &App, a: &Approval) -> Value {
    let count = app
        .authority
        .config()
        .policies
        .get(&a.policy)
        .and_then(|e| e.approval.as_ref())
        .map(|r| r.count);
    let mut v = json!({
        "request_id": a.id,
        "status": a.state,
        "policy": a.policy,
        "requester": sshca::core::matcher::qualified(&a.requester_source, &a.requester),
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "approvals": a.votes,
        "approvals_required": count,
        "request": sshca_authority::requested(a),
    });
    if let Value::Object(m) = &mut v {
        for (k, val) in [
            ("decided_by", a.decided_by.as_ref().map(|s| json!(s))),
            ("decided_at", a.decided_at.map(|s| json!(s))),
            ("reason", a.reason.as_ref().map(|s| json!(s))),
            ("serial", a.serial.map(|s| json!(s.to_string()))),
            ("certificate", a.certificate.as_ref().map(|s| json!(s))),
        ] {
            if let Some(val) = val {
                m.insert(k.into(), val);
            }
        }
    }
    v
}

async fn list(State(app): State<Arc<App>>, Auth(identity): Auth) -> Result<Response, ApiError> {
    let list = app.authority.approvals_for(&identity, unix_now()).await?;
    let out: Vec<Value> = list.iter().map(|a| view(&app, a)).collect();
    Ok(Json(json!({ "approvals": out })).into_response())
}

async fn show(
    State(app): State<Arc<App>>,
    Auth(identity): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = app.authority.approval(&id, &identity, unix_now()).await?;
    Ok(Json(view(&app, &a)).into_response())
}

async fn approve(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Auth(identity): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = app
        .authority
        .approve(&id, &identity, ctx.id(), unix_now())
        .await?;
    if let Some(serial) = a.serial {
        ctx.set_serial(serial);
    }
    ctx.set_policy(&a.policy);
    Ok(Json(view(&app, &a)).into_response())
}

/// `POST /v1/approvals/{id}/deny`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    reason: String,
}

async fn deny(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Auth(identity): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app, &headers, body).await?;
    let b: DenyBody = parse_json(&bytes, "a denial")?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::bad_request("field `reason`: say why"));
    }
    sshca::core::text::check_printable("field `reason`", &b.reason)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let a = app
        .authority
        .deny(&id, &identity, &b.reason, ctx.id(), unix_now())
        .await?;
    ctx.set_policy(&a.policy);
    Ok(Json(view(&app, &a)).into_response())
}
