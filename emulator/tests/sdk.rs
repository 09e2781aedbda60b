#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The emulator through the clouds' own Python SDKs (azure-keyvault-keys,
//! google-cloud-kms over REST): each test runs a script of
//! `tests/sdk/` against an emulator started here. Without the SDK a test
//! says so and passes, unless `SSHCA_REQUIRE_SDKS=1` (CI) makes that a
//! failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use kms_emulator::{Config, Emulator};

/// `python3` when it imports every module, else `None` (after saying why).
fn python_with(modules: &[&str], install: &str) -> Option<&'static str> {
    let probe = Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return Some("python3"),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("python3: {e}"),
    };
    let msg = format!("the Python SDK is missing ({why}): pip install {install}");
    if std::env::var("SSHCA_REQUIRE_SDKS").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

/// Runs a script with `env`; fails the test with its output unless it
/// succeeds.
async fn run(python: &str, name: &str, env: Vec<(&'static str, String)>) {
    let path = script(name);
    let python = python.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(&path)
            .envs(env)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    assert!(text.contains("every check passed"), "{text}");
}

/// An emulator started with `seed` (written to a file in the returned
/// directory) and `config`.
async fn seeded(seed: &str, config: Config) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.toml");
    std::fs::write(&path, seed).unwrap();
    let emu = Emulator::start(Config {
        seed: Some(path),
        ..config
    })
    .await
    .unwrap();
    (dir, emu)
}

const AZURE_SEED: &str = r#"
[[azure]]
name = "seeded"
kty = "EC"
crv = "P-256"

[[azure_identities]]
token = "reader-token"
roles = ["Key Vault Reader"]

[[azure_identities]]
token = "user-token"
roles = ["Key Vault Crypto User"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn azure_keyvault_keys() {
    let Some(python) = python_with(
        &["azure.keyvault.keys", "cryptography"],
        "azure-keyvault-keys",
    ) else {
        return;
    };
    let (_dir, emu) = seeded(
        AZURE_SEED,
        Config {
            azure_token: Some("owner-token".into()),
            ..Default::default()
        },
    )
    .await;
    let e = emu.endpoints();
    run(
        python,
        "azure_keys.py",
        vec![
            ("VAULT_URL", e.azure.clone()),
            ("VAULT_CA", e.azure_ca_cert.display().to_string()),
            ("ADMIN_URL", e.admin.clone()),
        ],
    )
    .await;
}

const GCP_SEED: &str = r#"
[[gcp_identities]]
token = "signer-token"
member = "serviceAccount:signer@p.iam.gserviceaccount.com"

[[gcp_identities]]
token = "viewer-token"
member = "user:viewer@example.com"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn google_cloud_kms_rest() {
    let Some(python) = python_with(&["google.cloud.kms", "cryptography"], "google-cloud-kms")
    else {
        return;
    };
    let (_dir, emu) = seeded(
        GCP_SEED,
        Config {
            gcp_token: Some("owner-token".into()),
            ..Default::default()
        },
    )
    .await;
    let e = emu.endpoints();
    run(
        python,
        "gcp_kms.py",
        vec![("KMS_URL", e.gcp.clone()), ("ADMIN_URL", e.admin.clone())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli() {
    let Some(python) = python_with(&["awscli"], "awscli") else {
        return;
    };
    let emu = Emulator::start(Config {
        aws_credentials: vec![
            ("test".into(), "test".into()),
            ("bob".into(), "bob-secret".into()),
        ],
        aws_principals: vec![
            ("test".into(), "arn:aws:iam::111122223333:user/admin".into()),
            ("bob".into(), "arn:aws:iam::111122223333:user/bob".into()),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().aws.clone();
    run(python, "aws_cli.py", vec![("AWS_URL", url)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_kms_boto3() {
    let Some(python) = python_with(&["boto3", "cryptography"], "boto3") else {
        return;
    };
    let user = |name: &str| format!("arn:aws:iam::111122223333:user/{name}");
    let emu = Emulator::start(Config {
        aws_credentials: vec![
            ("test".into(), "test".into()),
            ("alice".into(), "alice-secret".into()),
            ("bob".into(), "bob-secret".into()),
        ],
        aws_principals: vec![
            ("test".into(), user("admin")),
            ("alice".into(), user("alice")),
            ("bob".into(), user("bob")),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let e = emu.endpoints();
    run(
        python,
        "aws_kms.py",
        vec![("AWS_URL", e.aws.clone()), ("ADMIN_URL", e.admin.clone())],
    )
    .await;
}
