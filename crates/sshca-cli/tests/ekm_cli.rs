#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `sshca ekm verify` against the emulated key manager, and `sshca ekm
//! connections|config` against the emulated Cloud KMS EkmService; then a
//! certificate signed by an EXTERNAL_VPC key the CLI's connection serves.

mod common;

use std::process::{Command, Output};

use common::{keygen, run, sshca};
use kms_emulator::{Config, Emulator, Fault, FaultError};

const LOC: &str = "projects/p/locations/us-east1";

fn host(url: &str) -> &str {
    url.trim_start_matches("https://")
}

fn fails(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{cmd:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ekm_verify_reports_each_resolver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(Emulator::start(Config::default())).unwrap();
    let other = rt.block_on(Emulator::start(Config::default())).unwrap();
    let ep = emu.endpoints().clone();
    emu.create_ekm_key("v0/spaces/ssh", "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let base = |c: &mut Command| {
        c.args(["ekm", "verify"])
            .args([
                "--resolver",
                host(&ep.ekm[0]),
                "--resolver",
                host(&ep.ekm[1]),
            ])
            .arg("--client-identity")
            .arg(&ep.ekm_client_identity);
    };

    // Every check passes; the key's fingerprint is shown.
    let mut c = sshca();
    base(&mut c);
    c.arg("--server-cert")
        .arg(&ep.ekm_server_cert)
        .args(["--key", "v0/spaces/ssh/keys/ca"]);
    let out = text(&run(&mut c).stdout);
    assert_eq!(out.matches(": ok\n").count(), 2, "{out}");
    assert!(out.contains("SERVING (replica-0)"), "{out}");
    assert!(out.contains("SERVING (replica-1)"), "{out}");
    assert!(out.contains("public key"), "{out}");
    assert!(out.contains("SHA256:"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    // A replica failing its health check: named, exit status 1, JSON too.
    emu.add_fault(Fault {
        operation: Some("health".into()),
        replica: Some(1),
        error: Some(FaultError::Unavailable),
        ..Fault::new("ekm")
    })
    .unwrap();
    let mut c = sshca();
    base(&mut c);
    c.arg("--server-cert")
        .arg(&ep.ekm_server_cert)
        .arg("--json");
    let out = fails(&mut c);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["ok"], true, "{json}");
    assert_eq!(json[1]["ok"], false, "{json}");
    assert_eq!(json[1]["hostname"], host(&ep.ekm[1]));
    let health = &json[1]["steps"][2];
    assert_eq!(health["step"], "health");
    assert_eq!(health["ok"], false);
    assert!(
        health["detail"].as_str().unwrap().contains("UNAVAILABLE"),
        "{health}"
    );
    emu.reset();

    // Certificates of another key manager: the handshake is reached, the
    // certificate does not match.
    let mut c = sshca();
    base(&mut c);
    c.arg("--server-cert").arg(&other.endpoints().ekm_ca_cert);
    let out = text(&fails(&mut c).stdout);
    assert!(out.contains("certificate match  FAIL"), "{out}");
    assert!(out.contains("FAILED"), "{out}");

    // A dead replica.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = text(
        &fails(
            sshca()
                .args(["ekm", "verify", "--resolver", &dead, "--server-cert"])
                .arg(&ep.ekm_server_cert),
        )
        .stdout,
    );
    assert!(out.contains(&format!("{dead}: FAILED")), "{out}");
    assert!(out.contains("tls handshake      FAIL"), "{out}");

    // A CA of the config file whose key is an ekm: URI.
    let cfg = d.path().join("sshca.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ca.hsm]\nkey = \"ekm:v0/spaces/ssh/keys/ca?resolver={},{}&server-cert={}&client-identity={}\"\n",
            host(&ep.ekm[0]),
            host(&ep.ekm[1]),
            ep.ekm_server_cert.display(),
            ep.ekm_client_identity.display()
        ),
    )
    .unwrap();
    let out = text(
        &run(sshca()
            .arg("--config")
            .arg(&cfg)
            .args(["ekm", "verify", "--ca", "hsm"]))
        .stdout,
    );
    assert_eq!(out.matches(": ok\n").count(), 2, "{out}");
    assert!(out.contains("public key"), "{out}");

    // A connection defined in the config file, used by a CA's key URI
    // (`connection=NAME`), by `--connection NAME`, and to sign through a
    // policy.
    let certs_dir = d.path().join("certs");
    std::fs::create_dir(&certs_dir).unwrap();
    std::fs::copy(&ep.ekm_server_cert, certs_dir.join("server.pem")).unwrap();
    std::fs::copy(&ep.ekm_client_identity, certs_dir.join("client.pem")).unwrap();
    let named = d.path().join("named.toml");
    std::fs::write(
        &named,
        format!(
            r#"[ca.hsm]
key = "ekm:v0/spaces/ssh/keys/ca?connection=hsm"

[policy.ops]
ca = "hsm"
valid_principals = ["alice"]
allow_key_id = true

[ekm_connection.hsm]
crypto_space_path = "v0/spaces/ssh"
client_identity = "certs/client.pem"
[[ekm_connection.hsm.service_resolvers]]
hostname = "{}"
server_certificates = ["certs/server.pem"]
[[ekm_connection.hsm.service_resolvers]]
hostname = "{}"
server_certificates = ["certs/server.pem"]
"#,
            host(&ep.ekm[0]),
            host(&ep.ekm[1])
        ),
    )
    .unwrap();
    for args in [
        &["ekm", "verify", "--ca", "hsm"][..],
        &["ekm", "verify", "--connection", "hsm", "--key", "ca"][..],
    ] {
        let out = text(&run(sshca().arg("--config").arg(&named).args(args)).stdout);
        assert_eq!(out.matches(": ok\n").count(), 2, "{args:?}: {out}");
        assert!(out.contains("public key"), "{args:?}: {out}");
    }
    let user = keygen(d.path(), "id_named", "ed25519", None);
    run(sshca()
        .arg("--config")
        .arg(&named)
        .args(["sign", "--policy", "ops", "-I", "named"])
        .arg(user.with_extension("pub")));
    let out = run(Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(d.path().join("id_named-cert.pub")));
    assert!(text(&out.stdout).contains("ecdsa-sha2-nistp256"));
    // A table with a field the connection does not have is a config error.
    let broken = d.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[ekm_connection.x]\ncrypto_space_path = \"a\"\nservice_resolvers = []\nhostname = \"h\"\n",
    )
    .unwrap();
    let err = text(
        &fails(
            sshca()
                .arg("--config")
                .arg(&broken)
                .args(["ekm", "verify", "--connection", "x"]),
        )
        .stderr,
    );
    assert!(err.contains("ekm_connection `x`"), "{err}");
    assert!(err.contains("hostname"), "{err}");

    // Bad input: clear one-line errors.
    let err = text(&fails(sshca().args(["ekm", "verify"])).stderr);
    assert!(err.contains("give exactly one of"), "{err}");
    let err = text(&fails(sshca().args(["ekm", "verify", "--resolver", host(&ep.ekm[0])])).stderr);
    assert!(err.contains("--server-cert PATH is required"), "{err}");
    let err = text(
        &fails(
            sshca()
                .arg("--config")
                .arg(&cfg)
                .args(["ekm", "verify", "--ca", "nope"]),
        )
        .stderr,
    );
    assert!(err.contains("no CA named \"nope\""), "{err}");
    let err = text(&fails(sshca().args(["ekm", "verify", "--uri", "file:/etc/ssh/ca"])).stderr);
    assert!(err.contains("not an ekm: key URI"), "{err}");
}

