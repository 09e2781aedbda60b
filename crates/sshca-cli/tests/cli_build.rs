//! The default build of the `sshca` command: every backend is compiled in,
//! and errors say whose fault they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;

#[test]
#[cfg(all(
    feature = "local",
    feature = "aws",
    feature = "gcp",
    feature = "azure",
    feature = "ekm"
))]
fn every_backend_is_in_the_default_binary() {
    let d = tempfile::tempdir().unwrap();
    let pem = d.path().join("server.pem");
    std::fs::write(&pem, "").unwrap();
    // Nothing listens on port 1: each URI gets as far as its backend, which
    // fails to connect (or to read its files) — never "not available".
    for uri in [
        "awskms:alias/ca?endpoint=http://127.0.0.1:1&region=us-east-1&retries=0".to_owned(),
        "gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?endpoint=http://127.0.0.1:1&retries=0".to_owned(),
        "azurekv:https://127.0.0.1:1/keys/ca?retries=0".to_owned(),
        format!("ekm:v0/spaces/s/keys/k?resolver=127.0.0.1:1&server-cert={}&retries=0", pem.display()),
        format!("file:{}", d.path().join("missing").display()),
    ] {
        let out = sshca()
            .args(["pubkey", &uri])
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y")
            .env("SSHCA_AZURE_ACCESS_TOKEN", "t")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(!err.contains("not available"), "{uri}: {err}");
        assert!(err.starts_with("sshca: error: "), "{uri}: {err}");
    }
}

#[test]
fn io_failures_are_not_invalid_input_and_keep_their_cause() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let ca = keygen(d.path(), "ca", "ed25519", None);
    let key = keygen(d.path(), "id", "ed25519", None);
    // The certificate's directory is a file: an I/O error, with the OS's
    // reason printed once.
    let out = sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "x"])
        .arg(file.join("id.pub"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Not a directory"), "{err}");
    assert!(!err.contains("invalid input"), "{err}");
    std::fs::copy(key.with_extension("pub"), d.path().join("id2.pub")).unwrap();
    std::fs::create_dir(d.path().join("id2-cert.pub")).unwrap();
    let out = sshca()
        .args(["sign", "-q", "--ca"])
        .arg(&ca)
        .args(["-I", "x"])
        .arg(d.path().join("id2.pub"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("sshca: error: I/O error: cannot write"),
        "{err}"
    );
    assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
    // A file that is missing is "not found", naming the file and the cause.
    let out = sshca()
        .args(["inspect", "/nonexistent/cert"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "sshca: error: not found: cannot read /nonexistent/cert: No such file or directory (os error 2)"
    );
}
