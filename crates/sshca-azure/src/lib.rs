//! sshca backend for CA keys held in Azure Key Vault (or Managed HSM),
//! through the official `azure_security_keyvault_keys` client.
//!
//! Key URI: `azurekv:https://VAULT/keys/NAME[/VERSION][?ca-cert=PATH&pin=SHA256:...]`
//! — the key identifier as Azure prints it. Without a version, the newest
//! version at open time is used and kept for the signer's lifetime (so the
//! cached public key always matches). Options: `ca-cert` (a PEM file of an
//! extra CA to trust, e.g. the emulator's), `pin`, `retries`, `timeout`,
//! `backoff-ms` (see `sshca-signer`).
//!
//! Credentials, first that applies: `SSHCA_AZURE_ACCESS_TOKEN` (a fixed
//! bearer token); `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` +
//! `AZURE_CLIENT_SECRET` (service principal); `AZURE_FEDERATED_TOKEN_FILE`
//! (workload identity); `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` (managed
//! identity); otherwise the developer tools (Azure CLI, azd).
//! Permissions needed: `keys/get` and `keys/sign`.
//!
//! Algorithms: EC P-256/P-384/P-521 (ES256/384/512, raw `r||s` converted to
//! SSH) and RSA 2048/3072/4096 (RS512 and RS256 as rsa-sha2-512/256).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Transport};
use azure_security_keyvault_keys::models::{
    CurveName, EncryptionAlgorithm, JsonWebKey, KeyClientGetKeyOptions, KeyClientSignOptions,
    KeyClientWrapKeyOptions, KeyOperationParameters, KeyType, SignParameters, SignatureAlgorithm,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use sshca_core::convert::{native_to_ssh, NativeFormat};
use sshca_core::ssh_key::EcdsaCurve;
use sshca_core::{SigAlg, Signature};
use sshca_signer::{
    with_retries, Error, ErrorKind, FixedKey, FixedKeyBackend, KeyUri, KeyWrapper, Registry,
    Result, RetryConfig, WrapContext,
};
use zeroize::Zeroizing;

/// The URI scheme.
pub const SCHEME: &str = "azurekv";

/// Environment variable holding a fixed bearer token.
pub const TOKEN_ENV: &str = "SSHCA_AZURE_ACCESS_TOKEN";

const AZURE_DOMAINS: &[&str] = &[
    ".vault.azure.net",
    ".managedhsm.azure.net",
    ".vault.azure.cn",
    ".managedhsm.azure.cn",
    ".vault.usgovcloudapi.net",
    ".managedhsm.usgovcloudapi.net",
];

/// A key in Azure Key Vault that signs.
pub struct AzureSigner {
    key: FixedKey,
    name: String,
    version: String,
    client: KeyClient,
}

impl std::fmt::Debug for AzureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSigner")
            .field("key", &self.key)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Registers the `azurekv:` scheme (signers wrapped in [`sshca_signer::RetrySigner`]).
pub fn register(registry: &mut Registry) {
    registry.register_remote(SCHEME, |uri| AzureSigner::open(uri, None));
    registry.register_wrapper(SCHEME, |uri| {
        Box::pin(async move {
            let w: Arc<dyn KeyWrapper> = Arc::new(AzureWrapper::open(uri, None).await?);
            Ok(w)
        })
    });
}

/// A Key Vault RSA key as a key-encryption key: `wrapKey`/`unwrapKey` with
/// RSA-OAEP-256. Key Vault takes no additional authenticated data for RSA,
/// so the binding to purpose and key id is the caller's (the data key's own
/// AES-GCM layer). The blob records the key version that wrapped it, so
/// blobs stay readable after the KEK gets a new version. Permissions:
/// `wrapKey`, `unwrapKey` (Key Vault Crypto User).
pub struct AzureWrapper {
    uri: KeyUri,
    name: String,
    version: String,
    client: KeyClient,
}

impl std::fmt::Debug for AzureWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureWrapper")
            .field("uri", &self.uri.to_string())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AzureWrapper {
    /// Opens the key (one get-key call): it must be enabled, RSA, and allow
    /// wrapKey and unwrapKey.
    pub async fn open(uri: KeyUri, credential: Option<Arc<dyn TokenCredential>>) -> Result<Self> {
        let (id, client) = open_client(&uri, credential)?;
        let (jwk, version) = usable_key(&client, &uri, &id, &["wrapKey", "unwrapKey"]).await?;
        if !matches!(jwk.kty, Some(KeyType::Rsa | KeyType::RsaHsm)) {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("`{uri}`: a key-encryption key must be RSA (RSA-OAEP-256)"),
            ));
        }
        Ok(Self {
            name: id.name,
            version,
            uri,
            client,
        })
    }

    fn params(&self, value: &[u8]) -> Result<RequestContent<KeyOperationParameters>> {
        let p = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(value.to_vec()),
            ..Default::default()
        };
        p.try_into().map_err(|e: azure_core::Error| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("`{}`: key operation request: {e}", self.uri),
            )
        })
    }
}

