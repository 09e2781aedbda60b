//! Signers that wrap a signer: each implements [`KeySigner`] and forwards
//! every method to the inner signer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand_core::{OsRng, RngCore};
use sshca_core::{HashAlg, KeyData, PreparedCa, SigAlg, Signature};
use tokio::sync::Semaphore;

use crate::{verify_prepared, Error, ErrorKind, KeySigner, KeyUri, Result};

/// Fetches the public key and the algorithm list once, when built, prepares
/// the key for issuing ([`PreparedCa`]), and checks the URI's
/// `pin=SHA256:...` option against the key's fingerprint.
#[derive(Debug)]
pub struct CachedSigner<S> {
    inner: S,
    prepared: Arc<PreparedCa>,
}

impl<S: KeySigner> CachedSigner<S> {
    /// Fetches the public key of `inner` (one call) and checks the pin.
    pub async fn new(inner: S) -> Result<Self> {
        let public_key = inner.public_key().await?;
        let algorithms = inner.algorithms().await?;
        if let Some(pin) = inner.uri().option("pin") {
            let fp = public_key.fingerprint(HashAlg::Sha256).to_string();
            if fp != pin {
                return Err(Error::new(
                    ErrorKind::BadResponse,
                    format!(
                        "key {} has fingerprint {fp}, but the URI pins {pin}; refusing to use it",
                        inner.uri()
                    ),
                ));
            }
        }
        let prepared = PreparedCa::with_algorithms(&public_key, algorithms).map_err(|e| {
            Error::new(ErrorKind::BadResponse, e.to_string())
                .context(format!("key {}", inner.uri()))
        })?;
        Ok(Self {
            inner,
            prepared: Arc::new(prepared),
        })
    }

    /// The inner signer.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: KeySigner> KeySigner for CachedSigner<S> {
    fn uri(&self) -> &KeyUri {
        self.inner.uri()
    }
    async fn public_key(&self) -> Result<KeyData> {
        Ok(self.prepared.key().clone())
    }
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        Ok(self.prepared.algorithms().to_vec())
    }
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        self.inner.sign(alg, message).await
    }
    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        Ok(self.prepared.clone())
    }
    fn verifies_signatures(&self) -> bool {
        self.inner.verifies_signatures()
    }
}

/// Verifies every signature of the inner signer under its public key: a
/// signature that does not verify is an error of kind
/// [`ErrorKind::BadResponse`] and is never returned.
#[derive(Debug)]
pub struct VerifyingSigner<S> {
    inner: S,
}

impl<S: KeySigner> VerifyingSigner<S> {
    /// Wraps `inner` (wrap a [`CachedSigner`] so the key is not refetched).
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl<S: KeySigner> KeySigner for VerifyingSigner<S> {
    fn uri(&self) -> &KeyUri {
        self.inner.uri()
    }
    async fn public_key(&self) -> Result<KeyData> {
        self.inner.public_key().await
    }
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        self.inner.algorithms().await
    }
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let sig = self.inner.sign(alg, message).await?;
        let key = self.inner.prepared_ca().await?;
        verify_prepared(&key, message, &sig)
            .map_err(|e| e.context(format!("signature from {}", self.uri())))?;
        Ok(sig)
    }
    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        self.inner.prepared_ca().await
    }
    fn verifies_signatures(&self) -> bool {
        true
    }
}

/// Limits how many signatures are in flight at once.
#[derive(Debug)]
pub struct LimitSigner<S> {
    inner: S,
    permits: Semaphore,
}

impl<S: KeySigner> LimitSigner<S> {
    /// At most `max_concurrent` (at least 1) signatures at once.
    pub fn new(inner: S, max_concurrent: usize) -> Self {
        Self {
            inner,
            permits: Semaphore::new(max_concurrent.max(1)),
        }
    }
}

