//! Interoperability with real OpenSSH, both directions:
//! certificates written by `sshca sign` are accepted by `ssh-keygen -L`, decode
//! with the ssh-key crate, and `sshca inspect --json` agrees with ssh-keygen
//! field by field; certificates written by `ssh-keygen -s` decode in
//! sshca-core with the same fields and re-encode byte-identically.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sshca_core::ssh_key;

struct Ca {
    key: PathBuf,
    sig_alg: Option<&'static str>,
    expect_alg: &'static str,
}

fn cas(dir: &Path) -> Vec<Ca> {
    let rsa = keygen(dir, "ca_rsa", "rsa", Some("2048"));
    vec![
        Ca {
            key: keygen(dir, "ca_ed", "ed25519", None),
            sig_alg: None,
            expect_alg: "ssh-ed25519",
        },
        Ca {
            key: keygen(dir, "ca_p256", "ecdsa", Some("256")),
            sig_alg: None,
            expect_alg: "ecdsa-sha2-nistp256",
        },
        Ca {
            key: keygen(dir, "ca_p384", "ecdsa", Some("384")),
            sig_alg: None,
            expect_alg: "ecdsa-sha2-nistp384",
        },
        Ca {
            key: keygen(dir, "ca_p521", "ecdsa", Some("521")),
            sig_alg: None,
            expect_alg: "ecdsa-sha2-nistp521",
        },
        Ca {
            key: rsa.clone(),
            sig_alg: Some("rsa-sha2-256"),
            expect_alg: "rsa-sha2-256",
        },
        Ca {
            key: rsa,
            sig_alg: Some("rsa-sha2-512"),
            expect_alg: "rsa-sha2-512",
        },
    ]
}

fn subjects(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = vec![
        keygen(dir, "sub_ed", "ed25519", None).with_extension("pub"),
        keygen(dir, "sub_p256", "ecdsa", Some("256")).with_extension("pub"),
        keygen(dir, "sub_p384", "ecdsa", Some("384")).with_extension("pub"),
        keygen(dir, "sub_p521", "ecdsa", Some("521")).with_extension("pub"),
        keygen(dir, "sub_rsa", "rsa", Some("2048")).with_extension("pub"),
    ];
    v.extend(sk_keys(dir));
    v
}

const OPTION_SETS: [&[&str]; 3] = [
    &[],
    &[
        "clear",
        "permit-pty",
        "force-command=/bin/echo hello world",
        "source-address=127.0.0.1/32,::1",
    ],
    &[
        "verify-required",
        "no-touch-required",
        "critical:zz@example.com=v1",
        "extension:aa@example.com",
        "extension:zz@example.com=x",
    ],
];

fn cert_path(subject: &Path, tag: &str, dir: &Path) -> PathBuf {
    // Copy the subject so each case has its own KEY-cert.pub.
    let name = format!(
        "{}_{tag}.pub",
        subject.file_stem().unwrap().to_string_lossy()
    );
    let p = dir.join(name);
    std::fs::copy(subject, &p).unwrap();
    p
}

