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

use base64ct::{Base64, Encoding};
use rand_core::{OsRng, RngCore};
use ssh_key::{public::KeyData, Algorithm, EcdsaCurve, Fingerprint, HashAlg, Signature};

use crate::convert::SigAlg;
use crate::verify::PreparedCa;
use crate::wire::{put_nested, put_string, put_u32, put_u64, Cursor};
use crate::{Error, Result};

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

/// Certificate key type names, the plain key type, and how many wire fields
/// the public key has.
const CERT_TYPES: [(&str, &str, usize); 7] = [
    ("ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", 1),
    (
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256",
        2,
    ),
    (
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384",
        2,
    ),
    (
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521",
        2,
    ),
    ("ssh-rsa-cert-v01@openssh.com", "ssh-rsa", 2),
    (
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        2,
    ),
    (
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        3,
    ),
];

fn cert_type_info(name: &str) -> Option<(&'static str, &'static str, usize)> {
    CERT_TYPES.into_iter().find(|t| t.0 == name)
}

/// The certificate key type name for a subject key (`...-cert-v01@openssh.com`).
pub fn cert_key_type(subject: &KeyData) -> Result<&'static str> {
    Ok(match subject.algorithm() {
        Algorithm::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        } => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        } => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        } => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        Algorithm::Rsa { .. } => "ssh-rsa-cert-v01@openssh.com",
        Algorithm::SkEd25519 => "sk-ssh-ed25519-cert-v01@openssh.com",
        Algorithm::SkEcdsaSha2NistP256 => "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        Algorithm::Dsa => {
            return Err(Error::Key(
                "subject key type ssh-dss (DSA) cannot be certified: DSA is insecure and \
                 OpenSSH 10 removed it; use an Ed25519 or ECDSA key"
                    .into(),
            ))
        }
        other => {
            return Err(Error::Key(format!(
                "subject key type {} cannot be certified",
                other.as_str()
            )))
        }
    })
}

/// Key size in bits and the curve name where there is one (`ed25519`,
/// `nistp256`, ...); RSA sizes come from the modulus.
pub fn key_size(key: &KeyData) -> (usize, Option<&'static str>) {
    match key {
        KeyData::Ed25519(_) | KeyData::SkEd25519(_) => (256, Some("ed25519")),
        KeyData::Ecdsa(k) => match k.curve() {
            EcdsaCurve::NistP256 => (256, Some("nistp256")),
            EcdsaCurve::NistP384 => (384, Some("nistp384")),
            EcdsaCurve::NistP521 => (521, Some("nistp521")),
        },
        KeyData::SkEcdsaSha2NistP256(_) => (256, Some("nistp256")),
        KeyData::Rsa(k) => {
            let n = k.n.as_positive_bytes().unwrap_or_default();
            let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
            (bits, None)
        }
        _ => (0, None),
    }
}

/// The fields every certificate carries, without its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    key_type: &'static str,
    nonce: Vec<u8>,
    public_key: KeyData,
    serial: u64,
    cert_type: CertType,
    key_id: String,
    principals: Vec<String>,
    valid_after: u64,
    valid_before: u64,
    critical_options: CertOptions,
    extensions: CertOptions,
    reserved: Vec<u8>,
    signature_key: KeyData,
}

pub(crate) fn encode_key_blob(key: &KeyData) -> Result<Vec<u8>> {
    use ssh_encoding::Encode;
    let mut out = Vec::with_capacity(128);
    key.encode(&mut out)
        .map_err(|e| Error::Key(format!("cannot encode {} key: {e}", key.algorithm())))?;
    Ok(out)
}

fn encode_options(out: &mut Vec<u8>, map: &CertOptions) -> Result<()> {
    put_nested(out, |o| {
        for (name, value) in map {
            put_string(o, name.as_bytes())?;
            value.encode_data(o)?;
        }
        Ok(())
    })
}

/// Appends `key`'s wire fields without its algorithm name (the subject key
/// inside a certificate), with no intermediate buffer.
fn put_key_fields(out: &mut Vec<u8>, key: &KeyData) -> Result<()> {
    use ssh_encoding::Encode;
    let at = out.len();
    key.encode(out)
        .map_err(|e| Error::Key(format!("cannot encode {} key: {e}", key.algorithm())))?;
    // The blob starts with the algorithm name as an SSH string: drop it.
    let name_len = out
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) as usize)
        .ok_or_else(|| Error::Key("empty key encoding".into()))?;
    out.drain(at..at + 4 + name_len);
    Ok(())
}

