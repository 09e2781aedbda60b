//! What the `sshca` command resolves its arguments to: `--ca` arguments
//! as key URIs, key references (a public key, a certificate, a private key
//! file or a key URI), and a certificate's fields as `sshca inspect --json`
//! prints them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use sshca::core::{Certificate, KeyData, PublicKey};
use sshca::parse_public_key;
use sshca::signer::{Error, ErrorKind, Registry, Result};

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(what, path, &e)
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
        let opts = |m: &sshca::core::CertOptions| {
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

/// Resolves a `--ca` argument for verification: any key reference
/// ([`load_ref`]); for a certificate, its certified key.
pub async fn resolve_ca_public_key(registry: &Registry, arg: &str) -> Result<KeyData> {
    Ok(load_ref(registry, arg, None).await?.public_key())
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
    Private(Box<sshca::core::ssh_key::PrivateKey>),
    /// A key URI (its public key was fetched).
    Uri(KeyData),
}

impl KeyRef {
    /// The public key it names (for a certificate: the certified key).
    pub fn public_key(&self) -> KeyData {
        match self {
            KeyRef::Public(p) => p.key_data().clone(),
            KeyRef::Certificate(c) => c.public_key().clone(),
            #[cfg(feature = "local")]
            KeyRef::Private(k) => k.public_key().key_data().clone(),
            KeyRef::Uri(k) => k.clone(),
        }
    }

    /// The comment, if any.
    #[cfg(feature = "local")]
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
                let mut uri = sshca::signer::KeyUri::new(sshca_local::SCHEME, arg)?;
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
    Ok(KeyRef::Uri(signer.public_key().await?))
}
