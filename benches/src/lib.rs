//! Benchmarks live in `benches/`; run them with `cargo xtask bench`. This
//! library holds what several of them share.

use std::time::Duration;

use sshca_core::ssh_key::public::Ed25519PublicKey;
use sshca_core::{CertTemplate, CertType, KeyData};

/// A small user certificate (two principals, one day, serial 42) and an
/// Ed25519 subject key: what the per-backend throughput benchmarks sign.
pub fn user_certificate() -> (CertTemplate, KeyData) {
    let mut t = CertTemplate::new(CertType::User, "alice@example.com");
    t.principals = vec!["alice".into(), "deploy".into()];
    t.valid_after = 1_795_000_000;
    t.valid_before = 1_795_086_400;
    t.serial = 42;
    (t, KeyData::Ed25519(Ed25519PublicKey([5u8; 32])))
}

/// Appends one result line (JSON) to the file `SSHCA_BENCH_OUT` names, where
/// `cargo xtask bench` collects what criterion does not measure; nothing
/// when it is unset.
///
/// # Panics
/// When the file cannot be written (the run's results would be lost).
#[allow(clippy::expect_used)]
pub fn record(line: &serde_json::Value) {
    use std::io::Write;
    if let Ok(out) = std::env::var("SSHCA_BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .expect("SSHCA_BENCH_OUT can be opened");
        writeln!(f, "{line}").expect("SSHCA_BENCH_OUT can be written");
    }
}

/// A two-thread runtime and the KMS emulator started on it (default
/// config).
///
/// # Panics
/// When the emulator cannot start (the benchmark cannot run).
#[allow(clippy::expect_used)]
pub fn emulator_in_process() -> (tokio::runtime::Runtime, kms_emulator::Emulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let emu = rt
        .block_on(kms_emulator::Emulator::start(
            kms_emulator::Config::default(),
        ))
        .expect("the KMS emulator starts");
    (rt, emu)
}

/// Starts `bin serve` on `config` (loopback, an OS-chosen port, logging
/// warnings to `stderr`) and waits up to 30 s for its ready file `ready`:
/// the child and the service's URL.
///
/// # Panics
/// When it cannot start, exits, or is not ready in time (the benchmark
/// cannot run).
#[allow(clippy::expect_used, clippy::panic)]
pub fn start_serve(
    bin: &str,
    config: &std::path::Path,
    ready: &std::path::Path,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let _ = std::fs::remove_file(ready);
    let mut child = std::process::Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(ready)
        .env("SSHCA_LOG", "warn")
        .stderr(stderr)
        .spawn()
        .expect("sshca serve starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            panic!("sshca serve exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshca serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(ready).expect("the ready file can be read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the ready file is JSON");
    let url = v["url"].as_str().expect("the ready file names the URL");
    (child, url.to_owned())
}

/// CPU time (user + system) a process has used so far; `pid` is a process
/// id or `self`. Zero when /proc cannot be read.
pub fn cpu_time_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the command name; 100 ticks/s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time of a process and its direct children (PostgreSQL's postmaster
/// and its backends).
pub fn cpu_time_of_tree(pid: &str) -> Duration {
    let mut total = cpu_time_of(pid);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            // Field 4 (ppid) is the second after the command name.
            if after.split_whitespace().nth(1) == Some(pid) {
                total += cpu_time_of(&name);
            }
        }
    }
    total
}