/// The to-be-signed fields, borrowed: what both the encoder and the decoded
/// [`Body`] write.
struct TbsFields<'a> {
    key_type: &'static str,
    nonce: &'a [u8],
    public_key: &'a KeyData,
    serial: u64,
    cert_type: CertType,
    key_id: &'a str,
    principals: &'a [String],
    valid_after: u64,
    valid_before: u64,
    critical_options: &'a CertOptions,
    extensions: &'a CertOptions,
    reserved: &'a [u8],
    /// The CA key's wire blob.
    signature_key: &'a [u8],
}

impl TbsFields<'_> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        put_string(out, self.key_type.as_bytes())?;
        put_string(out, self.nonce)?;
        put_key_fields(out, self.public_key)?;
        put_u64(out, self.serial);
        put_u32(out, self.cert_type.code());
        put_string(out, self.key_id.as_bytes())?;
        put_nested(out, |o| {
            for p in self.principals {
                put_string(o, p.as_bytes())?;
            }
            Ok(())
        })?;
        put_u64(out, self.valid_after);
        put_u64(out, self.valid_before);
        encode_options(out, self.critical_options)?;
        encode_options(out, self.extensions)?;
        put_string(out, self.reserved)?;
        put_string(out, self.signature_key)
    }
}

/// The nonce of a certificate being encoded: the template's, or 32 bytes
/// drawn for it.
#[derive(Debug, Clone, Copy)]
enum Nonce<'a> {
    Given(&'a [u8]),
    Drawn([u8; 32]),
}

impl Nonce<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Nonce::Given(n) => n,
            Nonce::Drawn(n) => n,
        }
    }
}

/// The CA key a certificate is encoded for.
#[derive(Debug, Clone)]
enum CaKey<'a> {
    Prepared(&'a PreparedCa),
    Plain(&'a KeyData, Vec<u8>),
}

impl CaKey<'_> {
    fn key(&self) -> &KeyData {
        match self {
            CaKey::Prepared(p) => p.key(),
            CaKey::Plain(k, _) => k,
        }
    }
    fn blob(&self) -> &[u8] {
        match self {
            CaKey::Prepared(p) => p.blob(),
            CaKey::Plain(_, b) => b,
        }
    }
    fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
        match self {
            CaKey::Prepared(p) => p.verifies(message, sig),
            CaKey::Plain(k, _) => crate::verify::verifies(k, message, sig),
        }
    }
}

/// The to-be-signed part of a certificate: phase one of two-phase signing.
///
/// It borrows the template, the subject key and the CA key it was encoded
/// from; [`TbsCertificate::assemble`] makes the owned [`Certificate`].
#[derive(Debug, Clone)]
pub struct TbsCertificate<'a> {
    template: &'a CertTemplate,
    subject: &'a KeyData,
    ca: CaKey<'a>,
    key_type: &'static str,
    nonce: Nonce<'a>,
    bytes: Vec<u8>,
}

impl<'a> TbsCertificate<'a> {
    /// Encodes the to-be-signed bytes of a certificate for `subject`, to be
    /// signed by the CA key whose public part is `ca_key`. To issue many
    /// certificates under one CA key, prepare it once and use
    /// [`TbsCertificate::encode_prepared`].
    pub fn encode(
        template: &'a CertTemplate,
        subject: &'a KeyData,
        ca_key: &'a KeyData,
    ) -> Result<Self> {
        SigAlg::for_key(ca_key)?;
        Self::encode_for(
            template,
            subject,
            CaKey::Plain(ca_key, encode_key_blob(ca_key)?),
        )
    }

    /// [`TbsCertificate::encode`] for a CA key prepared once
    /// ([`PreparedCa`]): nothing of the CA key is re-encoded, and the
    /// template is written without being copied.
    pub fn encode_prepared(
        template: &'a CertTemplate,
        subject: &'a KeyData,
        ca: &'a PreparedCa,
    ) -> Result<Self> {
        Self::encode_for(template, subject, CaKey::Prepared(ca))
    }

