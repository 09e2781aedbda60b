//! sshca: an OpenSSH certificate authority whose CA key can stay in a key
//! management service.
//!
//! This facade re-exports the certificate core ([`core`]) and the signer
//! layer ([`signer`]), builds a [`Registry`] from the enabled backend features
//! ([`default_registry`]), and holds what the `sshca` CLI shares with library
//! users: certificate inspection ([`CertInfo`]), subject-key reading, and
//! atomic file writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sshca::signer::SignerExt;
//! let ca = sshca::default_registry().open("file:/etc/ssh/user_ca").await?;
//! let subject = sshca::read_subject_key(std::path::Path::new("id_ed25519.pub"))?.0;
//! let mut t = sshca::core::CertTemplate::new(sshca::core::CertType::User, "alice");
//! t.principals = vec!["alice".into()];
//! t.serial = sshca::core::random_serial();
//! let cert = ca.sign_certificate(&t, &subject, None).await?;
//! println!("{}", cert.to_openssh()?);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod config;
pub mod fuzzing;
pub use sshca_core as core;
use sshca_core::{Certificate, HashAlg, KeyData, PublicKey};
/// The PKCS#11 backend (key creation on a token, `pin-value` permission).
#[cfg(feature = "pkcs11")]
pub use sshca_pkcs11 as pkcs11;
pub use sshca_signer as signer;
use sshca_signer::{Error, ErrorKind, Registry, Result};
/// The `wrapped:` backend (sealing a key under a KMS key-encryption key).
#[cfg(feature = "wrapped")]
pub use sshca_wrapped as wrapped;

/// A registry with every backend this build enables (features `local`:
/// `file:`, `aws`: `awskms:`, `gcp`: `gcpkms:`, `azure`: `azurekv:`, `ekm`:
/// `ekm:`, `pkcs11`: `pkcs11:`, `ssh-agent`: `ssh-agent:`, `wrapped`:
/// `wrapped:`).
pub fn default_registry() -> Registry {
    #[allow(unused_mut)]
    let mut r = Registry::new();
    #[cfg(feature = "local")]
    sshca_local::register(&mut r);
    #[cfg(feature = "aws")]
    sshca_aws::register(&mut r);
    #[cfg(feature = "gcp")]
    sshca_gcp::register(&mut r);
    #[cfg(feature = "azure")]
    sshca_azure::register(&mut r);
    #[cfg(feature = "ekm")]
    sshca_ekm::register(&mut r);
    #[cfg(feature = "pkcs11")]
    sshca_pkcs11::register(&mut r);
    #[cfg(feature = "ssh-agent")]
    sshca_sshagent::register(&mut r);
    // Last: its key-encryption keys come from the backends above.
    #[cfg(feature = "wrapped")]
    sshca_wrapped::register(&mut r);
    r
}

/// Turns a `--ca` argument into a key URI: a string with a scheme is used as
/// it is; a plain path (no `:`) becomes `file:PATH`.
pub fn ca_uri(arg: &str) -> String {
    if arg.contains(':') {
        arg.to_owned()
    } else {
        format!("file:{arg}")
    }
}

/// A certificate's fields as `sshca inspect --json` prints them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    /// `user` or `host`.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// Certificate key type, e.g. `ssh-ed25519-cert-v01@openssh.com`.
    pub key_type: String,
    /// SHA-256 fingerprint of the certified key.
    pub public_key: String,
    /// SHA-256 fingerprint of the signing CA key.
    pub signing_ca: String,
    /// Algorithm of the CA signature, e.g. `rsa-sha2-512`.
    pub signature_algorithm: String,
    /// Key identifier.
    pub key_id: String,
    /// Serial number.
    pub serial: u64,
    /// Start of validity, unix seconds.
    pub valid_after: u64,
    /// End of validity, unix seconds (18446744073709551615 is forever).
    pub valid_before: u64,
    /// Principals.
    pub principals: Vec<String>,
    /// Critical options: flags map to "", raw data to upper-case hex.
    pub critical_options: BTreeMap<String, String>,
    /// Extensions: flags map to "", raw data to upper-case hex.
    pub extensions: BTreeMap<String, String>,
}

impl CertInfo {
    /// Extracts the fields of a certificate.
    pub fn new(cert: &Certificate) -> Self {
        let opts = |m: &sshca_core::CertOptions| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        Self {
            cert_type: cert.cert_type().to_string(),
            key_type: cert.key_type().to_owned(),
            public_key: cert.public_key_fingerprint().to_string(),
            signing_ca: cert.signing_ca_fingerprint().to_string(),
            signature_algorithm: cert.signature().algorithm().as_str().to_owned(),
            key_id: cert.key_id().to_owned(),
            serial: cert.serial(),
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
            principals: cert.principals().to_vec(),
            critical_options: opts(cert.critical_options()),
            extensions: opts(cert.extensions()),
        }
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(what, path, &e)
}

/// Reads a public key line (`TYPE BASE64 [COMMENT]`).
pub fn parse_public_key(text: &str, origin: &str) -> Result<PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{origin}: no public key found"),
            )
        })?;
    PublicKey::from_openssh(line).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{origin}: not an OpenSSH public key ({e})"),
        )
    })
}

