//! sshca backend for CA keys held in local files.
//!
//! URI: `file:PATH[?passphrase-file=FILE][&pin=SHA256:...]`.
//!
//! Accepted formats: OpenSSH private keys (`-----BEGIN OPENSSH PRIVATE KEY-----`,
//! unencrypted or passphrase-encrypted), PKCS#8 (`PRIVATE KEY`), SEC1
//! (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) PEM. Key types: Ed25519,
//! ECDSA P-256/P-384/P-521, RSA (signing rsa-sha2-256 or rsa-sha2-512).
//!
//! The passphrase of an encrypted key comes from the file named by the
//! `passphrase-file` option (its first line) or from the `SSHCA_PASSPHRASE`
//! environment variable, never from the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use signature::{SignatureEncoding, Signer};
use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData, RsaPublicKey};
use ssh_key::EcdsaCurve;
use sshca_core::convert::{ecdsa_raw_to_ssh, ed25519_to_ssh, rsa_pkcs1_to_ssh};
use sshca_core::{PreparedCa, SigAlg, Signature};
use sshca_signer::{Error, ErrorKind, KeySigner, KeyUri, Registry, Result, Secret};
use zeroize::Zeroizing;

pub mod keys;
mod openssh;

/// The URI scheme of this backend.
pub const SCHEME: &str = "file";

/// Environment variable holding the passphrase of an encrypted key file.
pub const PASSPHRASE_ENV: &str = "SSHCA_PASSPHRASE";

pub(crate) enum Native {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Rsa(Box<RsaKey>),
}

struct RsaKey {
    key: rsa::RsaPrivateKey,
    sha256: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    sha512: rsa::pkcs1v15::SigningKey<sha2::Sha512>,
}

/// A P-521 secret key as a signing key (p521's wrapper type has no `From`
/// for the secret key itself).
fn p521_native(k: p521::SecretKey) -> Native {
    Native::P521(ecdsa::SigningKey::<p521::NistP521>::from(k).into())
}

pub(crate) fn rsa_native(key: rsa::RsaPrivateKey) -> Native {
    Native::Rsa(Box::new(RsaKey {
        sha256: rsa::pkcs1v15::SigningKey::new(key.clone()),
        sha512: rsa::pkcs1v15::SigningKey::new(key.clone()),
        key,
    }))
}

/// A CA key loaded from a file.
pub struct LocalSigner {
    uri: KeyUri,
    key: Native,
    public: KeyData,
    comment: String,
    /// The same ECDSA P-256/P-384 key in `ring`, which signs several times
    /// faster than the portable implementation.
    fast: Option<(ring::signature::EcdsaKeyPair, EcdsaCurve)>,
    rng: ring::rand::SystemRandom,
    /// The public key prepared once for issuing and verifying.
    prepared: Arc<PreparedCa>,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("uri", &self.uri.to_string())
            .field("algorithm", &self.public.algorithm().as_str())
            .finish_non_exhaustive()
    }
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidKey, format!("{}: {what}", path.display()))
}

impl LocalSigner {
    /// Opens the key a `file:` URI names.
    pub fn open(uri: &KeyUri) -> Result<Self> {
        if uri.scheme() != SCHEME {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("key URI `{uri}` is not a `{SCHEME}:` URI"),
            ));
        }
        uri.check_options(&["passphrase-file"])?;
        let path = PathBuf::from(uri.location());
        let pass_file = uri.option("passphrase-file").map(PathBuf::from);
        let passphrase = move || -> Result<Secret> {
            if let Some(f) = &pass_file {
                return read_passphrase_file(f);
            }
            std::env::var(PASSPHRASE_ENV).map(Secret::new).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the key is encrypted: give its passphrase with `passphrase-file=` or {PASSPHRASE_ENV}"
                    ),
                )
            })
        };
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| Error::io("cannot read key file", &path, &e))?,
        );
        let (key, comment) = load_private_key(&path, &text, passphrase)?;
        Self::from_native(uri.clone(), &path, key, comment)
    }

    /// The comment stored with the key (OpenSSH format; empty for PEM).
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The public key.
    pub fn public(&self) -> &KeyData {
        &self.public
    }

    /// The key as an unencrypted ssh-key [`ssh_key::PrivateKey`], with its
    /// comment (for re-encoding, e.g. with a new passphrase).
    pub fn to_private_key(&self) -> Result<ssh_key::PrivateKey> {
        keys::to_private_key(&self.key, &self.comment)
    }

    /// A signer for private key text held in memory (unencrypted; any
    /// format a key file may have), answering to `uri`: for keys that were
    /// decrypted by the caller (`wrapped:` keys).
    pub fn from_private_key_text(uri: KeyUri, text: &str) -> Result<Self> {
        let path = PathBuf::from(uri.to_string());
        let (key, comment) = load_private_key(&path, text, || {
            Err(Error::new(
                ErrorKind::InvalidInput,
                "the key text is passphrase-encrypted; only plain keys are accepted here",
            ))
        })?;
        Self::from_native(uri, &path, key, comment)
    }

    fn from_native(uri: KeyUri, path: &Path, key: Native, comment: String) -> Result<Self> {
        let public = public_of(path, &key)?;
        let prepared = PreparedCa::new(&public).map_err(|e| invalid(path, e))?;
        Ok(Self {
            uri,
            fast: fast_ecdsa(&key),
            key,
            public,
            comment,
            rng: ring::rand::SystemRandom::new(),
            prepared: Arc::new(prepared),
        })
    }

    /// Opens a key file by path (no options).
    pub fn open_path(path: &Path) -> Result<Self> {
        Self::open(&KeyUri::new(SCHEME, &path.to_string_lossy())?)
    }
}

