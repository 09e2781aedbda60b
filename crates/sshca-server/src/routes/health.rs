//! `GET /healthz` (the store answers) and `GET /metrics` (Prometheus text
//! format); neither is logged per request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;
use crate::auth::Auth;
use crate::error::ApiError;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// 200, or 503 when the store does not answer (its error goes to the log,
/// not to whoever asks: it may name hosts, users and paths).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.authority.store().health().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e.report(), "health check: the store does not answer");
            let mut r = ApiError::unavailable("store_unavailable", "the store does not answer")
                .into_response();
            *r.body_mut() =
                Body::from(json!({"status": "unavailable", "store": "unavailable"}).to_string());
            r
        }
    }
}

/// `[server] metrics`: `public` (default), `admins`, or `off`. Only the
/// `admins` mode authenticates: a public scrape is no failed
/// authentication (it does not spend its address's budget).
async fn metrics(State(app): State<Arc<App>>, mut parts: Parts) -> Result<Response, ApiError> {
    match app.service.server.metrics.as_deref().unwrap_or("public") {
        "off" => return Err(ApiError::not_found("no such endpoint")),
        "admins" => {
            let Auth(identity) = Auth::from_request_parts(&mut parts, &app).await?;
            if !app.settings.is_admin(&identity) {
                return Err(ApiError::forbidden(format!(
                    "`{}` may not read the metrics (only admins may)",
                    identity.qualified()
                )));
            }
        }
        _ => {}
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response())
}
