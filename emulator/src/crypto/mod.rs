//! Real cryptography behind every emulated key: generation, PEM import and
//! export, signing, verification and encryption.

use ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use ed25519_dalek::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::{OsRng, RngCore};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::Digest;

mod ec;
mod ecdh;
mod encrypt;
mod prehashed;
pub use ec::EcKey;
pub use ecdh::ecdh;
use prehashed::Prehashed;

/// A failure of a cryptographic operation, worded for the caller's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError(pub String);

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> CryptoError {
    CryptoError(msg.into())
}

/// A hash function used by a signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SHA-1 (only for RSA-OAEP).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// Length of the digest in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// ECDSA over a digest made with the hash.
    Ecdsa(Hash),
    /// RSASSA-PKCS1-v1_5 with the hash.
    Pkcs1(Hash),
    /// RSASSA-PSS with the hash (salt length = digest length).
    Pss(Hash),
    /// Pure Ed25519 over the whole message.
    Ed25519,
    /// Ed25519ph (RFC 8032, empty context) over a SHA-512 digest.
    Ed25519ph,
}

impl Scheme {
    /// The hash this scheme signs, `None` for pure Ed25519.
    pub fn hash(self) -> Option<Hash> {
        match self {
            Scheme::Ecdsa(h) | Scheme::Pkcs1(h) | Scheme::Pss(h) => Some(h),
            Scheme::Ed25519ph => Some(Hash::Sha512),
            Scheme::Ed25519 => None,
        }
    }
}

/// How an ECDSA signature is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcFormat {
    /// ASN.1 DER `SEQUENCE { r, s }` (AWS, Google Cloud).
    Der,
    /// Fixed-width `r || s` (Azure, JOSE).
    Raw,
}

/// The kind of a key, independent of any service's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// ECDSA on NIST P-521.
    P521,
    /// ECDSA on secp256k1.
    Secp256k1,
    /// Ed25519.
    Ed25519,
    /// RSA with the modulus size in bits.
    Rsa(usize),
    /// A 256-bit AES key.
    Aes256,
    /// An HMAC key of this many bits (224, 256, 384, 512).
    Hmac(usize),
}

/// Private key material of one key version.
#[derive(Clone)]
pub enum Material {
    /// NIST P-256.
    P256(EcKey<p256::SecretKey>),
    /// NIST P-384.
    P384(EcKey<p384::SecretKey>),
    /// NIST P-521.
    P521(EcKey<p521::SecretKey>),
    /// secp256k1.
    K256(EcKey<k256::SecretKey>),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// RSA.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// AES-256.
    Aes256([u8; 32]),
    /// An HMAC key (its length in bytes is its size: 28, 32, 48 or 64).
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material({:?})", self.kind())
    }
}

