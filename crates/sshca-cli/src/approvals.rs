//! `sshca approvals`: the sign requests waiting for approval that the
//! caller may decide (`list`), and deciding one (`approve`, `deny`); and
//! the wait of `sshca request --wait`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sshca::signer::{Error, ErrorKind, Result, Secret};

use crate::output::invalid;
use crate::request::{refusal, unreachable, Credentials};

/// How often a waiting request is polled.
const POLL: Duration = Duration::from_secs(2);

/// `sshca approvals`'s arguments.
#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    what: What,
    /// Service URL (`https://HOST:PORT`).
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(flatten)]
    creds: Credentials,
}

#[derive(Subcommand, Debug)]
enum What {
    /// The pending requests you may decide (not your own), oldest first.
    List {
        /// JSON (the service's answer) instead of one line per request.
        #[arg(long)]
        json: bool,
    },
    /// Approve request ID (its certificate is issued once enough
    /// approvers approved).
    Approve {
        /// The request id (`sshca request` printed it).
        id: String,
    },
    /// Deny request ID.
    Deny {
        /// The request id.
        id: String,
        /// Why (the requester sees it).
        #[arg(long)]
        reason: String,
    },
}

/// A call to the service: `GET` (no body) or `POST` (JSON body).
async fn call(
    client: &reqwest::Client,
    server: &str,
    path: &str,
    token: Option<&Secret>,
    body: Option<&Value>,
) -> Result<Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let mut req = match body {
        Some(b) => client.post(&url).json(b),
        None => client.get(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.map_err(|e| unreachable(&url, e))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(refusal(status, &v, &url));
    }
    Ok(v)
}

/// Polls request `id` until it is decided: the answer holding the
/// certificate once approved; an error once denied or expired.
pub(crate) async fn wait(
    client: &reqwest::Client,
    server: &str,
    token: Option<&Secret>,
    id: &str,
) -> Result<Value> {
    let path = format!("/v1/approvals/{id}");
    let mut unreachable = 0;
    loop {
        match call(client, server, &path, token, None).await {
            Ok(v) => match v["status"].as_str() {
                Some("approved") => return Ok(v),
                Some("denied") => {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "request {id} was denied by {}: {}",
                            v["decided_by"].as_str().unwrap_or("?"),
                            sshca::core::text::escape(v["reason"].as_str().unwrap_or(""))
                        ),
                    ))
                }
                _ => unreachable = 0,
            },
            // A replica restarting: keep waiting a while.
            Err(e) if e.kind() == ErrorKind::Unavailable && unreachable < 30 => {
                unreachable += 1;
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `sshca approvals`.
pub async fn run(a: ApprovalsArgs) -> Result<ExitCode> {
    let server = a
        .server
        .as_deref()
        .ok_or_else(|| invalid("give --server https://HOST:PORT"))?;
    if !server.starts_with("https://") {
        return Err(invalid(format!(
            "--server {server}: the service is only reachable over https://"
        )));
    }
    let (token, client) = a.creds.open()?;
    let token = token.as_ref();
    match a.what {
        What::List { json } => {
            let v = call(&client, server, "/v1/approvals", token, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(ExitCode::SUCCESS);
            }
            for r in v["approvals"].as_array().into_iter().flatten() {
                let req = &r["request"];
                println!(
                    "{}  policy={}  requester={}  principals={}  approvals={}/{}  expires_at={}",
                    r["request_id"].as_str().unwrap_or("?"),
                    r["policy"].as_str().unwrap_or("?"),
                    r["requester"].as_str().unwrap_or("?"),
                    crate::output::joined(&req["principals"])
                        .unwrap_or_else(|| "(policy's)".into()),
                    r["approvals"].as_array().map_or(0, Vec::len),
                    r["approvals_required"].as_u64().unwrap_or(1),
                    r["expires_at"].as_u64().unwrap_or(0),
                );
            }
        }
        What::Approve { id } => {
            let v = call(
                &client,
                server,
                &format!("/v1/approvals/{id}/approve"),
                token,
                Some(&json!({})),
            )
            .await?;
            match v["status"].as_str() {
                Some("approved") => eprintln!(
                    "Approved request {id}: certificate serial {} issued to {}",
                    v["serial"].as_str().unwrap_or("?"),
                    v["requester"].as_str().unwrap_or("?")
                ),
                _ => eprintln!(
                    "Approved request {id}: {} of {} approvals",
                    v["approvals"].as_array().map_or(0, Vec::len),
                    v["approvals_required"].as_u64().unwrap_or(1)
                ),
            }
        }
        What::Deny { id, reason } => {
            call(
                &client,
                server,
                &format!("/v1/approvals/{id}/deny"),
                token,
                Some(&json!({ "reason": reason })),
            )
            .await?;
            eprintln!("Denied request {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
