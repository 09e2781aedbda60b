//! The shared conformance suite against the `demo:` backend, as every
//! in-tree backend runs it.

use sshca_core::SigAlg;
use sshca_signer::{conformance, ErrorKind, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_backend_passes_the_suite() {
    let mut r = Registry::new();
    sshca_demo_backend::register(&mut r);
    let signer = r.open("demo:alice").await.unwrap();
    conformance::run_all(signer, &[SigAlg::Ed25519]).await;

    // An unknown key is NotFound; the registry checks `pin=`.
    conformance::assert_not_found(r.open("demo:missing").await);
    let e = r
        .open("demo:alice?pin=SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse, "{e}");
    assert!(e.to_string().contains("pins"), "{e}");
}
