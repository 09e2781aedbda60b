//! `wrapped:` CA keys (unwrapped once through the KMS, then local) next to
//! the same key in a plain file and a remote AWS KMS key, in one run: the
//! wrapped figure should equal the file's within noise; the remote one is
//! bound by a KMS round trip per certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sshca_signer::{KeySpec, SignerExt};

fn wrapped(c: &mut Criterion) {
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let (rt, emu) = sshca_benches::emulator_in_process();
    let aws = emu.endpoints().aws.clone();
    let kek_id = emu
        .create_aws_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
        .unwrap();
    let kek = format!("awskms:{kek_id}?endpoint={aws}");
    let registry = sshca::default_registry();
    let dir = tempfile::tempdir().unwrap();
    let (t, subject) = sshca_benches::user_certificate();
    let mut g = c.benchmark_group("wrapped_sign_certificate");
    g.throughput(Throughput::Elements(1));
    for (name, spec) in [("ed25519", KeySpec::Ed25519), ("p256", KeySpec::Ecdsa(256))] {
        let key = sshca_local::keys::generate(spec, "").unwrap();
        let text = sshca_local::keys::to_openssh(&key, None).unwrap();
        let file = dir.path().join(format!("{name}-file"));
        std::fs::write(&file, text.as_bytes()).unwrap();
        let sealed = rt
            .block_on(sshca_wrapped::WrappedFile::seal(
                &registry,
                &kek,
                &text,
                key.public_key(),
            ))
            .unwrap();
        let wrapped = dir.path().join(format!("{name}-wrapped"));
        std::fs::write(&wrapped, sealed.to_text().unwrap()).unwrap();
        let mut signers = vec![
            (
                "wrapped",
                rt.block_on(registry.open(&format!("wrapped:{}", wrapped.display())))
                    .unwrap(),
            ),
            (
                "file",
                rt.block_on(registry.open(&format!("file:{}", file.display())))
                    .unwrap(),
            ),
        ];
        if name == "p256" {
            let id = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY").unwrap();
            signers.push((
                "awskms",
                rt.block_on(registry.open(&format!("awskms:{id}?endpoint={aws}")))
                    .unwrap(),
            ));
        }
        for (label, signer) in &signers {
            g.bench_function(format!("{name}_{label}"), |b| {
                b.iter(|| {
                    rt.block_on(signer.sign_certificate(&t, &subject, None))
                        .unwrap()
                })
            });
        }
    }
    g.finish();
    assert!(
        emu.count("aws", "Decrypt") <= 2,
        "more than one Decrypt per wrapped signer"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = wrapped
}
criterion_main!(benches);
