//! `sshca login`: single sign-on at the service's OpenID Connect issuer to
//! a short-lived certificate in the person's ssh-agent — the settings from
//! `GET /v1/login`, the sign-in ([`flow`]), a fresh Ed25519 key made in
//! memory, `POST /v1/sign/{policy}` with the ID token, the key and
//! certificate into the agent with a lifetime ([`agent`]), the server's CA
//! keys cached for `--check` ([`cache`]). `sshca config ssh` is in
//! [`ssh_config`].

mod agent;
mod cache;
mod flow;
pub(crate) mod ssh_config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use sshca::core::ssh_key::private::{Ed25519Keypair, KeypairData};
use sshca::core::ssh_key::{LineEnding, PrivateKey};
use sshca::core::validity::parse_ttl;
use sshca::signer::{Error, ErrorKind, Result};

use crate::output::{invalid, now};
use crate::request::{ask, https_client, https_client_with, Outcome, Roots};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The signing service (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// PEM certificates to trust for the service (default: the system's).
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// The issuer to sign in at, by its name in the service's config
    /// (needed when the service lists several).
    #[arg(long)]
    oidc: Option<String>,
    /// The policy to sign under (default: the issuer's `login_policy`).
    #[arg(long)]
    policy: Option<String>,
    /// Sign in on another device (the device authorization grant) instead
    /// of a browser on this machine.
    #[arg(long, conflicts_with_all = ["no_browser", "listen_port"])]
    device: bool,
    /// Print the sign-in URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// The loopback port the browser is sent back to (default: any free
    /// one; some issuers want the redirect URI registered with its port).
    #[arg(long)]
    listen_port: Option<u16>,
    /// PEM certificates to trust for the issuer, besides the system's.
    #[arg(long)]
    issuer_ca: Option<PathBuf>,
    /// Also write the key to PATH (0600), PATH.pub and PATH-cert.pub.
    #[arg(long, value_name = "PATH")]
    write: Option<PathBuf>,
    /// With --write: replace existing files.
    #[arg(long, requires = "write")]
    force: bool,
    /// Ask for a certificate valid this long (bounded by the policy),
    /// e.g. `8h`.
    #[arg(long, value_name = "DUR")]
    lifetime: Option<String>,
    /// No sign-in: exit 0 when the agent holds a certificate from a CA of
    /// this server (cached at the last login) valid for at least
    /// --min-valid, else 1. No network; meant for ssh_config `Match exec`.
    #[arg(long, conflicts_with_all = ["device", "no_browser", "write", "lifetime", "oidc", "policy"])]
    check: bool,
    /// With --check: how long the certificate must still be valid.
    #[arg(long, value_name = "DUR", default_value = "5m", requires = "check")]
    min_valid: String,
}

impl LoginArgs {
    /// `--check`: runs before every `ssh`, so it starts as little as it can.
    pub fn is_check(&self) -> bool {
        self.check
    }
}

fn check_server(server: &str) -> Result<()> {
    if !server.starts_with("https://") {
        return Err(invalid(format!(
            "--server {server}: the service is only reachable over https://"
        )));
    }
    Ok(())
}

/// The service's login settings.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoginSettings {
    issuers: Vec<flow::IssuerSettings>,
    #[serde(default)]
    pub user_cas: Vec<String>,
    #[serde(default)]
    pub host_cas: Vec<String>,
}

pub(crate) async fn settings(client: &reqwest::Client, server: &str) -> Result<LoginSettings> {
    let text = crate::request::get_text(client, server, "/v1/login").await?;
    serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::BadResponse,
            format!("{server}/v1/login: not the service's login settings: {e}"),
        )
    })
}

/// The CA keys (OpenSSH lines) of the named CAs of `server`.
pub(crate) async fn ca_keys(
    client: &reqwest::Client,
    server: &str,
    cas: &[String],
    query: &str,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for ca in cas {
        let text = crate::request::get_text(client, server, &format!("/v1/ca/{ca}{query}")).await?;
        out.push((ca.clone(), text));
    }
    Ok(out)
}

