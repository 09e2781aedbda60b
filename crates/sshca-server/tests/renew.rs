//! `POST /v1/renew`: renewal by proof of possession (an SSHSIG made by
//! OpenSSH's `ssh-keygen -Y sign` with the certificate's own key), the
//! chain bounded by `renew_max_age`, and every refusal: a replayed, stale,
//! foreign or misdirected proof, a revoked, expired, unknown or
//! non-renewable certificate, a requester no longer configured; two
//! replicas given the same proof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const POLICIES: &str = r#"
[policy.renewable]
ca = "users"
requesters = ["ci"]
default_valid_principals = ["deploy"]
ttl = "10m"
renewable = true
renew_max_age = "1h"

[policy.brief]
ca = "users"
requesters = ["ci"]
default_valid_principals = ["deploy"]
ttl = "1h"
renewable = true
renew_max_age = "3s"
"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The documented fingerprint: SHA256 of the certificate blob, base64
/// without padding.
fn cert_fingerprint(line: &str) -> String {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap();
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// A renewal body: the documented message signed by `key` with
/// `ssh-keygen -Y sign -n sshca-renew`.
fn proof(dir: &Path, key: &Path, cert: &str, url: &str, time: u64, nonce: &str) -> Value {
    let msg = format!(
        "sshca-renew\n{url}\n{}\n{time}\n{nonce}",
        cert_fingerprint(cert)
    );
    let file = dir.join(format!("msg-{nonce}"));
    std::fs::write(&file, msg).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "sshca-renew", "-f"])
        .arg(key)
        .arg(&file));
    let sig = std::fs::read_to_string(file.with_file_name(format!("msg-{nonce}.sig"))).unwrap();
    json!({"certificate": cert, "time": time, "nonce": nonce, "signature": sig})
}

fn nonce(n: u32) -> String {
    format!(
        "{:032x}",
        u128::from(n) * 0x1234_5678_9abc_def1 + now() as u128
    )
}

