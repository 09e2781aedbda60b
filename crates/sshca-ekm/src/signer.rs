//! The `ekm:` signer.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sshca_core::convert::{native_to_ssh, NativeFormat};
use sshca_core::{KeyData, SigAlg, Signature};
use sshca_signer::{
    with_retries, Error, ErrorKind, FixedKey, FixedKeyBackend, KeyUri, KeyWrapper, Result,
    RetryConfig, WrapContext,
};
use zeroize::Zeroizing;

use crate::*;

/// Fetches `SPACE/keys/ID`: the public key, its SSH algorithm, and the key
/// name.
pub(crate) async fn fetch_key(client: &EkmClient, path: &str) -> Result<(KeyData, String, SigAlg)> {
    let v = client
        .call(reqwest::Method::GET, &format!("/v1/{path}"), None)
        .await?;
    let alg_name = v["algorithm"].as_str().unwrap_or("");
    let alg = match alg_name {
        "EC_SIGN_P256_SHA256" => SigAlg::EcdsaP256,
        "EC_SIGN_P384_SHA384" => SigAlg::EcdsaP384,
        "EC_SIGN_ED25519" => SigAlg::Ed25519,
        "RSA_SIGN_PKCS1_2048_SHA256"
        | "RSA_SIGN_PKCS1_3072_SHA256"
        | "RSA_SIGN_PKCS1_4096_SHA256" => SigAlg::RsaSha256,
        "RSA_SIGN_PKCS1_4096_SHA512" => SigAlg::RsaSha512,
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("key {path}: algorithm {other:?} cannot sign SSH certificates"),
            ))
        }
    };
    if v["state"] != "ENABLED" {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("key {path} is {}", v["state"]),
        ));
    }
    let pem = v["publicKeyPem"].as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::BadResponse,
            format!("key {path}: the answer has no publicKeyPem"),
        )
    })?;
    let public = sshca_core::spki::public_key_from_pem(pem)
        .map_err(|e| Error::from(e).context(format!("key {path}: public key")))?;
    if !alg.fits_key(&public) {
        return Err(Error::new(
            ErrorKind::BadResponse,
            format!("key {path}: the public key does not match algorithm {alg_name}"),
        ));
    }
    Ok((public, alg_name.to_string(), alg))
}

/// A key in an external key manager.
#[derive(Debug)]
pub struct EkmSigner {
    key: FixedKey,
    path: String,
    client: EkmClient,
    /// The key manager's name of the algorithm, sent with every request.
    algorithm: String,
}

pub(crate) fn key_path(uri: &KeyUri, space: &str) -> Result<String> {
    let loc = uri.location();
    let Some((s, id)) = loc.rsplit_once("/keys/") else {
        return Err(bad_input(format!(
            "`{uri}`: the location must be SPACE/keys/KEY_ID"
        )));
    };
    let seg_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !s.split('/').all(seg_ok)
        || !(1..=63).contains(&id.len())
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad_input(format!(
            "`{uri}`: SPACE must be segments of [A-Za-z0-9._-] joined by / and KEY_ID [A-Za-z0-9_-]{{1,63}}"
        )));
    }
    if !space.is_empty() && s != space {
        return Err(bad_input(format!(
            "`{uri}`: the key is not in the connection's crypto space {space}"
        )));
    }
    Ok(loc.to_string())
}

/// The connection an `ekm:` key URI describes and the key's path
/// (`SPACE/keys/KEY_ID`), checked without network access.
pub fn connection_and_key(uri: &KeyUri) -> Result<(Connection, String)> {
    let conn = Connection::from_uri(uri)?;
    let path = key_path(uri, &conn.crypto_space_path)?;
    Ok((conn, path))
}

/// Checks a key URI without network access.
pub fn check_uri(uri: &KeyUri) -> Result<()> {
    connection_and_key(uri).map(|_| ())
}

impl EkmSigner {
    /// Opens the key: one public-key fetch (retried under the URI's retry
    /// settings, failing over across resolvers).
    pub async fn open(uri: KeyUri) -> Result<Self> {
        let conn = Connection::from_uri(&uri)?;
        Self::open_with(uri, conn).await
    }

    /// Opens the key with an explicit connection.
    pub async fn open_with(uri: KeyUri, conn: Connection) -> Result<Self> {
        let path = key_path(&uri, &conn.crypto_space_path)?;
        let client = EkmClient::new(conn)?;
        let retry = RetryConfig::from_uri(&uri)?;
        let (public, algorithm, alg) = with_retries(&retry, "fetching the public key", || {
            fetch_key(&client, &path)
        })
        .await
        .map_err(|e| e.context(format!("`{uri}`")))?;
        Ok(Self {
            key: FixedKey::new(uri, public, vec![alg]),
            path,
            client,
            algorithm,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for EkmSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        // ECDSA and RSA sign a digest; Ed25519 the whole message.
        let body = match alg.digest(message) {
            None => {
                serde_json::json!({"algorithm": self.algorithm, "data": STANDARD.encode(message)})
            }
            Some(d) => {
                serde_json::json!({"algorithm": self.algorithm, "digest": STANDARD.encode(d)})
            }
        };
        let v = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("/v1/{}:sign", self.path),
                Some(&body),
            )
            .await
            .map_err(|e| e.context(format!("`{}`: signing", self.key.uri())))?;
        let sig = v["signature"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("`{}`: the answer has no base64 signature", self.key.uri()),
                )
            })?;
        native_to_ssh(&self.key.public_key(), alg, NativeFormat::Der, &sig).map_err(|e| {
            Error::from(e).context(format!(
                "`{}`: signature from the key manager",
                self.key.uri()
            ))
        })
    }
}

sshca_signer::fixed_key_signer!(EkmSigner);

/// An external key manager `GOOGLE_SYMMETRIC_ENCRYPTION` key as a
/// key-encryption key (`:wrap`/`:unwrap` of the EKM protocol, with the
/// [`WrapContext`] as additional authenticated data), over the same
/// connection, failover and retries as signing keys.
#[derive(Debug)]
pub struct EkmWrapper {
    uri: KeyUri,
    path: String,
    client: EkmClient,
}

impl EkmWrapper {
    /// Opens the connection the URI describes (no network access yet).
    pub async fn open(uri: KeyUri) -> Result<Self> {
        let (conn, path) = connection_and_key(&uri)?;
        Ok(Self {
            client: EkmClient::new(conn)?,
            path,
            uri,
        })
    }

    async fn op(&self, op: &str, body: serde_json::Value, field: &str) -> Result<Vec<u8>> {
        let v = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("/v1/{}:{op}", self.path),
                Some(&body),
            )
            .await
            .map_err(|e| e.context(format!("`{}`: {op}", self.uri)))?;
        v[field]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("`{}`: the {op} answer has no base64 {field}", self.uri),
                )
            })
    }
}

#[async_trait]
impl KeyWrapper for EkmWrapper {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn wrap(&self, plaintext: &[u8], ctx: &WrapContext) -> Result<Vec<u8>> {
        let body = serde_json::json!({
            "plaintext": STANDARD.encode(plaintext),
            "additionalAuthenticatedData": STANDARD.encode(ctx.aad()),
        });
        self.op("wrap", body, "ciphertext").await
    }

    async fn unwrap(&self, blob: &[u8], ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>> {
        let body = serde_json::json!({
            "ciphertext": STANDARD.encode(blob),
            "additionalAuthenticatedData": STANDARD.encode(ctx.aad()),
        });
        self.op("unwrap", body, "plaintext")
            .await
            .map(Zeroizing::new)
    }
}
