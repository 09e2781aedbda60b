//! OIDC requesters: a bearer token that is a JWT is checked against the
//! `[oidc.NAME]` issuers — signature (asymmetric algorithms only, pinned
//! per key), `iss`, `aud`, `exp`, `nbf`, `iat` — and becomes the identity
//! its `identity_claim` holds, with source `oidc:NAME` and its claims.
//!
//! Each refusal names its reason in the error code (`token_expired`,
//! `token_audience`, `token_issuer`, `token_signature`, `token_algorithm`,
//! `token_unknown_key`, `token_not_yet_valid`, `token_claims`,
//! `token_malformed`), which the audit row records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sshca::core::validity::parse_ttl;
use sshca::signer::{Error, ErrorKind, Result};
use sshca_authority::Identity;
use tokio::sync::Mutex;

use crate::config::{OidcConfig, OIDC_ALGORITHMS};
use crate::error::ApiError;

/// Fetch a JWKS again on an unknown `kid` at most this often.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Fetch a JWKS again after this long even when every `kid` is known.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest JWKS document read.
const MAX_JWKS: usize = 1 << 20;

/// The configured issuers.
pub(crate) struct Issuers(Vec<Issuer>);

struct Issuer {
    name: String,
    source: String,
    issuer: String,
    audience: String,
    identity_claim: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    jwks: JwksSource,
    keys: Mutex<KeyCache>,
}

enum JwksSource {
    File(PathBuf),
    Url(String, reqwest::Client),
}

struct KeyCache {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
}

/// One verification key of an issuer.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWKS pins the key to, if it does.
    alg: Option<Algorithm>,
    kind: KeyKind,
    decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "a P-256 key",
            KeyKind::P384 => "a P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, code, message)
}

/// The parts of a JWT read before its signature is checked.
pub(crate) struct Unverified {
    alg: String,
    kid: Option<String>,
    iss: Option<String>,
}

