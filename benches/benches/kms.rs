//! Benchmarks against the KMS emulator:
//! - `emulator/aws_p256_sign_http`: one AWS KMS Sign request (P-256, DIGEST)
//!   through aws-sdk-kms and HTTP to the in-process emulator (criterion);
//! - `emulator/{gcp,ekm,gcp_external}_p256_certificate`: one whole
//!   certificate (encode, sign, verify) through the sshca signer of a Cloud
//!   KMS key, an external key manager key (HTTPS + mTLS), and a Cloud KMS
//!   EXTERNAL_VPC key (Cloud KMS forwarding to the key manager);
//! - the KMS pipeline (run when `KMS_EMULATOR_BIN` names the emulator binary,
//!   as `cargo xtask bench` does): the emulator runs as its own process with
//!   an injected latency L on Sign, sshca signs certificates with at most C in
//!   flight, and the run reports certificates/second against the bound C/L
//!   and the client's CPU time per certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshca_benches::{cpu_time_of, emulator_in_process, record};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sshca_core::{CertTemplate, CertType, KeyData, SigAlg};
use sshca_signer::{
    CachedSigner, KeySigner, KeyUri, LimitSigner, RetryConfig, RetrySigner, SignerExt,
    VerifyingSigner,
};

fn creds() -> sshca_aws::Credentials {
    sshca_aws::Credentials::new("test", "test", None, None, "bench")
}

fn sign_http(c: &mut Criterion) {
    let (rt, emu) = emulator_in_process();
    let id = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY").unwrap();
    let uri = KeyUri::parse(&format!("awskms:{id}?endpoint={}", emu.endpoints().aws)).unwrap();
    let client = rt
        .block_on(sshca_aws::client_for(&uri, Some(creds())))
        .unwrap();
    let digest = aws_sdk_kms_blob([7u8; 32].to_vec());
    let mut g = c.benchmark_group("emulator");
    g.throughput(Throughput::Elements(1));
    g.bench_function("aws_p256_sign_http", |b| {
        b.iter(|| {
            rt.block_on(
                client
                    .sign()
                    .key_id(&id)
                    .message(digest.clone())
                    .message_type("DIGEST".into())
                    .signing_algorithm("ECDSA_SHA_256".into())
                    .send(),
            )
            .unwrap()
        })
    });
    // What one Sign costs the emulator in signing alone: the reference for
    // its CPU per request.
    use kms_emulator::crypto::{EcFormat, Hash, KeyKind, Material, Scheme};
    let m = Material::generate(KeyKind::P256).unwrap();
    let d = Hash::Sha256.digest(b"message");
    g.bench_function("material_p256_sign_digest", |b| {
        b.iter(|| {
            m.sign_digest(Scheme::Ecdsa(Hash::Sha256), &d, EcFormat::Der)
                .unwrap()
        })
    });
    g.finish();
}

fn aws_sdk_kms_blob(v: Vec<u8>) -> aws_sdk_kms::primitives::Blob {
    aws_sdk_kms::primitives::Blob::new(v)
}

/// User+system CPU time of a process (`self` or a pid).
fn cpu_time() -> Duration {
    cpu_time_of("self")
}

fn admin_post(admin: &str, path: &str, body: &str) {
    let addr = admin.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "admin {path}: {out}");
}

/// The seed of the pipeline's emulator: one P-256 key in each of Cloud KMS,
/// Key Vault and the external key manager (AWS keys are made through the
/// SDK).
const PIPELINE_SEED: &str = r#"
[[gcp]]
key = "projects/b/locations/global/keyRings/r/cryptoKeys/p256"
algorithm = "EC_SIGN_P256_SHA256"

[[azure]]
name = "p256"
kty = "EC"
crv = "P-256"

[[ekm]]
name = "v0/bench/keys/p256"
algorithm = "EC_SIGN_P256_SHA256"
"#;

