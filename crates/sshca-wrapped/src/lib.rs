//! sshca backend for CA keys stored encrypted under a KMS key
//! (envelope encryption): `wrapped:PATH`.
//!
//! The file holds the CA private key encrypted with a fresh AES-256-GCM data
//! key, that data key wrapped by a key-encryption key (KEK) in a KMS, the
//! KEK's URI, and the public key in the clear (so `sshca pubkey` needs no KMS
//! call). The signer unwraps the data key once — one KMS `Decrypt` (or
//! `unwrapKey`) per opened signer, at its first signature — decrypts the
//! private key, and signs locally from then on. Key material is zeroized
//! when dropped, never written anywhere, and has no `Debug`.
//!
//! Binding: the data key is wrapped with the context `{purpose:
//! "ssh-ca-key", key_id: <the CA key's SHA256 fingerprint>}` (AWS encryption
//! context, Cloud KMS and EKM additional authenticated data), and the same
//! context is the AES-GCM additional data of the private key. A blob moved
//! to another key id, or altered, does not decrypt.
//!
//! KEKs: `awskms:` (SYMMETRIC_DEFAULT, Encrypt/Decrypt), `gcpkms:` (an
//! ENCRYPT_DECRYPT CryptoKey), `azurekv:` (an RSA key, wrapKey/unwrapKey
//! RSA-OAEP-256), `ekm:` (a GOOGLE_SYMMETRIC_ENCRYPTION key, `:wrap`/
//! `:unwrap`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64ct::{Base64, Encoding};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};
use sshca_core::{SigAlg, Signature};
use sshca_local::LocalSigner;
use sshca_signer::{
    Error, ErrorKind, FixedKey, FixedKeyBackend, KeySigner, KeyUri, Registry, Result, WrapContext,
};
use zeroize::Zeroizing;

/// The URI scheme of this backend.
pub const SCHEME: &str = "wrapped";

/// The file format's name and version.
pub const FORMAT: &str = "sshca-wrapped-key-v1";

/// What the data key protects.
const PURPOSE: &str = "ssh-ca-key";

/// A wrapped key file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The key-encryption key's URI.
    pub kek: String,
    /// The CA public key, OpenSSH one-line format.
    pub public_key: String,
    /// The CA key's SHA256 fingerprint (the wrap context's key id).
    pub key_id: String,
    /// The data key, wrapped by the KEK (base64).
    pub wrapped_data_key: String,
    /// AES-GCM nonce (base64, 12 bytes).
    pub nonce: String,
    /// The private key (OpenSSH format), AES-256-GCM under the data key,
    /// tag appended (base64).
    pub ciphertext: String,
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: {what}", path.display()),
    )
}

