//! Wrapper behaviour: cache, retry, limit, verify-after-sign.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sshca_core::ssh_key::{rand_core::OsRng, Algorithm, PrivateKey};
use sshca_core::{KeyData, SigAlg, Signature};
use sshca_signer::{
    conformance, CachedSigner, Error, ErrorKind, KeySigner, KeyUri, LimitSigner, Result,
    RetryConfig, RetrySigner, SignerExt,
};

/// An in-memory Ed25519 signer that fails the first `fail_first` signs with
/// `fail_kind`, counts calls, and tracks concurrency.
#[derive(Debug)]
struct Fake {
    uri: KeyUri,
    key: PrivateKey,
    fail_first: usize,
    fail_kind: ErrorKind,
    sign_calls: AtomicUsize,
    pk_calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Fake {
    fn new(fail_first: usize, fail_kind: ErrorKind) -> Self {
        Self {
            uri: KeyUri::parse("fake:key").unwrap(),
            key: PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap(),
            fail_first,
            fail_kind,
            sign_calls: AtomicUsize::new(0),
            pk_calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl KeySigner for Fake {
    fn uri(&self) -> &KeyUri {
        &self.uri
    }
    async fn public_key(&self) -> Result<KeyData> {
        self.pk_calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.key.public_key().key_data().clone())
    }
    async fn sign(&self, _alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let n = self.sign_calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(Error::new(self.fail_kind, "injected failure"));
        }
        use signature::Signer;
        Ok(self.key.try_sign(message).unwrap())
    }
}

fn fast_retry(max_retries: u32) -> RetryConfig {
    RetryConfig {
        max_retries,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        request_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn retry_recovers_from_throttling() {
    let s = RetrySigner::new(Fake::new(3, ErrorKind::Throttled), fast_retry(4));
    s.sign(SigAlg::Ed25519, b"m").await.unwrap();
}

#[tokio::test]
async fn retry_gives_up_with_a_clear_error() {
    let fake = Arc::new(Fake::new(100, ErrorKind::Unavailable));
    let s = RetrySigner::new(fake.clone(), fast_retry(2));
    let e = s.sign(SigAlg::Ed25519, b"m").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.to_string().contains("after 3 attempts"), "{e}");
    assert_eq!(fake.sign_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let fake = Arc::new(Fake::new(100, ErrorKind::PermissionDenied));
    let s = RetrySigner::new(fake.clone(), fast_retry(5));
    let e = s.sign(SigAlg::Ed25519, b"m").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(fake.sign_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn backoff_is_bounded_and_jittered() {
    let c = RetryConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..RetryConfig::default()
    };
    let samples: Vec<Duration> = (0..200).map(|_| c.backoff(10)).collect();
    assert!(samples.iter().all(|d| *d <= Duration::from_millis(400)));
    let distinct: std::collections::HashSet<_> = samples.iter().collect();
    assert!(distinct.len() > 50, "backoff is not jittered");
    assert!(c.backoff(0) <= Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_caps_concurrency() {
    let fake = Arc::new(Fake::new(0, ErrorKind::Throttled));
    let s: Arc<dyn KeySigner> = Arc::new(LimitSigner::new(fake.clone(), 3));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let s = s.clone();
        set.spawn(async move { s.sign(SigAlg::Ed25519, b"m").await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_signer_fetches_the_key_once_and_passes_the_suite() {
    let fake = Arc::new(Fake::new(0, ErrorKind::Throttled));
    let cached = CachedSigner::new(fake.clone()).await.unwrap();
    let calls_after_build = fake.pk_calls.load(Ordering::SeqCst);
    let s: Arc<dyn KeySigner> = Arc::new(cached);
    conformance::run_all(s.clone(), &[SigAlg::Ed25519]).await;
    assert_eq!(fake.pk_calls.load(Ordering::SeqCst), calls_after_build);
    assert!(calls_after_build <= 2);
}

#[tokio::test]
async fn choose_algorithm_names_what_the_key_supports() {
    let fake = Fake::new(0, ErrorKind::Throttled);
    let e = fake
        .choose_algorithm(Some(SigAlg::RsaSha256))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("supports: ssh-ed25519"), "{e}");
}

#[tokio::test]
async fn verification_is_never_skipped_for_unverified_signatures() {
    use sshca_core::{CertTemplate, CertType};
    use sshca_signer::conformance::CorruptingSigner;
    use sshca_signer::VerifyingSigner;
    let subject = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .unwrap()
        .public_key()
        .key_data()
        .clone();
    let mut t = CertTemplate::new(CertType::User, "x");
    t.principals = vec!["p".into()];
    // Corrupt behind the verifier: the verifier refuses.
    let inner = VerifyingSigner::new(CorruptingSigner(Fake::new(0, ErrorKind::Throttled)));
    assert!(inner.verifies_signatures());
    let e = inner
        .sign_certificate(&t, &subject, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    // Corrupt in front of the verifier: it does not claim verified output,
    // so sign_certificate verifies and refuses.
    let outer = CorruptingSigner(VerifyingSigner::new(Fake::new(0, ErrorKind::Throttled)));
    assert!(!outer.verifies_signatures());
    let e = outer
        .sign_certificate(&t, &subject, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    // Wrappers that do not change signatures forward the claim.
    let limited = LimitSigner::new(VerifyingSigner::new(Fake::new(0, ErrorKind::Throttled)), 2);
    assert!(limited.verifies_signatures());
    limited.sign_certificate(&t, &subject, None).await.unwrap();
}
