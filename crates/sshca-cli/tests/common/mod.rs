//! Helpers shared by the CLI integration tests: the `sshca` binary of this
//! package, and the test environment of sshca-testkit.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use sshca_testkit::cli::*;

/// Runs `cmd` with `input` on its stdin; its output.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn sshca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sshca"))
}

/// What `sshca inspect --json` says, in the shape of [`KeygenView`].
pub fn sshca_view(cert: &Path) -> KeygenView {
    let out = run(sshca().arg("inspect").arg("--json").arg(cert));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |k: &str| j[k].as_str().unwrap().to_owned();
    let va = j["valid_after"].as_u64().unwrap();
    let vb = j["valid_before"].as_u64().unwrap();
    let valid = sshca_core::validity::describe(va, vb);
    let opts = |k: &str| -> BTreeMap<String, String> {
        j[k].as_object()
            .unwrap()
            .iter()
            .map(|(n, v)| {
                let v = v.as_str().unwrap();
                // ssh-keygen prints values of known options only.
                let shown = match n.as_str() {
                    "force-command" | "source-address" => v.to_owned(),
                    _ if v.is_empty() => String::new(),
                    _ => "<?>".to_owned(),
                };
                (n.clone(), shown)
            })
            .collect()
    };
    KeygenView {
        key_type: s("key_type"),
        cert_type: s("type"),
        public_key: s("public_key"),
        signing_ca: s("signing_ca"),
        signature_algorithm: s("signature_algorithm"),
        key_id: s("key_id"),
        serial: j["serial"].as_u64().unwrap().to_string(),
        valid,
        principals: j["principals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect(),
        critical_options: opts("critical_options"),
        extensions: opts("extensions"),
    }
}

/// The bearer token the tests' emulated Key Vault accepts.
pub const AZURE_TOKEN: &str = "e2e-token";

/// Sets the credentials the emulated AWS KMS and Key Vault accept (and
/// keeps the user's own AWS configuration out).
pub fn kms_env<'a>(c: &'a mut Command, dir: &Path) -> &'a mut Command {
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("SSHCA_AZURE_ACCESS_TOKEN", AZURE_TOKEN)
}

/// A test sshd trusting the user CA keys in `trusted_user_cas`, with a host
/// certificate that `sshca sign -h` made with a fresh host CA, and a
/// known_hosts file holding that CA's `@cert-authority` line from `sshca
/// pubkey --known-hosts`.
pub fn sshd_trusting(dir: &Path, trusted_user_cas: &Path) -> (Sshd, PathBuf) {
    sshd_trusting_with(dir, trusted_user_cas, "")
}

/// Like [`sshd_trusting`], with `extra` sshd_config lines (see
/// `start_sshd_with`).
pub fn sshd_trusting_with(dir: &Path, trusted_user_cas: &Path, extra: &str) -> (Sshd, PathBuf) {
    let host_ca = keygen(dir, "host_ca", "ed25519", None);
    let host_key = keygen(dir, "host_key", "ed25519", None);
    run(sshca()
        .args(["sign", "-h", "-I", "host", "-n", "127.0.0.1", "--ca"])
        .arg(format!("file:{}", host_ca.display()))
        .arg(host_key.with_extension("pub")));
    let kh = run(sshca()
        .args(["pubkey", "--known-hosts", "127.0.0.1"])
        .arg(format!("file:{}", host_ca.display())))
    .stdout;
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, kh).unwrap();
    let sshd = start_sshd_with(
        dir,
        trusted_user_cas,
        &host_key,
        &cert_of(&host_key.with_extension("pub")),
        extra,
    );
    (sshd, known_hosts)
}

/// Logs in to `sshd` with `key` and its certificate `cert`, runs `echo
/// WORD`, and asserts the login worked and printed `word` (the failure
/// message carries ssh's stderr and the sshd log).
pub fn assert_login_works(
    sshd: &Sshd,
    dir: &Path,
    key: &Path,
    cert: &Path,
    known_hosts: &Path,
    word: &str,
) {
    let out = ssh(sshd, dir, key, cert, known_hosts, &format!("echo {word}"));
    assert!(
        out.status.success(),
        "{}: certificate refused: {}\nsshd log:\n{}",
        cert.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), word);
}

/// The `ekm:` URI of key `path` (`SPACE/keys/ID`) on the emulator's
/// external key manager: every replica as a resolver, its server
/// certificate and the client identity.
pub fn ekm_uri(emu: &kms_emulator::Emulator, path: &str) -> String {
    let ep = emu.endpoints();
    let hosts: Vec<&str> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://"))
        .collect();
    format!(
        "ekm:{path}?resolver={}&server-cert={}&client-identity={}",
        hosts.join(","),
        ep.ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    )
}
