//! `GET /v1/join/{name}` (what a host needs to know to join, without
//! credentials) and `POST /v1/join/{name}`: host certificates for every
//! key a host sends, on the proof its join method asks for: a join token
//! (consumed atomically, bound to the principals the certificates get) or
//! a cloud instance's identity (verified in [`crate::joins`]; each
//! instance joins once unless the join allows enrolling again, and the
//! policy's templates name its principals). A failed proof counts against
//! the client address's budget.

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
use crate::joins::Proof;

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
    let joining = Joining {
        app: &app,
        ctx: &ctx,
        budget: &budget,
        name: &name,
        join: j,
        subjects: &subjects,
        now: unix_now(),
    };
    let (issued, principals) = if j.method == "token" {
        joining.by_token(b.proof.join_token(&name)?).await?
    } else {
        joining.by_instance(&b.proof).await?
    };
    if let Some(last) = issued.last() {
        ctx.set_serial(last.row.serial);
    }
    Ok(Json(json!({
        "certificates": issued.iter().map(|i| i.line.clone()).collect::<Vec<_>>(),
        "principals": principals,
    }))
    .into_response())
}

/// One join request, its keys parsed.
struct Joining<'a> {
    app: &'a App,
    ctx: &'a Ctx,
    budget: &'a Budget<'a>,
    name: &'a str,
    join: &'a crate::config::JoinConfig,
    subjects: &'a [sshca::core::KeyData],
    now: u64,
}

type Joined = (Vec<sshca_authority::Issued>, Vec<String>);

fn store_failed(what: &'static str) -> impl Fn(sshca::signer::Error) -> ApiError {
    move |e| ApiError::from(sshca_authority::Refusal::store(what, e))
}

impl Joining<'_> {
    /// A join token: checked first (without using it), so that keys the
    /// policy refuses do not spend it; then used atomically.
    async fn by_token(&self, token: &str) -> Result<Joined, ApiError> {
        let (app, name, now) = (self.app, self.name, self.now);
        let store = app.authority.store();
        let hash = crate::tokens::token_hash(token.trim());
        let refused = |why: JoinRefusal| {
            self.budget.spend();
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
        let store_err = store_failed("the store cannot check the join token");
        let token = match store
            .join_token(name, &hash, now)
            .await
            .map_err(&store_err)?
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
            .insert("join".into(), Claim::Text(name.to_owned()));
        identity
            .claims
            .insert("principals".into(), Claim::List(token.principals.clone()));
        self.ctx.set_identity(&identity);
        self.ctx.set_policy(&self.join.policy);
        // Merged first: a key or principal the policy refuses is 422 before
        // the token is spent.
        let joined = app.authority.prepare_joined(
            &self.join.policy,
            &identity,
            self.subjects,
            Some(&token.principals),
            now,
        )?;
        let token = match store
            .consume_join_token(name, &hash, now)
            .await
            .map_err(&store_err)?
        {
            Ok(t) => t,
            Err(why) => return Err(refused(why)),
        };
        let issued = app
            .authority
            .issue_joined(joined, &identity, self.subjects, self.ctx.id(), now)
            .await?;
        Ok((issued, token.principals))
    }

    /// A cloud instance's identity: verified, admitted by the join's
    /// lists, merged under the policy, then (unless the join allows
    /// enrolling again) recorded as joined, atomically.
    async fn by_instance(&self, proof: &Proof) -> Result<Joined, ApiError> {
        let (app, name, now) = (self.app, self.name, self.now);
        let instance = match app.joins.verify(name, proof, now).await {
            Some(Ok(i)) => i,
            Some(Err(e)) => {
                if e.status == StatusCode::UNAUTHORIZED {
                    self.budget.spend();
                }
                return Err(e);
            }
            None => {
                return Err(ApiError::unavailable(
                    "join_unavailable",
                    format!("join `{name}` has no verifier"),
                ))
            }
        };
        let mut identity = Identity::new(format!("join:{name}"), instance.name.clone());
        identity.claims = instance.claims;
        identity
            .claims
            .insert("join".into(), Claim::Text(name.to_owned()));
        self.ctx.set_identity(&identity);
        self.ctx.set_policy(&self.join.policy);
        let joined =
            app.authority
                .prepare_joined(&self.join.policy, &identity, self.subjects, None, now)?;
        let principals = joined.principals().to_vec();
        if !self.join.allow_reenroll {
            let first = app
                .authority
                .store()
                .claim_instance(name, &instance.key, now)
                .await
                .map_err(store_failed("the store cannot record the joining instance"))?;
            if !first {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "join_instance_used",
                    format!(
                        "instance `{}` joined `{name}` before; its certificates renew through \
                         /v1/renew (sshca host renew), or the join may set allow_reenroll",
                        sshca::core::text::escape(&instance.key)
                    ),
                ));
            }
        }
        let issued = match app
            .authority
            .issue_joined(joined, &identity, self.subjects, self.ctx.id(), now)
            .await
        {
            Ok(issued) => issued,
            Err(refusal) => {
                // Nothing was issued (the KMS or the store failed): the
                // instance may try again.
                if !self.join.allow_reenroll {
                    if let Err(e) = app
                        .authority
                        .store()
                        .release_instance(name, &instance.key)
                        .await
                    {
                        tracing::error!(join = %name, instance = %instance.key, error = %e.report(), "cannot forget the joining instance after a failed issuance; it cannot join again until the row is removed");
                    }
                }
                return Err(refusal.into());
            }
        };
        Ok((issued, principals))
    }
}
