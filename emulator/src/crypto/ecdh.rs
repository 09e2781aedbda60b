//! Key agreement (ECDH) with a KMS key.

use super::{err, CryptoError, Material};

/// The shared secret of ECDH between a NIST or secp256k1 key and a peer's
/// public key (SubjectPublicKeyInfo DER on the same curve): the x
/// coordinate.
pub fn ecdh(material: &Material, peer_spki: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use p256::pkcs8::DecodePublicKey;
    macro_rules! nist {
        ($k:expr, $krate:ident) => {{
            let peer = $krate::PublicKey::from_public_key_der(peer_spki).map_err(|e| {
                err(format!(
                    "the peer public key is not on the key's curve: {e}"
                ))
            })?;
            let shared =
                $krate::ecdh::diffie_hellman($k.secret.to_nonzero_scalar(), peer.as_affine());
            Ok(shared.raw_secret_bytes().to_vec())
        }};
    }
    match material {
        Material::P256(k) => nist!(k, p256),
        Material::P384(k) => nist!(k, p384),
        Material::P521(k) => nist!(k, p521),
        Material::K256(k) => nist!(k, k256),
        m => Err(err(format!("a {:?} key does not agree keys", m.kind()))),
    }
}
