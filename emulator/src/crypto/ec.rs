//! ECDSA keys prepared once for fast signing through aws-lc.

use std::sync::Arc;

use aws_lc_rs::signature::EcdsaKeyPair;

use super::{err, CryptoError, EcFormat, Hash};

/// An ECDSA private key with what signs with it prepared once: its public
/// point, and aws-lc's key pairs, which sign a digest as given (what a KMS
/// does with a prehashed message) in constant-time assembly. The RustCrypto
/// key (reached through `Deref`) is kept for export, verification and
/// hashes other than the curve's own.
#[derive(Clone)]
pub struct EcKey<S> {
    pub(super) secret: S,
    /// The uncompressed SEC1 public point.
    pub(super) public: Vec<u8>,
    /// The hash the fast key pairs sign digests of.
    pub(super) hash: Hash,
    /// Key pairs producing fixed-width `r||s` and DER signatures.
    pub(super) fast: Option<Arc<(EcdsaKeyPair, EcdsaKeyPair)>>,
}

impl<S> std::ops::Deref for EcKey<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.secret
    }
}

impl<S> EcKey<S> {
    /// Signs `digest` through aws-lc; `None` when the hash is not the one
    /// the key pairs are bound to (the caller then signs portably).
    pub(super) fn sign_fast(
        &self,
        hash: Hash,
        digest: &[u8],
        fmt: EcFormat,
    ) -> Option<Result<Vec<u8>, CryptoError>> {
        let (fixed, der) = self.fast.as_deref()?;
        if hash != self.hash {
            return None;
        }
        let alg = match hash {
            Hash::Sha256 => &aws_lc_rs::digest::SHA256,
            Hash::Sha384 => &aws_lc_rs::digest::SHA384,
            Hash::Sha512 => &aws_lc_rs::digest::SHA512,
            Hash::Sha1 => return None,
        };
        let pair = match fmt {
            EcFormat::Raw => fixed,
            EcFormat::Der => der,
        };
        Some(
            aws_lc_rs::digest::Digest::import_less_safe(digest, alg)
                .and_then(|d| pair.sign_digest(&d))
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| err("ECDSA signing failed")),
        )
    }
}

macro_rules! ec_key {
    ($krate:ident, $hash:expr, $fixed:expr, $der:expr) => {
        impl From<$krate::SecretKey> for EcKey<$krate::SecretKey> {
            fn from(secret: $krate::SecretKey) -> Self {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let public = secret
                    .public_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                let pair = |alg| {
                    EcdsaKeyPair::from_private_key_and_public_key(alg, &secret.to_bytes(), &public)
                        .ok()
                };
                let fast = pair($fixed).zip(pair($der)).map(Arc::new);
                Self {
                    secret,
                    public,
                    hash: $hash,
                    fast,
                }
            }
        }
    };
}

ec_key!(
    p256,
    Hash::Sha256,
    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING
);
ec_key!(
    p384,
    Hash::Sha384,
    &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
    &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING
);
ec_key!(
    k256,
    Hash::Sha256,
    &aws_lc_rs::signature::ECDSA_P256K1_SHA256_FIXED_SIGNING,
    &aws_lc_rs::signature::ECDSA_P256K1_SHA256_ASN1_SIGNING
);
ec_key!(
    p521,
    Hash::Sha512,
    &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    &aws_lc_rs::signature::ECDSA_P521_SHA512_ASN1_SIGNING
);
