//! The async backend trait of sshca and what surrounds it.
//!
//! - [`KeySigner`]: "a key that signs", object-safe and async; every backend
//!   (local file, AWS KMS, Google Cloud KMS, Azure Key Vault, EKM) implements it.
//! - [`SignerExt`]: conveniences over any signer, above all
//!   [`SignerExt::sign_certificate`] (two-phase signing, always verified).
//! - [`KeyUri`] and [`Registry`]: one string names a key on any backend.
//! - Wrappers implementing the same trait around an inner signer:
//!   [`CachedSigner`] (public key fetched once, fingerprint pin),
//!   [`VerifyingSigner`] (a signature that does not verify is an error),
//!   [`LimitSigner`] (concurrency limit), [`RetrySigner`] (jittered backoff).
//! - [`KeyWrapper`]: a KMS key-encryption key (`wrapped:` CA keys), opened
//!   through the same [`Registry`].
//! - `conformance` (feature): the suite every backend's tests run.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
pub use sshca_core::PreparedCa;
use sshca_core::{CertTemplate, Certificate, KeyData, SigAlg, Signature, TbsCertificate};

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod probe;
mod registry;
mod secret;
mod uri;
mod wrap;
mod wrappers;

pub use error::{Error, ErrorKind, Result};
pub use registry::{Registry, SignerFuture, BACKEND_FEATURES};
pub use secret::Secret;
pub use uri::KeyUri;
pub use wrap::{KeyWrapper, WrapContext, WrapperFuture};
pub use wrappers::{
    with_retries, CachedSigner, LimitSigner, RetryConfig, RetrySigner, VerifyingSigner,
};

/// A key that signs: the trait every backend implements.
///
/// `sign` receives the whole message (for certificates, the to-be-signed
/// bytes); a backend that signs digests hashes it as `alg` requires and
/// converts its native signature into an SSH signature with
/// [`sshca_core::convert`].
#[async_trait]
pub trait KeySigner: Send + Sync + fmt::Debug {
    /// The key's URI.
    fn uri(&self) -> &KeyUri;

    /// The public key (backends may fetch it remotely; wrap in
    /// [`CachedSigner`] to fetch it once).
    async fn public_key(&self) -> Result<KeyData>;

    /// The signature algorithms this key can produce, the preferred first.
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        Ok(SigAlg::for_key(&self.public_key().await?)?)
    }

    /// Signs `message` with `alg`, returning an SSH signature.
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature>;

    /// The public key prepared for issuing ([`PreparedCa`]: its blob, its
    /// algorithms from [`KeySigner::algorithms`], its verifier). Signers
    /// whose key is fixed when opened ([`CachedSigner`], local keys) prepare
    /// it once and return it; the default prepares it on every call.
    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        let key = self.public_key().await?;
        Ok(Arc::new(PreparedCa::with_algorithms(
            &key,
            self.algorithms().await?,
        )?))
    }

    /// Whether every signature this signer returns has already been verified
    /// under its public key ([`VerifyingSigner`] says so; wrappers that do not
    /// alter signatures forward it; everything else keeps the default
    /// `false`). [`SignerExt::sign_certificate`] verifies itself otherwise.
    fn verifies_signatures(&self) -> bool {
        false
    }
}

/// Forwards every [`KeySigner`] method through a smart pointer.
macro_rules! forward_signer {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: KeySigner + ?Sized> KeySigner for $ptr<T> {
            fn uri(&self) -> &KeyUri {
                (**self).uri()
            }
            async fn public_key(&self) -> Result<KeyData> {
                (**self).public_key().await
            }
            async fn algorithms(&self) -> Result<Vec<SigAlg>> {
                (**self).algorithms().await
            }
            async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
                (**self).sign(alg, message).await
            }
            async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
                (**self).prepared_ca().await
            }
            fn verifies_signatures(&self) -> bool {
                (**self).verifies_signatures()
            }
        }
    )*};
}

forward_signer!(Arc, Box);

/// Type and size of a key to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// Ed25519.
    Ed25519,
    /// ECDSA on P-256, P-384 or P-521 (the bit size).
    Ecdsa(u32),
    /// RSA of 2048, 3072 or 4096 bits.
    Rsa(u32),
}

impl KeySpec {
    /// From `-t TYPE [-b BITS]`: `ed25519`, `ecdsa` (256 default, 384, 521),
    /// `rsa` (3072 default, 2048, 4096).
    pub fn parse(key_type: &str, bits: Option<u32>) -> Result<Self> {
        let bad = |m: String| Error::new(ErrorKind::InvalidInput, m);
        match (key_type, bits) {
            ("ed25519", None | Some(256)) => Ok(KeySpec::Ed25519),
            ("ed25519", Some(b)) => Err(bad(format!("ed25519 keys have 256 bits, not {b}"))),
            ("ecdsa" | "ec", None) => Ok(KeySpec::Ecdsa(256)),
            ("ecdsa" | "ec", Some(b @ (256 | 384 | 521))) => Ok(KeySpec::Ecdsa(b)),
            ("ecdsa" | "ec", Some(b)) => Err(bad(format!(
                "ecdsa keys have 256, 384 or 521 bits, not {b}"
            ))),
            ("rsa", None) => Ok(KeySpec::Rsa(3072)),
            ("rsa", Some(b @ (2048 | 3072 | 4096))) => Ok(KeySpec::Rsa(b)),
            ("rsa", Some(b)) => Err(bad(format!(
                "rsa keys have 2048, 3072 or 4096 bits, not {b}"
            ))),
            (t, _) => Err(bad(format!(
                "unknown key type `{t}` (expected ed25519, ecdsa or rsa)"
            ))),
        }
    }
}

