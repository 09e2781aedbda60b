//! `EXTERNAL_VPC` keys: Cloud KMS forwarding getPublicKey and asymmetricSign
//! to the key manager through the connection's resolvers, with failover.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::gcp::store::{EkmConnection, ServiceResolver};
use crate::google::{gerr, precondition, GcpError};
use crate::state::{read, State};
use crate::util::{b64, unb64};

/// What one resolver answered.
pub(crate) enum Answer {
    /// 2xx with its JSON body.
    Ok(Value),
    /// 4xx: (HTTP status, google.rpc.Status name, message).
    Refused(u16, String, String),
}

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        src = s.source();
    }
    msg
}

/// One request to one resolver; `Err` is a reason to try the next one
/// (connection, TLS, timeout, 5xx).
pub(crate) async fn call_one(
    state: &State,
    r: &ServiceResolver,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, String> {
    let client = state.ekm_link.client(state.config.bind, r).await?;
    let mut req = client.request(method, format!("https://{}{path}", r.hostname));
    if let Some(t) = &state.config.ekm_token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| chain(&e))?;
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere")
            .escape_debug()
            .to_string();
        return Err(format!(
            "{} redirect to {to}; redirects are never followed",
            status.as_u16()
        ));
    }
    let text = resp.text().await.map_err(|e| chain(&e))?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(Answer::Ok(json));
    }
    let name = json["error"]["status"].as_str().unwrap_or("").to_string();
    let message = json["error"]["message"]
        .as_str()
        .unwrap_or(text.trim())
        .to_string();
    if status.is_server_error() {
        return Err(format!("{} {name}: {message}", status.as_u16()));
    }
    Ok(Answer::Refused(status.as_u16(), name, message))
}

/// Sends a request through a connection: its resolvers in order until one
/// answers. The key manager's refusals become Cloud KMS errors.
pub(crate) async fn call(
    state: &State,
    conn: &EkmConnection,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, GcpError> {
    let mut failures = Vec::new();
    for (i, r) in conn.resolvers.iter().enumerate() {
        match call_one(state, r, method.clone(), path, body).await {
            Ok(Answer::Ok(v)) => return Ok(v),
            Ok(Answer::Refused(429, _, m)) => {
                return Err(gerr(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    format!("The external key manager is throttling requests: {m}"),
                ))
            }
            Ok(Answer::Refused(code, name, m)) => {
                return Err(precondition(format!(
                    "The external key manager behind {} refused the request ({code} {name}): {m}",
                    conn.name
                )))
            }
            Err(e) => failures.push(format!("resolver {i} ({}): {e}", r.hostname)),
        }
    }
    if failures.is_empty() {
        return Err(precondition(format!(
            "EkmConnection {} has no service resolvers.",
            conn.name
        )));
    }
    Err(gerr(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        format!(
            "The external key manager behind {} could not be reached: {}",
            conn.name,
            failures.join("; ")
        ),
    ))
}

/// The connection of an `EXTERNAL_VPC` key.
pub(crate) fn connection(state: &State, backend: &str) -> Result<EkmConnection, GcpError> {
    read(&state.gcp)
        .ekm_connections
        .get(backend)
        .cloned()
        .ok_or_else(|| precondition(format!("EkmConnection {backend} no longer exists.")))
}

/// The public key PEM of the key at `path` on the key manager, checked to be
/// enabled and of algorithm `want` (what the crypto key `key_name` needs).
pub(crate) async fn fetch_key(
    state: &State,
    conn: &EkmConnection,
    path: &str,
    want: &str,
    key_name: &str,
) -> Result<String, GcpError> {
    let v = call(
        state,
        conn,
        reqwest::Method::GET,
        &format!("/v1/{path}"),
        None,
    )
    .await?;
    let alg = v["algorithm"].as_str().unwrap_or_default().to_string();
    let pem = v["publicKeyPem"].as_str().unwrap_or_default().to_string();
    if alg.is_empty() || pem.is_empty() {
        return Err(precondition(format!(
            "The external key manager answered for {path} without algorithm and publicKeyPem."
        )));
    }
    if v["state"] != "ENABLED" {
        return Err(precondition(format!(
            "The external key {path} is not enabled on the key manager."
        )));
    }
    if alg != want {
        return Err(precondition(format!(
            "The external key {path} is {alg}; {key_name} needs {want}."
        )));
    }
    Ok(pem)
}

/// Creates a key on the key manager under the connection's crypto space
/// path (CLOUD_KMS mode); returns its path.
pub(crate) async fn create_external(
    state: &State,
    conn: &EkmConnection,
    algorithm: &str,
) -> Result<String, GcpError> {
    let id = format!("kms-{}", hex::encode(crate::crypto::random_bytes(8)));
    let v = call(
        state,
        conn,
        reqwest::Method::POST,
        &format!("/v1/{}/keys?keyId={id}", conn.crypto_space_path),
        Some(&json!({"algorithm": algorithm})),
    )
    .await?;
    Ok(v["name"].as_str().map_or_else(
        || format!("{}/keys/{id}", conn.crypto_space_path),
        str::to_string,
    ))
}

/// Signs through the key manager: `input` is `("digest" | "data", bytes)`.
pub(crate) async fn sign(
    state: &State,
    conn: &EkmConnection,
    path: &str,
    algorithm: &str,
    input: (&str, &[u8]),
) -> Result<Vec<u8>, GcpError> {
    let mut body = json!({"algorithm": algorithm});
    body[input.0] = json!(b64(input.1));
    let v = call(
        state,
        conn,
        reqwest::Method::POST,
        &format!("/v1/{path}:sign"),
        Some(&body),
    )
    .await?;
    let sig = v["signature"].as_str().ok_or_else(|| {
        gerr(
            StatusCode::BAD_GATEWAY,
            "UNAVAILABLE",
            "The external key manager answered without a signature.",
        )
    })?;
    unb64("signature", sig).map_err(|e| gerr(StatusCode::BAD_GATEWAY, "UNAVAILABLE", e))
}
