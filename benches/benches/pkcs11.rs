//! Certificates through a PKCS#11 token (SoftHSM2, tokens in a temporary
//! directory) next to the same key type in a local file, in one run: the
//! cost of the module, its session and the token's software crypto.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sshca_signer::{KeySigner, KeySpec, KeyUri, Registry, SignerExt};
use sshca_testkit::softhsm::SoftHsm;

fn pkcs11(c: &mut Criterion) {
    let hsm = SoftHsm::new(&["bench"]);
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut registry = Registry::new();
    sshca_pkcs11::register(&mut registry);
    sshca_local::register(&mut registry);
    let (t, subject) = sshca_benches::user_certificate();
    let mut g = c.benchmark_group("pkcs11_sign_certificate");
    g.throughput(Throughput::Elements(1));
    for (name, spec, keygen_args) in [
        ("ed25519", KeySpec::Ed25519, vec!["-t", "ed25519"]),
        (
            "p256",
            KeySpec::Ecdsa(256),
            vec!["-t", "ecdsa", "-b", "256"],
        ),
    ] {
        let uri = KeyUri::parse(&hsm.uri("bench", &format!("ca-{name}"))).unwrap();
        let uri = sshca_pkcs11::generate(&uri, spec).unwrap().to_string();
        let token = rt.block_on(registry.open(&uri)).unwrap();
        let path = dir.path().join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-f"])
            .arg(&path)
            .args(&keygen_args)
            .status()
            .expect("ssh-keygen is needed for this benchmark");
        assert!(st.success());
        let file = rt
            .block_on(registry.open(&format!("file:{}", path.display())))
            .unwrap();
        for (label, signer) in [("softhsm", &token), ("file", &file)] {
            g.bench_function(format!("{name}_{label}"), |b| {
                b.iter(|| {
                    rt.block_on(signer.sign_certificate(&t, &subject, None))
                        .unwrap()
                })
            });
        }
        // Eight signatures in flight on one token (the session pool).
        g.bench_function(format!("{name}_softhsm_c8_batch64"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    for w in 0..8 {
                        let s = token.clone();
                        let (t, subject) = (t.clone(), subject.clone());
                        set.spawn(async move {
                            for i in 0..8 {
                                let mut t = t.clone();
                                t.serial = 1 + w * 8 + i;
                                s.sign_certificate(&t, &subject, None).await.unwrap();
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                })
            })
        });
        let _ = token.uri();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = pkcs11
}
criterion_main!(benches);
