//! `POST /v1/sign/{policy}` and `GET /v1/policies`: requesters with bearer
//! tokens and client certificates, and every status code a sign request
//! can get (401, 403, 404, 400, 413, 422, 429, 503), each refusal audited
//! and logged without the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::{json, Value};
use support::*;

/// A DSA public key: no certificate may hold one.
const DSA_KEY: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBANP0yHTZmWsnW2PnWXHb3qVdA23w9eJOu0amZFx1gQH8fEkoA+5dFOC0RsX5x5W+qL6T6g7/JqH1J9LgIZoLjFYl5wFWoqXt5+jMoYkhv41Lv4E2rrcLpd6S8DYDBY0YjxbuKcREeaOH+DsjDCuzG+HtUf50VHn0eRAFnGZEqSJNAAAAFQCEGO7Mi0xY2FA7kFEkUr6avcZ1TQAAAIBNfMxzCWve6izydpPfK4aXi69oDRUv9vAuq57kR0n3uv1rWe2AmTB0fItx2b1TB62g34yWSi624VPmgF1P69aKrlCdd1g2itk2kgdGL3tWwu4h4+1u7RaUC4/vHeRG0dn7iZSyalK17FX2j2U1lJIdAeMtSuGZ16J/GNeHVlMY2AAAAIEAx+guqarfSBGj6Bq5F/ThKzSU4gMxyDOoqre8/9A1994icC86pz832YXUb+5+dUsHt38QsSM3jSZQ4RVlo2sCzrryh60anMyfBbIzaQCmNviCg/I+pKyGh3SS1IB8HFjf8HMLD+1I1i56dn6b3+MvFo6bGsgDeGgpx6Dj8OTm36k=";

