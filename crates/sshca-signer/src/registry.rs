use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{CachedSigner, Error, ErrorKind, KeySigner, KeyUri, Result, VerifyingSigner};

/// The future a scheme constructor returns.
pub type SignerFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn KeySigner>>> + Send>>;

type Constructor = Arc<dyn Fn(KeyUri) -> SignerFuture + Send + Sync>;

/// Maps URI schemes to backend constructors; filled by the enabled features.
#[derive(Clone, Default)]
pub struct Registry {
    schemes: BTreeMap<String, Constructor>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.schemes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the constructor of a scheme.
    pub fn register<F>(&mut self, scheme: &str, ctor: F)
    where
        F: Fn(KeyUri) -> SignerFuture + Send + Sync + 'static,
    {
        self.schemes.insert(scheme.to_owned(), Arc::new(ctor));
    }

    /// The registered schemes.
    pub fn schemes(&self) -> Vec<&str> {
        self.schemes.keys().map(String::as_str).collect()
    }

    /// Builds the raw backend signer for a URI.
    pub async fn open_raw(&self, uri: &str) -> Result<Arc<dyn KeySigner>> {
        let parsed = KeyUri::parse(uri)?;
        let ctor = self.schemes.get(parsed.scheme()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "key URI `{uri}`: scheme `{}` is not available in this build (available: {})",
                    parsed.scheme(),
                    self.schemes().join(", ")
                ),
            )
        })?;
        ctor(parsed).await
    }

    /// Builds a signer ready for certificates: the backend wrapped in
    /// [`CachedSigner`] (public key fetched now, once; `pin=` checked) and
    /// [`VerifyingSigner`] (every signature verified).
    pub async fn open(&self, uri: &str) -> Result<Arc<dyn KeySigner>> {
        let raw = self.open_raw(uri).await?;
        let cached = CachedSigner::new(raw).await?;
        Ok(Arc::new(VerifyingSigner::new(cached)))
    }
}
