//! What the HTTP API tests share: TLS material (a server certificate,
//! client identities), tokens, a config with a file CA, the service running
//! inside the test on 127.0.0.1 with an OS-chosen port (over real TLS),
//! and an HTTPS client.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

pub mod receiver;

pub use sshca_testkit::cli::{keygen, run, user};
pub use sshca_testkit::tls::{client, code, message, pki};

/// A fresh token and its `[token.NAME]` table.
pub fn token(name: &str) -> (String, String) {
    let token = sshca_server::new_token();
    let table = format!(
        "[token.{name}]\nsha256 = \"{}\"\n",
        sshca_server::token_hash(&token)
    );
    (token, table)
}

/// A test's directory, config and credentials.
pub struct Setup {
    pub _d: tempfile::TempDir,
    pub dir: PathBuf,
    pub tls_ca: PathBuf,
    pub config: PathBuf,
    pub ci: String,
    pub admin: String,
    pub other: String,
    pub user_ca: PathBuf,
}

impl Setup {
    /// The CA's public key line.
    pub fn ca_line(&self) -> String {
        std::fs::read_to_string(self.user_ca.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A fresh Ed25519 public key line (ssh-keygen).
    pub fn pubkey(&self, name: &str) -> String {
        pubkey(&self.dir, name)
    }

    /// An HTTPS client trusting the test TLS CA, optionally with one of the
    /// client identities (`deploy.pem`, ...).
    pub fn client(&self, identity: Option<&str>) -> reqwest::Client {
        client(&self.tls_ca, identity.map(|f| self.dir.join(f)).as_deref())
    }

    /// The store's path (SQLite under `data/`).
    pub fn db(&self) -> PathBuf {
        self.dir.join("data/sshca.db")
    }
}

/// A fresh Ed25519 public key line in `dir` (ssh-keygen).
pub fn pubkey(dir: &Path, name: &str) -> String {
    let k = keygen(dir, name, "ed25519", None);
    std::fs::read_to_string(k.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A config with a file CA `users`, the `ci` policy (tokens `ci`, `admin`
/// and the client certificate `deploy.example.com`), tokens `ci`, `admin`,
/// `other`; `server_extra` goes into `[server]`, `tables` after the rest.
pub fn setup(server_extra: &str, tables: &str) -> Setup {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_owned();
    let tls_ca = pki(&dir);
    let user_ca = keygen(&dir, "user_ca", "ed25519", None);
    let (ci, ci_lines) = token("ci");
    let (admin, admin_lines) = token("admin");
    let (other, other_lines) = token("other");
    std::fs::create_dir(dir.join("data")).unwrap();
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
key = "file:{key}"

[policy.ci]
ca = "users"
cert_type = "user"
requesters = ["ci", "admin", "deploy.example.com"]
allowed_valid_principals = ["deploy", "alice", "{me}"]
default_valid_principals = ["deploy"]
ttl = "1h"
max_ttl = "8h"
key_id = "{{requester}}"

{tables}
"#,
            key = user_ca.display(),
            me = user()
        ),
    )
    .unwrap();
    Setup {
        _d: d,
        dir,
        tls_ca,
        config,
        ci,
        admin,
        other,
        user_ca,
    }
}

/// The service, running inside the test; stopped when dropped (or with
/// [`Service::stop`]).
pub struct Service {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<sshca::signer::Result<()>>>,
}

impl Service {
    /// Starts `sshca serve` on 127.0.0.1 with an OS-chosen port.
    pub async fn start(config: &Path) -> Service {
        logs();
        let cfg = sshca::config::Config::load(config).unwrap();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let options = sshca_server::ServeOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            on_listening: Some(Box::new(move |url: &str| {
                let _ = url_tx.send(url.to_owned());
            })),
            shutdown: Some(Box::pin(async move {
                let _ = stop_rx.await;
            })),
            ..Default::default()
        };
        let task = tokio::spawn(sshca_server::serve(cfg, options));
        let url = match url_rx.await {
            Ok(url) => url,
            Err(_) => panic!("the service did not start: {:?}", task.await),
        };
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        Service {
            url,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Stops the service and waits until it has.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The log lines of every service in this test binary (JSON, one event a
/// line), as `sshca serve --log-format json` writes them.
pub fn log_text() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() {
    let buf = LOG.get_or_init(Default::default).clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || LogWriter(buf.clone()))
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .try_init();
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

/// GET `path` as JSON: (status, body).
pub async fn get_json(
    c: &reqwest::Client,
    s: &Service,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let (st, text) = get(c, s, path, token).await;
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST `path` with a JSON body and a token: (status, body).
pub async fn post(
    c: &reqwest::Client,
    s: &Service,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let r = c
        .post(format!("{}{path}", s.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// The store the config names, opened directly.
pub async fn store(s: &Setup) -> Arc<dyn sshca_store::Store> {
    sshca_store::open(&format!("sqlite:{}", s.db().display()), &Default::default())
        .await
        .unwrap()
}

/// The audit rows once `ready` says they are all there (they are written
/// after the answer, by a task of their own), or after 10 s.
pub async fn audit_rows(
    s: &Setup,
    ready: impl Fn(&[sshca_store::AuditEvent]) -> bool,
) -> Vec<sshca_store::AuditEvent> {
    let store = store(s).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = store.audit_events(10_000).await.unwrap();
        if ready(&rows) || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
