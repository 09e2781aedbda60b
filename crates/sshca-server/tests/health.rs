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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_for_admins_or_nobody() {
    let s = setup("metrics = \"admins\"", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    assert_eq!(get(&c, &svc, "/metrics", None).await.0, 401);
    assert_eq!(get(&c, &svc, "/metrics", Some(&s.ci)).await.0, 403);
    let (st, m) = get(&c, &svc, "/metrics", Some(&s.admin)).await;
    assert_eq!(st, 200);
    assert!(m.contains("sshca_sign_duration_seconds"), "{m}");
    svc.stop().await;

    let s = setup("metrics = \"off\"", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    assert_eq!(get(&c, &svc, "/metrics", Some(&s.admin)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_unavailable_without_the_store_error() {
    let pg = sshca_testkit::pg::PgCluster::start();
    let url = pg.database("sshca");
    let s = setup(&format!("store = \"{url}\""), "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    assert_eq!(get(&c, &svc, "/healthz", None).await.0, 200);
    // The database stops: 503, and nothing of the store's error (host,
    // port, user, the driver's words) reaches whoever asks.
    pg.stop();
    let (st, v) = get_json(&c, &svc, "/healthz", None).await;
    assert_eq!(st, 503);
    assert_eq!(v, json!({"status": "unavailable", "store": "unavailable"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup("", "");
    // An empty file is a new SQLite database; this one is world-readable.
    std::fs::write(s.db(), b"").unwrap();
    std::fs::set_permissions(s.db(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    assert_eq!(get(&c, &svc, "/healthz", None).await.0, 200);
    let shown = s.db().display().to_string();
    assert!(
        log_text()
            .lines()
            .any(|l| l.contains("readable or writable by other users") && l.contains(&shown)),
        "no warning about {shown}"
    );
}
