//! `sshca serve` for real, end to end: the binary listening on 127.0.0.1
//! (OS-chosen port) over TLS, `sshca request` with a token and a client
//! certificate, a certificate that sshd accepts, the record read by `sshca
//! certs` and `sshca audit`, 1000 requests at 32 concurrent, `kill -9`
//! under load, a slow or failing KMS (the emulator) and SIGTERM with
//! requests in flight. The HTTP API itself, resource by resource, is tested
//! in process in `crates/sshca-server/tests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use serve_support::*;

#[test]
fn sshd_accepts_certificates_from_the_service() {
    let s = setup("", None);
    let svc = Service::start(&s.dir, &s.config);
    let dir = &s.dir;
    let me = user();
    let ca_line = run(sshca()
        .arg("pubkey")
        .arg(format!("file:{}", s.user_ca.display())))
    .stdout;
    let user_ca_pub = dir.join("trusted_user_ca.pub");
    std::fs::write(&user_ca_pub, &ca_line).unwrap();
    let (sshd, known_hosts) = sshd_trusting(dir, &user_ca_pub);

    // With a token file, through `sshca request`, failing over from a dead server.
    let key = keygen(dir, "id_user", "ed25519", None);
    std::fs::write(dir.join("token"), format!("{}\n", s.ci)).unwrap();
    let dead = format!("https://127.0.0.1:{}", free_port());
    let out = run(sshca()
        .args([
            "request", "--server", &dead, "--server", &svc.url, "--policy", "ci", "-n", &me, "-V",
            "+30m",
        ])
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg(key.with_extension("pub")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trying the next server"));
    let cert = cert_of(&key.with_extension("pub"));
    assert_login_works(&sshd, dir, &key, &cert, &known_hosts, "served-login-ok");

    // With a client certificate; the CLI exits non-zero with the server's message.
    let key2 = keygen(dir, "id_user2", "ed25519", None);
    let request = |extra: &[&str]| {
        let mut c = sshca();
        c.args(["request", "--server", &svc.url, "--policy", "ci"])
            .args(extra)
            .arg("--server-ca")
            .arg(&s.pki.tls_ca)
            .arg("--identity")
            .arg(dir.join("deploy.pem"))
            .arg(key2.with_extension("pub"))
            .env_remove("SSHCA_TOKEN");
        c.output().unwrap()
    };
    let out = request(&["-n", "mallory"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("422 policy_refused") && err.contains("mallory"),
        "{err}"
    );
    assert!(
        !cert_of(&key2.with_extension("pub")).exists(),
        "a refused request left a file"
    );
    let out = request(&["-n", &me]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ssh(
        &sshd,
        dir,
        &key2,
        &cert_of(&key2.with_extension("pub")),
        &known_hosts,
        "echo ok",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The record, read by the offline commands: both certificates, the
    // refusal audited with who and why; no token in the service's log.
    let rows = store_rows(&s.config, &[]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = &store_rows(&s.config, &["--requester", "deploy.example.com"])[0];
    assert_eq!(row["policy"], "ci");
    assert_eq!(row["principals"], serde_json::json!([me]));
    let shown = run(sshca().arg("--config").arg(&s.config).args([
        "certs",
        "show",
        &row["serial"].to_string(),
    ]));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("requester: deploy.example.com"));
    let audit = run(sshca()
        .arg("--config")
        .arg(&s.config)
        .args(["audit", "--json", "--limit", "1000"]));
    let audit: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        audit.iter().any(|e| e["status"] == 422
            && e["code"] == "policy_refused"
            && e["identity"] == "deploy.example.com"
            && e["auth_source"] == "client-cert"
            && e["policy"] == "ci"),
        "{audit:?}"
    );
    let log = svc.log();
    assert!(!log.contains(s.ci.as_str()), "a token reached the log");
    assert!(log.contains("\"route\":\"sign\""), "{log}");
}

#[test]
fn a_thousand_requests_at_32_concurrent_get_unique_recorded_serials() {
    let s = setup("", None);
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");
    let serials = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (c, url, token, key, sem) = (
                c.clone(),
                svc.url.clone(),
                s.ci.clone(),
                key.clone(),
                sem.clone(),
            );
            tasks.spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let resp = c
                    .post(format!("{url}/v1/sign/ci"))
                    .bearer_auth(token)
                    .json(&json!({"public_key": key}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let v: Value = resp.json().await.unwrap();
                v["serial"].as_str().unwrap().parse::<u64>().unwrap()
            });
        }
        let mut serials = Vec::new();
        while let Some(r) = tasks.join_next().await {
            serials.push(r.unwrap());
        }
        serials
    });
    let unique: HashSet<u64> = serials.iter().copied().collect();
    assert_eq!(unique.len(), 1000);
    let stored: HashSet<u64> = store_rows(&s.config, &[])
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, unique);
}

