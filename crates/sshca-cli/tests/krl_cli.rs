//! Revocation, KRLs and CA rotation against OpenSSH: KRLs from `sshca krl
//! build` checked by `ssh-keygen -Q` and by sshd (`RevokedKeys`), compared
//! with the KRL ssh-keygen writes for the same revocations, signatures
//! checked by `ssh-keygen -Y verify`; the service's revoke and KRL
//! endpoints with `sshca krl fetch`; a CA rotation with sshd from first
//! publication to retirement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};
use serve_support::*;

fn sshca_in(config: &Path) -> Command {
    let mut c = sshca();
    c.arg("--config").arg(config);
    c
}

/// Signs KEY.pub with the file CA at `ca`: serial, key id, principal `me`.
fn sign_cert(ca: &Path, key: &Path, serial: u64, key_id: &str) -> PathBuf {
    run(sshca()
        .args(["sign", "-q", "-I", key_id, "-n", &user(), "-z"])
        .arg(serial.to_string())
        .arg("--ca")
        .arg(format!("file:{}", ca.display()))
        .arg(key.with_extension("pub")));
    cert_of(&key.with_extension("pub"))
}

/// Runs a revocation check (exit 0: not revoked, 1: revoked).
fn says_revoked(cmd: &mut Command) -> bool {
    let out = cmd.output().unwrap();
    match out.status.code() {
        Some(0) => false,
        Some(1) => true,
        other => panic!(
            "{cmd:?}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `ssh-keygen -Q -f KRL FILE`: true when revoked.
fn keygen_says_revoked(krl: &Path, file: &Path) -> bool {
    says_revoked(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(krl)
            .arg(file),
    )
}

/// `sshca krl check KRL FILE`: true when revoked.
fn sshca_says_revoked(krl: &Path, file: &Path) -> bool {
    says_revoked(sshca().args(["krl", "check"]).arg(krl).arg(file))
}

fn login(sshd: &Sshd, dir: &Path, key: &Path, cert: &Path, known_hosts: &Path) -> Output {
    ssh(sshd, dir, key, cert, known_hosts, "echo krl-login-ok")
}

fn assert_login(ok: bool, out: &Output, dir: &Path, what: &str) {
    assert_eq!(
        out.status.success(),
        ok,
        "{what}: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

#[test]
fn krls_agree_with_ssh_keygen_and_sshd() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = keygen(dir, "user_ca", "ed25519", None);
    let config = dir.join("sshca.toml");
    std::fs::write(
        &config,
        format!(
            "[ca.users]\nkey = \"file:{}\"\n[server]\ndata_dir = \"{}\"\n",
            ca.display(),
            dir.display()
        ),
    )
    .unwrap();
    let revoke = |args: &[&str]| {
        run(sshca_in(&config)
            .args(["revoke", "--ca", "users", "--reason", "test"])
            .args(args))
    };

    // Revocations of every kind; the certificates they must (or must not) hit.
    let mut spec = String::new();
    let mut revoked = Vec::new();
    let mut kept = Vec::new();
    revoke(&["--serial", "10"]);
    spec.push_str("serial: 10\n");
    revoke(&["--serial", "4000-6000"]);
    spec.push_str("serial: 4000-6000\n");
    for s in (20_000..20_090u64).step_by(3) {
        revoke(&["--serial", &s.to_string()]);
        spec.push_str(&format!("serial: {s}\n"));
    }
    revoke(&["--key-id", "bob-laptop"]);
    spec.push_str("id: bob-laptop\n");
    let lost = keygen(dir, "lost", "ecdsa", None);
    revoke(&["--key", lost.with_extension("pub").to_str().unwrap()]);
    spec.push_str(&format!(
        "hash: {}\n",
        String::from_utf8_lossy(
            &run(Command::new("ssh-keygen")
                .arg("-lf")
                .arg(lost.with_extension("pub")))
            .stdout
        )
        .split_whitespace()
        .nth(1)
        .unwrap()
    ));
    for (name, serial, id) in [
        ("list", 10, "a"),
        ("range", 5_000, "b"),
        ("bitmap", 20_003, "c"),
        ("keyid", 77, "bob-laptop"),
    ] {
        let k = keygen(dir, name, "ed25519", None);
        revoked.push((k.clone(), sign_cert(&ca, &k, serial, id)));
    }
    revoked.push((lost.clone(), sign_cert(&ca, &lost, 78, "lost")));
    for (name, serial) in [("next-to-range", 6_001), ("gap", 20_004), ("other", 11)] {
        let k = keygen(dir, name, "ed25519", None);
        kept.push((k.clone(), sign_cert(&ca, &k, serial, name)));
    }

    let krl = dir.join("revoked.krl");
    let out = run(sshca_in(&config)
        .args(["krl", "build", "--ca", "users", "-o"])
        .arg(&krl));
    assert!(String::from_utf8_lossy(&out.stdout).contains("KRL version"));
    for (_, cert) in &revoked {
        assert!(
            keygen_says_revoked(&krl, cert),
            "{} not revoked",
            cert.display()
        );
        assert!(sshca_says_revoked(&krl, cert));
    }
    for (_, cert) in &kept {
        assert!(
            !keygen_says_revoked(&krl, cert),
            "{} revoked",
            cert.display()
        );
        assert!(!sshca_says_revoked(&krl, cert));
    }
    // The key itself, certificates or not.
    assert!(keygen_says_revoked(&krl, &lost.with_extension("pub")));

    // The same revocations written by ssh-keygen: read by sshca with the same
    // answers, and no smaller than ours (beyond our comment).
    let spec_path = dir.join("spec");
    std::fs::write(&spec_path, &spec).unwrap();
    let reference = dir.join("reference.krl");
    run(Command::new("ssh-keygen")
        .args(["-k", "-f"])
        .arg(&reference)
        .arg("-s")
        .arg(ca.with_extension("pub"))
        .arg(&spec_path));
    for (_, cert) in &revoked {
        assert!(sshca_says_revoked(&reference, cert));
    }
    for (_, cert) in &kept {
        assert!(!sshca_says_revoked(&reference, cert));
    }
    let ours = std::fs::metadata(&krl).unwrap().len();
    let theirs = std::fs::metadata(&reference).unwrap().len();
    let comment = "sshca CA users".len() as u64;
    assert!(
        ours - comment <= theirs,
        "ours {ours} bytes, ssh-keygen's {theirs}"
    );
    let j: Value = serde_json::from_slice(
        &run(sshca().args(["krl", "inspect", "--json"]).arg(&reference)).stdout,
    )
    .unwrap();
    assert_eq!(j["certificates"][0]["key_ids"], json!(["bob-laptop"]));
    assert_eq!(j["sha256"].as_array().unwrap().len(), 1);
    let text = String::from_utf8(run(sshca().args(["krl", "inspect"]).arg(&krl)).stdout).unwrap();
    assert!(
        text.contains("serial: 4000-6000") && text.contains("id: bob-laptop"),
        "{text}"
    );

    // The detached signature verifies with ssh-keygen -Y.
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    let allowed = dir.join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("krl@example.com namespaces=\"sshca-krl\" {ca_pub}"),
    )
    .unwrap();
    let verify = |file: &Path| {
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "krl@example.com", "-n", "sshca-krl", "-s"])
            .arg(krl.with_extension("krl.sig"))
            .stdin(std::fs::File::open(file).unwrap())
            .output()
            .unwrap()
    };
    let v = verify(&krl);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(
        !verify(&reference).status.success(),
        "signature over another file accepted"
    );

    // Versions rise with every build.
    let version = |p: &Path| {
        let j: Value =
            serde_json::from_slice(&run(sshca().args(["krl", "inspect", "--json"]).arg(p)).stdout)
                .unwrap();
        j["krl_version"].as_u64().unwrap()
    };
    let v1 = version(&krl);
    run(sshca_in(&config)
        .args(["krl", "build", "--ca", "users", "-o"])
        .arg(&krl));
    assert!(version(&krl) > v1);

    // sshd with RevokedKeys: a revoked certificate is refused, another is not.
    let ca_line = dir.join("trusted_user_ca.pub");
    std::fs::write(&ca_line, &ca_pub).unwrap();
    let (sshd, known_hosts) =
        sshd_trusting_with(dir, &ca_line, &format!("RevokedKeys {}\n", krl.display()));
    let (k, c) = &kept[2];
    assert_login(
        true,
        &login(&sshd, dir, k, c, &known_hosts),
        dir,
        "kept certificate",
    );
    for (k, c) in &revoked[..2] {
        assert_login(
            false,
            &login(&sshd, dir, k, c, &known_hosts),
            dir,
            "revoked certificate",
        );
    }

    // Bad input: clear errors, nothing recorded.
    for (args, needle) in [
        (&["--serial", "0"][..], "serial 0"),
        (&["--serial", "9-3"][..], "ends before it starts"),
        (&["--key-id", "a\u{1b}b"][..], "key id"),
    ] {
        let out = sshca_in(&config)
            .args(["revoke", "--ca", "users"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = sshca_in(&config)
        .args(["revoke", "--ca", "nope", "--serial", "5"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no CA named `nope`"));
    let garbage = dir.join("garbage.krl");
    std::fs::write(&garbage, b"SSHKRL\n\0\0\0\0\x01trunc").unwrap();
    let out = sshca()
        .args(["krl", "inspect"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbage.krl"));
}

/// `sshca krl fetch` against the service: the KRL before and after a
/// revocation (the HTTP API's own statuses are tested in
/// `crates/sshca-server/tests/revoke.rs`).
#[test]
fn krl_fetch_follows_the_service() {
    let s = setup("", None);
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let dir = &s.dir;
    let key = pubkey(dir, "id_revoked");
    let (status, body, _) = rt.block_on(sign(
        &c,
        &svc,
        "ci",
        Some(&s.ci),
        &json!({"public_key": key}),
    ));
    assert_eq!(status, 200, "{body}");
    let cert_line = body["certificate"].as_str().unwrap().to_owned();
    let serial: u64 = body["serial"].as_str().unwrap().parse().unwrap();
    let cert = dir.join("revoked-cert.pub");
    std::fs::write(&cert, format!("{cert_line}\n")).unwrap();

    let post = |token: &str, body: Value| {
        rt.block_on(async {
            let r = c
                .post(format!("{}/v1/revoke", svc.url))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    // The KRL before and after the revocation.
    let fetch = |out: &Path| {
        sshca()
            .args(["krl", "fetch", "--server", &svc.url, "--ca", "users", "-o"])
            .arg(out)
            .arg("--server-ca")
            .arg(&s.pki.tls_ca)
            .arg("--verify-with")
            .arg(dir.join("bundle.pub"))
            .output()
            .unwrap()
    };
    let (st, bundle) = rt.block_on(get(&c, &svc, "/v1/ca/users", None));
    assert_eq!(st, 200);
    assert!(bundle.contains("(current)"), "{bundle}");
    std::fs::write(dir.join("bundle.pub"), &bundle).unwrap();
    let krl = dir.join("fetched.krl");
    let out = fetch(&krl);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!keygen_says_revoked(&krl, &cert));

    let (st, b) = post(
        &s.admin,
        json!({"ca": "users", "serial": serial.to_string(), "reason": "laptop stolen"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["revoked"]["revoked_by"], "admin");
    let out = fetch(&krl);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(keygen_says_revoked(&krl, &cert));
    let v = run(Command::new("ssh-keygen")
        .args(["-Y", "check-novalidate", "-n", "sshca-krl", "-s"])
        .arg(krl.with_extension("krl.sig"))
        .stdin(std::fs::File::open(&krl).unwrap()));
    assert!(v.status.success());
    // Fetched again unchanged: nothing rewritten.
    let out = fetch(&krl);
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));

    // A KRL that does not verify, or an older one, leaves the file alone.
    let before = std::fs::read(&krl).unwrap();
    std::fs::write(dir.join("bundle.pub"), pubkey(dir, "stranger")).unwrap();
    let out = fetch(&krl);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--verify-with"));
    assert_eq!(std::fs::read(&krl).unwrap(), before);
    std::fs::write(dir.join("bundle.pub"), &bundle).unwrap();

    // A forged KRL left in place with a huge version (a rogue endpoint, an
    // earlier unverified fetch) pins nothing: its signature does not
    // verify, so the genuine KRL replaces it.
    let forged = dir.join("forged.krl");
    run(Command::new("ssh-keygen")
        .args(["-k", "-z", "18446744073709551000", "-f"])
        .arg(&forged)
        .arg("/dev/null"));
    std::fs::copy(&forged, &krl).unwrap();
    let out = fetch(&krl);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(keygen_says_revoked(&krl, &cert));

    // A genuine newer KRL in place (signed by the CA): the service's older
    // one is refused and the files are left alone.
    let newer = dir.join("newer.krl");
    let built = run(sshca_in(&s.config)
        .args(["krl", "build", "--ca", "users", "-o"])
        .arg(&newer));
    assert!(built.status.success());
    std::fs::copy(&newer, &krl).unwrap();
    std::fs::copy(
        newer.with_extension("krl.sig"),
        krl.with_extension("krl.sig"),
    )
    .unwrap();
    let out = fetch(&krl);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("older"));
    assert_eq!(std::fs::read(&krl).unwrap(), std::fs::read(&newer).unwrap());

    // --verify-with is required unless verification is refused outright.
    let out = sshca()
        .args(["krl", "fetch", "--server", &svc.url, "--ca", "users", "-o"])
        .arg(dir.join("unverified.krl"))
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--verify-with"));
    assert!(!dir.join("unverified.krl").exists());
    let out = sshca()
        .args([
            "krl",
            "fetch",
            "--insecure-no-verify",
            "--server",
            &svc.url,
            "--ca",
            "users",
            "-o",
        ])
        .arg(dir.join("unverified.krl"))
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A KRL signed by a trusted key that also revokes for a key that is not
    // trusted (here the CA's `next` key, left out of the bundle): refused.
    let next_ca = keygen(dir, "next_ca", "ed25519", None);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let with_next = dir.join("with-next.toml");
    std::fs::write(
        &with_next,
        text.replace(
            "[ca.users]\n",
            &format!("[ca.users]\nnext = [\"file:{}\"]\n", next_ca.display()),
        ),
    )
    .unwrap();
    let svc2 = Service::start(dir, &with_next);
    let out = sshca()
        .args(["krl", "fetch", "--server", &svc2.url, "--ca", "users", "-o"])
        .arg(dir.join("foreign.krl"))
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .arg("--verify-with")
        .arg(dir.join("bundle.pub"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in --verify-with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("foreign.krl").exists());
    drop(svc2);

    // The audit table says who revoked what and why.
    let audit = run(sshca_in(&s.config).args(["audit", "--json"]));
    let rows: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(rows.iter().any(|r| r["code"] == "revoked"
        && r["identity"] == "admin"
        && r["reason"].as_str().unwrap().contains("laptop stolen")));
}

#[test]
fn ca_rotation_with_sshd_from_publication_to_retirement() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let old = keygen(dir, "ca_old", "ed25519", None);
    let new = keygen(dir, "ca_new", "ecdsa", None);
    let config = dir.join("sshca.toml");
    std::fs::write(
        &config,
        format!(
            "# the user CA\n[ca.users]\nkey = \"file:{}\"\nnext = [\"file:{}\"]\n\n[server]\ndata_dir = \"{}\"\n",
            old.display(),
            new.display(),
            dir.display()
        ),
    )
    .unwrap();
    let trusted = dir.join("trusted_user_cas.pub");
    let publish = || {
        let out = run(sshca_in(&config).args(["pubkey", "--all", "--ca", "users"]));
        std::fs::write(&trusted, &out.stdout).unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // 1. Publish current + next; sshd trusts both.
    let bundle = publish();
    assert!(
        bundle.contains("(current)") && bundle.contains("(next)"),
        "{bundle}"
    );
    let (sshd, known_hosts) = sshd_trusting(dir, &trusted);
    let k_old = keygen(dir, "id_old", "ed25519", None);
    let c_old = sign_cert(&old, &k_old, 1, "before-rotation");
    assert_login(
        true,
        &login(&sshd, dir, &k_old, &c_old, &known_hosts),
        dir,
        "old CA",
    );

    // 2. Rotate: the next key signs; the config keeps its comment.
    let out = run(sshca_in(&config).args(["ca", "rotate", "users"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("retired"));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# the user CA"), "{text}");
    assert!(
        text.contains(&format!("key = \"file:{}\"", new.display())),
        "{text}"
    );
    let current = run(sshca_in(&config).args(["pubkey", "--ca", "users"])).stdout;
    assert_eq!(
        String::from_utf8_lossy(&current).split_whitespace().nth(1),
        std::fs::read_to_string(new.with_extension("pub"))
            .unwrap()
            .split_whitespace()
            .nth(1)
    );
    // Rotating again with no next key is refused, the file untouched.
    let out = sshca_in(&config)
        .args(["ca", "rotate", "users"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `next` key"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // 3. Overlap: the bundle holds the new and the retired key; both
    // certificates are accepted.
    let bundle = publish();
    assert!(bundle.contains("(retired)"), "{bundle}");
    let k_new = keygen(dir, "id_new", "ed25519", None);
    let c_new = sign_cert(&new, &k_new, 2, "after-rotation");
    assert_login(
        true,
        &login(&sshd, dir, &k_new, &c_new, &known_hosts),
        dir,
        "new CA",
    );
    assert_login(
        true,
        &login(&sshd, dir, &k_old, &c_old, &known_hosts),
        dir,
        "retired CA in overlap",
    );

    // 4. Revoking the retired CA key: its certificates are refused through
    // the KRL while the bundle still holds it.
    run(sshca_in(&config)
        .args(["revoke", "--ca", "users", "--ca-key"])
        .arg(old.with_extension("pub")));
    let krl = dir.join("users.krl");
    run(sshca_in(&config)
        .args(["krl", "build", "--ca", "users", "-o"])
        .arg(&krl));
    assert!(keygen_says_revoked(&krl, &c_old));
    assert!(!keygen_says_revoked(&krl, &c_new));
    drop(sshd);
    let d2 = dir.join("sshd-with-krl");
    std::fs::create_dir(&d2).unwrap();
    let (sshd, known_hosts) =
        sshd_trusting_with(&d2, &trusted, &format!("RevokedKeys {}\n", krl.display()));
    assert_login(
        false,
        &login(&sshd, dir, &k_old, &c_old, &known_hosts),
        dir,
        "revoked CA key",
    );
    assert_login(
        true,
        &login(&sshd, dir, &k_new, &c_new, &known_hosts),
        dir,
        "new CA, KRL on",
    );
    drop(sshd);

    // 5. Retired for good: dropped from the config, the bundle no longer
    // holds it, and sshd refuses its certificates with no KRL at all.
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("retired"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();
    let bundle = publish();
    assert_eq!(bundle.lines().count(), 1, "{bundle}");
    let d3 = dir.join("sshd-after-retirement");
    std::fs::create_dir(&d3).unwrap();
    let (sshd, known_hosts) = sshd_trusting(&d3, &trusted);
    assert_login(
        false,
        &login(&sshd, dir, &k_old, &c_old, &known_hosts),
        dir,
        "retired CA",
    );
    assert_login(
        true,
        &login(&sshd, dir, &k_new, &c_new, &known_hosts),
        dir,
        "current CA",
    );
}
