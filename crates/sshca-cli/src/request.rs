//! `sshca request`: certificates from an `sshca serve` service, written
//! where `sshca sign` (and ssh-keygen) would write them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use sshca::core::options::OptionsBuilder;
use sshca::core::{CertOptions, OptionValue};
use sshca::signer::{Error, ErrorKind, Result, Secret};

use crate::output::invalid;

/// How a client of the service authenticates, and which CA its TLS
/// certificate chains to.
#[derive(Args, Debug, Clone)]
pub struct Credentials {
    /// File holding the bearer token (default: $SSHCA_TOKEN).
    #[arg(long, global = true, conflicts_with = "id_token_file")]
    pub token_file: Option<PathBuf>,
    /// File holding an OIDC ID token (a JWT, e.g. a CI job's), sent as the
    /// bearer token (default: $SSHCA_ID_TOKEN).
    #[arg(long, global = true)]
    pub id_token_file: Option<PathBuf>,
    /// PEM file with a client certificate and its private key.
    #[arg(long, global = true)]
    pub identity: Option<PathBuf>,
    /// PEM certificates to trust for the service (default: the system's).
    #[arg(long, global = true)]
    pub server_ca: Option<PathBuf>,
}

impl Credentials {
    /// The bearer credential and the HTTPS client: an error when there is
    /// neither a token nor a client certificate.
    pub(crate) fn open(&self) -> Result<(Option<Secret>, reqwest::Client)> {
        let token = self.token()?;
        if token.is_none() && self.identity.is_none() {
            return Err(invalid(
                "no credential: give --token-file or --id-token-file, set SSHCA_TOKEN or SSHCA_ID_TOKEN, or give --identity (a client certificate)",
            ));
        }
        let client = https_client(self.server_ca.as_deref(), self.identity.as_deref())?;
        Ok((token, client))
    }

    /// The bearer credential: `--token-file`, `--id-token-file`, else
    /// `$SSHCA_TOKEN`, else `$SSHCA_ID_TOKEN`.
    fn token(&self) -> Result<Option<Secret>> {
        let a = self;
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path).map_err(|e| Error::io(what, path, &e))
        };
        let text = match (&a.token_file, &a.id_token_file) {
            (Some(path), _) => Some(read(path, "cannot read the token file")?),
            (None, Some(path)) => Some(read(path, "cannot read the ID token file")?),
            (None, None) => std::env::var("SSHCA_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| std::env::var("SSHCA_ID_TOKEN").ok()),
        };
        Ok(text
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(Secret::new))
    }
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RequestArgs {
    /// Service URL (`https://HOST:PORT`); repeat to fail over to the next
    /// one on connection errors and 503.
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// Policy to sign under.
    #[arg(long)]
    policy: String,
    /// Principals, comma-separated.
    #[arg(short = 'n')]
    principals: Option<String>,
    /// Validity interval (ssh-keygen -V syntax).
    #[arg(short = 'V', allow_hyphen_values = true)]
    validity: Option<String>,
    /// Certificate option (ssh-keygen -O syntax); repeatable.
    #[arg(short = 'O', allow_hyphen_values = true)]
    options: Vec<String>,
    /// Key identifier.
    #[arg(short = 'I')]
    key_id: Option<String>,
    /// Ask for host certificates.
    #[arg(short = 'h')]
    host: bool,
    #[command(flatten)]
    creds: Credentials,
    /// Under a policy that needs approval: wait for it (polling), then
    /// write the certificate. Without it, a pending request's id is
    /// printed and the exit status is 3.
    #[arg(long)]
    wait: bool,
    /// Quiet: no report line per certificate.
    #[arg(short = 'q')]
    quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Public keys (or private keys with KEY.pub beside them).
    #[arg(required = true)]
    keys: Vec<PathBuf>,
}

fn pem_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    invalid(format!("{}: {what}: {e}", path.display()))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(&format!("cannot read the {what}"), path, &e))
}

/// Where a client's trust roots come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Roots<'a> {
    /// The system's.
    System,
    /// Only those of a PEM file (`flag` names it in errors).
    Only(&'a Path, &'a str),
    /// The system's and those of a PEM file.
    #[cfg_attr(not(feature = "login"), allow(dead_code))]
    Adding(&'a Path, &'a str),
}

impl<'a> Roots<'a> {
    /// `path`'s roots alone when given, else the system's.
    pub(crate) fn only_or_system(path: Option<&'a Path>, flag: &'a str) -> Self {
        path.map_or(Roots::System, |p| Roots::Only(p, flag))
    }
}

