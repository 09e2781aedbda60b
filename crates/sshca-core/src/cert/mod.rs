//! The OpenSSH certificate model and its two-phase signing.
//!
//! ```text
//! CertTemplate + subject key + CA public key
//!     -> TbsCertificate::encode      (bytes the CA key signs)
//!     -> signature from any backend  (async, elsewhere)
//!     -> TbsCertificate::assemble    (verified Certificate)
//! ```
//!
//! The wire format is OpenSSH's `PROTOCOL.certkeys`; options are encoded exactly
//! as `ssh-keygen` encodes them (a flag has empty data, a value is a string
//! inside the data string) and kept sorted by name.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};

use crate::wire::{put_nested, put_string, put_u32, Cursor};
use crate::{Error, Result};

mod keys;
mod parsed;
mod tbs;

pub use keys::{cert_key_type, key_size};
pub(crate) use keys::{decode_key, encode_key_blob};
pub use parsed::Certificate;
pub use tbs::TbsCertificate;

/// Certificate type: user or host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertType {
    /// A user certificate (`SSH2_CERT_TYPE_USER` = 1).
    User,
    /// A host certificate (`SSH2_CERT_TYPE_HOST` = 2).
    Host,
}

impl CertType {
    /// The wire value.
    pub fn code(self) -> u32 {
        match self {
            CertType::User => 1,
            CertType::Host => 2,
        }
    }
    /// `user` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertType::User => "user",
            CertType::Host => "host",
        }
    }
}

impl serde::Serialize for CertType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for CertType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(CertType::User),
            "host" => Ok(CertType::Host),
            _ => Err(Error::Template(format!(
                "unknown certificate type `{s}` (expected `user` or `host`)"
            ))),
        }
    }
}

/// The data of one critical option or extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OptionValue {
    /// A flag: empty data (`permit-pty`, `verify-required`).
    Flag,
    /// A value: one SSH string inside the data (`force-command`, `source-address`).
    Text(String),
    /// Any other data, kept byte for byte (unknown options of other issuers).
    Raw(Vec<u8>),
}

impl OptionValue {
    fn from_data(data: &[u8]) -> Self {
        if data.is_empty() {
            return OptionValue::Flag;
        }
        let mut c = Cursor::new(data, "option");
        if let Ok(s) = c.utf8("value") {
            if c.is_empty() {
                return OptionValue::Text(s.to_owned());
            }
        }
        OptionValue::Raw(data.to_vec())
    }

    fn encode_data(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            OptionValue::Flag => {
                put_u32(out, 0);
                Ok(())
            }
            OptionValue::Text(s) => put_nested(out, |o| put_string(o, s.as_bytes())),
            OptionValue::Raw(b) => put_string(out, b),
        }
    }

    /// The value as text: empty for a flag, `None` for raw data.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            OptionValue::Flag => Some(""),
            OptionValue::Text(s) => Some(s),
            OptionValue::Raw(_) => None,
        }
    }
}

/// Serialised as its [`fmt::Display`] text: empty for a flag, the value, or
/// upper-case hex of raw data.
impl serde::Serialize for OptionValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Flag => Ok(()),
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Raw(b) => {
                for byte in b {
                    write!(f, "{byte:02X}")?;
                }
                Ok(())
            }
        }
    }
}

/// Critical options or extensions, sorted by name as OpenSSH requires.
pub type CertOptions = BTreeMap<String, OptionValue>;

/// What a certificate should contain, before it is encoded and signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTemplate {
    /// User or host.
    pub cert_type: CertType,
    /// Key identifier (logged by sshd).
    pub key_id: String,
    /// Principals (user names or host names); empty means "any" to OpenSSH.
    pub principals: Vec<String>,
    /// Start of validity, unix seconds (inclusive).
    pub valid_after: u64,
    /// End of validity, unix seconds (exclusive); [`crate::FOREVER`] for no end.
    pub valid_before: u64,
    /// Serial number.
    pub serial: u64,
    /// Critical options.
    pub critical_options: CertOptions,
    /// Extensions.
    pub extensions: CertOptions,
    /// The nonce; `None` draws 32 random bytes at encoding.
    pub nonce: Option<Vec<u8>>,
    /// Comment written after the certificate in OpenSSH text form.
    pub comment: String,
}

impl CertTemplate {
    /// A template valid forever with no principals, no options, serial 0.
    pub fn new(cert_type: CertType, key_id: impl Into<String>) -> Self {
        Self {
            cert_type,
            key_id: key_id.into(),
            principals: Vec::new(),
            valid_after: 0,
            valid_before: crate::FOREVER,
            serial: 0,
            critical_options: CertOptions::new(),
            extensions: CertOptions::new(),
            nonce: None,
            comment: String::new(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.valid_before <= self.valid_after {
            return Err(Error::Template(format!(
                "empty validity interval: valid_after {} is not before valid_before {}",
                self.valid_after, self.valid_before
            )));
        }
        if self.principals.iter().any(String::is_empty) {
            return Err(Error::Template("a principal is empty".into()));
        }
        if let Some(p) = first_duplicate(&self.principals) {
            return Err(Error::Template(format!("principal `{p}` is listed twice")));
        }
        for (kind, map) in [
            ("critical option", &self.critical_options),
            ("extension", &self.extensions),
        ] {
            if map.keys().any(String::is_empty) {
                return Err(Error::Template(format!("a {kind} has an empty name")));
            }
        }
        Ok(())
    }
}

/// The first name listed twice: pairwise for the usual handful (no
/// allocation), through a set for long lists.
fn first_duplicate(names: &[String]) -> Option<&str> {
    if names.len() <= 32 {
        return names
            .iter()
            .enumerate()
            .find(|(i, p)| names[..*i].contains(p))
            .map(|(_, p)| p.as_str());
    }
    let mut seen = std::collections::HashSet::new();
    names
        .iter()
        .find(|p| !seen.insert(p.as_str()))
        .map(String::as_str)
}

/// Draws a random non-zero 64-bit serial number.
pub fn random_serial() -> u64 {
    loop {
        let s = OsRng.next_u64();
        if s != 0 {
            return s;
        }
    }
}
