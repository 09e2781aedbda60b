//! Signature verification of SSH signatures under SSH public keys.
//!
//! ECDSA P-256/P-384 and Ed25519 go through `ring` (constant-time assembly
//! on common CPUs, several times faster than the portable implementations);
//! every other algorithm through the `ssh-key` verifier. Both paths accept
//! exactly the signatures that verify: a malformed signature blob, a point
//! not on the curve or a wrong algorithm is a failure, never a panic.

use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use signature::Verifier;
use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{Algorithm, EcdsaCurve, Signature};

use crate::convert::ecdsa_ssh_to_raw;

/// Checks `sig` over `message` under `key`; `false` when it does not
/// verify for any reason (wrong key, wrong algorithm, malformed).
pub fn verifies(key: &KeyData, message: &[u8], sig: &Signature) -> bool {
    let fast = |alg: &'static dyn VerificationAlgorithm, public: &[u8], sig: &[u8]| {
        UnparsedPublicKey::new(alg, public)
            .verify(message, sig)
            .is_ok()
    };
    match (key, sig.algorithm()) {
        (KeyData::Ed25519(k), Algorithm::Ed25519) => fast(&rs::ED25519, &k.0, sig.as_bytes()),
        (
            KeyData::Ecdsa(k @ EcdsaPublicKey::NistP256(_)),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ) => ecdsa_ssh_to_raw(sig)
            .is_ok_and(|raw| fast(&rs::ECDSA_P256_SHA256_FIXED, k.as_sec1_bytes(), &raw)),
        (
            KeyData::Ecdsa(k @ EcdsaPublicKey::NistP384(_)),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
        ) => ecdsa_ssh_to_raw(sig)
            .is_ok_and(|raw| fast(&rs::ECDSA_P384_SHA384_FIXED, k.as_sec1_bytes(), &raw)),
        _ => key.verify(message, sig).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::PrivateKey;

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
            }
            let truncated = Signature::new(sig.algorithm(), sig.as_bytes()[..8].to_vec());
            if let Ok(bad) = truncated {
                assert!(!verifies(pk, b"message", &bad), "{alg:?}");
            }
        }
    }
}
