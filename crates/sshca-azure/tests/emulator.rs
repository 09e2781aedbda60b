#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The shared conformance suite and the Key Vault client's view of the emulator.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, KeyAttributes, KeyOperation, KeyType,
    UpdateKeyPropertiesParameters,
};
use kms_emulator::{Config, Emulator};
use sshca_azure::{AzureSigner, StaticToken};
use sshca_core::SigAlg;
use sshca_signer::conformance::{run_remote, RemoteKey};
use sshca_signer::{ErrorKind, KeySigner, KeyUri, Registry};

fn token() -> Arc<dyn TokenCredential> {
    Arc::new(StaticToken::new("test-token"))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_remote(sshca_azure::SCHEME, |uri| {
        AzureSigner::open(uri, Some(token()))
    });
    r
}

fn with_ca(emu: &Emulator, kid: &str) -> String {
    format!(
        "azurekv:{kid}?ca-cert={}&backoff-ms=5",
        emu.endpoints().azure_ca_cert.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_every_key_type() {
    let emu = Arc::new(
        Emulator::start(Config {
            azure_token: Some("test-token".into()),
            ..Config::default()
        })
        .await
        .unwrap(),
    );
    let mut keys = Vec::new();
    for (name, kty, arg, algs) in [
        ("p256", "EC", "P-256", vec![SigAlg::EcdsaP256]),
        ("p384", "EC-HSM", "P-384", vec![SigAlg::EcdsaP384]),
        ("p521", "EC", "P-521", vec![SigAlg::EcdsaP521]),
        (
            "rsa2048",
            "RSA",
            "2048",
            vec![SigAlg::RsaSha512, SigAlg::RsaSha256],
        ),
        (
            "rsa3072",
            "RSA-HSM",
            "3072",
            vec![SigAlg::RsaSha512, SigAlg::RsaSha256],
        ),
        (
            "rsa4096",
            "RSA",
            "4096",
            vec![SigAlg::RsaSha512, SigAlg::RsaSha256],
        ),
    ] {
        let kid = emu.create_azure_key(name, kty, arg).unwrap();
        keys.push(RemoteKey {
            uri: with_ca(&emu, &kid),
            algorithms: algs,
        });
    }
    // A key that may only wrap keys, made through the SDK.
    let vault = emu.endpoints().azure.clone();
    let client = sshca_azure::client_for(
        &KeyUri::parse(&with_ca(&emu, &format!("{vault}/keys/x"))).unwrap(),
        token(),
    )
    .unwrap();
    let params = CreateKeyParameters {
        kty: Some(KeyType::Rsa),
        key_size: Some(2048),
        key_ops: Some(vec![KeyOperation::WrapKey, KeyOperation::UnwrapKey]),
        ..Default::default()
    };
    client
        .create_key("wrap-only", params.try_into().unwrap(), None)
        .await
        .unwrap();
    let hooks = sshca_testkit::emulator_hooks(&emu, "azure", "sign", "getKey");
    run_remote(
        &registry(),
        &keys,
        &with_ca(&emu, &format!("{vault}/keys/missing")),
        &with_ca(&emu, &format!("{vault}/keys/wrap-only")),
        &hooks,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_tokens_versions_and_trust() {
    let emu = Emulator::start(Config {
        azure_token: Some("test-token".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let vault = emu.endpoints().azure.clone();
    let uri = with_ca(&emu, &format!("{vault}/keys/ca"));
    let client = sshca_azure::client_for(&KeyUri::parse(&uri).unwrap(), token()).unwrap();
    let params = CreateKeyParameters {
        kty: Some(KeyType::Ec),
        curve: Some(CurveName::P256),
        ..Default::default()
    };
    let v1 = client
        .create_key("ca", params.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    // The first request went out without a token and got the challenge.
    assert!(emu.count("azure", "challenge") >= 1);
    // A new version: a URI without version signs with the newest one.
    let params = CreateKeyParameters {
        kty: Some(KeyType::Ec),
        curve: Some(CurveName::P384),
        ..Default::default()
    };
    client
        .create_key("ca", params.try_into().unwrap(), None)
        .await
        .unwrap();
    let s = registry().open(&uri).await.unwrap();
    assert_eq!(s.algorithms().await.unwrap(), vec![SigAlg::EcdsaP384]);
    let v1_kid = v1.key.unwrap().kid.unwrap();
    let s1 = registry().open(&with_ca(&emu, &v1_kid)).await.unwrap();
    assert_eq!(s1.algorithms().await.unwrap(), vec![SigAlg::EcdsaP256]);
    // A wrong token is refused.
    let e = AzureSigner::open(
        KeyUri::parse(&uri).unwrap(),
        Some(Arc::new(StaticToken::new("nope"))),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    // Without the emulator's CA, TLS is refused.
    let e = AzureSigner::open(
        KeyUri::parse(&format!("azurekv:{vault}/keys/ca")).unwrap(),
        Some(token()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // Disabled: refused when the signer is built.
    let upd = UpdateKeyPropertiesParameters {
        key_attributes: Some(KeyAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .update_key_properties("ca", upd.try_into().unwrap(), None)
        .await
        .unwrap();
    let e = registry().open(&uri).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidKey, "{e}");
}

/// Records the scopes it is asked for; hands out the emulator's token.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<Vec<String>>>);

#[async_trait::async_trait]
impl TokenCredential for Recorder {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.0
            .lock()
            .unwrap()
            .push(scopes.iter().map(|s| s.to_string()).collect());
        StaticToken::new("test-token").get_token(scopes, None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_only_for_key_vault_whatever_the_challenge_names() {
    let emu = Emulator::start(Config {
        azure_token: Some("test-token".into()),
        azure_challenge_resource: "https://management.azure.com".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let vault = emu.endpoints().azure.clone();
    let client = sshca_azure::client_for(
        &KeyUri::parse(&with_ca(&emu, &format!("{vault}/keys/ca"))).unwrap(),
        token(),
    )
    .unwrap();
    let params = CreateKeyParameters {
        kty: Some(KeyType::Ec),
        curve: Some(CurveName::P256),
        ..Default::default()
    };
    client
        .create_key("ca", params.try_into().unwrap(), None)
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let signer = AzureSigner::open(
        KeyUri::parse(&with_ca(&emu, &format!("{vault}/keys/ca"))).unwrap(),
        Some(recorder.clone()),
    )
    .await
    .unwrap();
    assert_eq!(signer.algorithms().await.unwrap(), vec![SigAlg::EcdsaP256]);
    let asked = recorder.0.lock().unwrap().clone();
    assert!(!asked.is_empty());
    for scopes in asked {
        assert_eq!(scopes, ["https://vault.azure.net/.default"]);
    }
    // Sovereign clouds and Managed HSM get their own Key Vault scope.
    for (host, scope) in [
        ("v.vault.azure.cn", "https://vault.azure.cn/.default"),
        (
            "h.managedhsm.azure.net:443",
            "https://managedhsm.azure.net/.default",
        ),
        ("kv.internal.example", "https://vault.azure.net/.default"),
    ] {
        assert_eq!(sshca_azure::key_vault_scope(host), scope);
    }
    // The fixed token never shows in Debug output.
    assert!(!format!("{:?}", StaticToken::new("s3cret-token")).contains("s3cret"));
}
