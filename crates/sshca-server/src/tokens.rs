//! Bearer tokens: `[token.NAME]` tables hold a token's SHA-256, compared in
//! constant time; new tokens are 256 random bits.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TokenConfig;

/// The configured bearer tokens.
#[derive(Clone)]
pub(crate) struct Tokens(Vec<(String, [u8; 32])>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Tokens {
    pub fn new(tokens: &BTreeMap<String, TokenConfig>) -> Self {
        Self(
            tokens
                .iter()
                .filter_map(|(name, t)| {
                    let mut h = [0u8; 32];
                    hex::decode_to_slice(&t.sha256, &mut h).ok()?;
                    Some((name.clone(), h))
                })
                .collect(),
        )
    }

    /// The identity of a presented token. Every configured hash is compared,
    /// in constant time, whatever matches.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, want) in &self.0 {
            if bool::from(want.ct_eq(&h)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Lower-case hex SHA-256 of a token, as `[token.NAME] sha256` holds it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random bearer token (256 bits).
pub fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    format!(
        "sshca_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A fresh join token and its id: `sshcaj_ID_SECRET` (an 8-hex-digit id,
/// 256 random bits). The id names the token in records (`join:NAME:ID`).
pub fn new_join_token() -> (String, String) {
    use base64::Engine;
    let mut id = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let id = hex::encode(id);
    let token = format!(
        "sshcaj_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    (id, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_only() {
        let t = new_token();
        assert!(t.starts_with("sshca_") && t.len() > 40);
        let mut map = BTreeMap::new();
        map.insert(
            "ci".to_string(),
            TokenConfig {
                sha256: token_hash(&t),
            },
        );
        let tokens = Tokens::new(&map);
        assert_eq!(tokens.check(&t), Some("ci"));
        assert_eq!(tokens.check(&format!("{t}x")), None);
        assert_eq!(tokens.check(""), None);
        assert!(!format!("{tokens:?}").contains(&token_hash(&t)));
    }
}
