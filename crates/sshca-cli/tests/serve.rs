//! `sshca serve` for real: the binary listening on 127.0.0.1 (OS-chosen
//! port) over TLS, requesters with bearer tokens and client certificates,
//! every status code of the API, a certificate that sshd accepts, 1000
//! requests at 32 concurrent, `kill -9` under load, a locked store, a slow
//! or failing KMS (the emulator) and SIGTERM with requests in flight.
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

/// A DSA public key: no certificate may hold one.
const DSA_KEY: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBANP0yHTZmWsnW2PnWXHb3qVdA23w9eJOu0amZFx1gQH8fEkoA+5dFOC0RsX5x5W+qL6T6g7/JqH1J9LgIZoLjFYl5wFWoqXt5+jMoYkhv41Lv4E2rrcLpd6S8DYDBY0YjxbuKcREeaOH+DsjDCuzG+HtUf50VHn0eRAFnGZEqSJNAAAAFQCEGO7Mi0xY2FA7kFEkUr6avcZ1TQAAAIBNfMxzCWve6izydpPfK4aXi69oDRUv9vAuq57kR0n3uv1rWe2AmTB0fItx2b1TB62g34yWSi624VPmgF1P69aKrlCdd1g2itk2kgdGL3tWwu4h4+1u7RaUC4/vHeRG0dn7iZSyalK17FX2j2U1lJIdAeMtSuGZ16J/GNeHVlMY2AAAAIEAx+guqarfSBGj6Bq5F/ThKzSU4gMxyDOoqre8/9A1994icC86pz832YXUb+5+dUsHt38QsSM3jSZQ4RVlo2sCzrryh60anMyfBbIzaQCmNviCg/I+pKyGh3SS1IB8HFjf8HMLD+1I1i56dn6b3+MvFo6bGsgDeGgpx6Dj8OTm36k=";

