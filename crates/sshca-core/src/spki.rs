//! Public keys as KMS services return them: DER or PEM
//! SubjectPublicKeyInfo (AWS, Google Cloud), or EC coordinates and RSA
//! modulus/exponent (Azure's JSON Web Keys), turned into SSH public keys.

use p256::pkcs8::DecodePublicKey;
use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData, RsaPublicKey};
use ssh_key::EcdsaCurve;

use crate::{Error, Result};

fn key_err(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Key(format!("{what}: {e}"))
}

/// Parses a DER SubjectPublicKeyInfo (P-256, P-384, P-521, Ed25519 or RSA).
pub fn public_key_from_der(der: &[u8]) -> Result<KeyData> {
    if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
        return Ok(KeyData::Ecdsa(EcdsaPublicKey::from(
            p256::ecdsa::VerifyingKey::from(k),
        )));
    }
    if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
        return Ok(KeyData::Ecdsa(EcdsaPublicKey::from(
            p384::ecdsa::VerifyingKey::from(k),
        )));
    }
    if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
        use p521::elliptic_curve::sec1::ToEncodedPoint;
        let point = k.to_encoded_point(false);
        return EcdsaPublicKey::from_sec1_bytes(point.as_bytes())
            .map(KeyData::Ecdsa)
            .map_err(|e| key_err("P-521 public key")(e.to_string()));
    }
    if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
        return Ok(KeyData::Ed25519(Ed25519PublicKey(k.to_bytes())));
    }
    if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
        return RsaPublicKey::try_from(k)
            .map(KeyData::Rsa)
            .map_err(|e| key_err("RSA public key")(e.to_string()));
    }
    Err(Error::Key(
        "public key is not a DER SubjectPublicKeyInfo of a P-256, P-384, P-521, Ed25519 or RSA key"
            .into(),
    ))
}

/// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
pub fn public_key_from_pem(pem: &str) -> Result<KeyData> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    if body.is_empty() {
        return Err(Error::Key(
            "expected a PEM block `-----BEGIN PUBLIC KEY-----`".into(),
        ));
    }
    let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&body)
        .map_err(|e| key_err("PEM public key")(e.to_string()))?;
    public_key_from_der(&der)
}

/// Builds an ECDSA public key from affine coordinates (each the field size,
/// leading zeros allowed to be missing).
pub fn ec_public_key(curve: EcdsaCurve, x: &[u8], y: &[u8]) -> Result<KeyData> {
    let n = crate::convert::curve_scalar_len(curve);
    if x.len() > n || y.len() > n {
        return Err(Error::Key(format!(
            "EC coordinates longer than {n} bytes for {curve}"
        )));
    }
    let mut point = vec![0x04];
    point.extend(std::iter::repeat_n(0, n - x.len()));
    point.extend_from_slice(x);
    point.extend(std::iter::repeat_n(0, n - y.len()));
    point.extend_from_slice(y);
    let key = EcdsaPublicKey::from_sec1_bytes(&point)
        .map_err(|e| key_err("EC public key")(e.to_string()))?;
    if key.curve() != curve {
        return Err(Error::Key(format!("EC point is not on {curve}")));
    }
    let ok = match curve {
        EcdsaCurve::NistP256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        EcdsaCurve::NistP384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
        EcdsaCurve::NistP521 => p521::PublicKey::from_sec1_bytes(&point).is_ok(),
    };
    if !ok {
        return Err(Error::Key(format!("EC point is not on {curve}")));
    }
    Ok(KeyData::Ecdsa(key))
}

/// Builds an RSA public key from its big-endian modulus and exponent.
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Result<KeyData> {
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
    )
    .map_err(|err| key_err("RSA public key")(err.to_string()))?;
    RsaPublicKey::try_from(key)
        .map(KeyData::Rsa)
        .map_err(|err| key_err("RSA public key")(err.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn der_pem_and_coordinates_agree() {
        let sk = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = sk.public_key().to_public_key_der().unwrap();
        let from_der = public_key_from_der(der.as_bytes()).unwrap();
        let pem = sk
            .public_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        assert_eq!(public_key_from_pem(&pem).unwrap(), from_der);
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let pt = sk.public_key().to_encoded_point(false);
        let k = ec_public_key(EcdsaCurve::NistP256, pt.x().unwrap(), pt.y().unwrap()).unwrap();
        assert_eq!(k, from_der);
        let mut bad_y = pt.y().unwrap().to_vec();
        bad_y[5] ^= 1;
        assert!(ec_public_key(EcdsaCurve::NistP256, pt.x().unwrap(), &bad_y).is_err());
        assert!(public_key_from_der(b"garbage").is_err());
        assert!(public_key_from_pem("nope").is_err());
    }
}
