//! Pre-sign webhooks (allow, deny with its reason, enrich, time out either
//! way, a receiver checking the signature) and approval (pending, approved
//! by one and by two distinct approvers, self-approval refused, denial,
//! expiry, two replicas sharing the pending state, the Vault path),
//! against HTTPS receivers started here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::receiver;
use support::*;

const SECRET: &str = "0123456789abcdef-webhook-secret";

/// A receiver whose handler answers from the call; it keeps every call
/// whose signature checks, and answers 401 to the others.
async fn hook(
    dir: &Path,
    answer: impl Fn(&Value) -> (u16, Value, u64) + Send + Sync + 'static,
) -> (String, std::path::PathBuf, Arc<Mutex<Vec<Value>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let kept = calls.clone();
    let answer = Arc::new(answer);
    let handler: receiver::Handler = Arc::new(move |sig, body| {
        let (kept, answer) = (kept.clone(), answer.clone());
        Box::pin(async move {
            if !receiver::check_signature(SECRET, &sig, &body) {
                return (401, b"{}".to_vec());
            }
            let call: Value = serde_json::from_slice(&body).unwrap();
            kept.lock().unwrap().push(call.clone());
            let (status, out, delay) = answer(&call);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            (status, out.to_string().into_bytes())
        })
    });
    let sub = dir.join(format!("r{}", rand_suffix()));
    std::fs::create_dir_all(&sub).unwrap();
    let (url, ca) = receiver::start(&sub, handler).await;
    (url, ca, calls)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn webhook_table(name: &str, url: &str, ca: &Path, secret: &Path, extra: &str) -> String {
    format!(
        "[webhook.{name}]\nurl = \"{url}\"\nca_cert = \"{}\"\nsecret_file = \"{}\"\n{extra}\n",
        ca.display(),
        secret.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_allow_deny_enrich_and_fail_either_way() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let wrong = dir.join("wrong.secret");
    std::fs::write(&wrong, "another-secret-of-16-bytes\n").unwrap();
    let (hr_url, hr_ca, hr_calls) = hook(dir, |call| match call["identity"].as_str() {
        Some("token:ci") => (
            200,
            json!({"allow": true, "data": {"login": "alice", "ticket": "OPS-7"}}),
            0,
        ),
        _ => (
            200,
            json!({"allow": false, "reason": "not on call today"}),
            0,
        ),
    })
    .await;
    let (slow_url, slow_ca, _) = hook(dir, |_| (200, json!({"allow": true}), 3_000)).await;
    let (down_url, down_ca, _) = hook(dir, |_| (503, json!({}), 0)).await;
    let tables = [
        webhook_table("hr", &hr_url, &hr_ca, &secret, ""),
        webhook_table("forged", &hr_url, &hr_ca, &wrong, ""),
        webhook_table("slow", &slow_url, &slow_ca, &secret, "timeout = \"1s\""),
        webhook_table(
            "slow_ok",
            &slow_url,
            &slow_ca,
            &secret,
            "timeout = \"1s\"\non_error = \"allow\"",
        ),
        webhook_table("down", &down_url, &down_ca, &secret, ""),
    ]
    .concat();
    let policies = r#"
[policy.db]
ca = "users"
requesters = ["ci", "admin"]
webhooks = ["hr"]
valid_principals = ["{webhook.hr.login}"]
key_id = "{requester} {webhook.hr.ticket}"
extensions = { "permit-pty" = "", "ticket@example.com" = "{webhook.hr.ticket}" }

[policy.plain]
ca = "users"
requesters = ["ci"]
webhooks = ["hr"]
valid_principals = ["deploy"]

[policy.forged]
ca = "users"
webhooks = ["forged"]
default_valid_principals = ["deploy"]

[policy.slow]
ca = "users"
webhooks = ["slow"]
default_valid_principals = ["deploy"]

[policy.slow_ok]
ca = "users"
webhooks = ["slow_ok"]
default_valid_principals = ["deploy"]

[policy.down]
ca = "users"
webhooks = ["down"]
default_valid_principals = ["deploy"]
"#;
    let s = setup("", &format!("{tables}{policies}"));
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let req = json!({"public_key": s.pubkey("id")});

    // Allowed and enriched: principals, key id and an extension from `data`.
    let (st, b, _) = sign(&c, &svc, "db", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["principals"], json!(["alice"]));
    assert_eq!(b["key_id"], "ci OPS-7");
    let cert = sshca_core::Certificate::from_openssh(b["certificate"].as_str().unwrap()).unwrap();
    assert!(cert
        .extensions()
        .iter()
        .any(|(k, v)| k == "ticket@example.com"
            && *v == sshca_core::OptionValue::Text("OPS-7".into())));
    let first = hr_calls.lock().unwrap()[0].clone();
    assert_eq!(first["type"], "authorize");
    assert_eq!(first["webhook"], "hr");
    assert_eq!(first["policy"], "db");
    assert_eq!(first["source"], "token");
    assert_eq!(first["name"], "ci");
    assert_eq!(
        first["request"]["public_key"].as_str().unwrap(),
        req["public_key"]
            .as_str()
            .unwrap()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        first["certificate"].is_null(),
        "its templates need the answer"
    );

    // Without webhook templates the call carries the certificate to be.
    let (st, b, _) = sign(&c, &svc, "plain", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    let last = hr_calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["certificate"]["principals"], json!(["deploy"]));
    assert_eq!(last["certificate"]["cert_type"], "user");

    // Denied, with the webhook's reason.
    let (st, b, _) = sign(&c, &svc, "db", Some(&s.admin), &req).await;
    assert_eq!((st, code(&b)), (403, "webhook_denied"), "{b}");
    assert!(message(&b).contains("not on call today"), "{b}");

    // A receiver that checks the signature refuses a forged one: denied.
    let (st, b, _) = sign(&c, &svc, "forged", Some(&s.ci), &req).await;
    assert_eq!((st, code(&b)), (403, "webhook_denied"), "{b}");
    assert!(message(&b).contains("HTTP 401"), "{b}");

    // A timeout: denied by default, allowed under on_error = "allow".
    let (st, b, _) = sign(&c, &svc, "slow", Some(&s.ci), &req).await;
    assert_eq!((st, code(&b)), (403, "webhook_denied"), "{b}");
    assert!(message(&b).contains("no answer within 1 s"), "{b}");
    let (st, b, _) = sign(&c, &svc, "slow_ok", Some(&s.ci), &req).await;
    assert_eq!(st, 200, "{b}");
    // A 5xx follows on_error (deny).
    let (st, b, _) = sign(&c, &svc, "down", Some(&s.ci), &req).await;
    assert_eq!((st, code(&b)), (403, "webhook_denied"), "{b}");
    assert!(message(&b).contains("HTTP 503"), "{b}");

    // Counted and audited.
    let (_, metrics) = get(&c, &svc, "/metrics", None).await;
    assert!(
        metrics.contains("sshca_webhook_calls_total{webhook=\"hr\",outcome=\"allow\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("sshca_webhook_calls_total{webhook=\"slow\",outcome=\"error\"} 1"));
    svc.stop().await;
    let rows = audit_rows(&s, |_| true).await;
    let hooks: Vec<_> = rows.iter().filter(|e| e.kind == "webhook").collect();
    assert_eq!(hooks.len(), 7, "{hooks:?}");
    assert!(hooks
        .iter()
        .any(|e| e.code == "webhook_denied" && e.reason.contains("not on call today")));
    assert!(hooks
        .iter()
        .any(|e| e.code == "webhook_failed" && e.reason.contains("on_error = allow")));
    assert_eq!(rows.iter().filter(|e| e.kind == "issue").count(), 3);
}

/// (status, body) of a GET with a token.
async fn get_as(c: &reqwest::Client, svc: &Service, path: &str, token: &str) -> (u16, Value) {
    get_json(c, svc, path, Some(token)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_by_one_by_two_denied_expired_and_shared_by_replicas() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let secret = dir.join("chat.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let (chat_url, chat_ca, chat) = hook(dir, |_| (204, json!({}), 0)).await;
    let (ops1, ops1_table) = token("ops1");
    let (ops2, ops2_table) = token("ops2");
    let tables = format!(
        r#"{ops1_table}
{ops2_table}
{chat}
[policy.root]
ca = "users"
requesters = ["ci", "ops1"]
valid_principals = ["root"]
ttl = "30m"
approval = {{ approvers = ["token:ops*"], expires = "10m", notify = "chat" }}

[policy.root2]
ca = "users"
requesters = ["ci"]
valid_principals = ["root"]
approval = {{ approvers = ["token:ops*"], count = 2 }}

[policy.quick]
ca = "users"
requesters = ["ci"]
valid_principals = ["root"]
approval = {{ approvers = ["token:ops*"], expires = "2s" }}
"#,
        chat = webhook_table("chat", &chat_url, &chat_ca, &secret, "")
    );
    let s = setup("vault_mount = \"ssh\"", &tables);
    let a = Service::start(&s.config).await;
    let b_svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("id");
    let req = json!({"public_key": key, "validity": "+20m"});

    // Pending: 202 with its id; the chat webhook is told.
    let (st, p, _) = sign(&c, &a, "root", Some(&s.ci), &req).await;
    assert_eq!(st, 202, "{p}");
    assert_eq!(p["status"], "pending");
    let id = p["request_id"].as_str().unwrap().to_owned();
    let asked_at = p["created_at"].as_u64().unwrap();
    for _ in 0..50 {
        if !chat.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notice = chat.lock().unwrap()[0].clone();
    assert_eq!(notice["type"], "approval_request");
    assert_eq!(notice["approval_id"], id.as_str());
    assert_eq!(notice["certificate"]["principals"], json!(["root"]));

    // The requester and approvers see it (on either replica); others do not.
    let (st, v) = get_as(&c, &b_svc, &format!("/v1/approvals/{id}"), &s.ci).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("pending")), "{v}");
    let (st, _) = get_as(&c, &a, &format!("/v1/approvals/{id}"), &s.other).await;
    assert_eq!(st, 403);
    let (_, list) = get_as(&c, &b_svc, "/v1/approvals", &ops2).await;
    assert_eq!(list["approvals"][0]["request_id"], id.as_str(), "{list}");
    let (_, list) = get_as(&c, &a, "/v1/approvals", &s.ci).await;
    assert_eq!(list["approvals"], json!([]));
    // Not an approver; the Vault path cannot wait.
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{id}/approve"),
        &s.other,
        &json!({}),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    let r = c
        .post(format!("{}/v1/ssh/sign/root", a.url))
        .header("X-Vault-Token", &s.ci)
        .json(&json!({"public_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("approvers approve"));

    // Approved by one (on the other replica): validity starts then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, v) = post(
        &c,
        &b_svc,
        &format!("/v1/approvals/{id}/approve"),
        &ops1,
        &json!({}),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("approved")), "{v}");
    let (st, v) = get_as(&c, &a, &format!("/v1/approvals/{id}"), &s.ci).await;
    assert_eq!(st, 200);
    let cert = sshca_core::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.principals(), ["root"]);
    let after = cert.valid_after() + 300; // the policy's default backdate at most
    assert!(
        after >= asked_at + 2,
        "{} vs {asked_at}",
        cert.valid_after()
    );
    assert!(cert.valid_before() - cert.valid_after() <= 1200 + 300);
    assert_eq!(v["serial"], cert.serial().to_string());
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{id}/approve"),
        &ops2,
        &json!({}),
    )
    .await;
    assert_eq!((st, code(&v)), (409, "approval_decided"), "{v}");

    // Self-approval is refused.
    let (st, p, _) = sign(&c, &a, "root", Some(&ops1), &req).await;
    assert_eq!(st, 202, "{p}");
    let own = p["request_id"].as_str().unwrap().to_owned();
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{own}/approve"),
        &ops1,
        &json!({}),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(message(&v).contains("may not decide"), "{v}");

    // Two distinct approvers: the same one twice counts once.
    let (_, p, _) = sign(&c, &a, "root2", Some(&s.ci), &req).await;
    let two = p["request_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (st, v) = post(
            &c,
            &a,
            &format!("/v1/approvals/{two}/approve"),
            &ops1,
            &json!({}),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("pending")), "{v}");
        assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    }
    let (st, v) = post(
        &c,
        &b_svc,
        &format!("/v1/approvals/{two}/approve"),
        &ops2,
        &json!({}),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("approved")), "{v}");
    assert!(v["certificate"].as_str().is_some());

    // Denied, with the reason the requester sees.
    let (_, p, _) = sign(&c, &a, "root", Some(&s.ci), &req).await;
    let no = p["request_id"].as_str().unwrap().to_owned();
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{no}/deny"),
        &ops2,
        &json!({}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{no}/deny"),
        &ops2,
        &json!({"reason": "no change window"}),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("denied")), "{v}");
    let (_, v) = get_as(&c, &b_svc, &format!("/v1/approvals/{no}"), &s.ci).await;
    assert_eq!(v["reason"], "no change window");
    assert!(v.get("certificate").is_none());

    // Expired: 410.
    let (_, p, _) = sign(&c, &a, "quick", Some(&s.ci), &req).await;
    let late = p["request_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, v) = post(
        &c,
        &a,
        &format!("/v1/approvals/{late}/approve"),
        &ops1,
        &json!({}),
    )
    .await;
    assert_eq!((st, code(&v)), (410, "approval_expired"), "{v}");
    let (st, _) = get_as(&c, &a, &format!("/v1/approvals/{late}"), &s.ci).await;
    assert_eq!(st, 410);
    let (st, v) = get_as(&c, &a, "/v1/approvals/nope", &s.ci).await;
    assert_eq!(st, 404, "{v}");

    a.stop().await;
    b_svc.stop().await;
    let rows = audit_rows(&s, |_| true).await;
    let kinds = |k: &str| rows.iter().filter(|e| e.kind == k).count();
    assert_eq!(kinds("approval_request"), 5);
    assert_eq!(kinds("approval_approve"), 3, "one for root, two for root2");
    assert_eq!(kinds("approval_deny"), 1);
    assert_eq!(kinds("issue"), 2);
    let issued: Vec<_> = rows.iter().filter(|e| e.kind == "issue").collect();
    assert!(issued.iter().all(|e| e.identity.as_deref() == Some("ci")));
}
