//! `POST /v1/sign/{policy}` and `GET /v1/policies`: certificates under a
//! policy, and the policies a requester may use. The opening every sign
//! request shares (body, policy, rate limit) and the call to the authority
//! are here; the Vault-compatible path uses them too.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sshca::config::PolicyEntry;
use sshca::core::policy::Request;
use sshca::core::validity::parse_validity;
use sshca::core::KeyData;
use sshca_authority::{unix_now, Identity, IssueRequest, Issued, Requested};

use super::request::{parse_cert_type, parse_json, parse_subject, read_body, request_options};
use crate::app::App;
use crate::auth::Auth;
use crate::context::{tracked, Ctx};
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/sign/{policy}", tracked(app, "sign", post(sign)))
        .route("/v1/policies", tracked(app, "policies", get(policies)))
}

/// A sign request's opening, whatever its wire format: the body (413 over
/// `max_body`), the policy the identity may use (404, 403), the rate limit
/// (429).
pub(super) async fn open<'a>(
    app: &'a App,
    ctx: &Ctx,
    identity: &Identity,
    policy: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(bytes::Bytes, &'a PolicyEntry), ApiError> {
    let bytes = read_body(app, headers, body).await?;
    if app.authority.config().policies.contains_key(policy) {
        ctx.set_policy(policy);
    }
    let entry = app.authority.policy(policy, identity)?;
    if let Some(limiter) = &app.limiter {
        limiter.check(&identity.qualified()).map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from `{}`", identity.qualified()),
            )
            .retry(wait)
        })?;
    }
    Ok((bytes, entry))
}

/// What the authority is asked for this request: its id and the client's
/// address from the request context.
fn issue_request<'a>(
    ctx: &'a Ctx,
    identity: &'a Identity,
    policy: &'a str,
    subject: &'a KeyData,
    request: Request,
) -> IssueRequest<'a> {
    IssueRequest {
        policy,
        identity,
        subject,
        request,
        request_id: ctx.id(),
        source_address: ctx.client_ip(),
    }
}

/// Issues through the authority: merged, signed, recorded, only then
/// returned.
pub(super) async fn issue(
    app: &App,
    ctx: &Ctx,
    identity: &Identity,
    policy: &str,
    subject: &KeyData,
    request: Request,
    now: u64,
) -> Result<Issued, ApiError> {
    let issued = app
        .authority
        .issue(issue_request(ctx, identity, policy, subject, request), now)
        .await?;
    ctx.set_serial(issued.row.serial);
    Ok(issued)
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

fn parse_sign_body(bytes: &[u8], now: u64) -> Result<(KeyData, Request), ApiError> {
    let b: SignBody = parse_json(bytes, "a sign request")?;
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
            requester_source: None,
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

async fn sign(
    State(app): State<Arc<App>>,
    ctx: Ctx,
    Auth(identity): Auth,
    Path(policy): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (bytes, _) = open(&app, &ctx, &identity, &policy, &headers, body).await?;
    let now = unix_now();
    let (subject, request) = parse_sign_body(&bytes, now)?;
    let requested = app
        .authority
        .request(
            issue_request(&ctx, &identity, &policy, &subject, request),
            now,
        )
        .await?;
    let issued = match requested {
        Requested::Issued(issued) => *issued,
        Requested::Pending(a) => {
            return Ok(
                (StatusCode::ACCEPTED, Json(super::approvals::view(&app, &a))).into_response(),
            )
        }
    };
    ctx.set_serial(issued.row.serial);
    let row = &issued.row;
    Ok(Json(json!({
        "certificate": issued.line,
        "serial": row.serial.to_string(),
        "key_id": row.key_id,
        "principals": row.principals,
        "valid_after": row.valid_after,
        "valid_before": row.valid_before,
        "changes": issued.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /v1/policies`: the policies the requester may use.
async fn policies(State(app): State<Arc<App>>, Auth(identity): Auth) -> Response {
    let out: Vec<Value> = app
        .authority
        .policies_for(&identity)
        .map(|(name, entry)| {
            let mut v = serde_json::to_value(&entry.policy).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("ca".into(), json!(entry.ca));
                m.insert("name".into(), json!(name));
                m.insert("auth".into(), json!(entry.auth));
            }
            v
        })
        .collect();
    Json(json!({ "policies": out })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
