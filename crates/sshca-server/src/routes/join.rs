//! `GET /v1/join/{name}` (what a host needs to know to join, without
//! credentials) and `POST /v1/join/{name}`: host certificates for every
//! key a host sends, on the proof its join method asks for (a join token:
//! consumed atomically, bound to the principals the certificates get). A
//! failed proof counts against the client address's budget.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sshca::core::template::Claim;
use sshca_authority::{unix_now, Identity};
use sshca_store::JoinRefusal;

use super::request::{parse_json, parse_subject, read_body};
use crate::app::{App, Peer};
use crate::auth::Budget;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new().route(
        "/v1/join/{name}",
        tracked(app, "join", get(describe).post(join)),
    )
}

/// The most keys one host may send.
const MAX_KEYS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    public_keys: Vec<String>,
    proof: Proof,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Proof {
    token: String,
}

fn join_config<'a>(app: &'a App, name: &str) -> Result<&'a crate::config::JoinConfig, ApiError> {
    app.service.joins.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no join named `{}`",
            sshca::core::text::escape(name)
        ))
    })
}

async fn describe(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let j = join_config(&app, &name)?;
    Ok(Json(json!({"method": j.method, "audience": j.audience})).into_response())
}

fn token_refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

async fn join(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Path(name): Path<String>,
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
    let j = join_config(&app, &name)?;
    let bytes = read_body(&app, &headers, body).await?;
    let b: JoinBody = parse_json(&bytes, "a join request")?;
    if b.public_keys.is_empty() || b.public_keys.len() > MAX_KEYS {
        return Err(ApiError::bad_request(format!(
            "field `public_keys`: between 1 and {MAX_KEYS} keys"
        )));
    }
    let mut subjects = Vec::with_capacity(b.public_keys.len());
    for (i, k) in b.public_keys.iter().enumerate() {
        subjects.push(parse_subject(k).map_err(|e| {
            ApiError::bad_request(format!("field `public_keys[{i}]`: {}", e.message))
        })?);
    }
    let store = app.authority.store();
    let hash = crate::tokens::token_hash(b.proof.token.trim());
    let now = unix_now();
    let refused = |why: JoinRefusal| {
        budget.spend();
        match why {
            JoinRefusal::Unknown => token_refused(
                "join_token_invalid",
                format!("the token is not a join token of `{name}`"),
            ),
            JoinRefusal::Used => token_refused("join_token_used", "the join token was used up"),
            JoinRefusal::Expired => {
                token_refused("join_token_expired", "the join token has expired")
            }
        }
    };
    let store_err = |e: sshca::signer::Error| {
        ApiError::from(sshca_authority::Refusal::store(
            "the store cannot check the join token",
            e,
        ))
    };
    // Checked first (without using it), so that keys the policy refuses do
    // not spend the token; then used atomically.
    let token = match store
        .join_token(&name, &hash, now)
        .await
        .map_err(store_err)?
    {
        Ok(t) => t,
        Err(why) => return Err(refused(why)),
    };
    let mut identity = Identity::new(format!("join:{name}"), token.id.clone());
    identity
        .claims
        .insert("token_id".into(), Claim::Text(token.id.clone()));
    identity
        .claims
        .insert("join".into(), Claim::Text(name.clone()));
    identity
        .claims
        .insert("principals".into(), Claim::List(token.principals.clone()));
    ctx.set_identity(&identity);
    ctx.set_policy(&j.policy);
    // Merged first: a key or principal the policy refuses is 422 before
    // the token is spent.
    let joined =
        app.authority
            .prepare_joined(&j.policy, &identity, &subjects, &token.principals, now)?;
    let token = match store
        .consume_join_token(&name, &hash, now)
        .await
        .map_err(store_err)?
    {
        Ok(t) => t,
        Err(why) => return Err(refused(why)),
    };
    let issued = app
        .authority
        .issue_joined(joined, &identity, &subjects, ctx.id(), now)
        .await?;
    if let Some(last) = issued.last() {
        ctx.set_serial(last.row.serial);
    }
    Ok(Json(json!({
        "certificates": issued.iter().map(|i| i.line.clone()).collect::<Vec<_>>(),
        "principals": token.principals,
    }))
    .into_response())
}