#[test]
fn sshca_certificates_are_accepted_by_openssh() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let cas = cas(dir);
    let subjects = subjects(dir);
    let mut n = 0;
    for (ci, ca) in cas.iter().enumerate() {
        for subject in &subjects {
            for host in [false, true] {
                for (oi, opts) in OPTION_SETS.iter().enumerate() {
                    let key = cert_path(subject, &format!("{ci}_{host}_{oi}"), dir);
                    let mut cmd = sshca();
                    cmd.arg("sign").arg("--ca").arg(&ca.key).args([
                        "-I",
                        "key id with spaces",
                        "-n",
                        "alice,bob.example.com",
                        "-V",
                        "20250101:20350101",
                        "-z",
                        "12345",
                    ]);
                    if host {
                        cmd.arg("-h");
                    }
                    if let Some(t) = ca.sig_alg {
                        cmd.args(["-t", t]);
                    }
                    for o in *opts {
                        cmd.arg(format!("-O{o}"));
                    }
                    cmd.arg(&key);
                    run(&mut cmd);
                    let cert = cert_of(&key);
                    let mut theirs = keygen_list(&cert);
                    normalise_unknown(&mut theirs);
                    let ours = sshca_view(&cert);
                    assert_eq!(ours, theirs, "{}", cert.display());
                    assert_eq!(theirs.signature_algorithm, ca.expect_alg);
                    assert_eq!(theirs.cert_type, if host { "host" } else { "user" });
                    // The ssh-key crate decodes it and validates the signature.
                    let text = std::fs::read_to_string(&cert).unwrap();
                    let c = ssh_key::Certificate::from_openssh(&text).unwrap();
                    let ca_pub =
                        ssh_key::PublicKey::read_openssh_file(&ca.key.with_extension("pub"))
                            .unwrap();
                    c.validate_at(1_800_000_000, [&ca_pub.fingerprint(Default::default())])
                        .unwrap();
                    // sshca verify agrees, refusing what OpenSSH refuses: a
                    // host certificate with critical options, a user
                    // certificate with an unknown one.
                    let out = sshca()
                        .args(["verify", "--json", "--ca"])
                        .arg(ca.key.with_extension("pub"))
                        .args(["--principal", "alice", "--at", "20300101"])
                        .arg(&cert)
                        .output()
                        .unwrap();
                    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let critical = opts.iter().any(|o| {
                        [
                            "force-command",
                            "source-address",
                            "verify-required",
                            "critical:",
                        ]
                        .iter()
                        .any(|c| o.starts_with(c))
                    });
                    let expected = match (host, critical, oi) {
                        (true, true, _) => Some("host-critical-option"),
                        (false, _, 2) => Some("unknown-critical-option"),
                        _ => None,
                    };
                    assert_eq!(j["reason"].as_str(), expected, "{}: {j}", cert.display());
                    assert_eq!(out.status.success(), expected.is_none());
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 6 * 7 * 2 * 3);
}

#[test]
fn ssh_keygen_certificates_decode_and_reencode_identically() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let cas = cas(dir);
    let subjects = subjects(dir);
    for (ci, ca) in cas.iter().enumerate() {
        for subject in &subjects {
            for host in [false, true] {
                for (oi, opts) in OPTION_SETS.iter().enumerate() {
                    let key = cert_path(subject, &format!("k{ci}_{host}_{oi}"), dir);
                    let mut cmd = Command::new("ssh-keygen");
                    cmd.arg("-q").arg("-s").arg(&ca.key).args([
                        "-I",
                        "kid",
                        "-n",
                        "alice,bob",
                        "-V",
                        "20250101:20350101",
                        "-z",
                        "777",
                    ]);
                    if host {
                        cmd.arg("-h");
                    }
                    if let Some(t) = ca.sig_alg {
                        cmd.args(["-t", t]);
                    }
                    for o in *opts {
                        cmd.arg("-O").arg(o);
                    }
                    cmd.arg(&key);
                    run(&mut cmd);
                    let cert = cert_of(&key);
                    let text = std::fs::read_to_string(&cert).unwrap();
                    let decoded = sshca_core::Certificate::from_openssh(&text).unwrap();
                    assert_eq!(
                        decoded.to_openssh().unwrap(),
                        text.trim_end(),
                        "{}",
                        cert.display()
                    );
                    decoded.verify_signature().unwrap();
                    assert_eq!(decoded.serial(), 777);
                    assert_eq!(decoded.principals(), ["alice", "bob"]);
                    assert_eq!(decoded.signature().algorithm().as_str(), ca.expect_alg);
                    let mut theirs = keygen_list(&cert);
                    normalise_unknown(&mut theirs);
                    assert_eq!(sshca_view(&cert), theirs, "{}", cert.display());
                }
            }
        }
    }
}

#[test]
fn force_command_value_is_one_string() {
    // A known peer bug encodes force-command=ls as two strings "l","s".
    let d = tempfile::tempdir().unwrap();
    let ca = keygen(d.path(), "ca", "ed25519", None);
    let sub = keygen(d.path(), "sub", "ed25519", None).with_extension("pub");
    run(sshca()
        .arg("sign")
        .arg("--ca")
        .arg(&ca)
        .args([
            "-I",
            "x",
            "-V",
            "20250101:20350101",
            "-O",
            "force-command=ls",
        ])
        .arg(&sub));
    let text = std::fs::read_to_string(cert_of(&sub)).unwrap();
    let c = ssh_key::Certificate::from_openssh(&text).unwrap();
    assert_eq!(
        c.critical_options()
            .get("force-command")
            .map(String::as_str),
        Some("ls")
    );
    let ours = sshca_core::Certificate::from_openssh(&text).unwrap();
    assert_eq!(
        ours.critical_options()["force-command"],
        sshca_core::OptionValue::Text("ls".into())
    );
    // And the exact bytes: name, then data = string(string("ls")).
    let blob = ours.to_bytes().unwrap();
    let needle = b"\x00\x00\x00\x0dforce-command\x00\x00\x00\x06\x00\x00\x00\x02ls";
    assert!(blob.windows(needle.len()).any(|w| w == needle));
    assert_eq!(
        keygen_list(&cert_of(&sub)).critical_options["force-command"],
        "ls"
    );
}

#[test]
fn cli_paths_stdin_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ecdsa", Some("256"));
    // A private key path: the public key comes from KEY.pub, the certificate
    // goes to KEY-cert.pub, as with ssh-keygen.
    let user = keygen(dir, "id_user", "ed25519", None);
    run(sshca()
        .arg("sign")
        .arg("-s")
        .arg(&ca)
        .args(["-I", "u", "-V+1h"])
        .arg(&user));
    assert!(dir.join("id_user-cert.pub").exists());
    // stdin -> stdout.
    let pubkey = std::fs::read(user.with_extension("pub")).unwrap();
    let mut child = sshca()
        .arg("sign")
        .arg("--ca")
        .arg(format!("file:{}", ca.display()))
        .args(["-I", "s", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&pubkey).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("ssh-ed25519-cert-v01@openssh.com "));
    // Many keys in one run.
    let a = keygen(dir, "a", "ed25519", None).with_extension("pub");
    let b = keygen(dir, "b", "rsa", Some("2048")).with_extension("pub");
    run(sshca()
        .arg("sign")
        .arg("-s")
        .arg(&ca)
        .args(["-I", "m", "-V", "20250101:20350101"])
        .arg(&a)
        .arg(&b));
    assert!(dir.join("a-cert.pub").exists() && dir.join("b-cert.pub").exists());
    // Bad input: clear one-line errors, non-zero exit, no file written.
    let garbage = dir.join("garbage.pub");
    std::fs::write(&garbage, "not a key").unwrap();
    for (args, needle) in [
        (vec!["-V", "+1x"], "unknown unit `x`"),
        (vec!["-O", "force-command="], "empty force-command"),
        (vec!["-O", "source-address=300.1.1.1"], "not an IP address"),
        (vec!["-t", "rsa-sha2-256"], "cannot sign with rsa-sha2-256"),
        (vec!["-z", "notanumber"], "invalid value"),
    ] {
        let c2 = dir.join("c2.pub");
        std::fs::copy(&a, &c2).unwrap();
        let out = sshca()
            .arg("sign")
            .arg("-s")
            .arg(&ca)
            .args(&args)
            .arg(&c2)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !dir.join("c2-cert.pub").exists(),
            "{args:?} left a certificate"
        );
    }
    let out = sshca()
        .arg("sign")
        .arg("-s")
        .arg(&ca)
        .arg(&a)
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an OpenSSH public key"));
    assert_eq!(temp_leftovers(dir), 0, "temporary files left behind");
    // verify: wrong principal, expired, wrong CA, wrong type.
    let cert = dir.join("a-cert.pub");
    let other_ca = keygen(dir, "other", "ed25519", None);
    for (args, needle) in [
        (vec!["--principal", "mallory"], String::new()),
        (vec!["--at", "20000101"], "not yet valid".to_owned()),
        (
            vec!["--type", "host"],
            "expected a host certificate".to_owned(),
        ),
    ] {
        let out = sshca()
            .arg("verify")
            .arg("--ca")
            .arg(ca.with_extension("pub"))
            .args(&args)
            .arg(&cert)
            .output()
            .unwrap();
        // a certificate with no principals is refused for a principal, as
        // sshd refuses it, unless --any-principal
        if args[0] == "--principal" {
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains("lists no principals"));
            let out = sshca()
                .arg("verify")
                .arg("--ca")
                .arg(ca.with_extension("pub"))
                .args(&args)
                .arg("--any-principal")
                .arg(&cert)
                .output()
                .unwrap();
            assert!(out.status.success());
            continue;
        }
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&needle),
            "{args:?}"
        );
    }
    let out = sshca()
        .arg("verify")
        .arg("--ca")
        .arg(other_ca.with_extension("pub"))
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not trusted"));
    // pubkey prints the CA line and the known_hosts line.
    let out = run(sshca().arg("pubkey").arg(&ca));
    let line = String::from_utf8(out.stdout).unwrap();
    let expected = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    assert_eq!(
        line.split_whitespace().take(2).collect::<Vec<_>>(),
        expected.split_whitespace().take(2).collect::<Vec<_>>()
    );
    let out = run(sshca()
        .args(["pubkey", "--known-hosts", "*.example.com"])
        .arg(&ca));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("@cert-authority *.example.com ecdsa-sha2-nistp256 "));
}
