//! Holes an attacker or a new user found in the CLI, each closed: policy
//! bypasses, `verify` accepting what OpenSSH refuses, pins ignored, and
//! ssh-keygen flag habits. `sshca verify` is checked against a real sshd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

const DSA_PUB: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAPQbsDbxf1Yg0qTrs5SUHLsOW9dBs0FYIGt1o7+ijWoRT3V76XkMkkP4RD80fbwp7kSSqr3SHKCCaJhFD+kfefvD2z0eonXiNaBpxfQDhWcqnefqjQQ3nF7kvMz2lbTZRdlqZnTBNnWlNzgkeGxo4z9gJwuJvNBRGZ7+Kj9OMPJF dsa";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config(dir: &Path, policy: &str) -> PathBuf {
    let ca = dir.join("ca");
    if !ca.exists() {
        keygen(dir, "ca", "ed25519", None);
    }
    let p = dir.join("sshca.toml");
    std::fs::write(
        &p,
        format!("[ca.c]\nkey = \"file:{}\"\n\n{policy}", ca.display()),
    )
    .unwrap();
    p
}

fn sign_policy(cfg: &Path, policy: &str, args: &[&str], keys: &[&Path]) -> Output {
    sshca()
        .arg("--config")
        .arg(cfg)
        .args(["sign", "--policy", policy, "--requester", "ci-1"])
        .args(args)
        .args(keys)
        .output()
        .unwrap()
}

