//! `sshca conformance URI` against every emulated backend (AWS KMS P-256,
//! Ed25519 with its RAW limit, RSA; Cloud KMS; Key Vault; the external key
//! manager; a PKCS#11 token; a file): every check passes; a missing key, a
//! key of the wrong usage and a disabled key fail with exit 1, naming the
//! cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::*;
use kms_emulator::{Config, Emulator};
use serde_json::Value;
use sshca_testkit::softhsm::SoftHsm;

fn conformance(dir: &Path, uri: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut c = sshca();
    kms_env(&mut c, dir)
        .args(["conformance", "--json", "--yes", uri])
        .args(extra);
    let out = c.output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn names(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_emulated_backend_passes_and_bad_keys_fail() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            azure_token: Some(AZURE_TOKEN.into()),
            ..Config::default()
        }))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let aws = |spec: &str, usage: &str| {
        let id = emu.create_aws_key(spec, usage).unwrap();
        (
            id.clone(),
            format!("awskms:{id}?endpoint={}", emu.endpoints().aws),
        )
    };
    let file_ca = keygen(dir, "file_ca", "ecdsa", Some("384"));
    let hsm = SoftHsm::new(&["ssh-ca"]);
    let mut keygen_cmd = sshca();
    hsm.env(&mut keygen_cmd);
    let pkcs11 = String::from_utf8(
        run(keygen_cmd
            .args(["keygen", "-t", "ecdsa", "-b", "256", "--pkcs11"])
            .arg(hsm.uri("ssh-ca", "probe")))
        .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    emu.create_ekm_key("v0/spaces/ssh", "probe", "EC_SIGN_P256_SHA256")
        .unwrap();
    let gcp = emu
        .create_gcp_key(
            "projects/p/locations/global/keyRings/r/cryptoKeys/probe",
            "EC_SIGN_ED25519",
        )
        .unwrap();
    let azure = emu.create_azure_key("probe", "RSA", "2048").unwrap();
    let cases = [
        ("aws p256", aws("ECC_NIST_P256", "SIGN_VERIFY").1, 1),
        (
            "aws ed25519",
            aws("ECC_NIST_EDWARDS25519", "SIGN_VERIFY").1,
            1,
        ),
        ("aws rsa", aws("RSA_2048", "SIGN_VERIFY").1, 2),
        (
            "cloud kms",
            format!("gcpkms:{gcp}?endpoint={}", emu.endpoints().gcp),
            1,
        ),
        (
            "key vault",
            format!(
                "azurekv:{azure}?ca-cert={}",
                emu.endpoints().azure_ca_cert.display()
            ),
            2,
        ),
        ("ekm", ekm_uri(&emu, "v0/spaces/ssh/keys/probe"), 1),
        ("file", format!("file:{}", file_ca.display()), 1),
    ];
    for (what, uri, algs) in &cases {
        let (code, v, err) = conformance(dir, uri, &[]);
        assert_eq!(code, 0, "{what}: {v} {err}");
        assert_eq!(v["ok"], true, "{what}: {v}");
        // The requests were said before the first one.
        let n = 2 * algs + 4 + 1;
        assert!(
            err.contains(&format!("{n} signature requests")),
            "{what}: {err}"
        );
        let checks = names(&v);
        assert!(
            checks.contains(&"concurrent signing (4)".to_string()),
            "{checks:?}"
        );
        assert!(checks.contains(&"200 principals".to_string()), "{checks:?}");
        assert_eq!(
            checks
                .iter()
                .filter(|c| c.starts_with("certificate "))
                .count(),
            *algs,
            "{what}: {checks:?}"
        );
        assert!(
            v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["name"].as_str().unwrap().starts_with("certificate "))
                .all(|c| c["detail"]
                    .as_str()
                    .unwrap()
                    .contains("ssh-keygen -L reads it")),
            "{what}: {v}"
        );
        if *what == "aws ed25519" {
            assert!(
                checks.iter().any(|c| c.starts_with("AWS RAW limit")),
                "{checks:?}"
            );
        }
    }
    // The PKCS#11 token, with its PIN file.
    let mut c = sshca();
    hsm.env(&mut c);
    let out = c
        .args([
            "conformance",
            "--json",
            "--yes",
            "--concurrency",
            "8",
            &pkcs11,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "pkcs11: {v}");
    assert!(names(&v).contains(&"concurrent signing (8)".to_string()));

    // The table for people.
    let mut c = sshca();
    let out = c
        .args(["conformance", "--yes"])
        .arg(format!("file:{}", file_ca.display()))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("CHECK"), "{table}");
    assert!(table.contains("6 of 6 checks passed"), "{table}");

    // A missing key, a key of the wrong usage, a disabled key: exit 1,
    // the backend's error named, nothing signed.
    let signs = emu.count("aws", "Sign");
    let missing = format!(
        "awskms:00000000-0000-0000-0000-000000000000?endpoint={}",
        emu.endpoints().aws
    );
    let (code, v, _) = conformance(dir, &missing, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["ok"], false);
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{v}"
    );
    let (_, wrong) = aws("RSA_2048", "ENCRYPT_DECRYPT");
    let (code, v, _) = conformance(dir, &wrong, &[]);
    assert_eq!(code, 1, "{v}");
    let detail = v["checks"][0]["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("ENCRYPT_DECRYPT"), "{detail}");
    let (id, disabled) = aws("ECC_NIST_P256", "SIGN_VERIFY");
    emu.set_aws_key_enabled(&id, false).unwrap();
    let (code, v, _) = conformance(dir, &disabled, &[]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{v}"
    );
    assert_eq!(emu.count("aws", "Sign"), signs, "a failed open signed");
    // A bad --concurrency is refused before anything is asked of the key.
    let out = sshca()
        .args(["conformance", "--concurrency", "0", &disabled])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--concurrency"));
}
