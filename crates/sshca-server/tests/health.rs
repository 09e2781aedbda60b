//! `GET /healthz` and `GET /metrics`: the store's health, and the
//! counters of requests, signatures, backend calls and store writes (with
//! no name a client chose).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let s = setup("", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_a");
    let (st, v) = get_json(&c, &svc, "/healthz", None).await;
    assert_eq!((st, v), (200, json!({"status": "ok", "store": "ok"})));
    for _ in 0..2 {
        let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, _, _) = sign(
        &c,
        &svc,
        "ci",
        Some(&s.ci),
        &json!({"public_key": key, "principals": ["mallory"]}),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _, _) = sign(&c, &svc, "nope", Some(&s.ci), &json!({"public_key": key})).await;
    assert_eq!(st, 404);
    let r = c.get(format!("{}/metrics", svc.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = r.text().await.unwrap();
    assert!(
        m.contains(r#"sshca_requests_total{policy="ci",outcome="ok"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sshca_requests_total{policy="ci",outcome="policy_refused"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sshca_requests_total{policy="-",outcome="not_found"} 1"#),
        "{m}"
    );
    assert!(m.contains("sshca_sign_duration_seconds_count 2"), "{m}");
    assert!(
        m.contains("sshca_store_write_duration_seconds_count 2"),
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
}