fn tls_config(roots_from: Roots<'_>, identity: Option<&Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if matches!(roots_from, Roots::System | Roots::Adding(..)) {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    }
    if let Roots::Only(path, flag) | Roots::Adding(path, flag) = roots_from {
        let bytes = read(path, &format!("CA certificates ({flag})"))?;
        let mut n = 0;
        for c in rustls_pemfile::certs(&mut bytes.as_slice()) {
            let c = c.map_err(|e| pem_err(path, flag, e))?;
            roots.add(c).map_err(|e| pem_err(path, flag, e))?;
            n += 1;
        }
        if n == 0 {
            return Err(pem_err(path, flag, "no CERTIFICATE block"));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(ErrorKind::Internal, "TLS setup").with_source(e))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let bytes = read(path, "client identity (--identity)")?;
            let certs = rustls_pemfile::certs(&mut bytes.as_slice())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| pem_err(path, "--identity", e))?;
            if certs.is_empty() {
                return Err(pem_err(path, "--identity", "no CERTIFICATE block"));
            }
            let key = rustls_pemfile::private_key(&mut bytes.as_slice())
                .map_err(|e| pem_err(path, "--identity", e))?
                .ok_or_else(|| pem_err(path, "--identity", "no PRIVATE KEY block"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| pem_err(path, "--identity", e))?
        }
    };
    Ok(config)
}

/// The HTTPS client of the commands that talk to `sshca serve`: TLS 1.2+,
/// the given trust roots (else the system's), an optional client
/// certificate, no redirects.
pub(crate) fn https_client(
    server_ca: Option<&Path>,
    identity: Option<&Path>,
) -> Result<reqwest::Client> {
    https_client_with(Roots::only_or_system(server_ca, "--server-ca"), identity)
}

/// [`https_client`] with the trust roots spelled out; plain `http://` URLs
/// are refused.
pub(crate) fn https_client_with(
    roots: Roots<'_>,
    identity: Option<&Path>,
) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(roots, identity)?)
        .https_only(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot set up the HTTPS client").with_source(e)
        })
}

fn option_map(opts: &CertOptions) -> BTreeMap<String, String> {
    opts.iter()
        .map(|(k, v)| {
            let v = match v {
                OptionValue::Flag => String::new(),
                OptionValue::Text(t) => t.clone(),
                OptionValue::Raw(r) => String::from_utf8_lossy(r).into_owned(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The service's answer that ends the request (anything but a reason to
/// try the next server).
pub(crate) enum Outcome {
    /// The service's answer.
    Issued(Value),
    /// A refusal, naming the status, code and message.
    Refused(Error),
}

/// `POST {server}/v1/sign/{policy}`: the answer, a refusal, or (`Err`) why
/// the next server should be tried.
pub(crate) async fn ask(
    client: &reqwest::Client,
    server: &str,
    policy: &str,
    token: Option<&Secret>,
    body: &Value,
) -> std::result::Result<Outcome, String> {
    let url = format!("{}/v1/sign/{}", server.trim_end_matches('/'), policy);
    let mut req = client.post(&url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(Outcome::Issued(v));
    }
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(format!(
            "{status}: {}: {}",
            v["error"]["code"].as_str().unwrap_or("?"),
            sshca::core::text::escape(v["error"]["message"].as_str().unwrap_or("(no message)"))
        ));
    }
    Ok(Outcome::Refused(refusal(status, &v, server)))
}

/// An error and its causes on one line (a cause already in the text is not
/// repeated).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        src = s.source();
    }
    msg
}

/// The certificate of a service's answer (`{"certificate": LINE}`), which
/// must certify `key` (what is written or added is a certificate of the
/// key that was sent): its line and the certificate.
pub(crate) fn certified<'v>(
    answer: &'v Value,
    key: &sshca::core::KeyData,
) -> Result<(&'v str, sshca::core::Certificate)> {
    let line = answer["certificate"].as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::BadResponse,
            "the service answered without a certificate",
        )
    })?;
    Ok((line, certified_line(line, key)?))
}

/// A certificate line the service sent, which must certify `key`.
pub(crate) fn certified_line(
    line: &str,
    key: &sshca::core::KeyData,
) -> Result<sshca::core::Certificate> {
    let cert = sshca::core::Certificate::from_openssh(line).map_err(|e| {
        Error::new(
            ErrorKind::BadResponse,
            format!("the service sent an unreadable certificate: {e}"),
        )
    })?;
    if cert.public_key() != key {
        return Err(Error::new(
            ErrorKind::BadResponse,
            "the service certified another key",
        ));
    }
    Ok(cert)
}

/// `POST {url}` with a JSON body: the JSON answer, or the service's
/// refusal (led by `what`).
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    what: &str,
) -> Result<Value> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(refusal(status, &v, what));
    }
    Ok(v)
}

/// The error of a request that did not reach the service at `url`.
pub(crate) fn unreachable(url: &str, e: reqwest::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("{url}: cannot reach the service"),
    )
    .with_source(e)
}

