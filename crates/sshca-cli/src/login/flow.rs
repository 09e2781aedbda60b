//! Signing a person in at an OpenID Connect issuer: discovery (HTTPS
//! only), the authorization code grant with PKCE, `state`, `nonce` and a
//! loopback redirect (RFC 8252), or the device authorization grant
//! (RFC 8628); the ID token is checked here (issuer, audience, nonce,
//! expiry, signature against the issuer's JWKS) before it is used.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdToken,
    CoreIdTokenVerifier, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, DeviceAuthorizationUrl, DeviceCodeErrorResponseType, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
};
use serde::{Deserialize, Serialize};
use sshca::core::text::escape;
use sshca::signer::{Error, ErrorKind, Result, Secret};

use crate::request::error_chain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the loopback listener waits for the browser.
const CALLBACK_WAIT: Duration = Duration::from_secs(300);

/// An issuer as `GET /v1/login` lists it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct IssuerSettings {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Not a secret for desktop and device clients (the issuer's docs say
    /// so), but kept out of `Debug` all the same.
    #[serde(default, deserialize_with = "secret_opt")]
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub policy: Option<String>,
}

fn secret_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// How to sign in.
pub(super) struct FlowOptions {
    pub device: bool,
    pub no_browser: bool,
    pub listen_port: Option<u16>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct ExtraMetadata {
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The issuer's HTTP client, as openidconnect calls it.
pub(super) struct Http(pub reqwest::Client);

/// An HTTP failure talking to the issuer, with its causes.
#[derive(Debug)]
pub(super) struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let resp = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(error_chain(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(|e| HttpError(error_chain(&e)))?;
            let mut out = HttpResponse::new(bytes.to_vec());
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

fn failed(issuer: &IssuerSettings, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        format!("issuer `{}` ({}): {what}: {e}", issuer.name, issuer.issuer),
    )
}

/// The signature algorithms an ID token may use: asymmetric only.
fn allowed_algs() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    vec![
        RsaSsaPkcs1V15Sha256,
        RsaSsaPkcs1V15Sha384,
        RsaSsaPkcs1V15Sha512,
        RsaSsaPssSha256,
        RsaSsaPssSha384,
        RsaSsaPssSha512,
        EcdsaP256Sha256,
        EcdsaP384Sha384,
        EdDsa,
    ]
}

/// Signs the person in at `issuer` and returns the checked ID token.
pub(super) async fn id_token(
    issuer: &IssuerSettings,
    http: &Http,
    opts: &FlowOptions,
) -> Result<Secret> {
    if !issuer.issuer.starts_with("https://") {
        return Err(failed(issuer, "the issuer", "is not an https:// URL"));
    }
    let url =
        IssuerUrl::new(issuer.issuer.clone()).map_err(|e| failed(issuer, "the issuer URL", e))?;
    let meta = Metadata::discover_async(url, http).await.map_err(|e| {
        failed(
            issuer,
            "discovery (/.well-known/openid-configuration)",
            error_chain(&e),
        )
    })?;
    for (what, u) in [
        (
            "authorization_endpoint",
            Some(meta.authorization_endpoint().url()),
        ),
        ("token_endpoint", meta.token_endpoint().map(|t| t.url())),
        ("jwks_uri", Some(meta.jwks_uri().url())),
        (
            "device_authorization_endpoint",
            meta.additional_metadata()
                .device_authorization_endpoint
                .as_ref()
                .map(|d| d.url()),
        ),
    ] {
        if let Some(u) = u.filter(|u| u.scheme() != "https") {
            return Err(failed(
                issuer,
                &format!("discovery: `{what}`"),
                format!("`{u}` is not https://"),
            ));
        }
    }
    let client_id = ClientId::new(issuer.client_id.clone());
    let secret = issuer
        .client_secret
        .as_ref()
        .map(|s| ClientSecret::new(s.expose().to_owned()));
    let scopes: Vec<Scope> = issuer
        .scopes
        .iter()
        .filter(|s| *s != "openid")
        .map(|s| Scope::new(s.clone()))
        .collect();
    if opts.device {
        device(issuer, http, meta, client_id, secret, scopes).await
    } else {
        code(issuer, http, meta, client_id, secret, scopes, opts).await
    }
}

async fn code(
    issuer: &IssuerSettings,
    http: &Http,
    meta: Metadata,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    scopes: Vec<Scope>,
    opts: &FlowOptions,
) -> Result<Secret> {
    let check_iss = meta
        .additional_metadata()
        .authorization_response_iss_parameter_supported;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.listen_port.unwrap_or(0)))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot listen on 127.0.0.1:{} for the sign-in's redirect",
                    opts.listen_port.unwrap_or(0)
                ),
            )
            .with_source(e)
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Internal, "the listener's port").with_source(e))?
        .port();
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
        .map_err(|e| Error::new(ErrorKind::Internal, "the redirect URL").with_source(e))?;
    let client =
        CoreClient::from_provider_metadata(meta, client_id, secret).set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(scopes)
        .set_pkce_challenge(challenge)
        .url();
    let opened = !opts.no_browser && webbrowser::open(url.as_str()).is_ok();
    if opened {
        eprintln!(
            "sshca: signing in at {} in the browser (waiting up to 5 minutes)",
            issuer.issuer
        );
    } else {
        eprintln!("sshca: open this URL in a browser to sign in (waiting up to 5 minutes):");
        eprintln!("{url}");
    }
    let code = tokio::time::timeout(
        CALLBACK_WAIT,
        callback(
            &listener,
            state.secret(),
            check_iss.then_some(issuer.issuer.as_str()),
        ),
    )
    .await
    .map_err(|_| {
        Error::new(
            ErrorKind::Unavailable,
            "no sign-in arrived within 5 minutes (the browser never came back to the redirect)",
        )
    })?
    .map_err(|e| e.context(format!("issuer `{}`", issuer.name)))?;
    let resp = client
        .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
        .map_err(|e| failed(issuer, "the token endpoint", e))?
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| failed(issuer, "exchanging the code", token_error(&e)))?;
    checked(
        issuer,
        resp.extra_fields().id_token(),
        client.id_token_verifier(),
        &nonce,
    )
}

