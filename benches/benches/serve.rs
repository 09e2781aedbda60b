//! The signing service under load (run when `SSHCA_BIN` names a release
//! `sshca`, as `cargo xtask bench` does): `sshca serve` with a local Ed25519
//! CA and its durable SQLite store, C=32 HTTPS clients with keep-alive
//! asking for certificates for a few seconds; and, in the same run, the
//! in-process signing rate of the same CA through the same signer stack
//! (registry-opened, every signature verified) at the same concurrency.
//! Writes one JSON line to `SSHCA_BENCH_OUT`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshca_benches::{cpu_time_of, cpu_time_of_tree};
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

/// How long a load runs.
#[derive(Clone, Copy)]
enum Until {
    /// WARMUP, then MEASURE.
    Time,
    /// This many completions in all (no warm-up).
    Count(u64),
}

/// What a load measured: completions per second, and the median and 99th
/// percentile latency (µs) of the measured completions.
#[derive(Clone, Copy, Default)]
struct Load {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `f` on `concurrency` tasks until `until`.
async fn load<F, Fut>(concurrency: usize, until: Until, f: F) -> Load
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let start = Instant::now();
    let (warmup, stop) = match until {
        Until::Time => (WARMUP, Some(start + WARMUP + MEASURE)),
        Until::Count(_) => (Duration::ZERO, None),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (f, done, started, latencies) =
            (f.clone(), done.clone(), started.clone(), latencies.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                match (stop, until) {
                    (Some(stop), _) if Instant::now() >= stop => break,
                    (None, Until::Count(n)) if started.fetch_add(1, Ordering::Relaxed) >= n => {
                        break
                    }
                    _ => {}
                }
                let t = Instant::now();
                f().await;
                if t > start + warmup {
                    done.fetch_add(1, Ordering::Relaxed);
                    mine.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            latencies.lock().unwrap().extend(mine);
        });
    }
    while tasks.join_next().await.is_some() {}
    let measured = match until {
        Until::Time => MEASURE.as_secs_f64(),
        Until::Count(_) => start.elapsed().as_secs_f64(),
    };
    let mut l = std::mem::take(&mut *latencies.lock().unwrap());
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(f64::NAN, |v| f64::from(*v))
    };
    Load {
        rate: done.load(Ordering::Relaxed) as f64 / measured,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
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
        load(CONCURRENCY, Until::Time, move || {
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
        .rate
    });

    // Over HTTPS: one replica on SQLite (at C=32, at C=1, and for 100,000
    // certificates to read its memory after), then one and three on
    // PostgreSQL.
    let config = dir.join("sshca.toml");
    let run = |config: &Path, replicas, c, until, db: Option<&str>| {
        https_run(
            &rt,
            &bin,
            dir,
            config,
            replicas,
            (c, until),
            &token,
            &subject_line,
            db,
        )
    };
    let sqlite = run(&config, 1, CONCURRENCY, Until::Time, None);
    let sqlite_c1 = run(&config, 1, 1, Until::Time, None);
    let long = run(&config, 1, CONCURRENCY, Until::Count(100_000), None);
    println!(
        "serve latency: C={CONCURRENCY} p50 {:.0} µs p99 {:.0} µs; C=1 {:.0}/s p50 {:.0} µs p99 \
         {:.0} µs; RSS after 100,000 certificates {:.1} MB ({:.0}/s)",
        sqlite.load.p50_us,
        sqlite.load.p99_us,
        sqlite_c1.load.rate,
        sqlite_c1.load.p50_us,
        sqlite_c1.load.p99_us,
        long.rss_mb,
        long.load.rate
    );

    // The same with an audit file sink, then with an HTTPS sink (a
    // receiver in this process that counts what it gets), each on a fresh
    // store as the run without a sink was (a store of 100,000 certificates
    // is slower to write to whatever the sinks do).
    let fresh_store = || {
        for f in ["sshca.db", "sshca.db-wal", "sshca.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let _ = std::fs::remove_dir_all(dir.join("audit"));
    };
    let with_sink = |name: &str, table: &str| {
        let text = std::fs::read_to_string(&config).unwrap() + table;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let file_config = with_sink(
        "sshca-file.toml",
        "[audit.f]\ntype = \"file\"\npath = \"audit.jsonl\"\n",
    );
    fresh_store();
    let with_file = run(&file_config, 1, CONCURRENCY, Until::Time, None);
    let received = Arc::new(AtomicU64::new(0));
    let receiver = rt.block_on(receiver(dir, received.clone()));
    std::fs::write(dir.join("sink.secret"), "bench-secret-0123456789\n").unwrap();
    let http_config = with_sink(
        "sshca-http.toml",
        &format!(
            "[audit.h]\ntype = \"http\"\nurl = \"{receiver}\"\nca_cert = \"tls-ca.pem\"\n\
             secret_file = \"sink.secret\"\n"
        ),
    );
    fresh_store();
    let with_http = run(&http_config, 1, CONCURRENCY, Until::Time, None);
    let file_events = std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("\"chain_head\""))
        .count();
    let cost = |r: &Run| 1e6 / r.rate - 1e6 / sqlite.rate;
    println!(
        "audit sinks: none {:.0}/s, file {:.0}/s ({:+.1} µs per certificate, {file_events} events \
         written), HTTPS {:.0}/s ({:+.1} µs, {} events received); server CPU per certificate {:.0} / \
         {:.0} / {:.0} µs",
        sqlite.rate,
        with_file.rate,
        cost(&with_file),
        with_http.rate,
        cost(&with_http),
        received.load(Ordering::Relaxed),
        sqlite.server_cpu,
        with_file.server_cpu,
        with_http.server_cpu
    );
    sshca_benches::record(&serde_json::json!({
        "bench": "audit_sinks", "concurrency": CONCURRENCY,
        "none_rate": sqlite.rate, "file_rate": with_file.rate, "http_rate": with_http.rate,
        "none_cpu_us": sqlite.server_cpu, "file_cpu_us": with_file.server_cpu,
        "http_cpu_us": with_http.server_cpu,
        "file_events": file_events, "http_events": received.load(Ordering::Relaxed),
    }));
    let pg = sshca_testkit::pg::PgCluster::start_durable();
    let url = pg.database("bench");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "data_dir = \".\"",
        &format!("data_dir = \".\"\nstore = \"{url}\""),
    );
    let pg_config = dir.join("sshca-pg.toml");
    std::fs::write(&pg_config, text).unwrap();
    let pg_pid = pg.postmaster_pid();
    let one = run(&pg_config, 1, CONCURRENCY, Until::Time, Some(&pg_pid));
    let three = run(&pg_config, 3, CONCURRENCY, Until::Time, Some(&pg_pid));
    let (pg_one, pg_three) = (one.db_cpu, three.db_cpu);
    let https = sqlite.rate;
    println!(
        "serve: {https:.0} certificates/s over HTTPS (C={CONCURRENCY}, keep-alive, durable SQLite); \
         in process {inprocess:.0}/s; {:.0}%; CPU per certificate: server {:.0} µs, load generator {:.0} µs",
        100.0 * https / inprocess,
        sqlite.server_cpu,
        sqlite.client_cpu
    );
    for (n, r, db) in [(1, &one, pg_one), (3, &three, pg_three)] {
        println!(
            "serve on PostgreSQL, {n} replica(s): {:.0} certificates/s; CPU per certificate: \
             servers {:.0} µs, PostgreSQL {db:.0} µs, load generator {:.0} µs",
            r.rate, r.server_cpu, r.client_cpu
        );
    }
    sshca_benches::record(&serde_json::json!({
        "bench": "serve", "concurrency": CONCURRENCY, "https_rate": https, "inprocess_rate": inprocess,
        "server_cpu_us": sqlite.server_cpu, "client_cpu_us": sqlite.client_cpu,
        "p50_us": sqlite.load.p50_us, "p99_us": sqlite.load.p99_us,
        "c1_rate": sqlite_c1.load.rate, "c1_p50_us": sqlite_c1.load.p50_us,
        "c1_p99_us": sqlite_c1.load.p99_us, "rss_100k_mb": long.rss_mb,
    }));
    for (n, r, db) in [(1, &one, pg_one), (3, &three, pg_three)] {
        sshca_benches::record(&serde_json::json!({
            "bench": "serve_pg", "replicas": n, "concurrency": CONCURRENCY, "rate": r.rate,
            "server_cpu_us": r.server_cpu, "db_cpu_us": db, "client_cpu_us": r.client_cpu,
        }));
    }
}