/// Certificates per second through `signer` with at most `c` in flight,
/// after a warm-up; the rate, and the CPU per certificate of this process
/// and of the emulator (`pid`).
async fn drive(signer: Arc<dyn KeySigner>, n: u64, pid: &str) -> (f64, f64, f64) {
    let subject = {
        use sshca_core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
        KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
    };
    let run = |count: u64| {
        let signer = signer.clone();
        let subject = subject.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..count {
                let (s, k) = (signer.clone(), subject.clone());
                set.spawn(async move {
                    let mut t = CertTemplate::new(CertType::User, format!("bench-{i}"));
                    t.principals = vec!["alice".into(), "deploy".into(), "ops".into()];
                    t.serial = i + 1;
                    t.valid_after = 1_700_000_000;
                    t.valid_before = 4_000_000_000;
                    s.sign_certificate(&t, &k, None::<SigAlg>).await.unwrap()
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        }
    };
    run(300).await; // warm-up: connections, caches
    let (t0, cpu0, emu0) = (Instant::now(), cpu_time(), cpu_time_of(pid));
    run(n).await;
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    let emu_cpu = cpu_time_of(pid) - emu0;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    (n as f64 / wall.as_secs_f64(), per(cpu), per(emu_cpu))
}

fn pipeline() {
    let Ok(bin) = std::env::var("KMS_EMULATOR_BIN") else {
        eprintln!("kms pipeline: set KMS_EMULATOR_BIN (cargo xtask bench does) to run it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, PIPELINE_SEED).unwrap();
    let mut child = std::process::Command::new(bin)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--cert-dir")
        .arg(dir.path())
        .arg("--seed")
        .arg(&seed)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let field = |k: &str| ep[k].as_str().unwrap().to_owned();
    let (aws, admin) = (field("aws"), field("admin"));
    let hosts: Vec<String> = ep["ekm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            u.as_str()
                .unwrap()
                .trim_start_matches("https://")
                .to_owned()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (c, l_ms, n) = (64usize, 20u64, 6000u64);
    let registry = sshca::default_registry();
    let others = [
        (
            "Cloud KMS",
            "P-256",
            format!(
                "gcpkms:projects/b/locations/global/keyRings/r/cryptoKeys/p256/cryptoKeyVersions/1?endpoint={}",
                field("gcp")
            ),
        ),
        (
            "Key Vault",
            "P-256",
            format!(
                "azurekv:{}/keys/p256?ca-cert={}",
                field("azure"),
                field("azure_ca_cert")
            ),
        ),
        (
            "external key manager",
            "P-256",
            format!(
                "ekm:v0/bench/keys/p256?resolver={}&server-cert={}&client-identity={}",
                hosts.join(","),
                field("ekm_server_cert"),
                field("ekm_client_identity")
            ),
        ),
    ];
    let mut signers: Vec<(&str, &str, Arc<dyn KeySigner>)> = Vec::new();
    rt.block_on(async {
        for (spec, label) in [
            ("ECC_NIST_P256", "P-256"),
            ("ECC_NIST_EDWARDS25519", "Ed25519"),
        ] {
            let probe = KeyUri::parse(&format!("awskms:x?endpoint={aws}")).unwrap();
            let client = sshca_aws::client_for(&probe, Some(creds())).await.unwrap();
            let out = client
                .create_key()
                .key_spec(spec.into())
                .key_usage("SIGN_VERIFY".into())
                .send()
                .await
                .unwrap();
            let id = out.key_metadata().unwrap().key_id().to_owned();
            let uri = KeyUri::parse(&format!("awskms:{id}?endpoint={aws}")).unwrap();
            let raw = sshca_aws::AwsSigner::open(uri, Some(creds()))
                .await
                .unwrap();
            let cached = CachedSigner::new(RetrySigner::new(raw, RetryConfig::default()))
                .await
                .unwrap();
            signers.push(("AWS KMS", label, Arc::new(VerifyingSigner::new(cached))));
        }
        for (backend, label, uri) in &others {
            let s = registry
                .open(uri)
                .await
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            signers.push((backend, label, s));
        }
    });
    // The emulator's own CPU per AWS Sign, without injected latency (whose
    // precise timer costs a thread handoff per request).
    let pid = child.id().to_string();
    let (_, _, emu_alone) = rt.block_on(drive(signers[0].2.clone(), n / 2, &pid));
    println!("kms_pipeline emulator alone: AWS Sign P-256, CPU {emu_alone:.0} us/request");
    record(
        &serde_json::json!({"bench": "emulator_cpu", "key": "P-256", "emulator_cpu_us": emu_alone}),
    );
    admin_post(
        &admin,
        "/faults",
        &format!(
            r#"[{{"service":"*","operation":"Sign","latency_ms":{l_ms}}},
                {{"service":"*","operation":"asymmetricSign","latency_ms":{l_ms}}}]"#
        ),
    );
    for (backend, label, signer) in signers {
        let limited: Arc<dyn KeySigner> = Arc::new(LimitSigner::new(signer, c));
        let (rate, client_cpu, emu_cpu) = rt.block_on(drive(limited, n, &pid));
        let bound = c as f64 / (l_ms as f64 / 1000.0);
        println!(
            "kms_pipeline {backend} {label}: C={c} L={l_ms}ms n={n}: {rate:.0} certificates/s, bound C/L {bound:.0}/s ({:.0}% of bound), client CPU {client_cpu:.0} us/certificate, emulator CPU {emu_cpu:.0} us/certificate",
            100.0 * rate / bound,
        );
        record(&serde_json::json!({
            "bench": "kms_pipeline", "backend": backend, "key": label, "concurrency": c,
            "latency_ms": l_ms, "certificates": n, "rate": rate, "bound": bound,
            "client_cpu_us": client_cpu, "emulator_cpu_us": emu_cpu,
        }));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn certificates(c: &mut Criterion) {
    let (rt, emu) = emulator_in_process();
    let ep = emu.endpoints().clone();
    let hosts: Vec<String> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://").to_string())
        .collect();
    let path = emu
        .create_ekm_key("v0/bench", "p256", "EC_SIGN_P256_SHA256")
        .unwrap();
    let conn = "projects/b/locations/l/ekmConnections/hsm";
    kms_emulator::gcp::ekm_service::seed_connection(
        emu.state(),
        kms_emulator::gcp::store::EkmConnectionSeed {
            name: conn.into(),
            key_management_mode: None,
            crypto_space_path: String::new(),
            service_resolvers:
                hosts
                    .iter()
                    .map(|h| kms_emulator::gcp::store::ServiceResolverSeed {
                        hostname: h.clone(),
                        service_directory_service: String::new(),
                        endpoint_filter: String::new(),
                        server_certificates: vec![
                            std::fs::read_to_string(&ep.ekm_server_cert).unwrap()
                        ],
                        server_certificate_files: Vec::new(),
                    })
                    .collect(),
        },
    )
    .unwrap();
    let ring = "projects/b/locations/l/keyRings/r";
    let external = emu
        .create_gcp_external_key(
            &format!("{ring}/cryptoKeys/ext"),
            "EC_SIGN_P256_SHA256",
            conn,
            &path,
        )
        .unwrap();
    let software = emu
        .create_gcp_key(&format!("{ring}/cryptoKeys/sw"), "EC_SIGN_P256_SHA256")
        .unwrap();
    let mut registry = sshca_signer::Registry::new();
    sshca_gcp::register(&mut registry);
    sshca_ekm::register(&mut registry);
    let uris = [
        (
            "gcp_p256_certificate",
            format!("gcpkms:{software}?endpoint={}", ep.gcp),
        ),
        (
            "ekm_p256_certificate",
            format!(
                "ekm:{path}?resolver={}&server-cert={}&client-identity={}",
                hosts.join(","),
                ep.ekm_server_cert.display(),
                ep.ekm_client_identity.display()
            ),
        ),
        (
            "gcp_external_p256_certificate",
            format!("gcpkms:{external}?endpoint={}", ep.gcp),
        ),
    ];
    let subject = {
        use sshca_core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
        KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
    };
    let mut t = CertTemplate::new(CertType::User, "bench");
    t.principals = vec!["alice".into()];
    t.valid_after = 1_700_000_000;
    t.valid_before = 4_000_000_000;
    let mut g = c.benchmark_group("emulator");
    g.throughput(Throughput::Elements(1));
    for (name, uri) in uris {
        let signer = rt.block_on(registry.open(&uri)).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(signer.sign_certificate(&t, &subject, Some(SigAlg::EcdsaP256)))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    sign_http(c);
    certificates(c);
    pipeline();
}

criterion_group!(kms, benches);
criterion_main!(kms);
