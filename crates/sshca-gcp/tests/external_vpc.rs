#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Cloud KMS EkmService and EXTERNAL_VPC keys through the official client:
//! EkmConnections, EkmConfig and VerifyConnectivity against the emulator,
//! and the shared conformance suite against keys the emulated Cloud KMS
//! holds in the emulated external key manager.

use std::sync::Arc;

use google_cloud_gax::error::rpc::Code;
use google_cloud_kms_v1::client::{EkmService, KeyManagementService};
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionAlgorithm as Alg;
use google_cloud_kms_v1::model::ekm_connection::{KeyManagementMode, ServiceResolver};
use google_cloud_kms_v1::model::{
    Certificate, CryptoKey, CryptoKeyVersion, CryptoKeyVersionTemplate, EkmConfig, EkmConnection,
    ExternalProtectionLevelOptions, KeyRing, ProtectionLevel,
};
use google_cloud_wkt::FieldMask;
use kms_emulator::{Config, Emulator, FaultError};
use sshca_core::SigAlg;
use sshca_signer::conformance::{run_remote, template, RemoteKey};
use sshca_signer::{KeySigner, KeyUri, Registry, SignerExt};

const LOC: &str = "projects/p/locations/europe-west1";
const SPACE: &str = "v0/spaces/ssh-ca";

fn registry() -> Registry {
    let mut r = Registry::new();
    sshca_gcp::register(&mut r);
    r
}

