//! `sshca host enroll` and `sshca host renew`: a host obtains host
//! certificates for every host key with a join token or its cloud instance
//! identity ([`crate::metadata`]), trusts the user CA,
//! installs the KRL and the sshd drop-in, and renews them by proof of
//! possession from a timer; `sshca config systemd` prints that timer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sshca::signer::{Error, ErrorKind, Result};

use crate::output::invalid;

/// Where the settings to renew with are kept.
const DEFAULT_STATE: &str = "/etc/sshca/host.toml";

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Enroll this host with a join token or, on a cloud join, its
    /// instance identity (read from the metadata service): host
    /// certificates for every host key, the user CA, the KRL and the sshd
    /// drop-in.
    Enroll(EnrollArgs),
    /// Renew the host certificates (when little of their lifetime is
    /// left), refresh the KRL and the user CA, reload sshd on a change.
    Renew(RenewArgs),
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The signing service (`https://HOST:PORT`, its `public_url`).
    #[arg(long)]
    server: String,
    /// PEM certificates to trust for the service (default: the system's).
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// The `[join.NAME]` of the service to enroll with.
    #[arg(long)]
    join: String,
    /// File holding the join token (default: $SSHCA_JOIN_TOKEN); cloud
    /// joins (aws-iid, gcp-iit, azure-msi) need none.
    #[arg(long)]
    join_token_file: Option<PathBuf>,
    /// Directory of the host keys (`ssh_host_*_key.pub`) and sshd's config.
    #[arg(long, default_value = "/etc/ssh")]
    ssh_dir: PathBuf,
    /// The service's CA for user certificates: its keys go to
    /// sshca_user_ca.pub (TrustedUserCAKeys) and its KRL to
    /// sshca_revoked.krl (RevokedKeys).
    #[arg(long)]
    user_ca: Option<String>,
    /// Reload sshd afterwards (after `sshd -t` accepts the result).
    #[arg(long)]
    reload: bool,
    /// sshd's PID file, for --reload (sent SIGHUP).
    #[arg(long, default_value = "/run/sshd.pid")]
    sshd_pid_file: PathBuf,
    /// For --reload: a shell command that reloads sshd instead of the
    /// signal (e.g. `systemctl reload ssh`).
    #[arg(long, value_name = "CMD")]
    reload_command: Option<String>,
    /// Where the settings to renew with are kept (0600).
    #[arg(long, default_value = DEFAULT_STATE)]
    state: PathBuf,
}

#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The settings `sshca host enroll` kept.
    #[arg(long, default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// Renew once no more than this is left: a duration or a share of the
    /// lifetime (default: a third).
    #[arg(long, value_name = "DUR|PCT%")]
    within: Option<String>,
    /// Keep running: renew, then sleep --interval (with ±10 % jitter).
    #[arg(long)]
    daemon: bool,
    /// With --daemon: how long between rounds.
    #[arg(long, default_value = "1h", requires = "daemon")]
    interval: String,
}

/// What `sshca host renew` needs, kept by `sshca host enroll`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostState {
    server: String,
    server_ca: Option<PathBuf>,
    ssh_dir: PathBuf,
    user_ca: Option<String>,
    reload: bool,
    sshd_pid_file: PathBuf,
    #[serde(default)]
    reload_command: Option<String>,
}

/// The host public keys of `dir`: `ssh_host_*_key.pub`, sorted.
fn host_keys(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, &e))?;
    let mut keys: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key.pub"))
        })
        .collect();
    keys.sort();
    if keys.is_empty() {
        return Err(invalid(format!(
            "{}: no host keys (ssh_host_*_key.pub); `ssh-keygen -A` makes them",
            dir.display()
        )));
    }
    Ok(keys)
}

fn drop_in_dir(dir: &Path) -> PathBuf {
    dir.join("sshd_config.d")
}

