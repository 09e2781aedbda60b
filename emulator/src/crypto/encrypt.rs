//! Encryption with emulated keys: AES-256-GCM for symmetric keys, RSA
//! PKCS#1 v1.5 and OAEP for asymmetric ones.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use rand_core::{OsRng, RngCore};

use super::{err, CryptoError, Hash, Material};

impl Material {
    /// Symmetric encryption (AES-256-GCM; `nonce || ciphertext || tag`).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Material::Aes256(k) = self else {
            return Err(err("not a symmetric key"));
        };
        let cipher = Aes256Gcm::new_from_slice(k).map_err(|e| err(e.to_string()))?;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| err("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Reverses [`Material::seal`].
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Material::Aes256(k) = self else {
            return Err(err("not a symmetric key"));
        };
        if sealed.len() < 12 + 16 {
            return Err(err("ciphertext too short"));
        }
        let cipher = Aes256Gcm::new_from_slice(k).map_err(|e| err(e.to_string()))?;
        cipher
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad,
                },
            )
            .map_err(|_| err("ciphertext does not decrypt under this key (wrong key, context or corrupted data)"))
    }

    /// RSA encryption with OAEP (SHA-1 or SHA-256) or PKCS#1 v1.5 (`hash` None).
    pub fn rsa_encrypt(
        &self,
        hash: Option<Hash>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let Material::Rsa(k) = self else {
            return Err(err("not an RSA key"));
        };
        let public = k.to_public_key();
        let r = match hash {
            None => public.encrypt(&mut OsRng, rsa::Pkcs1v15Encrypt, plaintext),
            Some(Hash::Sha1) => {
                public.encrypt(&mut OsRng, rsa::Oaep::new::<sha1::Sha1>(), plaintext)
            }
            Some(Hash::Sha256) => {
                public.encrypt(&mut OsRng, rsa::Oaep::new::<sha2::Sha256>(), plaintext)
            }
            Some(h) => return Err(err(format!("OAEP with {h:?} is not supported"))),
        };
        r.map_err(|e| err(format!("RSA encryption failed: {e}")))
    }

    /// RSA decryption, the inverse of [`Material::rsa_encrypt`].
    pub fn rsa_decrypt(
        &self,
        hash: Option<Hash>,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let Material::Rsa(k) = self else {
            return Err(err("not an RSA key"));
        };
        let r = match hash {
            None => k.decrypt(rsa::Pkcs1v15Encrypt, ciphertext),
            Some(Hash::Sha1) => k.decrypt(rsa::Oaep::new::<sha1::Sha1>(), ciphertext),
            Some(Hash::Sha256) => k.decrypt(rsa::Oaep::new::<sha2::Sha256>(), ciphertext),
            Some(h) => return Err(err(format!("OAEP with {h:?} is not supported"))),
        };
        r.map_err(|_| err("RSA decryption failed"))
    }
}
