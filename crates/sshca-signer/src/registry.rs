use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{
    CachedSigner, Error, ErrorKind, KeySigner, KeyUri, Result, RetryConfig, RetrySigner,
    VerifyingSigner,
};

/// The future a scheme constructor returns.
pub type SignerFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn KeySigner>>> + Send>>;

type Constructor = Arc<dyn Fn(KeyUri) -> SignerFuture + Send + Sync>;
type WrapperConstructor = Arc<dyn Fn(KeyUri) -> crate::WrapperFuture + Send + Sync>;

/// Every backend scheme sshca knows and the cargo feature (of the `sshca`
/// facade and CLI) that compiles it in.
pub const BACKEND_FEATURES: [(&str, &str); 8] = [
    ("file", "local"),
    ("awskms", "aws"),
    ("gcpkms", "gcp"),
    ("azurekv", "azure"),
    ("ekm", "ekm"),
    ("pkcs11", "pkcs11"),
    ("ssh-agent", "ssh-agent"),
    ("wrapped", "wrapped"),
];

/// Maps URI schemes to backend constructors; filled by the enabled features.
#[derive(Clone, Default)]
pub struct Registry {
    schemes: BTreeMap<String, Constructor>,
    wrappers: BTreeMap<String, WrapperConstructor>,
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

    /// Registers a remote backend: `open` builds its signer from the URI,
    /// which is then wrapped in a [`RetrySigner`] configured by the URI's
    /// `retries`, `timeout` and `backoff-ms` options.
    pub fn register_remote<S, F, Fut>(&mut self, scheme: &str, open: F)
    where
        S: KeySigner + 'static,
        F: Fn(KeyUri) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S>> + Send + 'static,
    {
        let open = Arc::new(open);
        self.register(scheme, move |uri| {
            let open = open.clone();
            Box::pin(async move {
                let retry = RetryConfig::from_uri(&uri)?;
                let signer = open(uri).await?;
                Ok(Arc::new(RetrySigner::new(signer, retry)) as Arc<dyn KeySigner>)
            })
        });
    }

    /// Registers the key-encryption-key constructor of a scheme.
    pub fn register_wrapper<F>(&mut self, scheme: &str, ctor: F)
    where
        F: Fn(KeyUri) -> crate::WrapperFuture + Send + Sync + 'static,
    {
        self.wrappers.insert(scheme.to_owned(), Arc::new(ctor));
    }

    /// Opens a key-encryption key (a KMS key that wraps data keys).
    pub async fn open_wrapper(&self, uri: &str) -> Result<Arc<dyn crate::KeyWrapper>> {
        let parsed = KeyUri::parse(uri)?;
        let ctor = self.wrappers.get(parsed.scheme()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "key URI `{uri}`: scheme `{}` cannot wrap keys in this build (key-encryption keys: {})",
                    parsed.scheme(),
                    self.wrappers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        ctor(parsed).await
    }

    /// The registered schemes.
    pub fn schemes(&self) -> Vec<&str> {
        self.schemes.keys().map(String::as_str).collect()
    }

    /// Builds the raw backend signer for a URI. A scheme of a backend that
    /// this build leaves out is an error naming the cargo feature that
    /// enables it.
    pub async fn open_raw(&self, uri: &str) -> Result<Arc<dyn KeySigner>> {
        let parsed = KeyUri::parse(uri)?;
        let scheme = parsed.scheme();
        let ctor = self.schemes.get(scheme).ok_or_else(|| {
            let hint = match BACKEND_FEATURES.iter().find(|(s, _)| *s == scheme) {
                Some((_, feature)) => format!(
                    "this build was made without its backend; rebuild with the cargo \
                     feature `{feature}` (e.g. `cargo install sshca-cli --features {feature}`)"
                ),
                None => "no backend has this scheme".to_owned(),
            };
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "key URI `{uri}`: scheme `{scheme}` is not available: {hint} (available: {})",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_left_out_names_its_feature() {
        let r = Registry::new();
        for (uri, feature) in [
            ("awskms:alias/ca", "`aws`"),
            (
                "gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
                "`gcp`",
            ),
            ("azurekv:https://v.vault.azure.net/keys/k", "`azure`"),
            ("ekm:v0/spaces/s/keys/k", "`ekm`"),
            ("file:/etc/ca", "`local`"),
        ] {
            let e = r.open_raw(uri).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            let m = e.to_string();
            assert!(m.contains(&format!("cargo feature {feature}")), "{m}");
        }
        let m = r.open_raw("nosuch:x").await.unwrap_err().to_string();
        assert!(m.contains("no backend has this scheme"), "{m}");
    }
}
