//! `POST /v1/revoke`, `GET /v1/krl` and `GET /v1/krl.sig`: only admins
//! revoke, every body mistake is named, a CA key must be one of the CA's;
//! the KRL served before and after a revocation, as ssh-keygen reads it,
//! with a signature ssh-keygen verifies and a version that rises.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::*;

/// Whether ssh-keygen says the KRL revokes `cert`.
fn keygen_says_revoked(krl: &Path, cert: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() || text.contains("REVOKED"),
        "ssh-keygen -Q failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.contains("REVOKED")
}

/// GET /v1/krl and /v1/krl.sig into `dir/served.krl(.sig)`: the version.
async fn fetch_krl(c: &reqwest::Client, svc: &Service, dir: &Path) -> u64 {
    let r = c
        .get(format!("{}/v1/krl?ca=users", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let version: u64 = r.headers()["x-krl-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(dir.join("served.krl"), r.bytes().await.unwrap()).unwrap();
    let r = c
        .get(format!("{}/v1/krl.sig", svc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["x-krl-version"].to_str().unwrap(),
        version.to_string()
    );
    std::fs::write(dir.join("served.krl.sig"), r.bytes().await.unwrap()).unwrap();
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_revoke_and_the_krl_follows() {
    let s = setup("", "");
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let dir = &s.dir;
    let key = s.pubkey("id_revoked");
    let (status, body, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
    assert_eq!(status, 200, "{body}");
    let serial: u64 = body["serial"].as_str().unwrap().parse().unwrap();
    let cert = dir.join("revoked-cert.pub");
    std::fs::write(
        &cert,
        format!("{}\n", body["certificate"].as_str().unwrap()),
    )
    .unwrap();

    // Only admins; every body mistake is a 400 naming it; an unknown CA 404.
    let (st, b) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.ci,
        &json!({"ca": "users", "serial": serial}),
    )
    .await;
    assert_eq!((st, code(&b)), (403, "forbidden"), "{b}");
    for (body, needle) in [
        (json!({"ca": "users"}), "nothing to revoke"),
        (
            json!({"ca": "users", "serial": "1", "key_id": "x"}),
            "only one",
        ),
        (json!({"ca": "users", "serial": "0"}), "serial 0"),
        (json!({"ca": "users", "serial": "x"}), "serial"),
        (json!({"ca": "users", "key": "ssh-ed25519 zzz"}), "key"),
        (
            json!({"ca": "users", "serial": "5", "colour": "red"}),
            "colour",
        ),
        (json!({"serial": "5"}), "ca"),
        (
            json!({"ca": "users", "serial": "5", "reason": "a\nb"}),
            "reason",
        ),
    ] {
        let (st, b) = post(&c, &svc, "/v1/revoke", &s.admin, &body).await;
        assert_eq!((st, code(&b)), (400, "bad_request"), "{body}: {b}");
        assert!(message(&b).contains(needle), "{body}: {b}");
    }
    let (st, _) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.admin,
        &json!({"ca": "nope", "serial": "5"}),
    )
    .await;
    assert_eq!(st, 404);
    let (st, b) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.admin,
        &json!({"ca": "users", "ca_key": s.pubkey("not_the_ca")}),
    )
    .await;
    assert_eq!((st, code(&b)), (422, "not_a_ca_key"), "{b}");

    // The KRL before the revocation: the certificate passes.
    let krl = dir.join("served.krl");
    let before = fetch_krl(&c, &svc, dir).await;
    assert!(!keygen_says_revoked(&krl, &cert));

    let (st, b) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.admin,
        &json!({"ca": "users", "serial": serial.to_string(), "reason": "laptop stolen"}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["revoked"]["revoked_by"], "admin");
    assert_eq!(b["revoked"]["reason"], "laptop stolen");

    // After: revoked, a newer version, signed by the CA key.
    let after = fetch_krl(&c, &svc, dir).await;
    assert!(after > before, "{after} <= {before}");
    assert!(keygen_says_revoked(&krl, &cert));
    let v = run(Command::new("ssh-keygen")
        .args(["-Y", "check-novalidate", "-n", "sshca-krl", "-s"])
        .arg(dir.join("served.krl.sig"))
        .stdin(std::fs::File::open(&krl).unwrap()));
    assert!(v.status.success());
    let allowed = dir.join("allowed_signers");
    std::fs::write(&allowed, format!("ca {}\n", s.ca_line())).unwrap();
    let v = run(Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "sshca-krl", "-I", "ca", "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(dir.join("served.krl.sig"))
        .stdin(std::fs::File::open(&krl).unwrap()));
    assert!(v.status.success());
    // Served again unchanged while nothing is revoked.
    assert_eq!(fetch_krl(&c, &svc, dir).await, after);

    // The CA key itself: every certificate it signed.
    let (st, b) = post(
        &c,
        &svc,
        "/v1/revoke",
        &s.admin,
        &json!({"ca": "users", "ca_key": s.ca_line()}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["revoked"]["kind"], "ca_key");

    // Query mistakes.
    assert_eq!(get(&c, &svc, "/v1/krl?ca=nope", None).await.0, 404);
    assert_eq!(get(&c, &svc, "/v1/krl?colour=red", None).await.0, 400);
    assert_eq!(
        get(&c, &svc, "/v1/krl?ca=users&ca=users", None).await.0,
        400
    );
    svc.stop().await;

    // The audit table says who revoked what and why.
    let rows = audit_rows(&s, |rows| rows.iter().any(|r| r.code == "not_a_ca_key")).await;
    assert!(rows.iter().any(|r| r.code == "revoked"
        && r.identity.as_deref() == Some("admin")
        && r.reason.contains("laptop stolen")));
    assert!(rows
        .iter()
        .any(|r| r.code == "not_a_ca_key" && r.status == 422));
}
