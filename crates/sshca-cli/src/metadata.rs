//! A cloud instance's identity, read from its metadata service for `sshca
//! host enroll` on a cloud join: EC2's IMDSv2 (a session token first, then
//! the identity document and its PKCS#7 `rsa2048` signature), Compute
//! Engine's identity token (`Metadata-Flavor: Google`, `format=full`) and
//! an Azure managed identity access token (`Metadata: true`). The
//! services are reached directly, never through a proxy; their addresses
//! can be overridden the way the clouds' SDKs allow
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, `GCE_METADATA_HOST`) and, for
//! Azure, with `SSHCA_AZURE_IMDS_ENDPOINT`.

use std::time::Duration;

use serde_json::{json, Value};
use sshca::signer::{Error, ErrorKind, Result};

use crate::output::invalid;

/// The link-local address of the EC2 and Azure metadata services.
const LINK_LOCAL: &str = "http://169.254.169.254";
/// Compute Engine's metadata server.
const GCE_HOST: &str = "metadata.google.internal";
/// The Azure IMDS API version asked for.
const AZURE_API_VERSION: &str = "2018-02-01";

/// The `proof` a cloud join's `method` takes, read from this instance's
/// metadata service; `audience` is the join's (Google's `audience`,
/// Azure's `resource`).
pub(crate) async fn proof(method: &str, audience: Option<&str>) -> Result<Value> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot set up HTTP").with_source(e))?;
    let need_audience = || {
        audience.filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::new(
                ErrorKind::BadResponse,
                format!("the service names no audience for the `{method}` join"),
            )
        })
    };
    match method {
        "aws-iid" => {
            let base = endpoint("AWS_EC2_METADATA_SERVICE_ENDPOINT", LINK_LOCAL);
            let token = fetch(
                client
                    .put(format!("{base}/latest/api/token"))
                    .header("X-aws-ec2-metadata-token-ttl-seconds", "60"),
                "the EC2 instance metadata service (IMDSv2 token)",
            )
            .await?;
            let get = |what: &str| {
                client
                    .get(format!("{base}/latest/dynamic/instance-identity/{what}"))
                    .header("X-aws-ec2-metadata-token", token.trim())
            };
            let what = "the EC2 instance metadata service";
            let document = fetch(get("document"), what).await?;
            let signature = fetch(get("rsa2048"), what).await?;
            Ok(json!({"document": document, "signature": signature}))
        }
        "gcp-iit" => {
            let host = std::env::var("GCE_METADATA_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| GCE_HOST.to_owned());
            let host = host.trim_end_matches('/');
            let base = if host.contains("://") {
                host.to_owned()
            } else {
                format!("http://{host}")
            };
            let url = with_query(
                &format!("{base}/computeMetadata/v1/instance/service-accounts/default/identity"),
                &[("audience", need_audience()?), ("format", "full")],
            )?;
            let token = fetch(
                client.get(url).header("Metadata-Flavor", "Google"),
                "the Compute Engine metadata server",
            )
            .await?;
            Ok(json!({"identity_token": token.trim()}))
        }
        "azure-msi" => {
            let base = endpoint("SSHCA_AZURE_IMDS_ENDPOINT", LINK_LOCAL);
            let url = with_query(
                &format!("{base}/metadata/identity/oauth2/token"),
                &[
                    ("api-version", AZURE_API_VERSION),
                    ("resource", need_audience()?),
                ],
            )?;
            let what = "the Azure instance metadata service";
            let body = fetch(client.get(url).header("Metadata", "true"), what).await?;
            let v: Value = serde_json::from_str(&body).map_err(|e| {
                Error::new(ErrorKind::BadResponse, format!("{what}: not JSON")).with_source(e)
            })?;
            let token = v["access_token"].as_str().ok_or_else(|| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!("{what}: no `access_token` in the answer"),
                )
            })?;
            Ok(json!({"access_token": token}))
        }
        other => Err(invalid(format!(
            "join method `{}` is not one this sshca knows (token, aws-iid, gcp-iit, azure-msi)",
            sshca::core::text::escape(other)
        ))),
    }
}

/// An endpoint from `var`, else `default`, without a trailing slash.
fn endpoint(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// `url` with its query parameters encoded.
fn with_query(url: &str, params: &[(&str, &str)]) -> Result<reqwest::Url> {
    reqwest::Url::parse_with_params(url, params)
        .map_err(|e| invalid(format!("metadata service URL `{url}`: {e}")))
}

/// The body of a successful answer of `what`.
async fn fetch(req: reqwest::RequestBuilder, what: &str) -> Result<String> {
    let resp = req.send().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot reach {what} (is this host on that cloud, with metadata access?)"),
        )
        .with_source(e)
    })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read {what}'s answer"),
        )
        .with_source(e)
    })?;
    if !status.is_success() {
        let first: String = body
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(Error::new(
            ErrorKind::BadResponse,
            format!(
                "{what} answered {status}: {}",
                sshca::core::text::escape(&first)
            ),
        ));
    }
    Ok(body)
}
