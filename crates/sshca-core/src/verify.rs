//! Signature verification of SSH signatures under SSH public keys.
//!
//! ECDSA P-256/P-384 go through `ring` (constant-time assembly on common
//! CPUs, several times faster than the portable implementations), Ed25519
//! through `ed25519-dalek` (strict verification, its SIMD backend where the
//! CPU has one), every other algorithm through the `ssh-key` verifier. All
//! paths accept exactly the signatures that verify: a malformed signature
//! blob, a point not on the curve or a wrong algorithm is a failure, never a
//! panic.
//!
//! [`PreparedCa`] holds a CA key ready for many certificates: its wire blob,
//! its algorithms and its verifier are made once, not per certificate.

use std::fmt;

use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use signature::Verifier as _;
use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{Algorithm, HashAlg, Signature};

use crate::convert::{ecdsa_ssh_to_raw_into, SigAlg};
use crate::wire::encode_key_blob;
use crate::Result;

/// How one key checks signatures.
enum Verifier {
    /// Decompressed once; `None` when the key is not a valid point (then
    /// nothing verifies).
    Ed25519(Option<ed25519_dalek::VerifyingKey>),
    /// ring's ECDSA verifier over the SEC1 point.
    Ecdsa(UnparsedPublicKey<Vec<u8>>),
    /// Everything else: the `ssh-key` verifier over the key itself.
    Portable,
}

impl Verifier {
    fn new(key: &KeyData) -> Self {
        let ecdsa = |alg: &'static dyn VerificationAlgorithm, k: &EcdsaPublicKey| {
            Verifier::Ecdsa(UnparsedPublicKey::new(alg, k.as_sec1_bytes().to_vec()))
        };
        match key {
            KeyData::Ed25519(k) => {
                Verifier::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&k.0).ok())
            }
            KeyData::Ecdsa(k @ EcdsaPublicKey::NistP256(_)) => {
                ecdsa(&rs::ECDSA_P256_SHA256_FIXED, k)
            }
            KeyData::Ecdsa(k @ EcdsaPublicKey::NistP384(_)) => {
                ecdsa(&rs::ECDSA_P384_SHA384_FIXED, k)
            }
            _ => Verifier::Portable,
        }
    }

    fn verifies(&self, key: &KeyData, message: &[u8], sig: &Signature) -> bool {
        match self {
            Verifier::Ed25519(k) => {
                let (Some(k), Algorithm::Ed25519) = (k, sig.algorithm()) else {
                    return false;
                };
                let Ok(bytes) = <[u8; 64]>::try_from(sig.as_bytes()) else {
                    return false;
                };
                k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            }
            Verifier::Ecdsa(public) => {
                // The curve of the signature must be the key's: a P-384
                // signature never reaches the P-256 verifier.
                if !SigAlg::of_signature(sig).is_some_and(|a| a.fits_key(key)) {
                    return false;
                }
                let mut raw = [0u8; 132];
                ecdsa_ssh_to_raw_into(sig, &mut raw)
                    .is_some_and(|n| public.verify(message, &raw[..n]).is_ok())
            }
            Verifier::Portable => key.verify(message, sig).is_ok(),
        }
    }
}

/// Checks `sig` over `message` under `key`; `false` when it does not
/// verify for any reason (wrong key, wrong algorithm, malformed). For many
/// signatures under one key, [`PreparedCa::verifies`] does the key's part
/// once.
pub fn verifies(key: &KeyData, message: &[u8], sig: &Signature) -> bool {
    Verifier::new(key).verifies(key, message, sig)
}

/// A CA public key prepared once for issuing many certificates: its wire
/// blob encoded, its signature algorithms listed and its verifier parsed
/// (an Ed25519 point decompressed), so none of it is redone per
/// certificate.
pub struct PreparedCa {
    key: KeyData,
    blob: Vec<u8>,
    algorithms: Vec<SigAlg>,
    verifier: Verifier,
}

impl PreparedCa {
    /// Prepares `key`; an error when it cannot be a CA key (DSA, security
    /// keys, unknown types).
    pub fn new(key: &KeyData) -> Result<Self> {
        Ok(Self {
            algorithms: SigAlg::for_key(key)?,
            blob: encode_key_blob(key)?,
            verifier: Verifier::new(key),
            key: key.clone(),
        })
    }