impl Material {
    /// Generates a new key of `kind`.
    pub fn generate(kind: KeyKind) -> Result<Material, CryptoError> {
        Ok(match kind {
            KeyKind::P256 => Material::P256(p256::SecretKey::random(&mut OsRng).into()),
            KeyKind::P384 => Material::P384(p384::SecretKey::random(&mut OsRng).into()),
            KeyKind::P521 => Material::P521(p521::SecretKey::random(&mut OsRng).into()),
            KeyKind::Secp256k1 => Material::K256(k256::SecretKey::random(&mut OsRng).into()),
            KeyKind::Ed25519 => Material::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyKind::Rsa(bits) => {
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(err(format!("unsupported RSA key size {bits}")));
                }
                let key = rsa::RsaPrivateKey::new(&mut OsRng, bits)
                    .map_err(|e| err(format!("RSA key generation failed: {e}")))?;
                Material::Rsa(Box::new(key))
            }
            KeyKind::Aes256 => {
                let mut k = [0u8; 32];
                OsRng.fill_bytes(&mut k);
                Material::Aes256(k)
            }
            KeyKind::Hmac(bits) => {
                if !matches!(bits, 224 | 256 | 384 | 512) {
                    return Err(err(format!("unsupported HMAC key size {bits}")));
                }
                Material::Hmac(random_bytes(bits / 8))
            }
        })
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        match self {
            Material::P256(_) => KeyKind::P256,
            Material::P384(_) => KeyKind::P384,
            Material::P521(_) => KeyKind::P521,
            Material::K256(_) => KeyKind::Secp256k1,
            Material::Ed25519(_) => KeyKind::Ed25519,
            Material::Rsa(k) => KeyKind::Rsa(k.size() * 8),
            Material::Aes256(_) => KeyKind::Aes256,
            Material::Hmac(k) => KeyKind::Hmac(k.len() * 8),
        }
    }

    /// The HMAC of `message` with an HMAC key's own hash (SHA-224 for a
    /// 224-bit key, ...).
    pub fn mac(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use hmac::{Hmac, Mac};
        let Material::Hmac(k) = self else {
            return Err(err("not an HMAC key"));
        };
        macro_rules! run {
            ($h:ty) => {{
                let mut m =
                    Hmac::<$h>::new_from_slice(k).map_err(|e| err(format!("HMAC key: {e}")))?;
                m.update(message);
                Ok(m.finalize().into_bytes().to_vec())
            }};
        }
        match k.len() {
            28 => run!(sha2::Sha224),
            32 => run!(sha2::Sha256),
            48 => run!(sha2::Sha384),
            64 => run!(sha2::Sha512),
            n => Err(err(format!("unsupported HMAC key length {n}"))),
        }
    }

    /// Imports a private key from PEM: PKCS#8 (`PRIVATE KEY`), SEC1
    /// (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`); a symmetric key is
    /// given as 64 hex digits.
    pub fn from_pem(pem: &str) -> Result<Material, CryptoError> {
        let pem = pem.trim();
        if let Some(h) = pem.strip_prefix("hmac:") {
            let k = hex::decode(h).map_err(|e| err(format!("bad HMAC key hex: {e}")))?;
            if !matches!(k.len(), 28 | 32 | 48 | 64) {
                return Err(err("an HMAC key is 28, 32, 48 or 64 bytes"));
            }
            return Ok(Material::Hmac(k));
        }
        if pem.len() == 64 && pem.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut k = [0u8; 32];
            hex::decode_to_slice(pem, &mut k).map_err(|e| err(format!("bad AES key hex: {e}")))?;
            return Ok(Material::Aes256(k));
        }
        if pem.contains("BEGIN RSA PRIVATE KEY") {
            return rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .map(|k| Material::Rsa(Box::new(k)))
                .map_err(|e| err(format!("bad PKCS#1 RSA private key: {e}")));
        }
        if pem.contains("BEGIN EC PRIVATE KEY") {
            if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
                return Ok(Material::P256(k.into()));
            }
            if let Ok(k) = p384::SecretKey::from_sec1_pem(pem) {
                return Ok(Material::P384(k.into()));
            }
            if let Ok(k) = k256::SecretKey::from_sec1_pem(pem) {
                return Ok(Material::K256(k.into()));
            }
            return p521::SecretKey::from_sec1_pem(pem)
                .map(|k| Material::P521(k.into()))
                .map_err(|_| err("bad SEC1 private key (P-256, P-384 or P-521 expected)"));
        }
        if !pem.contains("BEGIN PRIVATE KEY") {
            return Err(err(
                "expected a PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) or 64 hex digits",
            ));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Material::P256(k.into()));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Material::P384(k.into()));
        }
        if let Ok(k) = p521::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Material::P521(k.into()));
        }
        if let Ok(k) = k256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Material::K256(k.into()));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Material::Ed25519(k));
        }
        rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .map(|k| Material::Rsa(Box::new(k)))
            .map_err(|_| err("PKCS#8 key is not P-256, P-384, P-521, Ed25519 or RSA"))
    }

    /// Imports a PKCS#8 DER private key (P-256, P-384, P-521, Ed25519, RSA).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Material, CryptoError> {
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(Material::P256(k.into()));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(Material::P384(k.into()));
        }
        if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
            return Ok(Material::P521(k.into()));
        }
        if let Ok(k) = k256::SecretKey::from_pkcs8_der(der) {
            return Ok(Material::K256(k.into()));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(Material::Ed25519(k));
        }
        rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map(|k| Material::Rsa(Box::new(k)))
            .map_err(|_| err("PKCS#8 key is not P-256, P-384, P-521, Ed25519 or RSA"))
    }

    /// Exports an asymmetric private key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, CryptoError> {
        let r = match self {
            Material::P256(k) => k.to_pkcs8_der(),
            Material::P384(k) => k.to_pkcs8_der(),
            Material::P521(k) => k.to_pkcs8_der(),
            Material::K256(k) => k.to_pkcs8_der(),
            Material::Ed25519(k) => k.to_pkcs8_der(),
            Material::Rsa(k) => k.to_pkcs8_der(),
            Material::Aes256(_) | Material::Hmac(_) => {
                return Err(err("a symmetric key has no PKCS#8 form"))
            }
        };
        r.map(|d| d.as_bytes().to_vec())
            .map_err(|e| err(format!("cannot export private key: {e}")))
    }

    /// Exports the private key as PKCS#8 PEM (hex for AES keys).
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        let r = match self {
            Material::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::P521(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::K256(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
            Material::Aes256(k) => return Ok(hex::encode(k)),
            Material::Hmac(k) => return Ok(format!("hmac:{}", hex::encode(k))),
        };
        r.map(|z| z.to_string())
            .map_err(|e| err(format!("cannot export private key: {e}")))
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_der(&self) -> Result<Vec<u8>, CryptoError> {
        let r = match self {
            Material::P256(k) => k.public_key().to_public_key_der(),
            Material::P384(k) => k.public_key().to_public_key_der(),
            Material::P521(k) => k.public_key().to_public_key_der(),
            Material::K256(k) => k.public_key().to_public_key_der(),
            Material::Ed25519(k) => k.verifying_key().to_public_key_der(),
            Material::Rsa(k) => k.to_public_key().to_public_key_der(),
            Material::Aes256(_) | Material::Hmac(_) => {
                return Err(err("a symmetric key has no public key"))
            }
        };
        r.map(|d| d.into_vec())
            .map_err(|e| err(format!("cannot encode public key: {e}")))
    }

    /// The public key as PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> Result<String, CryptoError> {
        use base64::Engine;
        let der = self.public_der()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        Ok(out)
    }

    /// For EC keys, the affine coordinates (x, y) padded to the field size.
    pub fn ec_point(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let point = match self {
            Material::P256(k) => k.public.clone(),
            Material::P384(k) => k.public.clone(),
            Material::P521(k) => k.public.clone(),
            Material::K256(k) => k.public.clone(),
            _ => return None,
        };
        let n = (point.len() - 1) / 2;
        Some((point[1..1 + n].to_vec(), point[1 + n..].to_vec()))
    }

    /// For RSA keys, the modulus and public exponent (big-endian).
    pub fn rsa_parts(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        match self {
            Material::Rsa(k) => Some((k.n().to_bytes_be(), k.e().to_bytes_be())),
            _ => None,
        }
    }

    /// Signs a digest (every scheme but Ed25519).
    pub fn sign_digest(
        &self,
        scheme: Scheme,
        digest: &[u8],
        fmt: EcFormat,
    ) -> Result<Vec<u8>, CryptoError> {
        let hash = scheme
            .hash()
            .ok_or_else(|| err("Ed25519 signs the message, not a digest"))?;
        let scheme_hash = hash;
        if digest.len() != hash.output_len() {
            return Err(err(format!(
                "digest is {} bytes, {:?} needs {}",
                digest.len(),
                hash,
                hash.output_len()
            )));
        }
        macro_rules! ec {
            ($k:expr, $curve:ty) => {{
                if let Some(fast) = $k.sign_fast(scheme_hash, digest, fmt) {
                    return fast;
                }
                let sk = ecdsa::SigningKey::<$curve>::from(&**$k);
                let sig: ecdsa::Signature<$curve> = sk
                    .sign_prehash(digest)
                    .map_err(|e| err(format!("ECDSA signing failed: {e}")))?;
                Ok(match fmt {
                    EcFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcFormat::Raw => sig.to_bytes().to_vec(),
                })
            }};
        }
        match (self, scheme) {
            (Material::P256(k), Scheme::Ecdsa(_)) => ec!(k, p256::NistP256),
            (Material::P384(k), Scheme::Ecdsa(_)) => ec!(k, p384::NistP384),
            (Material::K256(k), Scheme::Ecdsa(_)) => ec!(k, k256::Secp256k1),
            (Material::Ed25519(k), Scheme::Ed25519ph) => k
                .sign_prehashed(Prehashed::new(digest), None)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|e| err(format!("Ed25519ph signing failed: {e}"))),
            (Material::P521(k), Scheme::Ecdsa(_)) => {
                if let Some(fast) = k.sign_fast(scheme_hash, digest, fmt) {
                    return fast;
                }
                let sk = p521::ecdsa::SigningKey::from_bytes(&k.to_bytes())
                    .map_err(|e| err(format!("P-521 key: {e}")))?;
                let sig: p521::ecdsa::Signature = sk
                    .sign_prehash(digest)
                    .map_err(|e| err(format!("ECDSA signing failed: {e}")))?;
                Ok(match fmt {
                    EcFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcFormat::Raw => sig.to_bytes().to_vec(),
                })
            }
            (Material::Rsa(k), Scheme::Pkcs1(h)) => k
                .sign(pkcs1_padding(h), digest)
                .map_err(|e| err(format!("RSA signing failed: {e}"))),
            (Material::Rsa(k), Scheme::Pss(h)) => k
                .sign_with_rng(&mut OsRng, pss_padding(h), digest)
                .map_err(|e| err(format!("RSA-PSS signing failed: {e}"))),
            (m, s) => Err(err(format!(
                "a {:?} key cannot sign with {:?}",
                m.kind(),
                s
            ))),
        }
    }

    /// Signs a whole message: hashes it for the digest schemes, signs it
    /// directly for Ed25519.
    pub fn sign_message(
        &self,
        scheme: Scheme,
        message: &[u8],
        fmt: EcFormat,
    ) -> Result<Vec<u8>, CryptoError> {
        match (self, scheme) {
            (Material::Ed25519(k), Scheme::Ed25519) => Ok(k.sign(message).to_bytes().to_vec()),
            (_, Scheme::Ed25519) => Err(err(format!(
                "a {:?} key cannot sign with Ed25519",
                self.kind()
            ))),
            (_, s) => {
                let hash = s.hash().ok_or_else(|| err("no hash"))?;
                self.sign_digest(s, &hash.digest(message), fmt)
            }
        }
    }

    /// Verifies a signature over a digest (or, for Ed25519, the message).
    pub fn verify(
        &self,
        scheme: Scheme,
        digest_or_message: &[u8],
        sig: &[u8],
        fmt: EcFormat,
    ) -> bool {
        macro_rules! ec {
            ($k:expr, $curve:ty) => {{
                let Ok(vk) = ecdsa::VerifyingKey::<$curve>::from_sec1_bytes(&$k.public) else {
                    return false;
                };
                let parsed = match fmt {
                    EcFormat::Der => ecdsa::Signature::<$curve>::from_der(sig),
                    EcFormat::Raw => ecdsa::Signature::<$curve>::from_slice(sig),
                };
                parsed.is_ok_and(|s| vk.verify_prehash(digest_or_message, &s).is_ok())
            }};
        }
        match (self, scheme) {
            (Material::P256(k), Scheme::Ecdsa(_)) => ec!(k, p256::NistP256),
            (Material::P384(k), Scheme::Ecdsa(_)) => ec!(k, p384::NistP384),
            (Material::K256(k), Scheme::Ecdsa(_)) => ec!(k, k256::Secp256k1),
            (Material::Ed25519(k), Scheme::Ed25519ph) => {
                digest_or_message.len() == 64
                    && ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| {
                        k.verifying_key()
                            .verify_prehashed(Prehashed::new(digest_or_message), None, &s)
                            .is_ok()
                    })
            }
            (Material::P521(k), Scheme::Ecdsa(_)) => {
                let Ok(sk) = p521::ecdsa::SigningKey::from_bytes(&k.to_bytes()) else {
                    return false;
                };
                let vk = p521::ecdsa::VerifyingKey::from(&sk);
                let parsed = match fmt {
                    EcFormat::Der => p521::ecdsa::Signature::from_der(sig),
                    EcFormat::Raw => p521::ecdsa::Signature::from_slice(sig),
                };
                parsed.is_ok_and(|s| vk.verify_prehash(digest_or_message, &s).is_ok())
            }
            (Material::Ed25519(k), Scheme::Ed25519) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verifying_key().verify(digest_or_message, &s).is_ok()),
            (Material::Rsa(k), Scheme::Pkcs1(h)) => k
                .to_public_key()
                .verify(pkcs1_padding(h), digest_or_message, sig)
                .is_ok(),
            (Material::Rsa(k), Scheme::Pss(h)) => k
                .to_public_key()
                .verify(pss_padding(h), digest_or_message, sig)
                .is_ok(),
            _ => false,
        }
    }
}

