//! `sshca keygen`, `key public|info|match|passphrase` and `expires`, checked
//! against ssh-keygen in both directions, with bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn pubkey_of(private: &Path, passphrase: &str) -> String {
    let out = run(Command::new("ssh-keygen")
        .args(["-y", "-P", passphrase, "-f"])
        .arg(private));
    let s = String::from_utf8(out.stdout).unwrap();
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn first_two(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fails_with(cmd: &mut Command, needle: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    assert!(err.contains(needle), "{cmd:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
}

#[test]
fn keygen_keys_load_in_ssh_keygen() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let pw = dir.join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("ed25519", None, "ssh-ed25519"),
        ("ecdsa", None, "ecdsa-sha2-nistp256"),
        ("ecdsa", Some("384"), "ecdsa-sha2-nistp384"),
        ("ecdsa", Some("521"), "ecdsa-sha2-nistp521"),
        ("rsa", Some("2048"), "ssh-rsa"),
        ("rsa", None, "ssh-rsa"),
    ];
    for (i, (t, bits, alg)) in cases.iter().enumerate() {
        for encrypted in [false, true] {
            let path = dir.join(format!("k{i}_{encrypted}"));
            let mut cmd = sshca();
            cmd.args(["keygen", "-t", t, "-C", "made-by-sshca"]);
            if let Some(b) = bits {
                cmd.args(["-b", b]);
            }
            if encrypted {
                cmd.arg("--passphrase-file").arg(&pw);
            }
            run(cmd.arg(&path));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            let pub_line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
            assert!(pub_line.starts_with(alg), "{pub_line}");
            assert!(pub_line.trim_end().ends_with("made-by-sshca"));
            let pass = if encrypted { "correct horse" } else { "" };
            assert_eq!(
                pubkey_of(&path, pass),
                first_two(&path.with_extension("pub"))
            );
            if encrypted {
                let out = Command::new("ssh-keygen")
                    .args(["-y", "-P", "wrong", "-f"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    !out.status.success(),
                    "ssh-keygen decrypted with a wrong passphrase"
                );
            }
            if *t == "rsa" && bits.is_none() {
                let out = run(Command::new("ssh-keygen")
                    .arg("-l")
                    .arg("-f")
                    .arg(path.with_extension("pub")));
                assert!(String::from_utf8_lossy(&out.stdout).starts_with("3072 "));
            }
            // The key signs certificates that ssh-keygen accepts.
            let subject =
                keygen(dir, &format!("s{i}_{encrypted}"), "ed25519", None).with_extension("pub");
            let mut uri = format!("file:{}", path.display());
            if encrypted {
                uri.push_str(&format!("?passphrase-file={}", pw.display()));
            }
            run(sshca()
                .args(["sign", "--ca", &uri, "-I", "k", "-V", "+1h"])
                .arg(&subject));
            keygen_list(&cert_of(&subject));
        }
    }
    // Never overwrites without --force; --force does.
    let p = dir.join("k0_false");
    let before = std::fs::read(&p).unwrap();
    fails_with(sshca().arg("keygen").arg(&p), "already exists");
    assert_eq!(std::fs::read(&p).unwrap(), before);
    run(sshca().args(["keygen", "--force"]).arg(&p));
    assert_ne!(std::fs::read(&p).unwrap(), before);
    // Bad type or size: clear error, nothing written.
    let q = dir.join("never");
    fails_with(
        sshca().args(["keygen", "-t", "ecdsa", "-b", "300"]).arg(&q),
        "256, 384 or 521",
    );
    fails_with(
        sshca().args(["keygen", "-t", "dsa"]).arg(&q),
        "unknown key type `dsa`",
    );
    fails_with(
        sshca()
            .args(["keygen", "-N"])
            .arg(&q)
            .env_remove("SSHCA_PASSPHRASE"),
        "SSHCA_PASSPHRASE",
    );
    assert!(!q.exists() && !dir.join("never.pub").exists());
    // -N takes the passphrase from the environment.
    run(sshca()
        .args(["keygen", "-N"])
        .arg(&q)
        .env("SSHCA_PASSPHRASE", "from env"));
    assert_eq!(pubkey_of(&q, "from env"), first_two(&dir.join("never.pub")));
}

#[test]
fn key_subcommands_on_ssh_keygen_material() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ed25519", None);
    let user = keygen(dir, "user", "rsa", Some("2048"));
    let other = keygen(dir, "other", "ecdsa", Some("384"));
    let enc = dir.join("enc");
    run(Command::new("ssh-keygen")
        .args([
            "-q", "-t", "ecdsa", "-b", "521", "-N", "sekrit", "-C", "enc-key", "-f",
        ])
        .arg(&enc));
    let pw = dir.join("pw");
    std::fs::write(&pw, "sekrit\n").unwrap();
    run(Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(&ca)
        .args(["-I", "u", "-n", "u", "-V", "-1h:+1h"])
        .arg(user.with_extension("pub")));
    let cert = dir.join("user-cert.pub");

    // key public: from a private key, a public key, a certificate, an encrypted key, a URI.
    for (r, expected) in [
        (user.clone(), user.with_extension("pub")),
        (user.with_extension("pub"), user.with_extension("pub")),
        (cert.clone(), user.with_extension("pub")),
    ] {
        let out = run(sshca().args(["key", "public"]).arg(&r));
        let got: String = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(got, first_two(&expected), "{}", r.display());
    }
    let out = run(sshca()
        .args(["key", "public", "--passphrase-file"])
        .arg(&pw)
        .arg(&enc));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .ends_with("enc-key"));
    let out = run(sshca()
        .args(["key", "public"])
        .arg(format!("file:{}", ca.display())));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        first_two(&ca.with_extension("pub"))
    );
    fails_with(
        sshca()
            .args(["key", "public"])
            .arg(&enc)
            .env_remove("SSHCA_PASSPHRASE"),
        "passphrase",
    );

    // key info agrees with ssh-keygen -l (SHA256 and MD5).
    let out = run(sshca().args(["key", "info", "--md5"]).arg(&user));
    let info = String::from_utf8(out.stdout).unwrap();
    let l256 = String::from_utf8(
        run(Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(user.with_extension("pub")))
        .stdout,
    )
    .unwrap();
    let lmd5 = String::from_utf8(
        run(Command::new("ssh-keygen")
            .args(["-l", "-E", "md5", "-f"])
            .arg(user.with_extension("pub")))
        .stdout,
    )
    .unwrap();
    assert!(
        info.contains(&format!("fingerprint: {}", l256.split(' ').nth(1).unwrap())),
        "{info}"
    );
    assert!(
        info.contains(&format!(
            "fingerprint-md5: {}",
            lmd5.split(' ').nth(1).unwrap()
        )),
        "{info}"
    );
    assert!(
        info.contains("size: 2048")
            && info.contains("algorithm: ssh-rsa")
            && info.contains("comment: user"),
        "{info}"
    );
    let out = run(sshca()
        .args(["key", "info", "--passphrase-file"])
        .arg(&pw)
        .arg(&enc));
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(
        info.contains("curve: nistp521") && info.contains("comment: enc-key"),
        "{info}"
    );

    // key match: private vs public key and certificate.
    run(sshca()
        .args(["key", "match"])
        .arg(&user)
        .arg(user.with_extension("pub")));
    run(sshca().args(["key", "match"]).arg(&user).arg(&cert));
    let out = sshca()
        .args(["key", "match"])
        .arg(&other)
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not belong"));
    fails_with(
        sshca()
            .args(["key", "match"])
            .arg(user.with_extension("pub"))
            .arg(&cert),
        "not a private key",
    );

    // Garbage input.
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, "not a key at all").unwrap();
    fails_with(
        sshca().args(["key", "info"]).arg(&garbage),
        "not a public key, certificate or private key",
    );
    fails_with(
        sshca().args(["key", "public"]).arg(dir.join("missing")),
        "no such file",
    );

    // key passphrase: wrong old passphrase changes nothing; a change works in ssh-keygen.
    let before = std::fs::read(&enc).unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let newpw = dir.join("newpw");
    std::fs::write(&newpw, "brand new\n").unwrap();
    fails_with(
        sshca()
            .args(["key", "passphrase", "--old-passphrase-file"])
            .arg(&wrong)
            .arg("--new-passphrase-file")
            .arg(&newpw)
            .arg(&enc),
        "wrong passphrase",
    );
    assert_eq!(std::fs::read(&enc).unwrap(), before);
    run(sshca()
        .args(["key", "passphrase", "--old-passphrase-file"])
        .arg(&pw)
        .arg("--new-passphrase-file")
        .arg(&newpw)
        .arg(&enc));
    assert_eq!(
        pubkey_of(&enc, "brand new"),
        first_two(&enc.with_extension("pub"))
    );
    assert_eq!(
        std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    run(sshca()
        .args(["key", "passphrase", "--old-passphrase-file"])
        .arg(&newpw)
        .arg("--no-passphrase")
        .arg(&enc));
    assert_eq!(pubkey_of(&enc, ""), first_two(&enc.with_extension("pub")));
    assert_eq!(temp_leftovers(dir), 0);

    // verify --ca accepts a private key file as the CA reference.
    run(sshca().arg("verify").arg("--ca").arg(&ca).arg(&cert));
}

#[test]
fn expires_for_renewal_jobs() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "ca", "ed25519", None);
    let k = keygen(dir, "k", "ed25519", None).with_extension("pub");
    run(sshca()
        .arg("sign")
        .arg("--ca")
        .arg(&ca)
        .args(["-I", "x", "-V", "-1m:+1h"])
        .arg(&k));
    let cert = dir.join("k-cert.pub");
    for (within, code) in [
        ("2h", 0),
        ("1.5h", 0),
        ("30m", 1),
        ("0", 1),
        ("7200", 0),
        ("1h30m", 0),
    ] {
        let out = sshca()
            .args(["expires", "--within", within])
            .arg(&cert)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "--within {within}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("expires in"));
    }
    run(sshca()
        .arg("sign")
        .arg("--ca")
        .arg(&ca)
        .args(["-I", "x", "-V", "20200101:20200102"])
        .arg(&k));
    let out = sshca().arg("expires").arg(&cert).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("expired"));
    fails_with(
        sshca().args(["expires", "--within", "soon"]).arg(&cert),
        "--within",
    );
    fails_with(sshca().arg("expires").arg(&k), "malformed certificate");
}