/// The drop-in: a HostCertificate per key, the user CA and the KRL.
fn drop_in(dir: &Path, keys: &[PathBuf], user_ca: bool) -> String {
    let mut out = String::from(
        "# Written by `sshca host enroll` and `sshca host renew`; replaced by them.\n",
    );
    for k in keys {
        out.push_str(&format!(
            "HostCertificate {}\n",
            crate::files::cert_path_for(&k.with_extension("")).display()
        ));
    }
    if user_ca {
        out.push_str(&format!(
            "TrustedUserCAKeys {}\nRevokedKeys {}\n",
            dir.join("sshca_user_ca.pub").display(),
            dir.join("sshca_revoked.krl").display()
        ));
    }
    out
}

/// Whether `sshd_config` includes the drop-in directory.
fn includes_drop_ins(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("sshd_config")) else {
        return false;
    };
    text.lines().any(|l| {
        let l = l.trim();
        l.to_ascii_lowercase().starts_with("include") && l.contains("sshd_config.d")
    })
}

/// The user CA's keys (`GET /v1/ca/{name}`) into `sshca_user_ca.pub` and
/// its KRL, verified with them, into `sshca_revoked.krl`: `true` when
/// either file changed.
async fn refresh_user_ca(
    client: &reqwest::Client,
    server: &str,
    server_ca: Option<&Path>,
    dir: &Path,
    ca: &str,
) -> Result<bool> {
    let bundle = crate::request::get_text(client, server, &format!("/v1/ca/{ca}")).await?;
    // Only key lines go where sshd reads its trusted user CAs.
    if crate::krl::key_lines(&bundle, &format!("{server}/v1/ca/{ca}"))?.is_empty() {
        return Err(Error::new(
            ErrorKind::BadResponse,
            format!("{server}: CA `{ca}` has no keys"),
        ));
    }
    let ca_file = dir.join("sshca_user_ca.pub");
    let krl_file = dir.join("sshca_revoked.krl");
    let before = (std::fs::read(&ca_file).ok(), std::fs::read(&krl_file).ok());
    if before.0.as_deref() != Some(bundle.as_bytes()) {
        crate::files::write_atomic(&ca_file, bundle.as_bytes())?;
    }
    crate::krl::fetch(server, Some(ca), &krl_file, Some(&ca_file), server_ca).await?;
    let after = (std::fs::read(&ca_file).ok(), std::fs::read(&krl_file).ok());
    Ok(before != after)
}

fn write_drop_in(dir: &Path, keys: &[PathBuf], user_ca: bool) -> Result<bool> {
    let d = drop_in_dir(dir);
    if !d.exists() {
        std::fs::create_dir_all(&d).map_err(|e| Error::io("cannot create", &d, &e))?;
    }
    let path = d.join("50-sshca.conf");
    let text = drop_in(dir, keys, user_ca);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    crate::files::write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

/// `sshd -t` on the result, then `command` (through `sh -c`) or SIGHUP to
/// the running sshd.
fn reload(dir: &Path, pid_file: &Path, command: Option<&str>) -> Result<()> {
    let config = dir.join("sshd_config");
    let out = std::process::Command::new(crate::host::sshd_binary())
        .arg("-t")
        .arg("-f")
        .arg(&config)
        .output()
        .map_err(|e| Error::io("cannot run sshd -t", &config, &e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "sshd -t -f {} refuses the result, so sshd was not reloaded: {}",
                config.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    if let Some(cmd) = command {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .map_err(|e| Error::io("cannot run the reload command", Path::new("/bin/sh"), &e))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the reload command `{}` failed ({}): {}",
                    sshca::core::text::escape(cmd),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        eprintln!("sshca: sshd reloaded");
        return Ok(());
    }
    let pid = std::fs::read_to_string(pid_file)
        .map_err(|e| Error::io("cannot read sshd's PID file", pid_file, &e))?;
    let pid: i32 = pid
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{}: not a PID", pid_file.display())))?;
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| invalid(format!("{}: not a PID", pid_file.display())))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot signal sshd (PID {pid:?})"))
            .with_source(std::io::Error::from(e))
    })?;
    eprintln!("sshca: sshd reloaded");
    Ok(())
}