async fn renew(c: &reqwest::Client, svc: &Service, body: &Value) -> (u16, Value) {
    let r = c
        .post(format!("{}/v1/renew", svc.url))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A key (ssh-keygen) and a certificate for it under `policy`.
async fn issue(
    s: &Setup,
    c: &reqwest::Client,
    svc: &Service,
    name: &str,
    policy: &str,
    extra: Value,
) -> (PathBuf, String) {
    let key = keygen(&s.dir, name, "ed25519", None);
    let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut body = json!({"public_key": line.trim()});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (st, v, _) = sign(c, svc, policy, Some(&s.ci), &body).await;
    assert_eq!(st, 200, "{v}");
    (key, v["certificate"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_by_proof_of_possession() {
    let s = setup("", POLICIES);
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let url = svc.url.clone();
    let (key, cert) = issue(&s, &c, &svc, "id_r", "renewable", json!({})).await;
    let old = sshca::core::Certificate::from_openssh(&cert).unwrap();

    // Renewed: same key, type, principals and key id; a new serial,
    // linked to the old one in the store.
    let body = proof(&s.dir, &key, &cert, &url, now(), &nonce(1));
    let (st, v) = renew(&c, &svc, &body).await;
    assert_eq!(st, 200, "{v}");
    let new_line = v["certificate"].as_str().unwrap().to_owned();
    let new = sshca::core::Certificate::from_openssh(&new_line).unwrap();
    assert_eq!(new.public_key(), old.public_key());
    assert_eq!(new.principals(), old.principals());
    assert_eq!(new.key_id(), old.key_id());
    assert_ne!(new.serial(), old.serial());
    assert_eq!(v["renews"], json!(old.serial().to_string()));
    assert!(new.valid_before() > old.valid_before() - 5);
    let rows = store(&s).await.certs(&Default::default()).await.unwrap();
    let first = rows.iter().find(|r| r.serial == old.serial()).unwrap();
    let second = rows.iter().find(|r| r.serial == new.serial()).unwrap();
    assert_eq!(second.renews, Some(old.serial()));
    assert_eq!(second.chain_start, Some(first.issued_at));
    assert_eq!(
        (second.requester.as_str(), second.policy.as_str()),
        ("ci", "renewable")
    );

    // The same proof again: replayed.
    let (st, v) = renew(&c, &svc, &body).await;
    assert_eq!((st, code(&v)), (401, "renew_proof_replayed"), "{v}");
    // A proof by another key, for another service, or too old: refused.
    let other = keygen(&s.dir, "id_other", "ed25519", None);
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &other, &new_line, &url, now(), &nonce(2)),
    )
    .await;
    assert_eq!((st, code(&v)), (401, "renew_proof_invalid"), "{v}");
    let elsewhere = proof(
        &s.dir,
        &key,
        &new_line,
        "https://ca.other.example",
        now(),
        &nonce(3),
    );
    let (st, v) = renew(&c, &svc, &elsewhere).await;
    assert_eq!((st, code(&v)), (401, "renew_proof_invalid"), "{v}");
    let stale = proof(&s.dir, &key, &new_line, &url, now() - 300, &nonce(4));
    let (st, v) = renew(&c, &svc, &stale).await;
    assert_eq!((st, code(&v)), (401, "renew_proof_stale"), "{v}");
    let mut bad_nonce = proof(&s.dir, &key, &new_line, &url, now(), &nonce(5));
    bad_nonce["nonce"] = json!("xyz");
    let (st, v) = renew(&c, &svc, &bad_nonce).await;
    assert_eq!((st, code(&v)), (401, "renew_proof_invalid"), "{v}");
    let (st, v) = renew(&c, &svc, &json!({"certificate": new_line})).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");

    // The renewal renews too; its chain still starts at the first.
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &key, &new_line, &url, now(), &nonce(6)),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let third = v["certificate"].as_str().unwrap().to_owned();
    let rows = store(&s).await.certs(&Default::default()).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.certificate.trim() == third.trim())
        .unwrap();
    assert_eq!(row.chain_start, Some(first.issued_at));
    assert_eq!(row.renews, Some(new.serial()));

    // A revoked certificate is not renewed.
    let (st, v) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.admin,
        &json!({"ca": "users", "serial": row.serial.to_string(), "reason": "lost laptop"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &key, &third, &url, now(), &nonce(7)),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "certificate_revoked"), "{v}");
    assert!(message(&v).contains("lost laptop"), "{v}");

    // Expired, past renew_max_age, not renewable, unknown.
    let (k2, expired) = issue(
        &s,
        &c,
        &svc,
        "id_exp",
        "renewable",
        json!({"validity": "+2s"}),
    )
    .await;
    let (k3, brief) = issue(&s, &c, &svc, "id_brief", "brief", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &k2, &expired, &url, now(), &nonce(8)),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "renewal_expired"), "{v}");
    assert!(message(&v).contains("has expired"), "{v}");
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &k3, &brief, &url, now(), &nonce(9)),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "renewal_expired"), "{v}");
    assert!(message(&v).contains("renew_max_age"), "{v}");
    let (k4, plain) = issue(&s, &c, &svc, "id_plain", "ci", json!({})).await;
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &k4, &plain, &url, now(), &nonce(10)),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "renew_not_allowed"), "{v}");
    let rogue_ca = keygen(&s.dir, "rogue_ca", "ed25519", None);
    let k5 = keygen(&s.dir, "id_rogue", "ed25519", None);
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&rogue_ca)
        .args(["-I", "rogue", "-n", "deploy", "-V", "+1h"])
        .arg(k5.with_extension("pub")));
    let rogue = std::fs::read_to_string(s.dir.join("id_rogue-cert.pub")).unwrap();
    let (st, v) = renew(
        &c,
        &svc,
        &proof(&s.dir, &k5, rogue.trim(), &url, now(), &nonce(11)),
    )
    .await;
    assert_eq!((st, code(&v)), (404, "certificate_unknown"), "{v}");
    // Refusals before a proof is checked are audited as unauthenticated
    // ones are (at most one row per address and minute), and each is
    // logged with its code.
    let audit = store(&s).await.audit_events(1000).await.unwrap();
    assert!(
        audit.iter().any(|e| e.code == "renew_proof_replayed"),
        "{audit:?}"
    );
    let log = log_text();
    for c in [
        "renew_proof_stale",
        "renew_proof_invalid",
        "certificate_revoked",
        "renewal_expired",
        "certificate_unknown",
    ] {
        assert!(log.contains(c), "{c} not logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_requester_ends_renewals_and_replicas_share_nonces() {
    let s = setup("public_url = \"https://ca.example.test\"", POLICIES);
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let (key, cert) = issue(&s, &c, &svc, "id_a", "renewable", json!({})).await;
    // Proofs name the public URL, not the listening address.
    let local = proof(&s.dir, &key, &cert, &svc.url, now(), &nonce(20));
    let (st, v) = renew(&c, &svc, &local).await;
    assert_eq!((st, code(&v)), (401, "renew_proof_invalid"), "{v}");

    // Two replicas on one store, the same proof at once: exactly one wins.
    let other = Service::start(&s.config).await;
    let body = proof(
        &s.dir,
        &key,
        &cert,
        "https://ca.example.test",
        now(),
        &nonce(21),
    );
    let (a, b) = tokio::join!(renew(&c, &svc, &body), renew(&c, &other, &body));
    let mut codes = [a.0, b.0];
    codes.sort_unstable();
    assert_eq!(codes, [200, 401], "{a:?} {b:?}");
    other.stop().await;
    svc.stop().await;

    // The `ci` token removed from the config: its renewals end.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let without: String = {
        let mut out = Vec::new();
        let mut skip = false;
        for l in text.lines() {
            if l.starts_with("[token.ci]") {
                skip = true;
                continue;
            }
            if skip && l.starts_with("sha256") {
                skip = false;
                continue;
            }
            out.push(l);
        }
        out.join("\n")
    };
    std::fs::write(&s.config, without).unwrap();
    let svc = Service::start(&s.config).await;
    let body = proof(
        &s.dir,
        &key,
        &cert,
        "https://ca.example.test",
        now(),
        &nonce(22),
    );
    let (st, v) = renew(&c, &svc, &body).await;
    assert_eq!((st, code(&v)), (403, "renew_not_allowed"), "{v}");
    assert!(message(&v).contains("token:ci"), "{v}");
}
