//! The signing service under load (run when `SSHCA_BIN` names a release
//! `sshca`, as `cargo xtask bench` does): `sshca serve` with a local Ed25519
//! CA and its durable SQLite store, C=32 HTTPS clients with keep-alive
//! asking for certificates for a few seconds; and, in the same run, the
//! in-process signing rate of the same CA through the same signer stack
//! (registry-opened, every signature verified) at the same concurrency.
//! Writes one JSON line to `SSHCA_BENCH_OUT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshca_benches::cpu_time_of;
use sshca_signer::SignerExt;

const CONCURRENCY: usize = 32;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn tls(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("tls-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// Runs `f` on C tasks for WARMUP + MEASURE; returns completions per second
/// during MEASURE.
async fn rate<F, Fut>(f: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + WARMUP + MEASURE;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (f, done) = (f.clone(), done.clone());
        tasks.spawn(async move {
            while Instant::now() < stop {
                f().await;
                if Instant::now() > start + WARMUP {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / MEASURE.as_secs_f64()
}

fn main() {
    let Ok(bin) = std::env::var("SSHCA_BIN") else {
        eprintln!("serve bench: SSHCA_BIN is not set (cargo xtask bench sets it); skipped");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    tls(dir);
    let ca = sshca_local::keys::generate(sshca_local::keys::KeySpec::Ed25519, "bench").unwrap();
    std::fs::write(
        dir.join("ca"),
        sshca_local::keys::to_openssh(&ca, None).unwrap().as_bytes(),
    )
    .unwrap();
    let token = sshca_server::new_token();
    std::fs::write(
        dir.join("sshca.toml"),
        format!(
            "[server]\ntls_cert = \"tls.pem\"\ntls_key = \"tls.key\"\ndata_dir = \".\"\n\
             [token.bench]\nsha256 = \"{}\"\n[ca.c]\nkey = \"file:{}\"\n\
             [policy.p]\nca = \"c\"\nallowed_valid_principals = [\"*\"]\nttl = \"1h\"\n",
            sshca_server::token_hash(&token),
            dir.join("ca").display()
        ),
    )
    .unwrap();
    let subject = sshca_local::keys::generate(sshca_local::keys::KeySpec::Ed25519, "").unwrap();
    let subject_line = subject.public_key().to_openssh().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // In process: the same signer stack the service opens.
    let inprocess = rt.block_on(async {
        let signer: Arc<dyn sshca_signer::KeySigner> = sshca::default_registry()
            .open(&format!("file:{}", dir.join("ca").display()))
            .await
            .unwrap();
        let key = subject.public_key().key_data().clone();
        rate(move || {
            let (signer, key) = (signer.clone(), key.clone());
            async move {
                let mut t = sshca_core::CertTemplate::new(sshca_core::CertType::User, "bench");
                t.serial = sshca_core::random_serial();
                t.principals = vec!["alice".into()];
                t.valid_before = 2_000_000_000;
                signer.sign_certificate(&t, &key, None).await.unwrap();
            }
        })
        .await
    });

    // Over HTTPS.
    let ready = dir.join("ready.json");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("sshca.toml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .env("SSHCA_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "sshca serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let url = format!("{}/v1/sign/p", v["url"].as_str().unwrap());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("tls-ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let body = serde_json::json!({"public_key": subject_line, "principals": ["alice"]}).to_string();
    let errors = Arc::new(AtomicU64::new(0));
    let server_pid = child.id().to_string();
    let (server_cpu0, client_cpu0) = (cpu_time_of(&server_pid), cpu_time_of("self"));
    let https = rt.block_on({
        let errors = errors.clone();
        async move {
            rate(move || {
                let (client, url, body, token, errors) = (
                    client.clone(),
                    url.clone(),
                    body.clone(),
                    token.clone(),
                    errors.clone(),
                );
                async move {
                    let r = client
                        .post(url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            let _ = resp.bytes().await;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .await
        }
    });
    // CPU per certificate over the whole run (warm-up included).
    let served = https * (WARMUP + MEASURE).as_secs_f64();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / served;
    let server_cpu = per(cpu_time_of(&server_pid) - server_cpu0);
    let client_cpu = per(cpu_time_of("self") - client_cpu0);
    let _ = Command::new("kill").args(["-TERM", &server_pid]).status();
    let _ = child.wait();
    let errors = errors.load(Ordering::Relaxed);
    assert_eq!(errors, 0, "{errors} requests failed");
    println!(
        "serve: {https:.0} certificates/s over HTTPS (C={CONCURRENCY}, keep-alive, durable SQLite); \
         in process {inprocess:.0}/s; {:.0}%; CPU per certificate: server {server_cpu:.0} µs, \
         load generator {client_cpu:.0} µs",
        100.0 * https / inprocess
    );
    if let Ok(out) = std::env::var("SSHCA_BENCH_OUT") {
        let line = serde_json::json!({
            "bench": "serve", "concurrency": CONCURRENCY, "https_rate": https, "inprocess_rate": inprocess,
            "server_cpu_us": server_cpu, "client_cpu_us": client_cpu,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}
