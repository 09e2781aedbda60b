#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The shared conformance suite and the Cloud KMS client's view of the emulator.

use std::sync::Arc;

use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::{
    CryptoKeyVersionAlgorithm, CryptoKeyVersionState,
};
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, CryptoKeyVersionTemplate, KeyRing};
use kms_emulator::{Config, Emulator};
use sshca_core::SigAlg;
use sshca_signer::conformance::{run_remote, RemoteKey};
use sshca_signer::{ErrorKind, KeySigner, KeyUri, Registry};

fn registry() -> Registry {
    let mut r = Registry::new();
    sshca_gcp::register(&mut r);
    r
}

const RING: &str = "projects/p/locations/global/keyRings/ssh";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_every_algorithm() {
    let emu = Arc::new(Emulator::start(Config::default()).await.unwrap());
    let ep = emu.endpoints().gcp.clone();
    let uri = |v: &str| format!("gcpkms:{v}?endpoint={ep}&backoff-ms=5");
    let mut keys = Vec::new();
    for (alg, algs) in [
        ("EC_SIGN_P256_SHA256", vec![SigAlg::EcdsaP256]),
        ("EC_SIGN_P384_SHA384", vec![SigAlg::EcdsaP384]),
        ("EC_SIGN_ED25519", vec![SigAlg::Ed25519]),
        ("RSA_SIGN_PKCS1_2048_SHA256", vec![SigAlg::RsaSha256]),
        ("RSA_SIGN_PKCS1_3072_SHA256", vec![SigAlg::RsaSha256]),
        ("RSA_SIGN_PKCS1_4096_SHA256", vec![SigAlg::RsaSha256]),
        ("RSA_SIGN_PKCS1_4096_SHA512", vec![SigAlg::RsaSha512]),
    ] {
        let v = emu
            .create_gcp_key(
                &format!("{RING}/cryptoKeys/{}", alg.to_lowercase().replace('_', "-")),
                alg,
            )
            .unwrap();
        keys.push(RemoteKey {
            uri: uri(&v),
            algorithms: algs,
        });
    }
    let sym = emu
        .create_gcp_key(
            &format!("{RING}/cryptoKeys/sym"),
            "GOOGLE_SYMMETRIC_ENCRYPTION",
        )
        .unwrap();
    let hooks = sshca_testkit::emulator_hooks(&emu, "gcp", "asymmetricSign", "getPublicKey");
    run_remote(
        &registry(),
        &keys,
        &uri(&format!("{RING}/cryptoKeys/missing/cryptoKeyVersions/1")),
        &uri(&sym),
        &hooks,
    )
    .await;
    // A PSS key cannot make SSH signatures: refused when the signer is built.
    let pss = emu
        .create_gcp_key(
            &format!("{RING}/cryptoKeys/pss"),
            "RSA_SIGN_PSS_2048_SHA256",
        )
        .unwrap();
    let e = registry().open(&uri(&pss)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_drives_key_management() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let ep = emu.endpoints().gcp.clone();
    let parent = "projects/p/locations/europe-west1";
    let base_uri = KeyUri::parse(&format!(
        "gcpkms:{parent}/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?endpoint={ep}"
    ))
    .unwrap();
    let client = sshca_gcp::client_for(&base_uri).await.unwrap();
    let ring: KeyRing = client
        .create_key_ring()
        .set_parent(parent)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await
        .unwrap();
    assert_eq!(ring.name, format!("{parent}/keyRings/r"));
    let dup = client
        .create_key_ring()
        .set_parent(parent)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await;
    assert!(dup.unwrap_err().to_string().contains("already exists"));
    let key: CryptoKey = client
        .create_crypto_key()
        .set_parent(&ring.name)
        .set_crypto_key_id("k")
        .set_crypto_key(
            CryptoKey::new()
                .set_purpose(CryptoKeyPurpose::AsymmetricSign)
                .set_version_template(
                    CryptoKeyVersionTemplate::new()
                        .set_algorithm(CryptoKeyVersionAlgorithm::EcSignP256Sha256),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(key.purpose, CryptoKeyPurpose::AsymmetricSign);
    let got = client
        .get_crypto_key()
        .set_name(&key.name)
        .send()
        .await
        .unwrap();
    assert_eq!(got.name, key.name);
    let list = client
        .list_crypto_keys()
        .set_parent(&ring.name)
        .send()
        .await
        .unwrap();
    assert_eq!(list.crypto_keys.len(), 1);
    let v2: CryptoKeyVersion = client
        .create_crypto_key_version()
        .set_parent(&key.name)
        .set_crypto_key_version(CryptoKeyVersion::new())
        .send()
        .await
        .unwrap();
    assert!(v2.name.ends_with("/cryptoKeyVersions/2"));
    let versions = client
        .list_crypto_key_versions()
        .set_parent(&key.name)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.crypto_key_versions.len(), 2);
    // The backend signs with version 1.
    let s = registry().open(&base_uri.to_string()).await.unwrap();
    s.sign(SigAlg::EcdsaP256, b"hello").await.unwrap();
    // Disable version 1: opening is refused with a clear error.
    let disabled = client
        .update_crypto_key_version()
        .set_crypto_key_version(
            CryptoKeyVersion::new()
                .set_name(format!("{}/cryptoKeyVersions/1", key.name))
                .set_state(CryptoKeyVersionState::Disabled),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.state, CryptoKeyVersionState::Disabled);
    let e = registry().open(&base_uri.to_string()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidKey, "{e}");
    assert!(e.to_string().contains("not enabled"), "{e}");
    // Symmetric encryption round trip.
    let sym = client
        .create_crypto_key()
        .set_parent(&ring.name)
        .set_crypto_key_id("sym")
        .set_crypto_key(CryptoKey::new().set_purpose(CryptoKeyPurpose::EncryptDecrypt))
        .send()
        .await
        .unwrap();
    let ct = client
        .encrypt()
        .set_name(&sym.name)
        .set_plaintext(b"secret".to_vec())
        .send()
        .await
        .unwrap();
    let pt = client
        .decrypt()
        .set_name(&sym.name)
        .set_ciphertext(ct.ciphertext)
        .send()
        .await
        .unwrap();
    assert_eq!(&pt.plaintext[..], b"secret");
}
