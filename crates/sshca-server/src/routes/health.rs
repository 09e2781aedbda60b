//! `GET /healthz` (the store answers) and `GET /metrics` (Prometheus text
//! format); neither is logged per request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.authority.store().health().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => {
            let mut r = ApiError::unavailable("store_unavailable", e.to_string()).into_response();
            *r.body_mut() =
                Body::from(json!({"status": "unavailable", "store": e.to_string()}).to_string());
            r
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}