#[test]
fn identities_and_every_status_code() {
    let s = setup("", None);
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");
    rt.block_on(async {
        // 401: no credential, a wrong token, a wrong scheme.
        let (st, v, _) = sign(&c, &svc, "ci", None, &json!({"public_key": key})).await;
        assert_eq!((st, code(&v)), (401, "unauthenticated"), "{v}");
        let (st, _, _) = sign(
            &c,
            &svc,
            "ci",
            Some("sshca_wrong"),
            &json!({"public_key": key}),
        )
        .await;
        assert_eq!(st, 401);
        let resp = c
            .post(format!("{}/v1/sign/ci", svc.url))
            .header("authorization", format!("Basic {}", s.ci))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);

        // 200 with a token.
        let (st, v, _) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "principals": ["alice"]}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let cert =
            sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
        assert_eq!(cert.principals(), ["alice".to_string()]);
        assert_eq!(cert.key_id(), "ci");
        assert_eq!(v["serial"].as_str().unwrap(), cert.serial().to_string());
        assert_eq!(v["valid_before"].as_u64().unwrap(), cert.valid_before());
        assert!(cert.valid_before() - cert.valid_after() <= 3600 + 300);
        let ca_line = String::from_utf8(
            run(sshca()
                .arg("pubkey")
                .arg(format!("file:{}", s.user_ca.display())))
            .stdout,
        )
        .unwrap();
        let ca_key = sshca_core::PublicKey::from_openssh(ca_line.trim()).unwrap();
        assert_eq!(
            cert.signing_ca_fingerprint(),
            ca_key.fingerprint(sshca_core::HashAlg::Sha256)
        );

        // 200 with a client certificate: its DNS SAN is the identity.
        let deploy = client(&s.pki, Some(&s.dir.join("deploy.pem")));
        let (st, v, _) = sign(&deploy, &svc, "ci", None, &json!({"public_key": key})).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["key_id"], "deploy.example.com");
        assert_eq!(v["principals"], json!(["deploy"]));
        // A token on a client-certificate connection wins; a bad one is refused.
        let (st, v, _) = sign(
            &deploy,
            &svc,
            "ci",
            Some("sshca_bad"),
            &json!({"public_key": key}),
        )
        .await;
        assert_eq!(st, 401, "{v}");
        // A certificate from a CA the server does not trust: no TLS session.
        let rogue = client(&s.pki, Some(&s.dir.join("rogue.pem")));
        let r = rogue
            .post(format!("{}/v1/sign/ci", svc.url))
            .json(&json!({"public_key": key}))
            .send()
            .await;
        assert!(
            r.is_err(),
            "a client certificate from an unknown CA got an answer"
        );

        // 403: an identity the policy does not name (token and CN).
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.other), &json!({"public_key": key})).await;
        assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
        assert!(message(&v).contains("`other`"), "{v}");
        let cn = client(&s.pki, Some(&s.dir.join("cn-only.pem")));
        let (st, v, _) = sign(&cn, &svc, "ci", None, &json!({"public_key": key})).await;
        assert_eq!(st, 403, "{v}");
        assert!(message(&v).contains("cn-only"), "{v}");

        // 404: an unknown policy, an unknown CA, an unknown endpoint.
        let (st, v, _) = sign(&c, &svc, "nope", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!((st, code(&v)), (404, "not_found"));
        assert_eq!(get(&c, &svc, "/v1/ca/nope", None).await.0, 404);
        assert_eq!(get(&c, &svc, "/v2/whatever", None).await.0, 404);

        // 400: the field is named.
        for (body, needle) in [
            (json!({"principals": ["alice"]}), "public_key"),
            (json!({"public_key": "ssh-ed25519 AAAA"}), "public_key"),
            (json!({"public_key": key, "validity": "+1x"}), "validity"),
            (
                json!({"public_key": key, "principals": "alice"}),
                "principals",
            ),
            (
                json!({"public_key": key, "cert_type": "robot"}),
                "cert_type",
            ),
            (json!({"public_key": key, "shoe_size": 42}), "shoe_size"),
            (json!({"public_key": DSA_KEY}), "ssh-dss"),
        ] {
            let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &body).await;
            assert_eq!((st, code(&v)), (400, "bad_request"), "{body}: {v}");
            assert!(message(&v).contains(needle), "{body}: {v}");
        }
        let resp = c
            .post(format!("{}/v1/sign/ci", svc.url))
            .bearer_auth(&s.ci)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);

        // 413: over max_body (4096), declared or not.
        let big = json!({"public_key": key, "key_id": "x".repeat(5000)});
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &big).await;
        assert_eq!((st, code(&v)), (413, "payload_too_large"), "{v}");
        let stream = futures_stream(vec![vec![b' '; 3000], vec![b' '; 3000]]);
        let resp = c
            .post(format!("{}/v1/sign/ci", svc.url))
            .bearer_auth(&s.ci)
            .body(stream)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413);

        // 422: the policy refuses, naming what.
        let (st, v, _) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "principals": ["mallory"]}),
        )
        .await;
        assert_eq!((st, code(&v)), (422, "policy_refused"), "{v}");
        assert!(message(&v).contains("mallory"), "{v}");
        let (st, v, _) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "validity": "+30d"}),
        )
        .await;
        assert_eq!(st, 422, "{v}");
        let (st, v, _) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "cert_type": "host"}),
        )
        .await;
        assert_eq!(st, 422, "{v}");
        let (st, v, _) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "principals": ["ali\nce"]}),
        )
        .await;
        assert_eq!(st, 422, "{v}");

        // The CA line, without credentials; the policies the caller may use.
        let (st, line) = get(&c, &svc, "/v1/ca/users", None).await;
        assert_eq!(st, 200);
        assert_eq!(
            line.split_whitespace().nth(1),
            ca_line.split_whitespace().nth(1)
        );
        let (st, text) = get(&c, &svc, "/v1/policies", Some(&s.ci)).await;
        assert_eq!(st, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["policies"][0]["name"], "ci");
        let (_, text) = get(&c, &svc, "/v1/policies", Some(&s.other)).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["policies"],
            json!([])
        );
        assert_eq!(get(&c, &svc, "/v1/policies", None).await.0, 401);

        // Listing: one's own, or everything for an admin.
        let (st, text) = get(&c, &svc, "/v1/certs", Some(&s.ci)).await;
        assert_eq!(st, 200);
        let mine: Value = serde_json::from_str(&text).unwrap();
        let mine = mine["certs"].as_array().unwrap();
        assert_eq!(mine.len(), 1);
        assert!(mine.iter().all(|r| r["requester"] == "ci"));
        let serial = mine[0]["serial"].as_u64().unwrap();
        assert_eq!(
            get(
                &c,
                &svc,
                "/v1/certs?requester=deploy.example.com",
                Some(&s.ci)
            )
            .await
            .0,
            403
        );
        let (_, text) = get(&c, &svc, "/v1/certs", Some(&s.admin)).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["certs"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let (_, text) = get(&c, &svc, "/v1/certs?principal=alice", Some(&s.admin)).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["certs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let (st, text) = get(&c, &svc, &format!("/v1/certs/{serial}"), Some(&s.admin)).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(
            get(&c, &svc, &format!("/v1/certs/{serial}"), Some(&s.other))
                .await
                .0,
            404
        );
        assert_eq!(
            get(&c, &svc, "/v1/certs/twelve", Some(&s.admin)).await.0,
            400
        );
        assert_eq!(
            get(&c, &svc, "/v1/certs?limit=many", Some(&s.admin))
                .await
                .0,
            400
        );

        // Health and metrics.
        assert_eq!(get(&c, &svc, "/healthz", None).await.0, 200);
        let (_, m) = get(&c, &svc, "/metrics", None).await;
        assert!(
            m.contains(r#"sshca_requests_total{policy="ci",outcome="ok"} 2"#),
            "{m}"
        );
        assert!(
            m.contains(r#"sshca_requests_total{policy="ci",outcome="policy_refused"} 4"#),
            "{m}"
        );
        assert!(m.contains("sshca_sign_duration_seconds_count 2"), "{m}");
        assert!(
            m.contains("sshca_store_write_duration_seconds_count"),
            "{m}"
        );
        assert!(
            m.contains(r#"sshca_backend_calls_total{ca="users",outcome="ok"} 2"#),
            "{m}"
        );
        assert!(
            !m.contains("nope"),
            "a client-chosen name reached the metrics"
        );

        // 503 with Retry-After when the store cannot be written; nothing issued.
        let db = s.dir.join("data/sshca.db");
        let mut lock = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite:{}",
            db.display()
        ))
        .await
        .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .unwrap();
        let (st, v, retry) = sign(
            &c,
            &svc,
            "ci",
            Some(&s.ci),
            &json!({"public_key": key, "key_id": "locked"}),
        )
        .await;
        assert_eq!((st, code(&v)), (503, "store_unavailable"), "{v}");
        assert!(retry.is_some());
        assert!(v.get("certificate").is_none());
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        drop(lock);
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!(st, 200, "the store did not recover: {v}");
    });

    // The store, read directly: three certificates, the refusals audited
    // with who and why; no token in the log.
    let rows = store_rows(&s.config, &[]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let row = &store_rows(&s.config, &["--requester", "deploy.example.com"])[0];
    assert_eq!(row["policy"], "ci");
    assert_eq!(row["principals"], json!(["deploy"]));
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
    let find = |status: u64, c: &str| {
        audit
            .iter()
            .any(|e| e["status"] == status && e["code"] == c)
    };
    assert!(
        find(401, "unauthenticated") && find(403, "forbidden") && find(413, "payload_too_large"),
        "{audit:?}"
    );
    assert!(
        find(422, "policy_refused") && find(503, "store_unavailable") && find(400, "bad_request")
    );
    assert!(audit
        .iter()
        .any(|e| e["identity"] == "other" && e["auth_source"] == "token" && e["policy"] == "ci"));
    let log = svc.log();
    for t in [&s.ci, &s.admin, &s.other] {
        assert!(!log.contains(t.as_str()), "a token reached the log");
    }
    let line: Value =
        serde_json::from_str(log.lines().find(|l| l.contains("\"status\":200")).unwrap()).unwrap();
    for field in [
        "request_id",
        "identity",
        "policy",
        "outcome",
        "serial",
        "duration_ms",
    ] {
        assert!(
            line.get(field).is_some(),
            "log line without {field}: {line}"
        );
    }
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(c)).await.is_err() {
                break;
            }
        }
    });
    reqwest::Body::wrap_stream(tokio_stream_from(rx))
}

/// A `Stream` over a channel (without another dependency).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let s = setup(r#"rate_limit = "3/min""#, None);
    let svc = Service::start(&s.dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(&s.dir, "id_a");
    rt.block_on(async {
        for _ in 0..3 {
            let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
            assert_eq!(st, 200, "{v}");
        }
        let (st, v, retry) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
        let wait: u64 = retry.unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        // Another identity has its own bucket.
        let (st, _, _) = sign(&c, &svc, "ci", Some(&s.admin), &json!({"public_key": key})).await;
        assert_eq!(st, 200);
    });
}

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