impl WrappedFile {
    /// Reads and checks a wrapped key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read the wrapped key", path, &e))?;
        let f: WrappedFile = serde_json::from_str(&text)
            .map_err(|e| invalid(path, format_args!("not a wrapped key file: {e}")))?;
        if f.format != FORMAT {
            return Err(invalid(
                path,
                format_args!("format `{}` is not {FORMAT}", f.format),
            ));
        }
        let public = f.public(path)?;
        let fp = public.fingerprint(HashAlg::Sha256).to_string();
        if fp != f.key_id {
            return Err(invalid(
                path,
                format_args!(
                    "key_id {} is not the public key's fingerprint {fp}",
                    f.key_id
                ),
            ));
        }
        Ok(f)
    }

    /// The public key.
    pub fn public(&self, path: &Path) -> Result<KeyData> {
        PublicKey::from_openssh(&self.public_key)
            .map(|k| k.key_data().clone())
            .map_err(|e| invalid(path, format_args!("public_key: {e}")))
    }

    fn context(&self) -> WrapContext {
        WrapContext {
            purpose: PURPOSE.into(),
            key_id: self.key_id.clone(),
        }
    }

    /// The file's text (JSON).
    pub fn to_text(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map(|t| t + "\n")
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode: {e}")))
    }

    /// Seals `private_key` (OpenSSH text) for the KEK `kek`: a fresh data
    /// key, wrapped by the KMS (one call).
    pub async fn seal(
        registry: &Registry,
        kek: &str,
        private_key: &Zeroizing<String>,
        public: &PublicKey,
    ) -> Result<Self> {
        let wrapper = registry.open_wrapper(kek).await?;
        let key_id = public.fingerprint(HashAlg::Sha256).to_string();
        let ctx = WrapContext {
            purpose: PURPOSE.into(),
            key_id: key_id.clone(),
        };
        let mut dek = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, dek.as_mut());
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let wrapped = wrapper
            .wrap(dek.as_ref(), &ctx)
            .await
            .map_err(|e| e.context(format!("wrapping the data key with `{kek}`")))?;
        let cipher = Aes256Gcm::new_from_slice(dek.as_ref())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("AES-GCM key: {e}")))?;
        let aad = ctx.aad();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: private_key.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| Error::new(ErrorKind::Internal, "AES-GCM encryption failed"))?;
        let mut public_line = public.clone();
        public_line.set_comment("");
        Ok(Self {
            format: FORMAT.into(),
            kek: kek.to_owned(),
            public_key: public_line
                .to_openssh()
                .map_err(|e| Error::new(ErrorKind::Internal, format!("public key: {e}")))?,
            key_id,
            wrapped_data_key: Base64::encode_string(&wrapped),
            nonce: Base64::encode_string(&nonce),
            ciphertext: Base64::encode_string(&ct),
        })
    }

    /// Unwraps the data key (one KMS call) and decrypts the private key.
    pub async fn open_private(
        &self,
        registry: &Registry,
        path: &Path,
    ) -> Result<Zeroizing<String>> {
        let b64 = |field: &str, v: &str| {
            Base64::decode_vec(v).map_err(|_| invalid(path, format_args!("{field} is not base64")))
        };
        let wrapped = b64("wrapped_data_key", &self.wrapped_data_key)?;
        let nonce = b64("nonce", &self.nonce)?;
        let ct = b64("ciphertext", &self.ciphertext)?;
        if nonce.len() != 12 {
            return Err(invalid(path, "nonce is not 12 bytes"));
        }
        let wrapper = registry.open_wrapper(&self.kek).await?;
        let ctx = self.context();
        let dek = wrapper.unwrap(&wrapped, &ctx).await.map_err(|e| {
            e.context(format!(
                "{}: unwrapping the data key with `{}` (a wrong KEK, or a blob wrapped for another key, fails here)",
                path.display(),
                self.kek
            ))
        })?;
        let cipher = Aes256Gcm::new_from_slice(&dek).map_err(|_| {
            Error::new(
                ErrorKind::BadResponse,
                format!("{}: the unwrapped data key is not 32 bytes", path.display()),
            )
        })?;
        let aad = ctx.aad();
        let plain = cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad })
            .map_err(|_| {
                Error::new(
                    ErrorKind::InvalidKey,
                    format!(
                        "{}: the private key does not decrypt (the file was altered, or its parts come from different keys)",
                        path.display()
                    ),
                )
            })?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain)
            .map_err(|_| invalid(path, "the decrypted private key is not text"))?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}

/// Registers the `wrapped:` scheme. `kek_registry` opens the KEKs (the
/// registry of every other backend: call this last).
pub fn register(registry: &mut Registry) {
    let keks = Arc::new(registry.clone());
    registry.register(SCHEME, move |uri| {
        let keks = keks.clone();
        Box::pin(async move {
            let s: Arc<dyn KeySigner> = Arc::new(WrappedSigner::open(uri, keks)?);
            Ok(s)
        })
    });
}

/// A wrapped CA key: the public key from the file, the private key
/// unwrapped at the first signature and kept (zeroized on drop).
pub struct WrappedSigner {
    key: FixedKey,
    path: PathBuf,
    file: WrappedFile,
    keks: Arc<Registry>,
    inner: tokio::sync::OnceCell<LocalSigner>,
}

impl std::fmt::Debug for WrappedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedSigner")
            .field("uri", &self.key.uri().to_string())
            .field("kek", &self.file.kek)
            .field("unwrapped", &self.inner.initialized())
            .finish_non_exhaustive()
    }
}

impl WrappedSigner {
    /// Reads the file (no KMS call).
    pub fn open(uri: KeyUri, keks: Arc<Registry>) -> Result<Self> {
        uri.check_options(&["kek"])?;
        let path = PathBuf::from(uri.location());
        let file = WrappedFile::load(&path)?;
        // `kek=URI` says which KEK the file must name: a file swapped for
        // one sealed under a KEK the attacker controls is refused before
        // any KMS call.
        if let Some(want) = uri.option("kek") {
            if want != file.kek {
                return Err(invalid(
                    &path,
                    format_args!(
                        "the file is sealed under `{}`, not under `{want}` (kek=)",
                        file.kek
                    ),
                ));
            }
        }
        let public = file.public(&path)?;
        let algorithms =
            SigAlg::for_key(&public).map_err(|e| invalid(&path, format_args!("{e}")))?;
        Ok(Self {
            key: FixedKey::new(uri, public, algorithms),
            path,
            file,
            keks,
            inner: tokio::sync::OnceCell::new(),
        })
    }