#[test]
fn kill_9_under_load_loses_no_issued_certificate() {
    let s = setup("", None);
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");
    let received = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (c, url, token, key, received) = (
                c.clone(),
                svc.url.clone(),
                s.ci.clone(),
                key.clone(),
                received.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let r = c
                        .post(format!("{url}/v1/sign/ci"))
                        .bearer_auth(&token)
                        .json(&json!({"public_key": key}))
                        .send()
                        .await;
                    let Ok(resp) = r else { break };
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    let serial = v["serial"].as_str().unwrap().parse::<u64>().unwrap();
                    received.lock().unwrap().push(serial);
                }
            });
        }
        while received.lock().unwrap().len() < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        svc.signal("-KILL");
        while tasks.join_next().await.is_some() {}
    });
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 300);
    // After a restart on the same store, every certificate a client got is there.
    drop(svc);
    let svc = Service::start(&s.dir, &s.config);
    let stored: HashSet<u64> = store_rows(&s.config, &[])
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    let missing: Vec<_> = received.iter().filter(|s| !stored.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} received certificates are not in the store",
        missing.len()
    );
    rt.block_on(async {
        let (st, _, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!(st, 200);
    });
}

/// The AWS KMS of the emulator, slowed down or failing, as the CA.
#[test]
fn slow_or_failing_kms_and_sigterm_with_requests_in_flight() {
    let rt = runtime();
    let emu = rt
        .block_on(kms_emulator::Emulator::start(
            kms_emulator::Config::default(),
        ))
        .unwrap();
    let id = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY").unwrap();
    let uri = format!("awskms:{id}?endpoint={}", emu.endpoints().aws);
    let s = setup("request_timeout = \"20s\"", Some(uri));
    let svc = Service::start_with(&s.dir, &s.config, |c| {
        kms_env(c, &s.dir);
    });
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");

    rt.block_on(async {
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!(st, 200, "{v}");

        // The KMS failing every call: 503 with Retry-After, no certificate, no row.
        emu.add_fault(kms_emulator::Fault {
            operation: Some("Sign".into()),
            error: Some(kms_emulator::FaultError::Unavailable),
            count: Some(1000),
            ..kms_emulator::Fault::new("aws")
        })
        .unwrap();
        let (st, v, retry) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "key_id": "x"}),
        )
        .await;
        assert_eq!((st, code(&v)), (503, "backend_unavailable"), "{v}");
        assert!(retry.is_some());
        emu.reset();

        // SIGTERM while requests wait on a slow KMS: each one completes.
        emu.add_fault(kms_emulator::Fault {
            operation: Some("Sign".into()),
            latency_ms: 1500,
            ..kms_emulator::Fault::new("aws")
        })
        .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (c, url, token, key) = (c.clone(), svc.url.clone(), s.ci.clone(), key.clone());
            tasks.spawn(async move {
                let resp = c
                    .post(format!("{url}/v1/sign/ci"))
                    .bearer_auth(token)
                    .json(&json!({"public_key": key}))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        svc.signal("-TERM");
        let mut serials = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (st, v) = r.unwrap();
            assert_eq!(st, 200, "an in-flight request did not complete: {v}");
            serials.push(v["serial"].as_str().unwrap().parse::<u64>().unwrap());
        }
        // No new connection is accepted once stopping.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(c.get(format!("{}/healthz", svc.url)).send().await.is_err());
        let stored: HashSet<u64> = store_rows(&s.config, &[])
            .iter()
            .map(|r| r["serial"].as_u64().unwrap())
            .collect();
        assert!(serials.iter().all(|s| stored.contains(s)));
    });
    let mut svc = svc;
    let status = svc.child.wait().unwrap();
    assert!(
        status.success(),
        "sshca serve exited with {status} after SIGTERM: {}",
        svc.log()
    );
}

