//! sshca backend for CA keys held in AWS KMS, through the official
//! `aws-sdk-kms` client.
//!
//! Key URI: `awskms:KEY[?region=R&endpoint=URL&profile=P&pin=SHA256:...]`
//! where KEY is a key id, a key ARN, `alias/NAME` or an alias ARN. Options:
//! - `region`: the AWS region (default: from the ARN, else the standard
//!   chain: `AWS_REGION`, profile; `us-east-1` when an endpoint is given);
//! - `endpoint`: another endpoint URL (an emulator, a VPC endpoint);
//! - `profile`: a named profile of the shared config files;
//! - `pin`, `retries`, `timeout`, `backoff-ms`: see `sshca-signer`.
//!
//! Credentials come from aws-config's standard chain (environment, shared
//! files, SSO, web identity, ECS/EC2 instance roles). Permissions needed:
//! `kms:GetPublicKey` and `kms:Sign`.
//!
//! Algorithms: ECC_NIST_P256/P384/P521 (ecdsa-sha2-nistp*, sent as DIGEST),
//! RSA_2048/3072/4096 (rsa-sha2-512 and rsa-sha2-256, DIGEST) and
//! ECC_NIST_EDWARDS25519 (ssh-ed25519 via ED25519_SHA_512 with MessageType
//! RAW: the whole to-be-signed certificate must fit in 4096 bytes).

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use sshca_core::convert::{native_to_ssh, NativeFormat};
use sshca_core::{SigAlg, Signature};
use sshca_signer::{
    with_retries, Error, ErrorKind, FixedKey, FixedKeyBackend, KeyUri, KeyWrapper, Registry,
    Result, RetryConfig, WrapContext,
};
use zeroize::Zeroizing;

pub use aws_sdk_kms::config::Credentials;

/// The URI scheme.
pub const SCHEME: &str = "awskms";

/// Largest message AWS KMS signs with MessageType RAW (Ed25519 certificates).
pub const MAX_RAW_MESSAGE: usize = 4096;

const OPTIONS: &[&str] = &["region", "endpoint", "profile"];

/// A key in AWS KMS that signs.
#[derive(Debug)]
pub struct AwsSigner {
    key: FixedKey,
    key_id: String,
    client: aws_sdk_kms::Client,
}

/// Registers the `awskms:` scheme (signers wrapped in [`sshca_signer::RetrySigner`])
/// and its key-encryption keys ([`AwsWrapper`]).
pub fn register(registry: &mut Registry) {
    registry.register_remote(SCHEME, |uri| AwsSigner::open(uri, None));
    registry.register_wrapper(SCHEME, |uri| {
        Box::pin(async move {
            let w: std::sync::Arc<dyn KeyWrapper> =
                std::sync::Arc::new(AwsWrapper::open(uri).await?);
            Ok(w)
        })
    });
}

/// An AWS KMS SYMMETRIC_DEFAULT key (ENCRYPT_DECRYPT) as a key-encryption
/// key: `Encrypt`/`Decrypt` with the [`WrapContext`] as encryption context
/// (`sshca-purpose`, `sshca-key-id`), which CloudTrail records with each
/// call. Permissions: `kms:Encrypt` to wrap, `kms:Decrypt` to unwrap.
#[derive(Debug)]
pub struct AwsWrapper {
    uri: KeyUri,
    key_id: String,
    client: aws_sdk_kms::Client,
}

impl AwsWrapper {
    /// Builds the client; the key itself is checked by the first call.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        let client = client_for(&uri, None).await?;
        Ok(Self {
            key_id: uri.location().to_owned(),
            uri,
            client,
        })
    }
}

#[async_trait]
impl KeyWrapper for AwsWrapper {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn wrap(&self, plaintext: &[u8], ctx: &WrapContext) -> Result<Vec<u8>> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext))
            .encryption_context("sshca-purpose", &ctx.purpose)
            .encryption_context("sshca-key-id", &ctx.key_id)
            .send()
            .await
            .map_err(|e| map_err(&self.uri, "Encrypt", e))?;
        out.ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("AWS KMS Encrypt for `{}` returned no ciphertext", self.uri),
                )
            })
    }

    async fn unwrap(&self, blob: &[u8], ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(blob))
            .encryption_context("sshca-purpose", &ctx.purpose)
            .encryption_context("sshca-key-id", &ctx.key_id)
            .send()
            .await
            .map_err(|e| map_err(&self.uri, "Decrypt", e))?;
        out.plaintext()
            .map(|b| Zeroizing::new(b.as_ref().to_vec()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("AWS KMS Decrypt for `{}` returned no plaintext", self.uri),
                )
            })
    }
}

fn region_from_arn(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    (parts.len() == 6 && parts[0] == "arn" && !parts[3].is_empty()).then(|| parts[3])
}

