//! `sshca token join`, `sshca host enroll` and `sshca host renew` against
//! `sshca serve`: host certificates for Ed25519, ECDSA and RSA host keys,
//! the drop-in sshd reads (reloaded after `sshd -t`), `ssh` trusting the
//! host with one `@cert-authority` line and StrictHostKeyChecking=yes;
//! refusals of a used token; renewal, and its refusal after revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serve_support::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn join_token(config: &Path, principals: &[&str], extra: &[&str]) -> String {
    let mut cmd = sshca();
    cmd.arg("--config")
        .arg(config)
        .args(["token", "join", "fleet"]);
    for p in principals {
        cmd.args(["--principal", p]);
    }
    let out = run(cmd.args(extra));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("sshcaj_"), "{token}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token));
    token
}

fn enroll(s: &Setup, svc: &Service, ssh_dir: &Path, token: &str, extra: &[&str]) -> Output {
    sshca()
        .args(["host", "enroll", "--server", &svc.url, "--server-ca"])
        .arg(&s.pki.tls_ca)
        .args(["--join", "fleet", "--user-ca", "users", "--ssh-dir"])
        .arg(ssh_dir)
        .arg("--state")
        .arg(s.dir.join("state/host.toml"))
        .args(extra)
        .env("SSHCA_JOIN_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn enroll_serve_and_renew_host_certificates() {
    let s = setup("", None);
    let hosts_ca = keygen(&s.dir, "hosts_ca", "ed25519", None);
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&format!(
        r#"
[ca.hosts]
key = "file:{ca}"

[policy.hosts]
ca = "hosts"
cert_type = "host"
allowed_valid_principals = ["127.0.0.1", "*.example.com"]
key_id = "{{claims.join}}-{{claims.token_id}}"
ttl = "1h"
renewable = true
renew_max_age = "30d"

[join.fleet]
method = "token"
policy = "hosts"
"#,
        ca = hosts_ca.display()
    ));
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.dir, &s.config);

    // A host: three host keys and an sshd_config that includes the
    // drop-in directory; sshd already running (without certificates).
    let ssh_dir = s.dir.join("etc-ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let mut keys = Vec::new();
    for t in ["ed25519", "ecdsa", "rsa"] {
        let k = ssh_dir.join(format!("ssh_host_{t}_key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", t, "-f"])
            .arg(&k));
        keys.push(k);
    }
    let sshd_config = ssh_dir.join("sshd_config");
    let host_keys: String = keys
        .iter()
        .map(|k| format!("HostKey {}\n", k.display()))
        .collect();
    let pid_file = s.dir.join("sshd.pid");
    let sshd = start_sshd_file(&sshd_config, &s.dir.join("sshd.log"), |port| {
        format!(
            "Include {dropins}/*.conf\nListenAddress 127.0.0.1:{port}\n{host_keys}\
             AuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {pid}\n\
             LogLevel VERBOSE\n",
            dropins = ssh_dir.join("sshd_config.d").display(),
            pid = pid_file.display()
        )
    });

    // A token for other principals than the policy allows: 422, and
    // nothing written.
    let bad = join_token(&s.config, &["evil.other.org"], &[]);
    let out = enroll(&s, &svc, &ssh_dir, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("422"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ssh_dir.join("ssh_host_ed25519_key-cert.pub").exists());
    assert!(!ssh_dir.join("sshd_config.d").exists());

    // Enrolled, sshd reloaded after `sshd -t`.
    let token = join_token(&s.config, &["127.0.0.1"], &["--ttl", "10m"]);
    let pid = pid_file.display().to_string();
    let out = enroll(
        &s,
        &svc,
        &ssh_dir,
        &token,
        &["--reload", "--sshd-pid-file", &pid],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sshd reloaded"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    for k in &keys {
        let cert = PathBuf::from(format!("{}-cert.pub", k.display()));
        assert_eq!(mode(&cert), 0o644);
        let view = sshca_view(&cert);
        assert!(view.cert_type.contains("host"), "{}", view.cert_type);
        assert_eq!(view.principals, ["127.0.0.1"]);
        assert!(view.key_id.starts_with("fleet-"), "{}", view.key_id);
    }
    let drop_in = std::fs::read_to_string(ssh_dir.join("sshd_config.d/50-sshca.conf")).unwrap();
    assert_eq!(drop_in.matches("HostCertificate ").count(), 3, "{drop_in}");
    assert!(
        drop_in.contains("TrustedUserCAKeys ") && drop_in.contains("RevokedKeys "),
        "{drop_in}"
    );
    assert!(ssh_dir.join("sshca_revoked.krl").exists());
    assert_eq!(mode(&s.dir.join("state/host.toml")), 0o600);
    let user_ca = std::fs::read_to_string(s.user_ca.with_extension("pub")).unwrap();
    let bundle = std::fs::read_to_string(ssh_dir.join("sshca_user_ca.pub")).unwrap();
    assert!(bundle.contains(user_ca.split_whitespace().nth(1).unwrap()));

    // The token is spent.
    let out = enroll(&s, &svc, &ssh_dir, &token, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("join_token_used"));

    // ssh trusts each host key type through the host CA alone, and sshd
    // trusts the user CA the enrollment installed.
    let hosts_pub = std::fs::read_to_string(hosts_ca.with_extension("pub")).unwrap();
    let known_hosts = s.dir.join("known_hosts_ca_only");
    std::fs::write(
        &known_hosts,
        format!("@cert-authority 127.0.0.1 {hosts_pub}"),
    )
    .unwrap();
    let user_key = keygen(&s.dir, "id_user", "ed25519", None);
    run(sshca()
        .args(["sign", "-I", "u", "-n", &user(), "--ca"])
        .arg(format!("file:{}", s.user_ca.display()))
        .arg(user_key.with_extension("pub")));
    let ssh_as = |alg: &str| {
        // A reload re-executes sshd: wait for it to listen again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", sshd.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "sshd did not come back"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ssh_with(
            &sshd,
            &s.dir,
            &user_key,
            &cert_of(&user_key.with_extension("pub")),
            &known_hosts,
            "echo host-cert-ok",
            &[&format!("HostKeyAlgorithms={alg}")],
        )
    };
    for alg in [
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
    ] {
        let out = ssh_as(alg);
        assert!(
            out.status.success(),
            "{alg}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(s.dir.join("sshd.log")).unwrap_or_default()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "host-cert-ok");
    }

    // Renewal: nothing while fresh; renewed within the window.
    let renew = |extra: &[&str]| {
        sshca()
            .args(["host", "renew", "--state"])
            .arg(s.dir.join("state/host.toml"))
            .args(extra)
            .output()
            .unwrap()
    };
    // The reload as a command instead of the PID file's signal.
    let state_file = s.dir.join("state/host.toml");
    let marker = s.dir.join("reloaded-by-command");
    let mut state = std::fs::read_to_string(&state_file).unwrap();
    state.push_str(&format!(
        "reload_command = \"touch {} && kill -HUP $(cat {})\"\n",
        marker.display(),
        pid_file.display()
    ));
    std::fs::write(&state_file, state).unwrap();
    let ed_cert = PathBuf::from(format!("{}-cert.pub", keys[0].display()));
    let before = std::fs::read_to_string(&ed_cert).unwrap();
    let out = renew(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&ed_cert).unwrap(), before);
    let out = renew(&["--within", "100%"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(&ed_cert).unwrap();
    assert_ne!(after, before);
    assert!(marker.exists(), "the reload command did not run");
    assert_eq!(
        sshca_view(&ed_cert).principals,
        ["127.0.0.1"],
        "never widened"
    );
    let out = ssh_as("ssh-ed25519-cert-v01@openssh.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A revoked host key cannot renew.
    run(sshca()
        .arg("--config")
        .arg(&s.config)
        .args(["revoke", "--ca", "hosts", "--key"])
        .arg(keys[0].with_extension("pub"))
        .args(["--reason", "decommissioned"]));
    let out = renew(&["--within", "100%"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate_revoked"), "{err}");

    // The timer.
    let out = run(sshca().args(["config", "systemd", "--state", "/etc/sshca/host.toml"]));
    let unit = String::from_utf8(out.stdout).unwrap();
    assert!(
        unit.contains("host renew --state /etc/sshca/host.toml") && unit.contains("[Timer]"),
        "{unit}"
    );
}