#[test]
fn cloud_kms_connections_and_config() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(Emulator::start(Config::default())).unwrap();
    let ep = emu.endpoints().clone();
    let gcp = ep.gcp.clone();
    let cloud = |c: &mut Command| {
        c.args(["--endpoint", &gcp]);
    };

    let mut c = sshca();
    c.args([
        "ekm",
        "connections",
        "create",
        "--location",
        LOC,
        "--id",
        "hsm",
    ])
    .args([
        "--resolver",
        host(&ep.ekm[0]),
        "--resolver",
        host(&ep.ekm[1]),
    ])
    .arg("--server-cert")
    .arg(&ep.ekm_server_cert)
    .args([
        "--service-directory-service",
        &format!("{LOC}/namespaces/ekm/services/hsm"),
    ]);
    cloud(&mut c);
    let out = text(&run(&mut c).stdout);
    let name = format!("{LOC}/ekmConnections/hsm");
    assert!(out.starts_with(&name), "{out}");
    assert!(out.contains("mode: MANUAL"), "{out}");
    assert!(
        out.contains("certificate parsed (subject CN=kms-emulator"),
        "{out}"
    );

    let mut c = sshca();
    c.args(["ekm", "connections", "list", LOC]);
    cloud(&mut c);
    let out = text(&run(&mut c).stdout);
    assert!(
        out.contains(&format!("resolver 1: {}", host(&ep.ekm[1]))),
        "{out}"
    );

    let mut c = sshca();
    c.args(["ekm", "connections", "get", &name, "--json"]);
    cloud(&mut c);
    let json: serde_json::Value = serde_json::from_slice(&run(&mut c).stdout).unwrap();
    assert_eq!(json["name"], name);
    assert_eq!(json["serviceResolvers"].as_array().unwrap().len(), 2);

    // Cloud KMS reaches both replicas.
    let mut c = sshca();
    c.args(["ekm", "connections", "verify", &name]);
    cloud(&mut c);
    assert!(text(&run(&mut c).stdout).contains("reached every resolver"));

    // A connection with a dead replica fails the check, naming it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut c = sshca();
    c.args([
        "ekm",
        "connections",
        "create",
        "--location",
        LOC,
        "--id",
        "half",
    ])
    .args(["--resolver", host(&ep.ekm[0]), "--resolver", &dead])
    .arg("--server-cert")
    .arg(&ep.ekm_server_cert);
    cloud(&mut c);
    run(&mut c);
    let mut c = sshca();
    c.args([
        "ekm",
        "connections",
        "verify",
        &format!("{LOC}/ekmConnections/half"),
    ]);
    cloud(&mut c);
    let out = fails(&mut c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("resolver 1 ({dead})")), "{err}");
    assert!(!err.contains("resolver 0"), "{err}");

    // EkmConfig.
    let mut c = sshca();
    c.args(["ekm", "config", "set", LOC, "--default-connection", &name]);
    cloud(&mut c);
    assert!(text(&run(&mut c).stdout).contains(&format!("default connection: {name}")));
    let mut c = sshca();
    c.args(["ekm", "config", "get", LOC, "--json"]);
    cloud(&mut c);
    let json: serde_json::Value = serde_json::from_slice(&run(&mut c).stdout).unwrap();
    assert_eq!(json["defaultEkmConnection"], name);

    // Bad input.
    let mut c = sshca();
    c.args(["ekm", "connections", "list", "projects/p"]);
    cloud(&mut c);
    assert!(text(&fails(&mut c).stderr).contains("is not projects/PROJECT/locations/LOCATION"));
    let mut c = sshca();
    c.args([
        "ekm",
        "connections",
        "create",
        "--location",
        LOC,
        "--id",
        "x",
    ])
    .args(["--resolver", "h:1", "--server-cert"])
    .arg(
        emu.endpoints()
            .ekm_client_identity
            .with_extension("missing"),
    );
    cloud(&mut c);
    assert!(text(&fails(&mut c).stderr).contains("missing"));
    let mut c = sshca();
    c.args([
        "ekm",
        "connections",
        "create",
        "--location",
        LOC,
        "--id",
        "hsm",
    ])
    .args(["--resolver", host(&ep.ekm[0]), "--server-cert"])
    .arg(&ep.ekm_server_cert);
    cloud(&mut c);
    assert!(text(&fails(&mut c).stderr).contains("already exists"));
    let mut c = sshca();
    c.args(["ekm", "config", "set", LOC, "--default-connection", "nope"]);
    cloud(&mut c);
    assert!(text(&fails(&mut c).stderr).contains("ekmConnections/ID"));

    // An EXTERNAL_VPC key behind the connection signs a certificate that
    // ssh-keygen reads.
    let path = emu
        .create_ekm_key("v0/spaces/ssh", "ca", "EC_SIGN_P256_SHA256")
        .unwrap();
    let key = format!("{LOC}/keyRings/r/cryptoKeys/ext");
    rt.block_on(async {
        let client = create_external_key(&gcp, &key, &name, &path).await;
        assert!(client.ends_with("/cryptoKeyVersions/1"), "{client}");
    });
    let d = tempfile::tempdir().unwrap();
    let user = keygen(d.path(), "id_user", "ed25519", None);
    run(sshca()
        .args(["sign", "-I", "ext", "-n", "alice", "--ca"])
        .arg(format!("gcpkms:{key}/cryptoKeyVersions/1?endpoint={gcp}"))
        .arg(user.with_extension("pub")));
    let cert = d.path().join("id_user-cert.pub");
    let out = run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert));
    assert!(text(&out.stdout).contains("ecdsa-sha2-nistp256"));
}

