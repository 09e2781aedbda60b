//! `GET /v1/ca/{name}`: the CA's trust bundle in each format, without
//! credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_bundle_in_every_format() {
    let s = setup("", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let ca_line = s.ca_line();
    let blob = ca_line.split_whitespace().nth(1).unwrap();
    let (st, bundle) = get(&c, &svc, "/v1/ca/users", None).await;
    assert_eq!(st, 200);
    assert_eq!(bundle.split_whitespace().nth(1), Some(blob));
    assert!(bundle.contains("sshca CA users (current)"), "{bundle}");
    assert_eq!(bundle.lines().count(), 1);
    let (st, kh) = get(
        &c,
        &svc,
        "/v1/ca/users?format=known-hosts&pattern=*.example.com",
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        kh.starts_with(&format!(
            "@cert-authority *.example.com ssh-ed25519 {blob} "
        )),
        "{kh}"
    );
    let (st, ak) = get(&c, &svc, "/v1/ca/users?format=authorized-keys", None).await;
    assert_eq!(st, 200);
    assert!(
        ak.starts_with(&format!("cert-authority ssh-ed25519 {blob} ")),
        "{ak}"
    );
    for bad in [
        "/v1/ca/users?format=pem",
        "/v1/ca/users?format=known-hosts&pattern=a%20b",
        "/v1/ca/users?colour=red",
        "/v1/ca/users?format=authorized-keys&format=known-hosts",
    ] {
        assert_eq!(get(&c, &svc, bad, None).await.0, 400, "{bad}");
    }
    assert_eq!(get(&c, &svc, "/v1/ca/nope", None).await.0, 404);
}
