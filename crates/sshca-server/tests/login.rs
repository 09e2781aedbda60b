//! `GET /v1/login` (the issuers `sshca login` may sign in with and the
//! CAs a client trusts, without credentials) and `pin_source_address`
//! (user certificates bound to the address they were asked from).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_settings_list_the_public_clients() {
    let s = setup(
        "",
        r#"
[oidc.corp]
issuer = "https://idp.example"
client_id = "sshca-cli"
client_secret = "not-secret-for-desktop-apps"
login_policy = "people"
jwks = "jwks.json"

[oidc.ci]
issuer = "https://ci.example"
audience = "sshca"
jwks = "jwks.json"

[oidc.google]
issuer = "https://accounts.google.com"
client_id = "123.apps.googleusercontent.com"
scopes = ["openid", "email"]
jwks = "jwks.json"

[ca.hosts]
key = "file:HOSTKEY"

[policy.people]
ca = "users"
auth = ["oidc:corp", "oidc:google"]
requesters = ["oidc:corp:*", "oidc:google:*"]

[policy.servers]
ca = "hosts"
cert_type = "host"
"#,
    );
    // RFC 7517's example P-256 key.
    std::fs::write(
        s.dir.join("jwks.json"),
        r#"{"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "kid": "1",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#,
    )
    .unwrap();
    let host_ca = keygen(&s.dir, "host_ca", "ed25519", None);
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("HOSTKEY", &host_ca.display().to_string());
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let (st, v) = get_json(&c, &svc, "/v1/login", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({
            "issuers": [
                {
                    "name": "corp",
                    "issuer": "https://idp.example",
                    "client_id": "sshca-cli",
                    "client_secret": "not-secret-for-desktop-apps",
                    "scopes": ["openid", "email", "profile"],
                    "policy": "people",
                },
                {
                    "name": "google",
                    "issuer": "https://accounts.google.com",
                    "client_id": "123.apps.googleusercontent.com",
                    "scopes": ["openid", "email"],
                    "policy": null,
                },
            ],
            "user_cas": ["users"],
            "host_cas": ["hosts"],
        })
    );
    // A credential is not needed, and a wrong one is not read.
    let (st, _) = get_json(&c, &svc, "/v1/login", Some("sshca_wrong")).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_certificates_carry_the_requesters_address() {
    let s = setup(
        "",
        r#"
[policy.pinned]
ca = "users"
requesters = ["ci"]
pin_source_address = true
default_valid_principals = ["deploy"]
allowed_critical_options = ["source-address"]
"#,
    );
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id_pin");
    // Whatever the request asks for, the address it came from is what the
    // certificate is bound to.
    let (st, v, _) = sign(
        &c,
        &svc,
        "pinned",
        Some(&s.ci),
        &json!({"public_key": key, "critical_options": {"source-address": "10.0.0.0/8"}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let cert = sshca::core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    let opts: Vec<(String, String)> = cert
        .critical_options()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        opts,
        [("source-address".to_owned(), "127.0.0.1/32".to_owned())]
    );
    // ssh-keygen reads it the same way.
    let path = s.dir.join("pin-cert.pub");
    std::fs::write(&path, v["certificate"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("source-address 127.0.0.1/32"), "{text}");
    // A policy without it leaves the options alone.
    let (st, v, _) = sign(&c, &svc, "ci", Some(&s.ci), &json!({"public_key": key})).await;
    assert_eq!(st, 200, "{v}");
    let cert = sshca::core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    assert!(cert.critical_options().is_empty());
}

#[test]
fn pinning_is_for_user_policies_that_force_no_address() {
    let d = tempfile::tempdir().unwrap();
    for (policy, needle) in [
        (
            "cert_type = \"host\"\npin_source_address = true\n",
            "host certificates",
        ),
        (
            "pin_source_address = true\ncritical_options = { source-address = \"10.0.0.1\" }\n",
            "one or the other",
        ),
    ] {
        let path = d.path().join("c.toml");
        std::fs::write(
            &path,
            format!("[ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\n{policy}"),
        )
        .unwrap();
        let e = sshca::config::Config::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("pin_source_address") && e.contains(needle),
            "{e}"
        );
    }
}
