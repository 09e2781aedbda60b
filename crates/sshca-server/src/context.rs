//! The request context, made by a layer around each tracked route: the
//! request id and route name, and what the handler and the authentication
//! extractor learnt (identity, policy, serial). When the answer is ready the
//! layer logs it once, counts sign requests, audits refusals and tags the
//! answer with `X-Request-Id`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::MethodRouter;
use sshca::core::text::cap;
use sshca_authority::{unix_now, Identity};
use sshca_store::AuditEvent;

use crate::app::App;
use crate::error::{ApiError, Outcome};

/// What a request's handler learnt.
#[derive(Debug, Default)]
struct Facts {
    identity: Option<Identity>,
    /// A configured policy's name (never what the client typed otherwise).
    policy: Option<String>,
    serial: Option<u64>,
    /// The client's address (its rate-limit key).
    client: Option<String>,
    /// The client's address as the trusted proxies report it.
    client_ip: Option<std::net::IpAddr>,
}

/// One request's context, shared by the layer, the extractors and the
/// handler.
#[derive(Debug, Clone)]
pub(crate) struct Ctx(Arc<(String, Mutex<Facts>)>);

impl Ctx {
    fn new() -> Self {
        let mut b = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        Self(Arc::new((hex::encode(b), Mutex::new(Facts::default()))))
    }

    fn facts(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.0 .1.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request id.
    pub fn id(&self) -> &str {
        &self.0 .0
    }

    /// Who is asking.
    pub fn set_identity(&self, identity: &Identity) {
        self.facts().identity = Some(identity.clone());
    }

    /// The configured policy the request is for.
    pub fn set_policy(&self, policy: &str) {
        self.facts().policy = Some(policy.to_owned());
    }

    /// The client's address and its rate-limit key.
    pub fn set_client(&self, ip: std::net::IpAddr, bucket: &str) {
        let mut facts = self.facts();
        facts.client = Some(bucket.to_owned());
        facts.client_ip = Some(ip);
    }

    /// The client's address, once authentication read it.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.facts().client_ip
    }

    /// The serial of the certificate issued.
    pub fn set_serial(&self, serial: u64) {
        self.facts().serial = Some(serial);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Every tracked route has one; an untracked one gets its own.
        Ok(parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .unwrap_or_else(Ctx::new))
    }
}

/// `method_router` with the request context layer, its requests logged as
/// `route`.
pub(crate) fn tracked(
    app: &Arc<App>,
    route: &'static str,
    method_router: MethodRouter<Arc<App>>,
) -> MethodRouter<Arc<App>> {
    method_router.layer(axum::middleware::from_fn_with_state(
        app.clone(),
        move |State(app): State<Arc<App>>, req: Request, next: Next| track(app, route, req, next),
    ))
}

/// Routes that issue certificates: a required audit sink that cannot take
/// events stops them before anything is signed.
const ISSUING: [&str; 4] = ["sign", "renew", "join", "approve"];

async fn track(app: Arc<App>, route: &'static str, mut req: Request, next: Next) -> Response {
    let ctx = Ctx::new();
    let started = Instant::now();
    req.extensions_mut().insert(ctx.clone());
    let gate = if ISSUING.contains(&route) && req.method() == axum::http::Method::POST {
        app.audit.ready()
    } else {
        Ok(())
    };
    let mut response = match gate {
        Ok(()) => next.run(req).await,
        Err(sink) => axum::response::IntoResponse::into_response(ApiError::unavailable(
            "audit_unavailable",
            format!("the audit sink `{sink}` cannot take events now; nothing was issued"),
        )),
    };
    let status = response.status();
    let (code, reason) = match response.extensions().get::<Outcome>() {
        Some(o) => (o.code, o.reason.clone()),
        None if status.is_client_error() => ("bad_request", String::new()),
        None if status.is_server_error() => ("internal", String::new()),
        None => ("ok", String::new()),
    };
    let facts = std::mem::take(&mut *ctx.facts());
    let policy = facts.policy.as_deref().unwrap_or("-");
    if route == "sign" {
        app.metrics.request(policy, code);
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Whatever a client sent that is stored or logged is capped.
    let reason = cap(&reason).into_owned();
    let identity = facts.identity.as_ref().map(|i| cap(&i.name).into_owned());
    let source = facts.identity.as_ref().map(|i| i.source.as_str());
    tracing::info!(
        target: "sshca::request",
        request_id = %ctx.id(),
        route,
        identity = identity.as_deref().unwrap_or("-"),
        source = source.unwrap_or("-"),
        client = facts.client.as_deref().unwrap_or("-"),
        policy,
        status = status.as_u16(),
        outcome = code,
        serial = facts.serial.map(|s| s.to_string()).unwrap_or_default(),
        duration_ms = format!("{ms:.2}"),
        reason = %reason,
    );
    let refused = status.is_client_error() || status.is_server_error();
    // Refused before an identity was established: counted, and audited at
    // most once per address and minute (a flood of wrong tokens writes
    // nothing but a counter).
    let unauthenticated = refused && facts.identity.is_none() && (status == 401 || status == 429);
    if unauthenticated {
        app.metrics.unauthenticated(code);
    }
    let audited = refused
        && (!unauthenticated
            || app
                .audit_sample
                .allow(facts.client.as_deref().unwrap_or("-"), unix_now()));
    if audited {
        let event = AuditEvent {
            identity,
            auth_source: source.map(str::to_owned),
            claims: facts
                .identity
                .as_ref()
                .map(|i| sshca_authority::audit_claims(&i.claims))
                .unwrap_or_default(),
            policy: facts.policy.clone(),
            status: status.as_u16(),
            outcome: if status.is_server_error() {
                "failed"
            } else {
                "refused"
            }
            .into(),
            code: code.to_owned(),
            reason,
            ..AuditEvent::new("refuse", ctx.id(), unix_now())
        };
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = app.authority.store().audit(&event).await {
                tracing::warn!(request_id = %event.request_id, error = %e.report(), "cannot write the audit row");
            }
            app.audit.wake();
        });
    } else if status.is_success() {
        // An issuance, a revocation, a KRL build: its event is in the store.
        app.audit.wake();
    }
    if let Ok(v) = ctx.id().parse() {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
