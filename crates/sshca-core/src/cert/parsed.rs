//! A decoded certificate: strict decoding, its fields, and its OpenSSH
//! text form.

use base64ct::{Base64, Encoding};
use ssh_key::{public::KeyData, Fingerprint, HashAlg, Signature};

use super::keys::{cert_type_info, decode_key};
use super::tbs::check_sig_fits;
use super::{CertOptions, CertType, OptionValue};
use crate::wire::{put_string, Cursor};
use crate::{Error, Result};

/// The fields every certificate carries, without its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Body {
    pub(super) key_type: &'static str,
    pub(super) nonce: Vec<u8>,
    pub(super) public_key: KeyData,
    pub(super) serial: u64,
    pub(super) cert_type: CertType,
    pub(super) key_id: String,
    pub(super) principals: Vec<String>,
    pub(super) valid_after: u64,
    pub(super) valid_before: u64,
    pub(super) critical_options: CertOptions,
    pub(super) extensions: CertOptions,
    pub(super) reserved: Vec<u8>,
    pub(super) signature_key: KeyData,
}

/// A decoded OpenSSH certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub(super) body: Body,
    pub(super) signature: Signature,
    pub(super) comment: String,
    /// The certificate blob exactly as signed and decoded (or assembled).
    pub(super) blob: Vec<u8>,
    /// Where the signature field starts in `blob`.
    pub(super) tbs_len: usize,
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

pub(super) fn decode_signature(blob: &[u8]) -> Result<Signature> {
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

pub(super) fn decode_options(data: &[u8], what: &'static str) -> Result<CertOptions> {
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
