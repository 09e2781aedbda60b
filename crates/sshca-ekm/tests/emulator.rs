#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The shared conformance suite over two replicas of the emulated external
//! key manager, failover, certificate pinning, client identity and
//! verify_connectivity.

use std::sync::Arc;

use kms_emulator::{Config, Emulator, Fault};
use sshca_core::{CertTemplate, CertType, SigAlg};
use sshca_signer::conformance::{run_remote, RemoteKey};
use sshca_signer::{ErrorKind, KeySigner, KeyUri, Registry, SignerExt};

const SPACE: &str = "v0/spaces/ssh-ca";

fn registry() -> Registry {
    let mut r = Registry::new();
    sshca_ekm::register(&mut r);
    r
}

fn hosts(emu: &Emulator) -> String {
    emu.endpoints()
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn uri(emu: &Emulator, key: &str, extra: &str) -> String {
    let ep = emu.endpoints();
    format!(
        "ekm:{SPACE}/keys/{key}?resolver={}&server-cert={}&client-identity={}&backoff-ms=5{extra}",
        hosts(emu),
        ep.ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    )
}

fn subject() -> sshca_core::KeyData {
    use sshca_core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
    sshca_core::KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
}

fn template(i: u64) -> CertTemplate {
    let mut t = CertTemplate::new(CertType::User, format!("ekm-{i}"));
    t.principals = vec!["alice".into()];
    t.serial = i + 1;
    t.valid_after = 1_700_000_000;
    t.valid_before = 4_000_000_000;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_over_two_replicas() {
    let emu = Arc::new(Emulator::start(Config::default()).await.unwrap());
    assert_eq!(emu.endpoints().ekm.len(), 2);
    let mut keys = Vec::new();
    for (alg, algs) in [
        ("EC_SIGN_P256_SHA256", vec![SigAlg::EcdsaP256]),
        ("EC_SIGN_P384_SHA384", vec![SigAlg::EcdsaP384]),
        ("EC_SIGN_ED25519", vec![SigAlg::Ed25519]),
        ("RSA_SIGN_PKCS1_2048_SHA256", vec![SigAlg::RsaSha256]),
        ("RSA_SIGN_PKCS1_4096_SHA512", vec![SigAlg::RsaSha512]),
    ] {
        let id = alg.to_lowercase().replace('_', "-");
        emu.create_ekm_key(SPACE, &id, alg).unwrap();
        keys.push(RemoteKey {
            uri: uri(&emu, &id, ""),
            algorithms: algs,
        });
    }
    emu.create_ekm_key(SPACE, "pss", "RSA_SIGN_PSS_2048_SHA256")
        .unwrap();
    let hooks = sshca_testkit::emulator_hooks(&emu, "ekm", "sign", "getKey");
    run_remote(
        &registry(),
        &keys,
        &uri(&emu, "missing", ""),
        &uri(&emu, "pss", ""),
        &hooks,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_when_a_replica_fails_mid_run() {
    let emu = Arc::new(Emulator::start(Config::default()).await.unwrap());
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let signer = registry()
        .open(&uri(&emu, "ca", "&timeout=2"))
        .await
        .unwrap();
    let key = subject();
    for i in 0..5 {
        signer
            .sign_certificate(&template(i), &key, None)
            .await
            .unwrap();
    }
    // Replica 0 now drops every connection, then answers 503: every
    // certificate is still issued, by replica 1.
    for fault in [
        r#"{"service":"ekm","replica":0,"drop_connection":true,"count":3}"#,
        r#"{"service":"ekm","replica":0,"error":"unavailable"}"#,
    ] {
        emu.add_fault(serde_json::from_str::<Fault>(fault).unwrap())
            .unwrap();
    }
    let before = emu.count("ekm", "sign");
    let mut set = tokio::task::JoinSet::new();
    for i in 5..25 {
        let (s, k) = (signer.clone(), key.clone());
        set.spawn(async move { s.sign_certificate(&template(i), &k, None).await });
    }
    let mut serials = Vec::new();
    while let Some(r) = set.join_next().await {
        let cert = r.unwrap().expect("every certificate is issued");
        cert.verify_signature().unwrap();
        serials.push(cert.serial());
    }
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 20);
    assert!(emu.count("ekm", "sign") >= before + 20);

    // Every replica down: a clear error naming each.
    emu.add_fault(
        serde_json::from_str::<Fault>(r#"{"service":"ekm","replica":1,"error":"unavailable"}"#)
            .unwrap(),
    )
    .unwrap();
    let e = signer
        .sign_certificate(&template(99), &key, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let msg = e.to_string();
    for h in hosts(&emu).split(',') {
        assert!(msg.contains(h), "{msg}");
    }
    assert!(msg.contains("503"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_and_unreachable_resolvers() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_ED25519").unwrap();
    // A resolver where nothing listens comes first: the signer fails over.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let ep = emu.endpoints();
    let u = format!(
        "ekm:{SPACE}/keys/ca?resolver={dead_addr},{}&server-cert={}&client-identity={}&timeout=2",
        hosts(&emu),
        ep.ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    );
    let signer = registry().open(&u).await.unwrap();
    let c = signer
        .sign_certificate(&template(1), &subject(), None)
        .await
        .unwrap();
    c.verify_signature().unwrap();

    // Only dead resolvers: a clear error at open.
    let u = format!(
        "ekm:{SPACE}/keys/ca?resolver={dead_addr}&server-cert={}&client-identity={}&timeout=2&retries=0",
        ep.ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    );
    let e = registry().open(&u).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains(&dead_addr.to_string()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pinned_servers_and_known_clients() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let ep = emu.endpoints();
    let dir = tempfile::tempdir().unwrap();

    // Pinning the server certificate itself works as well as pinning its CA.
    let leaf = format!(
        "ekm:{SPACE}/keys/ca?resolver={}&server-cert={}&client-identity={}",
        hosts(&emu),
        ep.ekm_server_cert.display(),
        ep.ekm_client_identity.display()
    );
    registry().open(&leaf).await.unwrap();

    // Another emulator's CA is not trusted.
    let other = Emulator::start(Config::default()).await.unwrap();
    let wrong_ca = format!(
        "ekm:{SPACE}/keys/ca?resolver={}&server-cert={}&client-identity={}&retries=0",
        hosts(&emu),
        other.endpoints().ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    );
    let e = registry().open(&wrong_ca).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");

    // No client identity, or another emulator's: refused by the server.
    for identity in [
        String::new(),
        format!(
            "&client-identity={}",
            other.endpoints().ekm_client_identity.display()
        ),
    ] {
        let u = format!(
            "ekm:{SPACE}/keys/ca?resolver={}&server-cert={}&retries=0{identity}",
            hosts(&emu),
            ep.ekm_ca_cert.display()
        );
        let e = registry().open(&u).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{identity}: {e}");
    }

    // Bad input: clear errors before any traffic.
    for (u, want) in [
        (format!("ekm:{SPACE}/keys/ca?server-cert=x"), "resolver"),
        (
            format!("ekm:{SPACE}/keys/ca?resolver=127.0.0.1:1"),
            "server-cert",
        ),
        (
            format!(
                "ekm:{SPACE}/ca?resolver=127.0.0.1:1&server-cert={}",
                ep.ekm_ca_cert.display()
            ),
            "SPACE/keys/KEY_ID",
        ),
        (
            format!(
                "ekm:{SPACE}/keys/ca?resolver=127.0.0.1:1&server-cert={}",
                dir.path().join("missing.pem").display()
            ),
            "missing.pem",
        ),
        (
            format!("ekm:{SPACE}/keys/ca?resolver=127.0.0.1:1&server-cert=x&bogus=1"),
            "bogus",
        ),
    ] {
        let e = sshca_ekm::check_uri(&KeyUri::parse(&u).unwrap()).unwrap_err();
        assert!(e.to_string().contains(want), "{u}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_file_and_verify_connectivity() {
    let emu = Emulator::start(Config {
        ekm_token: Some("s3cret".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_P384_SHA384")
        .unwrap();
    let ep = emu.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conn.toml");
    let mut text = format!(
        "crypto_space_path = \"{SPACE}\"\nkey_management_mode = \"MANUAL\"\nclient_identity = \"{}\"\ntoken_env = \"SSHCA_TEST_EKM_TOKEN\"\n",
        ep.ekm_client_identity.display()
    );
    for h in hosts(&emu).split(',') {
        text.push_str(&format!(
            "[[service_resolvers]]\nhostname = \"{h}\"\nserver_certificates = [\"{}\"]\n",
            ep.ekm_ca_cert.display()
        ));
    }
    std::fs::write(&file, text).unwrap();
    let u = format!(
        "ekm:{SPACE}/keys/ca?connection={}&retries=0",
        file.display()
    );

    // The token is required.
    std::env::remove_var("SSHCA_TEST_EKM_TOKEN");
    let e = sshca_ekm::check_uri(&KeyUri::parse(&u).unwrap()).unwrap_err();
    assert!(e.to_string().contains("SSHCA_TEST_EKM_TOKEN"), "{e}");
    std::env::set_var("SSHCA_TEST_EKM_TOKEN", "wrong");
    let e = registry().open(&u).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    std::env::set_var("SSHCA_TEST_EKM_TOKEN", "s3cret");
    let signer = registry().open(&u).await.unwrap();
    assert_eq!(signer.algorithms().await.unwrap(), vec![SigAlg::EcdsaP384]);
    signer
        .sign_certificate(&template(1), &subject(), None)
        .await
        .unwrap()
        .verify_signature()
        .unwrap();

    // verifyConnectivity: both replicas healthy; then replica 1 failing
    // health checks, and a resolver with a certificate that is not pinned.
    let conn = sshca_ekm::Connection::from_file(&file).unwrap();
    // The token never shows in Debug output, here or in the emulator's config.
    for shown in [
        format!("{conn:?}"),
        format!("{signer:?}"),
        format!("{:?}", emu.state().config),
    ] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    let reports = sshca_ekm::verify_connectivity(&conn, Some(&format!("{SPACE}/keys/ca"))).await;
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.ok()), "{reports:#?}");
    emu.add_fault(
        serde_json::from_str::<Fault>(
            r#"{"service":"ekm","replica":1,"operation":"health","error":"unavailable"}"#,
        )
        .unwrap(),
    )
    .unwrap();
    let reports = sshca_ekm::verify_connectivity(&conn, None).await;
    assert!(reports[0].ok(), "{reports:#?}");
    assert!(
        reports[1].tls_handshake.is_ok() && reports[1].health.is_err(),
        "{reports:#?}"
    );

    let other = Emulator::start(Config::default()).await.unwrap();
    let mut bad = conn.clone();
    bad.resolvers[0].server_certificates =
        sshca_ekm::read_certificates(&other.endpoints().ekm_ca_cert).unwrap();
    let reports = sshca_ekm::verify_connectivity(&bad, None).await;
    assert!(reports[0].certificate_match.is_err(), "{reports:#?}");
    assert!(reports[1].certificate_match.is_ok(), "{reports:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_filters_choose_addresses() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let ep = emu.endpoints();
    let by_name: Vec<String> = ep
        .ekm
        .iter()
        .map(|u| u.replace("https://127.0.0.1", "localhost"))
        .collect();
    let with = |filter: &str| {
        format!(
            "ekm:{SPACE}/keys/ca?resolver={}&server-cert={}&client-identity={}&retries=0&endpoint-filter={filter}",
            by_name.join(","),
            ep.ekm_ca_cert.display(),
            ep.ekm_client_identity.display()
        )
    };
    // localhost's IPv4 address passes; the signer works by name.
    let s = registry().open(&with("address%3D127.0.0.1")).await.unwrap();
    let cert = s
        .sign_certificate(&template(1), &subject(), None)
        .await
        .unwrap();
    cert.verify_signature().unwrap();
    // A filter no address passes: every resolver is unusable, named.
    let e = registry()
        .open(&with("address%3D10.9.9.9%20AND%20port%3E1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("leaves none of 127.0.0.1:"), "{e}");
    // verify_connectivity says why the handshake never happened.
    let conn = sshca_ekm::Connection::from_uri(&KeyUri::parse(&with("port%3C2")).unwrap()).unwrap();
    let reports = sshca_ekm::verify_connectivity(&conn, None).await;
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let e = r.tls_handshake.as_ref().unwrap_err();
        assert!(e.contains("endpoint filter"), "{e}");
    }
    // A filter that does not parse is bad input naming the clause.
    let e = registry().open(&with("name%3Dx")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("only address and port"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.create_ekm_key(SPACE, "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let ep = emu.endpoints();
    // Replica 0 answers every request with a redirect to replica 1, which
    // would answer it correctly.
    let to = format!("{}/v1/{SPACE}/keys/ca", ep.ekm[1]);
    emu.add_fault(Fault {
        replica: Some(0),
        redirect: Some(to.clone()),
        ..Fault::new("ekm")
    })
    .unwrap();
    let only_replica_0 = format!(
        "ekm:{SPACE}/keys/ca?resolver={}&server-cert={}&client-identity={}&retries=0",
        ep.ekm[0].trim_start_matches("https://"),
        ep.ekm_ca_cert.display(),
        ep.ekm_client_identity.display()
    );
    let e = registry().open(&only_replica_0).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("307") && m.contains("never followed") && m.contains(&to),
        "{m}"
    );
    // One request reached the key manager: the redirected one.
    assert_eq!(emu.count("ekm", "getKey"), 1);
}
