//! sshca backend for CA keys held in Google Cloud KMS, through the official
//! `google-cloud-kms-v1` client.
//!
//! Key URI:
//! `gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N[?endpoint=URL&pin=SHA256:...]`
//! (the key version's resource name). Options: `endpoint` (another service
//! endpoint, such as the emulator; requests are then anonymous), `pin`,
//! `retries`, `timeout`, `backoff-ms` (see `sshca-signer`).
//!
//! Credentials: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's user credentials, the metadata server). Permissions needed:
//! `cloudkms.cryptoKeyVersions.viewPublicKey` and
//! `cloudkms.cryptoKeyVersions.useToSign`.
//!
//! Algorithms: EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384 (digests),
//! EC_SIGN_ED25519 (the whole message), RSA_SIGN_PKCS1_{2048,3072,4096}_SHA256
//! (rsa-sha2-256) and RSA_SIGN_PKCS1_4096_SHA512 (rsa-sha2-512): Google fixes
//! the hash when the key is created. Every request and answer carries CRC32C
//! checksums, checked both ways.

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_kms_v1::client::{EkmService, KeyManagementService};
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionAlgorithm as Alg;
use google_cloud_kms_v1::model::{digest, Digest as KmsDigest};
use sshca_core::convert::{native_to_ssh, NativeFormat};
use sshca_core::{DigestAlg, SigAlg, Signature};
use sshca_signer::{
    with_retries, Error, ErrorKind, FixedKey, FixedKeyBackend, KeyUri, KeyWrapper, Registry,
    Result, RetryConfig, WrapContext,
};
use zeroize::Zeroizing;

/// The URI scheme.
pub const SCHEME: &str = "gcpkms";

/// A key version in Google Cloud KMS that signs.
#[derive(Debug)]
pub struct GcpSigner {
    key: FixedKey,
    name: String,
    client: KeyManagementService,
}

/// Registers the `gcpkms:` scheme (signers wrapped in [`sshca_signer::RetrySigner`])
/// and its key-encryption keys ([`GcpWrapper`]).
pub fn register(registry: &mut Registry) {
    registry.register_remote(SCHEME, GcpSigner::open);
    registry.register_wrapper(SCHEME, |uri| {
        Box::pin(async move {
            let w: std::sync::Arc<dyn KeyWrapper> =
                std::sync::Arc::new(GcpWrapper::open(uri).await?);
            Ok(w)
        })
    });
}

/// A Cloud KMS ENCRYPT_DECRYPT CryptoKey as a key-encryption key:
/// `encrypt`/`decrypt` with the [`WrapContext`] as additional authenticated
/// data, every payload checked with CRC32C both ways. Permissions:
/// `cloudkms.cryptoKeyVersions.useToEncrypt` / `useToDecrypt`.
#[derive(Debug)]
pub struct GcpWrapper {
    uri: KeyUri,
    name: String,
    client: KeyManagementService,
}

impl GcpWrapper {
    /// Builds the client for the CryptoKey the URI names.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        check_kek_uri(&uri)?;
        let client = client_unchecked(&uri).await?;
        Ok(Self {
            name: uri.location().to_owned(),
            uri,
            client,
        })
    }

    fn corrupted(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::BadResponse,
            format!("`{}`: {what} (corrupted in transit)", self.uri),
        )
        .set_temporary(true)
    }
}

#[async_trait]
impl KeyWrapper for GcpWrapper {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn wrap(&self, plaintext: &[u8], ctx: &WrapContext) -> Result<Vec<u8>> {
        let aad = ctx.aad();
        let out = self
            .client
            .encrypt()
            .set_name(&self.name)
            .set_plaintext(plaintext.to_vec())
            .set_plaintext_crc32c(crc(plaintext))
            .set_additional_authenticated_data(aad.clone())
            .set_additional_authenticated_data_crc32c(crc(&aad))
            .send()
            .await
            .map_err(|e| map_err(&self.uri, "encrypt", e))?;
        if !out.verified_plaintext_crc32c || !out.verified_additional_authenticated_data_crc32c {
            return Err(self.corrupted("Cloud KMS did not confirm the request's checksums"));
        }
        if out.ciphertext_crc32c != Some(crc(&out.ciphertext)) {
            return Err(self.corrupted("the ciphertext's CRC32C does not match"));
        }
        Ok(out.ciphertext.to_vec())
    }

