//! The front ends as a person or a host runs them, wall time per command
//! against the real `sshca` binary (`SSHCA_BIN`): `sshca login` end to end
//! (the test kit's OIDC provider over HTTPS, the service, OpenSSH's
//! ssh-agent; the browser's two requests made by the bench as soon as the
//! URL is printed, so the person's time is left out), `sshca renew`
//! (proof of possession, `/v1/renew`) and `sshca host enroll` of three host
//! keys with a join token (certificates, CA bundle and KRL). The reference
//! is `sshca request` in the same run: one token-authenticated sign from
//! the CLI, the least a front end can do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sshca_testkit::cli::{keygen, run, user, SshAgent};
use sshca_testkit::oidc::Provider;

/// Invocations of each command; the median is reported.
const RUNS: usize = 11;

struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// Runs `cmd`, which must succeed, and returns its wall time.
fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    run(cmd);
    t.elapsed()
}

fn main() {
    let Ok(bin) = std::env::var("SSHCA_BIN") else {
        eprintln!("frontends bench: SSHCA_BIN is not set (cargo xtask bench sets it); skipped");
        return;
    };
    let sshca = || Command::new(&bin);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let tls_ca = sshca_testkit::tls::pki(dir);
    let p = Provider::start(dir);
    let users = keygen(dir, "users_ca", "ed25519", None);
    let hosts = keygen(dir, "hosts_ca", "ed25519", None);
    let token = sshca_server::new_token();
    std::fs::create_dir(dir.join("data")).unwrap();
    let config = dir.join("sshca.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
tls_cert = "tls.pem"
tls_key = "tls.key"
data_dir = "data"

[token.bench]
sha256 = "{hash}"

[oidc.corp]
issuer = "{issuer}"
client_id = "sshca-cli"
login_policy = "people"
jwks = "{issuer}/jwks"
jwks_ca = "{issuer_ca}"

[ca.users]
key = "file:{users}"

[ca.hosts]
key = "file:{hosts}"

[policy.people]
ca = "users"
auth = ["oidc:corp"]
requesters = ["oidc:corp:alice@example.com"]
valid_principals = ["{me}"]
ttl = "1h"

[policy.ci]
ca = "users"
requesters = ["bench"]
valid_principals = ["{me}"]
ttl = "1h"
renewable = true
renew_max_age = "7d"

[policy.hosts]
ca = "hosts"
cert_type = "host"
allowed_valid_principals = ["*.example.com"]
key_id = "{{claims.join}}-{{claims.token_id}}"
ttl = "1h"
renewable = true
renew_max_age = "30d"

[join.fleet]
method = "token"
policy = "hosts"
"#,
            hash = sshca_server::token_hash(&token),
            issuer = p.url,
            issuer_ca = p.ca.display(),
            users = users.display(),
            hosts = hosts.display(),
            me = user(),
        ),
    )
    .unwrap();
    // Its errors, if it cannot start, go to the bench's stderr.
    let (child, url) =
        sshca_benches::start_serve(&bin, &config, &dir.join("ready.json"), Stdio::inherit());
    let svc = Service { child, url };
    let agent = SshAgent::start(dir, "agent.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The reference and the renewals: one key, its certificate renewed in
    // place (the whole lifetime is within `--within 100%`).
    let key = keygen(dir, "id_bench", "ed25519", None);
    let request = || {
        timed(
            sshca()
                .args(["request", "--server", &svc.url, "--server-ca"])
                .arg(&tls_ca)
                .args(["--policy", "ci"])
                .arg(key.with_extension("pub"))
                .env("SSHCA_TOKEN", &token),
        )
    };
    let requests: Vec<Duration> = (0..RUNS).map(|_| request()).collect();
    let renewals: Vec<Duration> = (0..RUNS)
        .map(|_| {
            timed(
                sshca()
                    .args(["renew", "--server", &svc.url, "--server-ca"])
                    .arg(&tls_ca)
                    .args(["--within", "100%"])
                    .arg(&key),
            )
        })
        .collect();

    // Logins: a fresh state directory each time, the same agent.
    let logins: Vec<Duration> = (0..RUNS)
        .map(|i| login(&bin, &svc.url, &tls_ca, &p, &rt, dir, &agent.socket, i))
        .collect();

    // Enrollments: three host keys in a fresh directory, a new join token
    // each (made before the clock starts).
    let host_keys = dir.join("host-keys");
    std::fs::create_dir(&host_keys).unwrap();
    for t in ["ed25519", "ecdsa", "rsa"] {
        keygen(&host_keys, &format!("ssh_host_{t}_key"), t, None);
    }
    let enrollments: Vec<Duration> = (0..RUNS)
        .map(|i| {
            let ssh_dir = dir.join(format!("etc-ssh-{i}"));
            std::fs::create_dir(&ssh_dir).unwrap();
            for e in std::fs::read_dir(&host_keys).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), ssh_dir.join(e.file_name())).unwrap();
            }
            std::fs::write(
                ssh_dir.join("sshd_config"),
                "Include sshd_config.d/*.conf\n",
            )
            .unwrap();
            let out = run(sshca()
                .arg("--config")
                .arg(&config)
                .args(["token", "join", "fleet", "--principal"])
                .arg(format!("host{i}.example.com")));
            let join = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let took = timed(
                sshca()
                    .args(["host", "enroll", "--server", &svc.url, "--server-ca"])
                    .arg(&tls_ca)
                    .args(["--join", "fleet", "--user-ca", "users", "--ssh-dir"])
                    .arg(&ssh_dir)
                    .arg("--state")
                    .arg(ssh_dir.join("host.toml"))
                    .env("SSHCA_JOIN_TOKEN", join),
            );
            assert!(ssh_dir.join("ssh_host_rsa_key-cert.pub").exists());
            took
        })
        .collect();

    let (req, renew, login_ms, enroll) = (
        median_ms(requests),
        median_ms(renewals),
        median_ms(logins),
        median_ms(enrollments),
    );
    println!(
        "front ends (median of {RUNS}): sshca login {login_ms:.1} ms, sshca renew {renew:.1} ms, \
         sshca host enroll (3 keys) {enroll:.1} ms; sshca request {req:.1} ms"
    );
    sshca_benches::record(&serde_json::json!({
        "bench": "frontends", "runs": RUNS, "request_ms": req, "renew_ms": renew,
        "login_ms": login_ms, "enroll3_ms": enroll,
    }));
}

/// One `sshca login --no-browser` into `agent`, the browser played as
/// soon as the authorization URL is printed: its wall time.
#[allow(clippy::too_many_arguments)]
fn login(
    bin: &str,
    url: &str,
    tls_ca: &Path,
    p: &Provider,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    agent: &Path,
    i: usize,
) -> Duration {
    let home: PathBuf = dir.join(format!("home-{i}"));
    std::fs::create_dir(&home).unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["login", "--server", url, "--server-ca"])
        .arg(tls_ca)
        .arg("--issuer-ca")
        .arg(&p.ca)
        .arg("--no-browser")
        .env("HOME", &home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("SSH_AUTH_SOCK", agent)
        .env("BROWSER", "/bin/false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let prefix = format!("{}/authorize?", p.url);
    let authorize = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with(&prefix) => break l,
            Some(Ok(_)) => {}
            other => panic!("sshca login printed no authorization URL: {other:?}"),
        }
    };
    rt.block_on(async {
        let back = p.approve(&authorize).await;
        let r = reqwest::Client::new().get(&back).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "sshca login failed: {rest:?}");
    took
}
