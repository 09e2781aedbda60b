//! Identity for `sshca serve`: OIDC JWTs minted here against a JWKS file
//! and a JWKS served over HTTPS on 127.0.0.1 (RSA, P-256), every refusal
//! with its reason code and no certificate, algorithm-confusion attempts,
//! claim templates, policy `auth` sources, `sshca request --id-token-file`,
//! sshd accepting the certificates. (The Vault-compatible API, driven by a
//! real Vault client library, is tested in `crates/sshca-server/tests`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use serve_support::*;

/// A JWT signing key with its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
    /// The public key's DER bytes (for the HMAC confusion attempt).
    public_der: Vec<u8>,
}

fn rsa_key(kid: &str) -> SigningKey {
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let key = EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes());
    let public_der = k.to_public_key().to_pkcs1_der().unwrap().into_vec();
    signing_key(kid, Algorithm::RS256, key, public_der)
}

fn ec_key(kid: &str) -> SigningKey {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let k = p256::SecretKey::random(&mut rand_core::OsRng);
    let key = EncodingKey::from_ec_der(k.to_pkcs8_der().unwrap().as_bytes());
    let public_der = k.public_key().to_public_key_der().unwrap().into_vec();
    signing_key(kid, Algorithm::ES256, key, public_der)
}

fn signing_key(kid: &str, alg: Algorithm, key: EncodingKey, public_der: Vec<u8>) -> SigningKey {
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    SigningKey {
        kid: kid.to_owned(),
        alg,
        key,
        jwk,
        public_der,
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(k: &SigningKey, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, claims, &k.key).unwrap()
}

const CI_ISSUER: &str = "https://ci.example.test";
const PEOPLE_ISSUER: &str = "https://idp.example.test";

/// Claims of a CI job's token for `me`.
fn ci_claims(me: &str) -> Value {
    let t = now();
    json!({
        "iss": CI_ISSUER, "aud": "sshca", "sub": "repo:acme/web:ref:refs/heads/main",
        "repository": "acme/web", "ref": "refs/heads/main", "login": me,
        "groups": ["ops", "web"], "iat": t, "nbf": t - 5, "exp": t + 600,
    })
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWKS over HTTPS on 127.0.0.1 (a certificate from the test TLS CA):
/// serves the current document and counts the fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

fn jwks_server(dir: &Path, body: String) -> JwksServer {
    let load = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let certs = rustls_pemfile::certs(&mut load("tls.pem").as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut load("tls.key").as_slice())
        .unwrap()
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/jwks", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(body));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if !req.starts_with(b"GET /jwks ") {
                continue;
            }
            f.fetch_add(1, Ordering::SeqCst);
            let doc = b.lock().unwrap().clone();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                doc.len()
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    JwksServer { url, body, fetches }
}

async fn sign_with(
    c: &reqwest::Client,
    svc: &Service,
    policy: &str,
    token: &str,
    key: &str,
) -> (u16, Value) {
    let (st, v, _) =
        serve_support::sign(c, svc, policy, Some(token), &json!({"public_key": key})).await;
    (st, v)
}

#[test]
fn oidc_requesters_with_claim_templates() {
    let s = setup("vault_mount = \"ssh\"", None);
    let dir = &s.dir;
    let me = user();
    let ci_rsa = rsa_key("ci-rsa");
    let ci_ec = ec_key("ci-ec");
    let people_1 = ec_key("people-1");
    let people_2 = rsa_key("people-2");
    std::fs::write(dir.join("ci-jwks.json"), jwks(&[&ci_rsa, &ci_ec])).unwrap();
    let idp = jwks_server(dir, jwks(&[&people_1]));
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!(
        r#"
[oidc.ci]
issuer = "{CI_ISSUER}"
audience = "sshca"
jwks = "ci-jwks.json"
identity_claim = "repository"

[oidc.people]
issuer = "{PEOPLE_ISSUER}"
audience = "sshca-people"
jwks = "{url}"
jwks_ca = "tls-ca.pem"
identity_claim = "email"
algorithms = ["ES256", "RS256"]

[policy.deploy]
ca = "users"
auth = ["oidc:ci"]
requesters = ["oidc:ci:acme/*"]
valid_principals = ["{{claims.login}}", "g-{{claims.groups}}"]
key_id = "{{identity}}@{{claims.ref}}"
ttl = "10m"

[policy.people]
ca = "users"
auth = ["oidc:people"]
allowed_valid_principals = ["{{claims.login}}"]
default_valid_principals = ["{{claims.login}}"]
ttl = "10m"

[policy.tokens-only]
ca = "users"
auth = ["token"]
valid_principals = ["deploy"]
"#,
        url = idp.url
    ));
    std::fs::write(&s.config, config).unwrap();
    let svc = Service::start(dir, &s.config);
    let rt = runtime();
    let c = client(&s.pki, None);
    let key = pubkey(dir, "id_ci");
    let good = mint(&ci_rsa, &ci_claims(&me));
    let mut issued = 0;

    rt.block_on(async {
        // A valid RS256 token: principals and key id from its claims.
        let (st, v) = sign_with(&c, &svc, "deploy", &good, &key).await;
        assert_eq!(st, 200, "{v}");
        issued += 1;
        let cert =
            sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
        assert_eq!(
            cert.principals(),
            [me.clone(), "g-ops".into(), "g-web".into()]
        );
        assert_eq!(cert.key_id(), "acme/web@refs/heads/main");
        std::fs::write(
            dir.join("id_ci-cert.pub"),
            v["certificate"].as_str().unwrap(),
        )
        .unwrap();

        // ES256 from the same issuer.
        let (st, v) = sign_with(&c, &svc, "deploy", &mint(&ci_ec, &ci_claims(&me)), &key).await;
        assert_eq!(st, 200, "{v}");
        issued += 1;

        // Each refusal: 401, the reason in the code, no certificate.
        let claims = |edit: &dyn Fn(&mut Value)| {
            let mut c = ci_claims(&me);
            edit(&mut c);
            c
        };
        let t = now();
        let mut cases: Vec<(&str, String, &str)> = vec![
            (
                "expired",
                mint(
                    &ci_rsa,
                    &claims(&|c| {
                        c["exp"] = json!(t - 3600);
                        c["iat"] = json!(t - 7200);
                        c["nbf"] = json!(t - 7200);
                    }),
                ),
                "token_expired",
            ),
            (
                "audience",
                mint(&ci_rsa, &claims(&|c| c["aud"] = json!("someone-else"))),
                "token_audience",
            ),
            (
                "issuer",
                mint(
                    &ci_rsa,
                    &claims(&|c| c["iss"] = json!("https://evil.example.test")),
                ),
                "token_issuer",
            ),
            (
                "not yet valid",
                mint(&ci_rsa, &claims(&|c| c["nbf"] = json!(t + 3600))),
                "token_not_yet_valid",
            ),
            (
                "issued in the future",
                mint(&ci_rsa, &claims(&|c| c["iat"] = json!(t + 3600))),
                "token_not_yet_valid",
            ),
            (
                "no exp",
                mint(
                    &ci_rsa,
                    &claims(&|c| {
                        c.as_object_mut().unwrap().remove("exp");
                    }),
                ),
                "token_claims",
            ),
            (
                "no identity claim",
                mint(
                    &ci_rsa,
                    &claims(&|c| {
                        c.as_object_mut().unwrap().remove("repository");
                    }),
                ),
                "token_claims",
            ),
        ];
        // An unknown key id, and a key id of another issuer.
        let stranger = ec_key("stranger");
        cases.push((
            "unknown key",
            mint(&stranger, &ci_claims(&me)),
            "token_unknown_key",
        ));
        cases.push((
            "another issuer's kid",
            mint(&people_1, &ci_claims(&me)),
            "token_unknown_key",
        ));
        // alg none, HS256 keyed with the public key, ES256 naming the RSA key.
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": "ci-rsa"})),
            b64(&ci_claims(&me))
        );
        cases.push(("alg none", none, "token_algorithm"));
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("ci-rsa".into());
        let hs = jsonwebtoken::encode(
            &h,
            &ci_claims(&me),
            &EncodingKey::from_secret(&ci_rsa.public_der),
        )
        .unwrap();
        cases.push(("HS256 with the public key", hs, "token_algorithm"));
        let confused = ec_key("ci-rsa");
        cases.push((
            "ES256 naming an RSA key",
            mint(&confused, &ci_claims(&me)),
            "token_algorithm",
        ));
        // A payload changed after signing.
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&claims(&|c| c["login"] = json!("mallory"))),
            parts[2]
        );
        cases.push(("forged payload", forged, "token_signature"));
        for (what, token, want) in &cases {
            let (st, v) = sign_with(&c, &svc, "deploy", token, &key).await;
            assert_eq!((st, code(&v)), (401, *want), "{what}: {v}");
        }

        // Claims a template cannot use: 422 naming the claim.
        let (st, v) = sign_with(
            &c,
            &svc,
            "deploy",
            &mint(&ci_rsa, &claims(&|c| c["groups"] = json!(["ops", "*"]))),
            &key,
        )
        .await;
        assert_eq!(st, 422, "{v}");
        assert!(
            message(&v).contains("claim `groups`") && message(&v).contains('*'),
            "{v}"
        );
        let (st, v) = sign_with(
            &c,
            &svc,
            "deploy",
            &mint(
                &ci_rsa,
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("ref");
                }),
            ),
            &key,
        )
        .await;
        assert_eq!(st, 422, "{v}");
        assert!(message(&v).contains("no claim `ref`"), "{v}");
        let (st, v) = sign_with(
            &c,
            &svc,
            "deploy",
            &mint(&ci_rsa, &claims(&|c| c["groups"] = json!(7))),
            &key,
        )
        .await;
        assert_eq!(st, 422, "{v}");
        assert!(message(&v).contains("claim `groups` is a number"), "{v}");

        // Sources: an OIDC identity where only tokens are accepted, a token
        // where only OIDC is, a requester glob the identity does not match.
        let (st, v) = sign_with(&c, &svc, "tokens-only", &good, &key).await;
        assert_eq!(st, 403, "{v}");
        assert!(message(&v).contains("oidc:ci"), "{v}");
        let (st, v) = sign_with(&c, &svc, "tokens-only", &s.ci, &key).await;
        assert_eq!(st, 200, "{v}");
        issued += 1;
        let (st, v) = sign_with(&c, &svc, "deploy", &s.ci, &key).await;
        assert_eq!(st, 403, "{v}");
        let (st, _) = sign_with(
            &c,
            &svc,
            "deploy",
            &mint(&ci_rsa, &claims(&|c| c["repository"] = json!("evil/web"))),
            &key,
        )
        .await;
        assert_eq!(st, 403);

        // Anyone can mint a CI token naming a repository of their choice:
        // an OIDC identity named like a token (`admin`, `ci`) is another
        // identity. It is no admin (lists only its own certificates, may
        // not revoke) and not a requester of a policy that names the
        // token (`ci`, no `auth`).
        let named = |name: &str| {
            let name = name.to_owned();
            mint(&ci_rsa, &claims(&move |c| c["repository"] = json!(name)))
        };
        let evil_admin = named("admin");
        let r = c
            .get(format!("{}/v1/certs", svc.url))
            .bearer_auth(&evil_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let listed: Value = r.json().await.unwrap();
        assert_eq!(listed["certs"], json!([]), "{listed}");
        let r = c
            .post(format!("{}/v1/revoke", svc.url))
            .bearer_auth(&evil_admin)
            .json(&json!({"ca": "users", "serial": "1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
        let (st, v) = sign_with(&c, &svc, "ci", &named("ci"), &key).await;
        assert_eq!(st, 403, "{v}");
        assert!(message(&v).contains("oidc:ci:ci"), "{v}");

        // The JWKS URL: fetched at start, fetched again for a new kid.
        let person = |k: &SigningKey| {
            let t = now();
            mint(
                k,
                &json!({"iss": PEOPLE_ISSUER, "aud": "sshca-people", "sub": "u1",
                "email": "alice@example.com", "login": me, "iat": t, "exp": t + 300}),
            )
        };
        let (st, v) = sign_with(&c, &svc, "people", &person(&people_1), &key).await;
        assert_eq!(st, 200, "{v}");
        issued += 1;
        let fetched = idp.fetches.load(Ordering::SeqCst);
        assert!(fetched >= 1);
        let (st, v) = sign_with(&c, &svc, "people", &person(&people_2), &key).await;
        assert_eq!((st, code(&v)), (401, "token_unknown_key"), "{v}");
        *idp.body.lock().unwrap() = jwks(&[&people_1, &people_2]);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (st, v) = sign_with(&c, &svc, "people", &person(&people_2), &key).await;
        assert_eq!(st, 200, "after the JWKS rotation: {v}");
        issued += 1;
        assert!(idp.fetches.load(Ordering::SeqCst) > fetched);
        // The people issuer's token is no good for the CI policy.
        let (st, _) = sign_with(&c, &svc, "deploy", &person(&people_1), &key).await;
        assert_eq!(st, 403);

        // A JWT through the Vault-compatible path, in X-Vault-Token.
        let r = c
            .post(format!("{}/v1/ssh/sign/deploy", svc.url))
            .header("x-vault-token", &good)
            .json(&json!({"public_key": key}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["data"]["signed_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com "));
        issued += 1;
    });

    // `sshca request --id-token-file` and SSHCA_ID_TOKEN.
    let req_key = keygen(dir, "id_req", "ed25519", None);
    std::fs::write(dir.join("id-token"), format!("{good}\n")).unwrap();
    run(sshca()
        .args(["request", "--server", &svc.url, "--policy", "deploy"])
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .arg("--id-token-file")
        .arg(dir.join("id-token"))
        .arg(req_key.with_extension("pub"))
        .env_remove("SSHCA_TOKEN"));
    issued += 1;
    let cert = cert_of(&req_key.with_extension("pub"));
    let shown = String::from_utf8(run(keygen_cmd().arg("-L").arg("-f").arg(&cert)).stdout).unwrap();
    assert!(
        shown.contains("acme/web@refs/heads/main") && shown.contains("g-ops"),
        "{shown}"
    );
    std::fs::remove_file(&cert).unwrap();
    run(sshca()
        .args(["request", "--server", &svc.url, "--policy", "deploy"])
        .arg("--server-ca")
        .arg(&s.pki.tls_ca)
        .arg(req_key.with_extension("pub"))
        .env_remove("SSHCA_TOKEN")
        .env("SSHCA_ID_TOKEN", &good));
    issued += 1;
    assert!(cert.exists());

    // sshd accepts a certificate whose principals came from the claims.
    let ca_line = run(sshca()
        .arg("pubkey")
        .arg(format!("file:{}", s.user_ca.display())))
    .stdout;
    let trusted = dir.join("trusted_user_ca.pub");
    std::fs::write(&trusted, ca_line).unwrap();
    let (sshd, known_hosts) = sshd_trusting(dir, &trusted);
    let key_path = dir.join("id_ci");
    assert_login_works(
        &sshd,
        dir,
        &key_path,
        &dir.join("id_ci-cert.pub"),
        &known_hosts,
        "oidc-login-ok",
    );

    // Exactly the certificates answered 200 are in the store; each refusal
    // is counted with its reason code, refusals before authentication
    // audited at most once a minute (not once each); no token reached the
    // log.
    assert_eq!(store_rows(&s.config, &[]).len(), issued);
    let audit = run(sshca()
        .arg("--config")
        .arg(&s.config)
        .args(["audit", "--json", "--limit", "1000"]));
    let audit: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    let (_, metrics) = rt.block_on(get(&c, &svc, "/metrics", None));
    for code in [
        "token_expired",
        "token_audience",
        "token_issuer",
        "token_signature",
        "token_algorithm",
        "token_unknown_key",
    ] {
        assert!(
            metrics.contains(&format!("sshca_unauthenticated_total{{code=\"{code}\"}}")),
            "{code}: {metrics}"
        );
    }
    let unauthenticated = audit.iter().filter(|e| e["status"] == 401).count();
    assert!((1..=3).contains(&unauthenticated), "{audit:?}");
    assert!(audit.iter().any(|e| e["status"] == 403
        && e["auth_source"] == "oidc:ci"
        && e["identity"] == "acme/web"));
    let log = svc.log();
    assert!(!log.contains(&good), "a token reached the log");
}

fn keygen_cmd() -> std::process::Command {
    std::process::Command::new("ssh-keygen")
}
