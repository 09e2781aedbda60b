//! CA keys on a PKCS#11 token (SoftHSM2) and in OpenSSH's ssh-agent through
//! the `sshca` command: `sshca keygen --pkcs11`, `sshca pubkey`, `sshca
//! sign --ca pkcs11:…` and `--ca ssh-agent:…`, certificates sshd accepts,
//! and clear errors for a wrong PIN and a PIN in the URI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::Command;

use common::*;
use sshca_testkit::softhsm::{SoftHsm, MODULE};

fn fingerprint(pub_file: &std::path::Path) -> String {
    let text = std::fs::read_to_string(pub_file).unwrap();
    ssh_key::PublicKey::from_openssh(text.trim())
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string()
}

#[test]
fn token_and_agent_ca_keys_sign_certificates_sshd_accepts() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let me = user();
    let hsm = SoftHsm::new(&["ssh-ca"]);
    let cmd = || {
        let mut c = sshca();
        hsm.env(&mut c);
        c
    };

    // A P-384 key pair created on the token; its URI printed.
    let out = run(cmd()
        .args(["keygen", "-t", "ecdsa", "-b", "384", "--pkcs11"])
        .arg(hsm.uri("ssh-ca", "user-ca")));
    let uri = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        uri.starts_with("pkcs11:token=ssh-ca;object=user-ca;id=%"),
        "{uri}"
    );
    let ca_line = run(cmd().arg("pubkey").arg(&uri)).stdout;
    assert!(String::from_utf8_lossy(&ca_line).starts_with("ecdsa-sha2-nistp384 "));

    // The agent's CA key.
    let agent = SshAgent::start(dir, "agent.sock");
    let agent_ca = keygen(dir, "agent_ca", "ed25519", None);
    agent.add(&agent_ca);
    let agent_uri = format!(
        "ssh-agent:{}?socket={}",
        fingerprint(&agent_ca.with_extension("pub")),
        agent.socket.display()
    );
    let agent_line = run(sshca().arg("pubkey").arg(&agent_uri)).stdout;

    let trusted = dir.join("trusted_user_cas.pub");
    std::fs::write(&trusted, [ca_line, agent_line].concat()).unwrap();
    let (sshd, known_hosts) = sshd_trusting(dir, &trusted);
    for (name, ca) in [("token", &uri), ("agent", &agent_uri)] {
        let key = keygen(dir, &format!("id_{name}"), "ed25519", None);
        run(cmd()
            .args(["sign", "-I", name, "-n", &me, "-V", "-5m:+1h", "--ca", ca])
            .arg(key.with_extension("pub")));
        let cert = cert_of(&key.with_extension("pub"));
        assert_login_works(
            &sshd,
            dir,
            &key,
            &cert,
            &known_hosts,
            &format!("{name}-login-ok"),
        );
    }

    // A wrong PIN: a clear error, no certificate.
    let wrong = dir.join("wrong-pin");
    std::fs::write(&wrong, "9999\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let bad_uri = uri.replace(
        &hsm.pin_file.display().to_string(),
        &wrong.display().to_string(),
    );
    let key = keygen(dir, "id_refused", "ed25519", None);
    let out = cmd()
        .args(["sign", "-I", "x", "-n", &me, "--ca", &bad_uri])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the PIN is incorrect"), "{err}");
    assert!(!dir.join("id_refused-cert.pub").exists());
    // A PIN file others can read gets a warning; a private one none.
    use std::os::unix::fs::PermissionsExt;
    let shared = "readable or writable by other users";
    assert!(err.contains(shared), "{err}");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = cmd()
        .args(["sign", "-I", "x", "-n", &me, "--ca", &bad_uri])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(shared));

    // The PIN itself in the URI: refused unless --allow-pin-value, and
    // never echoed.
    let value_uri = format!(
        "pkcs11:token=ssh-ca;object=user-ca?module-path={MODULE}&pin-value={}",
        sshca_testkit::softhsm::USER_PIN
    );
    let out = cmd().arg("pubkey").arg(&value_uri).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-pin-value") && !err.contains(sshca_testkit::softhsm::USER_PIN),
        "{err}"
    );
    run(cmd().args(["pubkey", "--allow-pin-value"]).arg(&value_uri));

    // The module from PKCS11_MODULE when the URI names none.
    let no_module = format!(
        "pkcs11:token=ssh-ca;object=user-ca?pin-source={}",
        hsm.pin_file.display()
    );
    let out = run(cmd()
        .arg("pubkey")
        .arg(&no_module)
        .env("PKCS11_MODULE", MODULE));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ecdsa-sha2-nistp384 "));

    // No module at all.
    let out = Command::new(env!("CARGO_BIN_EXE_sshca"))
        .args(["pubkey", "pkcs11:token=ssh-ca;object=user-ca"])
        .env_remove("PKCS11_MODULE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("module-path"));
}
