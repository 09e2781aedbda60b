//! `sshca login` and `sshca config ssh` end to end: the test kit's OIDC
//! provider (HTTPS, port 0), `sshca serve`, OpenSSH's ssh-agent and sshd.
//! The browser is played by the test (`--no-browser` prints the URL), the
//! device grant by the provider's scripted answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serve_support::*;
use sshca_testkit::oidc::{DevicePoll, Provider};

/// A service whose `corp` issuer is `p`, with the `people` policy (login
/// default), `pinned` (bound to the requester's address) and a host CA.
fn service_for(p: &Provider) -> (Setup, Service, PathBuf) {
    let s = setup("", None);
    let host_ca = keygen(&s.dir, "hosts_ca", "ed25519", None);
    let extra = format!(
        r#"
[oidc.corp]
issuer = "{url}"
client_id = "sshca-cli"
login_policy = "people"
jwks = "{url}/jwks"
jwks_ca = "{ca}"

[ca.hosts]
key = "file:{host_ca}"

[policy.people]
ca = "users"
auth = ["oidc:corp"]
requesters = ["oidc:corp:alice@example.com"]
valid_principals = ["{me}"]
ttl = "1h"
max_ttl = "8h"

[policy.pinned]
ca = "users"
auth = ["oidc:corp"]
requesters = ["oidc:corp:alice@example.com"]
valid_principals = ["{me}"]
pin_source_address = true

[policy.servers]
ca = "hosts"
cert_type = "host"
requesters = ["ci"]
"#,
        url = p.url,
        ca = p.ca.display(),
        host_ca = host_ca.display(),
        me = user()
    );
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&extra);
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.dir, &s.config);
    (s, svc, host_ca)
}

/// `sshca login` for the service, its stderr read line by line.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Login {
    fn start(s: &Setup, svc: &Service, p: &Provider, env: &Env, args: &[&str]) -> Login {
        let mut cmd = sshca();
        cmd.args(["login", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca)
            .arg("--issuer-ca")
            .arg(&p.ca)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        env.apply(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Login {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line starting with `prefix`.
    fn line_starting(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!("no line starting with {prefix}: {:?}", self.seen),
            }
        }
    }

    /// Waits for the exit: (status, all of stderr).
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (status, self.seen.join("\n"))
    }
}

/// Where a person's files are: HOME, XDG_STATE_HOME, the agent.
struct Env {
    home: PathBuf,
    state: PathBuf,
    agent: Option<PathBuf>,
}

impl Env {
    fn new(dir: &Path, name: &str, agent: Option<&SshAgent>) -> Env {
        let home = dir.join(format!("{name}-home"));
        std::fs::create_dir_all(&home).unwrap();
        Env {
            state: home.join("state"),
            home,
            agent: agent.map(|a| a.socket.clone()),
        }
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home)
            .env("XDG_STATE_HOME", &self.state)
            .env_remove("SSH_AUTH_SOCK")
            .env("BROWSER", "/bin/false");
        if let Some(a) = &self.agent {
            cmd.env("SSH_AUTH_SOCK", a);
        }
    }

    fn run(&self, cmd: &mut Command) -> Output {
        self.apply(cmd);
        cmd.output().unwrap()
    }
}

/// `ssh-add -L` in the agent: the lines it lists (none: empty).
fn agent_lines(agent: &Path) -> Vec<String> {
    let out = Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", agent)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("-cert-v01@openssh.com") || l.starts_with("ssh-"))
        .map(str::to_owned)
        .collect()
}

/// ssh to `sshd` through the agent alone.
fn ssh_with_agent(sshd: &Sshd, env: &Env, known_hosts: &Path, config: &str) -> Output {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", config, "-p", &sshd.port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "CheckHostIP=no",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg(format!("{}@127.0.0.1", user()))
        .arg("echo agent-login-works");
    env.run(&mut cmd)
}

