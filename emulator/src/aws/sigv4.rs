//! Verification of AWS Signature Version 4 on incoming requests.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Request;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused, as AWS names it.
#[derive(Debug, PartialEq, Eq)]
pub enum SigError {
    /// No or malformed Authorization header.
    Missing(String),
    /// The access key is not known.
    UnknownKey(String),
    /// The signature does not match, or is too old.
    Mismatch(String),
    /// The signature leaves out a part AWS requires it to cover
    /// (`x-amz-target`, any `x-amz-*` header sent).
    Incomplete(String),
}

/// The parts of a verified signature.
#[derive(Debug)]
pub struct Verified {
    /// Region from the credential scope.
    pub region: String,
    /// The access key that signed.
    pub access_key: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `20240101T000000Z` into seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let days = crate::util::days_from_civil(n(0..4)? as i64, n(4..6)?, n(6..8)?);
    let secs = days * 86_400 + (n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?) as i64;
    u64::try_from(secs).ok()
}

/// Verifies the request's SigV4 signature for service `kms` against the
/// accepted credentials.
pub fn verify(req: &Request, credentials: &[(String, String)]) -> Result<Verified, SigError> {
    let auth = req
        .header("authorization")
        .ok_or_else(|| SigError::Missing("Missing Authentication Token".into()))?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| SigError::Missing("Authorization header is not AWS4-HMAC-SHA256".into()))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(SigError::Missing(
            "Authorization header lacks Credential, SignedHeaders or Signature".into(),
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(SigError::Missing(format!(
            "malformed credential scope {credential:?}"
        )));
    }
    let (access_key, date, region, service) = (scope[0], scope[1], scope[2], scope[3]);
    if service != "kms" {
        return Err(SigError::Mismatch(format!(
            "Credential should be scoped to correct service: 'kms', not {service:?}"
        )));
    }
    let secret = credentials
        .iter()
        .find(|(ak, _)| ak == access_key)
        .map(|(_, sk)| sk)
        .ok_or_else(|| {
            SigError::UnknownKey("The security token included in the request is invalid.".into())
        })?;
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| SigError::Missing("missing X-Amz-Date header".into()))?;
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| SigError::Mismatch(format!("malformed X-Amz-Date {amz_date:?}")))?;
    if !amz_date.starts_with(date) {
        return Err(SigError::Mismatch(
            "credential date does not match X-Amz-Date".into(),
        ));
    }
    let now = crate::state::real_now();
    if when.abs_diff(now) > 15 * 60 {
        return Err(SigError::Mismatch(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time"
        )));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(SigError::Mismatch("SignedHeaders must include host".into()));
    }
    // As AWS: every x-amz-* header sent (x-amz-target, which names the
    // operation, among them) must be covered by the signature.
    let mut unsigned: Vec<&str> = req
        .headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.starts_with("x-amz-") && !names.contains(n))
        .collect();
    if req.header("x-amz-target").is_none() {
        unsigned.push("x-amz-target (missing)");
    }
    if !unsigned.is_empty() {
        unsigned.sort_unstable();
        unsigned.dedup();
        return Err(SigError::Incomplete(format!(
            "The request signature does not cover the header(s) {}: every x-amz-* header \
             must be listed in SignedHeaders",
            unsigned.join(", ")
        )));
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigError::Mismatch(format!(
                "signed header {name} is missing"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    // The payload hash is always computed from the body received; a
    // declared x-amz-content-sha256 must agree with it (a swapped body
    // cannot ride on another request's signature).
    let payload_hash = hex::encode(Sha256::digest(&req.body));
    if let Some(declared) = req.header("x-amz-content-sha256") {
        if !declared.eq_ignore_ascii_case(&payload_hash) {
            return Err(SigError::Mismatch(
                "The provided x-amz-content-sha256 header does not match what was computed.".into(),
            ));
        }
    }
    let path = if req.path.is_empty() {
        "/"
    } else {
        req.path.as_str()
    };
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.as_str(),
        uri_encode(path, true),
        canonical_query,
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    if expected != signature.to_ascii_lowercase() {
        return Err(SigError::Mismatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        ));
    }
    Ok(Verified {
        region: region.to_string(),
        access_key: access_key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20231114T221320Z"), Some(1_700_000_000));
        assert_eq!(parse_amz_date("2023-11-14"), None);
    }
}
