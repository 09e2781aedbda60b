//! The shared conformance suite (feature `conformance`): what every
//! backend's tests assert against a real key of that backend, in tree or
//! out of tree (`examples/out-of-tree-backend` is a complete crate that
//! implements a scheme and runs the suite).
//!
//! ```ignore
//! let mut registry = sshca_signer::Registry::new();
//! my_backend::register(&mut registry);
//! let signer = registry.open("myscheme:key-1").await?;
//! sshca_signer::conformance::run_all(signer, &[SigAlg::Ed25519]).await;
//! ```
//!
//! A backend declares its capabilities as the algorithms each key must
//! report, preferred first (an RSA key: `[RsaSha512, RsaSha256]`, or only
//! the one its service fixed). Each function panics with a message naming
//! the failed property (they are test helpers):
//!
//! | function | asserts |
//! |---|---|
//! | [`algorithms_match`] | the key reports exactly the declared algorithms, in order |
//! | [`sign_verify_round_trip`] | every algorithm signs a message that verifies under the public key, and not another message |
//! | [`certificates_accepted`] | a certificate per algorithm decodes with ssh-key and sshca-core (re-encoding byte for byte), carries the requested fields and CA, validates, and `ssh-keygen -L` reads it naming the algorithm |
//! | [`concurrent_signing`] | many certificates at once all succeed with distinct serials |
//! | [`corrupt_signature_rejected`] | a signature that does not verify is an error (`BadResponse`), never a certificate |
//! | [`assert_not_found`] | opening a missing key is `NotFound` |
//! | [`run_remote`] | for a service: [`run_all`] per key, one public-key fetch per signer and one sign request per certificate, retries under injected throttling, an injected corrupt signature refused, a missing key `NotFound`, a key of the wrong usage refused when opened |
//!
//! [`run_remote`] needs the service's fault hooks ([`ServiceHooks`]); for a
//! backend of one of the emulated services, start the emulator in process
//! (`kms_emulator::Emulator::start(Config::default())`, 127.0.0.1 with an
//! OS-chosen port) and take its hooks (`sshca_testkit::emulator_hooks`, or
//! the emulator's `fail_next`, `corrupt_next` and `count`).
//!
//! The checks that are safe against a production key (no faults, no
//! missing keys, a known number of signatures) are [`crate::probe`], which
//! `sshca conformance URI` runs.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use sshca_core::{CertTemplate, CertType, KeyData, OptionValue, SigAlg, Signature};

use crate::{
    verify_signature, Error, ErrorKind, KeySigner, KeyUri, Result, SignerExt, VerifyingSigner,
};

/// Runs the whole suite.
pub async fn run_all(signer: Arc<dyn KeySigner>, expected: &[SigAlg]) {
    algorithms_match(&*signer, expected).await;
    sign_verify_round_trip(&*signer).await;
    certificates_accepted(&*signer).await;
    concurrent_signing(signer.clone(), 16).await;
    corrupt_signature_rejected(signer).await;
}

/// The signer reports exactly the expected algorithms (order included).
pub async fn algorithms_match(signer: &dyn KeySigner, expected: &[SigAlg]) {
    let algs = signer.algorithms().await.expect("algorithms()");
    assert_eq!(algs, expected, "{}: algorithms", signer.uri());
}