/// Checks, at the top of a backend's `sign`, that `alg` is one of the
/// algorithms the key offers; otherwise an [`ErrorKind::Unsupported`] error
/// naming the key, what it offers and what was asked.
pub fn check_algorithm(uri: &KeyUri, offered: &[SigAlg], alg: SigAlg) -> Result<()> {
    if offered.contains(&alg) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "`{uri}` cannot sign with {alg} (it signs with: {})",
            names(offered)
        ),
    ))
}

/// `a, b, c`: the SSH names of `algs`, for errors.
fn names(algs: &[SigAlg]) -> String {
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// What a remote signer fixes when it is opened: its URI, the public key and
/// the algorithms the key signs with. A backend keeps one and implements
/// [`FixedKeyBackend`]; [`fixed_key_signer!`] answers
/// [`KeySigner::uri`], [`KeySigner::public_key`] and
/// [`KeySigner::algorithms`] from it and calls [`FixedKey::check`] before
/// signing.
#[derive(Debug, Clone)]
pub struct FixedKey {
    uri: KeyUri,
    public: KeyData,
    algorithms: Vec<SigAlg>,
}

impl FixedKey {
    /// The facts of an opened key.
    pub fn new(uri: KeyUri, public: KeyData, algorithms: Vec<SigAlg>) -> Self {
        Self {
            uri,
            public,
            algorithms,
        }
    }

    /// The key URI.
    pub fn uri(&self) -> &KeyUri {
        &self.uri
    }

    /// The public key.
    pub fn public_key(&self) -> KeyData {
        self.public.clone()
    }

    /// The algorithms the key signs with, preferred first.
    pub fn algorithms(&self) -> Vec<SigAlg> {
        self.algorithms.clone()
    }

    /// [`check_algorithm`] against the key's algorithms.
    pub fn check(&self, alg: SigAlg) -> Result<()> {
        check_algorithm(&self.uri, &self.algorithms, alg)
    }
}

/// A backend whose key is fixed when it is opened (a [`FixedKey`]): it
/// only signs, with an algorithm already checked against the key;
/// [`fixed_key_signer!`] makes it a whole [`KeySigner`] (the URI, public
/// key and algorithms from the [`FixedKey`], the check before
/// [`FixedKeyBackend::sign_checked`]).
///
/// ```
/// use async_trait::async_trait;
/// use sshca_core::{SigAlg, Signature};
/// use sshca_signer::{Error, ErrorKind, FixedKey, FixedKeyBackend, Result};
///
/// #[derive(Debug)]
/// struct MySigner {
///     key: FixedKey,
/// }
///
/// #[async_trait]
/// impl FixedKeyBackend for MySigner {
///     fn fixed_key(&self) -> &FixedKey {
///         &self.key
///     }
///     async fn sign_checked(&self, _alg: SigAlg, _message: &[u8]) -> Result<Signature> {
///         // A real backend asks its key service here.
///         Err(Error::new(ErrorKind::Unavailable, "the key service is away"))
///     }
/// }
/// sshca_signer::fixed_key_signer!(MySigner);
///
/// fn is_signer<T: sshca_signer::KeySigner>() {}
/// is_signer::<MySigner>();
/// ```
#[async_trait]
pub trait FixedKeyBackend: Send + Sync + fmt::Debug {
    /// What was fixed when the key was opened.
    fn fixed_key(&self) -> &FixedKey;

    /// Signs `message` with `alg`, which the key signs with.
    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature>;
}

/// Implements [`KeySigner`] for types that implement [`FixedKeyBackend`]
/// (a per-type impl, so that it stands beside the `Box`/`Arc` forwarding).
#[macro_export]
macro_rules! fixed_key_signer {
    ($($ty:ty),+ $(,)?) => {$(
        #[$crate::__private::async_trait]
        impl $crate::KeySigner for $ty {
            fn uri(&self) -> &$crate::KeyUri {
                $crate::FixedKeyBackend::fixed_key(self).uri()
            }
            async fn public_key(&self) -> $crate::Result<$crate::__private::KeyData> {
                Ok($crate::FixedKeyBackend::fixed_key(self).public_key())
            }
            async fn algorithms(
                &self,
            ) -> $crate::Result<Vec<$crate::__private::SigAlg>> {
                Ok($crate::FixedKeyBackend::fixed_key(self).algorithms())
            }
            async fn sign(
                &self,
                alg: $crate::__private::SigAlg,
                message: &[u8],
            ) -> $crate::Result<$crate::__private::Signature> {
                $crate::FixedKeyBackend::fixed_key(self).check(alg)?;
                $crate::FixedKeyBackend::sign_checked(self, alg, message).await
            }
        }
    )+};
}

/// What [`fixed_key_signer!`] names, for crates that do not depend on
/// them directly.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use sshca_core::{KeyData, SigAlg, Signature};
}