/// The ID token of a token answer, once checked: signature against the
/// issuer's JWKS (asymmetric algorithms only), `iss`, `aud`, `exp`, and
/// the nonce by `nonce`.
fn checked(
    issuer: &IssuerSettings,
    token: Option<&CoreIdToken>,
    verifier: CoreIdTokenVerifier<'_>,
    nonce: impl openidconnect::NonceVerifier,
) -> Result<Secret> {
    let token = token
        .ok_or_else(|| failed(issuer, "the token endpoint", "answered without an ID token"))?;
    token
        .claims(&verifier.set_allowed_algs(allowed_algs()), nonce)
        .map_err(|e| failed(issuer, "the ID token", error_chain(&e)))?;
    Ok(Secret::new(token.to_string()))
}

fn token_error<E: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &RequestTokenError<E, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => escape(&r.to_string()),
        other => error_chain(other),
    }
}

/// Answers loopback requests until the one whose `state` matches; returns
/// its code. Anything else gets 400 and changes nothing.
async fn callback(
    listener: &tokio::net::TcpListener,
    state: &str,
    issuer: Option<&str>,
) -> Result<Secret> {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let Ok(Ok(head)) =
            tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn)).await
        else {
            continue;
        };
        let query = head
            .strip_prefix("GET /callback?")
            .and_then(|rest| rest.split(' ').next());
        let params: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let state_ok = get("state")
            .is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), state.as_bytes()).into());
        if !state_ok {
            respond(
                &mut conn,
                "400 Bad Request",
                "This is not the sign-in sshca is waiting for.",
            )
            .await;
            continue;
        }
        if let Some(err) = get("error") {
            respond(&mut conn, "200 OK", "Sign-in failed; see the terminal.").await;
            let desc = get("error_description")
                .map(|d| format!(" ({})", escape(d)))
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("the sign-in was refused: {}{desc}", escape(err)),
            ));
        }
        if let Some(expected) = issuer {
            if get("iss") != Some(expected) {
                respond(&mut conn, "200 OK", "Sign-in failed; see the terminal.").await;
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "the sign-in's answer came from `{}`, not from `{expected}` (RFC 9207 `iss`); \
                         it may be a mix-up attack",
                        escape(get("iss").unwrap_or("(no iss)"))
                    ),
                ));
            }
        }
        let Some(code) = get("code").filter(|c| !c.is_empty()) else {
            respond(
                &mut conn,
                "400 Bad Request",
                "The sign-in's answer has no code.",
            )
            .await;
            continue;
        };
        respond(
            &mut conn,
            "200 OK",
            "Signed in. You can close this tab and go back to the terminal.",
        )
        .await;
        return Ok(Secret::new(code.to_owned()));
    }
}

/// The request line and headers (at most 8 KiB).
async fn read_head(conn: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A static page: nothing of the request is reflected.
async fn respond(conn: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sshca login</title></head>\
         <body><p>{text}</p></body></html>"
    );
    let out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(out.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn device(
    issuer: &IssuerSettings,
    http: &Http,
    meta: Metadata,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    scopes: Vec<Scope>,
) -> Result<Secret> {
    let Some(endpoint) = meta
        .additional_metadata()
        .device_authorization_endpoint
        .clone()
    else {
        return Err(failed(
            issuer,
            "--device",
            "the issuer offers no device authorization endpoint (sign in with the browser instead)",
        ));
    };
    let client = CoreClient::from_provider_metadata(meta, client_id, secret)
        .set_device_authorization_url(endpoint);
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes)
        .request_async(http)
        .await
        .map_err(|e| failed(issuer, "the device authorization endpoint", token_error(&e)))?;
    eprintln!("sshca: to sign in, open this URL on any device:");
    match details.verification_uri_complete() {
        Some(complete) => eprintln!("{}", complete.secret()),
        None => {
            eprintln!("{}", details.verification_uri().as_str());
            eprintln!("sshca: and enter the code {}", details.user_code().secret());
        }
    }
    let resp = client
        .exchange_device_access_token(&details)
        .map_err(|e| failed(issuer, "the token endpoint", e))?
        .request_async(http, tokio::time::sleep, None)
        .await
        .map_err(|e| match &e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => Error::new(
                    ErrorKind::PermissionDenied,
                    format!("issuer `{}`: the sign-in was denied (access_denied)", issuer.name),
                ),
                DeviceCodeErrorResponseType::ExpiredToken => Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "issuer `{}`: the code expired before the sign-in was approved (expired_token)",
                        issuer.name
                    ),
                ),
                _ => failed(issuer, "polling the token endpoint", token_error(&e)),
            },
            _ => failed(issuer, "polling the token endpoint", token_error(&e)),
        })?;
    // The device grant sends no nonce.
    checked(
        issuer,
        resp.extra_fields().id_token(),
        client.id_token_verifier(),
        |_: Option<&Nonce>| Ok(()),
    )
}
