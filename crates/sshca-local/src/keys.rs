//! Creating and re-encoding local private keys (OpenSSH format).

use p521::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use ssh_key::private::{EcdsaKeypair, EcdsaPrivateKey, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::{LineEnding, PrivateKey};
use sshca_signer::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use crate::Native;

pub use sshca_signer::KeySpec;

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidKey, e.to_string())
}

/// Generates a new private key.
pub fn generate(spec: KeySpec, comment: &str) -> Result<PrivateKey> {
    let data = match spec {
        KeySpec::Ed25519 => KeypairData::Ed25519(Ed25519Keypair::random(&mut OsRng)),
        KeySpec::Ecdsa(bits) => {
            let curve = match bits {
                256 => ssh_key::EcdsaCurve::NistP256,
                384 => ssh_key::EcdsaCurve::NistP384,
                _ => ssh_key::EcdsaCurve::NistP521,
            };
            KeypairData::Ecdsa(EcdsaKeypair::random(&mut OsRng, curve).map_err(crypto)?)
        }
        KeySpec::Rsa(bits) => {
            KeypairData::Rsa(RsaKeypair::random(&mut OsRng, bits as usize).map_err(crypto)?)
        }
    };
    PrivateKey::new(data, comment).map_err(crypto)
}

/// Encodes a private key in OpenSSH format, encrypted (aes256-ctr, bcrypt
/// KDF, as ssh-keygen) when a passphrase is given.
pub fn to_openssh(key: &PrivateKey, passphrase: Option<&[u8]>) -> Result<Zeroizing<String>> {
    let key = match passphrase {
        Some(p) if !p.is_empty() => key.encrypt(&mut OsRng, p).map_err(crypto)?,
        _ => key.clone(),
    };
    key.to_openssh(LineEnding::LF).map_err(crypto)
}

pub(crate) fn to_private_key(native: &Native, comment: &str) -> Result<PrivateKey> {
    let data = match native {
        Native::Ed25519(k) => KeypairData::Ed25519(Ed25519Keypair::from(k)),
        Native::P256(k) => KeypairData::Ecdsa(EcdsaKeypair::NistP256 {
            public: k.verifying_key().to_encoded_point(false),
            private: EcdsaPrivateKey::from(p256::SecretKey::from(k.as_nonzero_scalar())),
        }),
        Native::P384(k) => KeypairData::Ecdsa(EcdsaKeypair::NistP384 {
            public: k.verifying_key().to_encoded_point(false),
            private: EcdsaPrivateKey::from(p384::SecretKey::from(k.as_nonzero_scalar())),
        }),
        Native::P521(k) => {
            let secret = p521::SecretKey::from_slice(&k.to_bytes()).map_err(crypto)?;
            KeypairData::Ecdsa(EcdsaKeypair::NistP521 {
                public: secret.public_key().to_encoded_point(false),
                private: EcdsaPrivateKey::from(secret),
            })
        }
        Native::Rsa(k) => KeypairData::Rsa(RsaKeypair::try_from(&k.key).map_err(crypto)?),
    };
    PrivateKey::new(data, comment).map_err(crypto)
}
