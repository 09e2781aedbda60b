#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The shared conformance suite and the AWS SDK's view of the emulator.

use std::sync::Arc;

use kms_emulator::{Config, Emulator, FaultError};
use sshca_core::SigAlg;
use sshca_signer::conformance::{run_remote, RemoteKey};
use sshca_signer::{ErrorKind, KeySigner, KeyUri, Registry};

fn creds() -> sshca_aws::Credentials {
    sshca_aws::Credentials::new("test", "test", None, None, "test")
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_remote(sshca_aws::SCHEME, |uri| {
        sshca_aws::AwsSigner::open(uri, Some(creds()))
    });
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_every_key_spec() {
    let emu = Arc::new(Emulator::start(Config::default()).await.unwrap());
    let ep = &emu.endpoints().aws;
    let uri = |id: &str| format!("awskms:{id}?endpoint={ep}&backoff-ms=5");
    let mut keys = Vec::new();
    for (spec, algs) in [
        ("ECC_NIST_P256", vec![SigAlg::EcdsaP256]),
        ("ECC_NIST_P384", vec![SigAlg::EcdsaP384]),
        ("ECC_NIST_P521", vec![SigAlg::EcdsaP521]),
        ("ECC_NIST_EDWARDS25519", vec![SigAlg::Ed25519]),
        ("RSA_2048", vec![SigAlg::RsaSha512, SigAlg::RsaSha256]),
        ("RSA_3072", vec![SigAlg::RsaSha512, SigAlg::RsaSha256]),
        ("RSA_4096", vec![SigAlg::RsaSha512, SigAlg::RsaSha256]),
    ] {
        let id = emu.create_aws_key(spec, "SIGN_VERIFY").unwrap();
        keys.push(RemoteKey {
            uri: uri(&id),
            algorithms: algs,
        });
    }
    let wrong = emu
        .create_aws_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
        .unwrap();
    run_remote(
        &registry(),
        &keys,
        &uri("00000000-0000-0000-0000-000000000000"),
        &uri(&wrong),
        &sshca_testkit::emulator_hooks(&emu, "aws", "Sign", "GetPublicKey"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_arns_and_bad_credentials() {
    let emu = Emulator::start(Config {
        aws_credentials: vec![
            ("test".into(), "test".into()),
            ("AKIDSSHCA".into(), "secret-key-7f3a".into()),
        ],
        ..Config::default()
    })
    .await
    .unwrap();
    let ep = emu.endpoints().aws.clone();
    let id = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY").unwrap();
    let client = sshca_aws::client_for(
        &KeyUri::parse(&format!("awskms:{id}?endpoint={ep}")).unwrap(),
        Some(creds()),
    )
    .await
    .unwrap();
    client
        .create_alias()
        .alias_name("alias/ssh-ca")
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    for key in [
        arn.as_str(),
        "alias/ssh-ca",
        "arn:aws:kms:us-east-1:111122223333:alias/ssh-ca",
    ] {
        let s = registry()
            .open(&format!("awskms:{key}?endpoint={ep}"))
            .await
            .unwrap();
        s.sign(SigAlg::EcdsaP256, b"hello").await.unwrap();
    }
    // Secret keys never show in Debug output: the signer's (its SDK client
    // and credentials), the emulator's config.
    let other = sshca_aws::Credentials::new("AKIDSSHCA", "secret-key-7f3a", None, None, "test");
    let signer = sshca_aws::AwsSigner::open(
        KeyUri::parse(&format!("awskms:{id}?endpoint={ep}")).unwrap(),
        Some(other),
    )
    .await
    .unwrap();
    signer.sign(SigAlg::EcdsaP256, b"hello").await.unwrap();
    let shown = format!("{signer:?} {:?}", emu.state().config);
    assert!(
        shown.contains("AKIDSSHCA") && !shown.contains("secret-key-7f3a"),
        "{shown}"
    );
    // A wrong secret is refused like the real service does.
    let bad = sshca_aws::Credentials::new("test", "wrong", None, None, "test");
    let e = sshca_aws::AwsSigner::open(
        KeyUri::parse(&format!("awskms:{id}?endpoint={ep}")).unwrap(),
        Some(bad),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.to_string().contains("InvalidSignatureException"), "{e}");
    // A disabled key is refused when the signer is built.
    client.disable_key().key_id(&id).send().await.unwrap();
    let e = registry()
        .open(&format!("awskms:{id}?endpoint={ep}"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidKey, "{e}");
    assert!(e.to_string().contains("DisabledException"), "{e}");
    // Retries are bounded and the error says so.
    client.enable_key().key_id(&id).send().await.unwrap();
    let s = registry()
        .open(&format!("awskms:{id}?endpoint={ep}&retries=2&backoff-ms=1"))
        .await
        .unwrap();
    emu.fail_next("aws", "Sign", FaultError::Unavailable, 10)
        .unwrap();
    let e = s.sign(SigAlg::EcdsaP256, b"x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("failed after 3 attempts"), "{e}");
}
