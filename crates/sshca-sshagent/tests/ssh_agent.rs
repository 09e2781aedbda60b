//! `ssh-agent:` CA keys against OpenSSH's own ssh-agent: the shared
//! conformance suite for Ed25519, ECDSA and RSA keys loaded with ssh-add,
//! and clear errors for a key the agent does not hold or no agent at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sshca_core::SigAlg;
use sshca_signer::{conformance, ErrorKind, Registry};
use sshca_testkit::cli::{keygen, SshAgent};

fn registry() -> Registry {
    let mut r = Registry::new();
    sshca_sshagent::register(&mut r);
    r
}

fn fingerprint(key: &std::path::Path) -> String {
    let text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    ssh_key::PublicKey::from_openssh(text.trim())
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_openssh_agent() {
    let d = tempfile::tempdir().unwrap();
    let agent = SshAgent::start(d.path(), "agent.sock");
    for (t, bits, algs) in [
        ("ed25519", None, vec![SigAlg::Ed25519]),
        ("ecdsa", Some("384"), vec![SigAlg::EcdsaP384]),
        (
            "rsa",
            Some("2048"),
            vec![SigAlg::RsaSha512, SigAlg::RsaSha256],
        ),
    ] {
        let key = keygen(d.path(), &format!("ca_{t}"), t, bits);
        agent.add(&key);
        let uri = format!(
            "ssh-agent:{}?socket={}",
            fingerprint(&key),
            agent.socket.display()
        );
        let signer = registry().open(&uri).await.unwrap();
        conformance::run_all(signer, &algs).await;
    }

    // A key the agent does not hold: named, with what it does hold.
    let other = keygen(d.path(), "not_loaded", "ed25519", None);
    let uri = format!(
        "ssh-agent:{}?socket={}",
        fingerprint(&other),
        agent.socket.display()
    );
    let e = registry().open(&uri).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("holds no key SHA256:"), "{e}");
    // No agent at that socket.
    let uri = format!(
        "ssh-agent:{}?socket={}",
        fingerprint(&other),
        d.path().join("none").display()
    );
    let e = registry().open(&uri).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("cannot reach the ssh-agent"), "{e}");
    // Not a fingerprint.
    let e = registry().open("ssh-agent:ca_ed25519").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}