/// The error of a service's refusal (`{"error": {"code", "message"}}`),
/// its kind from the status, its message led by `what`.
pub(crate) fn refusal(status: reqwest::StatusCode, v: &Value, what: &str) -> Error {
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        422 => ErrorKind::Policy,
        429 => ErrorKind::Throttled,
        s if s >= 500 => ErrorKind::Unavailable,
        _ => ErrorKind::InvalidInput,
    };
    Error::new(
        kind,
        format!(
            "{what}: {} {}: {}",
            status.as_u16(),
            v["error"]["code"].as_str().unwrap_or("?"),
            sshca::core::text::escape(v["error"]["message"].as_str().unwrap_or("(no message)"))
        ),
    )
}

/// `sshca request`: exit status 3 when a request waits for approval
/// (without `--wait`).
pub async fn run(a: RequestArgs) -> Result<ExitCode> {
    for s in &a.servers {
        if !s.starts_with("https://") {
            return Err(invalid(format!(
                "--server {s}: the service is only reachable over https://"
            )));
        }
    }
    let (token, client) = a.creds.open()?;
    let mut opts = OptionsBuilder::empty();
    opts.apply_all(a.options.iter().map(String::as_str))?;
    let (crit, ext) = opts.build()?;
    let cleared = a.options.iter().any(|o| o.eq_ignore_ascii_case("clear"));
    for key_path in &a.keys {
        let (key, comment) = sshca::read_subject_key(key_path)?;
        let line = sshca::core::PublicKey::new(key.clone(), comment)
            .to_openssh()
            .map_err(|e| invalid(format!("{}: {e}", key_path.display())))?;
        let mut body = json!({ "public_key": line });
        if let Some(p) = &a.principals {
            body["principals"] = json!(p.split(',').collect::<Vec<_>>());
        }
        if let Some(v) = &a.validity {
            body["validity"] = json!(v);
        }
        if let Some(k) = &a.key_id {
            body["key_id"] = json!(k);
        }
        if a.host {
            body["cert_type"] = json!("host");
        }
        if !crit.is_empty() {
            body["critical_options"] = json!(option_map(&crit));
        }
        if !ext.is_empty() || cleared {
            body["extensions"] = json!(option_map(&ext));
        }
        let mut failures = Vec::new();
        let mut issued = None;
        for server in &a.servers {
            match ask(&client, server, &a.policy, token.as_ref(), &body).await {
                Ok(Outcome::Issued(v)) if v["status"] == "pending" => {
                    let id = v["request_id"].as_str().unwrap_or_default().to_owned();
                    if !a.wait {
                        println!("{id}");
                        eprintln!(
                            "sshca: {}: pending: policy `{}` needs approval (request {id}); \
                             rerun with --wait, or ask an approver to run \
                             `sshca approvals approve {id}`",
                            key_path.display(),
                            a.policy
                        );
                        return Ok(ExitCode::from(3));
                    }
                    if !a.quiet {
                        eprintln!(
                            "sshca: {}: waiting for approval of request {id}",
                            key_path.display()
                        );
                    }
                    let done = crate::approvals::wait(&client, server, token.as_ref(), &id)
                        .await
                        .map_err(|e| e.context(key_path.display()))?;
                    issued = Some(done);
                    break;
                }
                Ok(Outcome::Issued(v)) => {
                    issued = Some(v);
                    break;
                }
                Ok(Outcome::Refused(e)) => return Err(e.context(key_path.display())),
                Err(why) => {
                    if !a.quiet && a.servers.len() > 1 {
                        eprintln!("sshca: {server}: {why}; trying the next server");
                    }
                    failures.push(format!("{server}: {why}"));
                }
            }
        }
        let Some(v) = issued else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: no server could issue a certificate: {}",
                    key_path.display(),
                    failures.join("; ")
                ),
            ));
        };
        let (cert, parsed) = certified(&v, &key)?;
        let out = crate::files::cert_path_for(key_path);
        crate::files::write_atomic(&out, format!("{}\n", cert.trim_end()).as_bytes())?;
        if !a.quiet {
            for c in v["changes"].as_array().into_iter().flatten() {
                eprintln!(
                    "sshca: {}: policy `{}`: {}",
                    key_path.display(),
                    a.policy,
                    c.as_str().unwrap_or_default()
                );
            }
            eprintln!(
                "Signed {} key {}: {}",
                parsed.cert_type(),
                out.display(),
                crate::output::issued_summary(&parsed)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET {server}{path}`: the body, or an error naming the status.
pub(crate) async fn get_text(client: &reqwest::Client, server: &str, path: &str) -> Result<String> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(&url, e))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("{url}: the answer broke off"),
        )
        .with_source(e)
    })?;
    if !status.is_success() {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(crate::request::refusal(status, &v, &url));
    }
    Ok(text)
}