    fn encode_for(template: &'a CertTemplate, subject: &'a KeyData, ca: CaKey<'a>) -> Result<Self> {
        template.check()?;
        let key_type = cert_key_type(subject)?;
        let nonce = match &template.nonce {
            Some(n) if n.is_empty() => {
                return Err(Error::Template("the nonce must not be empty".into()))
            }
            Some(n) => Nonce::Given(n),
            None => {
                let mut n = [0u8; 32];
                OsRng.fill_bytes(&mut n);
                Nonce::Drawn(n)
            }
        };
        let mut bytes = Vec::with_capacity(512);
        TbsFields {
            key_type,
            nonce: nonce.as_bytes(),
            public_key: subject,
            serial: template.serial,
            cert_type: template.cert_type,
            key_id: &template.key_id,
            principals: &template.principals,
            valid_after: template.valid_after,
            valid_before: template.valid_before,
            critical_options: &template.critical_options,
            extensions: &template.extensions,
            reserved: &[],
            signature_key: ca.blob(),
        }
        .encode(&mut bytes)?;
        Ok(Self {
            template,
            subject,
            ca,
            key_type,
            nonce,
            bytes,
        })
    }

    /// The bytes the CA key must sign.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The CA public key this certificate names as its signer.
    pub fn ca_key(&self) -> &KeyData {
        self.ca.key()
    }

    /// Phase two: joins the signature and checks it verifies under the CA key.
    /// A signature that does not verify is an error; no certificate is made.
    pub fn assemble(self, signature: Signature) -> Result<Certificate> {
        check_sig_fits(self.ca.key(), &signature)?;
        if !self.ca.verifies(&self.bytes, &signature) {
            return Err(Error::Invalid(format!(
                "the {} signature does not verify under the CA key {}",
                signature.algorithm().as_str(),
                self.ca.key().fingerprint(HashAlg::Sha256)
            )));
        }
        self.assemble_unverified(signature)
    }

    /// Phase two without the cryptographic check: only for callers that have
    /// verified `signature` over [`TbsCertificate::as_bytes`] themselves.
    /// The signature algorithm is still checked against the CA key.
    pub fn assemble_unverified(self, signature: Signature) -> Result<Certificate> {
        use ssh_encoding::Encode;
        check_sig_fits(self.ca.key(), &signature)?;
        let t = self.template;
        let tbs_len = self.bytes.len();
        let mut blob = self.bytes;
        put_nested(&mut blob, |o| {
            signature
                .encode(o)
                .map_err(|e| Error::signature(format_args!("cannot encode signature: {e}")))
        })?;
        Ok(Certificate {
            body: Body {
                key_type: self.key_type,
                nonce: self.nonce.as_bytes().to_vec(),
                public_key: self.subject.clone(),
                serial: t.serial,
                cert_type: t.cert_type,
                key_id: t.key_id.clone(),
                principals: t.principals.clone(),
                valid_after: t.valid_after,
                valid_before: t.valid_before,
                critical_options: t.critical_options.clone(),
                extensions: t.extensions.clone(),
                reserved: Vec::new(),
                signature_key: self.ca.key().clone(),
            },
            signature,
            comment: t.comment.clone(),
            blob,
            tbs_len,
        })
    }
}

fn check_sig_fits(ca: &KeyData, sig: &Signature) -> Result<()> {
    match SigAlg::of_signature(sig) {
        Some(a) if a.fits_key(ca) => Ok(()),
        _ => Err(Error::signature(format_args!(
            "{} signature cannot come from a {} CA key",
            sig.algorithm().as_str(),
            ca.algorithm().as_str()
        ))),
    }
}

/// A decoded OpenSSH certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    body: Body,
    signature: Signature,
    comment: String,
    /// The certificate blob exactly as signed and decoded (or assembled).
    blob: Vec<u8>,
    /// Where the signature field starts in `blob`.
    tbs_len: usize,
}