/// Checks a key URI's location and options without any network access.
pub fn check_uri(uri: &KeyUri) -> Result<()> {
    if uri.scheme() != SCHEME {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: scheme must be {SCHEME}"),
        ));
    }
    let mut allowed = OPTIONS.to_vec();
    allowed.extend_from_slice(RetryConfig::URI_OPTIONS);
    uri.check_options(&allowed)?;
    let key = uri.location();
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: key `{key}` {why}"),
        )
    };
    if key.is_empty() {
        return Err(bad(
            "is empty (expected a key id, key ARN, alias/NAME or alias ARN)",
        ));
    }
    if let Some(name) = key.strip_prefix("alias/") {
        if name.is_empty() || name.contains('/') && name.starts_with("aws/") {
            return Err(bad("is not a valid alias/NAME"));
        }
    } else if key.starts_with("arn:") {
        let parts: Vec<&str> = key.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[2] == "kms"
            && (parts[5].starts_with("key/") || parts[5].starts_with("alias/"));
        if !ok {
            return Err(bad(
                "is not a KMS key or alias ARN (arn:aws:kms:REGION:ACCOUNT:key/ID or :alias/NAME)",
            ));
        }
    } else if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad("is not a key id (letters, digits and dashes)"));
    }
    if let Some(ep) = uri.option("endpoint") {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("key URI `{uri}`: endpoint `{ep}` must start with http:// or https://"),
            ));
        }
    }
    Ok(())
}

/// Builds an `aws-sdk-kms` client for a key URI: the standard configuration
/// chain, the URI's region/profile/endpoint, SDK retries off (the signer's
/// own retry policy applies), and `credentials` when given.
pub async fn client_for(
    uri: &KeyUri,
    credentials: Option<Credentials>,
) -> Result<aws_sdk_kms::Client> {
    check_uri(uri)?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let region = uri
        .option("region")
        .or_else(|| region_from_arn(uri.location()))
        .map(str::to_owned)
        .or_else(|| uri.option("endpoint").map(|_| "us-east-1".to_owned()));
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    if let Some(p) = uri.option("profile") {
        loader = loader.profile_name(p);
    }
    if let Some(c) = credentials.clone() {
        loader = loader.credentials_provider(c);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key URI `{uri}`: no AWS region: add ?region=R, use a key ARN, or set AWS_REGION"
            ),
        ));
    }
    let mut b = aws_sdk_kms::config::Builder::from(&sdk)
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled());
    if let Some(ep) = uri.option("endpoint") {
        b = b.endpoint_url(ep);
    }
    if let Some(c) = credentials {
        b = b.credentials_provider(c);
    }
    Ok(aws_sdk_kms::Client::from_conf(b.build()))
}

