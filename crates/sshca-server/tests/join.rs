//! `GET`/`POST /v1/join/{name}`: host certificates for every key a host
//! sends on a join token (exactly the token's principals, key ids from the
//! join's claims), and the refusals: an unknown, used or expired token, a
//! key or principal the policy refuses (the token is not spent, nothing is
//! issued); two replicas racing one single-use token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::{json, Value};
use sshca_store::{CertQuery, JoinRefusal, JoinToken};
use support::*;

const TABLES: &str = r#"
[policy.hosts]
ca = "users"
cert_type = "host"
allowed_valid_principals = ["*.example.com"]
key_id = "{claims.join}-{claims.token_id}"
min_rsa_bits = 3072

[join.fleet]
method = "token"
policy = "hosts"
"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn add_token(s: &Setup, principals: &[&str], expires_at: u64, uses: u64) -> String {
    let (id, token) = sshca_server::new_join_token();
    store(s)
        .await
        .add_join_token(&JoinToken {
            id,
            join: "fleet".into(),
            token_hash: sshca_server::token_hash(&token),
            principals: principals.iter().map(|p| p.to_string()).collect(),
            expires_at,
            uses_left: uses,
            created_at: now(),
            created_by: "test".into(),
        })
        .await
        .unwrap();
    token
}

async fn join(c: &reqwest::Client, svc: &Service, keys: &[String], token: &str) -> (u16, Value) {
    let r = c
        .post(format!("{}/v1/join/fleet", svc.url))
        .json(&json!({"public_keys": keys, "proof": {"token": token}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_join_with_a_token() {
    let s = setup("", TABLES);
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let (st, v) = get_json(&c, &svc, "/v1/join/fleet", None).await;
    assert_eq!((st, v), (200, json!({"method": "token", "audience": null})));
    let (st, v) = get_json(&c, &svc, "/v1/join/nope", None).await;
    assert_eq!((st, code(&v)), (404, "not_found"));

    let ed = s.pubkey("host_ed");
    let ec = {
        let k = keygen(&s.dir, "host_ec", "ecdsa", None);
        std::fs::read_to_string(k.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let token = add_token(&s, &["web1.example.com", "web1"], now() + 600, 1).await;
    // `web1` is not allowed: 422, nothing issued, the token not spent.
    let (st, v) = join(&c, &svc, std::slice::from_ref(&ed), &token).await;
    assert_eq!((st, code(&v)), (422, "policy_refused"), "{v}");
    let hash = sshca_server::token_hash(&token);
    assert!(store(&s)
        .await
        .join_token("fleet", &hash, now())
        .await
        .unwrap()
        .is_ok());

    let token = add_token(&s, &["web1.example.com"], now() + 600, 1).await;
    // One key refused (RSA under min_rsa_bits): none issued.
    let small_rsa = {
        let k = keygen(&s.dir, "host_rsa", "rsa", Some("2048"));
        std::fs::read_to_string(k.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (st, v) = join(&c, &svc, &[ed.clone(), small_rsa], &token).await;
    assert_eq!((st, code(&v)), (422, "policy_refused"), "{v}");
    assert!(message(&v).contains("key 2"), "{v}");
    let all = CertQuery {
        limit: 1000,
        ..Default::default()
    };
    assert!(store(&s).await.certs(&all).await.unwrap().is_empty());

    // Two keys, two host certificates with exactly the token's principals.
    let (st, v) = join(&c, &svc, &[ed.clone(), ec.clone()], &token).await;
    assert_eq!(st, 200, "{v}");
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    for (line, key) in certs.iter().zip([&ed, &ec]) {
        let cert = sshca::core::Certificate::from_openssh(line.as_str().unwrap()).unwrap();
        assert_eq!(cert.cert_type(), sshca::core::CertType::Host);
        assert_eq!(cert.principals(), ["web1.example.com"]);
        let subject = sshca::core::PublicKey::from_openssh(key).unwrap();
        assert_eq!(cert.public_key(), subject.key_data());
        assert!(cert.key_id().starts_with("fleet-"), "{}", cert.key_id());
    }
    let rows = store(&s).await.certs(&all).await.unwrap();
    assert_eq!(rows.len(), 2);
    let id = token.split('_').nth(1).unwrap();
    for r in &rows {
        assert_eq!(r.requester_source.as_deref(), Some("join:fleet"));
        assert_eq!(r.requester, id);
        assert_eq!(r.key_id, format!("fleet-{id}"));
    }

    // Used, unknown, expired.
    let (st, v) = join(&c, &svc, std::slice::from_ref(&ed), &token).await;
    assert_eq!((st, code(&v)), (401, "join_token_used"), "{v}");
    let (st, v) = join(&c, &svc, std::slice::from_ref(&ed), "sshcaj_00000000_nope").await;
    assert_eq!((st, code(&v)), (401, "join_token_invalid"), "{v}");
    let old = add_token(&s, &["web2.example.com"], now() - 1, 1).await;
    let (st, v) = join(&c, &svc, std::slice::from_ref(&ed), &old).await;
    assert_eq!((st, code(&v)), (401, "join_token_expired"), "{v}");
    let (st, v) = join(&c, &svc, &[], &old).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
    // The token never reaches the log.
    assert!(!log_text().contains(&token));

    // Two replicas, one single-use token, at once: exactly one wins.
    let other = Service::start(&s.config).await;
    let race = add_token(&s, &["web3.example.com"], now() + 600, 1).await;
    let keys = [ed.clone()];
    let (a, b) = tokio::join!(join(&c, &svc, &keys, &race), join(&c, &other, &keys, &race));
    let mut codes = [a.0, b.0];
    codes.sort_unstable();
    assert_eq!(codes, [200, 401], "{a:?} {b:?}");
    let loser = if a.0 == 401 { &a.1 } else { &b.1 };
    assert_eq!(code(loser), "join_token_used");
    assert_eq!(
        store(&s)
            .await
            .join_token("fleet", &sshca_server::token_hash(&race), now())
            .await
            .unwrap(),
        Err(JoinRefusal::Used)
    );
}