/// Reads the subject key for `sshca sign KEY`: KEY holds a public key, or it
/// is a private key whose public key is in `KEY.pub`, as with `ssh-keygen -s`.
/// Returns the key and its comment.
pub fn read_subject_key(path: &Path) -> Result<(KeyData, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, "cannot read", e))?;
    let origin = path.display().to_string();
    let pk = if text.contains("PRIVATE KEY-----") {
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let pub_path = PathBuf::from(pub_path);
        let t = std::fs::read_to_string(&pub_path)
            .map_err(|e| io_err(&pub_path, "is a private key; cannot read its public key", e))?;
        parse_public_key(&t, &pub_path.display().to_string())?
    } else {
        parse_public_key(&text, &origin)?
    };
    Ok((pk.key_data().clone(), pk.comment().to_owned()))
}

/// Resolves a `--ca` argument for verification: any key reference
/// ([`load_ref`]); for a certificate, its certified key.
pub async fn resolve_ca_public_key(registry: &Registry, arg: &str) -> Result<KeyData> {
    Ok(load_ref(registry, arg, None).await?.public_key())
}

/// SHA-256 fingerprint text of a key.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// What a key reference (`REF`) names: a public key, a certificate, a private
/// key file, or a key URI.
#[derive(Debug, Clone)]
pub enum KeyRef {
    /// A public key line.
    Public(PublicKey),
    /// A certificate.
    Certificate(Box<Certificate>),
    /// A private key file (decrypted), with its comment.
    #[cfg(feature = "local")]
    Private(Box<sshca_core::ssh_key::PrivateKey>),
    /// A key URI (its public key was fetched).
    Uri(String, KeyData),
}

impl KeyRef {
    /// The public key it names (for a certificate: the certified key).
    pub fn public_key(&self) -> KeyData {
        match self {
            KeyRef::Public(p) => p.key_data().clone(),
            KeyRef::Certificate(c) => c.public_key().clone(),
            #[cfg(feature = "local")]
            KeyRef::Private(k) => k.public_key().key_data().clone(),
            KeyRef::Uri(_, k) => k.clone(),
        }
    }

    /// The comment, if any.
    pub fn comment(&self) -> &str {
        match self {
            KeyRef::Public(p) => p.comment(),
            KeyRef::Certificate(c) => c.comment(),
            #[cfg(feature = "local")]
            KeyRef::Private(k) => k.comment(),
            KeyRef::Uri(..) => "",
        }
    }
}

/// Resolves a key reference: an existing file holding a public key, a
/// certificate or a private key (its passphrase from `passphrase_file` or
/// `SSHCA_PASSPHRASE`), else a key URI opened through `registry`.
pub async fn load_ref(
    registry: &Registry,
    arg: &str,
    passphrase_file: Option<&Path>,
) -> Result<KeyRef> {
    let p = Path::new(arg);
    if p.is_file() {
        let text = std::fs::read_to_string(p).map_err(|e| io_err(p, "cannot read", e))?;
        if text.contains("PRIVATE KEY-----") {
            #[cfg(feature = "local")]
            {
                let mut uri = sshca_signer::KeyUri::new(sshca_local::SCHEME, arg)?;
                if let Some(f) = passphrase_file {
                    uri.set_option("passphrase-file", &f.to_string_lossy());
                }
                let signer = sshca_local::LocalSigner::open(&uri)?;
                return Ok(KeyRef::Private(Box::new(signer.to_private_key()?)));
            }
            #[cfg(not(feature = "local"))]
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{arg}: private key files need the `local` feature"),
            ));
        }
        if let Ok(c) = Certificate::from_openssh(text.trim()) {
            return Ok(KeyRef::Certificate(Box::new(c)));
        }
        return parse_public_key(&text, arg)
            .map(KeyRef::Public)
            .map_err(|_| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("{arg}: not a public key, certificate or private key"),
                )
            });
    }
    let _ = passphrase_file;
    if !arg.contains(':') {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{arg}: no such file (and not a key URI)"),
        ));
    }
    // `open`, not `open_raw`: a `pin=` on the URI is checked here too.
    let signer = registry.open(arg).await?;
    Ok(KeyRef::Uri(arg.to_owned(), signer.public_key().await?))
}

pub use sshca_core::cert::key_size;
