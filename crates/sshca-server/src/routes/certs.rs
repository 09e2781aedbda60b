//! `GET /v1/certs` and `GET /v1/certs/{serial}`: the certificates the
//! store holds; an admin sees all, anyone else only their own.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sshca_store::CertQuery;

use super::request::query_pairs;
use crate::app::App;
use crate::auth::Auth;
use crate::context::tracked;
use crate::error::ApiError;

pub(super) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/v1/certs", tracked(app, "certs", get(certs)))
        .route("/v1/certs/{serial}", tracked(app, "cert", get(cert)))
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

async fn certs(
    State(app): State<Arc<App>>,
    Auth(identity): Auth,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_params(raw.as_deref())?;
    let admin = app.settings.is_admin(&identity);
    let rows = app.authority.certs(&identity, admin, q).await?;
    Ok(Json(json!({ "certs": rows })).into_response())
}

async fn cert(
    State(app): State<Arc<App>>,
    Auth(identity): Auth,
    Path(serial): Path<String>,
) -> Result<Response, ApiError> {
    let serial = serial.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!("`{serial}` is not a serial number (a decimal u64)"))
    })?;
    let q = CertQuery {
        serial: Some(serial),
        ..Default::default()
    };
    let admin = app.settings.is_admin(&identity);
    let rows = app.authority.certs(&identity, admin, q).await?;
    match rows.into_iter().next() {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(ApiError::not_found(format!(
            "no certificate with serial {serial} that you may see"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

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
}
