//! Conversion of native signature formats into SSH signatures.
//!
//! Key management services return signatures in their own formats: ASN.1 DER
//! `ECDSA-Sig-Value` (AWS KMS, Google Cloud KMS), fixed-width raw `r||s`
//! (Azure Key Vault, JWS), RSA PKCS#1 v1.5 signature bytes, and 64-byte Ed25519
//! signatures. The functions here turn each into an [`ssh_key::Signature`]
//! (the SSH signature blob), rejecting malformed input with an error: bad DER,
//! wrong lengths, `r` or `s` zero or not below the group order, trailing bytes.

use std::fmt;
use std::str::FromStr;

use ssh_key::{public::KeyData, Algorithm, EcdsaCurve, HashAlg, Signature};

use crate::{Error, Result};

/// An SSH signature algorithm a CA key can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigAlg {
    /// `ssh-ed25519`
    Ed25519,
    /// `ecdsa-sha2-nistp256`
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`
    EcdsaP521,
    /// `rsa-sha2-256`
    RsaSha256,
    /// `rsa-sha2-512`
    RsaSha512,
}

impl SigAlg {
    /// All algorithms, in a stable order.
    pub const ALL: [SigAlg; 6] = [
        SigAlg::Ed25519,
        SigAlg::EcdsaP256,
        SigAlg::EcdsaP384,
        SigAlg::EcdsaP521,
        SigAlg::RsaSha256,
        SigAlg::RsaSha512,
    ];

    /// The SSH name of the algorithm (as in the signature blob).
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::Ed25519 => "ssh-ed25519",
            SigAlg::EcdsaP256 => "ecdsa-sha2-nistp256",
            SigAlg::EcdsaP384 => "ecdsa-sha2-nistp384",
            SigAlg::EcdsaP521 => "ecdsa-sha2-nistp521",
            SigAlg::RsaSha256 => "rsa-sha2-256",
            SigAlg::RsaSha512 => "rsa-sha2-512",
        }
    }

    /// The ssh-key algorithm of signatures made with this algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            SigAlg::Ed25519 => Algorithm::Ed25519,
            SigAlg::EcdsaP256 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            SigAlg::EcdsaP384 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            SigAlg::EcdsaP521 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
            SigAlg::RsaSha256 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
            SigAlg::RsaSha512 => Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
        }
    }

    /// The algorithm of an existing signature, if it is one of ours.
    pub fn of_signature(sig: &Signature) -> Option<SigAlg> {
        SigAlg::ALL
            .into_iter()
            .find(|a| a.algorithm() == sig.algorithm())
    }

    /// The hash a digest-signing service (a KMS, an HSM) is given the
    /// message's digest under; `None` for Ed25519, which signs the message
    /// itself.
    pub fn digest_alg(self) -> Option<DigestAlg> {
        match self {
            SigAlg::Ed25519 => None,
            SigAlg::EcdsaP256 | SigAlg::RsaSha256 => Some(DigestAlg::Sha256),
            SigAlg::EcdsaP384 => Some(DigestAlg::Sha384),
            SigAlg::EcdsaP521 | SigAlg::RsaSha512 => Some(DigestAlg::Sha512),
        }
    }

    /// The message digest length in bytes for digest-signing services
    /// (`None` for Ed25519, which signs the message itself).
    pub fn digest_len(self) -> Option<usize> {
        self.digest_alg().map(DigestAlg::size)
    }

    /// The digest of `message` a digest-signing service signs for this
    /// algorithm (`None` for Ed25519: send the message itself).
    pub fn digest(self, message: &[u8]) -> Option<Vec<u8>> {
        self.digest_alg().map(|d| d.digest(message))
    }

    /// Signature algorithms a CA public key can produce, the preferred first
    /// (for RSA: `rsa-sha2-512` as ssh-keygen does, then `rsa-sha2-256`).
    pub fn for_key(key: &KeyData) -> Result<Vec<SigAlg>> {
        Ok(match key.algorithm() {
            Algorithm::Ed25519 => vec![SigAlg::Ed25519],
            Algorithm::Ecdsa { curve } => vec![SigAlg::for_curve(curve)],
            Algorithm::Rsa { .. } => vec![SigAlg::RsaSha512, SigAlg::RsaSha256],
            other => {
                return Err(Error::Key(format!(
                    "{} cannot be a CA key (supported: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)",
                    other.as_str()
                )))
            }
        })
    }

    /// The ECDSA algorithm of a curve.
    pub fn for_curve(curve: EcdsaCurve) -> SigAlg {
        match curve {
            EcdsaCurve::NistP256 => SigAlg::EcdsaP256,
            EcdsaCurve::NistP384 => SigAlg::EcdsaP384,
            EcdsaCurve::NistP521 => SigAlg::EcdsaP521,
        }
    }

    /// Whether a key can make signatures of this algorithm.
    pub fn fits_key(self, key: &KeyData) -> bool {
        match (self, key) {
            (SigAlg::Ed25519, KeyData::Ed25519(_)) => true,
            (SigAlg::RsaSha256 | SigAlg::RsaSha512, KeyData::Rsa(_)) => true,
            (_, KeyData::Ecdsa(k)) => self == SigAlg::for_curve(k.curve()),
            _ => false,
        }
    }
}

/// A message digest of the SHA-2 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    /// The digest length in bytes.
    pub fn size(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha384 => 48,
            DigestAlg::Sha512 => 64,
        }
    }

    /// The digest of `message`.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        use ssh_key::sha2::{Digest, Sha256, Sha384, Sha512};
        match self {
            DigestAlg::Sha256 => Sha256::digest(message).to_vec(),
            DigestAlg::Sha384 => Sha384::digest(message).to_vec(),
            DigestAlg::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

impl fmt::Display for SigAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SigAlg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SigAlg::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                Error::Key(format!(
                    "unknown signature algorithm `{s}` (expected one of: {})",
                    SigAlg::ALL.map(SigAlg::name).join(", ")
                ))
            })
    }
}

/// Appends a positive integer given as big-endian bytes as an SSH `mpint`
/// (leading zeros dropped, a zero byte added when the top bit is set).
fn put_positive_mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = &bytes[start..];
    let pad = usize::from(digits.first().is_some_and(|b| b & 0x80 != 0));
    // A scalar is at most 66 bytes: the length always fits a u32.
    let len = (digits.len() + pad) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    if pad == 1 {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// The SSH signature blob of ECDSA scalars `r` and `s` (fixed-width
/// big-endian, already checked to be in range): one allocation.
fn ecdsa_scalars_to_ssh(curve: EcdsaCurve, r: &[u8], s: &[u8]) -> Result<Signature> {
    let mut data = Vec::with_capacity(2 * (4 + 1 + r.len()));
    put_positive_mpint(&mut data, r);
    put_positive_mpint(&mut data, s);
    Signature::new(Algorithm::Ecdsa { curve }, data).map_err(Error::signature)
}

macro_rules! ecdsa_sig {
    ($krate:ident, $curve:expr, $der:expr, $raw:expr) => {{
        let parsed = match ($der, $raw) {
            (Some(der), _) => $krate::ecdsa::Signature::from_der(der)
                .map_err(|e| Error::signature(format_args!("invalid DER ECDSA signature: {e}"))),
            (None, Some(raw)) => $krate::ecdsa::Signature::from_slice(raw).map_err(|_| {
                Error::signature(
                    "raw ECDSA signature has r or s equal to zero or not below the group order",
                )
            }),
            (None, None) => Err(Error::signature("no signature bytes")),
        }?;
        let (r, s) = parsed.split_bytes();
        ecdsa_scalars_to_ssh($curve, &r, &s)
    }};
}

/// Field size in bytes of a curve's scalars.
pub fn curve_scalar_len(curve: EcdsaCurve) -> usize {
    match curve {
        EcdsaCurve::NistP256 => 32,
        EcdsaCurve::NistP384 => 48,
        EcdsaCurve::NistP521 => 66,
    }
}

/// Converts an ASN.1 DER `ECDSA-Sig-Value` (AWS KMS, Google Cloud KMS) into an
/// SSH `ecdsa-sha2-nistpXXX` signature.
pub fn ecdsa_der_to_ssh(curve: EcdsaCurve, der: &[u8]) -> Result<Signature> {
    match curve {
        EcdsaCurve::NistP256 => ecdsa_sig!(p256, curve, Some(der), None::<&[u8]>),
        EcdsaCurve::NistP384 => ecdsa_sig!(p384, curve, Some(der), None::<&[u8]>),
        EcdsaCurve::NistP521 => ecdsa_sig!(p521, curve, Some(der), None::<&[u8]>),
    }
}

/// Converts a fixed-width raw `r||s` signature (Azure Key Vault, JWS) into an
/// SSH `ecdsa-sha2-nistpXXX` signature.
pub fn ecdsa_raw_to_ssh(curve: EcdsaCurve, raw: &[u8]) -> Result<Signature> {
    let want = 2 * curve_scalar_len(curve);
    if raw.len() != want {
        return Err(Error::signature(format_args!(
            "raw {} signature must be {want} bytes, got {}",
            curve.as_str(),
            raw.len()
        )));
    }
    match curve {
        EcdsaCurve::NistP256 => ecdsa_sig!(p256, curve, None::<&[u8]>, Some(raw)),
        EcdsaCurve::NistP384 => ecdsa_sig!(p384, curve, None::<&[u8]>, Some(raw)),
        EcdsaCurve::NistP521 => ecdsa_sig!(p521, curve, None::<&[u8]>, Some(raw)),
    }
}

/// Converts RSA PKCS#1 v1.5 signature bytes into an SSH `rsa-sha2-256/512`
/// signature. `modulus_len` is the key's modulus size in bytes: the signature
/// is left-padded to it as OpenSSH expects; a longer signature is an error.
pub fn rsa_pkcs1_to_ssh(alg: SigAlg, sig: &[u8], modulus_len: usize) -> Result<Signature> {
    if !matches!(alg, SigAlg::RsaSha256 | SigAlg::RsaSha512) {
        return Err(Error::signature(format_args!(
            "{alg} is not an RSA algorithm"
        )));
    }
    if sig.is_empty() || sig.len() > modulus_len {
        return Err(Error::signature(format_args!(
            "RSA signature is {} bytes, the key modulus is {modulus_len} bytes",
            sig.len()
        )));
    }
    let mut data = vec![0u8; modulus_len - sig.len()];
    data.extend_from_slice(sig);
    Signature::new(alg.algorithm(), data).map_err(Error::signature)
}

/// Converts a 64-byte Ed25519 signature into an SSH `ssh-ed25519` signature.
pub fn ed25519_to_ssh(sig: &[u8]) -> Result<Signature> {
    if sig.len() != 64 {
        return Err(Error::signature(format_args!(
            "Ed25519 signature must be 64 bytes, got {}",
            sig.len()
        )));
    }
    Signature::new(Algorithm::Ed25519, sig.to_vec()).map_err(Error::signature)
}

/// The encoding of a signature as a key service returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeFormat {
    /// ASN.1 DER ECDSA-Sig-Value, PKCS#1 v1.5 bytes for RSA, 64 bytes for Ed25519.
    Der,
    /// Fixed-width raw `r||s` for ECDSA (JWS), PKCS#1 bytes for RSA, 64 bytes for Ed25519.
    Raw,
}

/// Converts a native signature made by `ca_key` with `alg` into an SSH signature,
/// checking that the algorithm fits the key.
pub fn native_to_ssh(
    ca_key: &KeyData,
    alg: SigAlg,
    format: NativeFormat,
    sig: &[u8],
) -> Result<Signature> {
    if !alg.fits_key(ca_key) {
        return Err(Error::signature(format_args!(
            "{alg} does not fit a {} CA key",
            ca_key.algorithm().as_str()
        )));
    }
    match (alg, ca_key) {
        (SigAlg::Ed25519, _) => ed25519_to_ssh(sig),
        (SigAlg::RsaSha256 | SigAlg::RsaSha512, KeyData::Rsa(rsa)) => {
            let n = rsa.n.as_positive_bytes().unwrap_or_default();
            rsa_pkcs1_to_ssh(alg, sig, n.len())
        }
        (_, KeyData::Ecdsa(k)) => match format {
            NativeFormat::Der => ecdsa_der_to_ssh(k.curve(), sig),
            NativeFormat::Raw => ecdsa_raw_to_ssh(k.curve(), sig),
        },
        _ => Err(Error::signature(format_args!(
            "{alg} does not fit a {} CA key",
            ca_key.algorithm().as_str()
        ))),
    }
}

/// Reads one SSH `mpint` holding a positive integer of at most `out.len()`
/// bytes, right-aligned into `out`; `None` if it is negative, zero, too long
/// or not in canonical form.
fn read_positive_mpint(c: &mut &[u8], out: &mut [u8]) -> Option<()> {
    let (len, rest) = c.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (mut digits, rest) = rest.split_at(len);
    *c = rest;
    match digits {
        [0, next, ..] if next & 0x80 != 0 => digits = &digits[1..],
        [first, ..] if *first != 0 && first & 0x80 == 0 => {}
        _ => return None,
    }
    if digits.len() > out.len() {
        return None;
    }
    let pad = out.len() - digits.len();
    out[..pad].fill(0);
    out[pad..].copy_from_slice(digits);
    Some(())
}

/// Writes an SSH ECDSA signature as fixed-width raw `r||s` into `out`
/// (large enough for P-521) without allocating; the length written, or
/// `None` when the blob is malformed or not an ECDSA signature.
pub fn ecdsa_ssh_to_raw_into(sig: &Signature, out: &mut [u8; 132]) -> Option<usize> {
    let Algorithm::Ecdsa { curve } = sig.algorithm() else {
        return None;
    };
    let n = curve_scalar_len(curve);
    let mut c = sig.as_bytes();
    let (r, s) = out.split_at_mut(n);
    read_positive_mpint(&mut c, r)?;
    read_positive_mpint(&mut c, &mut s[..n])?;
    c.is_empty().then_some(2 * n)
}

/// Converts an SSH ECDSA signature back into fixed-width raw `r||s`.
pub fn ecdsa_ssh_to_raw(sig: &Signature) -> Result<Vec<u8>> {
    let mut buf = [0u8; 132];
    match ecdsa_ssh_to_raw_into(sig, &mut buf) {
        Some(n) => Ok(buf[..n].to_vec()),
        None => Err(Error::signature(format_args!(
            "{} is not a well-formed ECDSA signature",
            sig.algorithm().as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn digests_per_algorithm() {
        let abc = |a: SigAlg| a.digest(b"abc").map(|d| d[..4].to_vec());
        assert_eq!(SigAlg::Ed25519.digest(b"abc"), None);
        // The first bytes of SHA-256, SHA-384 and SHA-512 of "abc" (FIPS 180-2).
        for (alg, head) in [
            (SigAlg::EcdsaP256, [0xba, 0x78, 0x16, 0xbf]),
            (SigAlg::RsaSha256, [0xba, 0x78, 0x16, 0xbf]),
            (SigAlg::EcdsaP384, [0xcb, 0x00, 0x75, 0x3f]),
            (SigAlg::EcdsaP521, [0xdd, 0xaf, 0x35, 0xa1]),
            (SigAlg::RsaSha512, [0xdd, 0xaf, 0x35, 0xa1]),
        ] {
            assert_eq!(abc(alg), Some(head.to_vec()), "{alg}");
            assert_eq!(alg.digest(b"").map(|d| d.len()), alg.digest_len());
        }
    }

    use super::*;

    #[test]
    fn der_rejects_garbage_and_trailing() {
        assert!(ecdsa_der_to_ssh(EcdsaCurve::NistP256, &[]).is_err());
        assert!(ecdsa_der_to_ssh(EcdsaCurve::NistP256, &[0x30, 0x00]).is_err());
        // r = 1, s = 1 is a valid encoding.
        let ok = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01];
        assert!(ecdsa_der_to_ssh(EcdsaCurve::NistP256, &ok).is_ok());
        let mut trailing = ok.to_vec();
        trailing.push(0);
        assert!(ecdsa_der_to_ssh(EcdsaCurve::NistP256, &trailing).is_err());
        // r = 0
        let zero = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01];
        assert!(ecdsa_der_to_ssh(EcdsaCurve::NistP256, &zero).is_err());
    }

    #[test]
    fn raw_rejects_wrong_len_zero_and_out_of_range() {
        assert!(ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &[1u8; 63]).is_err());
        assert!(ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &[0u8; 64]).is_err());
        assert!(ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &[0xffu8; 64]).is_err());
        let mut ok = [0u8; 64];
        ok[31] = 1;
        ok[63] = 2;
        let sig = ecdsa_raw_to_ssh(EcdsaCurve::NistP256, &ok).unwrap();
        assert_eq!(ecdsa_ssh_to_raw(&sig).unwrap(), ok.to_vec());
    }

    #[test]
    fn rsa_and_ed25519_lengths() {
        assert!(rsa_pkcs1_to_ssh(SigAlg::RsaSha256, &[1u8; 257], 256).is_err());
        let s = rsa_pkcs1_to_ssh(SigAlg::RsaSha512, &[1u8; 255], 256).unwrap();
        assert_eq!(s.as_bytes().len(), 256);
        assert_eq!(s.as_bytes()[0], 0);
        assert!(ed25519_to_ssh(&[0u8; 63]).is_err());
        assert!(ed25519_to_ssh(&[0u8; 64]).is_ok());
    }

    #[test]
    fn alg_names_round_trip() {
        for a in SigAlg::ALL {
            assert_eq!(a.name().parse::<SigAlg>().unwrap(), a);
            assert_eq!(a.algorithm().as_str(), a.name());
        }
        assert!("ssh-rsa".parse::<SigAlg>().is_err());
    }
}
