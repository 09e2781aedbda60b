//! `wrapped:` CA keys with a key-encryption key in each emulated KMS (AWS
//! KMS, Cloud KMS, Key Vault, the external key manager): `sshca keygen
//! --wrap-with`, 1,000 certificates for exactly one Decrypt/unwrap and no
//! Sign, certificates sshd accepts, a wrong KEK, a tampered blob and a data
//! key moved to another key refused with nothing signed, and `sshca key
//! rewrap` keeping the public key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kms_emulator::{Config, Emulator};
use serde_json::Value;

fn cli(dir: &Path) -> Command {
    let mut c = sshca();
    kms_env(&mut c, dir);
    c
}

/// (service name in the emulator's counters, unwrap operation, sign
/// operation, KEK URI, a second KEK URI of the same service)
struct Kek {
    service: &'static str,
    unwrap_op: &'static str,
    sign_op: &'static str,
    uri: String,
    other: String,
}

fn keks(emu: &Emulator) -> Vec<Kek> {
    let ep = emu.endpoints();
    let aws = |alias: &str| {
        let id = emu
            .create_aws_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
            .unwrap();
        emu.create_aws_alias(alias, &id).unwrap();
        format!("awskms:{alias}?endpoint={}", ep.aws)
    };
    let gcp = |name: &str| {
        let key = format!("projects/p/locations/global/keyRings/wrap/cryptoKeys/{name}");
        emu.create_gcp_key(&key, "GOOGLE_SYMMETRIC_ENCRYPTION")
            .unwrap();
        format!("gcpkms:{key}?endpoint={}", ep.gcp)
    };
    let azure = |name: &str| {
        let kid = emu.create_azure_key(name, "RSA", "2048").unwrap();
        // The KEK without a version: the blob records the version used.
        let unversioned = kid.rsplit_once('/').unwrap().0.to_owned();
        format!(
            "azurekv:{unversioned}?ca-cert={}",
            ep.azure_ca_cert.display()
        )
    };
    let ekm = |id: &str| {
        emu.create_ekm_key("v0/spaces/wrap", id, "GOOGLE_SYMMETRIC_ENCRYPTION")
            .unwrap();
        ekm_uri(emu, &format!("v0/spaces/wrap/keys/{id}"))
    };
    vec![
        Kek {
            service: "aws",
            unwrap_op: "Decrypt",
            sign_op: "Sign",
            uri: aws("alias/kek-1"),
            other: aws("alias/kek-2"),
        },
        Kek {
            service: "gcp",
            unwrap_op: "decrypt",
            sign_op: "asymmetricSign",
            uri: gcp("kek-1"),
            other: gcp("kek-2"),
        },
        Kek {
            service: "azure",
            unwrap_op: "unwrapKey",
            sign_op: "sign",
            uri: azure("kek-1"),
            other: azure("kek-2"),
        },
        Kek {
            service: "ekm",
            unwrap_op: "unwrap",
            sign_op: "sign",
            uri: ekm("kek-1"),
            other: ekm("kek-2"),
        },
    ]
}

/// 1,000 Ed25519 subject public keys (written directly: no key generation
/// per file).
fn subjects(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.join("subjects");
    std::fs::create_dir_all(&dir).unwrap();
    (0..1000u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 7;
            let key = ssh_key::PublicKey::new(
                ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(k)),
                "",
            );
            let p = dir.join(format!("k{i}.pub"));
            std::fs::write(&p, key.to_openssh().unwrap()).unwrap();
            p
        })
        .collect()
}

fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn wrapped_keys_under_every_kms() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            azure_token: Some(AZURE_TOKEN.into()),
            ..Config::default()
        }))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let me = user();
    let subjects = subjects(dir);
    let keks = keks(&emu);
    let mut trusted = Vec::new();
    let mut cas = Vec::new();

    for (i, kek) in keks.iter().enumerate() {
        let ca = dir.join(format!("ca-{}", kek.service));
        let t = ["ed25519", "ecdsa", "rsa", "ecdsa"][i];
        run(cli(dir)
            .args(["keygen", "-t", t, "--wrap-with", &kek.uri])
            .arg(&ca));
        let text = std::fs::read_to_string(&ca).unwrap();
        assert!(
            !text.contains("PRIVATE KEY"),
            "the private key reached the file in the clear"
        );
        assert_eq!(
            std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let uri = format!("wrapped:{}", ca.display());

        // The public key needs no KMS call.
        emu.reset();
        let line = run(cli(dir).arg("pubkey").arg(&uri)).stdout;
        assert_eq!(emu.count(kek.service, kek.unwrap_op), 0, "{}", kek.service);
        assert_eq!(
            String::from_utf8_lossy(&line).split_whitespace().nth(1),
            std::fs::read_to_string(ca.with_extension("pub"))
                .unwrap()
                .split_whitespace()
                .nth(1)
        );
        trusted.push(line);

        // 1,000 certificates: one unwrap, no remote signature.
        emu.reset();
        run(cli(dir)
            .args(["sign", "-q", "-I", "bulk", "-n", "deploy", "--ca", &uri])
            .args(&subjects));
        assert_eq!(
            emu.count(kek.service, kek.unwrap_op),
            1,
            "{}: unwraps",
            kek.service
        );
        assert_eq!(
            emu.count(kek.service, kek.sign_op),
            0,
            "{}: remote signatures",
            kek.service
        );
        let cert = std::fs::read_to_string(dir.join("subjects/k999-cert.pub")).unwrap();
        let cert = sshca_core::Certificate::from_openssh(cert.trim()).unwrap();
        assert_eq!(cert.key_id(), "bulk");
        cas.push((kek, ca, uri));
    }

    // sshd accepts a certificate from each wrapped CA.
    let trusted_file = dir.join("trusted_user_cas.pub");
    std::fs::write(&trusted_file, trusted.concat()).unwrap();
    let (sshd, known_hosts) = sshd_trusting(dir, &trusted_file);
    for (kek, _, uri) in &cas {
        let key = keygen(dir, &format!("id_{}", kek.service), "ed25519", None);
        run(cli(dir)
            .args([
                "sign",
                "-I",
                kek.service,
                "-n",
                &me,
                "-V",
                "-5m:+1h",
                "--ca",
                uri,
            ])
            .arg(key.with_extension("pub")));
        let cert = cert_of(&key.with_extension("pub"));
        assert_login_works(
            &sshd,
            dir,
            &key,
            &cert,
            &known_hosts,
            &format!("{}-wrapped-ok", kek.service),
        );
    }

    let refused = keygen(dir, "id_refused", "ed25519", None);
    let refuse = |uri: &str, needle: &str| {
        let out = cli(dir)
            .args(["sign", "-I", "x", "-n", &me, "--ca", uri])
            .arg(refused.with_extension("pub"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{uri}: signed");
        assert!(err.contains(needle), "{uri}: {err}");
        assert!(
            !dir.join("id_refused-cert.pub").exists(),
            "{uri}: a certificate was written"
        );
    };
    for (i, (kek, ca, _)) in cas.iter().enumerate() {
        // A wrong KEK.
        let wrong = dir.join(format!("wrong-kek-{}", kek.service));
        std::fs::copy(ca, &wrong).unwrap();
        edit(&wrong, |v| v["kek"] = Value::String(kek.other.clone()));
        refuse(
            &format!("wrapped:{}", wrong.display()),
            "unwrapping the data key",
        );

        // A tampered private-key blob.
        let tampered = dir.join(format!("tampered-{}", kek.service));
        std::fs::copy(ca, &tampered).unwrap();
        edit(&tampered, |v| {
            let ct = v["ciphertext"].as_str().unwrap().to_owned();
            let flipped = match ct.strip_prefix('A') {
                Some(rest) => format!("B{rest}"),
                None => format!("A{}", &ct[1..]),
            };
            v["ciphertext"] = Value::String(flipped);
        });
        refuse(
            &format!("wrapped:{}", tampered.display()),
            "does not decrypt",
        );

        // A data key wrapped for another CA key (same KEK service), moved in.
        let (_, other_ca, _) = &cas[(i + 1) % cas.len()];
        let donor = dir.join(format!("donor-{}", kek.service));
        run(cli(dir)
            .args(["keygen", "-t", "ed25519", "--wrap-with", &kek.uri])
            .arg(&donor));
        let donor_v: Value =
            serde_json::from_str(&std::fs::read_to_string(&donor).unwrap()).unwrap();
        let moved = dir.join(format!("moved-{}", kek.service));
        std::fs::copy(ca, &moved).unwrap();
        edit(&moved, |v| {
            v["wrapped_data_key"] = donor_v["wrapped_data_key"].clone()
        });
        let out = cli(dir)
            .args(["sign", "-I", "x", "-n", &me, "--ca"])
            .arg(format!("wrapped:{}", moved.display()))
            .arg(refused.with_extension("pub"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}: a moved data key signed",
            kek.service
        );
        assert!(!dir.join("id_refused-cert.pub").exists());
        let _ = other_ca;

        // Rewrap to the service's second KEK: same public key, still signs.
        let rewrapped = dir.join(format!("rewrapped-{}", kek.service));
        run(cli(dir)
            .args(["key", "rewrap", "--with", &kek.other])
            .arg(ca)
            .arg(&rewrapped));
        let a = run(cli(dir)
            .arg("pubkey")
            .arg(format!("wrapped:{}", ca.display())))
        .stdout;
        let b = run(cli(dir)
            .arg("pubkey")
            .arg(format!("wrapped:{}", rewrapped.display())))
        .stdout;
        assert_eq!(a, b, "{}: rewrap changed the public key", kek.service);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&rewrapped).unwrap()).unwrap();
        assert_eq!(v["kek"], Value::String(kek.other.clone()));
        let k = keygen(
            dir,
            &format!("id_rewrapped_{}", kek.service),
            "ed25519",
            None,
        );
        run(cli(dir)
            .args(["sign", "-I", "r", "-n", &me, "--ca"])
            .arg(format!("wrapped:{}", rewrapped.display()))
            .arg(k.with_extension("pub")));
    }

    // `sshca key wrap` seals an existing file key.
    let plain = keygen(dir, "plain_ca", "ecdsa", Some("384"));
    let sealed = dir.join("sealed_ca");
    run(cli(dir)
        .args(["key", "wrap", "--with", &cas[0].0.uri])
        .arg(&plain)
        .arg(&sealed));
    let a = run(cli(dir)
        .arg("pubkey")
        .arg(format!("file:{}", plain.display())))
    .stdout;
    let b = run(cli(dir)
        .arg("pubkey")
        .arg(format!("wrapped:{}", sealed.display())))
    .stdout;
    assert_eq!(
        String::from_utf8_lossy(&a).split_whitespace().nth(1),
        String::from_utf8_lossy(&b).split_whitespace().nth(1)
    );
    drop(emu);
}

use std::os::unix::fs::PermissionsExt;