/// Creates the key ring, an EXTERNAL_VPC key behind `conn` and its version
/// pointing at `path`, through the Cloud KMS client; returns the version.
async fn create_external_key(endpoint: &str, key: &str, conn: &str, path: &str) -> String {
    use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
    use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionAlgorithm;
    use google_cloud_kms_v1::model::{
        CryptoKey, CryptoKeyVersion, CryptoKeyVersionTemplate, ExternalProtectionLevelOptions,
        KeyRing, ProtectionLevel,
    };
    let uri = sshca::signer::KeyUri::parse(&format!(
        "gcpkms:{key}/cryptoKeyVersions/1?endpoint={endpoint}"
    ))
    .unwrap();
    let c = sshca_gcp::client_for(&uri).await.unwrap();
    c.create_key_ring()
        .set_parent(LOC)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await
        .unwrap();
    let (ring, id) = key.rsplit_once("/cryptoKeys/").unwrap();
    c.create_crypto_key()
        .set_parent(ring)
        .set_crypto_key_id(id)
        .set_skip_initial_version_creation(true)
        .set_crypto_key(
            CryptoKey::new()
                .set_purpose(CryptoKeyPurpose::AsymmetricSign)
                .set_crypto_key_backend(conn)
                .set_version_template(
                    CryptoKeyVersionTemplate::new()
                        .set_algorithm(CryptoKeyVersionAlgorithm::EcSignP256Sha256)
                        .set_protection_level(ProtectionLevel::ExternalVpc),
                ),
        )
        .send()
        .await
        .unwrap();
    c.create_crypto_key_version()
        .set_parent(key)
        .set_crypto_key_version(
            CryptoKeyVersion::new().set_external_protection_level_options(
                ExternalProtectionLevelOptions::new().set_ekm_connection_key_path(path),
            ),
        )
        .send()
        .await
        .unwrap()
        .name
}
