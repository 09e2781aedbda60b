//! Project tasks, run as `cargo xtask TASK`:
//! - `ci`: format check, clippy with `-D warnings`, every test;
//! - `demo`: issue certificates with `sshca` and check them with OpenSSH;
//! - `bench`: the criterion benchmarks;
//! - `fuzz [--time SECS]`: every cargo-fuzz target (default 60 s each).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}");
    let st = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ci() -> Result<()> {
    run("rustfmt check", cargo().args(["fmt", "--all", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Slim builds of the CLI and the lean library facade compile on their own.
    for features in ["local", "aws", "gcp", "azure", "ekm"] {
        run(
            &format!("slim sshca-cli ({features})"),
            cargo().args([
                "check",
                "--quiet",
                "-p",
                "sshca-cli",
                "--no-default-features",
                "--features",
                features,
            ]),
        )?;
    }
    run(
        "lean sshca",
        cargo().args(["check", "--quiet", "-p", "sshca"]),
    )?;
    let (passed, failed, ignored) =
        test_counted(cargo().args(["test", "--workspace", "--all-features"]))?;
    run(
        "rustdoc",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("xtask: ci passed");
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    Ok(())
}

/// Runs `cargo test`, passing its output through, and totals the
/// `test result:` lines.
fn test_counted(cmd: &mut Command) -> Result<(u64, u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: tests");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("tests: cannot start cargo test: {e}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut it = part.split_whitespace();
                    if let (Some(n), Some(what)) = (it.next(), it.next()) {
                        let n: u64 = n.parse().unwrap_or(0);
                        match what {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            "ignored" => ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let st = child.wait().map_err(|e| format!("tests: {e}"))?;
    if !st.success() {
        println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
        return Err(format!("tests failed ({st})"));
    }
    Ok((passed, failed, ignored))
}

/// A CA key for the demo: backend name, key URI, what it is.
struct DemoCa {
    backend: &'static str,
    uri: String,
}

fn demo_cas(
    emu: &kms_emulator::Emulator,
    dir: &Path,
    cli: &dyn Fn() -> Command,
) -> Result<Vec<DemoCa>> {
    let ep = emu.endpoints();
    let ca_cert = ep.azure_ca_cert.display().to_string();
    let mut cas = Vec::new();
    for (name, args) in [
        ("ed25519", &["-t", "ed25519"][..]),
        ("ecdsa-p256", &["-t", "ecdsa", "-b", "256"][..]),
    ] {
        let p = dir.join(format!("ca_{name}"));
        output(
            &format!("ssh-keygen {name}"),
            Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", name, "-f"])
                .arg(&p)
                .args(args),
        )?;
        cas.push(DemoCa {
            backend: "local",
            uri: format!("file:{}", p.display()),
        });
    }
    let p256 = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY")?;
    emu.create_aws_alias("alias/ssh-user-ca", &p256)?;
    cas.push(DemoCa {
        backend: "aws",
        uri: format!("awskms:alias/ssh-user-ca?endpoint={}", ep.aws),
    });
    let ed = emu.create_aws_key("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")?;
    cas.push(DemoCa {
        backend: "aws",
        uri: format!("awskms:{ed}?endpoint={}", ep.aws),
    });
    let ring = "projects/demo/locations/global/keyRings/ssh";
    for (k, alg) in [
        ("user-ca-p384", "EC_SIGN_P384_SHA384"),
        ("user-ca-ed25519", "EC_SIGN_ED25519"),
    ] {
        let v = emu.create_gcp_key(&format!("{ring}/cryptoKeys/{k}"), alg)?;
        cas.push(DemoCa {
            backend: "gcp",
            uri: format!("gcpkms:{v}?endpoint={}", ep.gcp),
        });
    }
    for (k, kty, arg) in [
        ("user-ca-p256", "EC", "P-256"),
        ("user-ca-rsa", "RSA-HSM", "3072"),
    ] {
        let kid = emu.create_azure_key(k, kty, arg)?;
        cas.push(DemoCa {
            backend: "azure",
            uri: format!("azurekv:{kid}?ca-cert={ca_cert}"),
        });
    }
    // The external key manager: reached directly over mTLS with pinned
    // certificates, and through a Cloud KMS EkmConnection (EXTERNAL_VPC).
    let hosts: Vec<&str> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://"))
        .collect();
    let space = "v0/spaces/ssh-ca";
    let direct = emu.create_ekm_key(space, "user-ca-p256", "EC_SIGN_P256_SHA256")?;
    let ekm_uri = format!(
        "ekm:{direct}?resolver={}&server-cert={}&client-identity={}",
        hosts.join(","),
        ep.ekm_server_cert.display(),
        ep.ekm_client_identity.display()
    );
    eprintln!(
        "xtask: sshca ekm verify:\n{}",
        output(
            "sshca ekm verify",
            cli().args(["ekm", "verify", "--uri", &ekm_uri])
        )?
    );
    cas.push(DemoCa {
        backend: "ekm",
        uri: ekm_uri,
    });
    let location = "projects/demo/locations/global";
    let mut create = cli();
    create
        .args(["ekm", "connections", "create", "--endpoint", &ep.gcp])
        .args(["--location", location, "--id", "hsm"]);
    for h in &hosts {
        create.args(["--resolver", h]);
    }
    create.arg("--server-cert").arg(&ep.ekm_server_cert);
    output("sshca ekm connections create", &mut create)?;
    let conn = format!("{location}/ekmConnections/hsm");
    eprintln!(
        "xtask: {}",
        output(
            "sshca ekm connections verify",
            cli().args(["ekm", "connections", "verify", "--endpoint", &ep.gcp, &conn])
        )?
        .trim()
    );
    let external = emu.create_ekm_key(space, "user-ca-ed25519", "EC_SIGN_ED25519")?;
    let v = emu.create_gcp_external_key(
        &format!("{ring}/cryptoKeys/external-ed25519"),
        "EC_SIGN_ED25519",
        &conn,
        &external,
    )?;
    cas.push(DemoCa {
        backend: "gcp+ekm",
        uri: format!("gcpkms:{v}?endpoint={}", ep.gcp),
    });
    Ok(cas)
}

/// The main job: starts the KMS emulator in-process, creates a CA key in
/// each emulated KMS (and local file keys), signs a user certificate through
/// each backend with the `sshca` CLI, checks each with `ssh-keygen -L` and
/// `sshca verify`, and prints a table.
fn demo() -> Result<()> {
    run(
        "build sshca (every backend)",
        cargo().args(["build", "-p", "sshca-cli"]),
    )?;
    let sshca = target_dir().join("debug").join("sshca");
    let dir = target_dir().join("sshca-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let emu = rt
        .block_on(kms_emulator::Emulator::start(kms_emulator::Config {
            azure_token: Some("demo-token".into()),
            cert_dir: Some(dir.join("emulator")),
            ..Default::default()
        }))
        .map_err(|e| format!("emulator: {e}"))?;
    eprintln!("xtask: KMS emulator: {}", serde_like(emu.endpoints()));
    let cli = || {
        let mut c = Command::new(&sshca);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("SSHCA_AZURE_ACCESS_TOKEN", "demo-token")
            .env_remove("SSHCA_PASSPHRASE");
        c
    };
    let user = dir.join("id_user");
    output(
        "ssh-keygen id_user",
        Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "alice", "-t", "ed25519", "-f"])
            .arg(&user),
    )?;
    let cas = demo_cas(&emu, &dir, &cli)?;
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, ca) in cas.iter().enumerate() {
        let uri = ca.uri.clone();
        let backend = ca.backend;
        let name = format!("{backend}-{i}");
        let subject = dir.join(format!("id_user_{name}.pub"));
        std::fs::copy(user.with_extension("pub"), &subject).map_err(|e| format!("copy: {e}"))?;
        let result = (|| -> Result<(String, PathBuf)> {
            output(
                "sshca sign",
                cli()
                    .args([
                        "sign",
                        "--ca",
                        &uri,
                        "-I",
                        "demo-alice",
                        "-n",
                        "alice",
                        "-V",
                        "-5m:+1h",
                    ])
                    .arg(&subject),
            )?;
            let cert = dir.join(format!("id_user_{name}-cert.pub"));
            let listed = output(
                "ssh-keygen -L",
                Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert),
            )?;
            let alg = listed
                .lines()
                .find_map(|l| l.split("(using ").nth(1))
                .map(|s| s.trim_end_matches(')').to_owned())
                .ok_or("ssh-keygen -L printed no signing algorithm")?;
            output(
                "sshca verify",
                cli()
                    .args(["verify", "--ca", &uri, "--principal", "alice"])
                    .arg(&cert),
            )?;
            Ok((alg, cert))
        })();
        match result {
            Ok((alg, cert)) => rows.push([
                backend.into(),
                uri,
                alg,
                cert.display().to_string(),
                "yes".into(),
            ]),
            Err(e) => {
                failed = true;
                rows.push([
                    backend.into(),
                    uri,
                    "-".into(),
                    "-".into(),
                    format!("NO: {e}"),
                ]);
            }
        }
    }
    let header = ["backend", "key URI", "algorithm", "certificate", "verified"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header));
    for r in &rows {
        println!(
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str))
        );
    }
    println!("\ncertificates written to {}", dir.display());
    if failed {
        Err("some certificates failed".into())
    } else {
        Ok(())
    }
}

