//! Who is asking: bearer tokens ([`crate::tokens`]), OIDC JWTs (see
//! [`crate::oidc`]) and client certificates (first SAN, else subject CN),
//! as the `Auth` and `VaultAuth` extractors yielding the [`Identity`].

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use x509_cert::der::Decode;

use sshca_authority::Identity;

use crate::app::{App, Peer};
use crate::context::Ctx;
use crate::error::ApiError;

/// The longest credential header read (8 KiB).
const MAX_CREDENTIAL: usize = 8 * 1024;

/// The bearer token of a request, if it carries one: `Authorization:
/// Bearer`, or (`vault`: on the Vault-compatible paths) `X-Vault-Token`.
pub(crate) fn bearer(headers: &HeaderMap, vault: bool) -> Result<Option<&str>, ApiError> {
    // A credential is never this long; one that is is not read at all.
    for name in [header::AUTHORIZATION.as_str(), "x-vault-token"] {
        if headers.get(name).is_some_and(|v| v.len() > MAX_CREDENTIAL) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_malformed",
                format!("the {name} header is over {} KiB", MAX_CREDENTIAL / 1024),
            ));
        }
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        let Some(v) = headers.get("x-vault-token").filter(|_| vault) else {
            return Ok(None);
        };
        let v = v
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the X-Vault-Token header is not text"))?
            .trim();
        if v.is_empty() {
            return Err(ApiError::unauthenticated(
                "the X-Vault-Token header is empty",
            ));
        }
        return Ok(Some(v));
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
    match v.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthenticated(
            "the Authorization header is not `Bearer TOKEN`",
        )),
    }
}

/// The identity a client certificate (already verified against the
/// client CA) carries: its first DNS, URI or e-mail SAN, else its subject
/// CN. `None` when it has neither, or does not parse.
pub(crate) fn cert_identity(der: &[u8]) -> Option<String> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    if let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() {
        for name in san.0 {
            let found = match name {
                GeneralName::DnsName(n) => Some(n.to_string()),
                GeneralName::UniformResourceIdentifier(n) => Some(n.to_string()),
                GeneralName::Rfc822Name(n) => Some(n.to_string()),
                _ => None,
            };
            if let Some(n) = found.filter(|n| !n.is_empty()) {
                return Some(n);
            }
        }
    }
    const CN: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    tbs.subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == CN)
        .find_map(|atv| {
            use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .ok()
        })
        .filter(|n| !n.is_empty())
}

/// The requester: a bearer token when the request carries one (a JWT
/// checked against the OIDC issuers, else an sshca token; a wrong one is
/// refused even over a client-certificate connection), else the
/// connection's client certificate. `vault`: `X-Vault-Token` counts as a
/// bearer token.
async fn identify(
    app: &App,
    headers: &HeaderMap,
    peer: &Peer,
    vault: bool,
) -> Result<Identity, ApiError> {
    if let Some(token) = bearer(headers, vault)? {
        if let Some(jwt) = crate::oidc::peek(token) {
            if app.oidc.is_empty() {
                return Err(ApiError::unauthenticated(
                    "the bearer token is a JWT but no OIDC issuer is configured",
                ));
            }
            return app.oidc.verify(token, jwt).await;
        }
        return match app.tokens.check(token) {
            Some(name) => Ok(Identity::new("token", name)),
            None => Err(ApiError::unauthenticated("the bearer token is not valid")),
        };
    }
    if let Some(name) = &peer.client_cert {
        return Ok(Identity::new("client-cert", name.clone()));
    }
    Err(ApiError::unauthenticated(
        "no credential: send `Authorization: Bearer TOKEN` or a client certificate",
    ))
}

/// The authenticated requester of a request, as an extractor: a refusal
/// is the 401 answer; the identity goes into the request context.
pub(crate) struct Auth(pub Identity);

/// [`Auth`] on the Vault-compatible paths: `X-Vault-Token` is a bearer
/// token and a refusal is in Vault's shape.
pub(crate) struct VaultAuth(pub Identity);

/// A request's client address and its budget of failed authentications
/// (`[server] unauthenticated_limit`).
pub(crate) struct Budget<'a> {
    limited: Option<(String, &'a crate::limit::RateLimiter)>,
    /// The client's address, as the trusted proxies report it.
    pub ip: Option<std::net::IpAddr>,
}

impl<'a> Budget<'a> {
    /// Reads the client's address (recorded in `ctx`) and answers 429
    /// when the address has spent its budget.
    pub(crate) fn open(
        app: &'a App,
        peer: Option<&Peer>,
        headers: &HeaderMap,
        ctx: Option<&Ctx>,
    ) -> Result<Self, ApiError> {
        let ip = peer
            .and_then(|p| p.addr)
            .map(|a| crate::client::client_ip(a.ip(), headers, &app.settings.trusted_proxies));
        let client = ip.map(crate::client::bucket);
        if let (Some(ip), Some(c), Some(ctx)) = (ip, &client, ctx) {
            ctx.set_client(ip, c);
        }
        let limited = client.zip(app.unauthenticated.as_ref());
        if let Some((c, limiter)) = &limited {
            limiter.peek(c).map_err(|wait| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many failed authentications from this address",
                )
                .retry(wait)
            })?;
        }
        Ok(Self { limited, ip })
    }

    /// Counts a failed authentication against the address.
    pub(crate) fn spend(&self) {
        if let Some((c, limiter)) = &self.limited {
            let _ = limiter.check(c);
        }
    }
}

/// Authenticates, within the client address's budget of failures: an
/// address that spent it gets 429 without its credential being read.
async fn authenticate(parts: &Parts, app: &Arc<App>, vault: bool) -> Result<Identity, ApiError> {
    let peer = parts.extensions.get::<Peer>().cloned().unwrap_or_default();
    let ctx = parts.extensions.get::<Ctx>();
    let budget = Budget::open(app, Some(&peer), &parts.headers, ctx)?;
    match identify(app, &parts.headers, &peer, vault).await {
        Ok(identity) => {
            if let Some(ctx) = ctx {
                ctx.set_identity(&identity);
            }
            Ok(identity)
        }
        Err(e) => {
            budget.spend();
            Err(e)
        }
    }
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(parts, app, false).await.map(Auth)
    }
}

impl FromRequestParts<Arc<App>> for VaultAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(parts, app, true)
            .await
            .map(VaultAuth)
            .map_err(ApiError::in_vault_shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_identities() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["deploy.example.com".into()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "ignored-cn");
        let c = p.self_signed(&key).unwrap();
        assert_eq!(
            cert_identity(c.der()).as_deref(),
            Some("deploy.example.com")
        );

        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            "alice@example.com".try_into().unwrap(),
        )];
        let c = p.self_signed(&key).unwrap();
        assert_eq!(cert_identity(c.der()).as_deref(), Some("alice@example.com"));

        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "ci-runner");
        let c = p.self_signed(&key).unwrap();
        assert_eq!(cert_identity(c.der()).as_deref(), Some("ci-runner"));

        assert_eq!(cert_identity(b"not a certificate"), None);
    }
}