/// Every algorithm signs a message whose signature verifies under the public
/// key, and does not verify for another message.
pub async fn sign_verify_round_trip(signer: &dyn KeySigner) {
    let key = signer.public_key().await.expect("public_key()");
    for alg in signer.algorithms().await.expect("algorithms()") {
        let msg = format!("conformance message for {alg}");
        let sig = signer
            .sign(alg, msg.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: sign with {alg}: {e}", signer.uri()));
        assert_eq!(sig.algorithm(), alg.algorithm(), "signature algorithm");
        verify_signature(&key, msg.as_bytes(), &sig)
            .unwrap_or_else(|e| panic!("{}: {alg} round trip: {e}", signer.uri()));
        assert!(
            verify_signature(&key, b"another message", &sig).is_err(),
            "{alg}: signature verifies for a different message"
        );
    }
}

/// The user-certificate template the suite signs (serial `serial`).
pub fn template(serial: u64) -> CertTemplate {
    let mut t = CertTemplate::new(CertType::User, format!("conformance-{serial}"));
    t.principals = vec!["alice".into(), "deploy".into()];
    t.serial = serial;
    t.valid_after = 1_700_000_000;
    t.valid_before = 4_000_000_000;
    t.critical_options.insert(
        "force-command".into(),
        OptionValue::Text("/usr/bin/true".into()),
    );
    t.extensions.insert("permit-pty".into(), OptionValue::Flag);
    t
}

/// A fresh Ed25519 subject key.
pub fn subject_key() -> KeyData {
    use sshca_core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
    KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
}

/// Certificates signed with every algorithm decode with the ssh-key crate
/// and with sshca-core, carry the requested fields, and `ssh-keygen -L`
/// accepts them.
pub async fn certificates_accepted(signer: &dyn KeySigner) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = signer.public_key().await.expect("public_key()");
    for (i, alg) in signer
        .algorithms()
        .await
        .expect("algorithms()")
        .into_iter()
        .enumerate()
    {
        let serial = 1000 + i as u64;
        let cert = signer
            .sign_certificate(&template(serial), &subject_key(), Some(alg))
            .await
            .unwrap_or_else(|e| panic!("{}: certificate with {alg}: {e}", signer.uri()));
        let text = cert.to_openssh().expect("to_openssh");
        let theirs = sshca_core::ssh_key::Certificate::from_openssh(&text)
            .unwrap_or_else(|e| panic!("ssh-key rejects the {alg} certificate: {e}"));
        assert_eq!(theirs.serial(), serial);
        assert_eq!(theirs.valid_principals(), ["alice", "deploy"]);
        assert_eq!(theirs.signature_key(), &ca);
        theirs
            .validate_at(
                2_000_000_000,
                [&ca.fingerprint(sshca_core::HashAlg::Sha256)],
            )
            .unwrap_or_else(|e| panic!("ssh-key does not validate the {alg} certificate: {e}"));
        let ours = sshca_core::Certificate::from_openssh(&text).expect("sshca-core decode");
        assert_eq!(ours.to_openssh().expect("re-encode"), text, "re-encoding");
        let path = dir.path().join(format!("c{i}-cert.pub"));
        std::fs::write(&path, format!("{text}\n")).expect("write");
        let out = tokio::process::Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(&path)
            .output()
            .await
            .expect("run ssh-keygen");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ssh-keygen -L rejects the {alg} certificate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Serial: {serial}")),
            "ssh-keygen output: {stdout}"
        );
        assert!(
            stdout.contains(&format!("(using {})", alg.name())),
            "ssh-keygen output: {stdout}"
        );
    }
}

/// Many certificates signed at once all verify and have distinct serials.
pub async fn concurrent_signing(signer: Arc<dyn KeySigner>, n: u64) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = signer.clone();
        set.spawn(async move {
            s.sign_certificate(&template(5000 + i), &subject_key(), None)
                .await
                .map(|c| c.serial())
        });
    }
    let mut serials = HashSet::new();
    while let Some(r) = set.join_next().await {
        let serial = r
            .expect("task")
            .unwrap_or_else(|e| panic!("concurrent signing: {e}"));
        assert!(serials.insert(serial), "duplicate serial {serial}");
    }
    assert_eq!(serials.len() as u64, n);
}

/// Corrupts every signature of the inner signer (a faulty backend).
#[derive(Debug)]
pub struct CorruptingSigner<S>(pub S);

#[async_trait]
impl<S: KeySigner> KeySigner for CorruptingSigner<S> {
    fn uri(&self) -> &KeyUri {
        self.0.uri()
    }
    async fn public_key(&self) -> Result<KeyData> {
        self.0.public_key().await
    }
    async fn algorithms(&self) -> Result<Vec<SigAlg>> {
        self.0.algorithms().await
    }
    async fn sign(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let sig = self.0.sign(alg, message).await?;
        let mut data = sig.as_bytes().to_vec();
        let last = data.len() - 1;
        data[last] ^= 0x01;
        Signature::new(sig.algorithm(), data)
            .map_err(|e| Error::new(ErrorKind::BadResponse, e.to_string()))
    }
}

/// A backend signature that does not verify yields an error, never a
/// certificate, both through [`VerifyingSigner`] and through
/// [`SignerExt::sign_certificate`] alone.
pub async fn corrupt_signature_rejected(signer: Arc<dyn KeySigner>) {
    let bad = CorruptingSigner(signer.clone());
    let e = bad
        .sign_certificate(&template(9), &subject_key(), None)
        .await
        .expect_err("a corrupt signature produced a certificate");
    assert_eq!(e.kind(), ErrorKind::BadResponse, "{e}");
    let verifying = VerifyingSigner::new(CorruptingSigner(signer));
    let alg = verifying.algorithms().await.expect("algorithms")[0];
    let e = verifying
        .sign(alg, b"message")
        .await
        .expect_err("VerifyingSigner returned a corrupt signature");
    assert_eq!(e.kind(), ErrorKind::BadResponse, "{e}");
}