/// An HTTPS audit receiver on 127.0.0.1 (the bench's server certificate)
/// that counts the events of each batch; its URL.
async fn receiver(dir: &Path, received: Arc<AtomicU64>) -> String {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::fs::read(dir.join("tls.pem")).unwrap().as_slice())
            .map(|c| c.unwrap())
            .collect();
    let key =
        rustls_pemfile::private_key(&mut std::fs::read(dir.join("tls.key")).unwrap().as_slice())
            .unwrap()
            .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/audit", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, received) = (acceptor.clone(), received.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let n = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                                .map(|v| v.iter().filter(|e| e["type"] != "chain_head").count())
                                .unwrap_or(0);
                            received.fetch_add(n as u64, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    url
}

fn per_cert(d: Duration, rate: f64) -> f64 {
    d.as_secs_f64() * 1e6 / (rate * (WARMUP + MEASURE).as_secs_f64())
}

struct Run {
    rate: f64,
    load: Load,
    /// The (first) server's resident memory when the load ended, MB.
    rss_mb: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// CPU of the database's processes per certificate.
    db_cpu: f64,
}

/// Starts `replicas` servers on `config`, loads them round-robin with C
/// clients, stops them; every request must succeed. `db_pid`: the
/// database's main process, whose process tree's CPU is measured too.
#[allow(clippy::too_many_arguments)]
fn https_run(
    rt: &tokio::runtime::Runtime,
    bin: &str,
    dir: &Path,
    config: &Path,
    replicas: usize,
    (concurrency, until): (usize, Until),
    token: &str,
    subject_line: &str,
    db_pid: Option<&str>,
) -> Run {
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for i in 0..replicas {
        let stem = config.file_stem().unwrap_or_default().to_string_lossy();
        let ready = dir.join(format!("ready-{stem}-{i}.json"));
        let (child, url) = sshca_benches::start_serve(bin, config, &ready, Stdio::inherit());
        urls.push(format!("{url}/v1/sign/p"));
        children.push(child);
    }
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("tls-ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let body = serde_json::json!({"public_key": subject_line, "principals": ["alice"]}).to_string();
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let servers_cpu = || pids.iter().map(|p| cpu_time_of(p)).sum::<Duration>();
    let db_cpu = || db_pid.map(cpu_time_of_tree).unwrap_or_default();
    let (server_cpu0, client_cpu0, db_cpu0) = (servers_cpu(), cpu_time_of("self"), db_cpu());
    let token = token.to_owned();
    let load_result = rt.block_on({
        let errors = errors.clone();
        async move {
            load(concurrency, until, move || {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let (client, url, body, token, errors) = (
                    client.clone(),
                    urls[n % urls.len()].clone(),
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
    let rate = load_result.rate;
    let rss_mb = std::fs::read_to_string(format!("/proc/{}/status", pids[0]))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0);
    let server_cpu = per_cert(servers_cpu().saturating_sub(server_cpu0), rate);
    let client_cpu = per_cert(cpu_time_of("self").saturating_sub(client_cpu0), rate);
    let db_cpu = per_cert(db_cpu().saturating_sub(db_cpu0), rate);
    for mut c in children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    let errors = errors.load(Ordering::Relaxed);
    assert_eq!(errors, 0, "{errors} requests failed");
    Run {
        rate,
        load: load_result,
        rss_mb,
        server_cpu,
        client_cpu,
        db_cpu,
    }
}
