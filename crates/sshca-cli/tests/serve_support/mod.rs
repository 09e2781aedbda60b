//! What the signing-service tests share: TLS material, tokens from
//! `sshca token new`, a running `sshca serve`, an HTTPS client, a config.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
pub use sshca_testkit::tls::{code, message};

/// TLS material: a server CA and certificate, a client CA and client
/// identities, and one client identity from a CA the server does not trust.
pub struct Pki {
    pub tls_ca: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    Pki {
        tls_ca: sshca_testkit::tls::pki(dir),
    }
}

/// A fresh token from `sshca token new NAME`: (token, config lines).
pub fn token(name: &str) -> (String, String) {
    let out = run(sshca().args(["token", "new", name]));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let lines = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !lines.contains(&token),
        "the token itself reached the config lines"
    );
    (token, lines)
}

/// A running `sshca serve`; killed when dropped.
pub struct Service {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    pub fn start(dir: &Path, config: &Path) -> Service {
        Self::start_with(dir, config, |_| {})
    }

    pub fn start_with(dir: &Path, config: &Path, configure: impl FnOnce(&mut Command)) -> Service {
        let ready = dir.join(format!("ready-{}.json", rand_suffix()));
        let log = dir.join(format!("serve-{}.log", rand_suffix()));
        let mut cmd = sshca();
        cmd.arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let v: Value = serde_json::from_str(&text).unwrap();
                let url = v["url"].as_str().unwrap().to_owned();
                assert!(url.starts_with("https://127.0.0.1:"), "{url}");
                return Service { child, url, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "sshca serve exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "sshca serve did not get ready");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        run(Command::new("kill").args([sig, &self.child.id().to_string()]));
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An HTTPS client trusting the test TLS CA, optionally with a client
/// certificate.
pub fn client(pki: &Pki, identity: Option<&Path>) -> reqwest::Client {
    sshca_testkit::tls::client(&pki.tls_ca, identity)
}

pub fn pubkey(dir: &Path, name: &str) -> String {
    let k = keygen(dir, name, "ed25519", None);
    std::fs::read_to_string(k.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// POST /v1/sign/{policy}: (status, body, Retry-After).
pub async fn sign(
    c: &reqwest::Client,
    s: &Service,
    policy: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value, Option<String>) {
    sshca_testkit::tls::sign(c, &s.url, policy, token, body).await
}

/// GET `path`: (status, body text).
pub async fn get(
    c: &reqwest::Client,
    s: &Service,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    sshca_testkit::tls::get(c, &s.url, path, token).await
}

pub struct Setup {
    pub _d: tempfile::TempDir,
    pub dir: PathBuf,
    pub pki: Pki,
    pub config: PathBuf,
    pub ci: String,
    pub admin: String,
    pub other: String,
    pub user_ca: PathBuf,
}

/// A config with a file CA, the `ci` policy (tokens `ci` and the client
/// certificate `deploy.example.com`), tokens `ci`, `admin`, `other`.
pub fn setup(server_extra: &str, ca_key: Option<String>) -> Setup {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_owned();
    let pki = pki(&dir);
    let user_ca = keygen(&dir, "user_ca", "ed25519", None);
    let (ci, ci_lines) = token("ci");
    let (admin, admin_lines) = token("admin");
    let (other, other_lines) = token("other");
    std::fs::create_dir(dir.join("data")).unwrap();
    let key = ca_key.unwrap_or_else(|| format!("file:{}", user_ca.display()));
    let config = dir.join("sshca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
tls_cert = "tls.pem"
tls_key = "tls.key"
client_ca = "client-ca.pem"
data_dir = "data"
admins = ["admin"]
max_body = 4096
store_timeout = "1s"
{server_extra}

{ci_lines}
{admin_lines}
{other_lines}

[ca.users]
key = "{key}"

[policy.ci]
ca = "users"
cert_type = "user"
requesters = ["ci", "admin", "deploy.example.com"]
allowed_valid_principals = ["deploy", "alice", "{me}"]
default_valid_principals = ["deploy"]
ttl = "1h"
max_ttl = "8h"
key_id = "{{requester}}"
"#,
            me = user()
        ),
    )
    .unwrap();
    Setup {
        _d: d,
        dir,
        pki,
        config,
        ci,
        admin,
        other,
        user_ca,
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn store_rows(config: &Path, extra: &[&str]) -> Vec<Value> {
    let out = run(sshca()
        .arg("--config")
        .arg(config)
        .args(["certs", "list", "--json", "--limit", "10000"])
        .args(extra));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}
