//! Phase one of two-phase signing: the to-be-signed bytes of a
//! certificate, and assembling them with a signature.

use rand_core::{OsRng, RngCore};
use ssh_key::{public::KeyData, HashAlg, Signature};

use super::keys::{cert_key_type, encode_key_blob, put_key_fields};
use super::parsed::Body;
use super::{CertOptions, CertTemplate, CertType, Certificate};
use crate::convert::SigAlg;
use crate::verify::PreparedCa;
use crate::wire::{put_nested, put_string, put_u32, put_u64};
use crate::{Error, Result};

pub(super) fn encode_options(out: &mut Vec<u8>, map: &CertOptions) -> Result<()> {
    put_nested(out, |o| {
        for (name, value) in map {
            put_string(o, name.as_bytes())?;
            value.encode_data(o)?;
        }
        Ok(())
    })
}

/// The to-be-signed fields, borrowed: what both the encoder and the decoded
/// [`Body`] write.
pub(super) struct TbsFields<'a> {
    pub(super) key_type: &'static str,
    pub(super) nonce: &'a [u8],
    public_key: &'a KeyData,
    pub(super) serial: u64,
    pub(super) cert_type: CertType,
    pub(super) key_id: &'a str,
    pub(super) principals: &'a [String],
    pub(super) valid_after: u64,
    pub(super) valid_before: u64,
    pub(super) critical_options: &'a CertOptions,
    pub(super) extensions: &'a CertOptions,
    pub(super) reserved: &'a [u8],
    /// The CA key's wire blob.
    pub(super) signature_key: &'a [u8],
}

impl TbsFields<'_> {
    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
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
pub(super) enum Nonce<'a> {
    Given(&'a [u8]),
    Drawn([u8; 32]),
}

impl Nonce<'_> {
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Nonce::Given(n) => n,
            Nonce::Drawn(n) => n,
        }
    }
}

/// The CA key a certificate is encoded for.
#[derive(Debug, Clone)]
pub(super) enum CaKey<'a> {
    Prepared(&'a PreparedCa),
    Plain(&'a KeyData, Vec<u8>),
}

impl CaKey<'_> {
    pub(super) fn key(&self) -> &KeyData {
        match self {
            CaKey::Prepared(p) => p.key(),
            CaKey::Plain(k, _) => k,
        }
    }
    pub(super) fn blob(&self) -> &[u8] {
        match self {
            CaKey::Prepared(p) => p.blob(),
            CaKey::Plain(_, b) => b,
        }
    }
    pub(super) fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
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
    pub(super) template: &'a CertTemplate,
    pub(super) subject: &'a KeyData,
    pub(super) ca: CaKey<'a>,
    pub(super) key_type: &'static str,
    pub(super) nonce: Nonce<'a>,
    pub(super) bytes: Vec<u8>,
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

    pub(super) fn encode_for(
        template: &'a CertTemplate,
        subject: &'a KeyData,
        ca: CaKey<'a>,
    ) -> Result<Self> {
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

pub(super) fn check_sig_fits(ca: &KeyData, sig: &Signature) -> Result<()> {
    match SigAlg::of_signature(sig) {
        Some(a) if a.fits_key(ca) => Ok(()),
        _ => Err(Error::signature(format_args!(
            "{} signature cannot come from a {} CA key",
            sig.algorithm().as_str(),
            ca.algorithm().as_str()
        ))),
    }
}
