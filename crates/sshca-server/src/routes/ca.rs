//! `GET /v1/ca/{name}`: the CA's trust bundle, without credentials.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sshca_authority::{unix_now, BundleFormat};

use super::request::simple_query;
use crate::app::App;
use crate::context::tracked;
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new().route("/v1/ca/{name}", tracked(app, "ca", get(ca_key)))
}

/// The CA's trust bundle: its current and next keys, and retired keys whose
/// certificates are not all expired (`?format=trusted-user-ca-keys`
/// (default), `authorized-keys` or `known-hosts&pattern=*.example.com`).
async fn ca_key(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = simple_query(raw.as_deref(), &["format", "pattern"])?;
    let format = BundleFormat::parse(
        q.get("format")
            .map_or("trusted-user-ca-keys", String::as_str),
        q.get("pattern").map(String::as_str),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let text = app
        .authority
        .trust_bundle(&name, &format, unix_now())
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