/// The sshd binary `--reload` checks the config with.
pub(crate) fn sshd_binary() -> PathBuf {
    std::env::var_os("SSHCA_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"))
}

async fn enroll(a: EnrollArgs) -> Result<()> {
    if !a.server.starts_with("https://") {
        return Err(invalid(format!(
            "--server {}: the service is only reachable over https://",
            a.server
        )));
    }
    let server = a.server.trim_end_matches('/');
    let keys = host_keys(&a.ssh_dir)?;
    let mut lines = Vec::new();
    let mut subjects = Vec::new();
    for k in &keys {
        let (key, _) = sshca::read_subject_key(k)?;
        lines.push(
            sshca::core::PublicKey::new(key.clone(), "")
                .to_openssh()
                .map_err(|e| invalid(format!("{}: {e}", k.display())))?,
        );
        subjects.push(key);
    }
    let client = crate::request::https_client(a.server_ca.as_deref(), None)?;
    let about: Value = serde_json::from_str(
        &crate::request::get_text(&client, server, &format!("/v1/join/{}", a.join)).await?,
    )
    .unwrap_or(Value::Null);
    let method = about["method"].as_str().unwrap_or("?");
    let proof = if method == "token" {
        let token = match &a.join_token_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Error::io("cannot read the join token file", p, &e))?,
            None => std::env::var("SSHCA_JOIN_TOKEN").unwrap_or_default(),
        };
        let token = sshca::signer::Secret::new(token.trim().to_owned());
        if token.expose().is_empty() {
            return Err(invalid(
                "no join token: give --join-token-file or set SSHCA_JOIN_TOKEN",
            ));
        }
        json!({"token": token.expose()})
    } else {
        if a.join_token_file.is_some() {
            return Err(invalid(format!(
                "join `{}` of {server} takes method `{method}` (the instance's cloud identity), \
                 not a join token: drop --join-token-file",
                a.join
            )));
        }
        crate::metadata::proof(method, about["audience"].as_str()).await?
    };
    let url = format!("{server}/v1/join/{}", a.join);
    let body = json!({"public_keys": lines, "proof": proof});
    drop(proof);
    let v = crate::request::post_json(&client, &url, &body, &url).await?;
    drop(body);
    let certs: Vec<&str> = v["certificates"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if certs.len() != keys.len() {
        return Err(Error::new(
            ErrorKind::BadResponse,
            format!(
                "{url}: {} certificates for {} keys",
                certs.len(),
                keys.len()
            ),
        ));
    }
    // Every certificate checked before any file is written.
    for ((line, subject), k) in certs.iter().zip(&subjects).zip(&keys) {
        let c =
            crate::request::certified_line(line, subject).map_err(|e| e.context(k.display()))?;
        if c.cert_type() != sshca::core::CertType::Host {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "{url}: the certificate for {} is not a host certificate",
                    k.display()
                ),
            ));
        }
    }
    for (line, k) in certs.iter().zip(&keys) {
        let path = crate::files::cert_path_for(&k.with_extension(""));
        crate::files::write_atomic(&path, format!("{}\n", line.trim_end()).as_bytes())?;
        eprintln!("sshca: {}", path.display());
    }
    if let Some(ca) = &a.user_ca {
        refresh_user_ca(&client, server, a.server_ca.as_deref(), &a.ssh_dir, ca).await?;
    }
    write_drop_in(&a.ssh_dir, &keys, a.user_ca.is_some())?;
    if !includes_drop_ins(&a.ssh_dir) {
        eprintln!(
            "sshca: warning: {} has no `Include {}/*.conf`: sshd will not read the drop-in",
            a.ssh_dir.join("sshd_config").display(),
            drop_in_dir(&a.ssh_dir).display()
        );
    }
    let state = HostState {
        server: server.to_owned(),
        server_ca: a
            .server_ca
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        ssh_dir: std::path::absolute(&a.ssh_dir).unwrap_or_else(|_| a.ssh_dir.clone()),
        user_ca: a.user_ca.clone(),
        reload: a.reload,
        sshd_pid_file: a.sshd_pid_file.clone(),
        reload_command: a.reload_command.clone(),
    };
    let text = toml::to_string(&state)
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode the state").with_source(e))?;
    if let Some(parent) = a.state.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, &e))?;
    }
    crate::files::write_atomic_with(&a.state, text.as_bytes(), 0o600, true)?;
    if a.reload {
        reload(&a.ssh_dir, &a.sshd_pid_file, a.reload_command.as_deref())?;
    }
    eprintln!(
        "sshca: enrolled with `{}`: {} host certificate(s), principals {}",
        a.join,
        certs.len(),
        crate::output::joined(&v["principals"]).unwrap_or_default()
    );
    Ok(())
}

