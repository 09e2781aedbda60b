//! One end-to-end test per cloud backend: a real sshd (127.0.0.1, OS-chosen
//! port) trusts the CA line `sshca pubkey` prints for a key held in the
//! emulated KMS, and accepts a login with a user certificate `sshca sign`
//! made through that backend; a certificate from another CA is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kms_emulator::{Config, Emulator};

/// The `sshca` command with the credentials the emulator accepts.
fn cli(dir: &Path) -> Command {
    let mut c = sshca();
    kms_env(&mut c, dir);
    c
}

fn login_through(make_uri: impl FnOnce(&Emulator) -> String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            azure_token: Some(AZURE_TOKEN.into()),
            ..Config::default()
        }))
        .unwrap();
    let uri = make_uri(&emu);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let me = user();

    let ca_line = run(cli(dir).arg("pubkey").arg(&uri)).stdout;
    let user_ca_pub = dir.join("trusted_user_ca.pub");
    std::fs::write(&user_ca_pub, &ca_line).unwrap();

    let (sshd, known_hosts) = sshd_trusting(dir, &user_ca_pub);

    let key = keygen(dir, "id_user", "ed25519", None);
    run(cli(dir)
        .args([
            "sign", "--ca", &uri, "-I", "e2e", "-n", &me, "-V", "-5m:+1h",
        ])
        .arg(key.with_extension("pub")));
    let cert = cert_of(&key.with_extension("pub"));
    assert_login_works(&sshd, dir, &key, &cert, &known_hosts, "kms-login-ok");

    // The same login with a certificate from another CA is refused.
    let other = keygen(dir, "other_ca", "ed25519", None);
    run(sshca()
        .args(["sign", "-I", "other", "-n", &me, "--ca"])
        .arg(format!("file:{}", other.display()))
        .arg(key.with_extension("pub")));
    let out = ssh(&sshd, dir, &key, &cert, &known_hosts, "echo no");
    assert!(
        !out.status.success(),
        "a certificate from another CA was accepted"
    );
    drop(emu);
}

#[test]
fn aws_kms_ca_logs_in() {
    login_through(|emu| {
        let id = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY").unwrap();
        format!("awskms:{id}?endpoint={}", emu.endpoints().aws)
    });
}

#[test]
fn gcp_kms_ca_logs_in() {
    login_through(|emu| {
        let v = emu
            .create_gcp_key(
                "projects/p/locations/global/keyRings/r/cryptoKeys/ca",
                "EC_SIGN_ED25519",
            )
            .unwrap();
        format!("gcpkms:{v}?endpoint={}", emu.endpoints().gcp)
    });
}

#[test]
fn azure_key_vault_ca_logs_in() {
    login_through(|emu| {
        let kid = emu.create_azure_key("ca", "RSA", "3072").unwrap();
        format!(
            "azurekv:{kid}?ca-cert={}",
            emu.endpoints().azure_ca_cert.display()
        )
    });
}

#[test]
fn external_key_manager_ca_logs_in() {
    login_through(|emu| {
        emu.create_ekm_key("v0/spaces/ssh", "ca", "EC_SIGN_P384_SHA384")
            .unwrap();
        ekm_uri(emu, "v0/spaces/ssh/keys/ca")
    });
}
