//! Key-encryption keys: a KMS key that wraps and unwraps a data key, so a
//! CA key can be stored encrypted under it (`wrapped:` keys).

use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::{KeyUri, Result};

/// What a wrapped blob is bound to: the KMS sees it as encryption context
/// or additional authenticated data, so a blob made for one purpose or key
/// cannot be unwrapped for another (and the KMS audit log names both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapContext {
    /// What the data key protects (`ssh-ca-key`).
    pub purpose: String,
    /// Which key it protects (the CA key's SHA256 fingerprint).
    pub key_id: String,
}

impl WrapContext {
    /// The context as bytes, for services that take opaque additional
    /// authenticated data: `sshca-wrap v1 \0 purpose \0 key_id`.
    pub fn aad(&self) -> Vec<u8> {
        format!("sshca-wrap v1\0{}\0{}", self.purpose, self.key_id).into_bytes()
    }
}

/// A key-encryption key held by a KMS.
#[async_trait]
pub trait KeyWrapper: Send + Sync + std::fmt::Debug {
    /// The KEK's URI.
    fn uri(&self) -> &KeyUri;

    /// Encrypts `plaintext` (a data key) under the KEK, bound to `ctx`.
    async fn wrap(&self, plaintext: &[u8], ctx: &WrapContext) -> Result<Vec<u8>>;

    /// Decrypts what [`KeyWrapper::wrap`] returned for the same `ctx`.
    async fn unwrap(&self, blob: &[u8], ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>>;
}

/// The future a wrapper constructor returns.
pub type WrapperFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<dyn KeyWrapper>>> + Send>>;
