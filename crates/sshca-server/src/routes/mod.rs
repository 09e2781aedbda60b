//! The HTTP API: one module per resource, each returning its `Router`,
//! merged here. Every answer to a request with a client's mistake is a 4xx
//! naming what is wrong; 503 (with `Retry-After`) when a backend or the
//! store cannot do its part; each tracked request is logged once and each
//! refusal audited (the request context layer, [`crate::context`]).

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::Router;

use crate::app::App;
use crate::error::ApiError;

mod approvals;
mod ca;
mod certs;
mod health;
mod join;
mod login;
mod renew;
mod request;
mod revoke;
mod sign;
mod vault;

/// The service's routes (plus Vault's SSH engine paths under
/// `/v1/<vault_mount>/` when configured).
pub(crate) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .merge(sign::router(&app))
        .merge(approvals::router(&app))
        .merge(ca::router(&app))
        .merge(revoke::router(&app))
        .merge(certs::router(&app))
        .merge(login::router(&app))
        .merge(renew::router(&app))
        .merge(join::router(&app))
        .merge(health::router());
    if let Some(mount) = app.service.server.vault_mount.as_deref() {
        router = router.merge(vault::router(&app, mount));
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint").into_response() })
        .with_state(app)
}
