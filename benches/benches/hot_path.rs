//! The per-certificate hot path: to-be-signed encoding (ours and ssh-key's in
//! one group, so the ratio is measured in one run), signature conversion,
//! assembly, and local signing throughput.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::Signer as _;
use sshca_core::convert::{ecdsa_der_to_ssh, ecdsa_raw_to_ssh, ed25519_to_ssh};
use sshca_core::options::OptionsBuilder;
use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::ssh_key::EcdsaCurve;
use sshca_core::{CertTemplate, CertType, KeyData, PreparedCa, TbsCertificate};
use sshca_signer::{KeySigner, SignerExt};

/// A typical user certificate: Ed25519 subject, 3 principals, the 5 default
/// extensions and a force-command.
fn typical() -> (CertTemplate, KeyData) {
    let mut t = CertTemplate::new(CertType::User, "alice@example.com");
    t.principals = vec!["alice".into(), "deploy".into(), "ops".into()];
    t.valid_after = 1_795_000_000;
    t.valid_before = 1_795_086_400;
    t.serial = 0x1234_5678_9abc_def0;
    t.nonce = Some(vec![7u8; 32]);
    let mut o = OptionsBuilder::new(CertType::User);
    o.apply("force-command=/usr/local/bin/deploy").unwrap();
    o.apply_to(&mut t).unwrap();
    (t, KeyData::Ed25519(Ed25519PublicKey([5u8; 32])))
}

fn encoding(c: &mut Criterion) {
    let (t, subject) = typical();
    let sk = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let ca = KeyData::Ecdsa(sshca_core::ssh_key::public::EcdsaPublicKey::from(
        sk.verifying_key(),
    ));
    let prepared = PreparedCa::new(&ca).unwrap();
    let tbs = TbsCertificate::encode_prepared(&t, &subject, &prepared).unwrap();
    let sig: p256::ecdsa::Signature = sk.sign(tbs.as_bytes());
    let der = sig.to_der();
    let raw = sig.to_bytes();
    let cert = tbs
        .clone()
        .assemble(ecdsa_der_to_ssh(EcdsaCurve::NistP256, der.as_bytes()).unwrap())
        .unwrap();
    let theirs = sshca_core::ssh_key::Certificate::from_bytes(&cert.to_bytes().unwrap()).unwrap();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    // What a signer does per certificate: its CA key was prepared when it
    // was opened.
    g.bench_function("sshca_tbs_encode", |b| {
        b.iter(|| {
            TbsCertificate::encode_prepared(black_box(&t), black_box(&subject), &prepared).unwrap()
        })
    });
    // A one-off certificate: the CA key is encoded too.
    g.bench_function("sshca_tbs_encode_unprepared", |b| {
        b.iter(|| {
            TbsCertificate::encode(black_box(&t), black_box(&subject), black_box(&ca)).unwrap()
        })
    });
    g.bench_function("ssh_key_certificate_encode", |b| {
        b.iter(|| black_box(&theirs).to_bytes().unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("convert");
    g.bench_function("der_p256", |b| {
        b.iter(|| ecdsa_der_to_ssh(EcdsaCurve::NistP256, black_box(der.as_bytes())).unwrap())
    });
    g.bench_function("raw_p256", |b| {
        b.iter(|| ecdsa_raw_to_ssh(EcdsaCurve::NistP256, black_box(&raw)).unwrap())
    });
    let s384: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from_slice(&[9u8; 48])
        .unwrap()
        .sign(b"m");
    let d384 = s384.to_der();
    g.bench_function("der_p384", |b| {
        b.iter(|| ecdsa_der_to_ssh(EcdsaCurve::NistP384, black_box(d384.as_bytes())).unwrap())
    });
    let s521: p521::ecdsa::Signature = p521::ecdsa::SigningKey::from_slice(&[1u8; 66])
        .unwrap()
        .sign(b"m");
    let d521 = s521.to_der();
    g.bench_function("der_p521", |b| {
        b.iter(|| ecdsa_der_to_ssh(EcdsaCurve::NistP521, black_box(d521.as_bytes())).unwrap())
    });
    g.bench_function("encode_plus_der_p256", |b| {
        b.iter(|| {
            let tbs = TbsCertificate::encode_prepared(black_box(&t), &subject, &prepared).unwrap();
            let s = ecdsa_der_to_ssh(EcdsaCurve::NistP256, der.as_bytes()).unwrap();
            black_box((tbs, s))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("assemble");
    let ssh_sig = ecdsa_der_to_ssh(EcdsaCurve::NistP256, der.as_bytes()).unwrap();
    g.bench_function("unverified_to_openssh", |b| {
        b.iter(|| {
            tbs.clone()
                .assemble_unverified(ssh_sig.clone())
                .unwrap()
                .to_openssh()
                .unwrap()
        })
    });
    g.bench_function("verified_p256", |b| {
        b.iter(|| tbs.clone().assemble(ssh_sig.clone()).unwrap())
    });
    let ed = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let ed_ca = KeyData::Ed25519(Ed25519PublicKey(ed.verifying_key().to_bytes()));
    let ed_prepared = PreparedCa::new(&ed_ca).unwrap();
    let ed_tbs = TbsCertificate::encode_prepared(&t, &subject, &ed_prepared).unwrap();
    let ed_sig = ed25519_to_ssh(&ed.sign(ed_tbs.as_bytes()).to_bytes()).unwrap();
    g.bench_function("verified_ed25519", |b| {
        b.iter(|| ed_tbs.clone().assemble(ed_sig.clone()).unwrap())
    });
    g.finish();
}

fn local_signing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (t, subject) = typical();
    let mut signers = Vec::new();
    let mut g = c.benchmark_group("local_sign_certificate");
    g.throughput(Throughput::Elements(1));
    for (name, args) in [
        ("ed25519", vec!["-t", "ed25519"]),
        ("p256", vec!["-t", "ecdsa", "-b", "256"]),
    ] {
        let path = dir.path().join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-f"])
            .arg(&path)
            .args(&args)
            .status()
            .expect("ssh-keygen is needed for this benchmark");
        assert!(st.success());
        let signer = sshca_local::LocalSigner::open_path(&path).unwrap();
        let key = rt.block_on(signer.public_key()).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(signer.sign_certificate(&t, &subject, None))
                    .unwrap()
            })
        });
        signers.push((name, signer, key));
    }
    g.finish();
    // The signature alone, over the same to-be-signed bytes: what `openssl
    // speed` measures.
    let mut g = c.benchmark_group("local_signature");
    g.throughput(Throughput::Elements(1));
    for (name, signer, key) in &signers {
        let alg = rt.block_on(signer.choose_algorithm(None)).unwrap();
        let tbs = TbsCertificate::encode(&t, &subject, key).unwrap();
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(signer.sign(alg, black_box(tbs.as_bytes())))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encoding, local_signing);
criterion_main!(benches);
