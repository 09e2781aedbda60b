//! Authentication under attack: a flood of wrong credentials costs the
//! service a counter, not a row each; the budget is per client address
//! (forwarding headers believed only from trusted proxies); oversized
//! credentials are not read; what is stored or logged is capped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::*;

/// POST /v1/sign/ci with a bearer token and extra headers: (status,
/// Retry-After).
async fn attempt(
    c: &reqwest::Client,
    svc: &Service,
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>) {
    let mut r = c
        .post(format!("{}/v1/sign/ci", svc.url))
        .bearer_auth(token)
        .json(&json!({"public_key": "ssh-ed25519 AAAA"}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_cheap_and_limited_per_address() {
    let s = setup("unauthenticated_limit = \"5/min\"", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    for _ in 0..5 {
        assert_eq!(attempt(&c, &svc, "sshca_wrong", &[]).await.0, 401);
    }
    // The address has spent its budget: 429 before any credential is read,
    // a good one included. Forwarding headers from an untrusted peer
    // change nothing.
    let (st, retry) = attempt(&c, &svc, "sshca_wrong", &[]).await;
    assert_eq!(st, 429);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(attempt(&c, &svc, &s.ci, &[]).await.0, 429);
    let (st, _) = attempt(
        &c,
        &svc,
        "sshca_wrong",
        &[("x-forwarded-for", "203.0.113.50")],
    )
    .await;
    assert_eq!(st, 429);
    for _ in 0..20 {
        attempt(&c, &svc, "sshca_wrong", &[]).await;
    }
    let m = get(&c, &svc, "/metrics", None).await.1;
    assert!(
        m.contains(r#"sshca_unauthenticated_total{code="unauthenticated"} 5"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sshca_unauthenticated_total{code="rate_limited"} 23"#),
        "{m}"
    );
    svc.stop().await;
    // 28 refusals, sampled: one audit row per address and minute (two when
    // the run straddles a minute).
    let rows = audit_rows(&s, |rows| !rows.is_empty()).await;
    let refusals = rows
        .iter()
        .filter(|r| r.status == 401 || r.status == 429)
        .count();
    assert!((1..=2).contains(&refusals), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_only_from_trusted_proxies() {
    let s = setup(
        "unauthenticated_limit = \"3/min\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
        "",
    );
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let a = [("x-forwarded-for", "203.0.113.1")];
    let b = [("x-forwarded-for", "198.51.100.9, 203.0.113.2")];
    for _ in 0..3 {
        assert_eq!(attempt(&c, &svc, "sshca_wrong", &a).await.0, 401);
    }
    assert_eq!(attempt(&c, &svc, "sshca_wrong", &a).await.0, 429);
    // Another client behind the same proxy has its own budget (its own
    // claim, 198.51.100.9, is not what counts).
    assert_eq!(attempt(&c, &svc, "sshca_wrong", &b).await.0, 401);
    let (st, _) = attempt(&c, &svc, &s.ci, &[("forwarded", "for=203.0.113.2")]).await;
    assert_eq!(st, 400, "a good token from another address is served");
    // IPv6 clients share their /64.
    let v6 = |last: &'static str| [("forwarded", last)];
    for _ in 0..3 {
        attempt(&c, &svc, "sshca_wrong", &v6("for=\"[2001:db8:1:2::a]\"")).await;
    }
    assert_eq!(
        attempt(
            &c,
            &svc,
            "sshca_wrong",
            &v6("for=\"[2001:db8:1:2::b]:443\"")
        )
        .await
        .0,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_credentials_and_values_are_not_kept_whole() {
    let s = setup(
        "",
        "[oidc.ci]\nissuer = \"https://ci.example\"\naudience = \"sshca\"\njwks = \"jwks.json\"\n",
    );
    // One P-256 key (the issuer's); the tokens below never verify anyway.
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let point = rcgen::KeyPair::generate()
        .unwrap()
        .public_key_raw()
        .to_vec();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "use": "sig",
        "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..])}]});
    std::fs::write(s.dir.join("jwks.json"), jwks.to_string()).unwrap();
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    // A JWT-shaped token with a 6 KB issuer: refused, and the reason that
    // quotes it is capped where it is logged and stored.
    let jwt = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "ES256", "kid": "k"}).to_string().as_bytes()),
        b64(json!({"iss": "i".repeat(6000)}).to_string().as_bytes())
    );
    let r = c
        .get(format!("{}/v1/policies", svc.url))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Over 8 KiB: 401 token_malformed, not parsed.
    let huge = format!("sshca_{}", "a".repeat(9000));
    let r = c
        .get(format!("{}/v1/policies", svc.url))
        .bearer_auth(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(code(&v), "token_malformed", "{v}");
    svc.stop().await;
    let rows = audit_rows(&s, |rows| rows.iter().any(|r| r.reason.ends_with("…[cut]"))).await;
    // The first refusal from this address was audited (the JWT's), cut.
    assert!(
        rows.iter().any(|r| r.reason.ends_with("…[cut]")),
        "{rows:?}"
    );
    for r in &rows {
        assert!(
            r.reason.len() <= 256,
            "{} bytes: {}",
            r.reason.len(),
            r.reason
        );
    }
    let log = log_text();
    for line in log.lines().filter(|l| l.contains("\"status\":401")) {
        assert!(line.len() < 2000, "a log line of {} bytes", line.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_metrics_scrapes_do_not_spend_the_budget() {
    let s = setup("unauthenticated_limit = \"3/min\"", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    for _ in 0..10 {
        assert_eq!(get(&c, &svc, "/metrics", None).await.0, 200);
    }
    assert_eq!(attempt(&c, &svc, "sshca_wrong", &[]).await.0, 401);
}
