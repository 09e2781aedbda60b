//! `GET /v1/login`: what `sshca login` needs to sign a person in, without
//! credentials — the issuers that name a public client, and the CAs whose
//! keys a client trusts (user CAs for its agent, host CAs for its
//! `known_hosts`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sshca::core::CertType;

use crate::app::App;
use crate::context::tracked;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new().route("/v1/login", tracked(app, "login", get(login)))
}

/// `{"issuers": [{"name", "issuer", "client_id", "client_secret"?,
/// "scopes", "policy"}], "user_cas": [...], "host_cas": [...]}`.
async fn login(State(app): State<Arc<App>>) -> Response {
    let issuers: Vec<Value> = app
        .service
        .oidc
        .iter()
        .filter_map(|(name, o)| {
            let client_id = o.client_id.as_ref()?;
            let mut v = json!({
                "name": name,
                "issuer": o.issuer,
                "client_id": client_id,
                "scopes": o.login_scopes(),
                "policy": o.login_policy,
            });
            if let Some(secret) = &o.client_secret {
                v["client_secret"] = json!(secret);
            }
            Some(v)
        })
        .collect();
    let mut user_cas = BTreeSet::new();
    let mut host_cas = BTreeSet::new();
    for entry in app.authority.config().policies.values() {
        match entry.policy.cert_type {
            CertType::User => user_cas.insert(entry.ca.clone()),
            CertType::Host => host_cas.insert(entry.ca.clone()),
        };
    }
    Json(json!({
        "issuers": issuers,
        "user_cas": user_cas,
        "host_cas": host_cas,
    }))
    .into_response()
}