/// `sshca login`.
pub async fn run(a: LoginArgs) -> Result<ExitCode> {
    check_server(&a.server)?;
    if a.check {
        return check(&a).await;
    }
    let validity = a
        .lifetime
        .as_deref()
        .map(|l| {
            parse_ttl(l).map_err(|e| invalid(format!("--lifetime {l}: {e}")))?;
            Ok::<_, Error>(format!("+{l}"))
        })
        .transpose()?;
    let sock = agent::socket();
    if sock.is_none() && a.write.is_none() {
        return Err(invalid(
            "no ssh-agent ($SSH_AUTH_SOCK is not set) and no --write PATH: the certificate would have nowhere to go; start an agent (eval $(ssh-agent)) or give --write",
        ));
    }
    if let Some(path) = &a.write {
        if !a.force {
            for p in write_paths(path) {
                if p.exists() {
                    return Err(invalid(format!(
                        "{} already exists (--force replaces it)",
                        p.display()
                    )));
                }
            }
        }
    }
    let client = https_client(a.server_ca.as_deref(), None)?;
    let settings = settings(&client, &a.server).await?;
    let issuer = pick_issuer(&settings, a.oidc.as_deref(), &a.server)?;
    let policy = a
        .policy
        .clone()
        .or_else(|| issuer.policy.clone())
        .ok_or_else(|| {
            invalid(format!(
                "issuer `{}` names no `login_policy` on the service: give --policy",
                issuer.name
            ))
        })?;
    let issuer_client = https_client_with(
        a.issuer_ca
            .as_deref()
            .map_or(Roots::System, |p| Roots::Adding(p, "--issuer-ca")),
        None,
    )?;
    let id_token = flow::id_token(
        issuer,
        &flow::Http(issuer_client),
        &flow::FlowOptions {
            device: a.device,
            no_browser: a.no_browser,
            listen_port: a.listen_port,
        },
    )
    .await?;

    let pair = Ed25519Keypair::random(&mut rand_core::OsRng);
    let key = PrivateKey::new(
        KeypairData::Ed25519(pair.clone()),
        format!("sshca login {}", issuer.name),
    )
    .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot make a key: {e}")))?;
    let line = key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode the key: {e}")))?;
    let mut body = json!({ "public_key": line });
    if let Some(v) = validity {
        body["validity"] = json!(v);
    }
    let answer = match ask(&client, &a.server, &policy, Some(&id_token), &body).await {
        Ok(Outcome::Issued(v)) => v,
        Ok(Outcome::Refused(e)) => return Err(e.context(format!("policy `{policy}`"))),
        Err(why) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{}: {why}", a.server),
            ))
        }
    };
    drop(id_token);
    let (text, cert) = crate::request::certified(&answer, key.public_key().key_data())?;
    // The CA keys `--check` trusts: every user CA of the server.
    let mut keys = Vec::new();
    for (ca, bundle) in ca_keys(&client, &a.server, &settings.user_cas, "").await? {
        keys.extend(crate::krl::key_lines(
            &bundle,
            &format!("{}/v1/ca/{ca}", a.server),
        )?);
    }
    if !keys.contains(cert.signature_key()) {
        eprintln!(
            "sshca: warning: the certificate's CA key is not among the server's user CA keys; `sshca login --check` will not count it"
        );
    }
    cache::store(&a.server, &keys)?;
    let t = now();
    let remaining = cert.valid_before().saturating_sub(t);
    if remaining == 0 {
        return Err(Error::new(
            ErrorKind::BadResponse,
            "the service issued an expired certificate",
        ));
    }
    let lifetime = u32::try_from(remaining).unwrap_or(u32::MAX);
    if let Some(path) = &a.write {
        write_files(path, &key, text)?;
    }
    if let Some(sock) = &sock {
        agent::add(sock, &pair, text, lifetime, cert.key_id()).await?;
    }
    let summary = crate::output::issued_summary(&cert);
    let mut places = Vec::new();
    if sock.is_some() {
        places.push(format!(
            "added to the agent for {}",
            crate::output::human(remaining)
        ));
    }
    if let Some(p) = &a.write {
        places.push(format!("written to {}", p.display()));
    }
    eprintln!(
        "sshca: signed in at `{}` under policy `{policy}`: {summary}; {}",
        issuer.name,
        places.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn pick_issuer<'a>(
    s: &'a LoginSettings,
    name: Option<&str>,
    server: &str,
) -> Result<&'a flow::IssuerSettings> {
    let names = || {
        s.issuers
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => s.issuers.iter().find(|i| i.name == n).ok_or_else(|| {
            invalid(format!(
                "--oidc {n}: {server} offers no such issuer for login (offered: {})",
                if s.issuers.is_empty() {
                    "none".into()
                } else {
                    names()
                }
            ))
        }),
        None => match s.issuers.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{server} offers no issuer for login (no [oidc.NAME] table has a client_id)"
                ),
            )),
            _ => Err(invalid(format!(
                "{server} offers several issuers for login ({}): pick one with --oidc",
                names()
            ))),
        },
    }
}

fn write_paths(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [path.to_owned(), with(".pub"), with("-cert.pub")]
}

fn write_files(path: &Path, key: &PrivateKey, cert: &str) -> Result<()> {
    let [private, public, cert_path] = write_paths(path);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode the key: {e}")))?;
    let public_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode the key: {e}")))?;
    crate::files::write_atomic_with(&private, pem.as_bytes(), 0o600, true)?;
    crate::files::write_atomic(&public, format!("{public_line}\n").as_bytes())?;
    crate::files::write_atomic(&cert_path, format!("{}\n", cert.trim_end()).as_bytes())?;
    Ok(())
}

/// `--check`: no network; the agent and the cached CA keys only.
async fn check(a: &LoginArgs) -> Result<ExitCode> {
    let min = parse_ttl(&a.min_valid)
        .map_err(|e| invalid(format!("--min-valid {}: {e}", a.min_valid)))?;
    let Some(cas) = cache::load(&a.server)? else {
        return Ok(ExitCode::from(1));
    };
    let Some(sock) = agent::socket() else {
        return Ok(ExitCode::from(1));
    };
    let Ok(certs) = agent::certificates(&sock).await else {
        return Ok(ExitCode::from(1));
    };
    let t = now();
    let good = certs.iter().any(|c| {
        cas.contains(c.signature_key())
            && c.valid_after() <= t
            && c.valid_before() >= t.saturating_add(min)
            && c.cert_type().is_user()
    });
    Ok(if good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
