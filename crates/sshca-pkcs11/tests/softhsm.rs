//! The PKCS#11 backend against a real module, SoftHSM2, with tokens in a
//! temporary directory: the shared conformance suite per key type, errors
//! for a wrong PIN, a missing object and a wrong module, eight signers on
//! one token at once, and recovery after every session of the token closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, OnceLock};

use sshca_core::SigAlg;
use sshca_signer::{conformance, ErrorKind, KeySigner, KeySpec, KeyUri, Registry, SignerExt};
use sshca_testkit::softhsm::{SoftHsm, MODULE};

/// Tokens of this test binary.
const TOKENS: [&str; 4] = ["ed", "ec", "rsa", "shared"];

/// SoftHSM reads `SOFTHSM2_CONF` once, when the module is initialised: one
/// token directory for the whole binary, set up before any test opens it.
fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let hsm = SoftHsm::new(&TOKENS);
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        hsm
    })
}

fn registry() -> Registry {
    let mut r = Registry::new();
    sshca_pkcs11::register(&mut r);
    r
}

fn new_key(token: &str, object: &str, spec: KeySpec) -> String {
    let uri = KeyUri::parse(&hsm().uri(token, object)).unwrap();
    sshca_pkcs11::generate(&uri, spec).unwrap().to_string()
}

async fn conformance_for(token: &str, object: &str, spec: KeySpec, algs: &[SigAlg]) {
    let uri = new_key(token, object, spec);
    assert!(uri.contains(";id=%"), "{uri}");
    let signer = registry().open(&uri).await.unwrap();
    conformance::run_all(signer, algs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ed25519() {
    conformance_for("ed", "ca-ed25519", KeySpec::Ed25519, &[SigAlg::Ed25519]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_p256_p384_p521() {
    for (bits, alg) in [
        (256, SigAlg::EcdsaP256),
        (384, SigAlg::EcdsaP384),
        (521, SigAlg::EcdsaP521),
    ] {
        conformance_for("ec", &format!("ca-p{bits}"), KeySpec::Ecdsa(bits), &[alg]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsa_2048_3072() {
    for bits in [2048, 3072] {
        conformance_for(
            "rsa",
            &format!("ca-rsa{bits}"),
            KeySpec::Rsa(bits),
            &[SigAlg::RsaSha512, SigAlg::RsaSha256],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clear_errors() {
    let good = new_key("shared", "errors", KeySpec::Ecdsa(256));
    let open = |u: String| async move { registry().open(&u).await.map(|_| ()) };

    // A wrong PIN.
    let wrong_pin = hsm().dir.join("wrong-pin");
    std::fs::write(&wrong_pin, "0000\n").unwrap();
    let u = good.replace(
        &hsm().pin_file.display().to_string(),
        &wrong_pin.display().to_string(),
    );
    let e = open(u).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(e.to_string().contains("the PIN is incorrect"), "{e}");
    assert!(!e.to_string().contains("0000"));

    // A missing object, a missing token.
    let e = open(hsm().uri("shared", "nope")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no private key object=nope"), "{e}");
    let e = open(hsm().uri("absent", "x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains("tokens present:") && e.to_string().contains("shared"),
        "{e}"
    );

    // A module that is not there.
    let e = open(good.replace(MODULE, "/nonexistent/libpkcs11.so"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string()
            .contains("cannot load the PKCS#11 module /nonexistent/libpkcs11.so"),
        "{e}"
    );

    // The PIN itself in the URI, refused unless allowed; never shown.
    let with_value =
        format!("pkcs11:token=shared;object=errors?module-path={MODULE}&pin-value=4711-user");
    let e = open(with_value.clone()).await.unwrap_err();
    assert!(
        e.to_string().contains("--allow-pin-value") && !e.to_string().contains("4711-user"),
        "{e}"
    );

    // Creating a key whose label is taken.
    let e = sshca_pkcs11::generate(
        &KeyUri::parse(&hsm().uri("shared", "errors")).unwrap(),
        KeySpec::Ed25519,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("already holds a key object=errors"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_signers_on_one_token_and_session_recovery() {
    let uri = new_key("shared", "busy", KeySpec::Ed25519);
    let mut signers = Vec::new();
    for _ in 0..8 {
        signers.push(registry().open(&uri).await.unwrap());
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in signers.iter().enumerate() {
        let s: Arc<dyn KeySigner> = s.clone();
        set.spawn(async move {
            for j in 0..25u64 {
                s.sign_certificate(
                    &conformance::template(1 + i as u64 * 100 + j),
                    &conformance::subject_key(),
                    None,
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }

    // The login lost behind the signers' backs (as after a token reset):
    // the next signature drops the dead sessions, opens one, logs in again
    // and succeeds.
    sshca_pkcs11::logout(&KeyUri::parse(&uri).unwrap()).unwrap();
    for s in &signers {
        s.sign_certificate(&conformance::template(7), &conformance::subject_key(), None)
            .await
            .unwrap();
    }
}