/// Reads a passphrase file: its first line is the passphrase (a [`Secret`]:
/// never shown by `Debug`).
pub fn read_passphrase_file(path: &Path) -> Result<Secret> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("cannot read passphrase file {}: {e}", path.display()),
        )
    })?);
    Ok(Secret::new(text.lines().next().unwrap_or_default()))
}

/// Registers the `file:` scheme.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, |uri| {
        Box::pin(async move {
            let s: Arc<dyn KeySigner> = Arc::new(LocalSigner::open(&uri)?);
            Ok(s)
        })
    });
}

fn load_private_key(
    path: &Path,
    text: &str,
    passphrase: impl FnOnce() -> Result<Secret>,
) -> Result<(Native, String)> {
    use p256::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let label = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("-----BEGIN "))
        .ok_or_else(|| {
            invalid(
                path,
                "not a PEM or OpenSSH private key (no -----BEGIN line)",
            )
        })?;
    let pem: Result<Native> = match label {
        "-----BEGIN OPENSSH PRIVATE KEY-----" => {
            let mut pw_err = None;
            let res = openssh::read(text, || match passphrase() {
                Ok(p) => Some(p),
                Err(e) => {
                    pw_err = Some(e);
                    None
                }
            });
            return match res {
                Ok(k) => Ok(k),
                Err(openssh::ReadError::NeedPassphrase) => Err(pw_err.unwrap_or_else(|| {
                    invalid(path, "the key is encrypted and no passphrase was given")
                })),
                Err(openssh::ReadError::WrongPassphrase) => Err(invalid(
                    path,
                    "cannot decrypt the key: wrong passphrase",
                )),
                Err(openssh::ReadError::Invalid(m)) => Err(invalid(
                    path,
                    format_args!("bad OpenSSH private key: {m}"),
                )),
            };
        }
        "-----BEGIN PRIVATE KEY-----" => {
            if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
                Ok(Native::Ed25519(k))
            } else if let Ok(k) = p256::SecretKey::from_pkcs8_pem(text) {
                Ok(Native::P256(k.into()))
            } else if let Ok(k) = p384::SecretKey::from_pkcs8_pem(text) {
                Ok(Native::P384(k.into()))
            } else if let Ok(k) = p521::SecretKey::from_pkcs8_pem(text) {
                Ok(p521_native(k))
            } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
                Ok(rsa_native(k))
            } else {
                Err(invalid(
                    path,
                    "PKCS#8 key is not Ed25519, ECDSA P-256/P-384/P-521 or RSA",
                ))
            }
        }
        "-----BEGIN EC PRIVATE KEY-----" => {
            if let Ok(k) = p256::SecretKey::from_sec1_pem(text) {
                Ok(Native::P256(k.into()))
            } else if let Ok(k) = p384::SecretKey::from_sec1_pem(text) {
                Ok(Native::P384(k.into()))
            } else if let Ok(k) = p521::SecretKey::from_sec1_pem(text) {
                Ok(p521_native(k))
            } else {
                Err(invalid(path, "SEC1 key is not on P-256, P-384 or P-521"))
            }
        }
        "-----BEGIN RSA PRIVATE KEY-----" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
            .map(rsa_native)
            .map_err(|e| invalid(path, format_args!("bad PKCS#1 RSA key: {e}"))),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----" => Err(invalid(
            path,
            "encrypted PKCS#8 is not supported; convert it to an encrypted OpenSSH key (ssh-keygen -p -f FILE)",
        )),
        other => Err(invalid(path, format_args!("unsupported PEM type `{other}`"))),
    };
    pem.map(|k| (k, String::new()))
}

