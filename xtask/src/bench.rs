//! `cargo xtask bench`: every benchmark in one table.

use std::path::Path;
use std::process::Command;

use crate::bench_runs::{self, Figures, Stat};
use crate::util::*;

/// Signatures and verifications per second of `openssl speed`, one core.
#[derive(Clone, Copy)]
struct SslRate {
    sign: f64,
    verify: f64,
}

impl SslRate {
    /// Sign-then-verify pairs per second.
    fn pair(self) -> f64 {
        1.0 / (1.0 / self.sign + 1.0 / self.verify)
    }
}

/// `openssl speed` for P-256 and Ed25519 on one core; `None` when openssl
/// is missing.
fn openssl_rates() -> Option<(SslRate, SslRate)> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256", "ed25519"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40927.4  14229.5"
    let rate = |tag: &str| {
        let l = text.lines().find(|l| l.contains(tag))?;
        let mut f = l.split_whitespace().rev();
        let verify = f.next()?.parse().ok()?;
        let sign = f.next()?.parse().ok()?;
        Some(SslRate { sign, verify })
    };
    Some((rate("(nistp256)")?, rate("(Ed25519)")?))
}

/// User and system CPU seconds of the children this process has waited
/// for (`/proc/self/stat` cutime and cstime, 100 ticks per second).
fn children_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 16 and 17 are 13 and 14 after the command name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) / 100.0, ticks(14) / 100.0)
}

/// Wall, user and system seconds of one invocation.
#[derive(Clone, Copy)]
struct Times {
    wall: f64,
    user: f64,
    sys: f64,
}

fn timed(what: &str, cmd: &mut Command) -> Result<Times> {
    let (u0, s0) = children_cpu();
    let t0 = std::time::Instant::now();
    output(what, cmd.stdout(std::process::Stdio::null()))?;
    let wall = t0.elapsed().as_secs_f64();
    let (u1, s1) = children_cpu();
    Ok(Times {
        wall,
        user: u1 - u0,
        sys: s1 - s0,
    })
}

/// The run of median wall time.
fn median_run(mut v: Vec<Times>) -> Times {
    v.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    v[v.len() / 2]
}

/// `sshca sign` and `ssh-keygen -s` over the same 1000 Ed25519 public keys,
/// one invocation each, per CA key type; the run of median wall time of 7.
/// Each run writes into a fresh copy of the keys (made before the clock
/// starts), so both tools create 1000 new certificate files under the same
/// conditions: replacing the files of the previous run would make this
/// machine's filesystem (ext4 without a journal) skip every recently freed
/// inode on each allocation, a cost only atomic replacement pays.
fn bulk_cli(sshca: &Path) -> Result<Vec<(String, Times, Times)>> {
    let dir = target_dir().join("bench-bulk");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
    let mut pubs = Vec::new();
    for i in 0..1000 {
        let k = keys.join(format!("id{i:04}"));
        if !k.with_extension("pub").exists() {
            let _ = std::fs::remove_file(&k);
            output(
                "ssh-keygen (subject key)",
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
                    .arg(&k),
            )?;
        }
        pubs.push(k.with_extension("pub"));
    }
    let mut rows = Vec::new();
    let cas: [(&str, &[&str]); 2] = [
        ("ECDSA P-256", &["-t", "ecdsa", "-b", "256"]),
        ("Ed25519", &["-t", "ed25519"]),
    ];
    for (label, args) in cas {
        let ca = dir.join(format!("ca-{}", label.replace(' ', "-")));
        if !ca.exists() {
            output(
                "ssh-keygen (CA key)",
                Command::new("ssh-keygen")
                    .args(["-q", "-N", ""])
                    .args(args)
                    .arg("-f")
                    .arg(&ca),
            )?;
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            for tool in ["sshca", "ssh-keygen"] {
                let run = dir.join(format!("run-{tool}"));
                let _ = std::fs::remove_dir_all(&run);
                std::fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
                let mut copies = Vec::new();
                for p in &pubs {
                    let to = run.join(p.file_name().unwrap_or_default());
                    std::fs::copy(p, &to).map_err(|e| format!("{}: {e}", to.display()))?;
                    copies.push(to);
                }
                let _ = Command::new("sync").status();
                if tool == "sshca" {
                    ours.push(timed(
                        "sshca sign",
                        Command::new(sshca)
                            .args(["sign", "-q", "-s"])
                            .arg(&ca)
                            .args(["-I", "bench", "-n", "alice", "-V", "+1d"])
                            .args(&copies),
                    )?);
                } else {
                    theirs.push(timed(
                        "ssh-keygen -s",
                        Command::new("ssh-keygen")
                            .args(["-q", "-s"])
                            .arg(&ca)
                            .args(["-I", "bench", "-n", "alice", "-V", "+1d"])
                            .args(&copies),
                    )?);
                }
            }
        }
        rows.push((label.to_string(), median_run(ours), median_run(theirs)));
    }
    Ok(rows)
}