#[async_trait]
impl KeyWrapper for AzureWrapper {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }

    async fn wrap(&self, plaintext: &[u8], _ctx: &WrapContext) -> Result<Vec<u8>> {
        let opts = KeyClientWrapKeyOptions {
            key_version: Some(self.version.clone()),
            ..Default::default()
        };
        let out = self
            .client
            .wrap_key(&self.name, self.params(plaintext)?, Some(opts))
            .await
            .map_err(|e| map_err(&self.uri, "wrapKey", e))?
            .into_model()
            .map_err(|e| map_err(&self.uri, "wrapKey", e))?;
        let ct = out.result.ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: wrapKey returned no value", self.uri),
            )
        })?;
        let v = self.version.as_bytes();
        let len = u8::try_from(v.len()).map_err(|_| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: key version too long", self.uri),
            )
        })?;
        let mut blob = vec![len];
        blob.extend_from_slice(v);
        blob.extend_from_slice(&ct);
        Ok(blob)
    }

    async fn unwrap(&self, blob: &[u8], _ctx: &WrapContext) -> Result<Zeroizing<Vec<u8>>> {
        let bad = || {
            Error::new(
                ErrorKind::InvalidInput,
                format!("`{}`: the wrapped data key is malformed", self.uri),
            )
        };
        let (&len, rest) = blob.split_first().ok_or_else(bad)?;
        let len = usize::from(len);
        if rest.len() <= len {
            return Err(bad());
        }
        let (version, ct) = rest.split_at(len);
        let version = std::str::from_utf8(version).map_err(|_| bad())?;
        let out = self
            .client
            .unwrap_key(&self.name, version, self.params(ct)?, None)
            .await
            .map_err(|e| map_err(&self.uri, "unwrapKey", e))?
            .into_model()
            .map_err(|e| map_err(&self.uri, "unwrapKey", e))?;
        out.result.map(Zeroizing::new).ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: unwrapKey returned no value", self.uri),
            )
        })
    }
}

/// The parts of an `azurekv:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// `https://VAULT` (scheme, host, port).
    pub vault: String,
    /// Key name.
    pub name: String,
    /// Version, when given.
    pub version: Option<String>,
}

