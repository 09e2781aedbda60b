//! The JWTs of the Compute Engine metadata server (instance identity
//! tokens) and of Azure's IMDS (managed identity access tokens), signed
//! RS256 with the metadata key, and the JWKS that verifies both.

use hyper::StatusCode;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::{json, pick, text, AzureInstance, GcpInstance, Signer};
use crate::state::{read, State};
use crate::util::b64url;
use crate::{Reply, Request};

/// What Google's tokens carry as `iss`.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Lifetime of an identity token (Google: one hour).
const GCP_LIFETIME: u64 = 3600;
/// Lifetime of a managed identity token (Azure: about a day).
const AZURE_LIFETIME: u64 = 86_399;

/// `{"keys": [...]}` with the metadata key.
pub(super) fn jwks(signer: &Signer) -> Value {
    let public = signer.key.to_public_key();
    json!({"keys": [{
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": signer.kid,
        "n": b64url(&public.n().to_bytes_be()),
        "e": b64url(&public.e().to_bytes_be()),
    }]})
}

/// A compact JWS (RS256) of `claims`.
fn jwt(signer: &Signer, claims: &Value) -> Result<String, String> {
    let header = json!({"alg": "RS256", "kid": signer.kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer.sign(input.as_bytes(), false)?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// `GET /computeMetadata/v1/...` with `Metadata-Flavor: Google`.
pub(super) fn gcp(state: &State, signer: &Signer, req: &Request) -> Reply {
    if req.header("metadata-flavor") != Some("Google") {
        return text(
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        );
    }
    let instances = read(&state.metadata).instances.gcp.clone();
    let Some(i) = pick(state, req, "gcp", &instances, |i| {
        [i.instance_id.as_str(), i.instance_name.as_str()]
    }) else {
        return text(StatusCode::NOT_FOUND, "no such instance");
    };
    let answer = match req.path.trim_end_matches('/') {
        "/computeMetadata/v1/instance/service-accounts/default/identity" => {
            let Some(audience) = req.query("audience").filter(|a| !a.is_empty()) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "non-empty audience parameter required",
                );
            };
            let full = req.query("format") == Some("full");
            gcp_token(signer, i, audience, full, state.now())
        }
        "/computeMetadata/v1/instance/id" => Ok(i.instance_id.clone()),
        "/computeMetadata/v1/instance/name" => Ok(i.instance_name.clone()),
        "/computeMetadata/v1/instance/zone" => {
            Ok(format!("projects/{}/zones/{}", i.project_number, i.zone))
        }
        "/computeMetadata/v1/project/project-id" => Ok(i.project_id.clone()),
        "/computeMetadata/v1/project/numeric-project-id" => Ok(i.project_number.to_string()),
        _ => return text(StatusCode::NOT_FOUND, "Not Found"),
    };
    let Reply::Send(mut r) = (match answer {
        Ok(body) => text(StatusCode::OK, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    r.headers_mut().insert(
        "metadata-flavor",
        hyper::header::HeaderValue::from_static("Google"),
    );
    Reply::Send(r)
}

fn gcp_token(
    signer: &Signer,
    i: &GcpInstance,
    audience: &str,
    full: bool,
    t: u64,
) -> Result<String, String> {
    let account = i
        .service_account
        .clone()
        .unwrap_or_else(|| format!("{}-compute@developer.gserviceaccount.com", i.project_number));
    // The service account's unique id: a stable 21-digit number.
    let sub = format!("1{:020}", i.project_number);
    let mut claims = json!({
        "aud": audience,
        "azp": sub,
        "email": account,
        "email_verified": true,
        "exp": t + GCP_LIFETIME,
        "iat": t,
        "iss": GOOGLE_ISSUER,
        "sub": sub,
    });
    if full {
        claims["google"] = json!({"compute_engine": {
            "instance_creation_timestamp": i.creation_timestamp.unwrap_or(signer.started),
            "instance_id": i.instance_id,
            "instance_name": i.instance_name,
            "project_id": i.project_id,
            "project_number": i.project_number,
            "zone": i.zone,
        }});
    }
    jwt(signer, &claims)
}

/// `GET /metadata/identity/oauth2/token?api-version=...&resource=...`
/// with `Metadata: true`.
pub(super) fn azure(state: &State, signer: &Signer, req: &Request) -> Reply {
    let error = |status: StatusCode, code: &str, description: &str| {
        json(
            status,
            &json!({"error": code, "error_description": description}),
        )
    };
    if req.header("metadata") != Some("true") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if req.path.trim_end_matches('/') != "/metadata/identity/oauth2/token" {
        return error(StatusCode::NOT_FOUND, "not_found", "Not Found");
    }
    if req.query("api-version").is_none_or(str::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = req.query("resource").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let instances = read(&state.metadata).instances.azure.clone();
    let Some(i) = pick(state, req, "azure", &instances, |i| {
        [i.vm_name.as_str(), i.vm_name.as_str()]
    }) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such instance");
    };
    let t = state.now();
    match azure_token(signer, i, resource, t) {
        Ok(token) => json(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "client_id": i.client_id,
                "expires_in": AZURE_LIFETIME.to_string(),
                "expires_on": (t + AZURE_LIFETIME).to_string(),
                "ext_expires_in": AZURE_LIFETIME.to_string(),
                "not_before": t.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", &e),
    }
}

fn azure_token(
    signer: &Signer,
    i: &AzureInstance,
    resource: &str,
    t: u64,
) -> Result<String, String> {
    let iss = format!("https://sts.windows.net/{}/", i.tenant_id);
    let claims = json!({
        "aud": resource,
        "iss": iss,
        "iat": t,
        "nbf": t,
        "exp": t + AZURE_LIFETIME,
        "appid": i.client_id,
        "appidacr": "2",
        "idp": iss,
        "idtyp": "app",
        "oid": i.principal_id,
        "sub": i.principal_id,
        "tid": i.tenant_id,
        "ver": "1.0",
        "xms_mirid": format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            i.subscription_id, i.resource_group, i.vm_name
        ),
    });
    jwt(signer, &claims)
}
