//! An sshca backend written outside the workspace: the `demo:` scheme.
//!
//! `demo:NAME` names an Ed25519 key derived from `NAME` (a stand-in for a
//! key held by some service: a real backend would fetch the public key from
//! it when the key is opened, and send each signature request to it). The
//! crate shows the whole recipe:
//!
//! 1. a signer holding a [`FixedKey`] (URI, public key, algorithms, fixed
//!    when the key is opened);
//! 2. [`FixedKeyBackend`]: `fixed_key` hands out the `FixedKey`, and
//!    `sign_checked` returns an SSH signature for an algorithm already
//!    checked against the key (a service's native signature would be
//!    converted with `sshca_core::convert::native_to_ssh`);
//!    `sshca_signer::fixed_key_signer!` makes it a whole [`KeySigner`];
//! 3. [`register`]: the scheme in a [`Registry`], whose `open` adds the
//!    public-key cache, the `pin=` check and verification of every
//!    signature;
//! 4. tests that call `sshca_signer::conformance::run_all` (see
//!    `tests/conformance.rs`).

use async_trait::async_trait;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::{Algorithm, KeyData, SigAlg, Signature};
use sshca_signer::{
    Error, ErrorKind, FixedKey, FixedKeyBackend, KeySigner, KeyUri, Registry, Result,
};

/// The scheme.
pub const SCHEME: &str = "demo";

/// A `demo:` key.
pub struct DemoSigner {
    key: FixedKey,
    secret: SigningKey,
}

impl std::fmt::Debug for DemoSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("DemoSigner")
            .field("uri", &self.key.uri().to_string())
            .finish_non_exhaustive()
    }
}

impl DemoSigner {
    /// Opens `demo:NAME`: a missing name is `NotFound`, as a missing key of
    /// a service would be.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        uri.check_options(&[])?;
        let name = uri.location().to_owned();
        if name.is_empty() || name == "missing" {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("`{uri}`: no such demo key"),
            ));
        }
        let seed: [u8; 32] = Sha256::digest(name.as_bytes()).into();
        let secret = SigningKey::from_bytes(&seed);
        let public = KeyData::Ed25519(Ed25519PublicKey(secret.verifying_key().to_bytes()));
        Ok(Self {
            key: FixedKey::new(uri, public, vec![SigAlg::Ed25519]),
            secret,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for DemoSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, _alg: SigAlg, message: &[u8]) -> Result<Signature> {
        // The only algorithm the key signs with (already checked).
        let sig = self.secret.sign(message);
        Signature::new(Algorithm::Ed25519, sig.to_bytes().to_vec())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("signature: {e}")))
    }
}

sshca_signer::fixed_key_signer!(DemoSigner);

/// Registers `demo:` (a local key: no retries needed; a service's backend
/// would use `register_remote`, which adds them).
pub fn register(r: &mut Registry) {
    r.register(SCHEME, |uri| {
        Box::pin(async move {
            let s: std::sync::Arc<dyn KeySigner> =
                std::sync::Arc::new(DemoSigner::open(uri).await?);
            Ok(s)
        })
    });
}