/// Runs the benchmark groups (`--only NAME`, default all; `--list` names
/// them) `--runs N` times (default 3) and prints one table of medians with
/// their spread (also written to `target/bench-table.md`).
pub fn bench(args: &[String]) -> Result<()> {
    let a = bench_runs::parse(args)?;
    if a.list {
        for (name, what) in bench_runs::GROUPS {
            println!("{name:<12} {what}");
        }
        return Ok(());
    }
    run(
        "release build (profiling profile) of sshca and kms-emulator",
        plain_cargo().args([
            "build",
            "--profile",
            "profiling",
            "-p",
            "sshca-cli",
            "-p",
            "kms-emulator",
        ]),
    )?;
    let release = target_dir().join("profiling");
    let mut fig = Figures::default();
    let mut ssl_runs = Vec::new();
    let mut bulk_runs: Vec<Vec<(String, Times, Times)>> = Vec::new();
    let mut check_runs = Vec::new();
    let started = std::time::Instant::now();
    for n in 1..=a.runs {
        let since = std::time::SystemTime::now();
        let results = target_dir().join(format!("bench-results-{n}.jsonl"));
        let _ = std::fs::remove_file(&results);
        for group in &a.groups {
            if *group == "bulk" {
                bulk_runs.push(bulk_cli(&release.join("sshca"))?);
                continue;
            }
            if *group == "login_check" {
                check_runs.push(crate::bench_login::login_check(&release.join("sshca"))?);
                continue;
            }
            run(
                &format!("run {n} of {}: criterion benchmarks `{group}`", a.runs),
                plain_cargo()
                    .args(["bench", "--profile", "profiling", "-p", "sshca-benches"])
                    .args(["--bench", group])
                    .env("KMS_EMULATOR_BIN", release.join("kms-emulator"))
                    .env("SSHCA_BIN", release.join("sshca"))
                    .env("SSHCA_AZURE_ACCESS_TOKEN", "bench")
                    .env("SSHCA_BENCH_OUT", &results),
            )?;
            if *group == "hot_path" {
                ssl_runs.extend(openssl_rates());
            }
        }
        fig.gather_criterion(since);
        fig.gather_lines(&results);
    }
    eprintln!(
        "xtask: {} run(s) of {} in {:.1} min",
        a.runs,
        a.groups.join(", "),
        started.elapsed().as_secs_f64() / 60.0
    );
    let median_of = |f: fn(&(SslRate, SslRate)) -> f64| {
        Stat::of(&ssl_runs.iter().map(f).collect::<Vec<_>>()).map(|s| s.median)
    };
    let ssl = match (
        median_of(|r| r.0.sign),
        median_of(|r| r.0.verify),
        median_of(|r| r.1.sign),
        median_of(|r| r.1.verify),
    ) {
        (Some(ps), Some(pv), Some(es), Some(ev)) => Some((
            SslRate {
                sign: ps,
                verify: pv,
            },
            SslRate {
                sign: es,
                verify: ev,
            },
        )),
        _ => None,
    };
    let criterion_ns = |id: &str| fig.ns(id).map(|s| s.median);
    let sp = |id: &str| fig.ns(id).map(|s| s.spread()).unwrap_or_default();
    let us = |id: &str| {
        criterion_ns(id).map_or("?".into(), |n| format!("{:.2} µs{}", n / 1000.0, sp(id)))
    };
    let per_s = |id: &str| criterion_ns(id).map(|n| 1e9 / n);
    let ratio = |a: Option<f64>, b: Option<f64>, unit: &str| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x {unit}", a / b),
        _ => "?".into(),
    };
    let mut t = String::from(
        "| benchmark | result | reference (same run) | ratio (goal) |\n|---|---|---|---|\n",
    );
    // Rows of groups that did not run (`--only`) are left out.
    let mut row = |a: &str, b: String, c: String, d: String| {
        if !b.starts_with('?') {
            t.push_str(&format!("| {a} | {b} | {c} | {d} |\n"))
        }
    };
    let enc = criterion_ns("encode/sshca_tbs_encode");
    let theirs = criterion_ns("encode/ssh_key_certificate_encode");
    row(
        "to-be-signed encoding, typical user certificate (CA key prepared once per signer)",
        us("encode/sshca_tbs_encode"),
        format!(
            "ssh-key's encode {}; unprepared CA key {}",
            us("encode/ssh_key_certificate_encode"),
            us("encode/sshca_tbs_encode_unprepared")
        ),
        format!("{} (goal ≤ 1.00x)", ratio(enc, theirs, "ssh-key's time")),
    );
    let hot = criterion_ns("convert/encode_plus_der_p256");
    row(
        "encode + DER→SSH, P-256",
        us("convert/encode_plus_der_p256"),
        "goal 1 µs".into(),
        format!("{} (goal < 1.00x)", ratio(hot, Some(1000.0), "the goal")),
    );
    for c in ["der_p256", "der_p384", "der_p521", "raw_p256"] {
        row(
            &format!("signature conversion {c}"),
            us(&format!("convert/{c}")),
            String::new(),
            String::new(),
        );
    }
    row(
        "assembly + verification, P-256 (ring)",
        us("assemble/verified_p256"),
        String::new(),
        String::new(),
    );
    row(
        "assembly + verification, Ed25519 (ed25519-dalek, key decompressed once)",
        us("assemble/verified_ed25519"),
        String::new(),
        String::new(),
    );
    for (name, label, reference, goal) in [
        ("p256", "P-256", ssl.map(|s| s.0), 1.2),
        ("ed25519", "Ed25519", ssl.map(|s| s.1), 2.0),
    ] {
        let rate = per_s(&format!("local_sign_certificate/{name}"));
        row(
            &format!("local {label}, one core, certificates/s (sign, then verify)"),
            rate.map_or("?".into(), |r| {
                format!("{r:.0}/s{}", sp(&format!("local_sign_certificate/{name}")))
            }),
            reference.map_or("openssl missing".into(), |r| {
                format!(
                    "openssl sign+verify pair {:.0}/s (sign {:.0}/s, verify {:.0}/s)",
                    r.pair(),
                    r.sign,
                    r.verify
                )
            }),
            format!(
                "{} (goal ≥ {goal:.1}x)",
                ratio(rate, reference.map(SslRate::pair), "openssl's pair")
            ),
        );
        let sig = per_s(&format!("local_signature/{name}"));
        row(
            &format!("local {label}, one core, signatures/s"),
            sig.map_or("?".into(), |r| format!("{r:.0}/s")),
            reference.map_or("openssl missing".into(), |r| {
                format!("openssl sign {:.0}/s", r.sign)
            }),
            ratio(sig, reference.map(|r| r.sign), "openssl's"),
        );
    }
    for (name, label) in [("ed25519", "Ed25519"), ("p256", "P-256")] {
        let token = per_s(&format!("pkcs11_sign_certificate/{name}_softhsm"));
        let file = per_s(&format!("pkcs11_sign_certificate/{name}_file"));
        let c8 = per_s(&format!(
            "pkcs11_sign_certificate/{name}_softhsm_c8_batch64"
        ))
        .map(|r| r * 64.0);
        row(
            &format!("PKCS#11 (SoftHSM2) {label} certificates/s, sequential; C=8 on one token"),
            format!(
                "{}; C=8: {}",
                token.map_or("?".into(), |r| format!("{r:.0}/s")),
                c8.map_or("?".into(), |r| format!("{r:.0}/s"))
            ),
            file.map_or("?".into(), |r| format!("same key type in a file: {r:.0}/s")),
            ratio(token, file, "the file's rate"),
        );
    }
    for (name, label) in [("ed25519", "Ed25519"), ("p256", "P-256")] {
        let wrapped = per_s(&format!("wrapped_sign_certificate/{name}_wrapped"));
        let file = per_s(&format!("wrapped_sign_certificate/{name}_file"));
        let remote = per_s(&format!("wrapped_sign_certificate/{name}_awskms"));
        row(
            &format!("wrapped: {label} certificates/s, one core (KEK in AWS KMS via the emulator; one Decrypt per signer)"),
            wrapped.map_or("?".into(), |r| format!("{r:.0}/s")),
            format!(
                "file {}{}",
                file.map_or("?".into(), |r| format!("{r:.0}/s")),
                remote.map_or(String::new(), |r| format!("; remote AWS KMS Sign, sequential {r:.0}/s"))
            ),
            ratio(wrapped, file, "the file's rate"),
        );
    }
    row(
        "AWS KMS Sign over HTTP to the emulator (sequential, client and emulator in one process)",
        per_s("emulator/aws_p256_sign_http").map_or("?".into(), |r| format!("{r:.0}/s")),
        String::new(),
        String::new(),
    );
    for v in fig.records() {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let spr = |k: &str| v["spread"][k].as_str().unwrap_or_default().to_owned();
        let sign_alone = criterion_ns("emulator/material_p256_sign_digest");
        match v["bench"].as_str() {
            Some("serve") => {
                row(
                    &format!(
                        "sshca serve, local Ed25519 CA, durable SQLite, HTTPS keep-alive, C={} (goal ≥ 3000/s and ≥ 40 % of in-process)",
                        f("concurrency")
                    ),
                    format!("{:.0} certificates/s{}", f("https_rate"), spr("https_rate")),
                    format!("in process, same signer, C={}: {:.0}/s", f("concurrency"), f("inprocess_rate")),
                    format!("{:.0}%", 100.0 * f("https_rate") / f("inprocess_rate")),
                );
                row(
                    "sshca serve latency (same setup): p50 / p99 at C=32 and at C=1; server RSS after 100,000 certificates",
                    format!(
                        "C=32: {:.0} / {:.0} µs; C=1: {:.0} / {:.0} µs ({:.0}/s{})",
                        f("p50_us"),
                        f("p99_us"),
                        f("c1_p50_us"),
                        f("c1_p99_us"),
                        f("c1_rate"),
                        spr("c1_rate")
                    ),
                    format!("RSS {:.1} MB{}", f("rss_100k_mb"), spr("rss_100k_mb")),
                    String::new(),
                );
            }
            Some("krl") => row(
                &format!(
                    "KRL of {} revoked serials (random, runs, clusters), build + encode (goal < 1 s, no larger than ssh-keygen's)",
                    f("serials")
                ),
                format!(
                    "{:.0} bytes in {}",
                    f("ours_bytes"),
                    criterion_ns("krl/build_1m_serials")
                        .map_or("?".into(), |n| format!("{:.1} ms", n / 1e6))
                ),
                format!(
                    "ssh-keygen -k: {:.0} bytes in {:.2} s",
                    f("ssh_keygen_bytes"),
                    f("ssh_keygen_secs")
                ),
                format!("{:.3}x ssh-keygen's size", f("ours_bytes") / f("ssh_keygen_bytes")),
            ),
            Some("audit_sinks") => row(
                &format!(
                    "sshca serve with audit sinks, SQLite, C={}: issuance with a file sink and with an HTTPS sink (goal ≤ 10 % each)",
                    f("concurrency")
                ),
                format!(
                    "file {:.0}/s{} ({:+.1} µs per certificate), HTTPS {:.0}/s{} ({:+.1} µs); server CPU {:.0} / {:.0} µs per certificate",
                    f("file_rate"),
                    spr("file_rate"),
                    1e6 / f("file_rate") - 1e6 / f("none_rate"),
                    f("http_rate"),
                    spr("http_rate"),
                    1e6 / f("http_rate") - 1e6 / f("none_rate"),
                    f("file_cpu_us"),
                    f("http_cpu_us")
                ),
                format!(
                    "no sink: {:.0}/s, server CPU {:.0} µs per certificate",
                    f("none_rate"),
                    f("none_cpu_us")
                ),
                format!(
                    "file {:+.1} %, HTTPS {:+.1} % of the rate",
                    100.0 * (f("file_rate") / f("none_rate") - 1.0),
                    100.0 * (f("http_rate") / f("none_rate") - 1.0)
                ),
            ),
            Some("serve_pg") => row(
                &format!(
                    "sshca serve on PostgreSQL (fsync on), {} replica(s), C={}",
                    f("replicas"),
                    f("concurrency")
                ),
                format!("{:.0} certificates/s{}", f("rate"), spr("rate")),
                format!(
                    "CPU per certificate: servers {:.0} µs, PostgreSQL {:.0} µs, load generator {:.0} µs",
                    f("server_cpu_us"),
                    f("db_cpu_us"),
                    f("client_cpu_us")
                ),
                String::new(),
            ),
            Some("frontends") => {
                let reference = format!(
                    "sshca request (one token-authenticated sign from the CLI) {:.1} ms{}",
                    f("request_ms"),
                    spr("request_ms")
                );
                for (key, what) in [
                    ("login_ms", "sshca login end to end (OIDC provider, service and ssh-agent on loopback; the browser's requests made at once)"),
                    ("renew_ms", "sshca renew of a user certificate (proof of possession, /v1/renew)"),
                    ("enroll3_ms", "sshca host enroll, 3 host keys (join token; certificates, CA bundle, KRL, sshd drop-in)"),
                ] {
                    row(
                        &format!("{what}, wall time, median of {:.0}", f("runs")),
                        format!("{:.1} ms{}", f(key), spr(key)),
                        reference.clone(),
                        format!("{:.2}x the reference", f(key) / f("request_ms")),
                    );
                }
            }
            Some("emulator_cpu") => row(
                "kms-emulator, AWS Sign P-256 over HTTP (C=64, no injected latency), CPU per request",
                format!("{:.0} µs{}", f("emulator_cpu_us"), spr("emulator_cpu_us")),
                format!(
                    "its signature alone (aws-lc, key prepared once): {}",
                    us("emulator/material_p256_sign_digest")
                ),
                format!(
                    "{:.2}x the goal of 100 µs (goal ≤ 1.00x); signing is {:.0}% of it",
                    f("emulator_cpu_us") / 100.0,
                    sign_alone.map_or(f64::NAN, |n| 100.0 * n / 1000.0 / f("emulator_cpu_us"))
                ),
            ),
            _ => row(
                &format!(
                    "KMS pipeline, {} {} via the emulator, C={} L={} ms",
                    v["backend"].as_str().unwrap_or("AWS KMS"),
                    v["key"].as_str().unwrap_or("?"),
                    f("concurrency"),
                    f("latency_ms")
                ),
                format!(
                    "{:.0} certificates/s{}; client CPU {:.0} µs, emulator CPU {:.0} µs per certificate",
                    f("rate"),
                    spr("rate"),
                    f("client_cpu_us"),
                    f("emulator_cpu_us")
                ),
                format!("bound C/L {:.0}/s", f("bound")),
                format!("{:.0}% (goal ≥ 90%)", 100.0 * f("rate") / f("bound")),
            ),
        }
    }
    let labels: Vec<String> = bulk_runs
        .first()
        .map(|r| r.iter().map(|(l, _, _)| l.clone()).collect())
        .unwrap_or_default();
    for label in labels {
        let of = |ours: bool| -> Vec<Times> {
            bulk_runs
                .iter()
                .filter_map(|r| r.iter().find(|(l, _, _)| *l == label))
                .map(|(_, o, t)| if ours { *o } else { *t })
                .collect()
        };
        let (ours, theirs) = (median_run(of(true)), median_run(of(false)));
        let ratios: Vec<f64> = of(true)
            .iter()
            .zip(of(false))
            .map(|(o, t)| t.wall / o.wall)
            .collect();
        let spread = Stat::of(&ratios).map(|s| s.spread()).unwrap_or_default();
        row(
            &format!("bulk CLI, 1000 Ed25519 keys, {label} CA, into fresh files (sshca: every certificate verified, durable at exit)"),
            format!(
                "sshca sign {:.3} s wall (user {:.2} s, sys {:.2} s)",
                ours.wall, ours.user, ours.sys
            ),
            format!(
                "ssh-keygen -s {:.3} s wall (user {:.2} s, sys {:.2} s)",
                theirs.wall, theirs.user, theirs.sys
            ),
            format!(
                "ssh-keygen's wall / sshca's = {:.2}{spread} (goal ≥ 1.00)",
                theirs.wall / ours.wall
            ),
        );
    }
    if !check_runs.is_empty() {
        let ours = Stat::of(&check_runs.iter().map(|r| r.0.median).collect::<Vec<_>>());
        let theirs = Stat::of(&check_runs.iter().map(|r| r.1.median).collect::<Vec<_>>());
        if let (Some(o), Some(t)) = (ours, theirs) {
            row(
                "sshca login --check (runs before every ssh), wall time per invocation, median of 50",
                format!("{:.2} ms{} (slowest of the last run {:.2} ms)", o.median, o.spread(), check_runs.last().map_or(f64::NAN, |r| r.0.max)),
                format!("ssh-add -l {:.2} ms{}", t.median, t.spread()),
                format!("{:.2}x the goal of 5 ms (goal ≤ 1.00x)", o.median / 5.0),
            );
        }
    }
    println!("\n{t}");
    let out = target_dir().join("bench-table.md");
    std::fs::write(&out, &t).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("xtask: table written to {}", out.display());
    Ok(())
}