/// One round of renewal: `true` when anything changed.
async fn renew_round(st: &HostState, within: Option<&str>) -> Result<bool> {
    let client = crate::request::https_client(st.server_ca.as_deref(), None)?;
    let keys = host_keys(&st.ssh_dir)?;
    let mut changed = false;
    for k in &keys {
        let private = k.with_extension("");
        changed |= crate::renew::renew_one(&client, &st.server, &private, within).await?;
    }
    if let Some(ca) = &st.user_ca {
        changed |= refresh_user_ca(
            &client,
            &st.server,
            st.server_ca.as_deref(),
            &st.ssh_dir,
            ca,
        )
        .await?;
    }
    changed |= write_drop_in(&st.ssh_dir, &keys, st.user_ca.is_some())?;
    if changed && st.reload {
        reload(&st.ssh_dir, &st.sshd_pid_file, st.reload_command.as_deref())?;
    }
    Ok(changed)
}

async fn renew(a: RenewArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.state).map_err(|e| {
        Error::io(
            "cannot read the host state (run `sshca host enroll` first)",
            &a.state,
            &e,
        )
    })?;
    let st: HostState = toml::from_str(&text)
        .map_err(|e| invalid(format!("{}: {}", a.state.display(), e.message())))?;
    if !a.daemon {
        renew_round(&st, a.within.as_deref()).await?;
        return Ok(());
    }
    let every = sshca::core::validity::parse_ttl(&a.interval)
        .map_err(|e| invalid(format!("--interval {}: {e}", a.interval)))?
        .max(1);
    loop {
        if let Err(e) = renew_round(&st, a.within.as_deref()).await {
            eprintln!(
                "sshca: renewal failed (trying again next round): {}",
                e.report()
            );
        }
        let jitter = (sshca::core::random_serial() % 2001) as f64 / 10_000.0 - 0.1;
        let secs = (every as f64 * (1.0 + jitter)).max(1.0);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
}

/// `sshca host`.
pub async fn run(cmd: HostCmd) -> Result<()> {
    match cmd {
        HostCmd::Enroll(a) => enroll(a).await,
        HostCmd::Renew(a) => renew(a).await,
    }
}

/// `sshca config systemd`: a service and timer that run `sshca host renew`.
pub fn systemd(state: &Path) -> Result<String> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/sshca".into());
    Ok(format!(
        "# /etc/systemd/system/sshca-host-renew.service\n\
         [Unit]\n\
         Description=Renew this host's SSH certificates (sshca)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exe} host renew --state {state}\n\
         \n\
         # /etc/systemd/system/sshca-host-renew.timer\n\
         [Unit]\n\
         Description=Renew this host's SSH certificates (sshca) hourly\n\
         \n\
         [Timer]\n\
         OnBootSec=5min\n\
         OnUnitActiveSec=1h\n\
         RandomizedDelaySec=10min\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        state = state.display()
    ))
}
