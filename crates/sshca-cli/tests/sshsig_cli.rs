//! `sshca sshsig` against `ssh-keygen -Y`: signatures made by sshca (file
//! keys of every type, an Ed25519 and a P-256 key in the emulated AWS KMS)
//! verify with `ssh-keygen -Y verify`; signatures made by ssh-keygen verify
//! with `sshca sshsig verify`; tampering, another namespace, another
//! identity and another key are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn allowed_signers(dir: &Path, identity: &str, pub_line: &str) -> std::path::PathBuf {
    let p = dir.join(format!("allowed-{identity}"));
    std::fs::write(
        &p,
        format!("{identity} namespaces=\"file,git\" {pub_line}\n"),
    )
    .unwrap();
    p
}

fn keygen_verify(allowed: &Path, identity: &str, ns: &str, sig: &Path, msg: &[u8]) -> Output {
    with_stdin(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(allowed)
            .args(["-I", identity, "-n", ns, "-s"])
            .arg(sig),
        msg,
    )
}

fn sshca_verify(allowed: &Path, identity: &str, ns: &str, sig: &Path, msg: &[u8]) -> Output {
    with_stdin(
        sshca()
            .args(["sshsig", "verify", "-f"])
            .arg(allowed)
            .args(["-I", identity, "-n", ns, "-s"])
            .arg(sig),
        msg,
    )
}

#[test]
fn both_ways_for_every_key_type() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let msg = b"release v1.2.3\n".repeat(1000);
    let file = dir.join("release.tar");
    std::fs::write(&file, &msg).unwrap();
    for (t, bits) in [
        ("ed25519", None),
        ("ecdsa", Some("256")),
        ("ecdsa", Some("384")),
        ("ecdsa", Some("521")),
        ("rsa", Some("3072")),
    ] {
        let name = format!("{t}{}", bits.unwrap_or(""));
        let key = keygen(dir, &name, t, bits);
        let pub_line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let allowed = allowed_signers(dir, "alice@example.com", pub_line.trim());

        // sshca signs (file and sha256/sha512), ssh-keygen verifies.
        for hash in ["hashalg=sha512", "hashalg=sha256"] {
            run(sshca()
                .args(["sshsig", "sign", "-n", "file", "-O", hash, "--key"])
                .arg(format!("file:{}", key.display()))
                .arg(&file));
            let sig = dir.join("release.tar.sig");
            let out = keygen_verify(&allowed, "alice@example.com", "file", &sig, &msg);
            assert!(
                out.status.success(),
                "{name} {hash}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // And sshca agrees.
            let out = sshca_verify(&allowed, "alice@example.com", "file", &sig, &msg);
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout)
                .starts_with("Good \"file\" signature for alice@example.com"));
        }
        // From stdin to stdout.
        let out = with_stdin(
            sshca()
                .args(["sshsig", "sign", "-n", "git", "--key"])
                .arg(key.display().to_string()),
            &msg,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sig = dir.join("stdin.sig");
        std::fs::write(&sig, &out.stdout).unwrap();
        assert!(
            keygen_verify(&allowed, "alice@example.com", "git", &sig, &msg)
                .status
                .success()
        );

        // ssh-keygen signs, sshca verifies.
        let out = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(&key)
            .arg(&file));
        assert!(out.status.success());
        let sig = dir.join("release.tar.sig");
        let out = sshca_verify(&allowed, "alice@example.com", "file", &sig, &msg);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = with_stdin(
            sshca()
                .args(["sshsig", "check-novalidate", "-n", "file", "-s"])
                .arg(&sig),
            &msg,
        );
        assert!(out.status.success());
        let out = with_stdin(
            sshca()
                .args(["sshsig", "verify", "-n", "file", "--signer-key"])
                .arg(key.with_extension("pub"))
                .arg("-s")
                .arg(&sig),
            &msg,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Refusals: a changed message, another namespace, another identity,
        // a namespace the allowed-signers line does not list.
        let mut changed = msg.clone();
        changed[0] ^= 1;
        for (identity, ns, m) in [
            ("alice@example.com", "file", &changed),
            ("alice@example.com", "git", &msg),
            ("bob@example.com", "file", &msg),
        ] {
            let out = sshca_verify(&allowed, identity, ns, &sig, m);
            assert!(!out.status.success(), "{name}: {identity} {ns} accepted");
            let theirs = keygen_verify(&allowed, identity, ns, &sig, m);
            assert!(
                !theirs.status.success(),
                "ssh-keygen accepted what sshca refused"
            );
        }
    }
    // Another key is refused.
    let other = keygen(dir, "other", "ed25519", None);
    let out = with_stdin(
        sshca()
            .args(["sshsig", "verify", "-n", "file", "--signer-key"])
            .arg(other.with_extension("pub"))
            .arg("-s")
            .arg(dir.join("release.tar.sig")),
        &msg,
    );
    assert!(!out.status.success());
    // Not a signature.
    std::fs::write(
        dir.join("junk.sig"),
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    )
    .unwrap();
    let out = with_stdin(
        sshca()
            .args(["sshsig", "check-novalidate", "-n", "file", "-s"])
            .arg(dir.join("junk.sig")),
        &msg,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an SSH signature"));
}

#[test]
fn kms_keys_sign_files() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(kms_emulator::Emulator::start(
            kms_emulator::Config::default(),
        ))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let msg = vec![7u8; 1 << 20];
    let file = dir.join("big.bin");
    std::fs::write(&file, &msg).unwrap();
    for spec in ["ECC_NIST_EDWARDS25519", "ECC_NIST_P256"] {
        let id = emu.create_aws_key(spec, "SIGN_VERIFY").unwrap();
        let uri = format!("awskms:{id}?endpoint={}", emu.endpoints().aws);
        let mut c = sshca();
        kms_env(&mut c, dir);
        let pub_line = String::from_utf8(run(c.arg("pubkey").arg(&uri)).stdout).unwrap();
        let allowed = allowed_signers(dir, "release@example.com", pub_line.trim());
        let mut c = sshca();
        kms_env(&mut c, dir);
        run(c
            .args(["sshsig", "sign", "-n", "file", "--key", &uri])
            .arg(&file));
        let out = keygen_verify(
            &allowed,
            "release@example.com",
            "file",
            &dir.join("big.bin.sig"),
            &msg,
        );
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