fn public_of(path: &Path, key: &Native) -> Result<KeyData> {
    Ok(match key {
        Native::Ed25519(k) => KeyData::Ed25519(Ed25519PublicKey(k.verifying_key().to_bytes())),
        Native::P256(k) => KeyData::Ecdsa(EcdsaPublicKey::from(k.verifying_key())),
        Native::P384(k) => KeyData::Ecdsa(EcdsaPublicKey::from(k.verifying_key())),
        Native::P521(k) => {
            KeyData::Ecdsa(EcdsaPublicKey::from(&p521::ecdsa::VerifyingKey::from(k)))
        }
        Native::Rsa(k) => KeyData::Rsa(
            RsaPublicKey::try_from(k.key.to_public_key())
                .map_err(|e| invalid(path, format_args!("bad RSA public key: {e}")))?,
        ),
    })
}

/// The ring form of an ECDSA P-256/P-384 key; `None` for other keys (and
/// if ring refuses the key, which then signs through the portable path).
fn fast_ecdsa(key: &Native) -> Option<(ring::signature::EcdsaKeyPair, EcdsaCurve)> {
    use ring::signature::{
        EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    let rng = ring::rand::SystemRandom::new();
    match key {
        Native::P256(k) => EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &k.to_bytes(),
            k.verifying_key().to_encoded_point(false).as_bytes(),
            &rng,
        )
        .ok()
        .map(|p| (p, EcdsaCurve::NistP256)),
        Native::P384(k) => EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &k.to_bytes(),
            k.verifying_key().to_encoded_point(false).as_bytes(),
            &rng,
        )
        .ok()
        .map(|p| (p, EcdsaCurve::NistP384)),
        _ => None,
    }
}

fn sign_native(key: &Native, alg: SigAlg, msg: &[u8]) -> Result<Signature> {
    let fail = |e: signature::Error| {
        Error::new(ErrorKind::Unavailable, format!("signing failed: {e}")).set_temporary(false)
    };
    Ok(match (key, alg) {
        (Native::Ed25519(k), SigAlg::Ed25519) => ed25519_to_ssh(&k.sign(msg).to_bytes())?,
        (Native::P256(k), SigAlg::EcdsaP256) => {
            let s: p256::ecdsa::Signature = k.try_sign(msg).map_err(fail)?;
            Signature::try_from(s).map_err(|e| Error::new(ErrorKind::BadResponse, e.to_string()))?
        }
        (Native::P384(k), SigAlg::EcdsaP384) => {
            let s: p384::ecdsa::Signature = k.try_sign(msg).map_err(fail)?;
            Signature::try_from(s).map_err(|e| Error::new(ErrorKind::BadResponse, e.to_string()))?
        }
        (Native::P521(k), SigAlg::EcdsaP521) => {
            let s: p521::ecdsa::Signature = k.try_sign(msg).map_err(fail)?;
            Signature::try_from(s).map_err(|e| Error::new(ErrorKind::BadResponse, e.to_string()))?
        }
        (Native::Rsa(k), SigAlg::RsaSha256 | SigAlg::RsaSha512) => {
            use rsa::traits::PublicKeyParts;
            let bytes = if alg == SigAlg::RsaSha256 {
                k.sha256.try_sign(msg).map_err(fail)?.to_vec()
            } else {
                k.sha512.try_sign(msg).map_err(fail)?.to_vec()
            };
            rsa_pkcs1_to_ssh(alg, &bytes, k.key.size())?
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("this key cannot sign with {alg}"),
            ))
        }
    })
}

#[async_trait]
impl KeySigner for LocalSigner {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn public_key(&self) -> Result<KeyData> {
        Ok(self.public.clone())
    }

    async fn prepared_ca(&self) -> Result<Arc<PreparedCa>> {
        Ok(self.prepared.clone())
    }

    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        if let Some((pair, curve)) = &self.fast {
            if alg.algorithm() == (ssh_key::Algorithm::Ecdsa { curve: *curve }) {
                let raw = pair.sign(&self.rng, message).map_err(|_| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("key {}: signing failed", self.uri),
                    )
                    .set_temporary(false)
                })?;
                return Ok(ecdsa_raw_to_ssh(*curve, raw.as_ref())?);
            }
        }
        sign_native(&self.key, alg, message).map_err(|e| e.context(format!("key {}", self.uri)))
    }
}