fn serde_like(ep: &kms_emulator::Endpoints) -> String {
    format!(
        "aws {} | gcp {} | azure {} (CA {}) | admin {} | ekm {}",
        ep.aws,
        ep.gcp,
        ep.azure,
        ep.azure_ca_cert.display(),
        ep.admin,
        ep.ekm.join(" ")
    )
}

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
fn bench() -> Result<()> {
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

const FUZZ_TARGETS: [&str; 10] = [
    "cert_decode",
    "convert",
    "syntax",
    "key_uri",
    "config",
    "public_key",
    "emulator_aws",
    "emulator_gcp",
    "emulator_azure",
    "emulator_ekm",
];

/// Runs every fuzz target for `secs` seconds. New inputs go to a working
/// corpus under the target dir (seeded from `fuzz/corpus`), so the committed
/// seeds stay small; a crash fails the task and names the artifact.
fn fuzz(secs: u64) -> Result<()> {
    let have = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        run(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let work = target_dir().join("fuzz-corpus");
    let fuzz_target = target_dir().join("fuzz");
    let mut report = Vec::new();
    for t in FUZZ_TARGETS {
        let dir = work.join(t);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let seeds = root().join("fuzz/corpus").join(t);
        let artifacts = target_dir().join("fuzz-artifacts").join(t);
        std::fs::create_dir_all(&artifacts).map_err(|e| format!("{}: {e}", artifacts.display()))?;
        let out = cargo()
            .current_dir(root().join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &fuzz_target)
            .args(["fuzz", "run", t])
            .arg(&dir)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .output()
            .map_err(|e| format!("cargo fuzz run {t}: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let runs = err
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(' ').next()))
            .unwrap_or("?")
            .to_owned();
        if !out.status.success() {
            eprintln!("{err}");
            return Err(format!(
                "fuzz target {t} found a failure; see {}",
                artifacts.display()
            ));
        }
        report.push((t, runs));
    }
    println!("{:<16}  {:>12}  findings", "target", "executions");
    for (t, runs) in report {
        println!("{t:<16}  {runs:>12}  0");
    }
    Ok(())
}

fn main() -> ExitCode {
    let task = env::args().nth(1).unwrap_or_default();
    let res = match task.as_str() {
        "ci" => ci(),
        "demo" => demo(),
        "bench" => bench(),
        "fuzz" => {
            let args: Vec<String> = env::args().skip(2).collect();
            match args.as_slice() {
                [] => fuzz(60),
                [flag, v] if flag == "--time" => match v.parse() {
                    Ok(secs) => fuzz(secs),
                    Err(_) => Err(format!("--time takes seconds, not `{v}`")),
                },
                _ => Err("usage: cargo xtask fuzz [--time SECS]".into()),
            }
        }
        _ => Err(format!(
            "unknown task `{task}`; tasks: ci (format, clippy, tests, docs), demo (issue and check certificates), bench (criterion benchmarks), fuzz [--time SECS] (every fuzz target)"
        )),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
