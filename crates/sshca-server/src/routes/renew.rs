//! `POST /v1/renew`: a certificate renewed by proof of possession of its
//! key (no bearer token): the authority checks the certificate, its chain
//! and the proof ([`sshca_authority::renew`]); a failed proof counts
//! against the client address's budget, as a failed authentication does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sshca_authority::{unix_now, Identity, RenewRequest};

use super::request::{parse_json, read_body};
use crate::app::{App, Peer};
use crate::auth::Budget;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new().route("/v1/renew", tracked(app, "renew", post(renew)))
}

/// `POST /v1/renew`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    certificate: String,
    time: u64,
    nonce: String,
    signature: String,
}

/// Whether the credential an identity came with is still configured.
fn still_known(app: &App, identity: &Identity) -> bool {
    match identity.source.as_str() {
        "token" => app.service.tokens.contains_key(&identity.name),
        "client-cert" => app.settings.client_ca.is_some(),
        source => match source.split_once(':') {
            Some(("oidc", issuer)) => app.service.oidc.contains_key(issuer),
            Some(("join", join)) => app.service.joins.contains_key(join),
            _ => false,
        },
    }
}

async fn renew(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let budget = Budget::open(
        &app,
        peer.as_ref().map(|Extension(p)| p),
        &headers,
        Some(&ctx),
    )?;
    let ip = budget.ip;
    let bytes = read_body(&app, &headers, body).await?;
    let b: RenewBody = parse_json(&bytes, "a renewal")?;
    let result = app
        .authority
        .renew(
            RenewRequest {
                certificate: &b.certificate,
                time: b.time,
                nonce: &b.nonce,
                signature: &b.signature,
                public_url: &app.public_url,
                request_id: ctx.id(),
                source_address: ip,
            },
            unix_now(),
            &|identity| still_known(&app, identity),
        )
        .await;
    let renewed = match result {
        Ok(r) => r,
        Err(refusal) => {
            let e = ApiError::from(refusal);
            if e.status == StatusCode::UNAUTHORIZED {
                budget.spend();
            }
            return Err(e);
        }
    };
    ctx.set_identity(&renewed.identity);
    ctx.set_policy(&renewed.policy);
    let row = &renewed.issued.row;
    ctx.set_serial(row.serial);
    Ok(Json(json!({
        "certificate": renewed.issued.line,
        "serial": row.serial.to_string(),
        "renews": row.renews.map(|s| s.to_string()),
        "key_id": row.key_id,
        "principals": row.principals,
        "valid_after": row.valid_after,
        "valid_before": row.valid_before,
        "changes": renewed.issued.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
    .into_response())
}
