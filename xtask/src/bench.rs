//! `cargo xtask bench`: every benchmark in one table.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// Median time of one criterion benchmark, in nanoseconds.
fn criterion_ns(id: &str) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Signatures per second of `openssl speed` for P-256 and Ed25519 on one
/// core; `None` when openssl is missing.
fn openssl_rates() -> Option<(f64, f64)> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256", "ed25519"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40927.4  14229.5"
    let rate = |tag: &str| {
        text.lines()
            .find(|l| l.contains(tag))
            .and_then(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
    };
    Some((rate("(nistp256)")?, rate("(Ed25519)")?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Wall time of one invocation, in seconds.
fn timed(what: &str, cmd: &mut Command) -> Result<f64> {
    let t0 = std::time::Instant::now();
    output(what, cmd.stdout(std::process::Stdio::null()))?;
    Ok(t0.elapsed().as_secs_f64())
}

/// `sshca sign` and `ssh-keygen -s` over the same 1000 Ed25519 public keys,
/// one invocation each, per CA key type; median of 3 runs.
fn bulk_cli(sshca: &Path) -> Result<Vec<(String, f64, f64)>> {
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
        for _ in 0..3 {
            ours.push(timed(
                "sshca sign",
                Command::new(sshca)
                    .args(["sign", "-s"])
                    .arg(&ca)
                    .args(["-I", "bench", "-n", "alice", "-V", "+1d"])
                    .args(&pubs),
            )?);
            theirs.push(timed(
                "ssh-keygen -s",
                Command::new("ssh-keygen")
                    .args(["-q", "-s"])
                    .arg(&ca)
                    .args(["-I", "bench", "-n", "alice", "-V", "+1d"])
                    .args(&pubs),
            )?);
        }
        rows.push((label.to_string(), median(ours), median(theirs)));
    }
    Ok(rows)
}

/// Runs every benchmark and prints one table (also written to
/// `target/bench-table.md`).
pub fn bench() -> Result<()> {
    run(
        "release build of sshca and kms-emulator",
        cargo().args([
            "build",
            "--release",
            "-p",
            "sshca-cli",
            "-p",
            "kms-emulator",
        ]),
    )?;
    let release = target_dir().join("release");
    let results = target_dir().join("bench-results.jsonl");
    let _ = std::fs::remove_file(&results);
    run(
        "criterion benchmarks",
        cargo()
            .args(["bench", "-p", "sshca-benches"])
            .env("KMS_EMULATOR_BIN", release.join("kms-emulator"))
            .env("SSHCA_BIN", release.join("sshca"))
            .env("SSHCA_BENCH_OUT", &results),
    )?;
    let bulk = bulk_cli(&release.join("sshca"))?;
    let ssl = openssl_rates();

    let us = |id: &str| criterion_ns(id).map_or("?".into(), |n| format!("{:.2} µs", n / 1000.0));
    let per_s = |id: &str| criterion_ns(id).map(|n| 1e9 / n);
    let mut t = String::from("| benchmark | result | reference | ratio |\n|---|---|---|---|\n");
    let mut row = |a: &str, b: String, c: String, d: String| {
        t.push_str(&format!("| {a} | {b} | {c} | {d} |\n"))
    };
    let enc = criterion_ns("encode/sshca_tbs_encode");
    let theirs = criterion_ns("encode/ssh_key_certificate_encode");
    row(
        "to-be-signed encoding, typical user certificate",
        us("encode/sshca_tbs_encode"),
        format!("ssh-key encode {}", us("encode/ssh_key_certificate_encode")),
        match (enc, theirs) {
            (Some(a), Some(b)) => format!("{:.2}x ssh-key's time", a / b),
            _ => "?".into(),
        },
    );
    row(
        "encode + DER→SSH, P-256 (target < 1 µs)",
        us("convert/encode_plus_der_p256"),
        String::new(),
        String::new(),
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
        "assembly + verification, P-256",
        us("assemble/verified_p256"),
        String::new(),
        String::new(),
    );
    row(
        "assembly + verification, Ed25519",
        us("assemble/verified_ed25519"),
        String::new(),
        String::new(),
    );
    for (name, label, reference) in [
        ("p256", "P-256", ssl.map(|s| s.0)),
        ("ed25519", "Ed25519", ssl.map(|s| s.1)),
    ] {
        for (group, what) in [
            ("local_sign_certificate", "certificates/s"),
            ("local_signature", "signatures/s"),
        ] {
            let rate = per_s(&format!("{group}/{name}"));
            row(
                &format!("local {label}, one core, {what}"),
                rate.map_or("?".into(), |r| format!("{r:.0}/s")),
                reference.map_or("openssl missing".into(), |r| {
                    format!("openssl sign {r:.0}/s")
                }),
                match (rate, reference) {
                    (Some(a), Some(b)) => format!("{:.0}%", 100.0 * a / b),
                    _ => "?".into(),
                },
            );
        }
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
            match (token, file) {
                (Some(a), Some(b)) => format!("{:.0}% of the file's rate", 100.0 * a / b),
                _ => "?".into(),
            },
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
            match (wrapped, file) {
                (Some(a), Some(b)) => format!("{:.0}% of the file's rate", 100.0 * a / b),
                _ => "?".into(),
            },
        );
    }
    row(
        "AWS KMS Sign over HTTP to the emulator (sequential)",
        per_s("emulator/aws_p256_sign_http").map_or("?".into(), |r| format!("{r:.0}/s")),
        String::new(),
        String::new(),
    );
    let lines = std::fs::read_to_string(&results).unwrap_or_default();
    for l in lines.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        if v["bench"] == "serve" {
            row(
                &format!(
                    "sshca serve, local Ed25519 CA, durable SQLite, HTTPS keep-alive, C={} (goal ≥ 3000/s and ≥ 40 % of in-process)",
                    f("concurrency")
                ),
                format!("{:.0} certificates/s", f("https_rate")),
                format!("in process, same signer, C={}: {:.0}/s", f("concurrency"), f("inprocess_rate")),
                format!("{:.0}%", 100.0 * f("https_rate") / f("inprocess_rate")),
            );
            continue;
        }
        if v["bench"] == "krl" {
            row(
                &format!(
                    "KRL of {} revoked serials (random, runs, clusters), build + encode (goal < 1 s, no larger than ssh-keygen's)",
                    f("serials")
                ),
                format!(
                    "{} in {}",
                    format_args!("{:.0} bytes", f("ours_bytes")),
                    us("krl/build_1m_serials")
                ),
                format!(
                    "ssh-keygen -k: {:.0} bytes in {:.2} s",
                    f("ssh_keygen_bytes"),
                    f("ssh_keygen_secs")
                ),
                format!("{:.3}x ssh-keygen's size", f("ours_bytes") / f("ssh_keygen_bytes")),
            );
            continue;
        }
        if v["bench"] == "serve_pg" {
            row(
                &format!(
                    "sshca serve on PostgreSQL (fsync on), {} replica(s), C={}",
                    f("replicas"),
                    f("concurrency")
                ),
                format!("{:.0} certificates/s", f("rate")),
                format!(
                    "CPU per certificate: servers {:.0} µs, PostgreSQL {:.0} µs, load generator {:.0} µs",
                    f("server_cpu_us"),
                    f("db_cpu_us"),
                    f("client_cpu_us")
                ),
                String::new(),
            );
            continue;
        }
        row(
            &format!(
                "KMS pipeline, AWS {} via emulator, C={} L={} ms",
                v["key"].as_str().unwrap_or("?"),
                f("concurrency"),
                f("latency_ms")
            ),
            format!(
                "{:.0} certificates/s (client CPU {:.0} µs, emulator CPU {:.0} µs per certificate)",
                f("rate"),
                f("client_cpu_us"),
                f("emulator_cpu_us")
            ),
            format!("bound C/L {:.0}/s", f("bound")),
            format!("{:.0}%", 100.0 * f("rate") / f("bound")),
        );
    }
    for (label, ours, theirs) in bulk {
        row(
            &format!("bulk CLI, 1000 Ed25519 keys, {label} CA"),
            format!("sshca sign {ours:.2} s"),
            format!("ssh-keygen -s {theirs:.2} s"),
            format!("ssh-keygen time / sshca time = {:.1}", theirs / ours),
        );
    }
    println!("\n{t}");
    let out = target_dir().join("bench-table.md");
    std::fs::write(&out, &t).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("xtask: table written to {}", out.display());
    Ok(())
}
