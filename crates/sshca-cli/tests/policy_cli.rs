//! Config file and signing policies through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::*;

fn config(dir: &Path, policies: &str) -> std::path::PathBuf {
    let ca = dir.join("ca");
    if !ca.exists() {
        keygen(dir, "ca", "ed25519", None);
    }
    let p = dir.join("sshca.toml");
    std::fs::write(
        &p,
        format!("[ca.users]\nkey = \"file:{}\"\n\n{policies}", ca.display()),
    )
    .unwrap();
    p
}

fn check_err(dir: &Path, policies: &str, needles: &[&str]) {
    let cfg = config(dir, policies);
    let out = sshca()
        .arg("--config")
        .arg(&cfg)
        .args(["policy", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {policies}");
    for n in needles {
        assert!(err.contains(n), "{policies}\n--> {err}");
    }
    assert!(err.contains("sshca.toml"), "{err}");
}

#[test]
fn config_errors_name_file_policy_and_field() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let base = "[policy.dev]\nca = \"users\"\n";
    check_err(
        dir,
        &format!("{base}colour = \"blue\"\n"),
        &["policy `dev`", "unknown field `colour`"],
    );
    check_err(
        dir,
        &format!("{base}allowed_valid_principals = [\"a[b]\"]\n"),
        &["policy `dev`", "allowed_valid_principals"],
    );
    check_err(
        dir,
        &format!("{base}critical_options = {{ \"source-address\" = \"10.0.0.0/40\" }}\n"),
        &["policy `dev`", "critical_options", "prefix"],
    );
    check_err(
        dir,
        &format!("{base}critical_options = {{ \"force-command\" = \"\" }}\n"),
        &["force-command is empty"],
    );
    check_err(
        dir,
        &format!(
            "{base}allowed_valid_principals = [\"alice\"]\ndefault_valid_principals = [\"bob\"]\n"
        ),
        &["default_valid_principals", "`bob`"],
    );
    check_err(
        dir,
        &format!("{base}ttl = \"8h\"\nmax_ttl = \"1h\"\n"),
        &["field `ttl`", "max_ttl"],
    );
    check_err(dir, &format!("{base}ttl = \"soon\"\n"), &["field `ttl`"]);
    check_err(
        dir,
        "[policy.dev]\nca = \"nobody\"\n",
        &["policy `dev`", "field `ca`", "`nobody`"],
    );
    check_err(
        dir,
        &format!("{base}cert_type = \"robot\"\n"),
        &["cert_type"],
    );
    check_err(
        dir,
        &format!("{base}on_disallowed = \"ignore\"\n"),
        &["on_disallowed"],
    );
    check_err(
        dir,
        &format!("{base}allowed_key_types = [\"ssh-dss\"]\n"),
        &["allowed_key_types", "ssh-dss"],
    );
    check_err(dir, "[cas.x]\nkey = \"y\"\n", &["unknown field `cas`"]);
    check_err(
        dir,
        "[ca.bad]\nkey = \"nocolon\"\n",
        &["ca `bad`", "field `key`"],
    );
}

const EXAMPLE: &str = r#"
[policy.dev]
ca = "users"
cert_type = "user"
allowed_valid_principals = ["alice", "bob", "deploy-*"]
default_valid_principals = ["alice"]
critical_options = { "force-command" = "/usr/bin/true" }
default_extensions = { "permit-pty" = "" }
allowed_extensions = ["permit-pty", "permit-port-forwarding"]
ttl = "1h"
max_ttl = "8h"
requesters = ["ci-*"]
key_id = "{requester}/{policy}/{serial}"
allow_serial = true
"#;

#[test]
fn signing_under_a_policy() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let issued = dir.join("issued");
    let cfg = config(
        dir,
        &format!("{EXAMPLE}issued_dir = \"{}\"\n", issued.display()),
    );
    let out = run(sshca().arg("--config").arg(&cfg).args(["policy", "check"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 CAs, 1 policies)"));
    let out = run(sshca()
        .arg("--config")
        .arg(&cfg)
        .args(["policy", "show", "--json", "dev"]));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ttl"], 3600);
    assert_eq!(j["max_ttl"], 8 * 3600);
    assert_eq!(j["critical_options"]["force-command"], "/usr/bin/true");

    let key = keygen(dir, "id", "ed25519", None).with_extension("pub");
    let sign = |args: &[&str]| {
        sshca()
            .arg("--config")
            .arg(&cfg)
            .args(["sign", "--policy", "dev"])
            .args(args)
            .arg(&key)
            .output()
            .unwrap()
    };
    // Defaults fill what was not requested; forced values win.
    let out = sign(&["--requester", "ci-7", "-z", "100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = dir.join("id-cert.pub");
    let v = keygen_list(&cert);
    assert_eq!(v.principals, ["alice"]);
    assert_eq!(v.key_id, "ci-7/dev/100");
    assert_eq!(v.critical_options["force-command"], "/usr/bin/true");
    assert_eq!(v.extensions.keys().collect::<Vec<_>>(), ["permit-pty"]);
    let c =
        sshca_core::Certificate::from_openssh(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    assert!(c.valid_before() - c.valid_after() <= 3600 + 300);
    // The issued copy is byte-identical.
    assert_eq!(
        std::fs::read(issued.join("100.crt")).unwrap(),
        std::fs::read(&cert).unwrap()
    );
    // Never overwritten: the same serial again is an error and no new certificate.
    let before = std::fs::read(&cert).unwrap();
    let out = sign(&["--requester", "ci-7", "-z", "100"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("100.crt already exists"));
    assert_eq!(std::fs::read(&cert).unwrap(), before);

    // Requested values only where allowed; reject names the culprit.
    for (args, needle) in [
        (
            vec!["--requester", "ci-7", "-n", "alice,root"],
            "principal `root` is not allowed",
        ),
        (
            vec!["--requester", "mallory"],
            "requester `local:mallory` is not allowed",
        ),
        (
            vec!["--requester", "ci-7", "-O", "permit-X11-forwarding"],
            "extension `permit-X11-forwarding` is not allowed",
        ),
        (vec!["--requester", "ci-7", "-V", "+1d"], "max_ttl allows"),
        (
            vec!["--requester", "ci-7", "-V", "always:forever"],
            "backdating",
        ),
        (
            vec!["--requester", "ci-7", "-h"],
            "issues user certificates",
        ),
    ] {
        let out = sign(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = sign(&[
        "--requester",
        "ci-7",
        "-n",
        "deploy-3,bob",
        "-V",
        "-1m:+4h",
        "-O",
        "clear",
        "-O",
        "permit-port-forwarding",
        "-O",
        "force-command=/bin/sh",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("`force-command` forced by the policy"));
    let v = keygen_list(&cert);
    assert_eq!(v.principals, ["deploy-3", "bob"]);
    assert_eq!(v.critical_options["force-command"], "/usr/bin/true");
    assert_eq!(
        v.extensions.keys().collect::<Vec<_>>(),
        ["permit-port-forwarding"]
    );
    let issued_count = std::fs::read_dir(&issued).unwrap().count();
    assert_eq!(issued_count, 2);

    // on_disallowed = "drop": dropped and clamped, with notes.
    let cfg2 = config(
        dir,
        &EXAMPLE.replace(
            "requesters = [\"ci-*\"]",
            "requesters = [\"ci-*\"]\non_disallowed = \"drop\"",
        ),
    );
    let out = sshca()
        .arg("--config")
        .arg(&cfg2)
        .args([
            "sign",
            "--policy",
            "dev",
            "--requester",
            "ci-1",
            "-n",
            "alice,root",
            "-V",
            "+2d",
        ])
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("dropped `root`") && err.contains("clamped"),
        "{err}"
    );
    let c =
        sshca_core::Certificate::from_openssh(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    assert_eq!(c.principals(), ["alice"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(c.valid_before() <= now + 8 * 3600 + 5);
    assert!(c.valid_before() >= now + 8 * 3600 - 60);

    // Unknown policy.
    let out = sshca()
        .arg("--config")
        .arg(&cfg)
        .args(["sign", "--policy", "nope"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no policy named `nope`"));
}

#[test]
fn readme_example_config_is_accepted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Signing policies")
        .nth(1)
        .expect("README has a policy section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("sshca.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = run(sshca().arg("--config").arg(&cfg).args(["policy", "check"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok (1 CAs, 2 policies)"), "{text}");
    assert!(
        text.contains("[policy.dev]") && text.contains("min_rsa_bits = 3072"),
        "{text}"
    );
}

#[test]
fn policy_check_validates_the_service_tables_and_warns_about_changed_defaults() {
    let d = tempfile::tempdir().unwrap();
    let ca = keygen(d.path(), "ca", "ed25519", None);
    let cfg = d.path().join("sshca.toml");
    let base = format!(
        "[ca.users]\nkey = \"file:{}\"\n\n[policy.open]\nca = \"users\"\nvalid_principals = [\"a\"]\n\n\
         [policy.explicit]\nca = \"users\"\nvalid_principals = [\"a\"]\nallowed_extensions = [\"permit-pty\"]\n\
         allowed_critical_options = []\nallow_key_id = true\n",
        ca.display()
    );
    std::fs::write(&cfg, &base).unwrap();
    let out = run(sshca().arg("--config").arg(&cfg).args(["policy", "check"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy `open`"), "{err}");
    assert!(!err.contains("policy `explicit`"), "{err}");
    // A mistake in [server] is found without starting the service.
    std::fs::write(&cfg, format!("{base}\n[server]\nlisten = \"nowhere\"\n")).unwrap();
    let out = sshca()
        .arg("--config")
        .arg(&cfg)
        .args(["policy", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("field `listen`"));
}
