//! sshca: an OpenSSH certificate authority whose CA key can stay in a key
//! management service.
//!
//! This facade re-exports the certificate core ([`core`]) and the signer
//! layer ([`signer`]), builds a [`Registry`] from the enabled backend features
//! ([`default_registry`]), and holds what the `sshca` CLI shares with library
//! users: subject-key reading and public-key parsing.
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

use std::path::{Path, PathBuf};

pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub use sshca_core as core;
use sshca_core::{HashAlg, KeyData, PublicKey};
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

/// SHA-256 fingerprint text of a key.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub use sshca_core::cert::key_size;