/// The header and issuer of `token` when it has a JWT's shape (three
/// base64url parts, the first a JSON object); `None` otherwise.
pub(crate) fn peek(token: &str) -> Option<Unverified> {
    let mut parts = token.split('.');
    let (h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Map<String, Value> = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    let payload: Option<Map<String, Value>> = b64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Some(Unverified {
        alg: header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        kid: header.get("kid").and_then(Value::as_str).map(str::to_owned),
        iss: payload
            .as_ref()
            .and_then(|p| p.get("iss"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn invalid(name: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("oidc `{name}`: {what}"))
}

impl Issuers {
    /// The issuers of `cfg`, with their keys loaded (a JWKS URL that cannot
    /// be fetched now is fetched again on the first token).
    pub async fn new(issuers: &BTreeMap<String, OidcConfig>) -> Result<Self> {
        let mut out = Vec::new();
        for (name, o) in issuers {
            out.push(Issuer::new(name, o).await?);
        }
        Ok(Self(out))
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Issuers whose tokens prove a cloud instance's identity to the join
    /// `name`: RS256 tokens from any of `issuers` for `audience`, verified
    /// with `jwks` (a file or an `https://` URL, whose server chains to
    /// `jwks_ca` when given).
    pub async fn for_join(
        name: &str,
        issuers: &[String],
        audience: &str,
        jwks: &str,
        jwks_ca: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut out = Vec::new();
        for issuer in issuers {
            let o = OidcConfig {
                issuer: issuer.clone(),
                audience: audience.to_owned(),
                jwks: jwks.to_owned(),
                jwks_ca: jwks_ca.map(std::path::Path::to_path_buf),
                identity_claim: None,
                algorithms: Some(vec!["RS256".into()]),
                leeway: None,
                client_id: None,
                client_secret: None,
                scopes: None,
                login_policy: None,
            };
            out.push(Issuer::new(&format!("join {name}"), &o).await?);
        }
        Ok(Self(out))
    }

    /// The identity of a JWT bearer token whose header and issuer
    /// [`peek`] read.
    pub async fn verify(
        &self,
        token: &str,
        u: Unverified,
    ) -> std::result::Result<Identity, ApiError> {
        let (issuer, claims) = self.verified(token, u).await?;
        issuer.identity(claims)
    }

    /// The claims of a JWT, once its signature, issuer, audience and times
    /// are checked; a token that is not a JWT is `token_malformed`.
    pub async fn claims(&self, token: &str) -> std::result::Result<Map<String, Value>, ApiError> {
        let u = peek(token).ok_or_else(|| {
            refused(
                "token_malformed",
                "the token is not a JWT (three base64url parts, the first a JSON object)",
            )
        })?;
        self.verified(token, u).await.map(|(_, claims)| claims)
    }

    async fn verified(
        &self,
        token: &str,
        u: Unverified,
    ) -> std::result::Result<(&Issuer, Map<String, Value>), ApiError> {
        let alg: Algorithm = match u.alg.as_str() {
            a if OIDC_ALGORITHMS.contains(&a) => a
                .parse()
                .map_err(|_| refused("token_algorithm", format!("unknown algorithm `{a}`")))?,
            "none" | "" => {
                return Err(refused(
                    "token_algorithm",
                    "the token is unsigned (`alg: none`); only signed tokens are accepted",
                ))
            }
            a if a.to_ascii_uppercase().starts_with("HS") => {
                return Err(refused(
                    "token_algorithm",
                    format!("`{a}` is an HMAC algorithm; only asymmetric signatures are accepted"),
                ))
            }
            a => {
                return Err(refused(
                    "token_algorithm",
                    format!(
                        "algorithm `{}` is not accepted",
                        sshca::core::text::escape(a)
                    ),
                ))
            }
        };
        let Some(iss) = u.iss else {
            return Err(refused(
                "token_issuer",
                "the token has no string `iss` claim",
            ));
        };
        let candidates: Vec<&Issuer> = self.0.iter().filter(|i| i.issuer == iss).collect();
        if candidates.is_empty() {
            return Err(refused(
                "token_issuer",
                format!(
                    "issuer `{}` is not configured",
                    sshca::core::text::escape(&iss)
                ),
            ));
        }
        let mut first_err = None;
        for issuer in candidates {
            match issuer.verify(token, alg, u.kid.as_deref()).await {
                Ok(claims) => return Ok((issuer, claims)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| refused("token_issuer", "no issuer accepted the token")))
    }
}

impl Issuer {
    async fn new(name: &str, o: &OidcConfig) -> Result<Self> {
        let algorithms = match &o.algorithms {
            Some(list) => list
                .iter()
                .map(|a| {
                    a.parse::<Algorithm>()
                        .map_err(|_| invalid(name, format_args!("unknown algorithm `{a}`")))
                })
                .collect::<Result<Vec<_>>>()?,
            None => OIDC_ALGORITHMS
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
        };
        let leeway = match &o.leeway {
            Some(l) => {
                parse_ttl(l).map_err(|e| invalid(name, format_args!("field `leeway`: {e}")))?
            }
            None => 60,
        };
        let jwks = if o.jwks.starts_with("https://") {
            JwksSource::Url(o.jwks.clone(), jwks_client(name, o)?)
        } else {
            JwksSource::File(PathBuf::from(&o.jwks))
        };
        let issuer = Self {
            name: name.to_owned(),
            source: format!("oidc:{name}"),
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            identity_claim: o.identity_claim.clone().unwrap_or_else(|| "sub".into()),
            algorithms,
            leeway,
            jwks,
            keys: Mutex::new(KeyCache {
                keys: Arc::new(Vec::new()),
                fetched: None,
            }),
        };
        match issuer.load().await {
            Ok(keys) => {
                let mut cache = issuer.keys.lock().await;
                cache.keys = Arc::new(keys);
                cache.fetched = Some(Instant::now());
            }
            // A file is ours to get right; a URL may be down for a while.
            Err(e) if matches!(issuer.jwks, JwksSource::File(_)) => return Err(e),
            Err(e) => tracing::warn!(oidc = name, error = %e.report(), "cannot fetch the JWKS yet"),
        }
        Ok(issuer)
    }

    /// Reads the JWKS from its file or URL.
    async fn load(&self) -> Result<Vec<Key>> {
        let bytes = match &self.jwks {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| Error::io("cannot read the JWKS", path, &e))?,
            JwksSource::Url(url, client) => {
                let unavailable = |what: String| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("oidc `{}`: {url}: {what}", self.name),
                    )
                };
                let resp = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| unavailable("cannot fetch the JWKS".into()).with_source(e))?;
                if !resp.status().is_success() {
                    return Err(unavailable(format!("answered {}", resp.status())));
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| unavailable("cannot read the JWKS".into()).with_source(e))?;
                if body.len() > MAX_JWKS {
                    return Err(unavailable(format!("the JWKS is over {MAX_JWKS} bytes")));
                }
                body.to_vec()
            }
        };
        parse_jwks(&self.name, &bytes)
    }

    /// The keys, fetched again when stale or (at most every
    /// [`MIN_REFRESH`]) when `want_kid` is unknown.
    async fn keys(&self, want_kid: Option<&str>) -> Arc<Vec<Key>> {
        let mut cache = self.keys.lock().await;
        let age = cache.fetched.map(|t| t.elapsed());
        let unknown =
            want_kid.is_some_and(|k| !cache.keys.iter().any(|key| key.kid.as_deref() == Some(k)));
        let stale = age.is_none_or(|a| a > MAX_AGE);
        if stale || (unknown && age.is_none_or(|a| a > MIN_REFRESH)) {
            match self.load().await {
                Ok(keys) => {
                    cache.keys = Arc::new(keys);
                    cache.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(oidc = %self.name, error = %e.report(), "cannot refresh the JWKS; keeping the keys held");
                }
            }
        }
        cache.keys.clone()
    }

    async fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> std::result::Result<Map<String, Value>, ApiError> {
        if !self.algorithms.contains(&alg) {
            return Err(refused(
                "token_algorithm",
                format!("issuer `{}` does not accept {alg:?} tokens", self.name),
            ));
        }
        let keys = self.keys(kid).await;
        let named: Vec<&Key> = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .collect();
        if named.is_empty() {
            return Err(refused(
                "token_unknown_key",
                match kid {
                    Some(k) => format!(
                        "key `{}` is not one of issuer `{}`'s keys",
                        sshca::core::text::escape(k),
                        self.name
                    ),
                    None => format!("issuer `{}` has no keys", self.name),
                },
            ));
        }
        let usable: Vec<&Key> = named
            .iter()
            .copied()
            .filter(|k| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg))
            .collect();
        if usable.is_empty() {
            return Err(refused(
                "token_algorithm",
                format!(
                    "the token says {alg:?} but key {} of issuer `{}` is {}{}",
                    kid.map(|k| format!("`{}`", sshca::core::text::escape(k)))
                        .unwrap_or_else(|| "(no kid)".into()),
                    self.name,
                    named[0].kind.describe(),
                    named[0]
                        .alg
                        .map(|a| format!(" pinned to {a:?}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // Without a `kid`, each usable key is tried; any other failure than
        // the signature is final.
        let mut last = None;
        for key in usable {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => return self.checked_iat(data.claims),
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    last = Some(e)
                }
                Err(e) => return Err(self.reason(&e)),
            }
        }
        Err(last.map_or_else(
            || refused("token_signature", "the signature does not verify"),
            |e| self.reason(&e),
        ))
    }

    fn reason(&self, e: &jsonwebtoken::errors::Error) -> ApiError {
        use jsonwebtoken::errors::ErrorKind as K;
        let n = &self.name;
        match e.kind() {
            K::ExpiredSignature => refused("token_expired", "the token has expired"),
            K::ImmatureSignature => {
                refused("token_not_yet_valid", "the token is not valid yet (nbf)")
            }
            K::InvalidAudience => refused(
                "token_audience",
                format!(
                    "the token's audience is not `{}` (issuer `{n}`)",
                    self.audience
                ),
            ),
            K::InvalidIssuer => refused(
                "token_issuer",
                format!("the token's issuer is not `{}`", self.issuer),
            ),
            K::InvalidSignature => refused(
                "token_signature",
                format!("the signature does not verify with issuer `{n}`'s keys"),
            ),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => refused(
                "token_algorithm",
                "the token's algorithm does not fit the key",
            ),
            K::MissingRequiredClaim(c) => {
                refused("token_claims", format!("the token has no `{c}` claim"))
            }
            K::InvalidClaimFormat(c) => refused(
                "token_claims",
                format!("the token's `{c}` claim is malformed"),
            ),
            _ => refused("token_malformed", format!("the token cannot be read: {e}")),
        }
    }

    /// `claims`, once an `iat` is checked not to be in the future.
    fn checked_iat(
        &self,
        claims: Map<String, Value>,
    ) -> std::result::Result<Map<String, Value>, ApiError> {
        let now = sshca_authority::unix_now();
        match claims.get("iat") {
            None => {}
            Some(Value::Number(n)) => {
                let iat = n.as_f64().unwrap_or(f64::MAX);
                if iat > (now + self.leeway) as f64 {
                    return Err(refused(
                        "token_not_yet_valid",
                        "the token was issued in the future (iat)",
                    ));
                }
            }
            Some(_) => {
                return Err(refused(
                    "token_claims",
                    "the token's `iat` claim is not a number",
                ))
            }
        }
        Ok(claims)
    }

    fn identity(&self, claims: Map<String, Value>) -> std::result::Result<Identity, ApiError> {
        let c = &self.identity_claim;
        let name = match claims.get(c) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(refused(
                    "token_claims",
                    format!(
                        "the token has no string `{c}` claim (issuer `{}`'s identity_claim)",
                        self.name
                    ),
                ))
            }
        };
        sshca::core::text::check_printable("identity", &name)
            .map_err(|e| refused("token_claims", e.to_string()))?;
        if name.len() > sshca::core::text::CAP {
            return Err(refused(
                "token_claims",
                format!(
                    "the `{c}` claim is over {} bytes (an identity is a name)",
                    sshca::core::text::CAP
                ),
            ));
        }
        Ok(Identity {
            source: self.source.clone(),
            name,
            claims: sshca_authority::claims_from_json(claims),
        })
    }
}

/// The verification keys of a JWKS document. Keys for encryption,
/// symmetric keys and key types we cannot use are skipped.
fn parse_jwks(name: &str, bytes: &[u8]) -> Result<Vec<Key>> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(bytes)
        .map_err(|e| invalid(name, format_args!("the JWKS is not a JSON key set: {e}")))?;
    let mut keys = Vec::new();
    for v in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                KeyKind::P256
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                KeyKind::P384
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                KeyKind::Ed25519
            }
            _ => continue,
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(a) if kind.fits(a) => Some(a),
                _ => continue,
            },
            None => None,
        };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            kind,
            decoding,
        });
    }
    if keys.is_empty() {
        return Err(invalid(name, "the JWKS holds no usable signature key"));
    }
    Ok(keys)
}

fn jwks_client(_name: &str, o: &OidcConfig) -> Result<reqwest::Client> {
    crate::tls::https_client(o.jwks_ca.as_deref(), "JWKS CA (jwks_ca)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(peek("sshca_abc").is_none());
        assert!(peek("a.b.c").is_none());
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert!(peek(&format!("{h}.e30.")).is_some());
        assert!(peek(&format!("{h}.e30..x")).is_none());
    }

    #[test]
    fn jwks_skips_what_cannot_verify() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"EC","crv":"P-256","use":"enc","kid":"enc","x":"AAAA","y":"AAAA"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed-rs","alg":"RS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse_jwks("t", doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[0].kind, KeyKind::Ed25519);
        assert!(parse_jwks("t", br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks("t", b"[]").is_err());
    }
}