/// Opening a key that does not exist fails with [`ErrorKind::NotFound`].
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T>) {
    let e = r.expect_err("opening an unknown key succeeded");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// What the remote-backend suite needs from the service (an emulator) it
/// runs against: fault injection on the sign operation and request counts.
pub struct ServiceHooks {
    /// Make the next `n` sign requests fail with throttling.
    pub throttle_signs: Box<dyn Fn(u64) + Send + Sync>,
    /// Make the next `n` sign requests return signatures that do not verify.
    pub corrupt_signs: Box<dyn Fn(u64) + Send + Sync>,
    /// (sign requests, public-key requests) received so far.
    pub counts: Box<dyn Fn() -> (u64, u64) + Send + Sync>,
}

/// A key the remote suite signs with: its URI and the algorithms it must report.
#[derive(Debug, Clone)]
pub struct RemoteKey {
    /// Key URI.
    pub uri: String,
    /// Expected algorithms, preferred first.
    pub algorithms: Vec<SigAlg>,
}

/// The whole suite for a remote backend: for every key, [`run_all`] plus the
/// cost rule (one public-key fetch per signer, exactly one sign request per
/// certificate), retries under injected throttling (all certificates valid,
/// no duplicates), an injected corrupt signature (error, no certificate);
/// then an unknown key is [`ErrorKind::NotFound`] and a key of the wrong
/// usage is refused when the signer is built.
pub async fn run_remote(
    registry: &crate::Registry,
    keys: &[RemoteKey],
    unknown_uri: &str,
    wrong_usage_uri: &str,
    hooks: &ServiceHooks,
) {
    for key in keys {
        let (s0, p0) = (hooks.counts)();
        let signer = registry
            .open(&key.uri)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", key.uri));
        let (s1, p1) = (hooks.counts)();
        assert_eq!(
            (s1 - s0, p1 - p0),
            (0, 1),
            "{}: opening costs one public-key fetch",
            key.uri
        );
        run_all(signer.clone(), &key.algorithms).await;

        // Cost: exactly one sign request per certificate, no more key fetches.
        let (s0, p0) = (hooks.counts)();
        for i in 0..5 {
            signer
                .sign_certificate(&template(7000 + i), &subject_key(), None)
                .await
                .unwrap_or_else(|e| panic!("{}: certificate: {e}", key.uri));
        }
        let (s1, p1) = (hooks.counts)();
        assert_eq!(s1 - s0, 5, "{}: sign requests for 5 certificates", key.uri);
        assert_eq!(p1 - p0, 0, "{}: public-key fetches after opening", key.uri);

        // Throttling is retried; every certificate is still issued and valid.
        (hooks.throttle_signs)(3);
        let (s0, _) = (hooks.counts)();
        let ca = signer.public_key().await.expect("public key");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6u64 {
            let s = signer.clone();
            set.spawn(async move {
                s.sign_certificate(&template(8000 + i), &subject_key(), None)
                    .await
            });
        }
        let mut serials = HashSet::new();
        while let Some(r) = set.join_next().await {
            let cert = r
                .expect("task")
                .unwrap_or_else(|e| panic!("{}: signing under throttling: {e}", key.uri));
            assert_eq!(cert.signature_key(), &ca, "{}: CA key", key.uri);
            cert.verify_signature()
                .unwrap_or_else(|e| panic!("{}: certificate after retries: {e}", key.uri));
            assert!(serials.insert(cert.serial()), "duplicate certificate");
        }
        let (s1, _) = (hooks.counts)();
        assert_eq!(
            s1 - s0,
            6 + 3,
            "{}: 6 certificates + 3 throttled attempts",
            key.uri
        );

        // A corrupt signature from the service is an error, never a certificate.
        (hooks.corrupt_signs)(1);
        let e = signer
            .sign_certificate(&template(9000), &subject_key(), None)
            .await
            .expect_err("a corrupt signature from the service produced a certificate");
        assert_eq!(e.kind(), ErrorKind::BadResponse, "{e}");
    }
    let e = registry
        .open(unknown_uri)
        .await
        .expect_err("opening an unknown key succeeded");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{unknown_uri}: {e}");
    let e = registry
        .open(wrong_usage_uri)
        .await
        .expect_err("opening a key of the wrong usage succeeded");
    assert!(
        matches!(e.kind(), ErrorKind::InvalidKey | ErrorKind::Unsupported),
        "{wrong_usage_uri}: {e}"
    );
}