fn pkcs1_padding(h: Hash) -> rsa::Pkcs1v15Sign {
    match h {
        Hash::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss_padding(h: Hash) -> rsa::Pss {
    match h {
        Hash::Sha1 => rsa::Pss::new::<sha1::Sha1>(),
        Hash::Sha256 => rsa::Pss::new::<sha2::Sha256>(),
        Hash::Sha384 => rsa::Pss::new::<sha2::Sha384>(),
        Hash::Sha512 => rsa::Pss::new::<sha2::Sha512>(),
    }
}

/// Flips one bit near the end of a signature so that it no longer verifies
/// while keeping its encoding well formed.
pub fn corrupt(sig: &mut [u8]) {
    if let Some(last) = sig.last_mut() {
        *last ^= 0x01;
    }
}

/// CRC32C (Castagnoli) of `data`, as Google Cloud KMS computes it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A random identifier in the usual 8-4-4-4-12 form.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECDSA digests are signed through aws-lc (the key pairs exist), in
    /// both formats, and verify under the portable verifier; another hash
    /// than the curve's own takes the portable signer and verifies too.
    #[test]
    fn fast_ecdsa_signatures_verify_portably() {
        for (kind, hash) in [
            (KeyKind::P256, Hash::Sha256),
            (KeyKind::P384, Hash::Sha384),
            (KeyKind::P521, Hash::Sha512),
        ] {
            let m = Material::generate(kind).unwrap();
            let fast = match &m {
                Material::P256(k) => k.fast.is_some(),
                Material::P384(k) => k.fast.is_some(),
                Material::P521(k) => k.fast.is_some(),
                _ => false,
            };
            assert!(fast, "{kind:?}");
            // P-384 also signs SHA-256 digests (through the portable signer).
            let hashes: &[Hash] = match kind {
                KeyKind::P384 => &[Hash::Sha384, Hash::Sha256],
                _ => &[hash],
            };
            for &other in hashes {
                let digest = other.digest(b"message");
                for fmt in [EcFormat::Der, EcFormat::Raw] {
                    let sig = m.sign_digest(Scheme::Ecdsa(other), &digest, fmt).unwrap();
                    assert!(
                        m.verify(Scheme::Ecdsa(other), &digest, &sig, fmt),
                        "{kind:?} {other:?} {fmt:?}"
                    );
                    let mut bad = sig.clone();
                    corrupt(&mut bad);
                    assert!(!m.verify(Scheme::Ecdsa(other), &digest, &bad, fmt));
                }
            }
        }
    }

    #[test]
    fn sign_verify_every_kind() {
        for kind in [
            KeyKind::P256,
            KeyKind::P384,
            KeyKind::P521,
            KeyKind::Ed25519,
            KeyKind::Rsa(2048),
        ] {
            let m = Material::generate(kind).unwrap();
            let again = Material::from_pem(&m.to_pem().unwrap()).unwrap();
            assert_eq!(again.public_der().unwrap(), m.public_der().unwrap());
            let scheme = match kind {
                KeyKind::P256 => Scheme::Ecdsa(Hash::Sha256),
                KeyKind::P384 => Scheme::Ecdsa(Hash::Sha384),
                KeyKind::P521 => Scheme::Ecdsa(Hash::Sha512),
                KeyKind::Ed25519 => Scheme::Ed25519,
                _ => Scheme::Pkcs1(Hash::Sha256),
            };
            let msg = b"hello";
            let sig = m.sign_message(scheme, msg, EcFormat::Der).unwrap();
            let input = scheme.hash().map_or(msg.to_vec(), |h| h.digest(msg));
            assert!(m.verify(scheme, &input, &sig, EcFormat::Der));
            let mut bad = sig.clone();
            corrupt(&mut bad);
            assert!(!m.verify(scheme, &input, &bad, EcFormat::Der));
        }
    }

    #[test]
    fn aes_round_trip() {
        let m = Material::generate(KeyKind::Aes256).unwrap();
        let ct = m.seal(b"secret", b"ctx").unwrap();
        assert_eq!(m.open(&ct, b"ctx").unwrap(), b"secret");
        assert!(m.open(&ct, b"other").is_err());
    }
}