#[test]
fn policy_holes_are_closed() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let cfg = config(
        dir,
        r#"
[policy.users]
ca = "c"
allowed_valid_principals = ["alice", "bob"]
ttl = "1h"
max_ttl = "8h"

[policy.hosts]
ca = "c"
cert_type = "host"
allowed_valid_principals = ["db?.example.com"]

[policy.numbered]
ca = "c"
default_valid_principals = ["alice"]
allow_serial = true
"#,
    );
    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    let key2 = keygen(dir, "id2", "ed25519", None).with_extension("pub");
    let cert = dir.join("id-cert.pub");
    let refused = |policy: &str, args: &[&str], keys: &[&Path], needle: &str| {
        let out = sign_policy(&cfg, policy, args, keys);
        let err = stderr(&out);
        assert!(!out.status.success(), "{policy} {args:?} issued: {err}");
        assert!(err.contains(needle), "{policy} {args:?}: {err}");
        assert!(!cert.exists(), "{policy} {args:?} left a certificate");
        assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
    };
    // A later start does not buy a longer reach past now + max_ttl.
    refused(
        "users",
        &["-n", "alice", "-V", "+365d:+365d7h"],
        &[&key],
        "max_start",
    );
    // OpenSSH patterns in requested principals.
    refused(
        "hosts",
        &["-h", "-n", "db*.example.com"],
        &[&key],
        "pattern",
    );
    // Requester-chosen serials, serial 0, one serial for several keys.
    refused("users", &["-n", "alice", "-z", "7"], &[&key], "not allowed");
    refused("numbered", &["-z", "0"], &[&key], "serial 0");
    refused(
        "numbered",
        &["-z", "9"],
        &[&key, &key2],
        "serials must be unique",
    );
    // Control characters, named by field and never echoed raw.
    refused(
        "users",
        &["-n", "alice", "-I", "ok\x1b[2Jroot"],
        &[&key],
        "key_id",
    );
    refused("users", &["-n", "alice\nbob"], &[&key], "principal");
    let out = sshca()
        .arg("--config")
        .arg(&cfg)
        .args([
            "sign",
            "--policy",
            "users",
            "--requester",
            "ci\u{7}",
            "-n",
            "alice",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("requester `ci\\x07`"),
        "{}",
        stderr(&out)
    );

    // What stays allowed still works: a plain name and an opted-in serial.
    let out = sign_policy(&cfg, "hosts", &["-h", "-n", "db1.example.com"], &[&key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sign_policy(&cfg, "numbered", &["-z", "9"], &[&key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(keygen_list(&cert).serial, "9");
    // Under a policy the serial is random and never 0.
    let out = sign_policy(&cfg, "users", &["-n", "alice"], &[&key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(keygen_list(&cert).serial, "0");
}

#[test]
fn direct_signing_refuses_control_characters_and_dsa() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ed25519", None);
    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    let out = sshca()
        .args(["sign", "--ca"])
        .arg(&ca)
        .args(["-I", "a\nb"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("key id (-I) `a\\nb`"),
        "{}",
        stderr(&out)
    );
    let dsa = dir.join("dsa.pub");
    std::fs::write(&dsa, format!("{DSA_PUB}\n")).unwrap();
    let out = sshca()
        .args(["sign", "--ca"])
        .arg(&ca)
        .args(["-I", "x"])
        .arg(&dsa)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("OpenSSH 10 removed it"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("dsa-cert.pub").exists());
}

#[test]
fn repeated_and_grouped_flags_as_ssh_keygen() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "rsa", Some("2048"));
    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    let cert = dir.join("id-cert.pub");
    // The last of a repeated single-valued flag wins (getopt).
    let out = sshca()
        .args(["sign", "--ca"])
        .arg(&ca)
        .args([
            "-t",
            "rsa-sha2-256",
            "-t",
            "rsa-sha2-256",
            "-I",
            "first",
            "-I",
            "second",
        ])
        .args([
            "-n", "a", "-n", "b,c", "-z", "1", "-z", "2", "-V", "+1h", "-V", "+2h",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = keygen_list(&cert);
    assert_eq!(v.key_id, "second");
    assert_eq!(v.principals, ["b", "c"]);
    assert_eq!(v.serial, "2");
    let c =
        sshca_core::Certificate::from_openssh(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    assert_eq!(c.signature().algorithm().as_str(), "rsa-sha2-256");
    assert!(c.valid_before() - c.valid_after() > 3600 + 60);
    // Grouped flags and -q: a host certificate, nothing reported.
    std::fs::remove_file(&cert).unwrap();
    let out = sshca()
        .args(["sign", "--ca"])
        .arg(&ca)
        .args(["-hq", "-I", "h", "-n", "h.example.com"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(keygen_list(&cert).cert_type, "host");
}

fn verify_json(ca_pub: &Path, cert: &Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let out = sshca()
        .args(["verify", "--json", "--ca"])
        .arg(ca_pub)
        .args(extra)
        .arg(cert)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(j["valid"].as_bool(), Some(out.status.success()), "{j}");
    (out.status.success(), j)
}

/// Certificates made by ssh-keygen, judged by `sshca verify` and by a real
/// sshd with `TrustedUserCAKeys`: both must agree.
#[test]
fn verify_refuses_what_sshd_refuses() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let user_ca = keygen(dir, "user_ca", "ed25519", None);
    let host_ca = keygen(dir, "host_ca", "ed25519", None);
    let host_key = keygen(dir, "host_key", "ed25519", None);
    let ca_pub = user_ca.with_extension("pub");
    let me = user();
    let known_hosts = dir.join("known_hosts");
    let host_line = std::fs::read_to_string(host_ca.with_extension("pub")).unwrap();
    std::fs::write(
        &known_hosts,
        format!("@cert-authority 127.0.0.1 {host_line}"),
    )
    .unwrap();
    let keygen_sign = |ca: &Path, key: &Path, args: &[&str]| {
        run(std::process::Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(ca)
            .args(args)
            .arg(key));
        cert_of(key)
    };
    let host_cert = keygen_sign(
        &host_ca,
        &host_key.with_extension("pub"),
        &[
            "-h",
            "-I",
            "host",
            "-n",
            "127.0.0.1,*.example.com",
            "-V",
            "-5m:+1h",
        ],
    );
    let sshd = start_sshd(dir, &ca_pub, &host_key, &host_cert);
    let key = keygen(dir, "id_user", "ed25519", None);

    let cases: [(&str, Vec<&str>, Option<&str>); 5] = [
        ("valid", vec!["-n", &me], None),
        ("no principals", vec![], Some("no-principals")),
        (
            "other principal",
            vec!["-n", "someone-else"],
            Some("principal-mismatch"),
        ),
        (
            "pattern principal",
            vec!["-n", "*"],
            Some("principal-mismatch"),
        ),
        (
            "unknown critical option",
            vec!["-n", &me, "-O", "critical:no-such-option=x"],
            Some("unknown-critical-option"),
        ),
    ];
    for (name, args, want) in cases {
        let mut all = vec!["-I", name, "-V", "-5m:+1h"];
        all.extend(args);
        let cert = keygen_sign(&user_ca, &key.with_extension("pub"), &all);
        let login = ssh(&sshd, dir, &key, &cert, &known_hosts, "true");
        let (ok, j) = verify_json(&ca_pub, &cert, &["--principal", &me]);
        assert_eq!(
            login.status.success(),
            ok,
            "{name}: sshd and sshca verify disagree: {j} / {}",
            stderr(&login)
        );
        assert_eq!(j["reason"].as_str(), want, "{name}: {j}");
    }
    // --any-principal: the authorized_keys cert-authority reading.
    let cert = keygen_sign(&user_ca, &key.with_extension("pub"), &["-I", "any"]);
    let (ok, _) = verify_json(&ca_pub, &cert, &["--principal", &me, "--any-principal"]);
    assert!(ok);
    // Without a principal to check, an empty list is not a reason.
    assert!(verify_json(&ca_pub, &cert, &[]).0);

    // Host certificates: principals are OpenSSH patterns (ssh >= 10.3
    // matches the host name against them), critical options are refused.
    let host_pub = host_ca.with_extension("pub");
    for (host, ok) in [
        ("127.0.0.1", true),
        ("db1.example.com", true),
        ("example.com", false),
        ("10.0.0.1", false),
    ] {
        let (got, j) = verify_json(
            &host_pub,
            &host_cert,
            &["--type", "host", "--principal", host],
        );
        assert_eq!(got, ok, "{host}: {j}");
        if !ok {
            assert_eq!(j["reason"], "principal-mismatch");
        }
    }
    let hk3 = keygen(dir, "host_key3", "ed25519", None);
    let empty = keygen_sign(&host_ca, &hk3.with_extension("pub"), &["-h", "-I", "none"]);
    let (ok, j) = verify_json(&host_pub, &empty, &["--principal", "db1.example.com"]);
    assert!(!ok);
    assert_eq!(j["reason"], "no-principals");
    let hk2 = keygen(dir, "host_key2", "ed25519", None);
    let crit = keygen_sign(
        &host_ca,
        &hk2.with_extension("pub"),
        &["-h", "-I", "h", "-n", "h", "-O", "critical:x=y"],
    );
    let (ok, j) = verify_json(&host_pub, &crit, &["--principal", "h"]);
    assert!(!ok);
    assert_eq!(j["reason"], "host-critical-option");
    // Text output names the reason on stderr, exit 1.
    let out = sshca()
        .args(["verify", "--ca"])
        .arg(&host_pub)
        .arg(&crit)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("critical option `x`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_escapes_control_characters() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ed25519", None);
    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    run(std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(&ca)
        .args(["-I", "evil\x1b]0;owned\x07id", "-n", "a\x1b[31mb"])
        .arg(&key));
    let out = run(sshca().arg("inspect").arg(dir.join("id-cert.pub")));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(text.contains("evil\\x1b]0;owned\\x07id"), "{text}");
    assert!(text.contains("a\\x1b[31mb"), "{text}");
    // A public key's comment is shown escaped by `key info` too.
    let line = std::fs::read_to_string(&key).unwrap();
    let mut parts = line.split_whitespace();
    let (t, b) = (parts.next().unwrap(), parts.next().unwrap());
    let evil = dir.join("evil.pub");
    std::fs::write(&evil, format!("{t} {b} evil\x1b[2Jcomment\n")).unwrap();
    let out = run(sshca().args(["key", "info"]).arg(&evil));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("comment: evil\\x1b[2Jcomment") && !text.contains('\x1b'),
        "{text:?}"
    );
}

#[test]
fn every_path_that_opens_a_key_uri_checks_the_pin() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ed25519", None);
    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    run(sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "x", "-n", "x"])
        .arg(&key));
    let cert = dir.join("id-cert.pub");
    let wrong = format!(
        "file:{}?pin=SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ca.display()
    );
    let fp = String::from_utf8(run(sshca().args(["key", "info"]).arg(&ca)).stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: ").map(str::to_owned))
        .unwrap();
    let right = format!("file:{}?pin={fp}", ca.display());
    for args in [
        vec![
            "verify".to_owned(),
            "--ca".into(),
            wrong.clone(),
            cert.display().to_string(),
        ],
        vec!["key".into(), "public".into(), wrong.clone()],
        vec!["key".into(), "info".into(), wrong.clone()],
        vec![
            "key".into(),
            "match".into(),
            ca.display().to_string(),
            wrong.clone(),
        ],
        vec!["pubkey".into(), wrong.clone()],
    ] {
        let out = sshca().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} ignored the pin");
        assert!(
            stderr(&out).contains("but the URI pins"),
            "{args:?}: {}",
            stderr(&out)
        );
        let ok: Vec<String> = args.iter().map(|a| a.replace(&wrong, &right)).collect();
        let out = sshca().args(&ok).output().unwrap();
        assert!(out.status.success(), "{ok:?}: {}", stderr(&out));
    }
}

/// A bulk run: every certificate appears complete with mode 0644 and no
/// temporary file is left; an unreadable subject key anywhere in the list
/// stops the run with nothing written, even for the keys signed before it
/// was read.
#[test]
fn bulk_runs_are_all_or_nothing_and_leave_no_temporaries() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ecdsa", None);
    let keys_dir = dir.join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    let mut keys: Vec<PathBuf> = (0..40)
        .map(|i| keygen(&keys_dir, &format!("id{i:02}"), "ed25519", None).with_extension("pub"))
        .collect();
    let certs = |d: &Path| count_entries(d, |n| n.ends_with("-cert.pub"));
    // An unreadable key in the middle: refused by name, and no certificate
    // at all, though keys before it were already signed.
    let bad = keys_dir.join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 not-base64!\n").unwrap();
    let mut with_bad = keys.clone();
    with_bad.insert(30, bad.clone());
    let out = sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "bulk", "-n", "alice", "-V", "+1h"])
        .args(&with_bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.pub"), "{}", stderr(&out));
    assert_eq!(certs(&keys_dir), 0, "nothing may be written");
    assert_eq!(temp_leftovers(&keys_dir), 0);
    // The same with stdin first: its certificate is not printed either.
    let mut child = sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "bulk", "-n", "alice", "-V", "+1h", "-"])
        .arg(&bad)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&keys[0]).unwrap()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.pub"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a certificate was printed");
    // All good: 40 certificates, complete, 0644, verified by ssh-keygen.
    keys.sort();
    let out = sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "bulk", "-n", "alice", "-V", "+1h"])
        .args(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(certs(&keys_dir), 40);
    assert_eq!(temp_leftovers(&keys_dir), 0);
    for k in [&keys[0], &keys[39]] {
        let cert = PathBuf::from(k.to_string_lossy().replace(".pub", "-cert.pub"));
        let mode = std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let listed = std::process::Command::new("ssh-keygen")
            .arg("-Lf")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(listed.status.success());
        assert!(String::from_utf8_lossy(&listed.stdout).contains("Key ID: \"bulk\""));
    }
}