    async fn unwrap(&self, blob: &[u8], ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>> {
        let aad = ctx.aad();
        let out = self
            .client
            .decrypt()
            .set_name(&self.name)
            .set_ciphertext(blob.to_vec())
            .set_ciphertext_crc32c(crc(blob))
            .set_additional_authenticated_data(aad.clone())
            .set_additional_authenticated_data_crc32c(crc(&aad))
            .send()
            .await
            .map_err(|e| map_err(&self.uri, "decrypt", e))?;
        let plaintext = Zeroizing::new(out.plaintext.to_vec());
        if out.plaintext_crc32c != Some(crc(&plaintext)) {
            return Err(self.corrupted("the plaintext's CRC32C does not match"));
        }
        Ok(plaintext)
    }
}

/// Checks a key URI (resource name shape, options) without network access.
pub fn check_uri(uri: &KeyUri) -> Result<()> {
    check_resource(uri, true)
}

/// Checks a key-encryption-key URI: a CryptoKey
/// (`projects/P/locations/L/keyRings/R/cryptoKeys/K`), which Cloud KMS
/// encrypts with its primary version.
pub fn check_kek_uri(uri: &KeyUri) -> Result<()> {
    check_resource(uri, false)
}

fn check_resource(uri: &KeyUri, versioned: bool) -> Result<()> {
    if uri.scheme() != SCHEME {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: scheme must be {SCHEME}"),
        ));
    }
    let mut allowed = vec!["endpoint"];
    allowed.extend_from_slice(RetryConfig::URI_OPTIONS);
    uri.check_options(&allowed)?;
    let segs: Vec<&str> = uri.location().split('/').collect();
    let names = [
        "projects",
        "locations",
        "keyRings",
        "cryptoKeys",
        "cryptoKeyVersions",
    ];
    let (shape, len) = if versioned {
        (
            "projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N",
            10,
        )
    } else {
        ("projects/P/locations/L/keyRings/R/cryptoKeys/K", 8)
    };
    if segs.len() != len {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: expected {shape}"),
        ));
    }
    for (i, want) in names.iter().take(len / 2).enumerate() {
        let (label, value) = (segs[2 * i], segs[2 * i + 1]);
        if label != *want {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "key URI `{uri}`: segment {} is `{label}`, expected `{want}` ({shape})",
                    2 * i + 1
                ),
            ));
        }
        let ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("key URI `{uri}`: {want} id `{value}` is empty or has characters outside [A-Za-z0-9_.-]"),
            ));
        }
    }
    if versioned && segs[9].parse::<u32>().is_err() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key URI `{uri}`: cryptoKeyVersions id `{}` is not a number",
                segs[9]
            ),
        ));
    }
    if let Some(ep) = uri.option("endpoint") {
        check_endpoint(ep).map_err(|e| e.context(format!("key URI `{uri}`")))?;
    }
    Ok(())
}

fn check_endpoint(ep: &str) -> Result<()> {
    if ep.starts_with("http://") || ep.starts_with("https://") {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!("endpoint `{ep}` must start with http:// or https://"),
    ))
}

/// What every Cloud KMS client here is built with: no retries of its own
/// (the signer's retry policy applies), and for another `endpoint` (such as
/// the emulator) anonymous access; Application Default Credentials otherwise.
fn configure<F, Cr>(
    b: google_cloud_gax::client_builder::ClientBuilder<F, Cr>,
    endpoint: Option<&str>,
) -> google_cloud_gax::client_builder::ClientBuilder<F, Cr>
where
    google_cloud_auth::credentials::Credentials: Into<Cr>,
{
    let b = b.with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
    match endpoint {
        Some(ep) => b
            .with_endpoint(ep)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build()),
        None => b,
    }
}

/// Builds a Cloud KMS client for a key URI: Application Default Credentials,
/// or anonymous access to `endpoint=`; the client's own retries are off (the
/// signer's retry policy applies).
pub async fn client_for(uri: &KeyUri) -> Result<KeyManagementService> {
    check_uri(uri)?;
    client_unchecked(uri).await
}

async fn client_unchecked(uri: &KeyUri) -> Result<KeyManagementService> {
    let b = configure(KeyManagementService::builder(), uri.option("endpoint"));
    b.build().await.map_err(|e| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("`{uri}`: cannot build the Cloud KMS client: {e}"),
        )
    })
}

/// Builds a Cloud KMS EkmService client (EkmConnections, EkmConfig,
/// VerifyConnectivity): Application Default Credentials, or anonymous access
/// to `endpoint` (such as the emulator). The client's own retries are off.
pub async fn ekm_service(endpoint: Option<&str>) -> Result<EkmService> {
    if let Some(ep) = endpoint {
        check_endpoint(ep)?;
    }
    let b = configure(EkmService::builder(), endpoint);
    b.build().await.map_err(|e| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("cannot build the Cloud KMS EkmService client: {e}"),
        )
    })
}

fn map_err(uri: &KeyUri, what: &str, e: google_cloud_kms_v1::Error) -> Error {
    service_error(&format!("Cloud KMS {what} for `{uri}`"), e)
}

/// Maps a Cloud KMS client error to an sshca error of the matching kind,
/// prefixed with `ctx`; unavailability and transport failures are temporary.
pub fn service_error(ctx: &str, e: google_cloud_kms_v1::Error) -> Error {
    if let Some(st) = e.status() {
        let kind = match st.code {
            Code::NotFound => ErrorKind::NotFound,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::ResourceExhausted => ErrorKind::Throttled,
            Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Aborted => {
                ErrorKind::Unavailable
            }
            Code::FailedPrecondition => ErrorKind::InvalidKey,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
            _ => ErrorKind::BadResponse,
        };
        return Error::new(kind, format!("{ctx}: {}: {}", st.code.name(), st.message));
    }
    let transient = e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport();
    let kind = if transient || e.http_status_code().is_some_and(|c| c >= 500) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::BadResponse
    };
    Error::new(kind, format!("{ctx}: {e}"))
}