/// A request body sent in chunks, with no declared length.
fn chunked(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(c)).await.is_err() {
                break;
            }
        }
    });
    reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_and_every_status_code() {
    let s = setup("", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_a");

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
    assert!(resp.headers().contains_key("x-request-id"));

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
    let cert = sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.principals(), ["alice".to_string()]);
    assert_eq!(cert.key_id(), "ci");
    assert_eq!(v["serial"].as_str().unwrap(), cert.serial().to_string());
    assert_eq!(v["valid_before"].as_u64().unwrap(), cert.valid_before());
    assert!(cert.valid_before() - cert.valid_after() <= 3600 + 300);
    let ca_key = sshca_core::PublicKey::from_openssh(&s.ca_line()).unwrap();
    assert_eq!(
        cert.signing_ca_fingerprint(),
        ca_key.fingerprint(sshca_core::HashAlg::Sha256)
    );
    // ssh-keygen reads what the service issued.
    let cert_file = s.dir.join("id_a-cert.pub");
    std::fs::write(
        &cert_file,
        format!("{}\n", v["certificate"].as_str().unwrap()),
    )
    .unwrap();
    let listed = run(std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert_file));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Key ID: \"ci\""));

    // 200 with a client certificate: its DNS SAN is the identity.
    let deploy = s.client(Some("deploy.pem"));
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
    let rogue = s.client(Some("rogue.pem"));
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
    assert!(message(&v).contains("`token:other`"), "{v}");
    let cn = s.client(Some("cn-only.pem"));
    let (st, v, _) = sign(&cn, &svc, "ci", None, &json!({"public_key": key})).await;
    assert_eq!(st, 403, "{v}");
    assert!(message(&v).contains("cn-only"), "{v}");

    // 404: an unknown policy, an unknown endpoint.
    let (st, v, _) = sign(&c, &svc, "nope", Some(&s.ci), &json!({"public_key": key})).await;
    assert_eq!((st, code(&v)), (404, "not_found"));
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
    let resp = c
        .post(format!("{}/v1/sign/ci", svc.url))
        .bearer_auth(&s.ci)
        .body(chunked(vec![vec![b' '; 3000], vec![b' '; 3000]]))
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
    for body in [
        json!({"public_key": key, "validity": "+30d"}),
        json!({"public_key": key, "cert_type": "host"}),
        json!({"public_key": key, "principals": ["ali\nce"]}),
    ] {
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &body).await;
        assert_eq!((st, code(&v)), (422, "policy_refused"), "{body}: {v}");
    }

    // 503 with Retry-After when the store cannot be written; nothing issued.
    let mut lock = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite:{}",
        s.db().display()
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
    svc.stop().await;

    // The store: three certificates; the refusals audited with who and why.
    let store = store(&s).await;
    let rows = store
        .certs(&sshca_store::CertQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r.requester == "deploy.example.com" && r.principals == ["deploy"]));
    let audit = audit_rows(&s, |rows| rows.iter().any(|e| e.status == 503)).await;
    let find = |status: u16, c: &str| audit.iter().any(|e| e.status == status && e.code == c);
    assert!(
        find(401, "unauthenticated") && find(403, "forbidden") && find(413, "payload_too_large"),
        "{audit:?}"
    );
    assert!(
        find(422, "policy_refused") && find(503, "store_unavailable") && find(400, "bad_request")
    );
    assert!(audit.iter().any(|e| e.identity.as_deref() == Some("other")
        && e.auth_source.as_deref() == Some("token")
        && e.policy.as_deref() == Some("ci")));
    // No token in the log; each request's line says who, what and how.
    let log = log_text();
    for t in [&s.ci, &s.admin, &s.other] {
        assert!(!log.contains(t.as_str()), "a token reached the log");
    }
    let line: Value = serde_json::from_str(
        log.lines()
            .find(|l| l.contains("\"status\":200") && l.contains("\"route\":\"sign\""))
            .unwrap(),
    )
    .unwrap();
    for field in [
        "request_id",
        "identity",
        "source",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_lists_what_the_requester_may_use() {
    let s = setup(
        "",
        "[policy.other]\nca = \"users\"\nrequesters = [\"other\"]\n",
    );
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let (st, v) = get_json(&c, &svc, "/v1/policies", Some(&s.ci)).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci"]);
    assert_eq!(v["policies"][0]["ca"], "users");
    let (_, v) = get_json(&c, &svc, "/v1/policies", Some(&s.other)).await;
    assert_eq!(v["policies"][0]["name"], "other");
    assert_eq!(v["policies"].as_array().unwrap().len(), 1);
    assert_eq!(get(&c, &svc, "/v1/policies", None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let s = setup(r#"rate_limit = "3/min""#, "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_a");
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
}

/// Where a policy is silent, a requester cannot shed its default
/// restrictions, pick the key id, or ask for more than its defaults; on
/// the native and the Vault-compatible path alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_defaults_where_a_policy_is_silent() {
    let s = setup(
        "vault_mount = \"ssh\"",
        r#"[policy.locked]
ca = "users"
requesters = ["ci"]
allowed_valid_principals = ["deploy"]
default_valid_principals = ["deploy"]
default_critical_options = { "force-command" = "/usr/bin/true", "source-address" = "10.0.0.0/8" }
default_extensions = { "permit-pty" = "" }
"#,
    );
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_a");
    // `{}` is the defaults, as no field is.
    let (st, v, _) = sign(
        &c,
        &svc,
        "locked",
        Some(&s.ci),
        &json!({"public_key": key, "critical_options": {}, "extensions": {}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let cert = sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    let crit: Vec<&String> = cert.critical_options().keys().collect();
    assert_eq!(crit, ["force-command", "source-address"]);
    assert_eq!(cert.extensions().keys().collect::<Vec<_>>(), ["permit-pty"]);
    assert_eq!(cert.key_id(), format!("ci-{}", cert.serial()));
    for (body, needle) in [
        (
            json!({"public_key": key, "key_id": "ops-admin@corp"}),
            "key id",
        ),
        (
            json!({"public_key": key, "extensions": {"no-touch-required": "", "permit-pty": ""}}),
            "no-touch-required",
        ),
        (
            json!({"public_key": key, "critical_options": {"source-address": "0.0.0.0/0"}}),
            "source-address",
        ),
    ] {
        let (st, v, _) = sign(&c, &svc, "locked", Some(&s.ci), &body).await;
        assert_eq!((st, code(&v)), (422, "policy_refused"), "{body}: {v}");
        assert!(message(&v).contains(needle), "{body}: {v}");
    }
    // The Vault path: the same policy decides.
    let r = c
        .post(format!("{}/v1/ssh/sign/locked", svc.url))
        .header("x-vault-token", &s.ci)
        .json(&json!({"public_key": key, "critical_options": {}, "key_id": "ops-admin@corp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let r = c
        .post(format!("{}/v1/ssh/sign/locked", svc.url))
        .header("x-vault-token", &s.ci)
        .json(&json!({"public_key": key, "critical_options": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let cert =
        sshca_core::Certificate::from_openssh(v["data"]["signed_key"].as_str().unwrap().trim())
            .unwrap();
    assert!(cert.critical_options().contains_key("source-address"));
    // The service said at start which policies the safer defaults changed.
    let log = log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("policy defaults changed") && l.contains("\"policy\":\"locked\"")),
        "{log}"
    );
}
