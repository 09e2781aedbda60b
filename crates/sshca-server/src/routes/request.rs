//! What several resources read from a request: a bounded body, query
//! strings, a subject key, a certificate type, certificate options.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use sshca::core::CertType;

use crate::app::App;
use crate::error::ApiError;

/// Reads the body, refusing one over `max_body` with 413 and one that does
/// not arrive within the request timeout with 408.
pub(super) async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over {} bytes", app.settings.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.settings.max_body as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(
        app.settings.request_timeout,
        axum::body::to_bytes(body, app.settings.max_body),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                app.settings.request_timeout.as_secs()
            ),
        )
    })?;
    read.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// The `key=value` pairs of a query string, percent-decoded.
/// A JSON body of type `T`: 400 naming the field that is wrong, or saying
/// the body is not `what` at all.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("the request body is not {what}: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{path}`: {inner}"))
        }
    })
}

pub(super) fn query_pairs(raw: Option<&str>) -> Result<Vec<(&str, String)>, ApiError> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)
                .ok_or_else(|| ApiError::bad_request(format!("query `{k}`: not UTF-8 text")))?;
            Ok((k, v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The query parameters of a request, each at most once, only the known
/// ones.
pub(super) fn simple_query(
    raw: Option<&str>,
    known: &[&str],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in query_pairs(raw)? {
        if !known.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{}` (known: {})",
                k.escape_debug(),
                known.join(", ")
            )));
        }
        if out.insert(k.to_owned(), v).is_some() {
            return Err(ApiError::bad_request(format!("query `{k}` given twice")));
        }
    }
    Ok(out)
}

/// The subject key of a sign request: a public key line whose type a
/// certificate can hold (else 400, before anything is signed).
pub(super) fn parse_subject(text: &str) -> Result<sshca::core::KeyData, ApiError> {
    let key = sshca::parse_public_key(text, "field `public_key`")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    sshca::core::cert::cert_key_type(key.key_data())
        .map_err(|e| ApiError::bad_request(format!("field `public_key`: {e}")))?;
    Ok(key.key_data().clone())
}

/// `user` or `host`.
pub(super) fn parse_cert_type(text: Option<&str>) -> Result<Option<CertType>, ApiError> {
    match text {
        None => Ok(None),
        Some("user") => Ok(Some(CertType::User)),
        Some("host") => Ok(Some(CertType::Host)),
        Some(other) => Err(ApiError::bad_request(format!(
            "field `cert_type`: `{}` is not `user` or `host`",
            other.escape_debug()
        ))),
    }
}

/// Requested critical options or extensions (an empty value is a flag).
pub(super) fn request_options(
    m: Option<&BTreeMap<String, String>>,
    field: &str,
) -> Result<Option<sshca::core::CertOptions>, ApiError> {
    m.map(|m| sshca::config::cert_options(Some(m), field))
        .transpose()
        .map_err(ApiError::bad_request)
}
