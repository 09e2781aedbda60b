//! A real sshd, started on 127.0.0.1 with an OS-chosen port, trusts a CA held
//! by the file backend: a user certificate logs in; expired, wrong-principal
//! and source-address-excluded certificates are refused; force-command runs;
//! the client accepts the server's host certificate through an
//! `@cert-authority` known_hosts line written by `sshca pubkey`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn sign(ca: &Path, key: &Path, args: &[&str]) -> PathBuf {
    run(sshca()
        .arg("sign")
        .arg("--ca")
        .arg(format!("file:{}", ca.display()))
        .args(args)
        .arg(key));
    cert_of(key)
}

#[test]
fn sshd_accepts_and_refuses_as_it_should() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let user_ca = keygen(dir, "user_ca", "ecdsa", Some("256"));
    let host_ca = keygen(dir, "host_ca", "ed25519", None);
    let host_key = keygen(dir, "host_key", "ed25519", None);
    let me = user();

    // The CA lines come from `sshca pubkey`.
    let ca_line = String::from_utf8(
        run(sshca()
            .arg("pubkey")
            .arg(format!("file:{}", user_ca.display())))
        .stdout,
    )
    .unwrap();
    let user_ca_pub = dir.join("trusted_user_ca.pub");
    std::fs::write(&user_ca_pub, &ca_line).unwrap();
    let kh = String::from_utf8(
        run(sshca()
            .args(["pubkey", "--known-hosts", "127.0.0.1"])
            .arg(format!("file:{}", host_ca.display())))
        .stdout,
    )
    .unwrap();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, &kh).unwrap();

    let host_cert = sign(
        &host_ca,
        &host_key.with_extension("pub"),
        &["-h", "-I", "host", "-n", "127.0.0.1", "-V", "-5m:+1h"],
    );
    let sshd = start_sshd(dir, &user_ca_pub, &host_key, &host_cert);

    let key = keygen(dir, "id_user", "ed25519", None);
    let login = |args: &[&str], cmd: &str| {
        let cert = sign(&user_ca, &key.with_extension("pub"), args);
        ssh(&sshd, dir, &key, &cert, &known_hosts, cmd)
    };

    let out = login(&["-I", "ok", "-n", &me, "-V", "-5m:+1h"], "echo login-ok");
    assert!(
        out.status.success(),
        "valid certificate refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "login-ok");

    let out = login(
        &["-I", "expired", "-n", &me, "-V", "20200101:20200102"],
        "echo no",
    );
    assert!(!out.status.success(), "expired certificate accepted");

    let out = login(
        &[
            "-I",
            "wrong-principal",
            "-n",
            "somebody-else",
            "-V",
            "-5m:+1h",
        ],
        "echo no",
    );
    assert!(
        !out.status.success(),
        "certificate for another principal accepted"
    );

    let out = login(
        &[
            "-I",
            "src",
            "-n",
            &me,
            "-V",
            "-5m:+1h",
            "-O",
            "source-address=10.9.8.7/32",
        ],
        "echo no",
    );
    assert!(
        !out.status.success(),
        "source-address did not exclude 127.0.0.1"
    );
    let out = login(
        &[
            "-I",
            "src-ok",
            "-n",
            &me,
            "-V",
            "-5m:+1h",
            "-O",
            "source-address=127.0.0.0/8",
        ],
        "echo src-ok",
    );
    assert!(
        out.status.success(),
        "matching source-address refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = login(
        &[
            "-I",
            "forced",
            "-n",
            &me,
            "-V",
            "-5m:+1h",
            "-O",
            "force-command=echo forced-command-ran",
        ],
        "echo not-forced",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "forced-command-ran"
    );

    // The host certificate is what makes the host trusted: a known_hosts line
    // naming another CA makes the same login fail.
    let other = keygen(dir, "other_ca", "ed25519", None);
    let kh2 = String::from_utf8(
        run(sshca()
            .args(["pubkey", "--known-hosts", "127.0.0.1"])
            .arg(format!("file:{}", other.display())))
        .stdout,
    )
    .unwrap();
    let known_hosts2 = dir.join("known_hosts2");
    std::fs::write(&known_hosts2, kh2).unwrap();
    let cert = sign(
        &user_ca,
        &key.with_extension("pub"),
        &["-I", "ok2", "-n", &me, "-V", "-5m:+1h"],
    );
    let out = ssh(&sshd, dir, &key, &cert, &known_hosts2, "echo no");
    assert!(
        !out.status.success(),
        "host accepted without a trusted host CA"
    );
    // A signing policy that forces force-command and source-address: sshd
    // enforces both on a certificate issued through `sign --policy`.
    let cfg = dir.join("sshca.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ca.users]\nkey = \"file:{ca}\"\n\n\
             [policy.forced]\nca = \"users\"\nvalid_principals = [\"{me}\"]\n\
             critical_options = {{ \"force-command\" = \"echo policy-forced\", \"source-address\" = \"127.0.0.1/32\" }}\n\
             default_extensions = {{ \"permit-pty\" = \"\" }}\nttl = \"10m\"\n\n\
             [policy.elsewhere]\nca = \"users\"\nvalid_principals = [\"{me}\"]\n\
             critical_options = {{ \"source-address\" = \"192.0.2.0/24\" }}\n",
            ca = user_ca.display()
        ),
    )
    .unwrap();
    for (policy, expect) in [("forced", Some("policy-forced")), ("elsewhere", None)] {
        run(sshca()
            .arg("--config")
            .arg(&cfg)
            .args(["sign", "--policy", policy, "--requester", "test"])
            .arg(key.with_extension("pub")));
        let cert = cert_of(&key.with_extension("pub"));
        let out = ssh(&sshd, dir, &key, &cert, &known_hosts, "echo not-forced");
        match expect {
            Some(text) => {
                assert!(
                    out.status.success(),
                    "{policy}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), text);
            }
            None => assert!(
                !out.status.success(),
                "{policy}: login allowed from outside source-address"
            ),
        }
    }

    let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap();
    assert!(log.contains("Accepted publickey"), "sshd log: {log}");
}