    async fn local(&self) -> Result<&LocalSigner> {
        self.inner
            .get_or_try_init(|| async {
                let text = self.file.open_private(&self.keks, &self.path).await?;
                let signer = LocalSigner::from_private_key_text(self.key.uri().clone(), &text)?;
                if *signer.public() != self.key.public_key() {
                    return Err(invalid(
                        &self.path,
                        "the decrypted private key does not match public_key",
                    ));
                }
                Ok(signer)
            })
            .await
    }
}

#[async_trait]
impl FixedKeyBackend for WrappedSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        self.local().await?.sign(alg, message).await
    }
}

sshca_signer::fixed_key_signer!(WrappedSigner);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A KEK in memory: XOR with a fixed pad, refusing another context.
    #[derive(Debug)]
    struct MemoryKek {
        uri: KeyUri,
        unwraps: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl sshca_signer::KeyWrapper for MemoryKek {
        fn uri(&self) -> &KeyUri {
            &self.uri
        }
        async fn wrap(&self, plaintext: &[u8], ctx: &WrapContext) -> Result<Vec<u8>> {
            let mut out = ctx.aad();
            out.push(0xff);
            out.extend(plaintext.iter().map(|b| b ^ 0x5a));
            Ok(out)
        }
        async fn unwrap(&self, blob: &[u8], ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>> {
            self.unwraps.fetch_add(1, Ordering::SeqCst);
            let aad = ctx.aad();
            let rest = blob
                .strip_prefix(aad.as_slice())
                .and_then(|r| r.strip_prefix(&[0xff]))
                .ok_or_else(|| Error::new(ErrorKind::InvalidKey, "context mismatch"))?;
            Ok(Zeroizing::new(rest.iter().map(|b| b ^ 0x5a).collect()))
        }
    }

    fn registry(unwraps: Arc<AtomicUsize>) -> Registry {
        let mut r = Registry::new();
        r.register_wrapper("mem", move |uri| {
            let unwraps = unwraps.clone();
            Box::pin(async move {
                let w: Arc<dyn sshca_signer::KeyWrapper> = Arc::new(MemoryKek { uri, unwraps });
                Ok(w)
            })
        });
        register(&mut r);
        r
    }

    #[tokio::test]
    async fn seal_open_sign_once() {
        use sshca_signer::SignerExt;
        let unwraps = Arc::new(AtomicUsize::new(0));
        let r = registry(unwraps.clone());
        let key = sshca_local::keys::generate(sshca_signer::KeySpec::Ed25519, "c").unwrap();
        let text = sshca_local::keys::to_openssh(&key, None).unwrap();
        let sealed = WrappedFile::seal(&r, "mem:kek", &text, key.public_key())
            .await
            .unwrap();
        let out = sealed.to_text().unwrap();
        assert!(!out.contains("PRIVATE KEY") && !out.contains(text.as_str()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        std::fs::write(&path, &out).unwrap();

        let signer = r
            .open(&format!("wrapped:{}", path.display()))
            .await
            .unwrap();
        assert_eq!(
            signer.public_key().await.unwrap(),
            *key.public_key().key_data()
        );
        assert_eq!(unwraps.load(Ordering::SeqCst), 0, "opening unwrapped");
        let mut t = sshca_core::CertTemplate::new(sshca_core::CertType::User, "k");
        t.principals = vec!["a".into()];
        t.valid_before = u64::MAX;
        for serial in 1..=20 {
            t.serial = serial;
            signer
                .sign_certificate(&t, key.public_key().key_data(), None)
                .await
                .unwrap();
        }
        assert_eq!(unwraps.load(Ordering::SeqCst), 1);
        assert!(!format!("{signer:?}").contains("PRIVATE"));

        // `kek=`: the file must name that KEK.
        r.open(&format!("wrapped:{}?kek=mem:kek", path.display()))
            .await
            .unwrap();
        let e = r
            .open(&format!("wrapped:{}?kek=mem:other", path.display()))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("sealed under `mem:kek`, not under `mem:other`"),
            "{e}"
        );

        // A key id that is not the public key's, an unknown format: named.
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["key_id"] = "SHA256:AAAA".into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = r
            .open(&format!("wrapped:{}", path.display()))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("is not the public key's fingerprint"),
            "{e}"
        );
        v["format"] = "other".into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = r
            .open(&format!("wrapped:{}", path.display()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is not sshca-wrapped-key-v1"), "{e}");
        let e = r.open("wrapped:/nonexistent/ca").await.unwrap_err();
        assert!(e.to_string().contains("cannot read the wrapped key"), "{e}");
        let e = WrappedFile::seal(&r, "nokek:x", &text, key.public_key())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot wrap keys"), "{e}");
    }
}