impl Certificate {
    /// Decodes the binary certificate blob, strictly: unknown key types,
    /// truncated or trailing data, unsorted or duplicate options, and a
    /// signature that does not fit the CA key are errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut c = Cursor::new(bytes, "certificate");
        let type_name = c.utf8("key type")?;
        let (key_type, plain, nfields) = cert_type_info(type_name).ok_or_else(|| {
            Error::decode(format_args!("unsupported certificate type `{type_name}`"))
        })?;
        let nonce = c.string("nonce")?.to_vec();
        let mut blob = Vec::with_capacity(128);
        put_string(&mut blob, plain.as_bytes())?;
        for _ in 0..nfields {
            put_string(&mut blob, c.string("public key")?)?;
        }
        let public_key = decode_key(&blob, "subject public key")?;
        let serial = c.u64("serial")?;
        let cert_type = match c.u32("certificate type")? {
            1 => CertType::User,
            2 => CertType::Host,
            n => return Err(Error::decode(format_args!("unknown certificate type {n}"))),
        };
        let key_id = c.utf8("key id")?.to_owned();
        let mut pc = Cursor::new(c.string("principals")?, "principals");
        let mut principals = Vec::new();
        while !pc.is_empty() {
            principals.push(pc.utf8("principal")?.to_owned());
        }
        let valid_after = c.u64("valid after")?;
        let valid_before = c.u64("valid before")?;
        let critical_options = decode_options(c.string("critical options")?, "critical options")?;
        let extensions = decode_options(c.string("extensions")?, "extensions")?;
        let reserved = c.string("reserved")?.to_vec();
        let signature_key = decode_key(c.string("signature key")?, "CA public key")?;
        let tbs_len = bytes.len() - c.remaining().len();
        let sig_blob = c.string("signature")?;
        c.finish()?;
        let signature = decode_signature(sig_blob)?;
        check_sig_fits(&signature_key, &signature)?;
        Ok(Self {
            body: Body {
                key_type,
                nonce,
                public_key,
                serial,
                cert_type,
                key_id,
                principals,
                valid_after,
                valid_before,
                critical_options,
                extensions,
                reserved,
                signature_key,
            },
            signature,
            comment: String::new(),
            blob: bytes.to_vec(),
            tbs_len,
        })
    }

    /// Decodes the OpenSSH text form `TYPE BASE64 [COMMENT]`.
    pub fn from_openssh(text: &str) -> Result<Self> {
        let text = text.trim();
        let mut parts = text.splitn(3, [' ', '\t']);
        let type_name = parts.next().unwrap_or_default();
        let b64 = parts
            .next()
            .ok_or_else(|| Error::decode("expected `TYPE BASE64 [COMMENT]`"))?;
        let comment = parts.next().unwrap_or_default().trim();
        let bytes = Base64::decode_vec(b64.trim())
            .map_err(|_| Error::decode("the certificate is not valid base64"))?;
        let mut cert = Self::from_bytes(&bytes)?;
        if cert.body.key_type != type_name {
            return Err(Error::decode(format_args!(
                "text says `{type_name}` but the blob is `{}`",
                cert.body.key_type
            )));
        }
        cert.comment = comment.to_owned();
        Ok(cert)
    }

    /// The certificate blob (as signed; nothing is re-encoded).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.blob.clone())
    }

    /// The certificate blob, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.blob
    }

    /// The OpenSSH text form, as written to `*-cert.pub` files.
    pub fn to_openssh(&self) -> Result<String> {
        let b64 = Base64::encode_string(&self.blob);
        let mut out =
            String::with_capacity(self.body.key_type.len() + b64.len() + self.comment.len() + 2);
        out.push_str(self.body.key_type);
        out.push(' ');
        out.push_str(&b64);
        if !self.comment.is_empty() {
            out.push(' ');
            out.push_str(&self.comment);
        }
        Ok(out)
    }

    /// The to-be-signed bytes (the blob without its signature).
    pub fn tbs_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.tbs().to_vec())
    }

    /// The to-be-signed bytes, borrowed.
    pub fn tbs(&self) -> &[u8] {
        &self.blob[..self.tbs_len]
    }

    /// Checks the CA signature against the CA key named in the certificate.
    /// This alone says nothing about trust: see [`Certificate::validate`].
    pub fn verify_signature(&self) -> Result<()> {
        if crate::verify::verifies(&self.body.signature_key, self.tbs(), &self.signature) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "the {} signature does not verify under the CA key {}",
            self.signature.algorithm().as_str(),
            self.signing_ca_fingerprint()
        )))
    }

    /// Certificate key type name, e.g. `ssh-ed25519-cert-v01@openssh.com`.
    pub fn key_type(&self) -> &'static str {
        self.body.key_type
    }
    /// The nonce.
    pub fn nonce(&self) -> &[u8] {
        &self.body.nonce
    }
    /// The certified (subject) public key.
    pub fn public_key(&self) -> &KeyData {
        &self.body.public_key
    }
    /// Serial number.
    pub fn serial(&self) -> u64 {
        self.body.serial
    }
    /// User or host.
    pub fn cert_type(&self) -> CertType {
        self.body.cert_type
    }
    /// Key identifier.
    pub fn key_id(&self) -> &str {
        &self.body.key_id
    }
    /// Principals.
    pub fn principals(&self) -> &[String] {
        &self.body.principals
    }
    /// Start of validity (unix seconds, inclusive).
    pub fn valid_after(&self) -> u64 {
        self.body.valid_after
    }
    /// End of validity (unix seconds, exclusive).
    pub fn valid_before(&self) -> u64 {
        self.body.valid_before
    }
    /// Critical options.
    pub fn critical_options(&self) -> &CertOptions {
        &self.body.critical_options
    }
    /// Extensions.
    pub fn extensions(&self) -> &CertOptions {
        &self.body.extensions
    }
    /// The CA public key that signed the certificate.
    pub fn signature_key(&self) -> &KeyData {
        &self.body.signature_key
    }
    /// The CA signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
    /// Comment of the text form.
    pub fn comment(&self) -> &str {
        &self.comment
    }
    /// Sets the comment of the text form.
    pub fn set_comment(&mut self, comment: impl Into<String>) {
        self.comment = comment.into();
    }
    /// SHA-256 fingerprint of the subject key.
    pub fn public_key_fingerprint(&self) -> Fingerprint {
        self.body.public_key.fingerprint(HashAlg::Sha256)
    }
    /// SHA-256 fingerprint of the signing CA key.
    pub fn signing_ca_fingerprint(&self) -> Fingerprint {
        self.body.signature_key.fingerprint(HashAlg::Sha256)
    }
}