fn pem_certs(path: &std::path::Path) -> Vec<Vec<u8>> {
    let text = std::fs::read(path).unwrap();
    rustls_pemfile::certs(&mut &text[..])
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn resolver(url: &str, certs: &[Vec<u8>]) -> ServiceResolver {
    ServiceResolver::new()
        .set_service_directory_service(format!("{LOC}/namespaces/ekm/services/replica"))
        .set_hostname(url.trim_start_matches("https://"))
        .set_server_certificates(
            certs
                .iter()
                .map(|d| Certificate::new().set_raw_der(d.clone())),
        )
}

struct Clients {
    ekm: EkmService,
    kms: KeyManagementService,
}

async fn clients(emu: &Emulator) -> Clients {
    let ep = emu.endpoints().gcp.clone();
    let uri = KeyUri::parse(&format!(
        "gcpkms:{LOC}/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?endpoint={ep}"
    ))
    .unwrap();
    Clients {
        ekm: sshca_gcp::ekm_service(Some(&ep)).await.unwrap(),
        kms: sshca_gcp::client_for(&uri).await.unwrap(),
    }
}

async fn create_connection(
    c: &Clients,
    id: &str,
    resolvers: Vec<ServiceResolver>,
    mode: KeyManagementMode,
    space: &str,
) -> Result<EkmConnection, google_cloud_kms_v1::Error> {
    c.ekm
        .create_ekm_connection()
        .set_parent(LOC)
        .set_ekm_connection_id(id)
        .set_ekm_connection(
            EkmConnection::new()
                .set_service_resolvers(resolvers)
                .set_key_management_mode(mode)
                .set_crypto_space_path(space),
        )
        .send()
        .await
}

fn status(e: &google_cloud_kms_v1::Error) -> (Code, String) {
    let st = e.status().unwrap_or_else(|| panic!("no status: {e}"));
    (st.code, st.message.clone())
}

/// Creates an EXTERNAL_VPC P-256/Ed25519/... key behind `conn` in ring `r`.
async fn create_external_crypto_key(
    c: &Clients,
    conn: &str,
    id: &str,
    alg: Alg,
    skip_initial_version: bool,
) -> Result<CryptoKey, google_cloud_kms_v1::Error> {
    c.kms
        .create_crypto_key()
        .set_parent(format!("{LOC}/keyRings/r"))
        .set_crypto_key_id(id)
        .set_skip_initial_version_creation(skip_initial_version)
        .set_crypto_key(
            CryptoKey::new()
                .set_purpose(CryptoKeyPurpose::AsymmetricSign)
                .set_crypto_key_backend(conn)
                .set_version_template(
                    CryptoKeyVersionTemplate::new()
                        .set_algorithm(alg)
                        .set_protection_level(ProtectionLevel::ExternalVpc),
                ),
        )
        .send()
        .await
}

/// Adds a version that is the key manager's key at `key_path`.
async fn add_external_version(
    c: &Clients,
    key: &str,
    key_path: &str,
) -> Result<CryptoKeyVersion, google_cloud_kms_v1::Error> {
    c.kms
        .create_crypto_key_version()
        .set_parent(key)
        .set_crypto_key_version(
            CryptoKeyVersion::new().set_external_protection_level_options(
                ExternalProtectionLevelOptions::new().set_ekm_connection_key_path(key_path),
            ),
        )
        .send()
        .await
}

/// An EXTERNAL_VPC key whose version 1 is `key_path` on the key manager.
async fn external_key(c: &Clients, conn: &str, id: &str, alg: Alg, key_path: &str) -> String {
    let key = create_external_crypto_key(c, conn, id, alg, true)
        .await
        .unwrap();
    assert_eq!(key.crypto_key_backend, conn);
    let v = add_external_version(c, &key.name, key_path).await.unwrap();
    assert_eq!(v.protection_level, ProtectionLevel::ExternalVpc);
    assert_eq!(
        v.external_protection_level_options
            .as_ref()
            .map(|o| o.ekm_connection_key_path.as_str()),
        Some(key_path)
    );
    v.name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ekm_connections_config_and_connectivity() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let ep = emu.endpoints().clone();
    let c = clients(&emu).await;
    let leaf = pem_certs(&ep.ekm_server_cert);
    let ca = pem_certs(&ep.ekm_ca_cert);

    let conn = create_connection(
        &c,
        "hsm",
        ep.ekm.iter().map(|u| resolver(u, &leaf)).collect(),
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap();
    assert_eq!(conn.name, format!("{LOC}/ekmConnections/hsm"));
    assert_eq!(conn.service_resolvers.len(), 2);
    let cert = &conn.service_resolvers[0].server_certificates[0];
    assert!(cert.parsed);
    assert!(cert.subject.contains("kms-emulator"), "{}", cert.subject);
    assert!(cert.issuer.contains("kms-emulator CA"), "{}", cert.issuer);
    assert!(cert
        .subject_alternative_dns_names
        .contains(&"localhost".to_string()));
    assert_eq!(cert.sha256_fingerprint.len(), 64);
    assert!(!conn.etag.is_empty());
    assert!(conn.create_time.is_some());

    // Duplicates, bad input.
    let dup = create_connection(&c, "hsm", vec![], KeyManagementMode::Manual, "")
        .await
        .unwrap_err();
    assert_eq!(status(&dup).0, Code::AlreadyExists);
    let bad_cert = create_connection(
        &c,
        "bad",
        vec![resolver(&ep.ekm[0], &[b"not a certificate".to_vec()])],
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap_err();
    let (code, msg) = status(&bad_cert);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        msg.contains("serviceResolvers[0].serverCertificates[0].rawDer"),
        "{msg}"
    );
    let no_space = create_connection(&c, "bad", vec![], KeyManagementMode::CloudKms, "")
        .await
        .unwrap_err();
    assert!(status(&no_space).1.contains("cryptoSpacePath"));

    // Get and list.
    let got = c
        .ekm
        .get_ekm_connection()
        .set_name(&conn.name)
        .send()
        .await
        .unwrap();
    assert_eq!(got.etag, conn.etag);
    let list = c
        .ekm
        .list_ekm_connections()
        .set_parent(LOC)
        .send()
        .await
        .unwrap();
    assert_eq!(list.ekm_connections.len(), 1);
    let missing = c
        .ekm
        .get_ekm_connection()
        .set_name(format!("{LOC}/ekmConnections/nope"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&missing).0, Code::NotFound);

    // Patch with the current etag; a stale etag is refused.
    let patched = c
        .ekm
        .update_ekm_connection()
        .set_ekm_connection(
            EkmConnection::new()
                .set_name(&conn.name)
                .set_etag(&conn.etag)
                .set_key_management_mode(KeyManagementMode::CloudKms)
                .set_crypto_space_path(SPACE),
        )
        .set_update_mask(
            FieldMask::default().set_paths(["key_management_mode", "crypto_space_path"]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(patched.key_management_mode, KeyManagementMode::CloudKms);
    assert_eq!(patched.crypto_space_path, SPACE);
    assert_ne!(patched.etag, conn.etag);
    assert_eq!(patched.service_resolvers.len(), 2, "not in the mask: kept");
    let stale = c
        .ekm
        .update_ekm_connection()
        .set_ekm_connection(
            EkmConnection::new()
                .set_name(&conn.name)
                .set_etag(&conn.etag)
                .set_crypto_space_path("v0/other"),
        )
        .set_update_mask(FieldMask::default().set_paths(["crypto_space_path"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&stale).0, Code::Aborted);
    let bad_mask = c
        .ekm
        .update_ekm_connection()
        .set_ekm_connection(EkmConnection::new().set_name(&conn.name))
        .set_update_mask(FieldMask::default().set_paths(["name"]))
        .send()
        .await
        .unwrap_err();
    assert!(status(&bad_mask).1.contains("\"name\" cannot be updated"));

    // EkmConfig.
    let cfg = c
        .ekm
        .get_ekm_config()
        .set_name(format!("{LOC}/ekmConfig"))
        .send()
        .await
        .unwrap();
    assert_eq!(cfg.default_ekm_connection, "");
    let cfg = c
        .ekm
        .update_ekm_config()
        .set_ekm_config(
            EkmConfig::new()
                .set_name(format!("{LOC}/ekmConfig"))
                .set_default_ekm_connection(&conn.name),
        )
        .set_update_mask(FieldMask::default().set_paths(["default_ekm_connection"]))
        .send()
        .await
        .unwrap();
    assert_eq!(cfg.default_ekm_connection, conn.name);
    let again = c
        .ekm
        .get_ekm_config()
        .set_name(format!("{LOC}/ekmConfig"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.default_ekm_connection, conn.name);
    let unknown = c
        .ekm
        .update_ekm_config()
        .set_ekm_config(
            EkmConfig::new()
                .set_name(format!("{LOC}/ekmConfig"))
                .set_default_ekm_connection(format!("{LOC}/ekmConnections/nope")),
        )
        .set_update_mask(FieldMask::default().set_paths(["default_ekm_connection"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&unknown).0, Code::NotFound);

    // VerifyConnectivity: both replicas answer.
    c.ekm
        .verify_connectivity()
        .set_name(&conn.name)
        .send()
        .await
        .unwrap();

    // A replica failing its health check is named.
    emu.add_fault(kms_emulator::Fault {
        operation: Some("health".into()),
        replica: Some(1),
        error: Some(FaultError::Unavailable),
        count: Some(1),
        ..kms_emulator::Fault::new("ekm")
    })
    .unwrap();
    let e = c
        .ekm
        .verify_connectivity()
        .set_name(&conn.name)
        .send()
        .await
        .unwrap_err();
    let (code, msg) = status(&e);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("resolver 1"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    assert!(!msg.contains("resolver 0"), "{msg}");

    // A replica answering with a redirect fails: it is never followed.
    let health_before = emu.count("ekm", "health");
    emu.add_fault(kms_emulator::Fault {
        operation: Some("health".into()),
        replica: Some(1),
        redirect: Some(format!("{}/v1/health", emu.endpoints().ekm[0])),
        count: Some(1),
        ..kms_emulator::Fault::new("ekm")
    })
    .unwrap();
    let e = c
        .ekm
        .verify_connectivity()
        .set_name(&conn.name)
        .send()
        .await
        .unwrap_err();
    let (code, msg) = status(&e);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        msg.contains("resolver 1") && msg.contains("never followed"),
        "{msg}"
    );
    // Replica 0 was asked once (its own check), not a second time through
    // the redirect.
    assert_eq!(emu.count("ekm", "health"), health_before + 2);

    // Only the pinned leaf is trusted: the CA that issued it is not enough,
    // and a dead replica is reported as unreachable.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let wrong = create_connection(
        &c,
        "wrong",
        vec![
            resolver(&ep.ekm[0], &ca),
            resolver(&dead, &leaf),
            resolver(&ep.ekm[1], &leaf),
        ],
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap();
    let e = c
        .ekm
        .verify_connectivity()
        .set_name(&wrong.name)
        .send()
        .await
        .unwrap_err();
    let (code, msg) = status(&e);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("resolver 0"), "{msg}");
    assert!(msg.contains("serverCertificates"), "{msg}");
    assert!(msg.contains(&format!("resolver 1 ({dead})")), "{msg}");
    assert!(!msg.contains("resolver 2"), "{msg}");

    // The emulator dials loopback only.
    let far = create_connection(
        &c,
        "far",
        vec![resolver("192.0.2.1:443", &leaf)],
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap();
    let e = c
        .ekm
        .verify_connectivity()
        .set_name(&far.name)
        .send()
        .await
        .unwrap_err();
    assert!(status(&e).1.contains("only dials loopback"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_external_vpc_keys() {
    let emu = Arc::new(Emulator::start(Config::default()).await.unwrap());
    let ep = emu.endpoints().clone();
    let c = clients(&emu).await;
    let leaf = pem_certs(&ep.ekm_server_cert);
    c.kms
        .create_key_ring()
        .set_parent(LOC)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await
        .unwrap();
    let conn = create_connection(
        &c,
        "hsm",
        ep.ekm.iter().map(|u| resolver(u, &leaf)).collect(),
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap();
    let uri = |v: &str| format!("gcpkms:{v}?endpoint={}&backoff-ms=5", ep.gcp);
    let mut keys = Vec::new();
    for (name, alg, algs) in [
        (
            "EC_SIGN_P256_SHA256",
            Alg::EcSignP256Sha256,
            vec![SigAlg::EcdsaP256],
        ),
        (
            "EC_SIGN_P384_SHA384",
            Alg::EcSignP384Sha384,
            vec![SigAlg::EcdsaP384],
        ),
        ("EC_SIGN_ED25519", Alg::EcSignEd25519, vec![SigAlg::Ed25519]),
        (
            "RSA_SIGN_PKCS1_2048_SHA256",
            Alg::RsaSignPkcs12048Sha256,
            vec![SigAlg::RsaSha256],
        ),
        (
            "RSA_SIGN_PKCS1_4096_SHA512",
            Alg::RsaSignPkcs14096Sha512,
            vec![SigAlg::RsaSha512],
        ),
    ] {
        let id = name.to_lowercase().replace('_', "-");
        let path = emu.create_ekm_key(SPACE, &id, name).unwrap();
        let v = external_key(&c, &conn.name, &id, alg, &path).await;
        keys.push(RemoteKey {
            uri: uri(&v),
            algorithms: algs,
        });
    }
    let sym = emu
        .create_gcp_key(
            &format!("{LOC}/keyRings/r/cryptoKeys/sym"),
            "GOOGLE_SYMMETRIC_ENCRYPTION",
        )
        .unwrap();
    let hooks = sshca_testkit::emulator_hooks(&emu, "gcp", "asymmetricSign", "getPublicKey");
    let signs_before = emu.count("ekm", "sign");
    run_remote(
        &registry(),
        &keys,
        &uri(&format!(
            "{LOC}/keyRings/r/cryptoKeys/missing/cryptoKeyVersions/1"
        )),
        &uri(&sym),
        &hooks,
    )
    .await;
    // The signatures were made by the key manager (the suite's cost check
    // alone signs five certificates per key).
    let ekm_signs = emu.count("ekm", "sign") - signs_before;
    assert!(ekm_signs >= 5 * keys.len() as u64, "{ekm_signs}");

    // A replica failing mid-run: the emulated Cloud KMS fails over to the
    // other one and every certificate is still issued and valid.
    let signer = registry().open(&keys[0].uri).await.unwrap();
    emu.fail_next("ekm", "sign", FaultError::Unavailable, 3)
        .unwrap();
    emu.add_fault(kms_emulator::Fault {
        operation: Some("sign".into()),
        replica: Some(0),
        drop_connection: true,
        count: Some(5),
        ..kms_emulator::Fault::new("ekm")
    })
    .unwrap();
    let ca = signer.public_key().await.unwrap();
    for i in 0..12 {
        let cert = signer
            .sign_certificate(
                &template(9000 + i),
                &sshca_signer::conformance::subject_key(),
                None,
            )
            .await
            .unwrap();
        cert.verify_signature().unwrap();
        assert_eq!(cert.signature_key(), &ca);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_kms_mode_and_mismatches() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let ep = emu.endpoints().clone();
    let c = clients(&emu).await;
    let leaf = pem_certs(&ep.ekm_server_cert);
    c.kms
        .create_key_ring()
        .set_parent(LOC)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await
        .unwrap();
    let managed = create_connection(
        &c,
        "managed",
        vec![resolver(&ep.ekm[0], &leaf)],
        KeyManagementMode::CloudKms,
        SPACE,
    )
    .await
    .unwrap();
    // CLOUD_KMS mode: Cloud KMS creates the key on the key manager.
    let key =
        create_external_crypto_key(&c, &managed.name, "managed", Alg::EcSignP256Sha256, false)
            .await
            .unwrap();
    let v1 = format!("{}/cryptoKeyVersions/1", key.name);
    let got = c
        .kms
        .get_crypto_key_version()
        .set_name(&v1)
        .send()
        .await
        .unwrap();
    let path = got
        .external_protection_level_options
        .unwrap()
        .ekm_connection_key_path;
    assert!(path.starts_with(&format!("{SPACE}/keys/")), "{path}");
    let s = registry()
        .open(&format!("gcpkms:{v1}?endpoint={}", ep.gcp))
        .await
        .unwrap();
    let cert = s
        .sign_certificate(
            &template(1),
            &sshca_signer::conformance::subject_key(),
            None,
        )
        .await
        .unwrap();
    cert.verify_signature().unwrap();

    // MANUAL mode needs skipInitialVersionCreation and a key path.
    let manual = create_connection(
        &c,
        "manual",
        vec![resolver(&ep.ekm[0], &leaf)],
        KeyManagementMode::Manual,
        "",
    )
    .await
    .unwrap();
    let e = create_external_crypto_key(&c, &manual.name, "no-skip", Alg::EcSignP256Sha256, false)
        .await
        .unwrap_err();
    assert!(status(&e).1.contains("skipInitialVersionCreation"), "{e}");
    // A key manager key of another algorithm is refused.
    let ed = emu.create_ekm_key(SPACE, "ed", "EC_SIGN_ED25519").unwrap();
    let key = create_external_crypto_key(&c, &manual.name, "p256", Alg::EcSignP256Sha256, true)
        .await
        .unwrap();
    let e = add_external_version(&c, &key.name, &ed).await.unwrap_err();
    let (code, msg) = status(&e);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("EC_SIGN_ED25519"), "{msg}");
    // A path the key manager does not know.
    let e = add_external_version(&c, &key.name, &format!("{SPACE}/keys/absent"))
        .await
        .unwrap_err();
    let (code, msg) = status(&e);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("NOT_FOUND"), "{msg}");
    // Every replica down: the signer gets a clear, temporary error.
    let p = emu
        .create_ekm_key(SPACE, "p", "EC_SIGN_P256_SHA256")
        .unwrap();
    let key = create_external_crypto_key(&c, &manual.name, "down", Alg::EcSignP256Sha256, true)
        .await
        .unwrap();
    let v = add_external_version(&c, &key.name, &p).await.unwrap();
    let s = registry()
        .open(&format!(
            "gcpkms:{}?endpoint={}&retries=1&backoff-ms=1",
            v.name, ep.gcp
        ))
        .await
        .unwrap();
    emu.fail_next("ekm", "sign", FaultError::Unavailable, 1000)
        .unwrap();
    let e = s.sign(SigAlg::EcdsaP256, b"m").await.unwrap_err();
    assert_eq!(e.kind(), sshca_signer::ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("could not be reached"), "{e}");
}