fn check(svc: &Service, env: &Env, extra: &[&str]) -> bool {
    let out = env.run(
        sshca()
            .args(["login", "--check", "--server", &svc.url])
            .args(extra),
    );
    assert!(out.stdout.is_empty());
    out.status.success()
}

/// The query parameter `name` of `url`.
fn param(url: &str, name: &str) -> String {
    let q = url.split_once('?').unwrap().1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
        .unwrap()
}

#[test]
fn browser_login_to_the_agent_and_ssh_config() {
    let rt = runtime();
    let d = tempfile::tempdir().unwrap();
    let p = Provider::start(d.path());
    let (s, svc, host_ca) = service_for(&p);
    let agent = SshAgent::start(&s.dir, "agent.sock");
    let env = Env::new(&s.dir, "alice", Some(&agent));
    assert!(!check(&svc, &env, &[]), "no login yet");

    let mut login = Login::start(&s, &svc, &p, &env, &["--no-browser", "--lifetime", "30m"]);
    let url = login.line_starting(&format!("{}/authorize?", p.url));
    let redirect = param(&url, "redirect_uri");
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("nonce="),
        "{url}"
    );
    let plain = reqwest::Client::new();
    rt.block_on(async {
        // Anything but the awaited answer gets 400 and changes nothing.
        for bad in [
            format!("{redirect}?code=stolen&state=wrong"),
            format!("{redirect}?code=stolen"),
            redirect.replace("/callback", "/other"),
        ] {
            let r = plain.get(&bad).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 400, "{bad}");
            let body = r.text().await.unwrap();
            assert!(!body.contains("stolen"), "{body}");
        }
        let back = p.approve(&url).await;
        let r = plain.get(&back).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    let (status, err) = login.finish();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("signed in at `corp` under policy `people`"),
        "{err}"
    );
    assert!(!err.contains("eyJ"), "a token reached stderr: {err}");

    // The agent holds the certificate (not the bare key), and sshd takes it.
    let lines = agent_lines(&agent.socket);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{lines:?}"
    );
    let (sshd, known_hosts) = sshd_trusting(&s.dir, &s.user_ca.with_extension("pub"));
    let out = ssh_with_agent(&sshd, &env, &known_hosts, "/dev/null");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(s.dir.join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "agent-login-works"
    );

    // --check: the agent's certificate and the cached CA keys, both ways.
    assert!(check(&svc, &env, &[]));
    assert!(!check(&svc, &env, &["--min-valid", "2h"]), "only 30m left");
    let cache: Vec<_> = std::fs::read_dir(env.state.join("sshca"))
        .unwrap()
        .collect();
    assert_eq!(cache.len(), 1);
    let cache = cache[0].as_ref().unwrap().path();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ca_line = std::fs::read_to_string(s.user_ca.with_extension("pub")).unwrap();
    let ca_b64 = ca_line.split_whitespace().nth(1).unwrap();
    assert!(std::fs::read_to_string(&cache).unwrap().contains(ca_b64));
    let elsewhere = Env {
        state: s.dir.join("other-state"),
        ..Env::new(&s.dir, "alice", Some(&agent))
    };
    assert!(!check(&svc, &elsewhere, &[]), "no cached CA keys there");
    let no_agent = Env::new(&s.dir, "alice", None);
    assert!(!check(&svc, &no_agent, &[]));

    // `sshca config ssh --write`: the host CA and the Match block merged
    // into ~/.ssh, idempotently, the rest of each file kept; then plain
    // `ssh` with that config trusts the host certificate and finds the
    // login through `Match exec`.
    let ssh_dir = env.home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("config"), "Host other\n    User bob\n").unwrap();
    std::fs::write(
        ssh_dir.join("known_hosts"),
        "old.example ssh-ed25519 AAAA\n",
    )
    .unwrap();
    let config_ssh = |write: bool| {
        let mut cmd = sshca();
        cmd.args(["config", "ssh", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca)
            .args(["--hosts", "127.0.0.1"]);
        if write {
            cmd.arg("--write");
        }
        env.run(&mut cmd)
    };
    let printed = config_ssh(false);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let printed = String::from_utf8(printed.stdout).unwrap();
    let host_ca_b64 = std::fs::read_to_string(host_ca.with_extension("pub")).unwrap();
    let host_ca_b64 = host_ca_b64.split_whitespace().nth(1).unwrap();
    assert!(
        printed.contains(&format!(
            "@cert-authority 127.0.0.1 ssh-ed25519 {host_ca_b64}"
        )),
        "{printed}"
    );
    assert!(
        printed.contains("Match host 127.0.0.1 exec \""),
        "{printed}"
    );
    for _ in 0..2 {
        let out = config_ssh(true);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    let known = std::fs::read_to_string(ssh_dir.join("known_hosts")).unwrap();
    assert!(config.starts_with("Host other\n    User bob\n"), "{config}");
    assert!(
        known.starts_with("old.example ssh-ed25519 AAAA\n"),
        "{known}"
    );
    assert_eq!(config.matches("# BEGIN sshca").count(), 1, "{config}");
    assert_eq!(known.matches("@cert-authority").count(), 1, "{known}");
    assert_eq!(
        std::fs::metadata(ssh_dir.join("config"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // A host whose certificate the host CA made, reached with the written
    // files only.
    let host_key = keygen(&s.dir, "enrolled_host", "ed25519", None);
    run(sshca()
        .args(["sign", "-h", "-I", "enrolled", "-n", "127.0.0.1", "--ca"])
        .arg(format!("file:{}", host_ca.display()))
        .arg(host_key.with_extension("pub")));
    let host_dir = s.dir.join("host2");
    std::fs::create_dir_all(&host_dir).unwrap();
    let sshd2 = start_sshd(
        &host_dir,
        &s.user_ca.with_extension("pub"),
        &host_key,
        &cert_of(&host_key.with_extension("pub")),
    );
    let out = ssh_with_agent(
        &sshd2,
        &env,
        &ssh_dir.join("known_hosts"),
        &ssh_dir.join("config").display().to_string(),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(host_dir.join("sshd.log")).unwrap_or_default()
    );

    // pin_source_address: the certificate is bound to 127.0.0.1, and sshd
    // takes it from there.
    let pinned_agent = SshAgent::start(&s.dir, "pinned.sock");
    let pinned_env = Env::new(&s.dir, "pinned", Some(&pinned_agent));
    let mut login = Login::start(
        &s,
        &svc,
        &p,
        &pinned_env,
        &["--no-browser", "--policy", "pinned"],
    );
    let url = login.line_starting(&format!("{}/authorize?", p.url));
    rt.block_on(async {
        let back = p.approve(&url).await;
        plain.get(&back).send().await.unwrap();
    });
    let (status, err) = login.finish();
    assert!(status.success(), "{err}");
    let cert = s.dir.join("pinned-cert.pub");
    std::fs::write(&cert, format!("{}\n", agent_lines(&pinned_agent.socket)[0])).unwrap();
    let listed = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("source-address 127.0.0.1/32"), "{listed}");
    let out = ssh_with_agent(&sshd, &pinned_env, &known_hosts, "/dev/null");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn device_login_and_an_agent_that_forgets() {
    let d = tempfile::tempdir().unwrap();
    let p = Provider::start(d.path());
    let (s, svc, _) = service_for(&p);
    let agent = SshAgent::start(&s.dir, "agent.sock");
    let env = Env::new(&s.dir, "dev", Some(&agent));

    // Pending, then slow down (+5 s from then on), then approved.
    p.script_device(&[
        DevicePoll::Pending,
        DevicePoll::SlowDown,
        DevicePoll::Pending,
    ]);
    let mut login = Login::start(&s, &svc, &p, &env, &["--device", "--lifetime", "8s"]);
    let url = login.line_starting(&format!("{}/activate?user_code=", p.url));
    assert!(url.ends_with("WDJB-MJHT"), "{url}");
    let (status, err) = login.finish();
    assert!(status.success(), "{err}");
    let polls = p.polls();
    assert_eq!(polls.len(), 4, "{polls:?}");
    let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(900) && gaps[0] < Duration::from_secs(5),
        "{gaps:?}"
    );
    // slow_down adds 5 s, for that poll and every later one.
    assert!(gaps[1] >= Duration::from_secs(6), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_secs(6), "{gaps:?}");
    assert_eq!(agent_lines(&agent.socket).len(), 1);
    assert!(check(&svc, &env, &["--min-valid", "1s"]));
    // The agent forgets the key and its certificate when the certificate
    // expires.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent_lines(&agent.socket).is_empty() {
        assert!(Instant::now() < deadline, "the agent still holds the login");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!check(&svc, &env, &[]));

    // Denied and expired end with exit 1 and say so.
    for (poll, word) in [
        (DevicePoll::Denied, "denied"),
        (DevicePoll::Expired, "expired"),
    ] {
        p.script_device(&[poll]);
        let login = Login::start(&s, &svc, &p, &env, &["--device"]);
        let (status, err) = login.finish();
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(word), "{err}");
    }

    // No agent: --write PATH (0600, .pub, -cert.pub), refused again
    // without --force; without either, a clear error before any sign-in.
    let bare = Env::new(&s.dir, "bare", None);
    let out = bare.run(
        sshca()
            .args(["login", "--device", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca),
    );
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("SSH_AUTH_SOCK") && msg.contains("--write"),
        "{msg}"
    );
    let key = s.dir.join("login_key");
    let write = ["--device", "--write", key.to_str().unwrap()];
    let (status, err) = Login::start(&s, &svc, &p, &bare, &write).finish();
    assert!(status.success(), "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let view = sshca_view(&s.dir.join("login_key-cert.pub"));
    assert_eq!(view.principals, vec![user()]);
    let (status, err) = Login::start(&s, &svc, &p, &bare, &write).finish();
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("already exists"), "{err}");
    let mut forced = write.to_vec();
    forced.push("--force");
    let (status, err) = Login::start(&s, &svc, &p, &bare, &forced).finish();
    assert!(status.success(), "{err}");
}

#[test]
fn answers_from_the_wrong_issuer_or_person_are_refused() {
    let rt = runtime();
    let d = tempfile::tempdir().unwrap();
    let p = Provider::start(d.path());
    let (s, svc, _) = service_for(&p);
    let agent = SshAgent::start(&s.dir, "agent.sock");
    let env = Env::new(&s.dir, "x", Some(&agent));
    let plain = reqwest::Client::new();

    // RFC 9207: an authorization response naming another issuer.
    p.set_response_iss("https://evil.example");
    let mut login = Login::start(&s, &svc, &p, &env, &["--no-browser"]);
    let url = login.line_starting(&format!("{}/authorize?", p.url));
    rt.block_on(async {
        let back = p.approve(&url).await;
        plain.get(&back).send().await.unwrap();
    });
    let (status, err) = login.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("evil.example") && err.contains("iss"), "{err}");
    assert!(agent_lines(&agent.socket).is_empty());

    // A person the policy does not name: the service refuses, nothing is
    // added.
    p.set_response_iss(&p.url);
    p.set_user("mallory@example.com");
    let (status, err) = Login::start(&s, &svc, &p, &env, &["--device"]).finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("403"), "{err}");
    assert!(agent_lines(&agent.socket).is_empty());

    // An issuer the service does not offer.
    let (status, err) = Login::start(&s, &svc, &p, &env, &["--device", "--oidc", "nope"]).finish();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("no such issuer") && err.contains("corp"),
        "{err}"
    );
}