#[test]
fn dev_mode_serves_with_a_printed_token() {
    let d = tempfile::tempdir().unwrap();
    let ready = d.path().join("ready.json");
    let log = d.path().join("dev.log");
    let mut child = sshca()
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    let (url, ca) = (
        v["url"].as_str().unwrap().to_owned(),
        v["ca_cert"].as_str().unwrap().to_owned(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("export SSHCA_TOKEN=")) {
            break l
                .trim()
                .trim_start_matches("export SSHCA_TOKEN=")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no token printed: {text}");
        std::thread::sleep(Duration::from_millis(25));
    };
    let key = keygen(d.path(), "id", "ed25519", None);
    run(sshca()
        .args([
            "request",
            "--server",
            &url,
            "--server-ca",
            &ca,
            "--policy",
            "dev",
            "-n",
            "alice",
        ])
        .env("SSHCA_TOKEN", &token)
        .arg(key.with_extension("pub")));
    let view = sshca_view(&cert_of(&key.with_extension("pub")));
    assert_eq!(view.principals, vec!["alice".to_string()]);
    let data_dir = std::path::Path::new(&ca).parent().unwrap().to_owned();
    assert!(data_dir.exists());
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    assert!(child.wait().unwrap().success());
    assert!(
        !data_dir.exists(),
        "the throwaway data dir outlived the dev server"
    );
}

#[test]
fn request_waits_for_approval_and_approvers_decide_from_the_command_line() {
    let s = setup("", None);
    let dir = &s.dir;
    let (ops, ops_table) = token("ops1");
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!(
        "\n{ops_table}\n[policy.root]\nca = \"users\"\nrequesters = [\"ci\"]\n\
         valid_principals = [\"root\"]\napproval = {{ approvers = [\"token:ops*\"] }}\n"
    ));
    std::fs::write(&s.config, config).unwrap();
    let svc = Service::start(&s.dir, &s.config);
    std::fs::write(dir.join("ci.token"), format!("{}\n", s.ci)).unwrap();
    std::fs::write(dir.join("ops.token"), format!("{ops}\n")).unwrap();
    let as_who = |c: &mut Command, who: &str| {
        c.arg("--server")
            .arg(&svc.url)
            .arg("--server-ca")
            .arg(&s.pki.tls_ca)
            .arg("--token-file")
            .arg(dir.join(who))
            .env_remove("SSHCA_TOKEN");
    };
    let request = |key: &std::path::Path, wait: bool| {
        let mut c = sshca();
        c.args(["request", "--policy", "root"]);
        if wait {
            c.arg("--wait");
        }
        as_who(&mut c, "ci.token");
        c.arg(key.with_extension("pub"));
        c
    };
    let approvals = |args: &[&str]| {
        let mut c = sshca();
        c.arg("approvals").args(args);
        as_who(&mut c, "ops.token");
        c.output().unwrap()
    };

    // Without --wait: the id on stdout, "pending" on stderr, exit 3.
    let key = keygen(dir, "id_root", "ed25519", None);
    let out = request(&key, false).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let first = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(first.len(), 32, "{first}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pending"));
    assert!(!cert_of(&key.with_extension("pub")).exists());

    // With --wait: the certificate is written once an approver approves.
    let waiting = request(&key, true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let second = loop {
        let out = approvals(&["list"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().find(|l| !l.starts_with(&first)) {
            assert!(line.contains("policy=root") && line.contains("requester=token:ci"));
            break line.split_whitespace().next().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = approvals(&["approve", &second]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate serial"));
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let cert = cert_of(&key.with_extension("pub"));
    let listed =
        String::from_utf8(run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert)).stdout)
            .unwrap();
    assert!(listed.contains("root"), "{listed}");

    // Denied: the waiting request fails with the approver's reason.
    let key2 = keygen(dir, "id_root2", "ed25519", None);
    let waiting = request(&key2, true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let third = loop {
        let text = String::from_utf8_lossy(&approvals(&["list"]).stdout).into_owned();
        if let Some(line) = text.lines().find(|l| !l.starts_with(&first)) {
            break line.split_whitespace().next().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = approvals(&["deny", &third, "--reason", "outside the change window"]);
    assert!(out.status.success(), "{out:?}");
    let out = waiting.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("denied") && err.contains("outside the change window"),
        "{err}"
    );
    assert!(!cert_of(&key2.with_extension("pub")).exists());
    // Deciding again is refused with the service's answer.
    let out = approvals(&["approve", &third]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409 approval_decided"));
}