#[async_trait]
impl<S: KeySigner> KeySigner for LimitSigner<S> {
    fn uri(&self) -> &KeyUri {
        self.inner.uri()
    }
    async fn public_key(&self) -> Result<KeyData> {
        self.inner.public_key().await
    }
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        self.inner.algorithms().await
    }
    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        self.inner.prepared_ca().await
    }
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let _permit = self.permits.acquire().await.map_err(|_| {
            Error::new(ErrorKind::Unavailable, "the concurrency limiter was closed")
        })?;
        self.inner.sign(alg, message).await
    }
    fn verifies_signatures(&self) -> bool {
        self.inner.verifies_signatures()
    }
}

/// Retry settings: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff ceiling of the first retry.
    pub initial_backoff: Duration,
    /// Backoff ceiling cap.
    pub max_backoff: Duration,
    /// Timeout of each attempt.
    pub request_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// Key URI options that tune retries: `retries=N` (retries after the
    /// first attempt), `timeout=SECS` (per attempt, fractional allowed) and
    /// `backoff-ms=MS` (ceiling of the first backoff).
    pub const URI_OPTIONS: &'static [&'static str] = &["retries", "timeout", "backoff-ms"];

    /// The defaults, changed by the URI's `retries`, `timeout` and
    /// `backoff-ms` options.
    pub fn from_uri(uri: &KeyUri) -> Result<Self> {
        let mut c = Self::default();
        let bad = |name: &str, v: &str, want: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("key URI `{uri}`: option {name}={v:?} is not {want}"),
            )
        };
        if let Some(v) = uri.option("retries") {
            c.max_retries = v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 100)
                .ok_or_else(|| bad("retries", v, "a number from 0 to 100"))?;
        }
        if let Some(v) = uri.option("timeout") {
            c.request_timeout = v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad("timeout", v, "seconds between 0 and 3600"))?;
        }
        if let Some(v) = uri.option("backoff-ms") {
            c.initial_backoff = v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 60_000)
                .map(Duration::from_millis)
                .ok_or_else(|| bad("backoff-ms", v, "milliseconds from 0 to 60000"))?;
        }
        Ok(c)
    }

    /// The sleep before retry `attempt` (0-based): uniform in [0, ceiling].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(OsRng.next_u64() % (nanos + 1))
    }
}

/// Retries temporary errors (throttling, unavailability, timeouts) with
/// jittered exponential backoff, within [`RetryConfig`]'s bounds.
#[derive(Debug)]
pub struct RetrySigner<S> {
    inner: S,
    config: RetryConfig,
}

impl<S: KeySigner> RetrySigner<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        Self { inner, config }
    }

    async fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        with_retries(&self.config, what, f).await
    }
}

/// Runs `f` under `config`: each attempt bounded by the request timeout,
/// temporary errors retried with jittered exponential backoff, and a clear
/// "failed after N attempts" error when the retries are exhausted.
pub async fn with_retries<T, F, Fut>(config: &RetryConfig, what: &str, f: F) -> Result<T>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<T>> + Send,
    T: Send,
{
    let mut attempt = 0;
    loop {
        let res = match tokio::time::timeout(config.request_timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what} timed out after {:?}", config.request_timeout),
            )),
        };
        match res {
            Err(e) if e.is_temporary() && attempt < config.max_retries => {
                let wait = config.backoff(attempt);
                tracing::debug!(%e, attempt, ?wait, "retrying {what}");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) if e.is_temporary() => {
                return Err(e.context(format!("{what} failed after {} attempts", attempt + 1)))
            }
            other => return other,
        }
    }
}

#[async_trait]
impl<S: KeySigner> KeySigner for RetrySigner<S> {
    fn uri(&self) -> &KeyUri {
        self.inner.uri()
    }
    async fn public_key(&self) -> Result<KeyData> {
        self.run("fetching the public key", || self.inner.public_key())
            .await
    }
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        self.run("listing algorithms", || self.inner.algorithms())
            .await
    }
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        self.run("signing", || self.inner.sign(alg, message)).await
    }
    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        self.run("fetching the public key", || self.inner.prepared_ca())
            .await
    }
    fn verifies_signatures(&self) -> bool {
        self.inner.verifies_signatures()
    }
}