/// Parses and checks an `azurekv:` URI without network access.
pub fn parse_uri(uri: &KeyUri) -> Result<KeyId> {
    if uri.scheme() != SCHEME {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: scheme must be {SCHEME}"),
        ));
    }
    let mut allowed = vec!["ca-cert"];
    allowed.extend_from_slice(RetryConfig::URI_OPTIONS);
    uri.check_options(&allowed)?;
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("key URI `{uri}`: {why} (expected azurekv:https://VAULT/keys/NAME[/VERSION])"),
        )
    };
    let loc = uri.location();
    let rest = loc
        .strip_prefix("https://")
        .ok_or_else(|| bad(format!("`{loc}` does not start with https://")))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("no /keys/NAME path".into()))?;
    if host.is_empty() {
        return Err(bad("the vault host is empty".into()));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let (name, version) = match parts.as_slice() {
        ["keys", name] => (*name, None),
        ["keys", name, version] => (*name, Some(*version)),
        _ => return Err(bad(format!("path `/{path}` is not /keys/NAME[/VERSION]"))),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad(format!(
            "key name `{name}` must be letters, digits and dashes"
        )));
    }
    if let Some(v) = version {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(format!("key version `{v}` must be letters and digits")));
        }
    }
    Ok(KeyId {
        vault: format!("https://{host}"),
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// A credential that always returns the same bearer token (`Debug` never
/// shows it).
#[derive(Debug)]
pub struct StaticToken(sshca_signer::Secret);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(sshca_signer::Secret::new(token))
    }
}

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.0.expose().to_owned()),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The credential chain described in the crate docs.
pub fn default_credential() -> Result<Arc<dyn TokenCredential>> {
    let cred_err = |e: azure_core::Error| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("Azure credentials: {e}"),
        )
    };
    if let Some(t) = env(TOKEN_ENV) {
        return Ok(Arc::new(StaticToken::new(t)));
    }
    if let (Some(tenant), Some(client), Some(secret)) = (
        env("AZURE_TENANT_ID"),
        env("AZURE_CLIENT_ID"),
        env("AZURE_CLIENT_SECRET"),
    ) {
        return Ok(azure_identity::ClientSecretCredential::new(
            &tenant,
            client,
            secret.into(),
            None,
        )
        .map_err(cred_err)?);
    }
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        return Ok(azure_identity::WorkloadIdentityCredential::new(None).map_err(cred_err)?);
    }
    if env("IDENTITY_ENDPOINT").is_some() || env("MSI_ENDPOINT").is_some() {
        return Ok(azure_identity::ManagedIdentityCredential::new(None).map_err(cred_err)?);
    }
    Ok(azure_identity::DeveloperToolsCredential::new(None).map_err(cred_err)?)
}

/// The token scope of the Key Vault (or Managed HSM) at `host`: its cloud's
/// `https://vault.<cloud>/.default` (`managedhsm.` for Managed HSM); a host
/// outside Azure's domains (a private endpoint alias, an emulator) gets the
/// public cloud's Key Vault scope.
pub fn key_vault_scope(host: &str) -> String {
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    AZURE_DOMAINS
        .iter()
        .find(|d| host.ends_with(*d))
        .map(|d| format!("https://{}/.default", &d[1..]))
        .unwrap_or_else(|| "https://vault.azure.net/.default".to_owned())
}

/// A credential that only ever asks for a Key Vault token: whatever scope
/// the client asks for (the SDK takes it from the vault's 401 challenge,
/// which whoever answers at the vault's address chooses), the inner
/// credential is asked for the vault's own scope ([`key_vault_scope`]), so
/// a token for another audience (Azure Resource Manager, Graph, …) is never
/// requested or sent.
#[derive(Debug)]
pub struct KeyVaultAudience {
    inner: Arc<dyn TokenCredential>,
    scope: String,
}

impl KeyVaultAudience {
    /// Wraps `inner` for the vault at `host`.
    pub fn new(inner: Arc<dyn TokenCredential>, host: &str) -> Self {
        Self {
            inner,
            scope: key_vault_scope(host),
        }
    }
}

#[async_trait]
impl TokenCredential for KeyVaultAudience {
    async fn get_token(
        &self,
        _scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.inner.get_token(&[&self.scope], options).await
    }
}

/// Builds a Key Vault client for a key URI: the vault from the URI, the
/// `ca-cert=` CA trusted in addition to the system roots, the SDK's retries
/// off (the signer's retry policy applies).
pub fn client_for(uri: &KeyUri, credential: Arc<dyn TokenCredential>) -> Result<KeyClient> {
    let id = parse_uri(uri)?;
    let mut http = reqwest::Client::builder();
    if let Some(path) = uri.option("ca-cert") {
        let pem = std::fs::read(path)
            .map_err(|e| Error::io("reading ca-cert", std::path::Path::new(path), &e))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("key URI `{uri}`: ca-cert {path}: {e}"),
            )
        })?;
        http = http.add_root_certificate(cert);
    }
    let http = http.build().map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("`{uri}`: cannot build the HTTPS client: {e}"),
        )
    })?;
    let options = KeyClientOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::none(),
            ..Default::default()
        },
        // Azure's own domains must match the challenge's resource; another
        // host (a private endpoint alias, an emulator) cannot.
        verify_challenge_resource: Some(AZURE_DOMAINS.iter().any(|d| {
            id.vault
                .trim_start_matches("https://")
                .split(':')
                .next()
                .is_some_and(|h| h.ends_with(d))
        })),
        ..Default::default()
    };
    let host = id.vault.trim_start_matches("https://");
    let credential = Arc::new(KeyVaultAudience::new(credential, host));
    KeyClient::new(&id.vault, credential, Some(options)).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("`{uri}`: cannot build the Key Vault client: {e}"),
        )
    })
}