/// Maps an SDK error into an sshca error (kind, temporary flag, context).
fn map_err<E>(
    uri: &KeyUri,
    what: &str,
    e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let ctx = format!("AWS KMS {what} for `{uri}`");
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let msg = se.err().message().unwrap_or("").to_owned();
            let status = se.raw().status().as_u16();
            let kind = match code.as_str() {
                "NotFoundException" => ErrorKind::NotFound,
                "AccessDeniedException" => ErrorKind::PermissionDenied,
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "MissingAuthenticationTokenException"
                | "ExpiredTokenException" => ErrorKind::Unauthenticated,
                "DisabledException"
                | "KMSInvalidStateException"
                | "InvalidKeyUsageException"
                | "KeyUnavailableException" => ErrorKind::InvalidKey,
                "ThrottlingException" | "LimitExceededException" => ErrorKind::Throttled,
                "UnsupportedOperationException" => ErrorKind::Unsupported,
                "ValidationException" | "SerializationException" => ErrorKind::InvalidInput,
                _ if status >= 500 => ErrorKind::Unavailable,
                _ => ErrorKind::BadResponse,
            };
            Error::new(kind, format!("{ctx}: {code}: {msg}"))
        }
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::InvalidInput,
            format!("{ctx}: cannot build the request: {}", source_chain(&e)),
        ),
        _ => Error::new(
            ErrorKind::Unavailable,
            format!("{ctx}: {}", source_chain(&e)),
        ),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl AwsSigner {
    /// Opens the key named by `uri`: one GetPublicKey call (retried under
    /// the URI's retry settings) that also checks the key's usage and spec,
    /// so a wrong key is an error now rather than at the first signature.
    /// `credentials` overrides the standard chain.
    pub async fn open(uri: KeyUri, credentials: Option<Credentials>) -> Result<Self> {
        let client = client_for(&uri, credentials).await?;
        let retry = RetryConfig::from_uri(&uri)?;
        let key_id = uri.location().to_owned();
        let out = with_retries(&retry, "fetching the public key", || async {
            client
                .get_public_key()
                .key_id(&key_id)
                .send()
                .await
                .map_err(|e| map_err(&uri, "GetPublicKey", e))
        })
        .await?;
        let bad_key = |msg: String| Error::new(ErrorKind::InvalidKey, format!("`{uri}`: {msg}"));
        match out.key_usage() {
            Some(KeyUsageType::SignVerify) => {}
            other => {
                return Err(bad_key(format!(
                    "key usage is {}, sshca needs SIGN_VERIFY",
                    other.map_or("unknown", |u| u.as_str())
                )))
            }
        }
        let spec = out.key_spec().cloned();
        let wanted: &[(SigAlg, SigningAlgorithmSpec)] = match &spec {
            Some(KeySpec::EccNistP256) => &[(SigAlg::EcdsaP256, SigningAlgorithmSpec::EcdsaSha256)],
            Some(KeySpec::EccNistP384) => &[(SigAlg::EcdsaP384, SigningAlgorithmSpec::EcdsaSha384)],
            Some(KeySpec::EccNistP521) => &[(SigAlg::EcdsaP521, SigningAlgorithmSpec::EcdsaSha512)],
            Some(KeySpec::EccNistEdwards25519) => &[(SigAlg::Ed25519, SigningAlgorithmSpec::Ed25519Sha512)],
            Some(KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096) => &[
                (SigAlg::RsaSha512, SigningAlgorithmSpec::RsassaPkcs1V15Sha512),
                (SigAlg::RsaSha256, SigningAlgorithmSpec::RsassaPkcs1V15Sha256),
            ],
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "`{uri}`: key spec {} cannot sign SSH certificates (ECC_NIST_P256/P384/P521, ECC_NIST_EDWARDS25519, RSA_2048/3072/4096)",
                        other.as_ref().map_or("unknown", |s| s.as_str())
                    ),
                ))
            }
        };
        let offered = out.signing_algorithms();
        let algorithms: Vec<SigAlg> = wanted
            .iter()
            .filter(|(_, spec)| offered.contains(spec))
            .map(|(a, _)| *a)
            .collect();
        if algorithms.is_empty() {
            return Err(bad_key(format!(
                "the key offers none of the signing algorithms SSH needs ({})",
                wanted
                    .iter()
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let der = out.public_key().ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{uri}`: GetPublicKey returned no key"),
            )
        })?;
        let public = sshca_core::spki::public_key_from_der(der.as_ref())
            .map_err(|e| Error::from(e).context(format!("`{uri}`: public key from AWS KMS")))?;
        Ok(Self {
            key: FixedKey::new(uri, public, algorithms),
            key_id,
            client,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for AwsSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let spec = match alg {
            SigAlg::EcdsaP256 => SigningAlgorithmSpec::EcdsaSha256,
            SigAlg::EcdsaP384 => SigningAlgorithmSpec::EcdsaSha384,
            SigAlg::EcdsaP521 => SigningAlgorithmSpec::EcdsaSha512,
            SigAlg::RsaSha256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
            SigAlg::RsaSha512 => SigningAlgorithmSpec::RsassaPkcs1V15Sha512,
            SigAlg::Ed25519 => SigningAlgorithmSpec::Ed25519Sha512,
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("`{}` cannot sign with {other}", self.key.uri()),
                ))
            }
        };
        // ECDSA and RSA sign the digest; Ed25519 the whole message (RAW).
        let (mtype, payload) = match alg.digest(message) {
            Some(digest) => (MessageType::Digest, digest),
            None if message.len() > MAX_RAW_MESSAGE => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "`{}`: the to-be-signed certificate is {} bytes; AWS KMS signs Ed25519 (ED25519_SHA_512, MessageType RAW) messages of at most {MAX_RAW_MESSAGE} bytes — use fewer principals or options",
                        self.key.uri(),
                        message.len()
                    ),
                ))
            }
            None => (MessageType::Raw, message.to_vec()),
        };
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(payload))
            .message_type(mtype)
            .signing_algorithm(spec)
            .send()
            .await
            .map_err(|e| map_err(self.key.uri(), "Sign", e))?;
        let sig = out.signature().ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: Sign returned no signature", self.key.uri()),
            )
        })?;
        native_to_ssh(&self.key.public_key(), alg, NativeFormat::Der, sig.as_ref()).map_err(|e| {
            Error::from(e).context(format!("`{}`: signature from AWS KMS", self.key.uri()))
        })
    }
}

sshca_signer::fixed_key_signer!(AwsSigner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_checks() {
        let ok = |s: &str| check_uri(&KeyUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")));
        assert!(ok("awskms:1234abcd-12ab-34cd-56ef-1234567890ab").is_ok());
        assert!(ok("awskms:alias/ssh-ca?region=eu-west-1").is_ok());
        assert!(ok("awskms:arn:aws:kms:us-east-1:111122223333:key/1234abcd").is_ok());
        assert!(ok("awskms:arn:aws:kms:us-east-1:111122223333:alias/ca").is_ok());
        let e = ok("awskms:arn:aws:s3:::bucket").unwrap_err();
        assert!(e.to_string().contains("not a KMS key or alias ARN"), "{e}");
        let e = ok("awskms:alias/ca?bogus=1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ok("awskms:key?endpoint=ftp://x").unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = ok("awskms:k/ey").unwrap_err();
        assert!(e.to_string().contains("key id"), "{e}");
        assert_eq!(
            region_from_arn("arn:aws:kms:eu-west-1:1:key/x"),
            Some("eu-west-1")
        );
        assert_eq!(region_from_arn("alias/x"), None);
    }
}