/// Conveniences over any [`KeySigner`].
#[async_trait]
pub trait SignerExt: KeySigner {
    /// Picks the signature algorithm: `wanted` if the key supports it, else
    /// an error naming what it supports; the key's preferred one when `None`.
    async fn choose_algorithm(&self, wanted: Option<SigAlg>) -> Result<SigAlg> {
        pick_algorithm(self.uri(), &self.algorithms().await?, wanted)
    }

    /// Signs `msg` as `ssh-keygen -Y sign` does (an SSHSIG over its hash in
    /// `namespace`); RSA keys sign with rsa-sha2-512 as ssh-keygen does. The
    /// signature is verified before it is returned.
    async fn sign_sshsig(
        &self,
        namespace: &str,
        hash_alg: sshca_core::HashAlg,
        msg: &[u8],
    ) -> Result<sshca_core::ssh_key::SshSig> {
        let invalid = |e: sshca_core::ssh_key::Error| {
            Error::new(ErrorKind::InvalidInput, format!("SSHSIG: {e}"))
        };
        let data =
            sshca_core::ssh_key::SshSig::signed_data(namespace, hash_alg, msg).map_err(invalid)?;
        let algs = self.algorithms().await?;
        let alg = if algs.contains(&SigAlg::RsaSha512) {
            SigAlg::RsaSha512
        } else {
            self.choose_algorithm(None).await?
        };
        let sig = self.sign(alg, &data).await?;
        let public = self.public_key().await?;
        if !self.verifies_signatures() {
            verify_signature(&public, &data, &sig)?;
        }
        sshca_core::ssh_key::SshSig::new(public, namespace, hash_alg, sig).map_err(invalid)
    }

    /// Issues a certificate for `subject`: encodes the to-be-signed bytes,
    /// signs them once, and assembles the certificate, which is verified under
    /// the CA public key; a signature that does not verify is an error and no
    /// certificate is returned.
    async fn sign_certificate(
        &self,
        template: &CertTemplate,
        subject: &KeyData,
        alg: Option<SigAlg>,
    ) -> Result<Certificate> {
        let ca = self.prepared_ca().await?;
        let alg = pick_algorithm(self.uri(), ca.algorithms(), alg)?;
        let tbs = TbsCertificate::encode_prepared(template, subject, &ca)?;
        let sig = self.sign(alg, tbs.as_bytes()).await?;
        if sig.algorithm() != alg.algorithm() {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "{} returned a {} signature, {alg} was asked for",
                    self.uri(),
                    sig.algorithm().as_str()
                ),
            ));
        }
        let assembled = if self.verifies_signatures() {
            tbs.assemble_unverified(sig)
        } else {
            tbs.assemble(sig)
        };
        assembled.map_err(|e| {
            Error::new(ErrorKind::BadResponse, e.to_string())
                .context(format!("signature from {}", self.uri()))
        })
    }
}

impl<T: KeySigner + ?Sized> SignerExt for T {}

/// `wanted` if `offered` holds it, else an error naming what is offered;
/// the first offered when `None`.
fn pick_algorithm(uri: &KeyUri, offered: &[SigAlg], wanted: Option<SigAlg>) -> Result<SigAlg> {
    match wanted {
        Some(a) if offered.contains(&a) => Ok(a),
        Some(a) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key {uri} cannot sign with {a} (it supports: {})",
                names(offered)
            ),
        )),
        None => offered.first().copied().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidKey,
                format!("key {uri} supports no algorithm"),
            )
        }),
    }
}

/// [`verify_signature`] under a prepared key (nothing of the key is parsed
/// again).
pub fn verify_prepared(key: &PreparedCa, message: &[u8], sig: &Signature) -> Result<()> {
    if key.verifies(message, sig) {
        return Ok(());
    }
    Err(bad_signature(key.key(), sig))
}

fn bad_signature(key: &KeyData, sig: &Signature) -> Error {
    Error::new(
        ErrorKind::BadResponse,
        format!(
            "the {} signature does not verify under the public key {}",
            sig.algorithm().as_str(),
            key.fingerprint(sshca_core::HashAlg::Sha256)
        ),
    )
}

/// Checks `sig` over `message` under `key`; an error of kind
/// [`ErrorKind::BadResponse`] when it does not verify.
pub fn verify_signature(key: &KeyData, message: &[u8], sig: &Signature) -> Result<()> {
    if sshca_core::verify::verifies(key, message, sig) {
        return Ok(());
    }
    Err(bad_signature(key, sig))
}