fn map_err(uri: &KeyUri, what: &str, e: azure_core::Error) -> Error {
    use azure_core::error::ErrorKind as Az;
    let ctx = format!("Azure Key Vault {what} for `{uri}`");
    let kind = match e.kind() {
        Az::HttpResponse { status, .. } => match u16::from(*status) {
            404 => ErrorKind::NotFound,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            429 => ErrorKind::Throttled,
            400 | 409 | 413 => ErrorKind::InvalidInput,
            s if s >= 500 => ErrorKind::Unavailable,
            _ => ErrorKind::BadResponse,
        },
        Az::Io | Az::Connection => ErrorKind::Unavailable,
        Az::Credential => ErrorKind::Unauthenticated,
        _ => ErrorKind::BadResponse,
    };
    Error::new(kind, format!("{ctx}: {e}"))
}

/// The key id a URI names and a client for its vault (`credential`, else
/// [`default_credential`]).
fn open_client(
    uri: &KeyUri,
    credential: Option<Arc<dyn TokenCredential>>,
) -> Result<(KeyId, KeyClient)> {
    let id = parse_uri(uri)?;
    let credential = match credential {
        Some(c) => c,
        None => default_credential()?,
    };
    Ok((id, client_for(uri, credential)?))
}

/// Fetches the key (one get-key call, retried under the URI's retry
/// settings) and checks it is enabled and allows every operation in `ops`;
/// returns its JSON Web Key and version.
async fn usable_key(
    client: &KeyClient,
    uri: &KeyUri,
    id: &KeyId,
    ops: &[&str],
) -> Result<(JsonWebKey, String)> {
    let retry = RetryConfig::from_uri(uri)?;
    let key = with_retries(&retry, "fetching the key", || async {
        let opts = KeyClientGetKeyOptions {
            key_version: id.version.clone(),
            ..Default::default()
        };
        client
            .get_key(&id.name, Some(opts))
            .await
            .map_err(|e| map_err(uri, "get key", e))?
            .into_model()
            .map_err(|e| map_err(uri, "get key", e))
    })
    .await?;
    let bad_key = |msg: String| Error::new(ErrorKind::InvalidKey, format!("`{uri}`: {msg}"));
    if key.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
        return Err(bad_key("the key is disabled".into()));
    }
    let bad_answer = |what: &str| Error::new(ErrorKind::BadResponse, format!("`{uri}`: {what}"));
    let jwk = key.key.ok_or_else(|| bad_answer("no key in the answer"))?;
    let have = jwk.key_ops.clone().unwrap_or_default();
    for op in ops {
        if !have.iter().any(|o| o == op) {
            return Err(bad_key(format!(
                "key_ops [{}] do not include {op}",
                have.join(", ")
            )));
        }
    }
    let version = jwk
        .kid
        .as_deref()
        .and_then(|k| k.rsplit('/').next())
        .map(str::to_owned)
        .ok_or_else(|| bad_answer("the key has no kid"))?;
    Ok((jwk, version))
}