fn crc(data: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(data))
}

impl GcpSigner {
    /// Opens the key version named by `uri`: one getPublicKey call (retried
    /// under the URI's retry settings) that also checks the algorithm, so a
    /// key that cannot sign SSH certificates is an error now.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        let client = client_for(&uri).await?;
        let retry = RetryConfig::from_uri(&uri)?;
        let name = uri.location().to_owned();
        let pk = with_retries(&retry, "fetching the public key", || async {
            client
                .get_public_key()
                .set_name(&name)
                .send()
                .await
                .map_err(|e| map_err(&uri, "getPublicKey", e))
        })
        .await?;
        if let Some(c) = &pk.pem_crc32c {
            if *c != crc(pk.pem.as_bytes()) {
                return Err(Error::new(
                    ErrorKind::BadResponse,
                    format!(
                        "`{uri}`: the public key's CRC32C does not match (corrupted in transit)"
                    ),
                )
                .set_temporary(true));
            }
        }
        let alg = match pk.algorithm {
            Alg::EcSignP256Sha256 => SigAlg::EcdsaP256,
            Alg::EcSignP384Sha384 => SigAlg::EcdsaP384,
            Alg::EcSignEd25519 => SigAlg::Ed25519,
            Alg::RsaSignPkcs12048Sha256 | Alg::RsaSignPkcs13072Sha256 | Alg::RsaSignPkcs14096Sha256 => {
                SigAlg::RsaSha256
            }
            Alg::RsaSignPkcs14096Sha512 => SigAlg::RsaSha512,
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "`{uri}`: algorithm {} cannot sign SSH certificates (EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, EC_SIGN_ED25519, RSA_SIGN_PKCS1_*)",
                        other.name().unwrap_or("unknown")
                    ),
                ))
            }
        };
        let public = sshca_core::spki::public_key_from_pem(&pk.pem)
            .map_err(|e| Error::from(e).context(format!("`{uri}`: public key from Cloud KMS")))?;
        if !alg.fits_key(&public) {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!("`{uri}`: the public key does not match algorithm {alg}"),
            ));
        }
        // Cloud KMS fixes the algorithm when the key is created.
        Ok(Self {
            key: FixedKey::new(uri, public, vec![alg]),
            name,
            client,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for GcpSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let req = self.client.asymmetric_sign().set_name(&self.name);
        // ECDSA and RSA sign a digest; Ed25519 the whole message.
        let (req, data_mode) = match alg.digest_alg() {
            None => (
                req.set_data(message.to_vec()).set_data_crc32c(crc(message)),
                true,
            ),
            Some(d) => {
                let bytes = d.digest(message);
                let digest = match d {
                    DigestAlg::Sha256 => digest::Digest::Sha256(bytes.clone().into()),
                    DigestAlg::Sha384 => digest::Digest::Sha384(bytes.clone().into()),
                    DigestAlg::Sha512 => digest::Digest::Sha512(bytes.clone().into()),
                };
                (
                    req.set_digest(KmsDigest::new().set_digest(digest))
                        .set_digest_crc32c(crc(&bytes)),
                    false,
                )
            }
        };
        let out = req
            .send()
            .await
            .map_err(|e| map_err(self.key.uri(), "asymmetricSign", e))?;
        let verified = if data_mode {
            out.verified_data_crc32c
        } else {
            out.verified_digest_crc32c
        };
        if !verified || out.name != self.name {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "`{}`: Cloud KMS did not confirm the request's checksum (corrupted in transit)",
                    self.key.uri()
                ),
            )
            .set_temporary(true));
        }
        if out.signature_crc32c != Some(crc(&out.signature)) {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "`{}`: the signature's CRC32C does not match (corrupted in transit)",
                    self.key.uri()
                ),
            )
            .set_temporary(true));
        }
        native_to_ssh(
            &self.key.public_key(),
            alg,
            NativeFormat::Der,
            &out.signature,
        )
        .map_err(|e| {
            Error::from(e).context(format!("`{}`: signature from Cloud KMS", self.key.uri()))
        })
    }
}

sshca_signer::fixed_key_signer!(GcpSigner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_checks() {
        let check = |s: &str| check_uri(&KeyUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")));
        let good = "gcpkms:projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1";
        assert!(check(good).is_ok());
        assert!(check(&format!("{good}?endpoint=http://127.0.0.1:1")).is_ok());
        let e = check("gcpkms:projects/p/locations/global/keyRings/r/cryptoKeys/k").unwrap_err();
        assert!(e.to_string().contains("expected projects/P"), "{e}");
        let e =
            check("gcpkms:projects/p/locations/global/keyRing/r/cryptoKeys/k/cryptoKeyVersions/1")
                .unwrap_err();
        assert!(
            e.to_string().contains("`keyRing`, expected `keyRings`"),
            "{e}"
        );
        let e =
            check("gcpkms:projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/x")
                .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e = check(&format!("{good}?region=x")).unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
    }
}