pub(crate) fn decode_key(blob: &[u8], what: &str) -> Result<KeyData> {
    use ssh_encoding::Decode;
    let mut r = blob;
    let key = KeyData::decode(&mut r).map_err(|e| Error::decode(format_args!("{what}: {e}")))?;
    if !r.is_empty() {
        return Err(Error::decode(format_args!(
            "{what}: {} trailing bytes",
            r.len()
        )));
    }
    // Re-encoding must reproduce the blob (canonical form).
    if encode_key_blob(&key)? != blob {
        return Err(Error::decode(format_args!(
            "{what}: not in canonical encoding"
        )));
    }
    Ok(key)
}

fn decode_signature(blob: &[u8]) -> Result<Signature> {
    use ssh_encoding::Decode;
    let mut r = blob;
    let sig =
        Signature::decode(&mut r).map_err(|e| Error::decode(format_args!("signature: {e}")))?;
    if !r.is_empty() {
        return Err(Error::decode(format_args!(
            "signature: {} trailing bytes",
            r.len()
        )));
    }
    Ok(sig)
}

fn decode_options(data: &[u8], what: &'static str) -> Result<CertOptions> {
    let mut c = Cursor::new(data, what);
    let mut map = CertOptions::new();
    let mut last: Option<String> = None;
    while !c.is_empty() {
        let name = c.utf8("option name")?.to_owned();
        let value = OptionValue::from_data(c.string("option data")?);
        if let Some(prev) = &last {
            match prev.as_bytes().cmp(name.as_bytes()) {
                std::cmp::Ordering::Equal => {
                    return Err(Error::decode(format_args!(
                        "{what}: `{name}` appears twice"
                    )))
                }
                std::cmp::Ordering::Greater => {
                    return Err(Error::decode(format_args!(
                        "{what}: `{name}` is out of order after `{prev}`"
                    )))
                }
                std::cmp::Ordering::Less => {}
            }
        }
        last = Some(name.clone());
        map.insert(name, value);
    }
    Ok(map)
}