impl AzureSigner {
    /// Opens the key named by `uri`: one get-key call (retried under the
    /// URI's retry settings) that also checks type, curve, `enabled` and
    /// `key_ops`, so a key that cannot sign is an error now.
    /// `credential` overrides [`default_credential`].
    pub async fn open(uri: KeyUri, credential: Option<Arc<dyn TokenCredential>>) -> Result<Self> {
        let (id, client) = open_client(&uri, credential)?;
        let (jwk, version) = usable_key(&client, &uri, &id, &["sign"]).await?;
        let missing = |f: &str| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{uri}`: JSON Web Key lacks {f}"),
            )
        };
        let (public, algorithms) = match jwk.kty {
            Some(KeyType::Ec | KeyType::EcHsm) => {
                let curve = match jwk.crv {
                    Some(CurveName::P256) => EcdsaCurve::NistP256,
                    Some(CurveName::P384) => EcdsaCurve::NistP384,
                    Some(CurveName::P521) => EcdsaCurve::NistP521,
                    other => {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            format!("`{uri}`: curve {other:?} cannot sign SSH certificates (P-256, P-384, P-521)"),
                        ))
                    }
                };
                let x = jwk.x.as_deref().ok_or_else(|| missing("x"))?;
                let y = jwk.y.as_deref().ok_or_else(|| missing("y"))?;
                let k = sshca_core::spki::ec_public_key(curve, x, y)
                    .map_err(|e| Error::from(e).context(format!("`{uri}`")))?;
                (k, vec![SigAlg::for_curve(curve)])
            }
            Some(KeyType::Rsa | KeyType::RsaHsm) => {
                let n = jwk.n.as_deref().ok_or_else(|| missing("n"))?;
                let e = jwk.e.as_deref().ok_or_else(|| missing("e"))?;
                let k = sshca_core::spki::rsa_public_key(n, e)
                    .map_err(|err| Error::from(err).context(format!("`{uri}`")))?;
                (k, vec![SigAlg::RsaSha512, SigAlg::RsaSha256])
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("`{uri}`: key type {other:?} cannot sign SSH certificates (EC, EC-HSM, RSA, RSA-HSM)"),
                ))
            }
        };
        Ok(Self {
            key: FixedKey::new(uri, public, algorithms),
            name: id.name,
            version,
            client,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for AzureSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let (azalg, digest) = match (alg, alg.digest(message)) {
            (SigAlg::EcdsaP256, Some(d)) => (SignatureAlgorithm::Es256, d),
            (SigAlg::EcdsaP384, Some(d)) => (SignatureAlgorithm::Es384, d),
            (SigAlg::EcdsaP521, Some(d)) => (SignatureAlgorithm::Es512, d),
            (SigAlg::RsaSha256, Some(d)) => (SignatureAlgorithm::Rs256, d),
            (SigAlg::RsaSha512, Some(d)) => (SignatureAlgorithm::Rs512, d),
            (other, _) => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("`{}` cannot sign with {other}", self.key.uri()),
                ))
            }
        };
        let params = SignParameters {
            algorithm: Some(azalg),
            value: Some(digest),
        };
        let body: RequestContent<SignParameters> =
            params.try_into().map_err(|e: azure_core::Error| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("`{}`: sign request: {e}", self.key.uri()),
                )
            })?;
        let opts = KeyClientSignOptions {
            key_version: Some(self.version.clone()),
            ..Default::default()
        };
        let out = self
            .client
            .sign(&self.name, body, Some(opts))
            .await
            .map_err(|e| map_err(self.key.uri(), "sign", e))?
            .into_model()
            .map_err(|e| map_err(self.key.uri(), "sign", e))?;
        let sig = out.result.ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("`{}`: sign returned no value", self.key.uri()),
            )
        })?;
        native_to_ssh(&self.key.public_key(), alg, NativeFormat::Raw, &sig).map_err(|e| {
            Error::from(e).context(format!(
                "`{}`: signature from Azure Key Vault",
                self.key.uri()
            ))
        })
    }
}

sshca_signer::fixed_key_signer!(AzureSigner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parsing() {
        let p = |s: &str| parse_uri(&KeyUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")));
        assert_eq!(
            p("azurekv:https://v.vault.azure.net/keys/ca").unwrap(),
            KeyId {
                vault: "https://v.vault.azure.net".into(),
                name: "ca".into(),
                version: None
            }
        );
        assert_eq!(
            p("azurekv:https://127.0.0.1:8443/keys/ca/0123abcd?ca-cert=/tmp/ca.pem")
                .unwrap()
                .version
                .as_deref(),
            Some("0123abcd")
        );
        let e = p("azurekv:http://v/keys/ca").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = p("azurekv:https://v/secrets/ca").unwrap_err();
        assert!(e.to_string().contains("/keys/NAME"), "{e}");
        let e = p("azurekv:https://v/keys/c_a").unwrap_err();
        assert!(e.to_string().contains("key name"), "{e}");
        let e = p("azurekv:https://v/keys/ca?region=x").unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
    }
}
