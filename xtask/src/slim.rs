//! The store-backed commands without the service: `sshca-cli` built with
//! `--no-default-features --features local,store` has no HTTP server crate
//! in its dependency tree, and that binary revokes and builds KRLs that
//! ssh-keygen reads.

use std::process::Command;

use crate::util::*;

/// Crates of the HTTPS service that the `store` feature must not pull in.
const SERVICE_ONLY: [&str; 4] = ["axum", "jsonwebtoken", "prometheus-client", "tokio-rustls"];

const FEATURES: &str = "local,store";

pub fn check() -> Result<()> {
    eprintln!("xtask: slim sshca-cli ({FEATURES}): dependency tree");
    let tree = output(
        "cargo tree",
        cargo().args([
            "tree",
            "-p",
            "sshca-cli",
            "--no-default-features",
            "--features",
            FEATURES,
            "-e",
            "normal",
            "--prefix",
            "none",
        ]),
    )?;
    let found: Vec<&str> = SERVICE_ONLY
        .into_iter()
        .filter(|c| tree.lines().any(|l| l.starts_with(&format!("{c} v"))))
        .collect();
    if !found.is_empty() {
        return Err(format!(
            "sshca-cli --features {FEATURES} depends on {} (the store commands must not need the service)",
            found.join(", ")
        ));
    }
    // The shared target directory: the dependencies are mostly built
    // already; `target/debug/sshca` is the slim binary until the next build
    // of the default one (the tests') links it again.
    run(
        &format!("slim sshca-cli ({FEATURES}): build"),
        cargo().args([
            "build",
            "--quiet",
            "-p",
            "sshca-cli",
            "--no-default-features",
            "--features",
            FEATURES,
        ]),
    )?;
    let sshca = target_dir().join("debug/sshca");
    let dir = std::env::temp_dir().join(format!("sshca-slim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let r = revoke_and_build(&sshca, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn revoke_and_build(sshca: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    let ca = dir.join("user_ca");
    output(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f"])
            .arg(&ca),
    )?;
    let config = dir.join("sshca.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"data\"\n\n[ca.users]\nkey = \"file:{}\"\n\n[policy.p]\nca = \"users\"\n",
            ca.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let slim = |args: &[&str]| {
        let mut c = Command::new(sshca);
        c.arg("--config").arg(&config).args(args);
        c
    };
    output(
        "slim sshca revoke",
        &mut slim(&[
            "revoke", "--ca", "users", "--serial", "5-9", "--reason", "lost",
        ]),
    )?;
    let krl = dir.join("users.krl");
    let krl_arg = krl.display().to_string();
    output(
        "slim sshca krl build",
        &mut slim(&["krl", "build", "--ca", "users", "-o", &krl_arg]),
    )?;
    let listed = output(
        "ssh-keygen -Q -l",
        Command::new("ssh-keygen")
            .args(["-Q", "-l", "-f"])
            .arg(&krl),
    )?;
    if !listed.contains("serial: 5-9") && !listed.contains("serial: 5") {
        return Err(format!(
            "the slim build's KRL does not revoke serials 5-9: {listed}"
        ));
    }
    let audit = output("slim sshca audit", &mut slim(&["audit", "--json"]))?;
    if !audit.contains("\"revoked\"") {
        return Err(format!(
            "the slim build's revocation is not audited: {audit}"
        ));
    }
    let serve = slim(&["serve"])
        .output()
        .map_err(|e| format!("slim sshca serve: {e}"))?;
    if serve.status.success() {
        return Err("the slim build has `sshca serve`".into());
    }
    eprintln!("xtask: slim sshca-cli ({FEATURES}) revokes and builds KRLs without the service");
    Ok(())
}