    /// Prepares `key` for a signer that offers only some of the key's
    /// algorithms (a KMS key bound to one), the preferred first; an error
    /// when the list is empty or names an algorithm the key cannot make.
    pub fn with_algorithms(key: &KeyData, algorithms: Vec<SigAlg>) -> Result<Self> {
        if algorithms.is_empty() {
            return Err(crate::Error::Key(format!(
                "the {} key offers no signature algorithm",
                key.algorithm().as_str()
            )));
        }
        if let Some(a) = algorithms.iter().find(|a| !a.fits_key(key)) {
            return Err(crate::Error::Key(format!(
                "{a} does not fit a {} key",
                key.algorithm().as_str()
            )));
        }
        Ok(Self {
            algorithms,
            ..Self::new(key)?
        })
    }

    /// The CA public key.
    pub fn key(&self) -> &KeyData {
        &self.key
    }

    /// The key's SSH wire encoding (as in a certificate's signature key).
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The signature algorithms the key can produce, the preferred first.
    pub fn algorithms(&self) -> &[SigAlg] {
        &self.algorithms
    }

    /// Checks `sig` over `message` under this key, like [`verifies`].
    pub fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
        self.verifier.verifies(&self.key, message, sig)
    }
}

impl fmt::Debug for PreparedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCa")
            .field("algorithm", &self.key.algorithm().as_str())
            .field(
                "fingerprint",
                &self.key.fingerprint(HashAlg::Sha256).to_string(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::{EcdsaCurve, PrivateKey};

    /// Both paths agree: each key type signs, verifies, and rejects a
    /// flipped message, a flipped signature and another key.
    #[test]
    fn fast_and_portable_paths_agree() {
        for alg in [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
        ] {
            let k = PrivateKey::random(&mut OsRng, alg.clone()).unwrap();
            let other = PrivateKey::random(&mut OsRng, alg.clone()).unwrap();
            let sig = signature::Signer::<Signature>::try_sign(&k, b"message").unwrap();
            let pk = k.public_key().key_data();
            assert!(verifies(pk, b"message", &sig), "{alg:?}");
            let prepared = PreparedCa::new(pk).unwrap();
            assert!(prepared.verifies(b"message", &sig), "{alg:?}");
            assert!(!prepared.verifies(b"messagE", &sig), "{alg:?}");
            assert!(
                !PreparedCa::new(other.public_key().key_data())
                    .unwrap()
                    .verifies(b"message", &sig),
                "{alg:?}"
            );
            assert_eq!(
                verifies(pk, b"message", &sig),
                pk.verify(b"message", &sig).is_ok()
            );
            assert!(!verifies(pk, b"messagE", &sig), "{alg:?}");
            assert!(
                !verifies(other.public_key().key_data(), b"message", &sig),
                "{alg:?}"
            );
            let mut bytes = sig.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            if let Ok(bad) = Signature::new(sig.algorithm(), bytes) {
                assert!(!verifies(pk, b"message", &bad), "{alg:?}");
                assert!(!prepared.verifies(b"message", &bad), "{alg:?}");
            }
            let truncated = Signature::new(sig.algorithm(), sig.as_bytes()[..8].to_vec());
            if let Ok(bad) = truncated {
                assert!(!verifies(pk, b"message", &bad), "{alg:?}");
            }
        }
    }
}

#[cfg(test)]
mod prepared_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::{EcdsaCurve, PrivateKey};

    /// A signature of another curve, or of another key type, never verifies
    /// under a prepared key, whatever its bytes.
    #[test]
    fn other_algorithms_never_verify() {
        let p256 = PrivateKey::random(
            &mut OsRng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        )
        .unwrap();
        let ed = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let ed_sig = signature::Signer::<Signature>::try_sign(&ed, b"m").unwrap();
        let p_sig = signature::Signer::<Signature>::try_sign(&p256, b"m").unwrap();
        let prepared = PreparedCa::new(p256.public_key().key_data()).unwrap();
        assert!(prepared.verifies(b"m", &p_sig));
        assert!(!prepared.verifies(b"m", &ed_sig));
        let as_p384 = Signature::new(
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            p_sig.as_bytes().to_vec(),
        )
        .unwrap();
        assert!(!prepared.verifies(b"m", &as_p384));
        let ed_prepared = PreparedCa::new(ed.public_key().key_data()).unwrap();
        assert!(ed_prepared.verifies(b"m", &ed_sig));
        assert!(!ed_prepared.verifies(b"m", &p_sig));
        assert_eq!(ed_prepared.algorithms(), &[SigAlg::Ed25519]);
        assert!(PreparedCa::with_algorithms(ed.public_key().key_data(), vec![]).is_err());
        assert!(
            PreparedCa::with_algorithms(ed.public_key().key_data(), vec![SigAlg::EcdsaP256])
                .is_err()
        );
    }
}
