//! `sshca serve`: a signing service in front of any sshca backend.
//!
//! Requesters authenticate with a bearer token (`[token.NAME]`, kept as a
//! SHA-256 hash) or a client certificate (chaining to `[server] client_ca`);
//! the identity is matched against each policy's `requesters`; the policy
//! merges the request; the CA signs (every signature verified); the row is
//! committed to the [`sshca_store::Store`]; only then is the certificate
//! returned. See the HTTP API in `docs/server.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use sshca::config::Config;
use sshca::signer::{Error, ErrorKind, Result};
use tokio::net::TcpListener;
use tower_service::Service;

mod app;
mod audit;
mod auth;
mod client;
pub mod config;
mod context;
pub mod dev;
mod error;
mod joins;
mod limit;
mod metrics;
mod oidc;
mod routes;
mod settings;
mod tls;
mod tokens;
mod webhooks;

pub use config::ServiceConfig;
pub use settings::Settings;
pub use sshca_authority::Identity;
pub use tokens::{new_join_token, new_token, token_hash};

use app::{App, Peer};
use sshca_authority::{Authority, AuthorityOptions, SignBounds};

/// Called once with the service's URL when it is listening.
pub type OnListening = Box<dyn FnOnce(&str) + Send>;

/// How `sshca serve` was asked to run.
#[derive(Default)]
pub struct ServeOptions {
    /// Overrides `[server] listen`.
    pub listen: Option<SocketAddr>,
    /// Where to write `{"url", "ca_cert"}` once listening.
    pub ready_file: Option<PathBuf>,
    /// The certificate clients must trust, for the ready file (default:
    /// `tls_cert`).
    pub trust_cert: Option<PathBuf>,
    /// Called with the URL once listening.
    pub on_listening: Option<OnListening>,
    /// Stops the service when it completes (instead of SIGTERM or SIGINT):
    /// for a service run inside another program or a test.
    pub shutdown: Option<Shutdown>,
}

/// A future whose completion stops the service.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("ready_file", &self.ready_file)
            .field("trust_cert", &self.trust_cert)
            .finish_non_exhaustive()
    }
}

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the service until SIGTERM or SIGINT (or [`ServeOptions::shutdown`]),
/// then stops accepting, finishes the requests in flight and returns.
pub async fn serve(config: Config, mut options: ServeOptions) -> Result<()> {
    let service = ServiceConfig::from_config(&config)?;
    let settings = Settings::from_config(&config, &service, options.listen)?;
    let tls = tls::server_config(&settings)?;
    let store = sshca_store::open(
        &settings.store,
        &sshca_store::StoreOptions {
            write_timeout: settings.store_timeout,
            pool_size: settings.store_pool,
            replica_id: settings.replica_id.clone(),
            ..Default::default()
        },
    )
    .await?;
    let cas = sshca_authority::open_cas(&config).await?;
    let oidc = oidc::Issuers::new(&service.oidc).await?;
    let joins = joins::Joins::new(&service.joins).await?;
    for (name, ca) in &config.cas {
        let pinned = ca.pin.is_some()
            || sshca::signer::KeyUri::parse(&ca.key).is_ok_and(|u| u.option("pin").is_some());
        if ca.key.starts_with("wrapped:") && !pinned {
            tracing::warn!(
                ca = %name,
                "a wrapped: CA key without `pin`: a swapped file would sign under another key; \
                 set pin = \"SHA256:...\" (sshca pubkey prints it)"
            );
        }
    }
    for (policy, what) in config.changed_defaults() {
        tracing::warn!(policy = %policy, "policy defaults changed: {what}");
    }
    if cas.is_empty() {
        tracing::warn!("no policy is configured: every sign request will get 404");
    }
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot listen on {}", settings.listen),
        )
        .with_source(e)
    })?;
    let addr = listener.local_addr().map_err(|e| {
        Error::new(ErrorKind::Io, "cannot read the listening address").with_source(e)
    })?;
    let metrics = Arc::new(metrics::Metrics::new());
    let audit = audit::Audit::start(
        &service.audits,
        store.clone(),
        &settings.replica_id,
        service.server.data_dir.as_deref(),
        metrics.clone(),
    )
    .await?;
    let authority = Authority::with_cas(
        config,
        cas,
        store,
        AuthorityOptions {
            bounds: Some(SignBounds::new(
                settings.max_concurrent_signs,
                settings.request_timeout,
            )),
            observer: metrics.clone(),
            webhooks: if service.webhooks.is_empty() {
                None
            } else {
                Some(Arc::new(webhooks::HttpWebhooks::open(
                    &service.webhooks,
                    metrics.clone(),
                )?))
            },
        },
    );
    let url = format!("https://{addr}");
    let public_url = service
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| url.clone());
    let app = Arc::new(App {
        public_url,
        tokens: tokens::Tokens::new(&service.tokens),
        oidc,
        joins,
        limiter: settings
            .rate_limit
            .map(|(n, secs)| limit::RateLimiter::new(n, secs)),
        unauthenticated: settings
            .unauthenticated_limit
            .map(|(n, secs)| limit::RateLimiter::new(n, secs)),
        audit_sample: Default::default(),
        audit,
        metrics,
        authority,
        service,
        settings,
    });
    tracing::info!(%url, store = %app.authority.store().describe(), policies = app.authority.config().policies.len(), "listening");
    if let Some(path) = &options.ready_file {
        let trust = options
            .trust_cert
            .clone()
            .unwrap_or_else(|| app.settings.tls_cert.clone());
        write_ready_file(path, &url, &trust)?;
    }
    if let Some(f) = options.on_listening.take() {
        f(&url);
    }
    let router = routes::router(app.clone());
    // SIGHUP reopens the audit files (logrotate); it no longer stops the
    // service.
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let app = app.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening the audit files");
                app.audit.reopen();
            }
        });
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown: Shutdown = options
        .shutdown
        .take()
        .unwrap_or_else(|| Box::pin(shutdown_signal()));
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = Peer {
                client_cert: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| auth::cert_identity(c)),
                addr: Some(addr),
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    let mut router = router.clone();
                    async move { router.call(req.map(axum::body::Body::new)).await }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing the requests in flight");
    let grace = app.settings.request_timeout + app.settings.store_timeout + Duration::from_secs(5);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some connections did not finish within {} s",
            grace.as_secs()
        );
    }
    // The requests in flight wrote their events; the sinks' workers end
    // (what they have not delivered waits in the store).
    app.audit.stop();
    tracing::info!("stopped");
    Ok(())
}

fn write_ready_file(path: &Path, url: &str, trust: &Path) -> Result<()> {
    let trust = std::path::absolute(trust).unwrap_or_else(|_| trust.to_owned());
    let text = serde_json::json!({"url": url, "ca_cert": trust}).to_string();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e: std::io::Error| Error::io("cannot write the ready file", path, &e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
